//! A circuit breaker: after `threshold` consecutive failures it opens and fails fast for
//! `cooldown`; then one trial request is let through, whose outcome closes or re-opens it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// The trial request is under way.
    HalfOpen,
}

pub struct Breaker {
    threshold: u32,
    cooldown: Duration,
    state: Mutex<State>,
}

impl Breaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cooldown,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a request may go out now.
    pub fn allow(&self) -> bool {
        let mut s = self.lock();
        match *s {
            State::Closed { .. } => true,
            State::Open { until } if Instant::now() >= until => {
                *s = State::HalfOpen;
                true
            }
            State::Open { .. } | State::HalfOpen => false,
        }
    }

    pub fn success(&self) {
        let mut s = self.lock();
        if *s != (State::Closed { failures: 0 }) {
            if *s == State::HalfOpen {
                tracing::info!("upstream circuit breaker closed");
            }
            *s = State::Closed { failures: 0 };
        }
    }

    /// Records a failure; true when this failure opened the breaker.
    pub fn failure(&self) -> bool {
        let mut s = self.lock();
        let open = State::Open {
            until: Instant::now() + self.cooldown,
        };
        match *s {
            State::Closed { failures } if failures + 1 >= self.threshold => {
                *s = open;
                true
            }
            State::Closed { failures } => {
                *s = State::Closed {
                    failures: failures + 1,
                };
                false
            }
            State::HalfOpen | State::Open { .. } => {
                *s = open;
                false
            }
        }
    }

    pub fn is_open(&self) -> bool {
        matches!(*self.lock(), State::Open { .. } | State::HalfOpen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_fails_fast_then_tries_once() {
        let b = Breaker::new(3, Duration::from_millis(50));
        assert!(b.allow());
        assert!(!b.failure());
        b.success();
        assert!(!b.failure());
        assert!(!b.failure());
        assert!(b.failure(), "third consecutive failure opens");
        assert!(!b.allow(), "open: fail fast");
        std::thread::sleep(Duration::from_millis(60));
        assert!(b.allow(), "one trial after the cool-down");
        assert!(!b.allow(), "only one");
        b.failure();
        assert!(!b.allow(), "a failed trial re-opens");
        std::thread::sleep(Duration::from_millis(60));
        assert!(b.allow());
        b.success();
        assert!(
            b.allow() && b.allow() && !b.is_open(),
            "a good trial closes"
        );
    }
}
