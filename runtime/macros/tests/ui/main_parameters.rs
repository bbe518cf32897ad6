#![allow(dead_code)]

#[paste_rt::main]
async fn with_args(_args: Vec<String>) {}

#[paste_rt::main]
async fn generic<T>() {}

fn main() {}
