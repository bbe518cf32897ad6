//! The migration guide's worked example: `lines_tokio` (tokio) and `lines`
//! (paste-rt, on every backend) run as processes and answer the same client script
//! with identical replies; both stop gracefully on SIGINT and exit 0.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The client script: each line sent, and the reply it must get.
const SCRIPT: &[(&str, &str)] = &[
    ("GET colour", "NOT_FOUND"),
    ("SET colour blue", "OK"),
    ("GET colour", "VALUE blue"),
    ("SET greeting hello, world", "OK"),
    ("GET greeting", "VALUE hello, world"),
    ("SET colour green\r", "OK"),
    ("GET colour", "VALUE green"),
    ("DEL colour", "DELETED"),
    ("DEL colour", "NOT_FOUND"),
    ("GET", "ERROR unknown command: GET"),
    ("FLY away", "ERROR unknown command: FLY away"),
    ("", "ERROR unknown command: "),
    ("QUIT", "BYE"),
];

/// A server process, killed if the test fails first.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(binary: &str, backend: Option<&str>) -> Server {
        let mut command = Command::new(binary);
        command.args(["--addr", "127.0.0.1:0"]).stdout(Stdio::piped());
        if let Some(backend) = backend {
            command.env(paste_rt::runtime::BACKEND_ENV, backend);
        }
        let mut child = command.spawn().unwrap_or_else(|e| panic!("starting {binary}: {e}"));
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let mut server = Server { addr: SocketAddr::from(([127, 0, 0, 1], 0)), child };
        let addr = line.trim().strip_prefix("lines: listening on ").and_then(|a| a.parse().ok());
        // On a panic here, dropping `server` kills the process.
        server.addr = addr.unwrap_or_else(|| panic!("{binary} printed {line:?}"));
        server
    }

    fn connect(&self) -> TcpStream {
        let c = TcpStream::connect(self.addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c
    }

    /// Sends SIGINT and waits (up to 10 s) for the process to exit.
    fn interrupt(mut self) -> ExitStatus {
        // SAFETY: kill with a valid signal on our own child's pid.
        assert_eq!(unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) }, 0);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "still running 10 s after SIGINT");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs the script on one connection, then an over-long line on another; returns
/// every reply, and the closes seen as `<EOF>`.
fn transcript(server: &Server) -> Vec<String> {
    let mut replies = Vec::new();
    let mut c = BufReader::new(server.connect());
    for (send, _) in SCRIPT {
        writeln!(c.get_mut(), "{send}").unwrap();
        let mut reply = String::new();
        c.read_line(&mut reply).unwrap();
        replies.push(reply.trim_end_matches('\n').to_string());
    }
    replies.push(read_rest(&mut c));
    let mut c = BufReader::new(server.connect());
    writeln!(c.get_mut(), "SET big {}", "x".repeat(2000)).unwrap();
    let mut reply = String::new();
    c.read_line(&mut reply).unwrap();
    replies.push(reply.trim_end_matches('\n').to_string());
    replies.push(read_rest(&mut c));
    replies
}

/// What is left before the server closes the connection, then `<EOF>`.
fn read_rest(c: &mut BufReader<TcpStream>) -> String {
    let mut rest = String::new();
    match c.read_to_string(&mut rest) {
        Ok(_) => format!("{rest}<EOF>"),
        Err(e) => format!("{rest}<{:?}>", e.kind()),
    }
}

fn expected() -> Vec<String> {
    let mut replies: Vec<String> = SCRIPT.iter().map(|(_, reply)| reply.to_string()).collect();
    replies.extend(["<EOF>", "ERROR line too long", "<EOF>"].map(String::from));
    replies
}

/// The tokio server's transcript, taken once.
fn tokio_transcript() -> &'static [String] {
    static TRANSCRIPT: OnceLock<Vec<String>> = OnceLock::new();
    TRANSCRIPT.get_or_init(|| transcript(&Server::start(env!("CARGO_BIN_EXE_lines_tokio"), None)))
}

#[test]
fn the_tokio_server_answers_the_script() {
    assert_eq!(tokio_transcript(), expected());
}

#[paste_rt::test_each_backend]
async fn the_paste_rt_server_answers_like_the_tokio_one() {
    let backend = paste_rt::current_backend().unwrap().name();
    let server = Server::start(env!("CARGO_BIN_EXE_lines"), Some(backend));
    assert_eq!(transcript(&server), tokio_transcript(), "on {backend}");
    assert!(server.interrupt().success());
}

/// Ctrl-C with a client connected: the server closes the connection after the
/// command in hand and exits 0 — on tokio and on paste-rt alike.
fn ctrl_c_stops_gracefully(binary: &str, backend: Option<&str>) {
    let server = Server::start(binary, backend);
    let mut c = BufReader::new(server.connect());
    writeln!(c.get_mut(), "SET k v").unwrap();
    let mut reply = String::new();
    c.read_line(&mut reply).unwrap();
    assert_eq!(reply, "OK\n");
    let status = server.interrupt();
    assert!(status.success(), "{binary}: exit status {status:?}");
    assert_eq!(read_rest(&mut c), "<EOF>", "{binary}: the idle connection was not closed cleanly");
}

#[test]
fn tokio_server_stops_on_ctrl_c() {
    ctrl_c_stops_gracefully(env!("CARGO_BIN_EXE_lines_tokio"), None);
}

#[paste_rt::test_each_backend]
async fn paste_rt_server_stops_on_ctrl_c() {
    ctrl_c_stops_gracefully(env!("CARGO_BIN_EXE_lines"), Some(paste_rt::current_backend().unwrap().name()));
}

/// The guide embeds the diff between the two sources: applying it to
/// `lines_tokio.rs` must give `lines.rs` exactly, so the guide cannot go stale.
#[test]
fn the_guides_diff_turns_lines_tokio_into_lines() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let read = |path: &str| std::fs::read_to_string(format!("{root}/{path}")).unwrap();
    let guide = read("docs/migrating-from-tokio.md");
    let diff = guide.split("```diff\n").nth(1).expect("no diff block in the guide").split("\n```").next().unwrap();
    let before = read("examples/src/bin/lines_tokio.rs");
    let after = read("examples/src/bin/lines.rs");
    assert!(diff.starts_with("--- examples/src/bin/lines_tokio.rs\n+++ examples/src/bin/lines.rs\n"));
    let old: Vec<&str> = before.lines().collect();
    let mut new: Vec<&str> = Vec::new();
    let mut next_old = 0; // index of the first old line not yet copied
    for line in diff.lines().skip(2) {
        if let Some(header) = line.strip_prefix("@@ -") {
            let start: usize = header.split([',', ' ']).next().unwrap().parse().unwrap();
            new.extend_from_slice(&old[next_old..start - 1]);
            next_old = start - 1;
        } else if let Some(added) = line.strip_prefix('+') {
            new.push(added);
        } else {
            let (kind, text) = line.split_at(1);
            assert!(kind == " " || kind == "-", "not a diff line: {line:?}");
            assert_eq!(old[next_old], text, "the guide's diff does not match lines_tokio.rs");
            if kind == " " {
                new.push(text);
            }
            next_old += 1;
        }
    }
    new.extend_from_slice(&old[next_old..]);
    assert_eq!(new.join("\n") + "\n", after, "regenerate the guide's diff: diff -u lines_tokio.rs lines.rs");
}
