#![allow(dead_code)]

#[paste_rt::test(threads = 2)]
async fn threads_on_a_test() {}

#[paste_rt::test(flavor = "multi_thread")]
async fn multi_thread_test() {}

#[paste_rt::test(backend = "kqueue")]
async fn unknown_backend() {}

#[paste_rt::test_each_backend(backend = "epoll")]
async fn one_backend_on_each_backend() {}

#[paste_rt::test]
fn not_async() {}

#[paste_rt::test]
#[test]
async fn two_test_attributes() {}

fn main() {}
