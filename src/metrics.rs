//! Prometheus metrics: every name, help text and label set in one place (docs/metrics.md
//! lists them for admins).
//!
//! One [`Metrics`] per [`crate::App`], never a process-global recorder: tests run many
//! servers in one process, and each must count only its own. Label values come from closed
//! sets (enums, route names, vendor ids, directory kinds), never from a request: no
//! extension, MAC, address or secret ever becomes a label.

use std::fmt::Write as _;
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// The content type of [`Metrics::encode`]'s output (OpenMetrics text, which Prometheus
/// negotiates and parses).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Why a phone login did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LoginFailure {
    /// The extension exists and the PIN (or password) was wrong.
    WrongPin,
    /// No such extension (or not a valid one).
    UnknownExtension,
    /// The attempt was refused: a lockout is running for one of its subjects.
    LockedOut,
    /// Too many attempts for the same subjects still running, or the password checks are
    /// queued to their limit.
    Busy,
    /// The directory could not answer.
    DirectoryUnavailable,
    /// The directory has no SIP secret for the user.
    NoSipSecret,
    /// The login would replace one made from another address.
    ReplaceRefused,
    /// The user is on as many devices as `max_devices` allows, or the phone has no free
    /// identity.
    DeviceLimit,
    /// The store could not record the login.
    NotSaved,
}

impl LoginFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WrongPin => "wrong_pin",
            Self::UnknownExtension => "unknown_extension",
            Self::LockedOut => "locked_out",
            Self::Busy => "busy",
            Self::DirectoryUnavailable => "directory_unavailable",
            Self::NoSipSecret => "no_sip_secret",
            Self::ReplaceRefused => "replace_refused",
            Self::DeviceLimit => "device_limit",
            Self::NotSaved => "not_saved",
        }
    }
}

/// How the directory cache answered a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CacheResult {
    /// From memory, fresh (a remembered unknown extension included).
    Hit,
    /// Not in memory: the backend was asked.
    Miss,
    /// Stale in memory, and the backend answered the refresh in time.
    Refreshed,
    /// Stale in memory, and the stale entry was answered: the backend failed or was slow.
    Stale,
}

impl CacheResult {
    fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Refreshed => "refreshed",
            Self::Stale => "stale",
        }
    }
}

/// The class of an HTTP status (`2xx` ...), so the label set stays small.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatusClass(u8);

impl StatusClass {
    pub fn of(status: http::StatusCode) -> Self {
        Self((status.as_u16() / 100) as u8)
    }
}

macro_rules! label_value_as_str {
    ($($t:ty),*) => {$(
        impl EncodeLabelValue for $t {
            fn encode(&self, e: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
                e.write_str(self.as_str())
            }
        }
    )*};
}
label_value_as_str!(LoginFailure, CacheResult);

impl EncodeLabelValue for StatusClass {
    fn encode(&self, e: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        write!(e, "{}xx", self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct VendorLabels {
    vendor: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FailureLabels {
    vendor: &'static str,
    reason: LoginFailure,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ScopeLabels {
    scope: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CacheLabels {
    result: CacheResult,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct UpstreamLabels {
    adapter: &'static str,
    operation: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct HttpLabels {
    route: &'static str,
    status: StatusClass,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// 0.5 ms to about 8 s: a phone page from memory up to a request that hit its time-out.
fn http_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 15))
}

/// 1 ms to about 16 s: a PBX API call, token fetch and retry included.
fn upstream_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// The counters, gauges and histograms of one server, and the registry that encodes them.
pub struct Metrics {
    registry: Registry,
    logins: Family<VendorLabels, Counter>,
    logouts: Family<VendorLabels, Counter>,
    login_failures: Family<FailureLabels, Counter>,
    lockouts: Family<ScopeLabels, Counter>,
    directory_cache: Family<CacheLabels, Counter>,
    upstream_duration: Histograms<UpstreamLabels>,
    upstream_errors: Family<UpstreamLabels, Counter>,
    outbox: Family<StateLabels, Gauge>,
    connections_open: Gauge,
    connections_refused: Family<ReasonLabels, Counter>,
    http_duration: Histograms<HttpLabels>,
    /// The `http_duration` histograms already asked for, shared with the family. Its lookup
    /// hashes the labels with SipHash under a lock, about a twentieth of a cached page's
    /// instructions; routes and status classes are a closed set, so this stays small.
    http_seen: RwLock<Vec<(&'static str, StatusClass, Histogram)>>,
    softphone_activations: Family<OutcomeLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("hotdesk");
        let logins = Family::default();
        registry.register("logins", "Phone logins recorded, by vendor", logins.clone());
        let logouts = Family::default();
        registry.register(
            "logouts",
            "Users logged out from the phone, by vendor",
            logouts.clone(),
        );
        let login_failures = Family::default();
        registry.register(
            "login_failures",
            "Phone logins that did not happen, by vendor and reason",
            login_failures.clone(),
        );
        let lockouts = Family::default();
        registry.register(
            "lockouts",
            "Lockouts started, by what was locked (scope)",
            lockouts.clone(),
        );
        let directory_cache = Family::default();
        registry.register(
            "directory_cache_lookups",
            "Directory lookups by how the cache answered: hit, miss, refreshed, stale",
            directory_cache.clone(),
        );
        let upstream_duration: Histograms<UpstreamLabels> =
            Family::new_with_constructor(upstream_buckets);
        registry.register_with_unit(
            "upstream_request_duration",
            "Time of calls to the directory backend and PBX write-backs, by adapter and operation",
            Unit::Seconds,
            upstream_duration.clone(),
        );
        let upstream_errors = Family::default();
        registry.register(
            "upstream_errors",
            "Failed calls to the directory backend and PBX write-backs, by adapter and operation",
            upstream_errors.clone(),
        );
        let outbox = Family::default();
        registry.register(
            "outbox_rows",
            "PBX write-backs in the outbox: pending (to be delivered) and dead (refused for good); read at scrape time",
            outbox.clone(),
        );
        let connections_open = Gauge::default();
        registry.register(
            "connections_open",
            "Connections held open now",
            connections_open.clone(),
        );
        let connections_refused = Family::default();
        registry.register(
            "connections_refused",
            "Connections closed at accept, by reason: not_allowed, per_source, global",
            connections_refused.clone(),
        );
        let http_duration: Histograms<HttpLabels> = Family::new_with_constructor(http_buckets);
        registry.register_with_unit(
            "http_request_duration",
            "Time to answer an HTTP request, by route and status class",
            Unit::Seconds,
            http_duration.clone(),
        );
        let softphone_activations = Family::default();
        registry.register(
            "softphone_activations",
            "Activation link fetches by softphones, by outcome: activated, limit, gone, unknown",
            softphone_activations.clone(),
        );
        Self {
            registry,
            softphone_activations,
            logins,
            logouts,
            login_failures,
            lockouts,
            directory_cache,
            upstream_duration,
            upstream_errors,
            outbox,
            connections_open,
            connections_refused,
            http_duration,
            http_seen: RwLock::default(),
        }
    }

    /// `outcome`: `activated`, `limit` (device limit reached), `gone` (used or expired),
    /// `unknown`.
    pub fn softphone_activation(&self, outcome: &'static str) {
        self.softphone_activations
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    pub fn login(&self, vendor: &'static str) {
        self.logins.get_or_create(&VendorLabels { vendor }).inc();
    }

    /// `users` identities logged out from one phone at once.
    pub fn logout(&self, vendor: &'static str, users: u64) {
        self.logouts
            .get_or_create(&VendorLabels { vendor })
            .inc_by(users);
    }

    pub fn login_failed(&self, vendor: &'static str, reason: LoginFailure) {
        self.login_failures
            .get_or_create(&FailureLabels { vendor, reason })
            .inc();
    }

    /// `scope` is a lockout subject's kind (`extension_from`, `source`, ...), never its key.
    pub fn lockout_started(&self, scope: &'static str) {
        self.lockouts.get_or_create(&ScopeLabels { scope }).inc();
    }

    pub fn directory_cache(&self, result: CacheResult) {
        self.directory_cache
            .get_or_create(&CacheLabels { result })
            .inc();
    }

    /// One call upstream: its time, and whether it failed.
    pub fn upstream(
        &self,
        adapter: &'static str,
        operation: &'static str,
        took: Duration,
        ok: bool,
    ) {
        let labels = UpstreamLabels { adapter, operation };
        self.upstream_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        if !ok {
            self.upstream_errors.get_or_create(&labels).inc();
        }
    }

    pub fn set_outbox(&self, pending: u64, dead: u64) {
        let set = |state, n: u64| {
            let n = i64::try_from(n).unwrap_or(i64::MAX);
            self.outbox.get_or_create(&StateLabels { state }).set(n);
        };
        set("pending", pending);
        set("dead", dead);
    }

    /// Counts a connection as open until the returned guard is dropped.
    pub fn connection_opened(&self) -> OpenConnection {
        self.connections_open.inc();
        OpenConnection(self.connections_open.clone())
    }

    pub fn connection_refused(&self, reason: &'static str) {
        self.connections_refused
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    pub fn http_request(&self, route: &'static str, status: http::StatusCode, took: Duration) {
        let status = StatusClass::of(status);
        let seconds = took.as_secs_f64();
        // A route name is one of a few literals, so comparing where it points is enough (an
        // equal name elsewhere only adds an entry for the same histogram).
        let same = |(r, s, _): &&(&'static str, StatusClass, Histogram)| {
            std::ptr::eq(*r, route) && *s == status
        };
        let seen = self
            .http_seen
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((_, _, histogram)) = seen.iter().find(same) {
            return histogram.observe(seconds);
        }
        drop(seen);
        let histogram = self
            .http_duration
            .get_or_create(&HttpLabels { route, status })
            .clone();
        histogram.observe(seconds);
        let mut seen = self
            .http_seen
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if !seen.iter().any(|e| same(&e)) {
            seen.push((route, status, histogram));
        }
    }

    /// The value of the sample whose line starts with `series` (name and labels), for tests.
    #[cfg(test)]
    pub(crate) fn value_of(&self, series: &str) -> Option<f64> {
        let text = self.encode();
        let line = text.lines().find(|l| {
            l.strip_prefix(series)
                .is_some_and(|rest| rest.starts_with(' '))
        })?;
        line[series.len()..].trim().parse().ok()
    }

    /// Everything, as OpenMetrics text ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        // Writing into a String cannot fail; the crate's label encoders do not either.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// One open connection in `hotdesk_connections_open`; counted down when dropped.
pub struct OpenConnection(Gauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    #[test]
    fn counters_encode_with_prefix_total_and_labels() {
        let m = Metrics::new();
        m.login("yealink");
        m.login("yealink");
        m.logout("snom", 1);
        m.login_failed("yealink", LoginFailure::WrongPin);
        m.lockout_started("extension_from");
        m.directory_cache(CacheResult::Stale);
        m.connection_refused("per_source");
        let text = m.encode();
        let cases = [
            ("hotdesk_logins_total{vendor=\"yealink\"} ", "2"),
            ("hotdesk_logouts_total{vendor=\"snom\"} ", "1"),
            (
                "hotdesk_login_failures_total{vendor=\"yealink\",reason=\"wrong_pin\"} ",
                "1",
            ),
            ("hotdesk_lockouts_total{scope=\"extension_from\"} ", "1"),
            (
                "hotdesk_directory_cache_lookups_total{result=\"stale\"} ",
                "1",
            ),
            (
                "hotdesk_connections_refused_total{reason=\"per_source\"} ",
                "1",
            ),
        ];
        for (prefix, value) in cases {
            let got = line(&text, prefix).unwrap_or_else(|| panic!("{prefix} in\n{text}"));
            assert_eq!(&got[prefix.len()..], value, "{prefix}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn histograms_have_units_and_status_classes() {
        let m = Metrics::new();
        m.http_request("app", http::StatusCode::NOT_FOUND, Duration::from_millis(3));
        m.upstream("http", "lookup", Duration::from_millis(20), false);
        m.upstream("http", "lookup", Duration::from_millis(20), true);
        let text = m.encode();
        assert!(text.contains("# TYPE hotdesk_http_request_duration_seconds histogram"));
        let count = "hotdesk_http_request_duration_seconds_count{route=\"app\",status=\"4xx\"} ";
        assert_eq!(&line(&text, count).expect(count)[count.len()..], "1");
        let count = "hotdesk_upstream_request_duration_seconds_count{adapter=\"http\",operation=\"lookup\"} ";
        assert_eq!(&line(&text, count).expect(count)[count.len()..], "2");
        let errors = "hotdesk_upstream_errors_total{adapter=\"http\",operation=\"lookup\"} ";
        assert_eq!(&line(&text, errors).expect(errors)[errors.len()..], "1");
        // 3 ms falls in the 4 ms bucket, not the 2 ms one.
        let bucket = |le: &str| format!("_bucket{{le=\"{le}\",route=\"app\",status=\"4xx\"}} ");
        assert!(text.contains(&(bucket("0.002") + "0\n")), "{text}");
        assert!(text.contains(&(bucket("0.004") + "1\n")), "{text}");
    }

    #[test]
    fn repeated_requests_count_in_their_own_series() {
        let m = Metrics::new();
        let ms = Duration::from_millis(1);
        // The same name at another address (built at run time) is the same series.
        let elsewhere: &'static str = String::from("app").leak();
        for _ in 0..3 {
            m.http_request("app", http::StatusCode::OK, ms);
        }
        m.http_request(elsewhere, http::StatusCode::OK, ms);
        m.http_request("app", http::StatusCode::NOT_FOUND, ms);
        m.http_request("provision", http::StatusCode::OK, ms);
        m.http_request("provision", http::StatusCode::OK, ms);
        let text = m.encode();
        let count = |route: &str, status: &str| {
            let prefix = format!(
                "hotdesk_http_request_duration_seconds_count{{route=\"{route}\",status=\"{status}\"}} "
            );
            line(&text, &prefix).map(|l| l[prefix.len()..].to_owned())
        };
        assert_eq!(count("app", "2xx").as_deref(), Some("4"), "{text}");
        assert_eq!(count("app", "4xx").as_deref(), Some("1"), "{text}");
        assert_eq!(count("provision", "2xx").as_deref(), Some("2"), "{text}");
        assert_eq!(count("provision", "4xx"), None, "{text}");
    }

    #[test]
    fn open_connections_count_down_when_dropped() {
        let m = Metrics::new();
        let a = m.connection_opened();
        let b = m.connection_opened();
        assert!(m.encode().contains("hotdesk_connections_open 2\n"));
        drop(a);
        drop(b);
        assert!(m.encode().contains("hotdesk_connections_open 0\n"));
    }

    #[test]
    fn outbox_gauges_are_set_not_added() {
        let m = Metrics::new();
        m.set_outbox(3, 1);
        m.set_outbox(2, 1);
        let text = m.encode();
        assert!(
            text.contains("hotdesk_outbox_rows{state=\"pending\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("hotdesk_outbox_rows{state=\"dead\"} 1\n"),
            "{text}"
        );
    }

    #[test]
    fn every_failure_reason_is_snake_case() {
        use LoginFailure::*;
        for r in [
            WrongPin,
            UnknownExtension,
            LockedOut,
            Busy,
            DirectoryUnavailable,
            NoSipSecret,
            ReplaceRefused,
            DeviceLimit,
            NotSaved,
        ] {
            let s = r.as_str();
            assert!(s.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{s}");
        }
    }
}
