//! The protocol work of one peer connection, the same for every runtime.
//!
//! Owns what a peer does with the bytes of one read: feed them to the workload's parser
//! from `paste-rt-examples`, and append every response of the batch to the caller's
//! output buffer (`rpc`/`wal`: the prebuilt `200 OK`; `echo`: the bytes themselves;
//! `kv`: the store's replies). The `wal` workload copies each POST body into the
//! [`WalLog`] and flushes it before appending that request's response.
//!
//! It must never do socket I/O, never allocate per request, and never hold a borrow of
//! the shared [`Service`] state beyond one call (runtimes switch tasks between calls).

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use paste_rt_examples::http::{Event, Method, RequestParser, ResponseTemplate, BAD_REQUEST};
use paste_rt_examples::memcache::{CommandParser, Config, Flow, Store};

use paste_rt::persist::FlushMethod;

use super::wal_log::{Record, WalError, WalLog, LOG_CAPACITY};
use super::{Peer, PeerConfig, PeerError, Workload};

/// Read buffer of one connection (a `wal` request is 1 091 bytes; several pipelined
/// requests fit).
pub(crate) const READ_BUF: usize = 4096;

/// What the connection does after a read batch has been answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Keep reading.
    Open,
    /// Send what was appended, then close.
    Close,
}

/// State shared by all connections of one server (one thread).
#[derive(Debug)]
pub(crate) struct Service {
    workload: Workload,
    response: ResponseTemplate,
    kv_config: Config,
    store: RefCell<Store>,
    wal: Option<RefCell<WalLog>>,
}

impl Service {
    /// The state `peer` needs to serve `workload` as `config` says; creates the `wal`
    /// log.
    pub(crate) fn new(peer: Peer, workload: Workload, config: &PeerConfig) -> Result<Service, PeerError> {
        let kv_config = Config::default();
        let wal = match workload {
            Workload::Wal => {
                let dir = config.wal_dir.clone().unwrap_or_else(std::env::temp_dir);
                let log = WalLog::create(&dir, LOG_CAPACITY, FlushMethod::detect(), config.pm_latency_ns)
                    .map_err(|e| PeerError::io(peer, "creating the wal log", std::io::Error::other(e)))?;
                Some(RefCell::new(log))
            }
            _ => None,
        };
        Ok(Service {
            workload,
            response: ResponseTemplate::new(config.body_len),
            store: RefCell::new(Store::new(&kv_config)),
            kv_config,
            wal,
        })
    }

    /// How the `wal` log flushes, if this service keeps one.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn flush_method(&self) -> Option<FlushMethod> {
        self.wal.as_ref().map(|log| log.borrow().method())
    }
}

/// The protocol state of one connection.
// The large variant (HTTP, the parser kept inline) is the one the workloads mostly use.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Session {
    /// `rpc` and `wal`: HTTP/1.1 requests.
    Http {
        /// The incremental request parser.
        parser: RequestParser,
        /// The log record of the POST being received (`wal` only).
        record: Option<Record>,
        /// Whether the current request keeps the connection open.
        keep_alive: bool,
    },
    /// `echo`: every byte back.
    Echo,
    /// `kv`: memcached text commands.
    Kv(CommandParser),
}

impl Session {
    /// A fresh connection of `service`'s workload.
    pub(crate) fn new(service: &Service) -> Session {
        match service.workload {
            Workload::Rpc | Workload::Wal => {
                Session::Http { parser: RequestParser::new(), record: None, keep_alive: true }
            }
            Workload::Echo => Session::Echo,
            Workload::Kv => Session::Kv(CommandParser::new(&service.kv_config)),
        }
    }

    /// Handles one read batch, appending its responses to `out`.
    ///
    /// `Err` only when the log could not be flushed: the requests of this batch that
    /// were persisted are answered in `out`; the caller sends it, reports the error and
    /// closes.
    pub(crate) fn on_input(&mut self, service: &Service, input: &[u8], out: &mut Vec<u8>) -> Result<Verdict, WalError> {
        match self {
            Session::Echo => {
                out.extend_from_slice(input);
                Ok(Verdict::Open)
            }
            Session::Kv(parser) => {
                let mut store = service.store.borrow_mut();
                store.set_now(unix_now());
                let mut pos = 0;
                while let Some(command) = parser.next_command(input, &mut pos) {
                    match command {
                        Ok(command) => {
                            if store.execute(command, out) == Flow::Close {
                                return Ok(Verdict::Close);
                            }
                        }
                        // memcached closes without a reply (a line past its limit).
                        Err(_) => return Ok(Verdict::Close),
                    }
                }
                Ok(Verdict::Open)
            }
            Session::Http { parser, record, keep_alive } => {
                let mut pos = 0;
                while let Some(event) = parser.next_event(input, &mut pos) {
                    match event {
                        Event::Head(head) => {
                            *keep_alive = head.keep_alive;
                            if let (Some(wal), Method::Post) = (&service.wal, head.method) {
                                match wal.borrow_mut().reserve(head.content_length) {
                                    Ok(reserved) => *record = Some(reserved),
                                    Err(_) => {
                                        out.extend_from_slice(BAD_REQUEST);
                                        return Ok(Verdict::Close);
                                    }
                                }
                            }
                        }
                        Event::Body(range) => {
                            if let (Some(wal), Some(record)) = (&service.wal, record.as_mut()) {
                                wal.borrow_mut().append(record, &input[range]);
                            }
                        }
                        Event::End => {
                            if let (Some(wal), Some(done)) = (&service.wal, record.take()) {
                                wal.borrow_mut().commit(done)?;
                            }
                            out.extend_from_slice(service.response.as_bytes());
                            if !*keep_alive {
                                return Ok(Verdict::Close);
                            }
                        }
                        Event::Error(_) => {
                            out.extend_from_slice(BAD_REQUEST);
                            return Ok(Verdict::Close);
                        }
                    }
                }
                Ok(Verdict::Open)
            }
        }
    }
}

/// Seconds since the epoch, for the store's expiry clock.
fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use paste_rt_examples::http::{write_post_request, WRK_GET_PAPER};

    fn service(workload: Workload) -> Service {
        Service::new(Peer::Tokio, workload, &PeerConfig::default()).expect("service")
    }

    #[test]
    fn rpc_answers_every_pipelined_request_of_a_batch() {
        let service = service(Workload::Rpc);
        let mut session = Session::new(&service);
        let mut out = Vec::new();
        let batch = [WRK_GET_PAPER, WRK_GET_PAPER, &WRK_GET_PAPER[..10]].concat();
        assert_eq!(session.on_input(&service, &batch, &mut out).expect("batch"), Verdict::Open);
        assert_eq!(out.len(), 2 * 151);
        out.clear();
        assert_eq!(session.on_input(&service, &WRK_GET_PAPER[10..], &mut out).expect("rest"), Verdict::Open);
        assert_eq!(out, service.response.as_bytes());
    }

    #[test]
    fn bad_request_closes_after_the_400() {
        let service = service(Workload::Rpc);
        let mut session = Session::new(&service);
        let mut out = Vec::new();
        let batch = [WRK_GET_PAPER, b"BOGUS\r\n\r\n"].concat();
        assert_eq!(session.on_input(&service, &batch, &mut out).expect("batch"), Verdict::Close);
        assert_eq!(out, [service.response.as_bytes(), BAD_REQUEST].concat());
    }

    #[test]
    fn wal_persists_split_bodies_and_answers_each_request() {
        let service = service(Workload::Wal);
        assert!(service.flush_method().is_some());
        let mut session = Session::new(&service);
        let body = [b'w'; 1024];
        let mut request = vec![0u8; 2048];
        let n = write_post_request(b"/", b"192.168.11.3:60000", &body, &mut request);
        request.truncate(n);
        let mut out = Vec::new();
        let (a, b) = request.split_at(600);
        assert_eq!(session.on_input(&service, a, &mut out).expect("first part"), Verdict::Open);
        assert!(out.is_empty(), "no answer before the body is persisted");
        assert_eq!(session.on_input(&service, b, &mut out).expect("second part"), Verdict::Open);
        assert_eq!(out, service.response.as_bytes());
        // The record landed in the log: the next one gets sequence 1.
        let mut wal = service.wal.as_ref().expect("log").borrow_mut();
        let next = wal.reserve(1).expect("reserve");
        assert_eq!(wal.commit(next).expect("commit"), 1);
    }

    #[test]
    fn kv_shares_one_store_between_connections() {
        let service = service(Workload::Kv);
        let (mut a, mut b) = (Session::new(&service), Session::new(&service));
        let mut out = Vec::new();
        assert_eq!(a.on_input(&service, b"set k 3 0 2\r\nhi\r\n", &mut out).expect("set"), Verdict::Open);
        assert_eq!(b.on_input(&service, b"get k\r\n", &mut out).expect("get"), Verdict::Open);
        assert_eq!(out, b"STORED\r\nVALUE k 3 2\r\nhi\r\nEND\r\n");
        out.clear();
        assert_eq!(b.on_input(&service, b"quit\r\n", &mut out).expect("quit"), Verdict::Close);
    }

    #[test]
    fn echo_returns_the_batch() {
        let service = service(Workload::Echo);
        let mut session = Session::new(&service);
        let mut out = Vec::new();
        assert_eq!(session.on_input(&service, b"abc", &mut out).expect("echo"), Verdict::Open);
        assert_eq!(out, b"abc");
    }
}
