//! paste-rt's attribute macros, re-exported as `paste_rt::main`, `paste_rt::test` and
//! `paste_rt::test_each_backend`. Each turns an `async fn` into the synchronous function the
//! compiler expects and hands the `async` body to the paste-rt runtime.
//!
//! This crate owns attribute parsing (`options`) and code generation (`entry`). It must never
//! make a run-time decision itself: which backend actually starts, and how threads are spawned,
//! belong to `paste_rt::runtime::Builder` and `paste_rt::testing`, which the generated code calls.
//! Every mistake in an attribute is a compile error pointing at the offending token.
//!
//! # `#[paste_rt::main]`
//!
//! ```ignore
//! #[paste_rt::main(backend = "epoll", threads = 4)]
//! async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//!     serve().await?;
//!     Ok(())
//! }
//! ```
//!
//! expands to
//!
//! ```ignore
//! fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//!     ::paste_rt::runtime::Builder::new()
//!         .backend("epoll")
//!         .threads(4)
//!         .run_main(|| async move {
//!             serve().await?;
//!             Ok(())
//!         })
//! }
//! ```
//!
//! | option | meaning |
//! |---|---|
//! | `backend = "…"` | the program's default backend: `"auto"`, `"paste"`, `"paste-emu"`, `"uring"` or `"epoll"` (checked at compile time). The `PASTE_RT_BACKEND` environment variable still overrides it at run time. Omitted: `Builder::new()`'s own choice (the variable, else `"auto"`). |
//! | `threads = N` | thread-per-core: `N` (a literal, at least 1) runtime threads, **each running its own copy of the body**, all on the backend thread 0 chose; if one cannot start, none runs the body and the program exits with the error. `main` returns thread 0's output. |
//! | `crate = "path"` | path of the runtime crate, used instead of `::paste_rt` (for re-exports, or `"crate"` inside paste-rt itself). |
//! | `flavor = "current_thread"` | tokio's spelling of `threads = 1`. |
//! | `worker_threads = N` | tokio's spelling of `threads = N`. Unlike tokio's worker pool, every thread runs the body. |
//!
//! `flavor = "multi_thread"` is an error: paste-rt is thread-per-core and has no shared
//! work-stealing pool; write `threads = N`. tokio's `start_paused` and `unhandled_panic`, unknown
//! or repeated options, non-literal values, a missing `async`, parameters or generics on `main`,
//! and `threads = 0` are compile errors too.
//!
//! # `#[paste_rt::test]`
//!
//! ```ignore
//! #[paste_rt::test(backend = "uring")]
//! #[ignore] // other attributes stay on the test
//! async fn reads_a_file() -> std::io::Result<()> {
//!     read_it().await?;
//!     Ok(())
//! }
//! ```
//!
//! expands to a `#[test]` calling
//! `::paste_rt::testing::run_test("reads_a_file", Some("uring"), || async move { … })` (`None`
//! without `backend`: the environment variable, else `"auto"`). The test may return `()` or
//! `Result<(), E: Debug>`; an `Err` fails it. Options: `backend`, `crate`, and
//! `flavor = "current_thread"` (accepted so tokio tests port unchanged; a test is one thread).
//!
//! # `#[paste_rt::test_each_backend]`
//!
//! ```ignore
//! #[paste_rt::test_each_backend]
//! async fn echoes_one_datagram() {
//!     // runs once per backend that can start on this machine
//! }
//! ```
//!
//! expands to a `#[test]` calling
//! `::paste_rt::testing::each_backend("echoes_one_datagram", || async move { … })`.
//! Its only option is `crate`.

mod entry;
mod options;

use proc_macro::TokenStream;

/// Runs `async fn main` on the paste-rt runtime.
///
/// Options (all optional, comma separated):
/// - `backend = "auto" | "paste" | "paste-emu" | "uring" | "epoll"`: the program's default
///   backend; the `PASTE_RT_BACKEND` environment variable still overrides it.
/// - `threads = N`: thread-per-core, `N` runtime threads each running the body; `main`
///   returns thread 0's output.
/// - `crate = "path"`: use `path` instead of `::paste_rt`.
/// - tokio spellings: `flavor = "current_thread"` (one thread) and `worker_threads = N`
///   (`N` threads, each running the body). `flavor = "multi_thread"` is rejected: write
///   `threads = N`.
///
/// ```ignore
/// #[paste_rt::main(backend = "epoll", threads = 2)]
/// async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
///     serve().await?;
///     Ok(())
/// }
/// // becomes:
/// fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
///     ::paste_rt::runtime::Builder::new().backend("epoll").threads(2).run_main(|| async move {
///         serve().await?;
///         Ok(())
///     })
/// }
/// ```
#[proc_macro_attribute]
pub fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    entry::main(args.into(), item.into()).into_token_stream().into()
}

/// Makes an `async fn` a test run on one paste-rt backend.
///
/// Options: `backend = "…"` (one of `"auto"`, `"paste"`, `"paste-emu"`, `"uring"`,
/// `"epoll"`; without it the `PASTE_RT_BACKEND` environment variable, else `"auto"`),
/// `crate = "path"`, and tokio's `flavor = "current_thread"` (a test always runs on one thread).
/// Other attributes such as `#[ignore]` or `#[should_panic]` stay on the test. The function may
/// return `()` or `Result<(), E: Debug>`; an `Err` fails the test.
///
/// ```ignore
/// #[paste_rt::test(backend = "epoll")]
/// async fn accepts() -> std::io::Result<()> {
///     connect_and_accept().await?;
///     Ok(())
/// }
/// // becomes (the local fn only tells the compiler the body's output type):
/// #[test]
/// fn accepts() {
///     fn with_declared_output<Body: Future<Output = std::io::Result<()>>>(body: Body) -> Body { body }
///     ::paste_rt::testing::run_test("accepts", Some("epoll"), || with_declared_output(async move {
///         connect_and_accept().await?;
///         Ok(())
///     }))
/// }
/// ```
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    entry::test(args.into(), item.into()).into_token_stream().into()
}

/// Makes an `async fn` a test that runs once on every backend that can start on this machine.
///
/// Its only option is `crate = "path"`. Other attributes stay on the test; the function may
/// return `()` or `Result<(), E: Debug>`.
///
/// ```ignore
/// #[paste_rt::test_each_backend]
/// async fn echoes() {
///     echo_one_datagram().await;
/// }
/// // becomes:
/// #[test]
/// fn echoes() {
///     fn with_declared_output<Body: Future<Output = ()>>(body: Body) -> Body { body }
///     ::paste_rt::testing::each_backend("echoes", || with_declared_output(async move {
///         echo_one_datagram().await;
///     }))
/// }
/// ```
#[proc_macro_attribute]
pub fn test_each_backend(args: TokenStream, item: TokenStream) -> TokenStream {
    entry::test_each_backend(args.into(), item.into()).into_token_stream().into()
}
