//! Reading callgrind's output files: the total `Ir` of a dump, the `Ir` spent
//! inside one function and everything it called (its inclusive cost), and how many
//! calls some functions received.
//!
//! Owns the parsing of callgrind's format (version 1: `events:`, `positions:`,
//! name compression `fn=(id) name`, call lines `calls=` followed by the call's
//! inclusive cost). It reads text only: it starts nothing and touches no file.

use std::collections::HashMap;

/// Why a callgrind output did not yield the figure asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// No `events:` line.
    #[error("no `events:` line: not a callgrind output, or an unfinished one")]
    NoEvents,
    /// The events do not include `Ir`.
    #[error("the events ({0}) do not include Ir")]
    NoIr(String),
    /// Neither `totals:` nor `summary:`.
    #[error("no `totals:` or `summary:` line: an unfinished output")]
    NoTotals,
    /// A total that is not a number.
    #[error("unreadable total line {0:?}")]
    BadTotal(String),
    /// The function asked for ran in none of the dump's instructions.
    #[error("function `{0}` is not in the profile: renamed, or inlined into its caller")]
    NoFunction(String),
    /// A cost line that is not numbers.
    #[error("unreadable cost line {0:?}")]
    BadCost(String),
}

/// The position of `Ir` among the events of an `events:` line.
fn ir_index(events: &str) -> Result<usize, ParseError> {
    let names: Vec<&str> = events.split_whitespace().collect();
    names.iter().position(|e| *e == "Ir").ok_or_else(|| ParseError::NoIr(names.join(" ")))
}

/// The total `Ir` (instructions executed) of a callgrind output: the `totals:`
/// line (else `summary:`), at the position of `Ir` in the `events:` line.
pub fn parse_total_ir(text: &str) -> Result<u64, ParseError> {
    let mut events: Option<&str> = None;
    let (mut totals, mut summary) = (None, None);
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("events:") {
            events.get_or_insert(rest);
        } else if let Some(rest) = line.strip_prefix("totals:") {
            totals = Some(rest);
        } else if let Some(rest) = line.strip_prefix("summary:") {
            summary = Some(rest);
        }
    }
    let index = ir_index(events.ok_or(ParseError::NoEvents)?)?;
    let line = totals.or(summary).ok_or(ParseError::NoTotals)?;
    let value = line.split_whitespace().nth(index).ok_or_else(|| ParseError::BadTotal(line.trim().to_owned()))?;
    value.parse().map_err(|_| ParseError::BadTotal(line.trim().to_owned()))
}

/// The `Ir` of every function whose name is exactly `function`, inclusive: its
/// own instructions (code inlined into it included) plus the inclusive cost of
/// every call it made, summed over all its entries in the file (each object file,
/// source file and thread). A function that called itself would count the inner
/// calls twice; callers measure functions that do not. Returns 0 when the function
/// does not appear (it did not run, or the compiler inlined it away).
pub fn parse_inclusive_ir(text: &str, function: &str) -> Result<u64, ParseError> {
    let mut positions = 1usize;
    let mut ir: Option<usize> = None;
    // `fn=` and `cfn=` share one compression table.
    let mut names: HashMap<&str, &str> = HashMap::new();
    let mut inside = false;
    let mut total = 0u64;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("positions:") {
            positions = rest.split_whitespace().count().max(1);
        } else if let Some(rest) = line.strip_prefix("events:") {
            ir.get_or_insert(ir_index(rest)?);
        } else if let Some(rest) = line.strip_prefix("fn=") {
            inside = function_name(rest, &mut names) == Some(function);
        } else if let Some(rest) = line.strip_prefix("cfn=") {
            function_name(rest, &mut names);
        } else if inside && line.starts_with(|c: char| c.is_ascii_digit() || matches!(c, '+' | '-' | '*')) {
            // A cost line: the function's own, or (after `calls=`) the inclusive
            // cost of one call it made. Either counts.
            let index = ir.ok_or(ParseError::NoEvents)?;
            total += cost_at(line, positions + index)?;
        }
        // Other lines (`calls=`, fl=, fi=, fe=, ob=, cob=, cfi=, comments) keep
        // the current function.
    }
    if ir.is_none() {
        return Err(ParseError::NoEvents);
    }
    Ok(total)
}

/// How many calls the output records to functions named in `functions` — exactly,
/// or with a symbol version after `@` (`epoll_wait@@GLIBC_2.3.2`) — from every
/// caller, summed.
pub fn parse_calls(text: &str, functions: &[&str]) -> Result<u64, ParseError> {
    let mut names: HashMap<&str, &str> = HashMap::new();
    let mut events = false;
    // Each `calls=` line counts calls to the function its preceding `cfn=` named.
    let mut callee_wanted = false;
    let mut total = 0u64;
    for line in text.lines() {
        if line.starts_with("events:") {
            events = true;
        } else if let Some(rest) = line.strip_prefix("fn=") {
            function_name(rest, &mut names);
            callee_wanted = false;
        } else if let Some(rest) = line.strip_prefix("cfn=") {
            callee_wanted = function_name(rest, &mut names).is_some_and(|name| {
                let symbol = name.split_once('@').map_or(name, |(base, _)| base);
                functions.contains(&symbol)
            });
        } else if let Some(rest) = line.strip_prefix("calls=") {
            if callee_wanted {
                let count = rest.split_whitespace().next().and_then(|v| v.parse::<u64>().ok());
                total += count.ok_or_else(|| ParseError::BadCost(line.trim().to_owned()))?;
            }
        }
    }
    if !events {
        return Err(ParseError::NoEvents);
    }
    Ok(total)
}

/// The name behind `fn=` / `cfn=`'s value: `(id) name` defines `id`, `(id)` refers
/// to it, and a bare `name` is uncompressed.
fn function_name<'a>(value: &'a str, names: &mut HashMap<&'a str, &'a str>) -> Option<&'a str> {
    let value = value.trim();
    let Some(rest) = value.strip_prefix('(') else { return Some(value) };
    let (id, name) = rest.split_once(')')?;
    let name = name.trim();
    if name.is_empty() {
        names.get(id).copied()
    } else {
        names.insert(id, name);
        Some(name)
    }
}

/// The number at column `column` of a cost line; a missing column is 0 (callgrind
/// leaves trailing zero costs out).
fn cost_at(line: &str, column: usize) -> Result<u64, ParseError> {
    match line.split_whitespace().nth(column) {
        None => Ok(0),
        Some(v) => v.parse().map_err(|_| ParseError::BadCost(line.trim().to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/bin/true` under callgrind 3.19 (a snippet: header, some costs, totals).
    const TRUE: &str = include_str!("../tests/fixtures/true.callgrind.out");
    /// The same with `--cache-sim=yes`: nine events, and a summary that differs
    /// from the totals by two (callgrind's own rounding); the totals win.
    const TRUE_CACHE_SIM: &str = include_str!("../tests/fixtures/true-cache-sim.callgrind.out");
    /// A `callgrind_control --dump` part of raw-uring serving 2 000 rpc requests.
    const DUMP: &str = include_str!("../tests/fixtures/raw-uring-dump.callgrind.out");

    /// Calls as callgrind writes them: compressed names defined at first use and
    /// referred to after, a versioned libc symbol, and names that only look alike.
    const CALLS: &str = "version: 1\ncreator: callgrind-3.19.0\npositions: line\nevents: Ir\n\
        fn=(1) paste_rt::runtime::Runtime::block_on\n10 5\n\
        cfn=(2) epoll_wait@@GLIBC_2.3.2\ncalls=7 0\n11 70\n\
        cfn=(3) syscall\ncalls=5 0\n12 50\n\
        cfn=(4) epoll_waitx\ncalls=100 0\n13 9\n\
        cfn=(5) my::syscall\ncalls=100 0\n13 9\n\
        fn=(6) other\n20 1\n\
        cfn=(2)\ncalls=3 0\n21 30\n\
        cfn=(7) poll\ncalls=2 0\n22 20\n\
        fn=(2)\n1 999\n\
        totals: 1197\n";

    #[test]
    fn counts_calls_of_the_named_functions() {
        assert_eq!(parse_calls(CALLS, &["epoll_wait"]), Ok(10), "7 + 3 through the compressed name");
        assert_eq!(parse_calls(CALLS, &["syscall"]), Ok(5), "a qualified name is another function");
        assert_eq!(parse_calls(CALLS, &["epoll_wait", "poll", "syscall"]), Ok(17));
        assert_eq!(parse_calls(CALLS, &["io_uring_enter"]), Ok(0));
        assert_eq!(parse_calls(DUMP, &["main"]), Ok(0));
        assert_eq!(parse_calls("hello\n", &["main"]), Err(ParseError::NoEvents));
        let bad = "events: Ir\nfn=a\ncfn=poll\ncalls=many 0\n";
        assert!(matches!(parse_calls(bad, &["poll"]), Err(ParseError::BadCost(_))));
    }

    #[test]
    fn parses_total_ir_of_real_outputs() {
        assert_eq!(parse_total_ir(TRUE), Ok(126_651));
        assert_eq!(parse_total_ir(TRUE_CACHE_SIM), Ok(126_651));
        assert_eq!(parse_total_ir(DUMP), Ok(4_705_761));
    }

    #[test]
    fn falls_back_to_summary_and_finds_ir_anywhere() {
        let no_totals: String =
            TRUE_CACHE_SIM.lines().filter(|l| !l.starts_with("totals:")).collect::<Vec<_>>().join("\n");
        assert_eq!(parse_total_ir(&no_totals), Ok(126_653));
        let moved = "events: Dr Ir\nsummary: 5 7\ntotals: 5 9\n";
        assert_eq!(parse_total_ir(moved), Ok(9));
    }

    #[test]
    fn rejects_unfinished_or_foreign_outputs() {
        let header_only: String =
            TRUE.lines().take_while(|l| !l.starts_with("summary:")).collect::<Vec<_>>().join("\n");
        assert_eq!(parse_total_ir(&header_only), Err(ParseError::NoTotals));
        assert_eq!(parse_total_ir("hello\nworld\n"), Err(ParseError::NoEvents));
        assert_eq!(parse_total_ir(""), Err(ParseError::NoEvents));
        assert_eq!(parse_total_ir("events: Dr Dw\ntotals: 1 2\n"), Err(ParseError::NoIr("Dr Dw".into())));
        assert!(matches!(parse_total_ir("events: Ir\ntotals: lots\n"), Err(ParseError::BadTotal(_))));
        assert!(matches!(parse_total_ir("events: Dr Ir\ntotals: 4\n"), Err(ParseError::BadTotal(_))));
        assert_eq!(parse_inclusive_ir("hello\n", "main"), Err(ParseError::NoEvents));
        assert!(matches!(parse_inclusive_ir("events: Ir\nfn=main\n3 x\n", "main"), Err(ParseError::BadCost(_))));
    }

    #[test]
    fn the_outermost_function_includes_the_whole_dump() {
        // Everything the server ran in this part is below the dynamic loader's
        // entry, which called `(below main)` (itself never listed with a cost of
        // its own, so it has no `fn=` entry and reads as 0).
        assert_eq!(parse_inclusive_ir(DUMP, "0x000000000001ab70"), Ok(4_705_761));
        assert_eq!(parse_inclusive_ir(DUMP, "(below main)"), Ok(0));
    }

    #[test]
    fn inclusive_cost_is_own_code_plus_the_calls_it_made() {
        // As `callgrind_annotate --inclusive=yes` reports it, summed over the
        // function's source files (its own and what was inlined into it).
        assert_eq!(parse_inclusive_ir(DUMP, "io_uring::submit::Submitter::submit_and_wait"), Ok(11_300));
        assert_eq!(parse_inclusive_ir(DUMP, "no::such::function"), Ok(0));
    }

    #[test]
    fn follows_name_compression_positions_and_event_columns() {
        let text = "positions: instr line\nevents: Dr Ir\n\
                    fn=(1) outer\n0x10 3 1 5\n+2 * 0 7\ncfn=(2) inner\ncalls=1 0x40 9\n+1 4 2 11\n\
                    fn=(2)\n0x40 9 4 6\n\
                    fn=(3) other\n0x50 1 100 100\ncfn=(1)\ncalls=1 0x10\n0x51 2 0 23\n\
                    fn=(1)\n0x12 4 0 2\n";
        assert_eq!(parse_inclusive_ir(text, "outer"), Ok(5 + 7 + 11 + 2));
        assert_eq!(parse_inclusive_ir(text, "inner"), Ok(6));
        assert_eq!(parse_inclusive_ir(text, "other"), Ok(100 + 23));
        assert_eq!(parse_inclusive_ir("events: Ir\nfn=f\n3 4\n4\n", "f"), Ok(4), "a missing cost is zero");
    }
}
