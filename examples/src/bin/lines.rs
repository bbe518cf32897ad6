//! lines: a line-protocol key-value server on paste-rt — the "after" of
//! docs/migrating-from-tokio.md (the "before" is `lines_tokio`; diff the two files).
//!
//! One command per line: `SET key value`, `GET key`, `DEL key`, `QUIT`. Ctrl-C
//! stops it gracefully: the accept loop stops, each connection finishes the
//! command in hand and closes, and the process exits 0. The backend comes from
//! `PASTE_RT_BACKEND` (`auto` when unset).

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use paste_rt::net::{TcpListener, TcpStream};
use tokio_util::codec::{Framed, LinesCodec, LinesCodecError};
use tokio_util::task::TaskTracker;

/// Longest line accepted; a longer one is answered with an error and the
/// connection is closed.
const MAX_LINE: usize = 1024;

/// The store, shared by every connection. `Rc<RefCell<…>>` is enough: tasks
/// never leave the runtime's thread.
type Store = Rc<RefCell<HashMap<String, String>>>;

/// A line-protocol key-value server.
#[derive(Debug, Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7100")]
    addr: SocketAddr,
}

#[paste_rt::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let listener = TcpListener::bind(args.addr).await?;
    println!("lines: listening on {}", listener.local_addr()?);
    let store = Store::default();
    let connections = TaskTracker::new();
    let ctrl_c = paste_rt::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            biased;
            _ = &mut ctrl_c => break,
            accepted = listener.accept() => {
                let (stream, _) = accepted?;
                drop(paste_rt::spawn(connections.track_future(serve(stream, store.clone()))));
            }
        }
    }
    paste_rt::runtime::request_shutdown();
    connections.close();
    connections.wait().await;
    Ok(())
}

/// One connection: a reply for every line, until `QUIT`, EOF or shutdown.
async fn serve(stream: TcpStream, store: Store) {
    let mut lines = Framed::new(stream, LinesCodec::new_with_max_length(MAX_LINE));
    loop {
        let line = tokio::select! {
            biased;
            () = paste_rt::runtime::shutdown_requested() => break,
            line = lines.next() => line,
        };
        let (reply, close) = match line {
            Some(Ok(line)) => execute(&mut store.borrow_mut(), &line),
            Some(Err(LinesCodecError::MaxLineLengthExceeded)) => ("ERROR line too long".to_string(), true),
            // EOF, or the connection failed.
            Some(Err(LinesCodecError::Io(_))) | None => break,
        };
        if lines.send(reply).await.is_err() || close {
            break;
        }
    }
}

/// Runs one command; returns the reply and whether to close the connection.
fn execute(store: &mut HashMap<String, String>, line: &str) -> (String, bool) {
    let mut words = line.trim_end_matches('\r').splitn(3, ' ');
    let reply = match (words.next(), words.next(), words.next()) {
        (Some("SET"), Some(key), Some(value)) => {
            store.insert(key.to_string(), value.to_string());
            "OK".to_string()
        }
        (Some("GET"), Some(key), None) => match store.get(key) {
            Some(value) => format!("VALUE {value}"),
            None => "NOT_FOUND".to_string(),
        },
        (Some("DEL"), Some(key), None) => match store.remove(key) {
            Some(_) => "DELETED".to_string(),
            None => "NOT_FOUND".to_string(),
        },
        (Some("QUIT"), None, None) => return ("BYE".to_string(), true),
        _ => format!("ERROR unknown command: {line}"),
    };
    (reply, false)
}
