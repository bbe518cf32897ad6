//! `HyperTimer`'s sleeps reuse the timer entries of dropped ones (hyper makes and
//! drops one per request head) without ever completing early or late, on every
//! backend.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use hyper::rt::Timer;
use paste_rt::compat::hyper::HyperTimer;

/// Polls `sleep` once, so it arms its timer entry.
fn arm(sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>) {
    assert!(sleep.as_mut().poll(&mut Context::from_waker(Waker::noop())).is_pending());
}

#[paste_rt::test_each_backend]
async fn a_sleep_taking_over_a_dropped_sleeps_entry_still_completes_at_its_own_deadline() {
    let start = Instant::now();
    // Armed, then dropped: its entry (firing at +50 ms) stays armed for the next one.
    let mut early = HyperTimer.sleep_until(start + Duration::from_millis(50));
    arm(&mut early);
    drop(early);
    // A later deadline takes that entry over: it fires at +50 ms, and the sleep
    // must arm again rather than complete.
    let later = HyperTimer.sleep_until(start + Duration::from_millis(150));
    later.await;
    assert!(start.elapsed() >= Duration::from_millis(150), "completed early: {:?}", start.elapsed());
}

#[paste_rt::test_each_backend]
async fn a_sleep_never_takes_an_entry_that_fires_after_its_deadline() {
    let start = Instant::now();
    let mut far = HyperTimer.sleep_until(start + Duration::from_secs(3600));
    arm(&mut far);
    drop(far); // an entry firing in an hour is left spare
    let near = HyperTimer.sleep_until(start + Duration::from_millis(10));
    paste_rt::time::timeout(Duration::from_secs(10), near).await.expect("waited for the spare hour-long entry");
    // A reset to an earlier deadline gives the armed entry up too.
    let mut sleep = HyperTimer.sleep_until(Instant::now() + Duration::from_secs(3600));
    arm(&mut sleep);
    HyperTimer.reset(&mut sleep, Instant::now() + Duration::from_millis(5));
    paste_rt::time::timeout(Duration::from_secs(10), sleep).await.expect("the reset sleep kept its hour-long entry");
}

#[paste_rt::test_each_backend]
async fn many_sleeps_made_and_dropped_like_hyper_does_keep_firing_on_time() {
    // hyper's pattern: a sleep per request head, armed, then dropped when the head
    // arrives; every so often one has to fire.
    for round in 0..5 {
        for _ in 0..1000 {
            let mut sleep = HyperTimer.sleep(Duration::from_secs(30));
            arm(&mut sleep);
        }
        let start = Instant::now();
        let mut short = HyperTimer.sleep(Duration::from_millis(3));
        let done = std::future::poll_fn(|cx| Pin::new(&mut short).poll(cx).map(|()| Instant::now()));
        let at = paste_rt::time::timeout(Duration::from_secs(10), done).await.expect("a short sleep never fired");
        assert!(at - start >= Duration::from_millis(3), "round {round}: fired early");
    }
}
