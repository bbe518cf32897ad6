//! The memcached text protocol (`paste_rt_examples::memcache`): the byte stream is
//! cut into chunks where the fuzzer says; the parser must hand out the same commands
//! (and the same fatal error) as when the stream is fed whole, and two stores
//! executing them must write the same replies and stay within their memory budget.

use paste_rt_examples::memcache::{CommandParser, Config, Flow, Store};

use super::input::chunks;

/// Commands (as text) and replies for `chunks`, up to a fatal error or a close.
fn serve(config: &Config, chunks: &[&[u8]]) -> (Vec<String>, Vec<u8>) {
    let mut parser = CommandParser::new(config);
    let mut store = Store::new(config);
    store.set_now(1_700_000_000);
    let mut commands = Vec::new();
    let mut replies = Vec::new();
    for chunk in chunks {
        let mut pos = 0;
        while let Some(result) = parser.next_command(chunk, &mut pos) {
            assert!(pos <= chunk.len());
            match result {
                Err(e) => {
                    commands.push(format!("fatal {e:?}"));
                    return (commands, replies);
                }
                Ok(command) => {
                    commands.push(format!("{command:?}"));
                    let flow = store.execute(command, &mut replies);
                    assert!(store.memory_used() <= config.max_memory, "store over its budget");
                    if flow == Flow::Close {
                        return (commands, replies);
                    }
                }
            }
        }
        assert_eq!(pos, chunk.len(), "the chunk was not consumed");
    }
    (commands, replies)
}

/// Checks the parser and store on the stream and cuts encoded in `data`.
pub fn run(data: &[u8]) {
    // Small limits, so that long lines, large values and a full store are reachable.
    let config = Config { max_line: 64, max_get_line: 256, max_item_size: 100, max_memory: 2048, ..Config::default() };
    let (stream, split) = chunks(data);
    let whole = serve(&config, &[stream]);
    let pieces = serve(&config, &split);
    assert_eq!(pieces.0, whole.0, "split, the parser saw other commands");
    assert!(without_cpu_time(&pieces.1) == without_cpu_time(&whole.1), "split, the store wrote other replies");
    if stream.len() <= 512 {
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(serve(&config, &bytes).0, whole.0, "byte by byte, the parser saw other commands");
    }
}

/// `replies` without the values of `stats`' CPU-time lines (they differ run to run).
fn without_cpu_time(replies: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(replies.len());
    let mut rest = replies;
    while let Some(at) = rest.windows(12).position(|w| w == b"STAT rusage_") {
        out.extend_from_slice(&rest[..at + 12]);
        rest = &rest[at + 12..];
        let end = rest.windows(2).position(|w| w == b"\r\n").unwrap_or(rest.len());
        out.extend(rest[..end].iter().filter(|b| !b.is_ascii_digit()));
        rest = &rest[end..];
    }
    out.extend_from_slice(rest);
    out
}
