//! How long a connection may live. hyper bounds an idle HTTP/1 connection by its header
//! timeout, but an HTTP/2 connection that answers PINGs stays open for ever (rust-notes C1).
//! So every connection is driven here: an HTTP/2 connection with no open stream for
//! `idle` is shut down gracefully (GOAWAY), any connection is shut down once it reaches
//! `max_age`, and one that has not finished `drain` after being asked to is dropped.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Frame, SizeHint};
use hyper_util::server::graceful::GracefulConnection;
use tokio::sync::watch;
use tokio::time::sleep;

/// Limits for one connection.
#[derive(Debug, Clone, Copy)]
pub struct Lifetime {
    /// Shut down after this long without an open stream (HTTP/2; `None` for HTTP/1).
    pub idle: Option<Duration>,
    /// Shut down this long after accept, however busy.
    pub max_age: Duration,
    /// After asking for a shutdown, drop the connection if it has not finished by then.
    pub drain: Duration,
}

/// The open streams (requests whose answer is not yet fully sent) of one connection.
#[derive(Clone)]
pub struct Streams(Arc<watch::Sender<usize>>);

impl Streams {
    pub fn new() -> Self {
        Self(Arc::new(watch::Sender::new(0)))
    }

    /// Counts one stream as open until the returned guard is dropped.
    pub fn open(&self) -> StreamGuard {
        self.0.send_modify(|n| *n += 1);
        StreamGuard(self.0.clone())
    }

    pub fn open_now(&self) -> usize {
        *self.0.borrow()
    }

    fn watch(&self) -> watch::Receiver<usize> {
        self.0.subscribe()
    }
}

impl Default for Streams {
    fn default() -> Self {
        Self::new()
    }
}

/// One open stream; dropped with the response body (sent, or reset by the client).
pub struct StreamGuard(Arc<watch::Sender<usize>>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// A response body that keeps its stream counted as open until it is dropped (`None` where
/// nothing counts streams: HTTP/1, whose idle time hyper bounds itself).
pub struct Counted<B> {
    inner: B,
    _open: Option<StreamGuard>,
}

impl<B> Counted<B> {
    pub fn new(inner: B, open: Option<StreamGuard>) -> Self {
        Self { inner, _open: open }
    }
}

impl<B: Body + Unpin> Body for Counted<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Resolves once no stream has been open for `after` (restarting whenever one opens).
async fn quiet_for(mut open: watch::Receiver<usize>, after: Duration) {
    loop {
        if open.wait_for(|n| *n == 0).await.is_err() {
            return std::future::pending().await;
        }
        tokio::select! {
            () = sleep(after) => return,
            changed = open.changed() => {
                if changed.is_err() {
                    return std::future::pending().await;
                }
            }
        }
    }
}

/// Why a connection was asked to close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closing {
    Idle,
    MaxAge,
    Shutdown,
}

/// Drives `conn` to its end within `life`; `stop` turning true asks it to finish too.
/// Returns why it was asked to close (if it was) and how it ended; `Ok(())` also when it
/// was dropped after `drain`.
///
/// A plain fn around an `async move` block that uses `conn` where it was captured: an
/// `async fn` keeps every argument twice (as passed, and as its local), and every idle
/// connection keeps this future for its whole life. `Unpin` (hyper's connections over
/// tokio's streams are) lets it be polled in place without pinning it into another local.
pub fn drive<C>(
    mut conn: C,
    streams: Option<&Streams>,
    life: Lifetime,
    mut stop: watch::Receiver<bool>,
) -> impl Future<Output = (Option<Closing>, Result<(), C::Error>)>
where
    C: GracefulConnection + Unpin,
{
    // Boxed, and only where streams are counted (HTTP/2).
    let mut quiet = match (streams, life.idle) {
        (Some(s), Some(after)) => Some(Box::pin(quiet_for(s.watch(), after))),
        _ => None,
    };
    async move {
        let why = {
            let quiet = async {
                match quiet.as_mut() {
                    Some(q) => q.await,
                    None => std::future::pending().await,
                }
            };
            // Biased: the connection ends first almost always, and an unbiased select draws
            // a random number per poll (a boot storm polls this once per read and write).
            tokio::select! {
                biased;
                result = &mut conn => return (None, result),
                () = quiet => Closing::Idle,
                () = sleep(life.max_age) => Closing::MaxAge,
                _ = stop.wait_for(|s| *s) => Closing::Shutdown,
            }
        };
        Pin::new(&mut conn).graceful_shutdown();
        // The drain timer exists only once a shutdown is asked for.
        match tokio::time::timeout(life.drain, &mut conn).await {
            Ok(result) => (Some(why), result),
            Err(_) => (Some(why), Ok(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    // Paused time: the sleeps below advance the clock instead of taking 800 ms.
    #[tokio::test(start_paused = true)]
    async fn quiet_restarts_whenever_a_stream_opens() {
        let streams = Streams::new();
        let after = Duration::from_millis(300);
        let quiet = quiet_for(streams.watch(), after);
        tokio::pin!(quiet);
        let start = Instant::now();
        // A stream opens at 100 ms and stays open until 500 ms; quiet comes 300 ms later.
        let guard = tokio::select! {
            () = &mut quiet => panic!("quiet too early"),
            () = sleep(Duration::from_millis(100)) => streams.open(),
        };
        tokio::select! {
            () = &mut quiet => panic!("quiet while a stream is open"),
            () = sleep(Duration::from_millis(400)) => drop(guard),
        }
        assert_eq!(streams.open_now(), 0);
        quiet.await;
        assert_eq!(start.elapsed(), Duration::from_millis(800));
    }

    #[test]
    fn a_counted_body_keeps_its_stream_open_until_dropped() {
        let streams = Streams::new();
        let body = Counted::new(
            http_body_util::Full::new(bytes::Bytes::from("abc")),
            Some(streams.open()),
        );
        assert_eq!(streams.open_now(), 1);
        assert_eq!(body.size_hint().exact(), Some(3));
        drop(body);
        assert_eq!(streams.open_now(), 0);
    }
}
