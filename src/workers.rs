//! When the request workers last ran out of work. The runtime's park hook counts each time a
//! worker finds nothing to do; the store's writer reads the count to stop waiting for more
//! changes to join a commit once waiting would leave a worker idle.

use std::sync::atomic::{AtomicU64, Ordering};

/// 0 while no runtime reports (a book driven directly, as in unit tests); then 1 + the parks
/// so far.
static PARKS: AtomicU64 = AtomicU64::new(0);

/// Makes `builder`'s workers report when they park.
pub fn watch(builder: &mut tokio::runtime::Builder) -> &mut tokio::runtime::Builder {
    let _ = PARKS.compare_exchange(0, 1, Ordering::Relaxed, Ordering::Relaxed);
    builder.on_thread_park(|| {
        PARKS.fetch_add(1, Ordering::Relaxed);
    })
}

/// How many times a worker has parked, or `None` while no runtime reports.
pub fn parks() -> Option<u64> {
    match PARKS.load(Ordering::Relaxed) {
        0 => None,
        n => Some(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watched_runtime_counts_its_workers_going_idle() {
        let runtime = watch(&mut tokio::runtime::Builder::new_multi_thread())
            .worker_threads(1)
            .build()
            .unwrap();
        let before = parks().expect("a watched runtime reports");
        // The only task waits for us: its worker has nothing to do and parks.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let (go, wait) = tokio::sync::oneshot::channel::<()>();
        runtime.spawn(async move {
            let _ = wait.await;
            let _ = tx.send(());
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while parks() == Some(before) && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
        assert!(parks() > Some(before), "the idle worker was counted");
        go.send(()).unwrap();
        rx.recv().unwrap();
    }
}
