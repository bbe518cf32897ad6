#![allow(dead_code)]

#[paste_rt::main]
async fn with_args(args: Vec<String>) {}

#[paste_rt::main]
async fn generic<T>() {}

fn main() {}
