//! Failed attempts and lockouts, per subject.
//!
//! An attempt reserves its place *before* any slow work ([`Lockouts::begin`]): parallel guesses
//! count against the limit while they are still running, and an attempt that is dropped
//! without an outcome counts as a failure. What an attacker can lock is kept narrow: the hard
//! lock is on an extension *from one source*; an extension from everywhere locks only past a
//! much higher threshold, so nobody can take a user off every phone with a few guesses.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::metrics::Metrics;
use crate::phone::Mac;

/// What failed attempts are counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subject {
    /// One extension tried from one source: the hard lock.
    ExtensionFrom(String, IpAddr),
    /// One extension from anywhere: locks only past `extension_max`.
    Extension(String),
    /// One phone's MAC from one source (the MAC alone is client-written, so never locked alone).
    HandsetFrom(Mac, IpAddr),
    /// A source address; IPv6 is keyed by its /64 (one host holds a whole /64).
    Source(IpAddr),
    /// The admin password tried from one source: stricter than the other limits.
    AdminFrom(IpAddr),
    /// The shared user password, across every extension and source.
    UserPassword,
    /// The admin password, across every extension and source.
    AdminPassword,
}

/// A source address as lockouts key it: IPv4 as is, IPv6 by its /64.
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !0xffff_ffff_ffff_ffff).into()),
        v4 => v4,
    }
}

impl Subject {
    pub fn source(ip: IpAddr) -> Self {
        Subject::Source(source_key(ip))
    }

    pub fn extension_from(ext: &str, ip: IpAddr) -> Self {
        Subject::ExtensionFrom(ext.to_owned(), source_key(ip))
    }

    pub fn handset_from(mac: Mac, ip: IpAddr) -> Self {
        Subject::HandsetFrom(mac, source_key(ip))
    }

    pub fn admin_from(ip: IpAddr) -> Self {
        Subject::AdminFrom(source_key(ip))
    }

    /// What kind of subject this is, without its key: the `scope` label of the lockout
    /// counter (never an extension, MAC or address).
    pub fn kind(&self) -> &'static str {
        match self {
            Subject::ExtensionFrom(..) => "extension_from",
            Subject::Extension(_) => "extension",
            Subject::HandsetFrom(..) => "handset_from",
            Subject::Source(_) => "source",
            Subject::AdminFrom(_) => "admin_from",
            Subject::UserPassword => "user_password",
            Subject::AdminPassword => "admin_password",
        }
    }

    /// Whether this is one of the two credentials shared by every user.
    pub fn is_shared(&self) -> bool {
        matches!(self, Subject::UserPassword | Subject::AdminPassword)
    }

    /// Whether its tries count in the "N tries left" a phone shows: not the admin password's
    /// budgets, which are not the user's.
    fn shown(&self) -> bool {
        !matches!(
            self,
            Subject::UserPassword | Subject::AdminPassword | Subject::AdminFrom(_)
        )
    }
}

/// The stable text form, used as the store's key and in the admin API.
impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::ExtensionFrom(e, ip) => write!(f, "extension-from:{e}@{ip}"),
            Subject::Extension(e) => write!(f, "extension:{e}"),
            Subject::HandsetFrom(m, ip) => write!(f, "handset-from:{m}@{ip}"),
            Subject::Source(ip) => write!(f, "source:{ip}"),
            Subject::AdminFrom(ip) => write!(f, "admin-from:{ip}"),
            Subject::UserPassword => f.write_str("user-password"),
            Subject::AdminPassword => f.write_str("admin-password"),
        }
    }
}

impl FromStr for Subject {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        let (kind, rest) = s.split_once(':').unwrap_or((s, ""));
        let ip = |t: &str| t.parse::<IpAddr>().map_err(|_| ());
        // Extensions never contain `@` (see `valid_extension`); the address is after the last.
        Ok(match kind {
            "extension-from" => {
                let (e, a) = rest.rsplit_once('@').ok_or(())?;
                Subject::ExtensionFrom(e.to_owned(), ip(a)?)
            }
            "extension" => Subject::Extension(rest.to_owned()),
            "handset-from" => {
                let (m, a) = rest.rsplit_once('@').ok_or(())?;
                Subject::HandsetFrom(m.parse().map_err(|_| ())?, ip(a)?)
            }
            "source" => Subject::Source(ip(rest)?),
            "admin-from" => Subject::AdminFrom(ip(rest)?),
            "user-password" => Subject::UserPassword,
            "admin-password" => Subject::AdminPassword,
            _ => return Err(()),
        })
    }
}

/// How many failures within the window lock each kind of subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// An extension from one source, and a phone from one source.
    pub pair: u32,
    pub extension: u32,
    pub source: u32,
    pub admin_from: u32,
    /// The shared user password and the admin password, each.
    pub shared: u32,
    /// Failures are counted within this window; a first lockout lasts as long, each
    /// further one twice the one before, up to a day.
    pub window: Duration,
}

impl Limits {
    fn max_for(&self, s: &Subject) -> u32 {
        match s {
            Subject::ExtensionFrom(..) | Subject::HandsetFrom(..) => self.pair,
            Subject::Extension(_) => self.extension,
            Subject::Source(_) => self.source,
            Subject::AdminFrom(_) => self.admin_from,
            Subject::UserPassword | Subject::AdminPassword => self.shared,
        }
        .max(1)
    }
}

/// One subject's history, as the store keeps it.
pub use crate::store::LockoutRow as Saved;

/// A lockout that is in force now, for the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveLock {
    pub subject: Subject,
    pub remaining: Duration,
    pub strikes: u32,
}

#[derive(Debug)]
struct Record {
    times: VecDeque<Instant>,
    /// Attempts begun and not yet resolved.
    in_flight: u32,
    strikes: u32,
    locked_until: Option<Instant>,
    last: Instant,
}

impl Record {
    fn new(now: Instant) -> Self {
        Self {
            times: VecDeque::new(),
            in_flight: 0,
            strikes: 0,
            locked_until: None,
            last: now,
        }
    }

    fn forget_old(&mut self, now: Instant, window: Duration) {
        while self
            .times
            .front()
            .is_some_and(|&t| now.duration_since(t) >= window)
        {
            self.times.pop_front();
        }
    }
}

/// Subjects tracked at most; beyond this, idle entries are swept before inserting.
const MAX_SUBJECTS: usize = 100_000;
const LONGEST_LOCK: Duration = Duration::from_secs(24 * 3600);
/// Why an attempt may not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A subject is locked for this long.
    Locked(Duration),
    /// A subject's failures plus the attempts still running reach its limit: the outcome of
    /// those must come first.
    Busy,
}

pub struct Lockouts {
    /// Swapped whole by a SIGHUP reload; each call reads one snapshot.
    limits: arc_swap::ArcSwap<Limits>,
    records: Mutex<HashMap<Subject, Record>>,
    /// Where lockouts started are counted, when the server keeps metrics.
    metrics: Option<Arc<Metrics>>,
}

/// What a finished failure did: the attempts left before a lockout (0 when locked now), the
/// subjects that became locked, and each touched subject's history to persist.
#[derive(Debug, Default)]
pub struct Failure {
    pub left: u32,
    pub newly_locked: Vec<Subject>,
    pub saved: Vec<Saved>,
}

impl Lockouts {
    pub fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            limits: arc_swap::ArcSwap::from_pointee(limits),
            records: Mutex::new(HashMap::new()),
            metrics: None,
        })
    }

    /// As [`Lockouts::new`], counting each lockout that starts in `metrics`.
    pub fn counted(limits: Limits, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            limits: arc_swap::ArcSwap::from_pointee(limits),
            records: Mutex::new(HashMap::new()),
            metrics: Some(metrics),
        })
    }

    pub fn limits(&self) -> Limits {
        **self.limits.load()
    }

    /// New limits for the attempts that start from now on; the failures on record stay and
    /// count against them (a lowered limit can lock a subject at its next failure).
    pub fn set_limits(&self, limits: Limits) {
        self.limits.store(Arc::new(limits));
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Subject, Record>> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `Err(wait)` when any subject is locked, with the longest wait.
    pub fn check(&self, subjects: &[Subject], now: Instant) -> Result<(), Duration> {
        let map = self.lock();
        let wait = subjects
            .iter()
            .filter_map(|s| map.get(s)?.locked_until)
            .filter(|until| *until > now)
            .map(|until| until - now)
            .max();
        wait.map_or(Ok(()), Err)
    }

    /// Starts an attempt against `subjects`: refused with the wait when one is locked, or
    /// when its failures plus the attempts still running already reach its limit.
    pub fn begin(self: &Arc<Self>, subjects: &[Subject], now: Instant) -> Result<Attempt, Refusal> {
        let mut attempt = Attempt {
            lockouts: self.clone(),
            subjects: Vec::new(),
            done: false,
        };
        self.join(&mut attempt, subjects, now)?;
        Ok(attempt)
    }

    /// Adds `subjects` to a running attempt, on the same terms as [`Lockouts::begin`].
    pub fn join(
        &self,
        attempt: &mut Attempt,
        subjects: &[Subject],
        now: Instant,
    ) -> Result<(), Refusal> {
        let limits = self.limits();
        let mut map = self.lock();
        if map.len() >= MAX_SUBJECTS {
            let window = limits.window;
            map.retain(|_, r| {
                r.in_flight > 0
                    || r.locked_until.is_some_and(|u| u > now)
                    || now.duration_since(r.last) < window
            });
        }
        let mut wait = None::<Duration>;
        let mut busy = false;
        for s in subjects {
            let Some(r) = map.get_mut(s) else { continue };
            r.forget_old(now, limits.window);
            match r.locked_until {
                Some(until) if until > now => wait = wait.max(Some(until - now)),
                _ => busy |= r.times.len() as u32 + r.in_flight >= limits.max_for(s),
            }
        }
        if let Some(w) = wait {
            return Err(Refusal::Locked(w));
        }
        if busy {
            return Err(Refusal::Busy);
        }
        for s in subjects {
            let r = map.entry(s.clone()).or_insert_with(|| Record::new(now));
            r.in_flight += 1;
            attempt.subjects.push(s.clone());
        }
        Ok(())
    }

    /// Ends one attempt's reservation; with `failed`, records the failure.
    fn resolve(&self, subjects: &[Subject], failed: bool, now: Instant) -> Failure {
        let limits = self.limits();
        let mut map = self.lock();
        let mut out = Failure {
            left: u32::MAX,
            ..Failure::default()
        };
        for s in subjects {
            let max = limits.max_for(s);
            let r = map.entry(s.clone()).or_insert_with(|| Record::new(now));
            r.in_flight = r.in_flight.saturating_sub(1);
            if !failed {
                continue;
            }
            if now.duration_since(r.last) >= LONGEST_LOCK {
                r.strikes = 0;
            }
            r.last = now;
            r.forget_old(now, limits.window);
            r.times.push_back(now);
            if r.times.len() as u32 >= max {
                r.strikes += 1;
                let factor = 2u32.saturating_pow(r.strikes - 1);
                let lock = limits.window.saturating_mul(factor).min(LONGEST_LOCK);
                r.locked_until = Some(now + lock);
                r.times.clear();
                if s.shown() {
                    out.left = 0;
                }
                if let Some(m) = &self.metrics {
                    m.lockout_started(s.kind());
                }
                out.newly_locked.push(s.clone());
            } else if s.shown() {
                out.left = out.left.min(max - r.times.len() as u32);
            }
            out.saved.push(save(s, r, now));
        }
        if out.left == u32::MAX {
            out.left = limits.pair;
        }
        out
    }

    /// Forgets these subjects (a success, or an admin clearing them); returns the ones that
    /// had failures on record, whose stored rows must go too.
    pub fn clear(&self, subjects: &[Subject]) -> Vec<Subject> {
        let mut map = self.lock();
        subjects
            .iter()
            .filter(|s| {
                map.remove(s)
                    .is_some_and(|r| !r.times.is_empty() || r.strikes > 0)
            })
            .cloned()
            .collect()
    }

    /// Clears every subject `pick` selects; returns them.
    pub fn clear_where(&self, pick: impl Fn(&Subject) -> bool) -> Vec<Subject> {
        let mut map = self.lock();
        let gone: Vec<Subject> = map.keys().filter(|s| pick(s)).cloned().collect();
        for s in &gone {
            map.remove(s);
        }
        gone
    }

    /// Every lockout in force at `now`, longest first.
    pub fn active(&self, now: Instant) -> Vec<ActiveLock> {
        let map = self.lock();
        let mut out: Vec<ActiveLock> = map
            .iter()
            .filter_map(|(s, r)| {
                let until = r.locked_until.filter(|u| *u > now)?;
                Some(ActiveLock {
                    subject: s.clone(),
                    remaining: until - now,
                    strikes: r.strikes,
                })
            })
            .collect();
        out.sort_by(|a, b| {
            b.remaining
                .cmp(&a.remaining)
                .then(a.subject.cmp(&b.subject))
        });
        out
    }

    /// Restores histories from the store (at start-up); rows that no longer parse are skipped.
    pub fn restore(&self, saved: &[Saved], now: Instant, wall_now: i64) {
        let mut map = self.lock();
        let at = |t: i64| {
            let ago = Duration::from_secs(wall_now.saturating_sub(t).max(0) as u64);
            now.checked_sub(ago).unwrap_or(now)
        };
        for row in saved {
            let Ok(subject) = row.subject.parse::<Subject>() else {
                continue;
            };
            let mut r = Record::new(at(row.last));
            r.times = row.failures.iter().map(|t| at(*t)).collect();
            r.strikes = row.strikes;
            r.locked_until = row
                .locked_until
                .filter(|u| *u > wall_now)
                .map(|u| now + Duration::from_secs((u - wall_now) as u64));
            map.insert(subject, r);
        }
    }
}

/// A subject's history in wall-clock seconds, for the store.
fn save(s: &Subject, r: &Record, now: Instant) -> Saved {
    let wall_now = time::OffsetDateTime::now_utc().unix_timestamp();
    let wall = |t: Instant| wall_now - now.saturating_duration_since(t).as_secs() as i64;
    Saved {
        subject: s.to_string(),
        failures: r.times.iter().map(|t| wall(*t)).collect(),
        strikes: r.strikes,
        locked_until: r
            .locked_until
            .map(|u| wall_now + u.saturating_duration_since(now).as_secs() as i64),
        last: wall(r.last),
    }
}

/// An attempt in progress. Resolve it with [`Attempt::succeed`] or [`Attempt::fail`];
/// dropped unresolved, it counts as a failure.
pub struct Attempt {
    lockouts: Arc<Lockouts>,
    subjects: Vec<Subject>,
    done: bool,
}

impl Attempt {
    pub fn subjects(&self) -> &[Subject] {
        &self.subjects
    }

    /// The credential was right: the reservation ends and `forgive` is cleared.
    /// Returns the forgiven subjects that had a history.
    pub fn succeed(mut self, forgive: &[Subject]) -> Vec<Subject> {
        self.done = true;
        self.lockouts.resolve(&self.subjects, false, Instant::now());
        self.lockouts.clear(forgive)
    }

    /// The credential was wrong: one failure against every subject.
    pub fn fail(mut self) -> Failure {
        self.done = true;
        self.lockouts.resolve(&self.subjects, true, Instant::now())
    }

    /// Nothing was checked (the server was too busy): the reservation ends uncounted.
    pub fn abandon(mut self) {
        self.done = true;
        self.lockouts.resolve(&self.subjects, false, Instant::now());
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if !self.done {
            self.lockouts.resolve(&self.subjects, true, Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(pair: u32) -> Limits {
        Limits {
            pair,
            extension: pair * 10,
            source: 20,
            admin_from: 3,
            shared: 30,
            window: Duration::from_secs(60),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn fail_at(l: &Arc<Lockouts>, s: &[Subject], at: Instant) -> u32 {
        let a = l.begin(s, at).expect("not locked");
        // `fail` stamps with the real clock; tests that move time use `resolve` directly.
        let subjects = a.subjects.clone();
        std::mem::forget(a);
        l.resolve(&subjects, true, at).left
    }

    #[test]
    fn lockout_after_max_failures_then_expires() {
        let l = Lockouts::new(limits(3));
        let t0 = Instant::now();
        let s = [Subject::extension_from("1001", ip("10.0.0.1"))];
        assert_eq!(fail_at(&l, &s, t0), 2);
        assert_eq!(fail_at(&l, &s, t0 + Duration::from_secs(1)), 1);
        assert!(l.check(&s, t0 + Duration::from_secs(2)).is_ok());
        assert_eq!(fail_at(&l, &s, t0 + Duration::from_secs(2)), 0);
        let wait = l.check(&s, t0 + Duration::from_secs(10)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(52));
        assert!(l.check(&s, t0 + Duration::from_secs(63)).is_ok());
        // The same extension from another source is not locked.
        let other = [Subject::extension_from("1001", ip("10.0.0.2"))];
        assert!(l.check(&other, t0 + Duration::from_secs(10)).is_ok());
    }

    #[test]
    fn repeated_lockouts_back_off_exponentially() {
        let l = Lockouts::new(limits(2));
        let s = [Subject::Extension("1001".into())];
        let l2 = Lockouts::new(Limits {
            extension: 2,
            ..limits(2)
        });
        let mut t = Instant::now();
        for expected in [60, 120, 240] {
            fail_at(&l2, &s, t);
            fail_at(&l2, &s, t);
            assert_eq!(l2.check(&s, t).unwrap_err(), Duration::from_secs(expected));
            t += Duration::from_secs(expected + 1);
        }
        // With the default ratio, two failures do not lock an extension everywhere.
        fail_at(&l, &s, Instant::now());
        fail_at(&l, &s, Instant::now());
        assert!(l.check(&s, Instant::now()).is_ok());
    }

    #[test]
    fn attempts_in_flight_count_against_the_limit() {
        let l = Lockouts::new(limits(3));
        let now = Instant::now();
        let s = [Subject::extension_from("1001", ip("10.0.0.1"))];
        let a = l.begin(&s, now).unwrap();
        let b = l.begin(&s, now).unwrap();
        let c = l.begin(&s, now).unwrap();
        assert_eq!(
            l.begin(&s, now).err(),
            Some(Refusal::Busy),
            "a fourth guess waits"
        );
        // Dropped without an outcome = a failure; the others fail too: locked.
        drop(a);
        b.fail();
        assert_eq!(c.fail().left, 0);
        assert!(l.check(&s, Instant::now()).is_err());
    }

    #[test]
    fn success_frees_the_slot_and_forgives_only_what_it_is_told() {
        let l = Lockouts::new(limits(2));
        let now = Instant::now();
        let pair = Subject::extension_from("1001", ip("10.0.0.1"));
        let src = Subject::source(ip("10.0.0.1"));
        l.begin(&[pair.clone(), src.clone()], now).unwrap().fail();
        let ok = l.begin(&[pair.clone(), src.clone()], now).unwrap();
        let forgiven = ok.succeed(std::slice::from_ref(&pair));
        assert_eq!(forgiven, vec![pair.clone()]);
        // The source keeps its failure: two more lock it only at 20.
        assert!(l.lock().get(&src).is_some_and(|r| r.times.len() == 1));
        let abandoned = l.begin(std::slice::from_ref(&pair), now).unwrap();
        abandoned.abandon();
        assert!(l.lock().get(&pair).is_some_and(|r| r.times.is_empty()));
    }

    #[test]
    fn lockouts_started_are_counted_by_kind_only() {
        let m = Arc::new(Metrics::new());
        let l = Lockouts::counted(limits(2), m.clone());
        let t = Instant::now();
        let s = [
            Subject::extension_from("1001", ip("10.0.0.9")),
            Subject::Extension("1001".into()),
        ];
        for _ in 0..2 {
            l.begin(&s, t).unwrap().fail();
        }
        let text = m.encode();
        assert!(
            text.contains("hotdesk_lockouts_total{scope=\"extension_from\"} 1\n"),
            "{text}"
        );
        assert!(
            !text.contains("scope=\"extension\""),
            "not past its own limit"
        );
        assert!(
            !text.contains("1001") && !text.contains("10.0.0.9"),
            "{text}"
        );
    }

    #[test]
    fn shared_credentials_have_a_global_budget() {
        let l = Lockouts::new(Limits {
            shared: 3,
            ..limits(5)
        });
        let t = Instant::now();
        for (i, ext) in ["1", "2", "3"].iter().enumerate() {
            let src = ip(&format!("10.0.0.{i}"));
            let s = [Subject::extension_from(ext, src), Subject::UserPassword];
            let f = {
                let a = l.begin(&s, t).unwrap();
                a.fail()
            };
            assert_eq!(f.newly_locked.is_empty(), i < 2, "{i}");
        }
        assert!(l.check(&[Subject::UserPassword], t).is_err());
        assert_eq!(l.active(t)[0].subject, Subject::UserPassword);
    }

    #[test]
    fn subjects_round_trip_as_text_and_ipv6_counts_per_64() {
        let mac: Mac = "00085d000001".parse().unwrap();
        for s in [
            Subject::extension_from("*97#", ip("2001:db8:1:2::1")),
            Subject::Extension("+4930".into()),
            Subject::handset_from(mac, ip("10.1.2.3")),
            Subject::source(ip("::ffff:192.0.2.1")),
            Subject::admin_from(ip("10.0.0.9")),
            Subject::UserPassword,
            Subject::AdminPassword,
        ] {
            assert_eq!(s.to_string().parse::<Subject>(), Ok(s.clone()), "{s}");
        }
        assert_eq!(
            Subject::source(ip("2001:db8:1:2::1")),
            Subject::source(ip("2001:db8:1:2:ffff::9"))
        );
        assert_eq!(
            Subject::source(ip("::ffff:192.0.2.1")),
            Subject::source(ip("192.0.2.1"))
        );
        assert!("nonsense".parse::<Subject>().is_err());
    }

    #[test]
    fn histories_survive_a_restart() {
        let l = Lockouts::new(limits(2));
        let now = Instant::now();
        let s = [Subject::extension_from("1001", ip("10.0.0.1"))];
        l.begin(&s, now).unwrap().fail();
        let saved = l.begin(&s, now).unwrap().fail().saved;
        let again = Lockouts::new(limits(2));
        let wall = time::OffsetDateTime::now_utc().unix_timestamp();
        again.restore(&saved, Instant::now(), wall);
        let wait = again.check(&s, Instant::now()).unwrap_err();
        assert!(wait > Duration::from_secs(55), "{wait:?}");
        assert_eq!(again.active(Instant::now())[0].strikes, 1);
    }
}
