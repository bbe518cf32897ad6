//! The in-memory item table and command executor.
//!
//! Owns the items (value, flags, expiry, cas unique) and memcached's rules for each
//! command: relative versus absolute exptimes (more than 30 days is a unix time),
//! `incr` wrapping at 2^64 and `decr` stopping at 0, cas uniques, delayed
//! `flush_all`, and the [`Counters`] memcached's `stats` reports. Time comes only
//! from [`Store::set_now`], so tests are deterministic. It never parses bytes and
//! never does I/O; a `get` hit allocates nothing.

use std::collections::HashMap;

use super::command::{ArithOp, Command, StoreOp};
use super::response::{
    put_binary_unknown_command, put_number, put_value, ErrorReply, ResponseSink, DELETED, END, EXISTS, NOT_FOUND,
    NOT_STORED, OK, RESET, STORED, TOUCHED,
};
use super::stats::{write_stats, Counters, Snapshot};
use super::Config;

/// memcached's `REALTIME_MAXDELTA`: exptimes above this (30 days) are unix times.
const MAX_RELATIVE_EXPTIME: i64 = 60 * 60 * 24 * 30;

/// Bytes charged per item on top of its key and value (memcached's item header is
/// about this size).
const ITEM_OVERHEAD: usize = 48;

/// What the connection does after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep reading commands.
    Continue,
    /// Close the connection (`quit`) once the replies written so far are sent.
    Close,
}

/// A stored value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    value: Vec<u8>,
    flags: u32,
    /// Unix time at which the item stops being visible; `None` never.
    expires_at: Option<u64>,
    cas: u64,
    /// Unix time of the last store (for delayed `flush_all`).
    updated_at: u64,
}

impl Item {
    /// The value bytes.
    pub fn value(&self) -> &[u8] {
        &self.value
    }

    /// The client flags.
    pub fn flags(&self) -> u32 {
        self.flags
    }

    /// The cas unique (changes on every modification).
    pub fn cas(&self) -> u64 {
        self.cas
    }

    /// Unix time from which the item is gone; `None` if it never expires.
    pub fn expires_at(&self) -> Option<u64> {
        self.expires_at
    }

    fn is_live(&self, now: u64) -> bool {
        match self.expires_at {
            None => true,
            Some(t) => t > now,
        }
    }
}

/// Size charged against the memory budget for an item.
fn charge(key_len: usize, value_len: usize) -> usize {
    ITEM_OVERHEAD + key_len + value_len
}

/// memcached's item table, executing [`Command`]s.
///
/// ```
/// use paste_rt_examples::memcache::{ArithOp, Command, Config, Store};
///
/// let mut store = Store::new(&Config::default());
/// let mut out = Vec::new();
/// store.execute(Command::Arith { op: ArithOp::Incr, key: b"n", delta: 1, noreply: false }, &mut out);
/// assert_eq!(out, b"NOT_FOUND\r\n");
/// ```
#[derive(Debug, Clone)]
pub struct Store {
    items: HashMap<Box<[u8]>, Item>,
    now: u64,
    next_cas: u64,
    /// Bytes charged for the items held (expired ones included until dropped).
    used: usize,
    /// A delayed `flush_all`: items stored before this time vanish once it is reached.
    flush_at: Option<u64>,
    max_item_size: usize,
    max_memory: usize,
    version: &'static str,
    version_line: Box<[u8]>,
    threads: usize,
    /// Unix time of the first [`set_now`](Self::set_now) (the start, for `uptime`).
    started: Option<u64>,
    counters: Counters,
}

impl Store {
    /// An empty store at unix time 0, with `config`'s limits and version.
    pub fn new(config: &Config) -> Self {
        Store {
            items: HashMap::new(),
            now: 0,
            next_cas: 1,
            used: 0,
            flush_at: None,
            max_item_size: config.max_item_size,
            max_memory: config.max_memory,
            version: config.version,
            version_line: format!("VERSION {}\r\n", config.version).into_bytes().into_boxed_slice(),
            threads: config.threads,
            started: None,
            counters: Counters::default(),
        }
    }

    /// The `stats` counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// A client connected (for `stats`).
    pub fn connection_opened(&mut self) {
        self.counters.curr_connections += 1;
        self.counters.total_connections += 1;
    }

    /// A client's connection ended (for `stats`).
    pub fn connection_closed(&mut self) {
        self.counters.curr_connections = self.counters.curr_connections.saturating_sub(1);
    }

    /// `bytes` were received from a client (for `stats`).
    pub fn bytes_read(&mut self, bytes: usize) {
        self.counters.bytes_read += bytes as u64;
    }

    /// Sets the clock (unix seconds). Call it before executing commands, e.g. once per
    /// event-loop tick. The first call is the start `stats` counts `uptime` from.
    pub fn set_now(&mut self, unix_secs: u64) {
        self.now = unix_secs;
        self.started.get_or_insert(unix_secs);
        if let Some(at) = self.flush_at {
            if unix_secs >= at {
                self.flush_at = None;
                self.drop_where(|item, _| item.updated_at < at);
            }
        }
    }

    /// The clock (unix seconds).
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Bytes charged against the memory budget.
    pub fn memory_used(&self) -> usize {
        self.used
    }

    /// The live item under `key`, if any.
    pub fn get(&self, key: &[u8]) -> Option<&Item> {
        self.items.get(key).filter(|item| item.is_live(self.now))
    }

    /// Executes `command`, appending memcached's reply (if any) to `out`.
    pub fn execute(&mut self, command: Command<'_>, out: &mut impl ResponseSink) -> Flow {
        let reply: &[u8] = match command {
            Command::Get { keys, with_cas } => {
                let now = self.now;
                for key in keys {
                    self.counters.cmd_get += 1;
                    if let Some(item) = self.items.get(key).filter(|item| item.is_live(now)) {
                        self.counters.get_hits += 1;
                        put_value(out, key, item.flags, &item.value, with_cas.then_some(item.cas));
                    } else {
                        self.counters.get_misses += 1;
                    }
                }
                out.put(END);
                return Flow::Continue;
            }
            Command::Store { op, key, flags, exptime, cas_unique, data, noreply } => {
                self.counters.cmd_set += 1;
                let reply = self.store(op, key, flags, exptime, cas_unique, data);
                if op == StoreOp::Cas {
                    match reply {
                        STORED => self.counters.cas_hits += 1,
                        NOT_FOUND => self.counters.cas_misses += 1,
                        EXISTS => self.counters.cas_badval += 1,
                        _ => {}
                    }
                }
                if reply == STORED {
                    self.counters.total_items += 1;
                }
                silenced(noreply, reply)
            }
            Command::StoreTooLarge { op, key, noreply } => {
                self.counters.cmd_set += 1;
                // As memcached: a failed set must not leave the old value readable.
                if op == StoreOp::Set {
                    self.remove(key);
                }
                silenced(noreply, ErrorReply::TooLarge.line())
            }
            Command::Delete { key, noreply } => {
                let found = self.get(key).is_some();
                self.remove(key);
                if found {
                    self.counters.delete_hits += 1;
                } else {
                    self.counters.delete_misses += 1;
                }
                silenced(noreply, if found { DELETED } else { NOT_FOUND })
            }
            Command::Arith { op, key, delta, noreply } => {
                let result = self.arith(op, key, delta);
                let (hits, misses) = match op {
                    ArithOp::Incr => (&mut self.counters.incr_hits, &mut self.counters.incr_misses),
                    ArithOp::Decr => (&mut self.counters.decr_hits, &mut self.counters.decr_misses),
                };
                match result {
                    Ok(Some(value)) => {
                        *hits += 1;
                        if !noreply {
                            put_number(out, value);
                        }
                        return Flow::Continue;
                    }
                    Ok(None) => {
                        *misses += 1;
                        silenced(noreply, NOT_FOUND)
                    }
                    Err(e) => {
                        *hits += 1;
                        silenced(noreply, e.line())
                    }
                }
            }
            Command::Touch { key, exptime, noreply } => {
                self.counters.cmd_touch += 1;
                let expires_at = self.expiry(exptime);
                let now = self.now;
                let reply = match self.items.get_mut(key).filter(|item| item.is_live(now)) {
                    Some(item) => {
                        item.expires_at = expires_at;
                        self.counters.touch_hits += 1;
                        TOUCHED
                    }
                    None => {
                        self.counters.touch_misses += 1;
                        NOT_FOUND
                    }
                };
                silenced(noreply, reply)
            }
            Command::FlushAll { delay, noreply } => {
                self.counters.cmd_flush += 1;
                self.flush_all(delay);
                silenced(noreply, OK)
            }
            Command::Version => {
                out.put(&self.version_line);
                return Flow::Continue;
            }
            Command::Stats => {
                let snapshot = Snapshot {
                    now: self.now,
                    started: self.started.unwrap_or(self.now),
                    version: self.version,
                    threads: self.threads,
                    curr_items: self.items.len() as u64,
                    bytes: self.used as u64,
                    limit_maxbytes: self.max_memory as u64,
                };
                write_stats(out, &self.counters, &snapshot);
                return Flow::Continue;
            }
            Command::StatsReset => {
                self.counters.reset();
                RESET
            }
            Command::Verbosity { noreply } => silenced(noreply, OK),
            Command::Binary { opcode, opaque } => {
                put_binary_unknown_command(out, opcode, opaque);
                return Flow::Close;
            }
            Command::Quit => return Flow::Close,
            Command::Error { reply, noreply } => silenced(noreply, reply.line()),
        };
        if !reply.is_empty() {
            out.put(reply);
        }
        Flow::Continue
    }

    /// memcached's exptime rule, as an absolute expiry time.
    fn expiry(&self, exptime: i64) -> Option<u64> {
        match exptime {
            0 => None,
            // Negative: already expired.
            t if t < 0 => Some(0),
            // More than 30 days: a unix time (in the past: already expired).
            t if t > MAX_RELATIVE_EXPTIME => Some(t.unsigned_abs()),
            t => Some(self.now.saturating_add(t.unsigned_abs())),
        }
    }

    fn bump_cas(&mut self) -> u64 {
        let cas = self.next_cas;
        self.next_cas = self.next_cas.wrapping_add(1).max(1);
        cas
    }

    /// Runs a storage command; returns the reply line.
    fn store(
        &mut self,
        op: StoreOp,
        key: &[u8],
        flags: u32,
        exptime: i64,
        cas_unique: u64,
        data: &[u8],
    ) -> &'static [u8] {
        let live_cas = self.get(key).map(|item| item.cas);
        match op {
            StoreOp::Set => {}
            StoreOp::Add if live_cas.is_some() => return NOT_STORED,
            StoreOp::Add => {}
            StoreOp::Replace if live_cas.is_none() => return NOT_STORED,
            StoreOp::Replace => {}
            StoreOp::Cas => match live_cas {
                None => return NOT_FOUND,
                Some(cas) if cas != cas_unique => return EXISTS,
                Some(_) => {}
            },
            StoreOp::Append | StoreOp::Prepend => {
                if live_cas.is_none() {
                    return NOT_STORED;
                }
                return self.concat(op == StoreOp::Append, key, data);
            }
        }
        let expires_at = self.expiry(exptime);
        if !self.make_room(key, charge(key.len(), data.len())) {
            return ErrorReply::OutOfMemory.line();
        }
        let cas = self.bump_cas();
        let now = self.now;
        match self.items.get_mut(key) {
            Some(item) => {
                let old = charge(key.len(), item.value.len());
                replace_value(&mut item.value, data);
                item.flags = flags;
                item.expires_at = expires_at;
                item.cas = cas;
                item.updated_at = now;
                self.used = self.used - old + charge(key.len(), data.len());
            }
            None => {
                let item = Item { value: data.to_vec(), flags, expires_at, cas, updated_at: now };
                self.items.insert(key.into(), item);
                self.used += charge(key.len(), data.len());
            }
        }
        STORED
    }

    /// `append` (`at_end`) or `prepend` to a live item, keeping its flags and expiry.
    fn concat(&mut self, at_end: bool, key: &[u8], data: &[u8]) -> &'static [u8] {
        let old_len = self.get(key).map_or(0, |item| item.value.len());
        let new_len = old_len + data.len();
        if new_len > self.max_item_size {
            return NOT_STORED;
        }
        if !self.make_room(key, charge(key.len(), new_len)) {
            return ErrorReply::OutOfMemory.line();
        }
        let cas = self.bump_cas();
        let now = self.now;
        let Some(item) = self.items.get_mut(key) else {
            return NOT_STORED;
        };
        if at_end {
            item.value.extend_from_slice(data);
        } else {
            item.value.resize(new_len, 0);
            item.value.copy_within(..old_len, data.len());
            item.value[..data.len()].copy_from_slice(data);
        }
        item.cas = cas;
        item.updated_at = now;
        self.used += data.len();
        STORED
    }

    /// `incr`/`decr`: `Ok(None)` if the key is missing.
    fn arith(&mut self, op: ArithOp, key: &[u8], delta: u64) -> Result<Option<u64>, ErrorReply> {
        let now = self.now;
        let Some(item) = self.items.get_mut(key).filter(|item| item.is_live(now)) else {
            return Ok(None);
        };
        let current = parse_counter(&item.value).ok_or(ErrorReply::NonNumeric)?;
        let value = match op {
            ArithOp::Incr => current.wrapping_add(delta),
            ArithOp::Decr => current.saturating_sub(delta),
        };
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(value).as_bytes();
        let old_len = item.value.len();
        if digits.len() <= old_len {
            // memcached rewrites the number in place, padding with spaces.
            item.value[..digits.len()].copy_from_slice(digits);
            item.value[digits.len()..].fill(b' ');
        } else {
            item.value.clear();
            item.value.extend_from_slice(digits);
        }
        let grown = item.value.len() - old_len;
        item.cas = self.next_cas;
        item.updated_at = now;
        self.bump_cas();
        self.used += grown;
        Ok(Some(value))
    }

    fn flush_all(&mut self, delay: i64) {
        let at = match self.expiry(delay) {
            Some(at) if delay > 0 && at > self.now => at,
            _ => {
                self.flush_at = None;
                self.items.clear();
                self.used = 0;
                return;
            }
        };
        self.flush_at = Some(at);
    }

    fn remove(&mut self, key: &[u8]) {
        if let Some((key, item)) = self.items.remove_entry(key) {
            self.used -= charge(key.len(), item.value.len());
        }
    }

    /// Whether an item charged `new_charge` can replace what `key` holds now, dropping
    /// expired items first if the budget is short.
    fn make_room(&mut self, key: &[u8], new_charge: usize) -> bool {
        let fits = |store: &Store| {
            let old = store.items.get(key).map_or(0, |item| charge(key.len(), item.value.len()));
            store.used - old + new_charge <= store.max_memory
        };
        if fits(self) {
            return true;
        }
        let now = self.now;
        self.drop_where(|item, _| !item.is_live(now));
        fits(self)
    }

    /// Drops the items matching `doomed`, keeping the memory charge exact.
    fn drop_where(&mut self, doomed: impl Fn(&Item, &[u8]) -> bool) {
        let mut freed = 0;
        self.items.retain(|key, item| {
            let drop = doomed(item, key);
            if drop {
                freed += charge(key.len(), item.value.len());
            }
            !drop
        });
        self.used -= freed;
    }
}

/// Stores `data` in `value`, reusing its allocation unless it is far too big.
fn replace_value(value: &mut Vec<u8>, data: &[u8]) {
    if value.capacity() > 2 * data.len() + 256 {
        *value = data.to_vec();
    } else {
        value.clear();
        value.extend_from_slice(data);
    }
}

/// A counter value as memcached reads it (`strtoull`): optional leading whitespace and
/// `+`, digits, then the end or whitespace. `None` if not a number or out of range.
fn parse_counter(value: &[u8]) -> Option<u64> {
    let is_space = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c);
    let start = value.iter().position(|&b| !is_space(b))?;
    let rest = &value[start..];
    let rest = rest.strip_prefix(b"+").unwrap_or(rest);
    let end = rest.iter().position(|b| !b.is_ascii_digit()).unwrap_or(rest.len());
    if end == 0 || (end < rest.len() && !is_space(rest[end])) {
        return None;
    }
    rest[..end].iter().try_fold(0u64, |acc, &b| acc.checked_mul(10)?.checked_add(u64::from(b - b'0')))
}

/// `reply` unless the client asked for none.
fn silenced(noreply: bool, reply: &'static [u8]) -> &'static [u8] {
    if noreply {
        b""
    } else {
        reply
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memcache::CommandParser;

    /// A parser and a store, fed whole scripts; replies as text.
    struct Server {
        parser: CommandParser,
        store: Store,
    }

    impl Server {
        fn new(config: &Config) -> Self {
            Server { parser: CommandParser::new(config), store: Store::new(config) }
        }

        /// Feeds `chunks`; returns the replies and whether the connection should close.
        fn feed(&mut self, chunks: &[&[u8]]) -> (String, bool) {
            let mut out = Vec::new();
            let mut close = false;
            for chunk in chunks {
                let mut pos = 0;
                while let Some(command) = self.parser.next_command(chunk, &mut pos) {
                    match command {
                        Ok(command) => close |= self.store.execute(command, &mut out) == Flow::Close,
                        Err(_) => close = true,
                    }
                }
            }
            (String::from_utf8_lossy(&out).into_owned(), close)
        }

        fn run(&mut self, script: &str) -> String {
            self.feed(&[script.as_bytes()]).0
        }
    }

    fn server() -> Server {
        Server::new(&Config::default())
    }

    #[test]
    fn set_get_gets() {
        let mut s = server();
        assert_eq!(s.run("set a 7 0 5\r\nhello\r\n"), "STORED\r\n");
        assert_eq!(s.run("get a\r\n"), "VALUE a 7 5\r\nhello\r\nEND\r\n");
        assert_eq!(s.run("get missing\r\n"), "END\r\n");
        assert_eq!(s.run("set b 0 0 0\r\n\r\n"), "STORED\r\n");
        assert_eq!(s.run("get b x a\r\n"), "VALUE b 0 0\r\n\r\nVALUE a 7 5\r\nhello\r\nEND\r\n");
        assert_eq!(s.run("gets a b\r\n"), "VALUE a 7 5 1\r\nhello\r\nVALUE b 0 0 2\r\n\r\nEND\r\n");
        assert_eq!(s.run("set a 0 0 2 noreply\r\nhi\r\nget a\r\n"), "VALUE a 0 2\r\nhi\r\nEND\r\n");
        assert_eq!(s.store.get(b"a").map(Item::cas), Some(3));
    }

    #[test]
    fn add_replace_append_prepend() {
        let mut s = server();
        assert_eq!(s.run("add k 1 0 1\r\na\r\n"), "STORED\r\n");
        assert_eq!(s.run("add k 1 0 1\r\nb\r\n"), "NOT_STORED\r\n");
        assert_eq!(s.run("replace nope 0 0 1\r\nb\r\n"), "NOT_STORED\r\n");
        assert_eq!(s.run("replace k 2 0 1\r\nb\r\n"), "STORED\r\n");
        assert_eq!(s.run("append k 9 0 2\r\ncd\r\n"), "STORED\r\n");
        assert_eq!(s.run("prepend k 9 0 2\r\nxy\r\n"), "STORED\r\n");
        // append/prepend keep the item's flags.
        assert_eq!(s.run("get k\r\n"), "VALUE k 2 5\r\nxybcd\r\nEND\r\n");
        assert_eq!(s.run("append nope 0 0 1\r\nz\r\nprepend nope 0 0 1\r\nz\r\n"), "NOT_STORED\r\nNOT_STORED\r\n");
        assert_eq!(s.run("add k 0 0 1 noreply\r\nq\r\nappend k 0 0 1 noreply\r\nq\r\n"), "");
        assert_eq!(s.run("get k\r\n"), "VALUE k 2 6\r\nxybcdq\r\nEND\r\n");
    }

    #[test]
    fn append_beyond_item_size_is_not_stored() {
        let mut s = Server::new(&Config { max_item_size: 4, ..Config::default() });
        assert_eq!(s.run("set k 0 0 3\r\nabc\r\nappend k 0 0 2\r\nde\r\n"), "STORED\r\nNOT_STORED\r\n");
        assert_eq!(s.run("get k\r\n"), "VALUE k 0 3\r\nabc\r\nEND\r\n");
    }

    #[test]
    fn cas_command() {
        let mut s = server();
        assert_eq!(s.run("cas k 0 0 1 1\r\nx\r\n"), "NOT_FOUND\r\n");
        assert_eq!(s.run("set k 0 0 1\r\nx\r\n"), "STORED\r\n");
        assert_eq!(s.run("gets k\r\n"), "VALUE k 0 1 1\r\nx\r\nEND\r\n");
        assert_eq!(s.run("cas k 0 0 1 2\r\ny\r\n"), "EXISTS\r\n");
        assert_eq!(s.run("cas k 5 0 1 1\r\ny\r\n"), "STORED\r\n");
        assert_eq!(s.run("cas k 5 0 1 1\r\nz\r\n"), "EXISTS\r\n");
        assert_eq!(s.run("gets k\r\n"), "VALUE k 5 1 2\r\ny\r\nEND\r\n");
        assert_eq!(s.run("cas k 0 0 1 2 noreply\r\nw\r\nget k\r\n"), "VALUE k 0 1\r\nw\r\nEND\r\n");
    }

    #[test]
    fn delete_and_noreply() {
        let mut s = server();
        assert_eq!(s.run("delete k\r\n"), "NOT_FOUND\r\n");
        assert_eq!(s.run("set k 0 0 1\r\nx\r\ndelete k\r\ndelete k\r\n"), "STORED\r\nDELETED\r\nNOT_FOUND\r\n");
        assert_eq!(s.run("set k 0 0 1\r\nx\r\ndelete k noreply\r\nget k\r\n"), "STORED\r\nEND\r\n");
        assert_eq!(s.run("delete k 0\r\n"), "NOT_FOUND\r\n");
        assert_eq!(s.run("delete k 1\r\n"), "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n");
        assert_eq!(s.store.memory_used(), 0);
    }

    #[test]
    fn incr_decr_rules() {
        let mut s = server();
        assert_eq!(s.run("incr n 1\r\n"), "NOT_FOUND\r\n");
        assert_eq!(s.run("set n 3 0 2\r\n10\r\nincr n 5\r\n"), "STORED\r\n15\r\n");
        assert_eq!(s.run("decr n 100\r\n"), "0\r\n");
        // memcached rewrites in place and pads with spaces.
        assert_eq!(s.run("get n\r\n"), "VALUE n 3 2\r\n0 \r\nEND\r\n");
        assert_eq!(s.run("incr n 1000\r\n"), "1000\r\n");
        assert_eq!(s.run("get n\r\n"), "VALUE n 3 4\r\n1000\r\nEND\r\n");
        assert_eq!(s.run("set n 0 0 20\r\n18446744073709551615\r\nincr n 2\r\n"), "STORED\r\n1\r\n");
        assert_eq!(s.run("get n\r\n"), format!("VALUE n 0 20\r\n1{}\r\nEND\r\n", " ".repeat(19)));
        assert_eq!(s.run("incr n 1 noreply\r\ndecr n 1 noreply\r\nincr n 0\r\n"), "1\r\n");
        assert_eq!(s.run("set n 0 0 3\r\n 7 \r\nincr n 1\r\n"), "STORED\r\n8\r\n");
        let non_numeric = "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n";
        for value in ["abc", "", "-1", "1x", "18446744073709551616", "   "] {
            let script = format!("set v 0 0 {}\r\n{value}\r\nincr v 1\r\ndecr v 1\r\n", value.len());
            assert_eq!(s.run(&script), format!("STORED\r\n{non_numeric}{non_numeric}"), "{value:?}");
        }
        assert_eq!(s.run("incr v x\r\n"), "CLIENT_ERROR invalid numeric delta argument\r\n");
        // incr changes the cas unique.
        let before = s.store.get(b"n").map(Item::cas);
        s.run("incr n 1\r\n");
        assert_ne!(s.store.get(b"n").map(Item::cas), before);
    }

    #[test]
    fn expiry_rules() {
        let mut s = server();
        s.store.set_now(1_000_000_000);
        assert_eq!(s.run("set r 0 100 1\r\nr\r\nset never 0 0 1\r\nn\r\n"), "STORED\r\nSTORED\r\n");
        // Beyond 30 days: an absolute unix time.
        assert_eq!(s.run("set abs 0 1000000500 1\r\na\r\nset past 0 999999999 1\r\np\r\n"), "STORED\r\nSTORED\r\n");
        assert_eq!(s.run("set neg 0 -1 1\r\nx\r\n"), "STORED\r\n");
        assert_eq!(
            s.run("get r never abs past neg\r\n"),
            "VALUE r 0 1\r\nr\r\nVALUE never 0 1\r\nn\r\nVALUE abs 0 1\r\na\r\nEND\r\n"
        );
        assert_eq!(s.store.get(b"r").and_then(Item::expires_at), Some(1_000_000_100));
        s.store.set_now(1_000_000_099);
        assert_eq!(s.run("get r\r\n"), "VALUE r 0 1\r\nr\r\nEND\r\n");
        s.store.set_now(1_000_000_100);
        assert_eq!(s.run("get r abs\r\n"), "VALUE abs 0 1\r\na\r\nEND\r\n");
        s.store.set_now(1_000_000_500);
        assert_eq!(s.run("get abs never\r\n"), "VALUE never 0 1\r\nn\r\nEND\r\n");
        // Expired items behave as missing for every command.
        assert_eq!(s.run("add r 0 0 1\r\nR\r\n"), "STORED\r\n");
        assert_eq!(s.run("replace abs 0 0 1\r\nA\r\nappend abs 0 0 1\r\nA\r\n"), "NOT_STORED\r\nNOT_STORED\r\n");
        assert_eq!(s.run("incr abs 1\r\ntouch abs 0\r\ndelete abs\r\n"), "NOT_FOUND\r\nNOT_FOUND\r\nNOT_FOUND\r\n");
        // Exactly 30 days is still relative.
        assert_eq!(s.run("set d 0 2592000 1\r\nd\r\n"), "STORED\r\n");
        assert_eq!(s.store.get(b"d").and_then(Item::expires_at), Some(1_000_000_500 + 2_592_000));
    }

    #[test]
    fn touch() {
        let mut s = server();
        s.store.set_now(100);
        assert_eq!(s.run("touch k 10\r\n"), "NOT_FOUND\r\n");
        assert_eq!(s.run("set k 0 5 1\r\nx\r\ntouch k 50\r\n"), "STORED\r\nTOUCHED\r\n");
        s.store.set_now(120);
        assert_eq!(s.run("get k\r\n"), "VALUE k 0 1\r\nx\r\nEND\r\n");
        assert_eq!(s.run("touch k -1 noreply\r\nget k\r\n"), "END\r\n");
        assert_eq!(s.run("touch k x\r\n"), "CLIENT_ERROR invalid exptime argument\r\n");
    }

    #[test]
    fn flush_all_now_and_later() {
        let mut s = server();
        s.store.set_now(1000);
        assert_eq!(
            s.run("set a 0 0 1\r\na\r\nset b 0 0 1\r\nb\r\nflush_all\r\nget a b\r\n"),
            "STORED\r\nSTORED\r\nOK\r\nEND\r\n"
        );
        assert_eq!(s.store.memory_used(), 0);
        assert_eq!(s.run("set a 0 0 1\r\na\r\nflush_all 10\r\n"), "STORED\r\nOK\r\n");
        s.store.set_now(1005);
        assert_eq!(s.run("set b 0 0 1\r\nb\r\nget a\r\n"), "STORED\r\nVALUE a 0 1\r\na\r\nEND\r\n");
        s.store.set_now(1010);
        assert_eq!(s.run("set c 0 0 1\r\nc\r\n"), "STORED\r\n");
        s.store.set_now(1011);
        // Everything stored before 1010 is gone; what was stored at 1010 stays.
        assert_eq!(s.run("get a b c\r\n"), "VALUE c 0 1\r\nc\r\nEND\r\n");
        assert_eq!(s.run("flush_all noreply\r\nflush_all 0 noreply\r\nget c\r\n"), "END\r\n");
        assert_eq!(s.run("flush_all x\r\n"), "CLIENT_ERROR invalid exptime argument\r\n");
    }

    #[test]
    fn version_quit_and_errors() {
        let mut s = server();
        assert_eq!(s.run("version\r\n"), "VERSION 1.6.0-paste-rt\r\n");
        assert_eq!(s.run("bogus\r\n"), "ERROR\r\n");
        assert_eq!(s.run("set k 0 0 x\r\n"), "CLIENT_ERROR bad command line format\r\n");
        assert_eq!(s.run("set k 0 0 x noreply\r\n"), "");
        assert_eq!(s.run("set k 0 0 1\r\nxy\r\n"), "CLIENT_ERROR bad data chunk\r\nERROR\r\n");
        let (replies, close) = s.feed(&[b"version\r\nquit\r\nversion\r\n"]);
        assert!(close);
        assert!(replies.starts_with("VERSION "));
    }

    #[test]
    fn too_large_set_answers_and_stays_usable() {
        let mut s = Server::new(&Config { max_item_size: 8, ..Config::default() });
        assert_eq!(s.run("set k 0 0 1\r\nx\r\n"), "STORED\r\n");
        let (replies, close) = s.feed(&[b"set k 0 0 9\r\n1234", b"56789\r\nget k\r\n"]);
        // The old value is dropped, as memcached does for a failed set.
        assert_eq!(replies, "SERVER_ERROR object too large for cache\r\nEND\r\n");
        assert!(!close);
        assert_eq!(s.run("set k 0 0 9 noreply\r\n123456789\r\nadd k 0 0 8\r\n12345678\r\n"), "STORED\r\n");
        assert_eq!(
            s.run("add q 0 0 9\r\n123456789\r\nget q\r\n"),
            "SERVER_ERROR object too large for cache\r\nEND\r\n"
        );
    }

    #[test]
    fn memory_budget() {
        let config = Config { max_memory: 3 * (ITEM_OVERHEAD + 1 + 10), ..Config::default() };
        let mut s = Server::new(&config);
        let set = |k: &str| format!("set {k} 0 0 10\r\n0123456789\r\n");
        assert_eq!(s.run(&(set("a") + &set("b") + &set("c"))), "STORED\r\n".repeat(3));
        assert_eq!(s.run(&set("d")), "SERVER_ERROR out of memory storing object\r\n");
        // Overwriting in place still fits.
        assert_eq!(s.run(&set("a")), "STORED\r\n");
        assert_eq!(s.run("append a 0 0 1\r\nx\r\n"), "SERVER_ERROR out of memory storing object\r\n");
        // Expired items are dropped to make room.
        s.store.set_now(10);
        assert_eq!(s.run("touch b -1\r\n"), "TOUCHED\r\n");
        assert_eq!(s.run(&set("d")), "STORED\r\n");
        assert_eq!(s.store.memory_used(), config.max_memory);
        assert_eq!(s.run("delete a\r\ndelete c\r\ndelete d\r\n"), "DELETED\r\n".repeat(3));
        assert_eq!(s.store.memory_used(), 0);
    }

    #[test]
    fn split_anywhere_gives_the_same_replies() {
        let script: &[u8] = b"set a 1 0 5\r\nhello\r\nget a b\r\ngets a\nset big 0 0 10\r\n0123\r\n6789\r\n\
            append a 0 0 2 noreply\r\n!!\r\ncas a 0 0 1 1\r\nz\r\nincr n 1\r\nset n 0 0 1\r\n9\r\nincr n 1\r\n\
            decr n 2 noreply\r\ntouch a 0\r\nbogus\r\nset k 0 0 2\r\nabc\r\nget a big n\r\ndelete a\r\n\
            flush_all 0\r\nget big\r\nversion\r\nquit\r\n";
        let expected = server().feed(&[script]);
        assert!(expected.1, "quit closes");
        assert!(expected.0.contains("VALUE big 0 10\r\n0123\r\n6789\r\n"), "{}", expected.0);
        for split in 0..=script.len() {
            let (a, b) = script.split_at(split);
            assert_eq!(server().feed(&[a, b]), expected, "split at {split}");
        }
        let bytes: Vec<&[u8]> = script.chunks(1).collect();
        assert_eq!(server().feed(&bytes), expected);
    }

    #[test]
    fn counter_parsing() {
        assert_eq!(parse_counter(b"42"), Some(42));
        assert_eq!(parse_counter(b" \t+42 junk"), Some(42));
        assert_eq!(parse_counter(b"42\r\n"), Some(42));
        assert_eq!(parse_counter(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_counter(b"18446744073709551616"), None);
        assert_eq!(parse_counter(b"4x"), None);
        assert_eq!(parse_counter(b"+"), None);
        assert_eq!(parse_counter(b""), None);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_command_streams_never_panic(data in proptest::collection::vec(
            proptest::sample::select(vec![
                &b"set k 0 0 3\r\n"[..], b"abc\r\n", b"get k j\r\n", b"gets k\r\n", b"incr k 5\r\n",
                b"decr k 9\r\n", b"append k 0 0 1\r\n", b"x\r\n", b"delete k\r\n", b"touch k -1\r\n",
                b"flush_all 1\r\n", b"cas k 0 0 1 3\r\n", b"\r\n", b"\xff\x00", b" ", b"noreply",
            ]), 0..40), split in 0usize..400) {
            let stream: Vec<u8> = data.concat();
            let split = split.min(stream.len());
            let mut s = Server::new(&Config { max_item_size: 16, max_memory: 1024, ..Config::default() });
            let _ = s.feed(&[&stream[..split], &stream[split..]]);
        }
    }
}
