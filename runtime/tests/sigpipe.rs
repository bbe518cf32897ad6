//! The SIGPIPE policy: sending to a peer that reset the connection is an error on
//! the connection, never a signal, and the runtime leaves the process's SIGPIPE
//! disposition as it found it — on epoll, io_uring and paste-emu (they send with
//! `MSG_NOSIGNAL`). Kernel PASTE sends from inside its sync call, where no such flag
//! reaches the kernel, so it ignores SIGPIPE while a port is open (documented in
//! docs/configuration.md); it is not run here.
//!
//! Rust programs start with SIGPIPE ignored, which would hide a signal, so each
//! backend runs in a child process (this test binary again) that first restores
//! the default action: a SIGPIPE would kill it.

use std::io;
use std::process::Command;
use std::time::Duration;

use paste_rt::net::TcpListener;
use paste_rt::runtime::Builder;
use paste_rt::{BackendChoice, BackendKind, SendData};

const TEST: &str = "sending_to_a_reset_peer_is_an_error_never_a_sigpipe";
/// Set in the child: the backend it runs on.
const CHILD_ENV: &str = "PASTE_RT_SIGPIPE_CHILD";

#[test]
fn sending_to_a_reset_peer_is_an_error_never_a_sigpipe() {
    if let Ok(name) = std::env::var(CHILD_ENV) {
        child(&name);
        return;
    }
    let me = std::env::current_exe().unwrap();
    let mut ran = 0;
    for kind in paste_rt::testing::backends(TEST) {
        if kind == BackendKind::Paste {
            continue; // see the module docs
        }
        let out = Command::new(&me)
            .args([TEST, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, kind.name())
            .output()
            .unwrap();
        let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{kind}: the child ended with {} (SIGPIPE is signal 13):\n{log}", out.status);
        assert!(log.contains("child: send failed with"), "{kind}: the child did not run its check:\n{log}");
        ran += 1;
    }
    assert!(ran > 0, "no backend could run the check");
}

/// In the child: default SIGPIPE action, then send to a peer that reset.
fn child(name: &str) {
    // SAFETY: restores the default action for SIGPIPE before any thread of this
    // process sends; nothing else in the child depends on the disposition.
    let before = unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    assert_ne!(before, libc::SIG_ERR);
    let kind = BackendKind::ALL.into_iter().find(|k| k.name() == name).unwrap();
    let rt = Builder::new().ignore_env().backend_choice(BackendChoice::Only(kind)).quiet().build().unwrap();
    let err = rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let peer = std::net::TcpStream::connect(addr).unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        // A reset, not a FIN: linger 0 then close.
        socket2::SockRef::from(&peer).set_linger(Some(Duration::ZERO)).unwrap();
        drop(peer);
        let chunk: &'static [u8] = &[b'x'; 16 * 1024];
        for _ in 0..1000 {
            let sent = async {
                stream.queue_send(SendData::Static(chunk))?;
                std::future::poll_fn(|cx| stream.poll_flush(cx)).await?;
                paste_rt::time::sleep(Duration::from_millis(2)).await;
                Ok::<(), io::Error>(())
            };
            if let Err(e) = sent.await {
                return e;
            }
        }
        panic!("{kind}: 16 MiB sent to a peer that reset, and no error");
    });
    drop(rt);
    // SAFETY: reads the disposition back (and sets it again to what it was).
    let now = unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    assert_eq!(now, libc::SIG_DFL, "{kind}: the runtime changed the SIGPIPE disposition");
    println!("child: send failed with {err} (kind {:?})", err.kind());
}
