//! Response validators of the load generator: every byte a server sends back is
//! checked, as it arrives, in pieces of any size.
//!
//! Two shapes cover every workload: [`HttpCheck`] (rpc, wal: status line,
//! `Content-Length`, body length and every body byte against the phttpd pattern)
//! and [`ExactQueue`] (echo, kv: the exact bytes each request must produce, queued
//! when the request is sent). They never do I/O and never allocate per response
//! once warm; a failure is a [`Mismatch`] saying what differed.

use std::collections::VecDeque;

use paste_rt_examples::http::{body_byte, is_pattern_body};

/// Why a response was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    /// The status line was not `HTTP/1.1 200 ...`.
    #[error("bad status line {0:?}")]
    Status(String),
    /// The header had no `Content-Length`, or an unreadable one.
    #[error("response header has no valid Content-Length: {0:?}")]
    NoContentLength(String),
    /// `Content-Length` announced another body length than the workload's.
    #[error("Content-Length {got}, expected {expected}")]
    ContentLength {
        /// Announced.
        got: usize,
        /// Expected.
        expected: usize,
    },
    /// The header did not end within the limit.
    #[error("response header longer than {0} bytes")]
    HeadTooLong(usize),
    /// A body byte differed from the pattern.
    #[error("body byte {offset} is {got:#04x}, expected {expected:#04x}")]
    Body {
        /// Offset in the body.
        offset: usize,
        /// Received.
        got: u8,
        /// Expected.
        expected: u8,
    },
    /// A byte of an exactly-known response differed.
    #[error("byte {offset} of the response is {got:?}, expected {expected:?} (response was to expect {want:?})")]
    Bytes {
        /// Offset in the response.
        offset: usize,
        /// Received byte.
        got: char,
        /// Expected byte.
        expected: char,
        /// The start of the expected response (for the reader).
        want: String,
    },
    /// Bytes arrived with no request outstanding.
    #[error("{0} unexpected bytes arrived with no request outstanding")]
    Unsolicited(usize),
}

/// The longest response header accepted.
pub const MAX_HEAD: usize = 1024;

/// Checks a stream of phttpd responses (`HTTP/1.1 200`, `Content-Length` equal to
/// the expected body length, body bytes equal to the pattern).
#[derive(Debug, Clone)]
pub struct HttpCheck {
    body_len: usize,
    head: Vec<u8>,
    /// `Some(offset)` while inside a body.
    body_at: Option<usize>,
}

impl HttpCheck {
    /// Expects responses with a pattern body of `body_len` bytes.
    pub fn new(body_len: usize) -> HttpCheck {
        HttpCheck { body_len, head: Vec::with_capacity(MAX_HEAD), body_at: None }
    }

    /// Whether the check is between responses.
    pub fn is_idle(&self) -> bool {
        self.head.is_empty() && self.body_at.is_none()
    }

    /// Feeds received bytes; returns how many responses they completed.
    pub fn feed(&mut self, mut chunk: &[u8]) -> Result<usize, Mismatch> {
        let mut done = 0;
        while !chunk.is_empty() {
            match self.body_at {
                None => {
                    let searched_from = self.head.len().saturating_sub(3);
                    let take = chunk.len().min(MAX_HEAD - self.head.len());
                    self.head.extend_from_slice(&chunk[..take]);
                    match find_head_end(&self.head[searched_from..]) {
                        Some(end) => {
                            let end = searched_from + end;
                            let consumed = take - (self.head.len() - end);
                            self.head.truncate(end);
                            self.check_head()?;
                            self.head.clear();
                            chunk = &chunk[consumed..];
                            if self.body_len == 0 {
                                done += 1;
                            } else {
                                self.body_at = Some(0);
                            }
                        }
                        None if self.head.len() >= MAX_HEAD => return Err(Mismatch::HeadTooLong(MAX_HEAD)),
                        None => chunk = &chunk[take..],
                    }
                }
                Some(at) => {
                    let n = chunk.len().min(self.body_len - at);
                    if !is_pattern_body(&chunk[..n], at) {
                        let i = (0..n).find(|&i| chunk[i] != body_byte(at + i)).unwrap_or(0);
                        return Err(Mismatch::Body { offset: at + i, got: chunk[i], expected: body_byte(at + i) });
                    }
                    chunk = &chunk[n..];
                    if at + n == self.body_len {
                        self.body_at = None;
                        done += 1;
                    } else {
                        self.body_at = Some(at + n);
                    }
                }
            }
        }
        Ok(done)
    }

    fn check_head(&self) -> Result<(), Mismatch> {
        let text = String::from_utf8_lossy(&self.head);
        let mut lines = text.split("\r\n");
        let status = lines.next().unwrap_or("");
        if !status.starts_with("HTTP/1.1 200 ") && status != "HTTP/1.1 200" {
            return Err(Mismatch::Status(status.to_owned()));
        }
        let mut length = None;
        for line in lines {
            if let Some((name, value)) = line.split_once(':') {
                if name.trim().eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse::<usize>().ok();
                    if length.is_none() {
                        return Err(Mismatch::NoContentLength(line.to_owned()));
                    }
                }
            }
        }
        match length {
            None => Err(Mismatch::NoContentLength(text.into_owned())),
            Some(got) if got != self.body_len => Err(Mismatch::ContentLength { got, expected: self.body_len }),
            Some(_) => Ok(()),
        }
    }
}

fn find_head_end(bytes: &[u8]) -> Option<usize> {
    bytes.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Checks responses whose bytes are known exactly when the request is sent (echo,
/// kv): [`expect`](Self::expect) queues them, [`feed`](Self::feed) compares.
#[derive(Debug, Clone, Default)]
pub struct ExactQueue {
    bytes: Vec<u8>,
    head: usize,
    /// Lengths of the queued responses; the first is the one being received.
    lens: VecDeque<usize>,
    /// Bytes of the first response already matched.
    matched: usize,
}

impl ExactQueue {
    /// An empty queue.
    pub fn new() -> ExactQueue {
        ExactQueue::default()
    }

    /// Queues the bytes of the next expected response, built by `write`.
    pub fn expect(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        let before = self.bytes.len();
        write(&mut self.bytes);
        self.lens.push_back(self.bytes.len() - before);
    }

    /// Responses queued and not yet complete.
    pub fn outstanding(&self) -> usize {
        self.lens.len()
    }

    /// Feeds received bytes; returns how many responses they completed.
    pub fn feed(&mut self, mut chunk: &[u8]) -> Result<usize, Mismatch> {
        let mut done = 0;
        while !chunk.is_empty() {
            let Some(&len) = self.lens.front() else {
                return Err(Mismatch::Unsolicited(chunk.len()));
            };
            let n = chunk.len().min(len - self.matched);
            let want = &self.bytes[self.head..self.head + n];
            if want != &chunk[..n] {
                let i = (0..n).find(|&i| want[i] != chunk[i]).unwrap_or(0);
                let start = self.head - self.matched;
                let shown = &self.bytes[start..start + len.min(48)];
                return Err(Mismatch::Bytes {
                    offset: self.matched + i,
                    got: chunk[i] as char,
                    expected: want[i] as char,
                    want: String::from_utf8_lossy(shown).into_owned(),
                });
            }
            self.head += n;
            self.matched += n;
            chunk = &chunk[n..];
            if self.matched == len {
                self.lens.pop_front();
                self.matched = 0;
                done += 1;
            }
        }
        if self.lens.is_empty() {
            self.bytes.clear();
            self.head = 0;
        } else if self.head > 64 * 1024 {
            self.bytes.drain(..self.head);
            self.head = 0;
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use paste_rt_examples::http::ResponseTemplate;

    #[test]
    fn http_accepts_responses_split_anywhere() {
        let one = ResponseTemplate::new(64);
        let stream: Vec<u8> = [one.as_bytes(); 3].concat();
        for split in 0..stream.len() {
            let mut c = HttpCheck::new(64);
            let done = c.feed(&stream[..split]).unwrap() + c.feed(&stream[split..]).unwrap();
            assert_eq!(done, 3, "split at {split}");
            assert!(c.is_idle());
        }
    }

    #[test]
    fn exact_queue_counts_and_compacts() {
        let mut q = ExactQueue::new();
        q.expect(|v| v.extend_from_slice(b"STORED\r\n"));
        q.expect(|v| v.extend_from_slice(b"END\r\n"));
        assert_eq!(q.feed(b"STOR").unwrap(), 0);
        assert_eq!(q.feed(b"ED\r\nEN").unwrap(), 1);
        assert_eq!(q.feed(b"D\r\n").unwrap(), 1);
        assert_eq!(q.outstanding(), 0);
        assert_eq!(q.feed(b"x"), Err(Mismatch::Unsolicited(1)));
    }
}
