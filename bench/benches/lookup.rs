//! Placeholder until the lookup benchmark lands.
fn main() {}
