//! Shed connections are counted, not logged one by one: a host reconnecting in a tight loop
//! would otherwise write a line per attempt (tens of MB a minute). At most one summary line
//! per interval says how many were shed, why, and which source shed the most.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::SourceKey;

/// Why a connection was closed at accept (the index into [`Summary::counts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shed {
    /// The source is in no allow-list (nor a trusted proxy, nor `healthz_allow`).
    NotAllowed,
    /// The source already holds `max_connections_per_source`.
    PerSource,
    /// The server holds `max_connections`.
    Global,
}

impl Shed {
    /// The `reason` label of `hotdesk_connections_refused_total`.
    pub fn name(self) -> &'static str {
        match self {
            Shed::NotAllowed => "not_allowed",
            Shed::PerSource => "per_source",
            Shed::Global => "global",
        }
    }

    fn index(self) -> usize {
        match self {
            Shed::NotAllowed => 0,
            Shed::PerSource => 1,
            Shed::Global => 2,
        }
    }
}

/// Sources tracked for "which shed the most" in one interval; beyond this a flood from many
/// addresses is still counted, just not attributed.
const MAX_TRACKED: usize = 1024;

/// Counts since the last line, and when that line was written.
pub struct ShedSummary {
    interval: Duration,
    counts: [u64; 3],
    by_source: HashMap<SourceKey, u64>,
    window_start: Option<Instant>,
    last_line: Option<Instant>,
}

/// What one summary line reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Closed connections by reason: not allowed, per source, global.
    pub counts: [u64; 3],
    pub top: Option<(SourceKey, u64)>,
    /// How long the counts were gathered over.
    pub over: Duration,
}

impl ShedSummary {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            counts: [0; 3],
            by_source: HashMap::new(),
            window_start: None,
            last_line: None,
        }
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    pub fn record(&mut self, why: Shed, source: SourceKey, now: Instant) {
        self.counts[why.index()] += 1;
        self.window_start.get_or_insert(now);
        let tracked = self.by_source.len();
        match self.by_source.get_mut(&source) {
            Some(n) => *n += 1,
            None if tracked < MAX_TRACKED => {
                self.by_source.insert(source, 1);
            }
            None => {}
        }
    }

    /// The summary to log now, if anything was shed and the last line is at least one
    /// interval old; the counts start again from zero.
    pub fn take_due(&mut self, now: Instant) -> Option<Summary> {
        if let Some(last) = self.last_line
            && now.duration_since(last) < self.interval
        {
            return None;
        }
        self.take(now)
    }

    /// The summary of everything not yet reported, whenever the last line was (at exit).
    pub fn take(&mut self, now: Instant) -> Option<Summary> {
        if self.counts == [0; 3] {
            return None;
        }
        self.last_line = Some(now);
        let top = self
            .by_source
            .drain()
            .max_by_key(|(key, n)| (*n, std::cmp::Reverse(key.to_string())));
        let start = self.window_start.take().unwrap_or(now);
        Some(Summary {
            counts: std::mem::take(&mut self.counts),
            top,
            over: now.duration_since(start),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> SourceKey {
        SourceKey::of(s.parse().unwrap())
    }

    #[test]
    fn a_flood_gives_at_most_one_line_per_interval() {
        let t0 = Instant::now();
        let mut s = ShedSummary::new(Duration::from_secs(10));
        assert_eq!(s.take_due(t0), None, "nothing shed, nothing to say");
        // The first shed after a quiet time is reported at once ...
        s.record(Shed::PerSource, key("192.0.2.7"), t0);
        let first = s.take_due(t0).expect("first line");
        assert_eq!(first.counts, [0, 1, 0]);
        // ... then 100,000 more in the next ten seconds give no line ...
        let mut lines = 0;
        for i in 0..100_000u64 {
            let now = t0 + Duration::from_micros(i * 99);
            let why = if i % 10 == 0 {
                Shed::Global
            } else {
                Shed::PerSource
            };
            s.record(why, key("192.0.2.7"), now);
            s.record(Shed::NotAllowed, key("203.0.113.1"), now);
            lines += usize::from(s.take_due(now).is_some());
        }
        assert_eq!(lines, 0);
        // ... until the interval has passed: one line with every count.
        let later = t0 + Duration::from_secs(10);
        let line = s.take_due(later).expect("summary after the interval");
        assert_eq!(line.counts, [100_000, 90_000, 10_000]);
        assert_eq!(line.top, Some((key("192.0.2.7"), 100_000)));
        assert_eq!(s.take_due(later), None, "counts start again from zero");
        assert_eq!(line.over, Duration::from_secs(10));
        // At exit, what is left is reported at once.
        s.record(Shed::Global, key("192.0.2.8"), later);
        assert_eq!(s.take_due(later), None);
        assert_eq!(s.take(later).unwrap().counts, [0, 0, 1]);
    }

    #[test]
    fn attribution_is_bounded_but_counting_is_not() {
        let t0 = Instant::now();
        let mut s = ShedSummary::new(Duration::from_secs(1));
        for i in 0..(MAX_TRACKED as u32 + 500) {
            s.record(Shed::NotAllowed, SourceKey::of(i.to_be_bytes().into()), t0);
        }
        assert_eq!(s.by_source.len(), MAX_TRACKED);
        assert_eq!(s.take_due(t0).unwrap().counts[0], MAX_TRACKED as u64 + 500);
    }
}
