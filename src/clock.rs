//! Time as the server sees it. Injected so tests can move it; the local offset is read once
//! at start-up (reading it later is unsound on multi-threaded Linux, so `time` refuses).

use std::sync::Mutex;
use std::time::Duration;

use time::{OffsetDateTime, UtcOffset};

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> OffsetDateTime;
    /// The server's time zone offset, for time-of-day settings like `auto_logout`.
    fn local_offset(&self) -> UtcOffset;
}

/// The real clock.
pub struct SystemClock {
    pub offset: UtcOffset,
}

impl SystemClock {
    /// Reads the local offset; call before any thread is started (else UTC).
    pub fn detect() -> Self {
        Self {
            offset: UtcOffset::current_local_offset().unwrap_or(UtcOffset::UTC),
        }
    }
}

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
    fn local_offset(&self) -> UtcOffset {
        self.offset
    }
}

/// Real time plus an adjustable jump, for tests.
pub struct ManualClock {
    ahead: Mutex<Duration>,
    offset: UtcOffset,
}

impl ManualClock {
    pub fn new(offset: UtcOffset) -> Self {
        Self {
            ahead: Mutex::new(Duration::ZERO),
            offset,
        }
    }

    pub fn advance(&self, by: Duration) {
        *self.ahead.lock().unwrap_or_else(|e| e.into_inner()) += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + *self.ahead.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn local_offset(&self) -> UtcOffset {
        self.offset
    }
}
