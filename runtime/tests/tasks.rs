//! Executor behaviour: spawning, panics, cross-thread wakes, timers, timeouts.

mod support;

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use paste_rt::time::{sleep, sleep_until, timeout};

#[paste_rt::test_each_backend]
async fn panicking_task_yields_err_and_runtime_goes_on() {
    let h = paste_rt::spawn(async {
        panic!("boom in a task");
    });
    let err = h.await.unwrap_err();
    assert!(err.is_panic());
    assert!(err.to_string().contains("boom in a task"), "{err}");
    // The runtime still runs tasks and timers afterwards.
    let ok = paste_rt::spawn(async {
        sleep(Duration::from_millis(1)).await;
        7
    });
    assert_eq!(ok.await.unwrap(), 7);
}

#[paste_rt::test_each_backend]
async fn spawn_local_non_send_and_join_order() {
    let counter = Rc::new(Cell::new(0));
    let handles: Vec<_> = (0..100)
        .map(|i| {
            let c = counter.clone();
            paste_rt::spawn(async move {
                paste_rt::yield_now().await;
                c.set(c.get() + 1);
                i
            })
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.await.unwrap(), i);
    }
    assert_eq!(counter.get(), 100);
}

/// A waker fired from another thread interrupts a 10-second wait: the value
/// arrives, the 10 s timeout did not elapse, and exactly the remote wake-up counter
/// moved (no timing assertion).
#[paste_rt::test_each_backend]
async fn remote_wake_interrupts_long_wait() {
    let (tx, rx) = futures_channel::oneshot::channel::<u32>();
    let before = paste_rt::stats();
    let sender = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        tx.send(5).unwrap();
    });
    let got = timeout(Duration::from_secs(10), rx).await;
    assert_eq!(got.expect("the 10 s deadline must not be what ended the wait").unwrap(), 5);
    let after = paste_rt::stats();
    assert!(after.remote_wakeups - before.remote_wakeups >= 1, "{before:?} -> {after:?}");
    sender.join().unwrap();
}

#[paste_rt::test_each_backend]
async fn handle_spawns_send_futures_from_other_threads() {
    let handle = paste_rt::runtime::Builder::new(); // a second, unrelated builder is harmless
    drop(handle);
    let (tx, rx) = futures_channel::oneshot::channel();
    let rt_handle = paste_rt::Handle::current();
    std::thread::spawn(move || {
        let jh = rt_handle.spawn(async { paste_rt::current_backend().is_some() });
        tx.send(jh).unwrap();
    });
    let jh = rx.await.unwrap();
    assert!(jh.await.unwrap(), "the task ran on the runtime's thread");
}

#[paste_rt::test_each_backend]
async fn timers_fire_in_deadline_order() {
    let order = Rc::new(std::cell::RefCell::new(Vec::new()));
    let base = Instant::now() + Duration::from_millis(20);
    let mut hs = vec![];
    for (i, ms) in [(0, 30u64), (1, 10), (2, 20), (3, 0), (4, 25)] {
        let o = order.clone();
        hs.push(paste_rt::spawn(async move {
            sleep_until(base + Duration::from_millis(ms)).await;
            o.borrow_mut().push(i);
        }));
    }
    for h in hs {
        h.await.unwrap();
    }
    assert_eq!(*order.borrow(), vec![3, 1, 2, 4, 0]);
}

#[paste_rt::test_each_backend]
async fn timeout_cancels_the_inner_future() {
    struct SetOnDrop(Rc<Cell<bool>>);
    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.set(true);
        }
    }
    let dropped = Rc::new(Cell::new(false));
    let guard = SetOnDrop(dropped.clone());
    let r = timeout(Duration::from_millis(5), async move {
        let _g = guard;
        sleep(Duration::from_secs(3600)).await;
    })
    .await;
    assert!(r.is_err());
    assert!(dropped.get(), "the inner future was dropped on expiry");
    // And a future that finishes in time is not cut short.
    assert_eq!(timeout(Duration::from_secs(5), async { 3 }).await, Ok(3));
}

#[paste_rt::test_each_backend]
async fn interval_ticks_advance() {
    let mut iv = paste_rt::time::interval(Duration::from_millis(2));
    let t0 = iv.tick().await;
    let t1 = iv.tick().await;
    let t2 = iv.tick().await;
    assert!(t0 < t1 && t1 < t2);
}

#[test]
fn aborted_task_is_dropped() {
    let rt = paste_rt::runtime::Builder::new().ignore_env().backend("epoll").build().unwrap();
    let flag = Rc::new(Cell::new(false));
    rt.block_on(async {
        struct D(Rc<Cell<bool>>);
        impl Drop for D {
            fn drop(&mut self) {
                self.0.set(true);
            }
        }
        let d = D(flag.clone());
        let h = paste_rt::spawn(async move {
            let _d = d;
            sleep(Duration::from_secs(3600)).await;
        });
        paste_rt::yield_now().await;
        h.abort();
        // Like tokio's, abort takes effect when the runtime next runs the task.
        paste_rt::yield_now().await;
        assert!(flag.get(), "the aborted task's future was dropped");
    });
}

/// A task that wakes itself in the poll that finishes it is queued and complete at
/// once: it must be retired when it comes out of the queue, not polled again (and
/// its memory must live until then).
#[paste_rt::test_each_backend]
async fn a_task_that_wakes_itself_as_it_finishes_is_retired_once() {
    use std::future::poll_fn;
    use std::task::Poll;
    let handles: Vec<_> = (0..64)
        .map(|i| {
            paste_rt::spawn(poll_fn(move |cx| {
                cx.waker().wake_by_ref();
                Poll::Ready(i)
            }))
        })
        .collect();
    // Some handles are dropped before their task runs, so the last reference can be
    // the registration: it must not be released while the task is still queued.
    let mut sum = 0;
    for (i, h) in handles.into_iter().enumerate() {
        if i % 2 == 0 {
            sum += h.await.unwrap();
        }
    }
    paste_rt::yield_now().await;
    assert_eq!(sum, (0..64).step_by(2).sum::<i32>());
}

/// A task woken by the running task goes to the LIFO slot and runs next, before
/// tasks queued earlier; a task waking itself goes to the back.
#[paste_rt::test_each_backend]
async fn a_task_woken_by_the_running_task_runs_next() {
    use std::cell::RefCell;
    use std::rc::Rc;
    let order = Rc::new(RefCell::new(Vec::new()));
    let (tx, rx) = futures_channel::oneshot::channel::<()>();
    let o = order.clone();
    let waiter = paste_rt::spawn(async move {
        rx.await.unwrap();
        o.borrow_mut().push("woken");
    });
    paste_rt::yield_now().await; // the waiter now waits on the channel
    let o = order.clone();
    let sender = paste_rt::spawn(async move {
        tx.send(()).unwrap(); // wakes the waiter: to the LIFO slot
        o.borrow_mut().push("sender");
    });
    // Queued before the wake-up happens; without the LIFO slot it would run first.
    let o = order.clone();
    let queued_first = paste_rt::spawn(async move { o.borrow_mut().push("queued first") });
    sender.await.unwrap();
    waiter.await.unwrap();
    queued_first.await.unwrap();
    assert_eq!(*order.borrow(), vec!["sender", "woken", "queued first"]);
}
