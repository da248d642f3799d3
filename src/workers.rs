//! Whether a request worker has run out of work. The runtime's park hooks count the workers
//! that are parked; the store's writer, about to commit under load, waits while none is (a
//! busy worker is likely making the next change) and goes ahead the moment one parks.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Condvar, Mutex};
use std::time::Instant;

/// Whether a runtime reports (else there is nothing to wait for).
static WATCHED: AtomicBool = AtomicBool::new(false);
/// Workers parked now.
static PARKED: AtomicUsize = AtomicUsize::new(0);
/// Threads in [`wait_idle`]: a parking worker wakes them only when there are any.
static WAITING: AtomicUsize = AtomicUsize::new(0);
static LOCK: Mutex<()> = Mutex::new(());
static IDLE: Condvar = Condvar::new();

/// Makes `builder`'s workers report when they park and unpark.
pub fn watch(builder: &mut tokio::runtime::Builder) -> &mut tokio::runtime::Builder {
    WATCHED.store(true, SeqCst);
    builder
        .on_thread_park(|| {
            PARKED.fetch_add(1, SeqCst);
            // Both sides are SeqCst: either the waiter sees this park, or this sees the
            // waiter and wakes it under the lock it checks under.
            if WAITING.load(SeqCst) > 0 {
                let _held = LOCK.lock().unwrap_or_else(|e| e.into_inner());
                IDLE.notify_all();
            }
        })
        .on_thread_unpark(|| {
            PARKED.fetch_sub(1, SeqCst);
        })
}

/// Returns once a worker is parked (at once if one is, or if no runtime reports), or at
/// `deadline`.
pub fn wait_idle(deadline: Instant) {
    if !WATCHED.load(SeqCst) {
        return;
    }
    WAITING.fetch_add(1, SeqCst);
    let mut held = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    while PARKED.load(SeqCst) == 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        held = IDLE
            .wait_timeout(held, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    drop(held);
    WAITING.fetch_sub(1, SeqCst);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    /// One test: the counts are process-wide.
    #[test]
    fn waits_while_the_only_worker_is_busy_and_not_once_it_parks() {
        let runtime = watch(&mut tokio::runtime::Builder::new_multi_thread())
            .worker_threads(1)
            .build()
            .unwrap();
        // Nothing to do: the worker parks, and the wait ends long before its deadline.
        let start = Instant::now();
        wait_idle(start + Duration::from_secs(30));
        assert!(start.elapsed() < Duration::from_secs(30));

        // The worker spins until released: the wait lasts until its deadline.
        let (running, release) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let (r, l) = (running.clone(), release.clone());
        let busy = runtime.spawn(async move {
            r.store(true, SeqCst);
            while !l.load(SeqCst) {
                std::hint::spin_loop();
            }
        });
        while !running.load(SeqCst) {
            std::thread::yield_now();
        }
        let start = Instant::now();
        wait_idle(start + Duration::from_millis(50));
        assert!(
            start.elapsed() >= Duration::from_millis(50),
            "returned while the worker was busy"
        );

        // Released, the worker finishes, parks, and wakes a waiter well before its deadline.
        let waiter = std::thread::spawn(|| {
            let start = Instant::now();
            wait_idle(start + Duration::from_secs(30));
            start.elapsed()
        });
        release.store(true, SeqCst);
        assert!(waiter.join().unwrap() < Duration::from_secs(30));
        runtime.block_on(busy).unwrap();
    }
}
