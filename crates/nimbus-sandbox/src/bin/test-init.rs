//! Init process of namespace slots for this crate's tests; `nimbus-sandbox-init` runs
//! the same code as `nimbus sandbox-init`.

fn main() {
    nimbus_sandbox::init_main(std::env::args().skip(1).collect())
}
