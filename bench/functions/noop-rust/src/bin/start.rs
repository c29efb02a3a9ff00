//! Calls the no-op handler once and prints its JSON: Rust's own cold start, with no
//! platform and no HTTP stack, which the benchmarks compare a platform's with.

fn main() {
    println!("{}", noop_rust::handle(serde_json::Value::Null));
}
