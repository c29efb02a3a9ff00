//! The init process of namespace slots, which `nimbus server` starts from beside its
//! own executable. It runs the same code as `nimbus sandbox-init` in a program of
//! under 1 MB, so each slot's two init processes keep less memory.

fn main() {
    nimbus_sandbox::init_main(std::env::args().skip(1).collect())
}
