//! Handles that outlive their runtime: every call answers an `io::Error`
//! (`NotConnected`), never a panic, on every backend.

use std::io;
use std::task::{Context, Poll, Waker};

use paste_rt::net::{TcpListener, TcpStream};
use paste_rt::runtime::Builder;
use paste_rt::{BackendChoice, SendData};

const TEST: &str = "a_stream_and_a_listener_used_after_their_runtime_is_dropped_answer_errors";

#[test]
fn a_stream_and_a_listener_used_after_their_runtime_is_dropped_answer_errors() {
    for kind in paste_rt::testing::backends(TEST) {
        let rt = Builder::new().ignore_env().backend_choice(BackendChoice::Only(kind)).quiet().build().unwrap();
        let (listener, stream, accepted) = rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let stream = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
            let (accepted, _) = listener.accept().await.unwrap();
            (listener, stream, accepted)
        });
        drop(rt);

        let not_connected = |what: &str, r: io::Result<()>| {
            let e = r.expect_err(&format!("{kind}: {what} succeeded after the runtime was dropped"));
            assert_eq!(e.kind(), io::ErrorKind::NotConnected, "{kind}: {what}: {e}");
        };
        let mut cx = Context::from_waker(Waker::noop());
        not_connected("queue_send", stream.queue_send(SendData::Static(b"late")));
        not_connected("queue_copy", stream.queue_copy(b"late").map(drop));
        not_connected("set_nodelay", stream.set_nodelay(true));
        not_connected("peer_addr", stream.peer_addr().map(drop));
        match stream.poll_recv(&mut cx) {
            Poll::Ready(r) => not_connected("poll_recv", r.map(drop)),
            Poll::Pending => panic!("{kind}: poll_recv waits for ever on a runtime that is gone"),
        }
        match stream.poll_flush(&mut cx) {
            Poll::Ready(r) => not_connected("poll_flush", r),
            Poll::Pending => panic!("{kind}: poll_flush waits for ever on a runtime that is gone"),
        }
        assert_eq!(stream.queued(), 0, "{kind}: bytes queued on a runtime that is gone");
        match listener.poll_accept(&mut cx) {
            Poll::Ready(r) => not_connected("poll_accept", r.map(drop)),
            Poll::Pending => panic!("{kind}: poll_accept waits for ever on a runtime that is gone"),
        }
        // Dropping them afterwards is quiet too.
        drop((stream, accepted, listener));
    }
}
