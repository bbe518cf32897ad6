//! Parsed memcached commands.
//!
//! Owns the vocabulary shared by the parser and the store: one [`Command`] per request,
//! borrowing its keys and data from the received chunk or the parser's buffers. Holds
//! no logic beyond iterating a multi-get's keys.

use super::response::ErrorReply;

/// The storage commands: they carry a data block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOp {
    /// `set`: store unconditionally.
    Set,
    /// `add`: store only if the key is absent.
    Add,
    /// `replace`: store only if the key is present.
    Replace,
    /// `append`: add the data after an existing value (flags and exptime ignored).
    Append,
    /// `prepend`: add the data before an existing value (flags and exptime ignored).
    Prepend,
    /// `cas`: store only if the item's cas unique still matches.
    Cas,
}

/// `incr` or `decr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOp {
    /// `incr`: add, wrapping at 2^64.
    Incr,
    /// `decr`: subtract, stopping at 0.
    Decr,
}

/// One memcached request, ready to execute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    /// `get`/`gets <key>*`: one `VALUE` block per hit, then `END`.
    Get {
        /// The keys, in request order (already validated).
        keys: Keys<'a>,
        /// `gets`: also report each item's cas unique.
        with_cas: bool,
    },
    /// A storage command with its complete data block.
    Store {
        /// Which storage command.
        op: StoreOp,
        /// The key (1..=250 bytes, no control bytes or spaces).
        key: &'a [u8],
        /// Opaque client flags.
        flags: u32,
        /// memcached exptime: 0 never, up to 30 days relative, beyond that a unix
        /// time, negative already expired.
        exptime: i64,
        /// The cas unique to compare (only for [`StoreOp::Cas`]; 0 otherwise).
        cas_unique: u64,
        /// The value.
        data: &'a [u8],
        /// Send no reply.
        noreply: bool,
    },
    /// A storage command whose value exceeds the item size limit; its data block has
    /// been (or is being) skipped.
    StoreTooLarge {
        /// Which storage command (a too-large `set` also removes the old value).
        op: StoreOp,
        /// The key.
        key: &'a [u8],
        /// Send no reply.
        noreply: bool,
    },
    /// `delete <key> [noreply]`.
    Delete {
        /// The key.
        key: &'a [u8],
        /// Send no reply.
        noreply: bool,
    },
    /// `incr`/`decr <key> <delta> [noreply]`.
    Arith {
        /// Which one.
        op: ArithOp,
        /// The key.
        key: &'a [u8],
        /// The amount.
        delta: u64,
        /// Send no reply.
        noreply: bool,
    },
    /// `touch <key> <exptime> [noreply]`.
    Touch {
        /// The key.
        key: &'a [u8],
        /// New exptime (same rules as for storage commands).
        exptime: i64,
        /// Send no reply.
        noreply: bool,
    },
    /// `flush_all [delay] [noreply]`: invalidate every item now, or at `delay`.
    FlushAll {
        /// 0 (or negative) for now; otherwise an exptime-style time.
        delay: i64,
        /// Send no reply.
        noreply: bool,
    },
    /// `version`.
    Version,
    /// `stats`: the general-purpose statistics, `STAT` lines then `END`.
    Stats,
    /// `stats reset`: zero the counters; `RESET`.
    StatsReset,
    /// `verbosity <level> [noreply]`: accepted (`OK`); kv logs nothing per command.
    Verbosity {
        /// Send no reply.
        noreply: bool,
    },
    /// A binary-protocol request (its first byte is the binary magic 0x80): kv speaks
    /// only the text protocol, so it answers the binary "unknown command" error and
    /// closes the connection.
    Binary {
        /// The request's opcode, echoed in the error.
        opcode: u8,
        /// The request's opaque, echoed in the error.
        opaque: [u8; 4],
    },
    /// `quit`: close the connection without a reply.
    Quit,
    /// A request that only earns an error line.
    Error {
        /// The error line to send.
        reply: ErrorReply,
        /// Send no reply (memcached honours a trailing `noreply` even for errors it
        /// finds after reading it).
        noreply: bool,
    },
}

/// The keys of a `get`/`gets`: space-separated tokens of the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys<'a> {
    rest: &'a [u8],
}

impl<'a> Keys<'a> {
    /// Keys from the part of a command line after `get`/`gets` (spaces separate keys).
    pub fn new(rest: &'a [u8]) -> Self {
        Keys { rest }
    }
}

impl<'a> Iterator for Keys<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let start = self.rest.iter().position(|&b| b != b' ')?;
        let rest = &self.rest[start..];
        let end = rest.iter().position(|&b| b == b' ').unwrap_or(rest.len());
        self.rest = &rest[end..];
        Some(&rest[..end])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_on_runs_of_spaces() {
        let keys: Vec<&[u8]> = Keys::new(b"  a bb   ccc ").collect();
        assert_eq!(keys, vec![&b"a"[..], b"bb", b"ccc"]);
        assert_eq!(Keys::new(b"   ").count(), 0);
        assert_eq!(Keys::new(b"").count(), 0);
    }
}
