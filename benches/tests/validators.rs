//! The load generator's response validators reject every kind of corrupted response.

use paste_rt_bench::exchange::{rpc_response, write_kv_get_reply, Exchange, LoadSpec};
use paste_rt_bench::validate::{ExactQueue, HttpCheck, Mismatch};
use paste_rt_bench::workload::Workload;

#[test]
fn http_accepts_the_phttpd_response() {
    let mut c = HttpCheck::new(64);
    let one = rpc_response(64);
    assert_eq!(one.len(), 151);
    assert_eq!(c.feed(&[one.clone(), one].concat()), Ok(2));
}

#[test]
fn http_rejects_a_bad_status() {
    let bad = b"HTTP/1.1 404 Not Found\r\nContent-Length: 64\r\n\r\n";
    assert!(matches!(HttpCheck::new(64).feed(bad), Err(Mismatch::Status(s)) if s.contains("404")));
}

#[test]
fn http_rejects_a_wrong_or_missing_content_length() {
    let wrong = b"HTTP/1.1 200 OK\r\nContent-Length: 63\r\n\r\n";
    assert_eq!(HttpCheck::new(64).feed(wrong), Err(Mismatch::ContentLength { got: 63, expected: 64 }));
    let missing = b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\n";
    assert!(matches!(HttpCheck::new(64).feed(missing), Err(Mismatch::NoContentLength(_))));
    let garbage = b"HTTP/1.1 200 OK\r\nContent-Length: sixty\r\n\r\n";
    assert!(matches!(HttpCheck::new(64).feed(garbage), Err(Mismatch::NoContentLength(_))));
}

#[test]
fn http_rejects_a_corrupted_body_byte_anywhere() {
    let good = rpc_response(64);
    let header = good.len() - 64;
    for i in [header, header + 31, good.len() - 1] {
        let mut bad = good.clone();
        bad[i] ^= 0x20;
        let err = HttpCheck::new(64).feed(&bad).unwrap_err();
        assert!(matches!(err, Mismatch::Body { offset, .. } if offset == i - header), "{err}");
    }
}

#[test]
fn http_rejects_an_endless_header() {
    let endless = vec![b'a'; 5000];
    assert!(matches!(HttpCheck::new(64).feed(&endless), Err(Mismatch::HeadTooLong(_))));
}

#[test]
fn http_counts_a_truncated_response_as_incomplete() {
    let good = rpc_response(64);
    let mut c = HttpCheck::new(64);
    assert_eq!(c.feed(&good[..good.len() - 1]), Ok(0));
    assert!(!c.is_idle());
}

#[test]
fn echo_rejects_a_changed_byte_and_extra_bytes() {
    let spec = LoadSpec::new(Workload::Echo);
    let mut ex = Exchange::new(&spec, 0);
    let mut req = Vec::new();
    ex.write_request(&mut req);
    assert_eq!(req.len(), 100);
    let mut bad = req.clone();
    bad[50] ^= 1;
    assert!(matches!(ex.clone().feed(&bad), Err(Mismatch::Bytes { offset: 50, .. })));
    assert_eq!(ex.clone().feed(&req), Ok(1));
    let mut extra = req.clone();
    extra.push(b'x');
    assert_eq!(ex.feed(&extra), Err(Mismatch::Unsolicited(1)));
}

#[test]
fn echo_rejects_a_reordered_reply() {
    let spec = LoadSpec::new(Workload::Echo);
    let mut ex = Exchange::new(&spec, 0);
    let (mut first, mut second) = (Vec::new(), Vec::new());
    ex.write_request(&mut first);
    ex.write_request(&mut second);
    assert!(ex.feed(&second).is_err(), "the second message cannot answer the first request");
}

#[test]
fn kv_rejects_a_wrong_value_a_miss_and_an_error_line() {
    let mut q = ExactQueue::new();
    q.expect(|v| write_kv_get_reply(7, 64, v));
    let mut good = Vec::new();
    write_kv_get_reply(7, 64, &mut good);
    assert_eq!(q.clone().feed(&good), Ok(1));
    let mut other_key_value = Vec::new();
    write_kv_get_reply(8, 64, &mut other_key_value);
    assert!(q.clone().feed(&other_key_value).is_err());
    assert!(q.clone().feed(b"END\r\n").is_err(), "a miss is an error: every key was preloaded");
    assert!(q.feed(b"SERVER_ERROR out of memory\r\n").is_err());
}

#[test]
fn kv_requests_match_their_expected_replies() {
    let spec = LoadSpec { kv_value_size: 1024, ..LoadSpec::new(Workload::Kv) };
    let mut ex = Exchange::new(&spec, 1);
    for _ in 0..200 {
        let mut req = Vec::new();
        ex.write_request(&mut req);
        let reply = if req.starts_with(b"set ") {
            b"STORED\r\n".to_vec()
        } else {
            let key = std::str::from_utf8(&req[4..req.len() - 2]).unwrap();
            let k: u32 = key.trim_start_matches("key:").parse().unwrap();
            let mut v = Vec::new();
            write_kv_get_reply(k, 1024, &mut v);
            v
        };
        // Delivered one byte at a time.
        let done: usize = reply.iter().map(|b| ex.feed(std::slice::from_ref(b)).unwrap()).sum();
        assert_eq!(done, 1);
    }
}
