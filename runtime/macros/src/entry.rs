//! Entry points: turns the user's `async fn` into the synchronous `fn` the compiler wants (a
//! program's `main`, or a `#[test]`) whose body hands the `async` body to the paste-rt runtime.
//!
//! It owns the checks on the function's signature and the generated code. It must never
//! decide anything the runtime decides at run time (which backend can start, how threads are
//! spawned): the generated code only calls `runtime::Builder` or `testing::{run_test, each_backend}`.

use proc_macro2::TokenStream;
use quote::{quote, ToTokens};
use syn::ext::IdentExt;
use syn::{Attribute, ItemFn, LitStr, ReturnType};

use crate::options::{self, Macro, Options};

/// What an attribute expands to: the generated code and, when the input was wrong, the first
/// error. Even with an error, `tokens` holds a function, so the compiler reports that one
/// mistake rather than a cascade (a missing `main`, an unused `async fn`, …).
pub(crate) struct Expansion {
    /// The function to emit.
    pub(crate) tokens: TokenStream,
    /// The mistake to report beside it, pointing at the offending token.
    pub(crate) error: Option<syn::Error>,
}

impl Expansion {
    /// The tokens handed back to the compiler: the `compile_error!` (if any), then the function.
    pub(crate) fn into_token_stream(self) -> TokenStream {
        let mut tokens = self.error.map(syn::Error::into_compile_error).unwrap_or_default();
        tokens.extend(self.tokens);
        tokens
    }
}

/// `#[main]`: `async fn main() -> T` becomes `fn main() -> T` running the body on `runtime::Builder`.
pub(crate) fn main(args: TokenStream, item: TokenStream) -> Expansion {
    expand(Macro::Main, args, item)
}

/// `#[test]`: the `async fn` becomes a `#[test]` calling `testing::run_test`.
pub(crate) fn test(args: TokenStream, item: TokenStream) -> Expansion {
    expand(Macro::Test, args, item)
}

/// `#[test_each_backend]`: the `async fn` becomes a `#[test]` calling `testing::each_backend`.
pub(crate) fn test_each_backend(args: TokenStream, item: TokenStream) -> Expansion {
    expand(Macro::TestEachBackend, args, item)
}

fn expand(which: Macro, args: TokenStream, item: TokenStream) -> Expansion {
    let function: ItemFn = match syn::parse2(item.clone()) {
        Ok(function) => function,
        Err(error) => return Expansion { tokens: item, error: Some(error) },
    };
    if let Err(error) = check_signature(which, &function) {
        return Expansion { tokens: item, error: Some(error) };
    }
    match options::parse(which, args) {
        Ok(options) => Expansion { tokens: generate(which, function, &options), error: None },
        // The function itself is fine: generate it with default options so the attribute's
        // mistake is the only error the user sees.
        Err(error) => Expansion { tokens: generate(which, function, &Options::default()), error: Some(error) },
    }
}

/// Rejects functions the generated code cannot drive: not `async`, with parameters, generic,
/// or (for the test attributes) already carrying another test attribute.
fn check_signature(which: Macro, function: &ItemFn) -> syn::Result<()> {
    let sig = &function.sig;
    let attribute = which.attribute();
    if sig.asyncness.is_none() {
        let msg =
            format!("the `async` keyword is missing from the function declaration; `{attribute}` needs an `async fn`");
        return Err(syn::Error::new_spanned(sig.fn_token, msg));
    }
    if !sig.inputs.is_empty() {
        let msg = match which {
            Macro::Main => "`#[paste_rt::main]` functions take no parameters: each runtime thread calls the body with nothing to pass".to_string(),
            Macro::Test | Macro::TestEachBackend => format!("`{attribute}` functions take no parameters: the test harness passes none"),
        };
        return Err(syn::Error::new_spanned(&sig.inputs, msg));
    }
    if !sig.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(&sig.generics, format!("`{attribute}` functions cannot be generic")));
    }
    if let Some(where_clause) = &sig.generics.where_clause {
        return Err(syn::Error::new_spanned(
            where_clause,
            format!("`{attribute}` functions cannot have a `where` clause"),
        ));
    }
    if which != Macro::Main {
        if let Some(other) = function.attrs.iter().find(|attr| is_test_attribute(attr)) {
            let msg = format!("`{attribute}` already makes this function a test; remove this second test attribute");
            return Err(syn::Error::new_spanned(other, msg));
        }
    }
    Ok(())
}

/// `#[test]`, `#[core::prelude::v1::test]`, `#[tokio::test]`, `#[paste_rt::test_each_backend]`, …
fn is_test_attribute(attr: &Attribute) -> bool {
    attr.path().segments.last().is_some_and(|last| last.ident == "test" || last.ident == "test_each_backend")
}

/// The synchronous function. Attributes, visibility and name are kept; the body moves into
/// `|| async move { … }`, which the runtime may call more than once (one call per thread, or
/// per backend).
fn generate(which: Macro, mut function: ItemFn, options: &Options) -> TokenStream {
    let crate_path = &options.crate_path;
    let body = &function.block;
    function.sig.asyncness = None;

    if which == Macro::Main {
        let mut builder = quote! { #crate_path::runtime::Builder::new() };
        if let Some(backend) = &options.backend {
            builder = quote! { #builder.backend(#backend) };
        }
        if let Some(threads) = options.threads {
            let threads = proc_macro2::Literal::usize_unsuffixed(threads);
            builder = quote! { #builder.threads(#threads) };
        }
        // `run_main` returns the body's output, so `fn main`'s return type fixes the body's.
        let block = syn::parse_quote!({ #builder.run_main(|| async move #body) });
        function.block = Box::new(block);
        return function.into_token_stream();
    }

    // A test fn returns `()`; the runtime checks the outcome. The declared return type (such as
    // `Result<(), E>`, or `()` when none is written) is pinned on the async body by passing it
    // through `with_declared_output`: nothing else fixes it, so without it `?` would not know its
    // error type and a body that never returns (`panic!()`) would rely on never-type fallback.
    // A bound, unlike `let outcome: T = body; outcome`, adds no code after a diverging body.
    let outcome = match &function.sig.output {
        ReturnType::Default => quote! { () },
        ReturnType::Type(_, outcome) => quote! { #outcome },
    };
    let name = LitStr::new(&function.sig.ident.unraw().to_string(), function.sig.ident.span());
    let call = if which == Macro::Test {
        let backend = match &options.backend {
            Some(backend) => quote! { ::core::option::Option::Some(#backend) },
            None => quote! { ::core::option::Option::None },
        };
        quote! { #crate_path::testing::run_test(#name, #backend, || with_declared_output(async move #body)) }
    } else {
        quote! { #crate_path::testing::each_backend(#name, || with_declared_output(async move #body)) }
    };
    function.sig.output = ReturnType::Default;
    function.block = Box::new(syn::parse_quote!({
        fn with_declared_output<Body: ::core::future::Future<Output = #outcome>>(body: Body) -> Body {
            body
        }
        #call
    }));
    quote! {
        #[::core::prelude::v1::test]
        #function
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(source: &str) -> TokenStream {
        source.parse().expect("test input must tokenize")
    }

    /// Runs `expand` on source text and returns the generated code, normalized by printing.
    fn expanded(which: Macro, args: &str, item: &str) -> String {
        let expansion = expand(which, tokens(args), tokens(item));
        if let Some(error) = expansion.error {
            panic!("unexpected error for `{args}` on `{item}`: {error}");
        }
        normalized(&expansion.tokens.to_string())
    }

    /// Rust items printed back by syn, so that spacing such as `||` vs `| |` or `>>` vs `> >`
    /// does not matter when comparing generated code with the expected code.
    fn normalized(source: &str) -> String {
        let file: syn::File = syn::parse_str(source).expect("must be valid Rust items");
        file.into_token_stream().to_string()
    }

    /// The error's message, the source text it points at, and the tokens emitted beside it.
    fn rejected(which: Macro, args: &str, item: &str) -> (String, String, String) {
        let expansion = expand(which, tokens(args), tokens(item));
        let error = expansion.error.expect("this input must be rejected");
        (error.to_string(), error.span().source_text().unwrap_or_default(), normalized(&expansion.tokens.to_string()))
    }

    #[test]
    fn main_without_options() {
        let out = expanded(Macro::Main, "", "async fn main() { println!(\"hi\"); }");
        let expected =
            "fn main() { ::paste_rt::runtime::Builder::new().run_main(|| async move { println!(\"hi\"); }) }";
        assert_eq!(out, normalized(expected));
    }

    #[test]
    fn main_with_backend_threads_crate_and_return_type() {
        let out = expanded(
            Macro::Main,
            "threads = 4, backend = \"paste-emu\", crate = \"::my_app::rt\"",
            "#[allow(unused)] pub async fn main() -> Result<(), Box<dyn std::error::Error>> { work().await?; Ok(()) }",
        );
        let expected = "#[allow(unused)] pub fn main() -> Result<(), Box<dyn std::error::Error>> { \
            ::my_app::rt::runtime::Builder::new().backend(\"paste-emu\").threads(4) \
            .run_main(|| async move { work().await?; Ok(()) }) }";
        assert_eq!(out, normalized(expected));
    }

    #[test]
    fn main_tokio_spellings() {
        let current = expanded(Macro::Main, "flavor = \"current_thread\"", "async fn main() {}");
        assert_eq!(
            current,
            normalized("fn main() { ::paste_rt::runtime::Builder::new().threads(1).run_main(|| async move {}) }")
        );
        let workers = expanded(Macro::Main, "worker_threads = 2", "async fn main() {}");
        assert_eq!(
            workers,
            normalized("fn main() { ::paste_rt::runtime::Builder::new().threads(2).run_main(|| async move {}) }")
        );
    }

    #[test]
    fn test_without_options_keeps_other_attributes() {
        let out = expanded(
            Macro::Test,
            "",
            "#[ignore] #[should_panic(expected = \"boom\")] async fn explodes() { boom().await }",
        );
        let expected = "#[::core::prelude::v1::test] #[ignore] #[should_panic(expected = \"boom\")] fn explodes() { \
            fn with_declared_output<Body: ::core::future::Future<Output = ()>>(body: Body) -> Body { body } \
            ::paste_rt::testing::run_test(\"explodes\", ::core::option::Option::None, || with_declared_output(async move { boom().await })) }";
        assert_eq!(out, normalized(expected));
    }

    #[test]
    fn test_with_backend_crate_and_result() {
        let out = expanded(
            Macro::Test,
            "backend = \"epoll\", crate = \"crate\", flavor = \"current_thread\"",
            "async fn r#loop() -> std::io::Result<()> { step()?; Ok(()) }",
        );
        let expected = "#[::core::prelude::v1::test] fn r#loop() { \
            fn with_declared_output<Body: ::core::future::Future<Output = std::io::Result<()>>>(body: Body) -> Body { body } \
            crate::testing::run_test(\"loop\", ::core::option::Option::Some(\"epoll\"), \
            || with_declared_output(async move { step()?; Ok(()) })) }";
        assert_eq!(out, normalized(expected));
    }

    #[test]
    fn test_each_backend_expansion() {
        let out = expanded(Macro::TestEachBackend, "", "async fn echoes() { echo().await; }");
        let expected = "#[::core::prelude::v1::test] fn echoes() { \
            fn with_declared_output<Body: ::core::future::Future<Output = ()>>(body: Body) -> Body { body } \
            ::paste_rt::testing::each_backend(\"echoes\", || with_declared_output(async move { echo().await; })) }";
        assert_eq!(out, normalized(expected));

        let out = expanded(
            Macro::TestEachBackend,
            "crate = \"paste_rt\"",
            "pub(crate) async fn echoes() -> Result<(), String> { Ok(()) }",
        );
        let expected = "#[::core::prelude::v1::test] pub(crate) fn echoes() { \
            fn with_declared_output<Body: ::core::future::Future<Output = Result<(), String>>>(body: Body) -> Body { body } \
            paste_rt::testing::each_backend(\"echoes\", || with_declared_output(async move { Ok(()) })) }";
        assert_eq!(out, normalized(expected));
    }

    #[test]
    fn missing_async_is_rejected_at_fn_and_the_item_is_kept() {
        for which in [Macro::Main, Macro::Test, Macro::TestEachBackend] {
            let (msg, blamed, emitted) = rejected(which, "", "pub fn main() {}");
            let expected = format!(
                "the `async` keyword is missing from the function declaration; `{}` needs an `async fn`",
                which.attribute()
            );
            assert_eq!(msg, expected);
            assert_eq!(blamed, "fn");
            assert_eq!(emitted, normalized("pub fn main() {}"));
        }
    }

    #[test]
    fn parameters_are_rejected_at_the_parameters() {
        let (msg, blamed, _) = rejected(Macro::Main, "", "async fn main(args: Vec<String>, n: u8) {}");
        assert_eq!(
            msg,
            "`#[paste_rt::main]` functions take no parameters: each runtime thread calls the body with nothing to pass"
        );
        assert_eq!(blamed, "args: Vec<String>, n: u8");

        let (msg, blamed, _) = rejected(Macro::TestEachBackend, "", "async fn t(port: u16) {}");
        assert_eq!(msg, "`#[paste_rt::test_each_backend]` functions take no parameters: the test harness passes none");
        assert_eq!(blamed, "port: u16");
    }

    #[test]
    fn generics_are_rejected_at_the_generics() {
        let (msg, blamed, _) = rejected(Macro::Test, "", "async fn t<T: Default>() {}");
        assert_eq!(
            (msg.as_str(), blamed.as_str()),
            ("`#[paste_rt::test]` functions cannot be generic", "<T: Default>")
        );

        let (msg, blamed, _) = rejected(Macro::Main, "", "async fn main() where u8: Copy {}");
        assert_eq!(msg, "`#[paste_rt::main]` functions cannot have a `where` clause");
        assert_eq!(blamed, "where u8: Copy");
    }

    #[test]
    fn a_second_test_attribute_is_rejected() {
        for attr in ["#[test]", "#[tokio::test]", "#[paste_rt::test_each_backend]"] {
            let (msg, blamed, _) = rejected(Macro::Test, "", &format!("#[ignore] {attr} async fn t() {{}}"));
            assert_eq!(
                msg,
                "`#[paste_rt::test]` already makes this function a test; remove this second test attribute"
            );
            assert_eq!(blamed, attr);
        }
        // `#[test_case]`-style attributes are not test attributes.
        expanded(Macro::TestEachBackend, "", "#[test_case(1)] async fn t() {}");
    }

    #[test]
    fn a_non_function_is_rejected_and_kept() {
        let (msg, blamed, emitted) = rejected(Macro::Main, "", "struct Main;");
        assert_eq!((msg.as_str(), blamed.as_str()), ("expected `fn`", "struct"));
        assert_eq!(emitted, normalized("struct Main;"));
    }

    #[test]
    fn bad_options_still_emit_the_function_with_defaults() {
        let (msg, blamed, emitted) = rejected(Macro::Main, "threads = 0", "async fn main() {}");
        assert_eq!(
            (msg.as_str(), blamed.as_str()),
            ("`threads` must be at least 1: each thread runs one runtime", "0")
        );
        assert_eq!(emitted, normalized("fn main() { ::paste_rt::runtime::Builder::new().run_main(|| async move {}) }"));

        let (msg, _, emitted) = rejected(Macro::Test, "backend = \"kqueue\"", "async fn t() {}");
        assert!(msg.starts_with("unknown backend \"kqueue\""), "{msg}");
        let expected = "#[::core::prelude::v1::test] fn t() { \
            fn with_declared_output<Body: ::core::future::Future<Output = ()>>(body: Body) -> Body { body } \
            ::paste_rt::testing::run_test(\"t\", ::core::option::Option::None, || with_declared_output(async move {})) }";
        assert_eq!(emitted, normalized(expected));
    }

    #[test]
    fn compile_error_comes_before_the_function() {
        let expansion = main(tokens("start_paused = true"), tokens("async fn main() {}"));
        let out = normalized(&expansion.into_token_stream().to_string());
        assert!(out.starts_with(":: core :: compile_error !"), "{out}");
        assert!(out.contains("`start_paused` is a tokio option that paste-rt does not support; remove it"), "{out}");
        assert!(
            out.ends_with(&normalized("fn main() { ::paste_rt::runtime::Builder::new().run_main(|| async move {}) }")),
            "{out}"
        );
        // Without an error, nothing but the function.
        let out = test_each_backend(TokenStream::new(), tokens("async fn t() {}")).into_token_stream();
        assert!(!out.to_string().contains("compile_error"));
        let out = test(TokenStream::new(), tokens("async fn t() {}")).into_token_stream();
        assert!(out.to_string().contains("run_test"));
    }
}
