//! memcached's `stats`: the counters a memcached-compatible server keeps and the
//! general-purpose `STAT` lines it reports (`pid`, `uptime`, `time`, `version`,
//! connections, command and hit counters, items, bytes, limits, threads, …).
//!
//! Owns the counters — plain integers, bumped by the store for each command and by
//! the server for each connection and received buffer — and the exact reply
//! format. It never decides what a command does; it formats numbers on the stack
//! and never allocates. Reading the process's CPU time is one `getrusage` call per
//! `stats` request (never on another command's path).

use super::response::ResponseSink;

/// Counters of one store (one runtime thread's share of the server).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Connections open now.
    pub curr_connections: u64,
    /// Connections accepted since start.
    pub total_connections: u64,
    /// Bytes received from clients.
    pub bytes_read: u64,
    /// Keys asked for by `get`/`gets` (each key of a multi-get counts).
    pub cmd_get: u64,
    /// Storage commands (`set`, `add`, `replace`, `append`, `prepend`, `cas`).
    pub cmd_set: u64,
    /// `flush_all` commands.
    pub cmd_flush: u64,
    /// `touch` commands.
    pub cmd_touch: u64,
    /// Keys found by `get`/`gets`.
    pub get_hits: u64,
    /// Keys not found by `get`/`gets`.
    pub get_misses: u64,
    /// `delete` of a present key.
    pub delete_hits: u64,
    /// `delete` of a missing key.
    pub delete_misses: u64,
    /// `incr` of a present key.
    pub incr_hits: u64,
    /// `incr` of a missing key.
    pub incr_misses: u64,
    /// `decr` of a present key.
    pub decr_hits: u64,
    /// `decr` of a missing key.
    pub decr_misses: u64,
    /// `cas` that stored.
    pub cas_hits: u64,
    /// `cas` of a missing key.
    pub cas_misses: u64,
    /// `cas` with a stale unique.
    pub cas_badval: u64,
    /// `touch` of a present key.
    pub touch_hits: u64,
    /// `touch` of a missing key.
    pub touch_misses: u64,
    /// Items stored since start.
    pub total_items: u64,
}

impl Counters {
    /// `stats reset`: zeroes what memcached zeroes (everything but the gauges:
    /// connections open now).
    pub fn reset(&mut self) {
        *self = Counters { curr_connections: self.curr_connections, ..Counters::default() };
    }
}

/// What a `stats` reply reports besides the counters.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot<'a> {
    /// Unix seconds now.
    pub now: u64,
    /// Unix seconds at start.
    pub started: u64,
    /// `version`.
    pub version: &'a str,
    /// Runtime threads of the server.
    pub threads: usize,
    /// Items held (expired ones included until they are dropped).
    pub curr_items: u64,
    /// Bytes charged for them.
    pub bytes: u64,
    /// The memory budget.
    pub limit_maxbytes: u64,
}

/// Writes the general-purpose `stats` reply: one `STAT <name> <value>` line per
/// field, in memcached's order, then `END`.
pub fn write_stats(out: &mut impl ResponseSink, c: &Counters, s: &Snapshot<'_>) {
    let (user, system) = cpu_time();
    stat(out, "pid", u64::from(std::process::id()));
    stat(out, "uptime", s.now.saturating_sub(s.started));
    stat(out, "time", s.now);
    stat_str(out, "version", s.version.as_bytes());
    stat(out, "pointer_size", (usize::BITS) as u64);
    stat_time(out, "rusage_user", user);
    stat_time(out, "rusage_system", system);
    stat(out, "curr_connections", c.curr_connections);
    stat(out, "total_connections", c.total_connections);
    for (name, value) in [
        ("cmd_get", c.cmd_get),
        ("cmd_set", c.cmd_set),
        ("cmd_flush", c.cmd_flush),
        ("cmd_touch", c.cmd_touch),
        ("get_hits", c.get_hits),
        ("get_misses", c.get_misses),
        ("delete_misses", c.delete_misses),
        ("delete_hits", c.delete_hits),
        ("incr_misses", c.incr_misses),
        ("incr_hits", c.incr_hits),
        ("decr_misses", c.decr_misses),
        ("decr_hits", c.decr_hits),
        ("cas_misses", c.cas_misses),
        ("cas_hits", c.cas_hits),
        ("cas_badval", c.cas_badval),
        ("touch_hits", c.touch_hits),
        ("touch_misses", c.touch_misses),
        ("bytes_read", c.bytes_read),
    ] {
        stat(out, name, value);
    }
    stat(out, "limit_maxbytes", s.limit_maxbytes);
    stat(out, "threads", s.threads as u64);
    stat(out, "curr_items", s.curr_items);
    stat(out, "total_items", c.total_items);
    stat(out, "bytes", s.bytes);
    // No LRU: a store over budget refuses (SERVER_ERROR out of memory) instead.
    stat(out, "evictions", 0);
    out.put(b"END\r\n");
}

fn stat(out: &mut impl ResponseSink, name: &str, value: u64) {
    let mut digits = itoa::Buffer::new();
    stat_str(out, name, digits.format(value).as_bytes());
}

fn stat_str(out: &mut impl ResponseSink, name: &str, value: &[u8]) {
    out.put(b"STAT ");
    out.put(name.as_bytes());
    out.put(b" ");
    out.put(value);
    out.put(b"\r\n");
}

/// `seconds.micros`, as memcached prints CPU time.
fn stat_time(out: &mut impl ResponseSink, name: &str, (secs, micros): (u64, u32)) {
    let mut line = [0u8; 32];
    let mut digits = itoa::Buffer::new();
    let s = digits.format(secs).as_bytes();
    line[..s.len()].copy_from_slice(s);
    line[s.len()] = b'.';
    let mut n = micros;
    for i in (0..6).rev() {
        line[s.len() + 1 + i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    stat_str(out, name, &line[..s.len() + 7]);
}

/// The process's user and system CPU time, as (seconds, microseconds); zeros if
/// the kernel will not say.
fn cpu_time() -> ((u64, u32), (u64, u32)) {
    // SAFETY: getrusage writes one `struct rusage` into the zeroed value we own.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return ((0, 0), (0, 0));
        }
        usage
    };
    let split = |t: libc::timeval| (t.tv_sec.max(0) as u64, t.tv_usec.clamp(0, 999_999) as u32);
    (split(usage.ru_utime), split(usage.ru_stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reply_is_stat_lines_then_end() {
        let c = Counters { cmd_get: 3, get_hits: 2, get_misses: 1, curr_connections: 1, ..Counters::default() };
        let s = Snapshot {
            now: 1_000_100,
            started: 1_000_000,
            version: "1.6.0-paste-rt",
            threads: 2,
            curr_items: 5,
            bytes: 300,
            limit_maxbytes: 64 << 20,
        };
        let mut out = Vec::new();
        write_stats(&mut out, &c, &s);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(lines[lines.len() - 2..], ["END", ""]);
        for line in &lines[..lines.len() - 2] {
            let parts: Vec<&str> = line.split(' ').collect();
            assert_eq!((parts.len(), parts[0]), (3, "STAT"), "{line:?}");
        }
        for expected in [
            format!("STAT pid {}", std::process::id()),
            "STAT uptime 100".into(),
            "STAT time 1000100".into(),
            "STAT version 1.6.0-paste-rt".into(),
            "STAT cmd_get 3".into(),
            "STAT get_hits 2".into(),
            "STAT get_misses 1".into(),
            "STAT curr_connections 1".into(),
            "STAT threads 2".into(),
            "STAT curr_items 5".into(),
            "STAT bytes 300".into(),
            "STAT limit_maxbytes 67108864".into(),
            "STAT evictions 0".into(),
        ] {
            assert!(lines.contains(&expected.as_str()), "{expected} missing from\n{text}");
        }
        let rusage = lines.iter().find_map(|l| l.strip_prefix("STAT rusage_user ")).unwrap();
        let (secs, micros) = rusage.split_once('.').unwrap();
        assert!(secs.parse::<u64>().is_ok() && micros.len() == 6, "{rusage}");
    }

    #[test]
    fn reset_keeps_the_open_connections() {
        let mut c = Counters { curr_connections: 4, total_connections: 9, cmd_set: 7, ..Counters::default() };
        c.reset();
        assert_eq!(c, Counters { curr_connections: 4, ..Counters::default() });
    }
}
