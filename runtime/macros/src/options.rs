//! Attribute options: turns the tokens inside `#[main(…)]`, `#[test(…)]` and
//! `#[test_each_backend(…)]` into [`Options`], or into a `syn::Error` that points at the
//! offending token (the option's name when the name is wrong, its value when the value is).
//!
//! It reads only the attribute's own tokens: it never looks at the function and never
//! generates code (that is `entry`'s job).

use proc_macro2::{Ident, TokenStream};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{Expr, Lit, LitStr, Meta, Path, Token};

/// The backend names `Builder::backend` accepts, in the order error messages list them.
pub(crate) const BACKENDS: [&str; 5] = ["auto", "paste", "paste-emu", "uring", "epoll"];

/// Which attribute is being expanded; it decides the accepted options and the wording of errors.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Macro {
    /// `#[paste_rt::main]`
    Main,
    /// `#[paste_rt::test]`
    Test,
    /// `#[paste_rt::test_each_backend]`
    TestEachBackend,
}

impl Macro {
    /// The attribute as a user writes it, for error messages.
    pub(crate) fn attribute(self) -> &'static str {
        match self {
            Macro::Main => "#[paste_rt::main]",
            Macro::Test => "#[paste_rt::test]",
            Macro::TestEachBackend => "#[paste_rt::test_each_backend]",
        }
    }

    /// The options this attribute accepts, for the "unknown option" message.
    fn accepted(self) -> &'static str {
        match self {
            Macro::Main => {
                "`backend`, `threads` or `crate` (tokio's `flavor = \"current_thread\"` and `worker_threads` are accepted too)"
            }
            Macro::Test => "`backend` or `crate` (tokio's `flavor = \"current_thread\"` is accepted too)",
            Macro::TestEachBackend => "only `crate`",
        }
    }
}

/// What the attribute asked for. `Default` is what an empty attribute means.
pub(crate) struct Options {
    /// Path of the runtime crate; `::paste_rt` unless `crate = "…"` is given.
    pub(crate) crate_path: Path,
    /// `backend = "…"`, already checked against [`BACKENDS`]; kept as the user's literal.
    pub(crate) backend: Option<LitStr>,
    /// Number of runtime threads for `#[main]`: `threads`, `worker_threads`, or 1 for
    /// `flavor = "current_thread"`. Always `None` for the test attributes.
    pub(crate) threads: Option<usize>,
}

impl Default for Options {
    fn default() -> Options {
        Options { crate_path: syn::parse_quote!(::paste_rt), backend: None, threads: None }
    }
}

/// Parses the attribute's arguments for `which`. Stops at the first mistake.
pub(crate) fn parse(which: Macro, args: TokenStream) -> syn::Result<Options> {
    let metas = Punctuated::<Meta, Token![,]>::parse_terminated.parse2(args)?;
    let mut options = Options::default();
    // Every option name given so far, to reject repeats.
    let mut seen: Vec<Ident> = Vec::new();
    // The option that set the thread count (`threads`, `worker_threads` or `flavor`), if any.
    let mut thread_count_set_by: Option<Ident> = None;

    for meta in &metas {
        let Some(key) = meta.path().get_ident() else {
            let msg = format!("expected an option name: {}", which.accepted());
            return Err(syn::Error::new_spanned(meta.path(), msg));
        };
        let value = match meta {
            Meta::Path(_) => None,
            Meta::NameValue(name_value) => Some(&name_value.value),
            Meta::List(_) => return Err(syn::Error::new_spanned(meta, format!("write `{key} = …`, not `{key}(…)`"))),
        };
        if seen.contains(key) {
            return Err(syn::Error::new(key.span(), format!("`{key}` is given twice")));
        }
        seen.push(key.clone());

        match (key.to_string().as_str(), which) {
            ("crate", _) => options.crate_path = crate_path(key, value)?,
            ("backend", Macro::Main | Macro::Test) => options.backend = Some(backend(key, value)?),
            ("threads" | "worker_threads", Macro::Main) => {
                let count = thread_count(key, value)?;
                set_thread_count(&mut options, &mut thread_count_set_by, key, count)?;
            }
            ("flavor", Macro::Main) => {
                flavor(which, key, value)?;
                set_thread_count(&mut options, &mut thread_count_set_by, key, 1)?;
            }
            // A test runs on one thread already; the option is accepted so tokio tests port as is.
            ("flavor", Macro::Test) => flavor(which, key, value)?,
            ("backend", Macro::TestEachBackend) => {
                let msg = "`#[paste_rt::test_each_backend]` runs the test once on every backend that can start; \
                           to pick one backend use `#[paste_rt::test(backend = \"…\")]`";
                return Err(syn::Error::new(key.span(), msg));
            }
            ("threads" | "worker_threads" | "flavor", Macro::Test | Macro::TestEachBackend) => {
                let msg = format!(
                    "`{}` runs the test body on one thread; `{key}` is an option of `#[paste_rt::main]`",
                    which.attribute()
                );
                return Err(syn::Error::new(key.span(), msg));
            }
            ("start_paused" | "unhandled_panic", _) => {
                let msg = format!("`{key}` is a tokio option that paste-rt does not support; remove it");
                return Err(syn::Error::new(key.span(), msg));
            }
            (unknown, _) => {
                let msg =
                    format!("unknown option `{unknown}` for `{}`; expected {}", which.attribute(), which.accepted());
                return Err(syn::Error::new(key.span(), msg));
            }
        }
    }
    Ok(options)
}

/// Records the thread count, refusing a second option that also sets it.
fn set_thread_count(options: &mut Options, set_by: &mut Option<Ident>, key: &Ident, count: usize) -> syn::Result<()> {
    if let Some(first) = set_by {
        let msg = format!(
            "the thread count is already set by `{first}`; keep only one of `threads`, `worker_threads` and `flavor`"
        );
        return Err(syn::Error::new(key.span(), msg));
    }
    *set_by = Some(key.clone());
    options.threads = Some(count);
    Ok(())
}

/// `crate = "path"`: the path the generated code uses instead of `::paste_rt`.
fn crate_path(key: &Ident, value: Option<&Expr>) -> syn::Result<Path> {
    let literal = string(key, value, "crate = \"paste_rt\"")?;
    literal.parse_with(Path::parse_mod_style).map_err(|_| {
        let msg = format!(
            "`crate` must hold a path, such as \"paste_rt\" or \"::my_crate::rt\"; \"{}\" is not one",
            literal.value()
        );
        syn::Error::new(literal.span(), msg)
    })
}

/// `backend = "name"`, checked against [`BACKENDS`] so a typo fails at compile time.
fn backend(key: &Ident, value: Option<&Expr>) -> syn::Result<LitStr> {
    let literal = string(key, value, "backend = \"epoll\"")?;
    let name = literal.value();
    if BACKENDS.contains(&name.as_str()) {
        return Ok(literal);
    }
    let expected: Vec<String> = BACKENDS.iter().map(|b| format!("\"{b}\"")).collect();
    let mut msg = format!("unknown backend \"{name}\"; expected one of {}", expected.join(", "));
    // Common near misses: other capitalisation, `_` for `-`, the `io_` of `io_uring`.
    let normalized = name.trim().to_ascii_lowercase().replace('_', "-");
    let normalized = normalized.strip_prefix("io-").unwrap_or(&normalized);
    if let Some(close) = BACKENDS.iter().find(|b| **b == normalized) {
        msg.push_str(&format!(" (did you mean \"{close}\"?)"));
    }
    Err(syn::Error::new(literal.span(), msg))
}

/// `flavor = "…"`: tokio's spelling. Only `"current_thread"` exists in paste-rt.
fn flavor(which: Macro, key: &Ident, value: Option<&Expr>) -> syn::Result<()> {
    let literal = string(key, value, "flavor = \"current_thread\"")?;
    let msg = match (literal.value().as_str(), which) {
        ("current_thread", _) => return Ok(()),
        ("multi_thread", Macro::Main) => "paste-rt is thread-per-core and has no `multi_thread` flavor (no shared \
             work-stealing pool): write `threads = N` to run N runtime threads, each running its own copy of the body"
            .to_string(),
        ("multi_thread", _) => format!(
            "paste-rt is thread-per-core and has no `multi_thread` flavor; `{}` runs the body on one thread, \
             so remove `flavor`",
            which.attribute()
        ),
        (other, _) => format!("unknown flavor \"{other}\"; paste-rt accepts only \"current_thread\""),
    };
    Err(syn::Error::new(literal.span(), msg))
}

/// `threads = N` / `worker_threads = N`: an integer literal, at least 1.
fn thread_count(key: &Ident, value: Option<&Expr>) -> syn::Result<usize> {
    let expr = value_of(key, value, &format!("{key} = 4"))?;
    // A negative number is usually `-` then a literal, but can arrive as one literal token.
    let int = match literal(expr) {
        Some(Lit::Int(int)) if !int.base10_digits().starts_with('-') => int,
        _ => {
            let msg = format!("`{key}` must be a positive integer literal, such as `{key} = 4`");
            return Err(syn::Error::new_spanned(expr, msg));
        }
    };
    let count: usize = int
        .base10_parse()
        .map_err(|err| syn::Error::new(int.span(), format!("`{key}` is not a valid thread count: {err}")))?;
    if count == 0 {
        let msg = format!("`{key}` must be at least 1: each thread runs one runtime");
        return Err(syn::Error::new(int.span(), msg));
    }
    Ok(count)
}

/// The value of a `key = "…"` option, which must be a string literal.
fn string(key: &Ident, value: Option<&Expr>, example: &str) -> syn::Result<LitStr> {
    let expr = value_of(key, value, example)?;
    match literal(expr) {
        Some(Lit::Str(string)) => Ok(string.clone()),
        _ => Err(syn::Error::new_spanned(expr, format!("`{key}` must be a string literal, such as `{example}`"))),
    }
}

/// The value after `=`, or an error at the option name when it was written alone.
fn value_of<'a>(key: &Ident, value: Option<&'a Expr>, example: &str) -> syn::Result<&'a Expr> {
    value.ok_or_else(|| syn::Error::new(key.span(), format!("`{key}` needs a value, such as `{example}`")))
}

/// The literal inside `expr`, looking through the invisible groups `macro_rules!` wraps
/// around `$x:literal` arguments.
fn literal(expr: &Expr) -> Option<&Lit> {
    match expr {
        Expr::Lit(expr) => Some(&expr.lit),
        Expr::Group(group) => literal(&group.expr),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::ToTokens;

    fn parse_str(which: Macro, args: &str) -> syn::Result<Options> {
        parse(which, args.parse().expect("test input must tokenize"))
    }

    /// The error for `args`, as (message, source text of the tokens the error points at).
    /// Spans carry source text because the dev-dependency enables `span-locations`.
    fn rejected(which: Macro, args: &str) -> (String, String) {
        let error = parse_str(which, args).err().expect("these arguments must be rejected");
        let blamed = error.span().source_text().unwrap_or_default();
        (error.to_string(), blamed)
    }

    #[test]
    fn empty_attribute_means_defaults() {
        for which in [Macro::Main, Macro::Test, Macro::TestEachBackend] {
            let options = parse_str(which, "").unwrap();
            assert_eq!(options.crate_path.to_token_stream().to_string(), ":: paste_rt");
            assert!(options.backend.is_none());
            assert_eq!(options.threads, None);
        }
    }

    #[test]
    fn main_accepts_every_backend_and_a_thread_count() {
        for name in BACKENDS {
            let options = parse_str(Macro::Main, &format!("backend = \"{name}\", threads = 3,")).unwrap();
            assert_eq!(options.backend.unwrap().value(), name);
            assert_eq!(options.threads, Some(3));
        }
    }

    #[test]
    fn tokio_spellings_set_the_thread_count() {
        assert_eq!(parse_str(Macro::Main, "flavor = \"current_thread\"").unwrap().threads, Some(1));
        assert_eq!(parse_str(Macro::Main, "worker_threads = 8").unwrap().threads, Some(8));
        let test = parse_str(Macro::Test, "flavor = \"current_thread\", backend = \"uring\"").unwrap();
        assert_eq!(test.threads, None);
        assert_eq!(test.backend.unwrap().value(), "uring");
    }

    #[test]
    fn crate_path_is_parsed_from_the_string() {
        for which in [Macro::Main, Macro::Test, Macro::TestEachBackend] {
            let options = parse_str(which, "crate = \"::my_app::rt\"").unwrap();
            assert_eq!(options.crate_path.to_token_stream().to_string(), ":: my_app :: rt");
        }
        let options = parse_str(Macro::Test, "crate = \"crate\"").unwrap();
        assert_eq!(options.crate_path.to_token_stream().to_string(), "crate");
    }

    #[test]
    fn unknown_backend_is_rejected_at_the_literal() {
        let (msg, blamed) = rejected(Macro::Main, "threads = 2, backend = \"fast\"");
        assert_eq!(
            msg,
            "unknown backend \"fast\"; expected one of \"auto\", \"paste\", \"paste-emu\", \"uring\", \"epoll\""
        );
        assert_eq!(blamed, "\"fast\"");
    }

    #[test]
    fn near_miss_backend_names_get_a_suggestion() {
        for (written, meant) in [("io_uring", "uring"), ("EPOLL", "epoll"), ("paste_emu", "paste-emu")] {
            let (msg, blamed) = rejected(Macro::Test, &format!("backend = \"{written}\""));
            assert!(msg.ends_with(&format!("(did you mean \"{meant}\"?)")), "{msg}");
            assert_eq!(blamed, format!("\"{written}\""));
        }
    }

    #[test]
    fn thread_count_must_be_a_positive_integer_literal() {
        let cases = [
            ("threads = 0", "`threads` must be at least 1: each thread runs one runtime", "0"),
            ("worker_threads = 0", "`worker_threads` must be at least 1: each thread runs one runtime", "0"),
            ("threads = N", "`threads` must be a positive integer literal, such as `threads = 4`", "N"),
            ("threads = -1", "`threads` must be a positive integer literal, such as `threads = 4`", "-1"),
            ("threads = - 1", "`threads` must be a positive integer literal, such as `threads = 4`", "- 1"),
            ("threads = \"4\"", "`threads` must be a positive integer literal, such as `threads = 4`", "\"4\""),
            ("threads = 2 + 2", "`threads` must be a positive integer literal, such as `threads = 4`", "2 + 2"),
            (
                "threads = 99999999999999999999999",
                "`threads` is not a valid thread count: number too large to fit in target type",
                "99999999999999999999999",
            ),
            ("threads", "`threads` needs a value, such as `threads = 4`", "threads"),
        ];
        for (args, message, token) in cases {
            assert_eq!(rejected(Macro::Main, args), (message.to_string(), token.to_string()), "for `{args}`");
        }
    }

    #[test]
    fn non_literal_and_missing_values_are_rejected_at_the_value() {
        let cases = [
            ("backend = EPOLL", "`backend` must be a string literal, such as `backend = \"epoll\"`", "EPOLL"),
            ("backend = 1", "`backend` must be a string literal, such as `backend = \"epoll\"`", "1"),
            ("crate = paste_rt", "`crate` must be a string literal, such as `crate = \"paste_rt\"`", "paste_rt"),
            (
                "flavor = current_thread",
                "`flavor` must be a string literal, such as `flavor = \"current_thread\"`",
                "current_thread",
            ),
            ("backend", "`backend` needs a value, such as `backend = \"epoll\"`", "backend"),
            ("crate", "`crate` needs a value, such as `crate = \"paste_rt\"`", "crate"),
        ];
        for (args, message, token) in cases {
            assert_eq!(rejected(Macro::Main, args), (message.to_string(), token.to_string()), "for `{args}`");
        }
    }

    #[test]
    fn bad_crate_path_is_rejected_at_the_literal() {
        for path in ["", "paste_rt::", "1abc", "paste_rt::<u8>"] {
            let (msg, blamed) = rejected(Macro::TestEachBackend, &format!("crate = \"{path}\""));
            let expected =
                format!("`crate` must hold a path, such as \"paste_rt\" or \"::my_crate::rt\"; \"{path}\" is not one");
            assert_eq!(msg, expected);
            assert_eq!(blamed, format!("\"{path}\""));
        }
    }

    #[test]
    fn multi_thread_flavor_explains_thread_per_core() {
        let (msg, blamed) = rejected(Macro::Main, "flavor = \"multi_thread\"");
        assert!(msg.starts_with("paste-rt is thread-per-core and has no `multi_thread` flavor"), "{msg}");
        assert!(msg.contains("write `threads = N`"), "{msg}");
        assert_eq!(blamed, "\"multi_thread\"");

        let (msg, blamed) = rejected(Macro::Test, "flavor = \"multi_thread\"");
        assert!(msg.contains("`#[paste_rt::test]` runs the body on one thread, so remove `flavor`"), "{msg}");
        assert_eq!(blamed, "\"multi_thread\"");

        let (msg, blamed) = rejected(Macro::Main, "flavor = \"local\"");
        assert_eq!(msg, "unknown flavor \"local\"; paste-rt accepts only \"current_thread\"");
        assert_eq!(blamed, "\"local\"");
    }

    #[test]
    fn repeated_options_are_rejected_at_the_second_name() {
        let (msg, blamed) = rejected(Macro::Main, "backend = \"epoll\", backend = \"epoll\"");
        assert_eq!(msg, "`backend` is given twice");
        assert_eq!(blamed, "backend");
        // The second `backend`, not the first: its column is after the comma.
        let error = parse_str(Macro::Main, "backend = \"epoll\", backend = \"epoll\"").err().unwrap();
        assert_eq!(error.span().start().column, 19);

        assert_eq!(rejected(Macro::Test, "crate = \"a\", crate = \"b\"").0, "`crate` is given twice");
    }

    #[test]
    fn two_ways_of_setting_the_thread_count_conflict() {
        let cases = [
            ("threads = 2, worker_threads = 2", "`threads`", "worker_threads"),
            ("flavor = \"current_thread\", threads = 1", "`flavor`", "threads"),
            ("worker_threads = 4, flavor = \"current_thread\"", "`worker_threads`", "flavor"),
        ];
        for (args, first, second) in cases {
            let (msg, blamed) = rejected(Macro::Main, args);
            let expected = format!(
                "the thread count is already set by {first}; keep only one of `threads`, `worker_threads` and `flavor`"
            );
            assert_eq!(msg, expected);
            assert_eq!(blamed, second);
        }
    }

    #[test]
    fn unknown_and_unsupported_options_are_rejected_at_the_name() {
        let cases = [
            (Macro::Main, "start_paused = true", "`start_paused` is a tokio option that paste-rt does not support; remove it"),
            (Macro::Test, "unhandled_panic = \"shutdown_runtime\"", "`unhandled_panic` is a tokio option that paste-rt does not support; remove it"),
            (
                Macro::Main,
                "thread = 2",
                "unknown option `thread` for `#[paste_rt::main]`; expected `backend`, `threads` or `crate` (tokio's `flavor = \"current_thread\"` and `worker_threads` are accepted too)",
            ),
            (
                Macro::Test,
                "backend = \"epoll\", retries = 3",
                "unknown option `retries` for `#[paste_rt::test]`; expected `backend` or `crate` (tokio's `flavor = \"current_thread\"` is accepted too)",
            ),
            (Macro::TestEachBackend, "multi_thread", "unknown option `multi_thread` for `#[paste_rt::test_each_backend]`; expected only `crate`"),
        ];
        for (which, args, message) in cases {
            let (msg, blamed) = rejected(which, args);
            assert_eq!(msg, message);
            let name = args.rsplit(", ").next().unwrap().split(' ').next().unwrap();
            assert_eq!(blamed, name, "for `{args}`");
        }
    }

    #[test]
    fn test_attributes_reject_main_only_options() {
        let cases = [
            (Macro::Test, "threads = 2", "`#[paste_rt::test]` runs the test body on one thread; `threads` is an option of `#[paste_rt::main]`"),
            (Macro::Test, "worker_threads = 2", "`#[paste_rt::test]` runs the test body on one thread; `worker_threads` is an option of `#[paste_rt::main]`"),
            (
                Macro::TestEachBackend,
                "flavor = \"current_thread\"",
                "`#[paste_rt::test_each_backend]` runs the test body on one thread; `flavor` is an option of `#[paste_rt::main]`",
            ),
        ];
        for (which, args, message) in cases {
            assert_eq!(rejected(which, args), (message.to_string(), args.split(' ').next().unwrap().to_string()));
        }
        let (msg, blamed) = rejected(Macro::TestEachBackend, "backend = \"epoll\"");
        assert!(msg.starts_with("`#[paste_rt::test_each_backend]` runs the test once on every backend"), "{msg}");
        assert!(msg.ends_with("use `#[paste_rt::test(backend = \"…\")]`"), "{msg}");
        assert_eq!(blamed, "backend");
    }

    #[test]
    fn malformed_option_shapes_are_rejected() {
        let (msg, blamed) = rejected(Macro::Main, "threads(4)");
        assert_eq!((msg.as_str(), blamed.as_str()), ("write `threads = …`, not `threads(…)`", "threads(4)"));

        let (msg, blamed) = rejected(Macro::Main, "rt::threads = 4");
        assert!(msg.starts_with("expected an option name: `backend`, `threads` or `crate`"), "{msg}");
        assert_eq!(blamed, "rt::threads");

        // syn's own parse errors keep their position too.
        let (msg, blamed) = rejected(Macro::Main, "threads = 4 backend = \"epoll\"");
        assert_eq!((msg.as_str(), blamed.as_str()), ("expected `,`", "backend"));
        let (msg, blamed) = rejected(Macro::Main, "\"epoll\"");
        assert_eq!((msg.as_str(), blamed.as_str()), ("expected identifier", "\"epoll\""));
    }
}
