#![allow(dead_code)]

#[paste_rt::main(flavor = "multi_thread")]
async fn multi_thread() {}

#[paste_rt::main(threads = 0)]
async fn zero_threads() {}

#[paste_rt::main(worker_threads = 2, threads = 2)]
async fn thread_count_twice() {}

#[paste_rt::main(backend = "io_uring")]
async fn misspelled_backend() {}

#[paste_rt::main(backend = BACKEND)]
async fn non_literal_backend() {}

#[paste_rt::main(start_paused = true)]
async fn start_paused() {}

#[paste_rt::main(backend = "epoll", backend = "uring")]
async fn repeated() {}

#[paste_rt::main(flavour = "current_thread")]
async fn unknown_option() {}

#[paste_rt::main(crate = "paste_rt::")]
async fn bad_crate_path() {}

fn main() {}
