#[paste_rt::main]
fn main() {}
