//! What one client connection sends for a workload and what it must get back.
//!
//! Owns the request bytes of each workload (rpc: the PASTE paper's 44-byte GET; wal:
//! a POST with a 1024-byte body; echo: a 100-byte message carrying its sequence
//! number; kv: memcached `get`/`set`, 90 %/10 %, over preloaded keys whose values are
//! known) and pairs every request with its validator. Never does I/O.

use paste_rt_examples::http::{body_byte, post_request_len, write_post_request, ResponseTemplate, WRK_GET_PAPER};

use crate::validate::{ExactQueue, HttpCheck, Mismatch};
use crate::workload::Workload;

/// Size of an echo message (monoio's published benchmark shape).
pub const ECHO_LEN: usize = 100;
/// Body of a wal request.
pub const WAL_BODY_LEN: usize = 1024;

/// The client side of a workload: everything a connection needs to build requests
/// and check responses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadSpec {
    /// The workload.
    pub workload: Workload,
    /// Body bytes of an rpc/wal response (64 in the protocol).
    pub body_len: usize,
    /// kv: bytes per value.
    pub kv_value_size: usize,
    /// kv: number of keys, preloaded before the run.
    pub kv_keys: u32,
}

impl LoadSpec {
    /// The protocol's shape of `workload`.
    pub fn new(workload: Workload) -> LoadSpec {
        LoadSpec { workload, body_len: 64, kv_value_size: 64, kv_keys: 1000 }
    }

    /// The bytes of a wal request (a POST with a 1024-byte pattern body).
    pub fn wal_request() -> Vec<u8> {
        let body: Vec<u8> = (0..WAL_BODY_LEN).map(body_byte).collect();
        let host = b"192.168.11.3:60000";
        let mut out = vec![0u8; post_request_len(1, host.len(), body.len())];
        let n = write_post_request(b"/", host, &body, &mut out);
        out.truncate(n);
        out
    }
}

/// The kv key of index `k`: `key:` and eight digits.
pub fn kv_key(k: u32, out: &mut Vec<u8>) {
    out.extend_from_slice(b"key:");
    let mut digits = [b'0'; 8];
    let mut v = k;
    for d in digits.iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
    out.extend_from_slice(&digits);
}

/// The value stored under key `k`: the phttpd pattern starting at offset `k`.
pub fn kv_value(k: u32, len: usize, out: &mut Vec<u8>) {
    out.extend((0..len).map(|i| body_byte(k as usize + i)));
}

/// Writes `set <key> 0 0 <len>\r\n<value>\r\n`.
pub fn write_kv_set(k: u32, len: usize, out: &mut Vec<u8>) {
    out.extend_from_slice(b"set ");
    kv_key(k, out);
    out.extend_from_slice(b" 0 0 ");
    push_decimal(len as u64, out);
    out.extend_from_slice(b"\r\n");
    kv_value(k, len, out);
    out.extend_from_slice(b"\r\n");
}

/// Writes the exact reply to `get <key>` when the key holds its value.
pub fn write_kv_get_reply(k: u32, len: usize, out: &mut Vec<u8>) {
    out.extend_from_slice(b"VALUE ");
    kv_key(k, out);
    out.extend_from_slice(b" 0 ");
    push_decimal(len as u64, out);
    out.extend_from_slice(b"\r\n");
    kv_value(k, len, out);
    out.extend_from_slice(b"\r\nEND\r\n");
}

fn push_decimal(mut v: u64, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// The validator of one connection.
#[derive(Debug, Clone)]
enum Check {
    Http(HttpCheck),
    Exact(ExactQueue),
}

/// One connection's request writer and response validator.
#[derive(Debug, Clone)]
pub struct Exchange {
    spec: LoadSpec,
    check: Check,
    /// rpc/wal: the constant request.
    fixed: Vec<u8>,
    seq: u64,
    rng: u64,
}

impl Exchange {
    /// A connection's exchange; `conn` seeds its kv key sequence and echo numbers.
    pub fn new(spec: &LoadSpec, conn: u64) -> Exchange {
        let (check, fixed) = match spec.workload {
            Workload::Rpc => (Check::Http(HttpCheck::new(spec.body_len)), WRK_GET_PAPER.to_vec()),
            Workload::Wal => (Check::Http(HttpCheck::new(spec.body_len)), LoadSpec::wal_request()),
            Workload::Echo | Workload::Kv => (Check::Exact(ExactQueue::new()), Vec::new()),
        };
        Exchange {
            spec: spec.clone(),
            check,
            fixed,
            seq: conn << 40,
            rng: 0x9E37_79B9_7F4A_7C15 ^ (conn.wrapping_add(1).wrapping_mul(0xA076_1D64_78BD_642F)),
        }
    }

    /// Appends the next request to `out` and queues what it must be answered with.
    pub fn write_request(&mut self, out: &mut Vec<u8>) {
        match self.spec.workload {
            Workload::Rpc | Workload::Wal => out.extend_from_slice(&self.fixed),
            Workload::Echo => {
                let start = out.len();
                write_echo_message(self.seq, out);
                self.seq += 1;
                let msg = &out[start..];
                if let Check::Exact(q) = &mut self.check {
                    q.expect(|v| v.extend_from_slice(msg));
                }
            }
            Workload::Kv => {
                let r = self.next_random();
                let k = ((r >> 8) % u64::from(self.spec.kv_keys.max(1))) as u32;
                let len = self.spec.kv_value_size;
                let is_set = r % 10 == 0;
                if is_set {
                    write_kv_set(k, len, out);
                } else {
                    out.extend_from_slice(b"get ");
                    kv_key(k, out);
                    out.extend_from_slice(b"\r\n");
                }
                if let Check::Exact(q) = &mut self.check {
                    if is_set {
                        q.expect(|v| v.extend_from_slice(b"STORED\r\n"));
                    } else {
                        q.expect(|v| write_kv_get_reply(k, len, v));
                    }
                }
            }
        }
    }

    /// Appends a `set` of key `k` (preloading) and queues its `STORED`.
    pub fn write_preload(&mut self, k: u32, out: &mut Vec<u8>) {
        write_kv_set(k, self.spec.kv_value_size, out);
        if let Check::Exact(q) = &mut self.check {
            q.expect(|v| v.extend_from_slice(b"STORED\r\n"));
        }
    }

    /// Checks received bytes; returns how many responses they completed.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<usize, Mismatch> {
        match &mut self.check {
            Check::Http(c) => c.feed(chunk),
            Check::Exact(q) => q.feed(chunk),
        }
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// Writes a 100-byte echo message: 16 hex digits of `seq`, a space, then the pattern.
pub fn write_echo_message(seq: u64, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..16).rev() {
        out.push(HEX[((seq >> (shift * 4)) & 0xf) as usize]);
    }
    out.push(b' ');
    out.extend((17..ECHO_LEN - 1).map(body_byte));
    out.push(b'\n');
}

/// The phttpd response a correct rpc/wal server sends (for tests and checks).
pub fn rpc_response(body_len: usize) -> Vec<u8> {
    ResponseTemplate::new(body_len).as_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_messages_are_100_bytes_and_distinct() {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        write_echo_message(1, &mut a);
        write_echo_message(2, &mut b);
        assert_eq!(a.len(), ECHO_LEN);
        assert_eq!(b.len(), ECHO_LEN);
        assert_ne!(a, b);
    }

    #[test]
    fn kv_mix_is_about_ten_percent_sets() {
        let mut ex = Exchange::new(&LoadSpec::new(Workload::Kv), 3);
        let mut sets = 0;
        for _ in 0..10_000 {
            let mut out = Vec::new();
            ex.write_request(&mut out);
            if out.starts_with(b"set ") {
                sets += 1;
            } else {
                assert!(out.starts_with(b"get key:"), "{out:?}");
            }
        }
        assert!((800..1200).contains(&sets), "{sets} sets in 10000");
    }
}
