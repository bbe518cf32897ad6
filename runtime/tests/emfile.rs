//! Running out of file descriptors while accepting: existing connections keep
//! being served, accepting resumes when fds are freed, and the runtime does not
//! spin meanwhile. The server runs in a child process (this test binary re-run
//! with `PASTE_RT_EMFILE_CHILD` set) so that its lowered `RLIMIT_NOFILE` cannot
//! disturb other tests.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use paste_rt::net::TcpListener;
use paste_rt::BackendKind;

const CHILD_ENV: &str = "PASTE_RT_EMFILE_CHILD";
const CONNS: usize = 12;

/// The child: lowers its fd limit to 3 more than it has open, then serves an
/// echo service until it has served `CONNS` connections, and prints its counters.
#[test]
fn emfile_child() {
    let Ok(backend) = std::env::var(CHILD_ENV) else { return };
    // The accept failures are `tracing` events too (checked by the parent).
    tracing_subscriber::fmt().with_max_level(tracing::Level::WARN).with_ansi(false).with_writer(std::io::stdout).init();
    let rt = paste_rt::runtime::Builder::new().ignore_env().backend(&backend).build().unwrap();
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
        let limit = libc::rlimit { rlim_cur: open + 3, rlim_max: open + 3 };
        // SAFETY: setrlimit reads a valid rlimit struct.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
        println!("port {}", listener.local_addr().unwrap().port());
        let before = paste_rt::stats();
        let (mut served, mut emfile) = (0, 0);
        let mut tasks = vec![];
        while served < CONNS {
            match listener.accept().await {
                Ok((s, _)) => {
                    served += 1;
                    tasks.push(paste_rt::spawn(async move {
                        while let Ok(Some(b)) = s.recv().await {
                            let mut tx = s.tx_buf().unwrap();
                            tx.put(&b);
                            s.send(tx).await.unwrap();
                        }
                    }));
                }
                Err(e) if e.raw_os_error() == Some(libc::EMFILE) => emfile += 1,
                Err(e) => panic!("unexpected accept error {e}"),
            }
        }
        for t in tasks {
            t.await.unwrap();
        }
        let d = paste_rt::stats() - before;
        println!("done ticks={} emfile={emfile} accepts={}", d.ticks, d.accepts);
    });
}

fn run_child(backend: BackendKind) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "emfile_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, backend.name())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let port: u16 = loop {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "child ended before printing its port");
        // libtest may print "test emfile_child ... " on the same line.
        if let Some((_, p)) = line.trim().split_once("port ") {
            break p.parse().unwrap();
        }
    };
    // All connections are made up front: only 3 fit in the child's fd limit.
    let mut conns: Vec<Option<std::net::TcpStream>> = (0..CONNS)
        .map(|_| {
            let s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            Some(s)
        })
        .collect();
    let echo = |c: &mut std::net::TcpStream, msg: &str| {
        c.write_all(msg.as_bytes()).unwrap();
        let mut got = vec![0u8; msg.len()];
        c.read_exact(&mut got).unwrap_or_else(|e| panic!("{msg:?} never answered: {e}"));
        assert_eq!(got, msg.as_bytes());
    };
    // Connection i is answered only once it was accepted. Before closing i - 1,
    // it is used again: an existing connection is served while the listener is
    // starved. Each close frees an fd, and accepting resumes.
    for i in 0..CONNS {
        echo(conns[i].as_mut().unwrap(), &format!("ping {i}"));
        if i > 0 {
            echo(conns[i - 1].as_mut().unwrap(), &format!("again {}", i - 1));
            conns[i - 1] = None;
        }
    }
    drop(conns);
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert!(child.wait().unwrap().success(), "child failed: {rest}");
    let done =
        rest.lines().find_map(|l| l.find("done ").map(|i| &l[i..])).unwrap_or_else(|| panic!("no summary in {rest:?}"));
    let field = |name: &str| -> u64 {
        done.split_whitespace().find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse().ok()).unwrap()
    };
    assert_eq!(field("accepts"), CONNS as u64);
    assert!(field("emfile") >= 1, "the limit was never hit: {done}");
    // A spinning accept loop would run hundreds of thousands of ticks here.
    assert!(field("ticks") < 5_000, "busy loop while starved: {done}");
    let event = |l: &&str| l.contains("WARN") && l.contains("paste_rt::io") && l.contains("accept failed");
    let warned = rest.lines().find(event).unwrap_or_else(|| panic!("no accept-failure event in {rest:?}"));
    assert!(warned.contains("out_of_fds=true"), "{warned}");
    eprintln!("{backend}: {done}");
}

#[test]
fn emfile_on_accept_recovers_without_spinning() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    for kind in paste_rt::testing::backends("emfile_on_accept_recovers_without_spinning") {
        run_child(kind);
    }
}
