//! Placeholder until the translate benchmark lands.
fn main() {}
