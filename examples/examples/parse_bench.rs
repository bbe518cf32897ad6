//! Instruction-count bench for the request parser: instructions per request, counted by
//! callgrind (instructions, not time, so it can be compared on a busy machine).
//!
//! `parse_bench KIND N` parses KIND's request N times, one request per chunk as a server
//! receives it, pulling every event (`Head`, any `Body`, `End`, and the final `None`)
//! the way phttpd does. By itself it measures nothing; run it under callgrind twice and
//! divide: instructions per request = (Ir(N) - Ir(0)) / N, which cancels start-up.
//!
//! `parse_bench --callgrind [KIND...]` does exactly that: it runs itself under
//! `valgrind --tool=callgrind` with N = 0 and N = 100 000 for each kind (all kinds when
//! none is named) and prints the result, both for the whole run and for the parser's
//! own code alone (the lines of `src/http/request*`, and library code inlined into the
//! parser's functions), which leaves out this loop. It needs valgrind on the `PATH`.
//!
//! Kinds: `get`, the 44-byte wrk request of the PASTE paper's rpc workload (the request
//! every `paste-bench` rpc client sends); `post`, the wal workload's POST with a 1 KiB
//! body; `browser`, a GET with the headers a browser sends, to show the cost of longer
//! heads; `split`, the `get` request cut in two chunks, which the byte-at-a-time state
//! machine parses.

use std::hint::black_box;
use std::process::{Command, ExitCode};

use paste_rt_examples::http::{self, Event, RequestParser, WRK_GET_PAPER};

/// Requests per measured run of `--callgrind`.
const MEASURED: usize = 100_000;

/// Every request kind, in the order `--callgrind` reports them.
const KINDS: [&str; 4] = ["get", "post", "browser", "split"];

/// Counts of what a run parsed, so that nothing is optimised away and every run is checked.
#[derive(Debug, Default, PartialEq, Eq)]
struct Parsed {
    heads: usize,
    path_bytes: usize,
    body_bytes: usize,
    ends: usize,
    errors: usize,
}

/// Parses the request in `chunks` `n` times, each chunk as one receive.
#[inline(never)]
fn run(parser: &mut RequestParser, chunks: &[&[u8]], n: usize) -> Parsed {
    let mut parsed = Parsed::default();
    match chunks {
        // The common case on its own, so that the loop over chunks costs nothing there.
        // The bytes are hidden from the optimiser once: it must not parse them at compile
        // time, but it may keep the chunk in registers.
        [chunk] => {
            let chunk = black_box(*chunk);
            for _ in 0..n {
                receive(parser, chunk, &mut parsed);
            }
        }
        _ => {
            let chunks = black_box(chunks);
            for _ in 0..n {
                for chunk in chunks {
                    receive(parser, chunk, &mut parsed);
                }
            }
        }
    }
    parsed
}

/// Pulls every event out of one received chunk, as phttpd does.
#[inline(always)]
fn receive(parser: &mut RequestParser, chunk: &[u8], parsed: &mut Parsed) {
    let mut pos = 0;
    while let Some(event) = parser.next_event(chunk, &mut pos) {
        match event {
            Event::Head(head) => {
                parsed.heads += 1;
                parsed.path_bytes += head.path.len();
            }
            Event::Body(range) => parsed.body_bytes += range.len(),
            Event::End => parsed.ends += 1,
            Event::Error(_) => parsed.errors += 1,
        }
    }
}

/// The request bytes of `kind`, whole.
fn request(kind: &str) -> Result<Vec<u8>, String> {
    Ok(match kind {
        "get" | "split" => WRK_GET_PAPER.to_vec(),
        "post" => {
            let body = vec![b'w'; 1024];
            let mut post = vec![0u8; http::post_request_len(4, 18, body.len())];
            http::write_post_request(b"/wal", b"192.168.11.3:60000", &body, &mut post);
            post
        }
        "browser" => b"GET /index.html HTTP/1.1\r\nHost: www.example.com\r\n\
            User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
            Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
            Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\n\
            Connection: keep-alive\r\nUpgrade-Insecure-Requests: 1\r\n\r\n"
            .to_vec(),
        other => return Err(format!("unknown request kind {other:?} (one of {})", KINDS.join(", "))),
    })
}

/// Parses `kind`'s request `n` times and checks what came out.
fn parse(kind: &str, n: usize) -> Result<(), String> {
    let bytes = request(kind)?;
    let chunks: Vec<&[u8]> = match kind {
        // Cut inside the header line: the head is never whole in one chunk.
        "split" => vec![&bytes[..20], &bytes[20..]],
        _ => vec![&bytes],
    };
    let parsed = run(&mut RequestParser::new(), &chunks, n);
    if (parsed.heads, parsed.ends, parsed.errors) != (n, n, 0) {
        return Err(format!("{kind}: {n} requests parsed as {parsed:?}"));
    }
    println!("{kind}: {n} requests of {} bytes, {} body bytes", bytes.len(), parsed.body_bytes);
    Ok(())
}

/// Instructions of one callgrind run: all of them, and those in the parser's code.
#[derive(Debug, Clone, Copy)]
struct Counted {
    all: u64,
    parser: u64,
}

/// Runs `parse_bench kind n` under callgrind and counts its instructions.
fn callgrind(kind: &str, n: usize) -> Result<Counted, String> {
    let exe = std::env::current_exe().map_err(|e| format!("finding this executable: {e}"))?;
    let out = std::env::temp_dir().join(format!("parse_bench.{}.{kind}.{n}.callgrind", std::process::id()));
    let output = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(&exe)
        .args([kind, &n.to_string()])
        .output()
        .map_err(|e| format!("running valgrind (is it installed?): {e}"))?;
    let profile = std::fs::read_to_string(&out);
    let _ = std::fs::remove_file(&out);
    if !output.status.success() {
        let log = String::from_utf8_lossy(&output.stderr);
        return Err(format!("valgrind {} {kind} {n} failed ({}):\n{log}", exe.display(), output.status));
    }
    let profile = profile.map_err(|e| format!("reading the callgrind profile {}: {e}", out.display()))?;
    Ok(count(&profile))
}

/// Whether code is the parser's: in its source files, or inlined into its functions.
fn is_parser_code(file: &str, function: &str) -> bool {
    file.contains("src/http/request") || function.contains("http::request::")
}

/// Adds up a callgrind profile's self costs (the instructions of each source line),
/// attributing each to its source file and function.
///
/// The format, as callgrind writes it by default: `fl=`/`fi=`/`fe=` name the source
/// file of the lines that follow (`fn=` returns to the function's `fl=` file), `fn=` the
/// function; a name is written `(id) name` the first time, `(id)` after, and the `c`
/// forms (`cfl=`, `cfn=`...) define names too; a cost line is a position and the
/// count; the cost line right after `calls=` is a call's inclusive cost, not counted.
fn count(profile: &str) -> Counted {
    let mut files = std::collections::HashMap::new();
    let mut functions = std::collections::HashMap::new();
    let (mut function_file, mut file, mut function) = (String::new(), String::new(), String::new());
    let mut call_cost_next = false;
    let mut counted = Counted { all: 0, parser: 0 };
    for line in profile.lines() {
        if line.starts_with(|c: char| c.is_ascii_digit() || matches!(c, '+' | '-' | '*')) {
            if std::mem::take(&mut call_cost_next) {
                continue;
            }
            let cost: u64 = line.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
            counted.all += cost;
            if is_parser_code(&file, &function) {
                counted.parser += cost;
            }
            continue;
        }
        let Some((key, value)) = line.split_once('=') else { continue };
        match key {
            "fl" => {
                function_file = name(&mut files, value);
                file = function_file.clone();
            }
            "fi" | "fe" => file = name(&mut files, value),
            "fn" => {
                function = name(&mut functions, value);
                file = function_file.clone();
            }
            "cfl" | "cfi" | "cfe" => {
                name(&mut files, value);
            }
            "cfn" => {
                name(&mut functions, value);
            }
            "calls" => call_cost_next = true,
            _ => {}
        }
    }
    counted
}

/// Resolves a compressed callgrind name, `(id) name` (which defines it) or `(id)`.
fn name(names: &mut std::collections::HashMap<String, String>, value: &str) -> String {
    match value.strip_prefix('(').and_then(|rest| rest.split_once(')')) {
        Some((id, defined)) if !defined.trim().is_empty() => {
            names.insert(id.to_string(), defined.trim().to_string());
            defined.trim().to_string()
        }
        Some((id, _)) => names.get(id).cloned().unwrap_or_default(),
        None => value.to_string(),
    }
}

/// Prints instructions per request for each kind, from two callgrind runs.
fn report(kinds: &[String]) -> Result<(), String> {
    println!("{:<8} {:>10} {:>10}", "kind", "instr/req", "in parser");
    for kind in kinds {
        request(kind)?;
        let base = callgrind(kind, 0)?;
        let measured = callgrind(kind, MEASURED)?;
        let per_request = |f: fn(Counted) -> u64| f(measured).saturating_sub(f(base)) as f64 / MEASURED as f64;
        println!("{kind:<8} {:>10.1} {:>10.1}", per_request(|c| c.all), per_request(|c| c.parser));
    }
    println!(
        "instr/req: everything the run executes per request, loop included; in parser: the \
         parser's own code (its source files, and library code inlined into its functions)"
    );
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("--callgrind") => {
            let kinds: Vec<String> =
                if args.len() > 1 { args[1..].to_vec() } else { KINDS.iter().map(|k| k.to_string()).collect() };
            report(&kinds)
        }
        kind => {
            let n = args.get(1).map_or(Ok(MEASURED), |s| s.parse().map_err(|e| format!("N {s:?}: {e}")));
            n.and_then(|n| parse(kind.unwrap_or("get"), n))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("parse_bench: {e}");
            ExitCode::FAILURE
        }
    }
}
