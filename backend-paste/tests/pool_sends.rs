//! Pool buffers (`SendData::Pool`) sent on paste-emu: one of at most
//! [`POOL_COPY_MAX`] bytes is copied into its TX slot, a larger one that fits a slot is
//! swapped in whole (zero copy), and both arrive intact.

use std::io::{ErrorKind, Read};
use std::net::TcpStream;

use paste_rt_core::conformance::{self, Kit};
use paste_rt_core::{Backend, PoolConfig, SendData, Token};
use paste_rt_paste::{PasteBackend, POOL_COPY_MAX};

/// Sends `len` bytes in one pool buffer on `t` and reads them at `client`; returns
/// the bytes the backend copied meanwhile.
fn send_pool_buffer(k: &mut Kit<PasteBackend>, t: Token, client: &mut TcpStream, len: usize) -> u64 {
    let payload: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
    let mut tx = k.be.pool().tx_buf().expect("a free pool buffer");
    assert_eq!(tx.put(&payload), len, "the payload fits one buffer");
    let copied_before = SendData::copied_on_this_thread();
    k.send(t, SendData::Pool(tx));
    let mut got = Vec::new();
    k.until(10, "the pool buffer's bytes at the client", |k| {
        let mut chunk = [0u8; 4096];
        match client.read(&mut chunk) {
            Ok(0) => panic!("the connection closed early"),
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => panic!("reading at the client: {e}"),
        }
        k.poll(0);
        got.len() >= len
    });
    assert_eq!(got, payload, "{len} bytes arrive as sent");
    SendData::copied_on_this_thread() - copied_before
}

#[test]
fn small_pool_buffers_are_copied_into_slots_and_larger_ones_swapped() {
    let _serial = conformance::serial();
    let be = PasteBackend::emulated(PoolConfig::default()).expect("the emulated PASTE port starts");
    let mut k = Kit::new(be);
    let (listener, addr) = k.listen();
    let (t, mut client) = k.connect_client(listener, addr);

    for len in [1, 150, POOL_COPY_MAX] {
        assert_eq!(send_pool_buffer(&mut k, t, &mut client, len), len as u64, "{len} bytes: copied once");
    }
    for len in [POOL_COPY_MAX + 1, 1000] {
        assert_eq!(send_pool_buffer(&mut k, t, &mut client, len), 0, "{len} bytes: swapped in, no copy");
    }
    k.close(t);
}
