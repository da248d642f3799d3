//! Where log lines go: appended to a shared buffer by whoever logs, written out by a thread of
//! its own every [`INTERVAL`] or once [`FLUSH_AT`] bytes wait. A request never waits for a
//! terminal, a pipe or a disk, and never wakes another thread per line (a channel per line,
//! as tracing-appender's is, cost a futex wake-up per request). Past [`MAX_PENDING`] bytes
//! new lines are dropped and counted rather than let memory grow; the count is logged.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a line may wait before it is written.
pub const INTERVAL: Duration = Duration::from_millis(100);
/// Pending bytes that wake the writer thread early.
pub const FLUSH_AT: usize = 64 * 1024;
/// Pending bytes past which new lines are dropped.
pub const MAX_PENDING: usize = 16 * 1024 * 1024;

struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
    dropped: AtomicU64,
}

#[derive(Default)]
struct Pending {
    buf: Vec<u8>,
    closing: bool,
}

/// The handle loggers write through (`tracing_subscriber`'s `MakeWriter`).
#[derive(Clone)]
pub struct BatchWriter {
    shared: Arc<Shared>,
    max_pending: usize,
}

/// Writes out what is pending and stops the writer thread when dropped.
#[must_use = "dropping the guard stops the log writer"]
pub struct FlushGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// A writer for `out` and the guard that keeps its thread running.
pub fn batched<W: Write + Send + 'static>(out: W) -> (BatchWriter, FlushGuard) {
    batched_with(out, MAX_PENDING)
}

fn batched_with<W: Write + Send + 'static>(
    mut out: W,
    max_pending: usize,
) -> (BatchWriter, FlushGuard) {
    let shared = Arc::new(Shared {
        pending: Mutex::new(Pending::default()),
        wake: Condvar::new(),
        dropped: AtomicU64::new(0),
    });
    let writer_side = shared.clone();
    let thread = std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || {
            let mut spare = Vec::new();
            let mut reported = 0;
            loop {
                let closing = {
                    let mut p = writer_side
                        .pending
                        .lock()
                        .unwrap_or_else(|e| e.into_inner());
                    if p.buf.len() < FLUSH_AT && !p.closing {
                        p = writer_side
                            .wake
                            .wait_timeout(p, INTERVAL)
                            .unwrap_or_else(|e| e.into_inner())
                            .0;
                    }
                    std::mem::swap(&mut p.buf, &mut spare);
                    p.closing
                };
                let dropped = writer_side.dropped.load(Ordering::Relaxed);
                if dropped > reported {
                    let _ = writeln!(
                        spare,
                        "log writer: {} line(s) dropped, the output could not keep up",
                        dropped - reported
                    );
                    reported = dropped;
                }
                if !spare.is_empty() {
                    // Nowhere to report a failing log output; the lines are lost.
                    let _ = out.write_all(&spare).and_then(|()| out.flush());
                }
                recycle(&mut spare);
                if closing {
                    return;
                }
            }
        })
        .expect("starting the log writer thread");
    (
        BatchWriter {
            shared: shared.clone(),
            max_pending,
        },
        FlushGuard {
            shared,
            thread: Some(thread),
        },
    )
}

/// A batch smaller than this means traffic is light.
const LIGHT: usize = FLUSH_AT / 16;

/// Empties a written batch's buffer for the next one. Under load every batch nears
/// [`FLUSH_AT`] and the buffer is kept (at most twice that); once traffic is light a burst's
/// buffer is freed, or a boot storm's two buffers would stay for good.
fn recycle(buf: &mut Vec<u8>) {
    if buf.len() < LIGHT {
        *buf = Vec::new();
    } else {
        buf.clear();
        buf.shrink_to(FLUSH_AT * 2);
    }
}

impl BatchWriter {
    /// Lines dropped so far because the output could not keep up.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Queues `line` (whole lines only), or counts it dropped past the limit.
    pub fn append(&self, line: &[u8]) {
        let mut p = self
            .shared
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if p.buf.len() + line.len() > self.max_pending {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let was = p.buf.len();
        p.buf.extend_from_slice(line);
        let crossed = was < FLUSH_AT && p.buf.len() >= FLUSH_AT;
        drop(p);
        if crossed {
            self.shared.wake.notify_one();
        }
    }
}

impl Write for BatchWriter {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        self.append(line);
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BatchWriter {
    type Writer = BatchWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        self.shared
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .closing = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn text(sink: &Sink) -> String {
        String::from_utf8(sink.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn a_burst_buffer_is_kept_under_load_and_freed_once_traffic_is_light() {
        let mut burst = Vec::with_capacity(FLUSH_AT * 16);
        burst.resize(FLUSH_AT * 8, b'x');
        recycle(&mut burst);
        assert!(burst.is_empty());
        assert!(
            (FLUSH_AT..=FLUSH_AT * 2).contains(&burst.capacity()),
            "{}",
            burst.capacity()
        );
        burst.extend_from_slice(&[b'y'; LIGHT - 1]);
        recycle(&mut burst);
        assert_eq!((burst.len(), burst.capacity()), (0, 0));
    }

    #[test]
    fn every_line_is_written_in_order_by_the_time_the_guard_is_dropped() {
        let sink = Sink::default();
        let (mut w, guard) = batched(sink.clone());
        for i in 0..1000 {
            w.write_all(format!("line {i}\n").as_bytes()).unwrap();
        }
        drop(guard);
        let out = text(&sink);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 1000);
        assert_eq!(lines[0], "line 0");
        assert_eq!(lines[999], "line 999");
    }

    #[test]
    fn lines_are_written_without_a_flush_within_the_interval() {
        let sink = Sink::default();
        let (mut w, _guard) = batched(sink.clone());
        w.write_all(b"one line\n").unwrap();
        let deadline = std::time::Instant::now() + INTERVAL * 20;
        while text(&sink).is_empty() {
            assert!(std::time::Instant::now() < deadline, "never written");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(text(&sink), "one line\n");
    }

    /// An output that blocks until released, like a full pipe.
    struct Stuck(Arc<(Mutex<bool>, Condvar)>, Sink);

    impl Write for Stuck {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let (open, cv) = &*self.0;
            let mut o = open.lock().unwrap();
            while !*o {
                o = cv.wait(o).unwrap();
            }
            self.1.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stuck_output_drops_and_counts_lines_instead_of_blocking_the_logger() {
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let sink = Sink::default();
        let (mut w, guard) = batched_with(Stuck(gate.clone(), sink.clone()), 100);
        let started = std::time::Instant::now();
        // The first line is taken by the writer thread, which then blocks in `write`.
        w.write_all(&[b'x'; 60]).unwrap();
        std::thread::sleep(INTERVAL * 3);
        for _ in 0..1000 {
            w.write_all(&[b'y'; 60]).unwrap();
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the logger waited"
        );
        assert!(w.dropped() >= 998, "{}", w.dropped());
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        drop(guard);
        let out = text(&sink);
        assert!(out.contains("line(s) dropped"), "{out}");
    }
}
