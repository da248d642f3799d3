//! The access log: one line per request, written when its answer is ready, with what the
//! request span used to carry (method, route, client, vendor, MAC, admin key) plus status and
//! latency. Handlers note the phone or key they identified into a task-local record instead
//! of a span: a span per request cost a formatted-fields allocation and a second line.
//! The line itself leaves the worker through the non-blocking writer `main` installs. Once
//! [`install`]ed, the line is formatted here, in the same shape as the log's other lines
//! (text or JSON), into a reused buffer: going through `tracing`'s formatter cost a fifth of
//! a cached screen's CPU (field visitors, a timestamp formatted from scratch per line).

use std::cell::RefCell;
use std::fmt;
use std::io::Write as _;
use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use crate::log_writer::BatchWriter;
use crate::phone::Mac;

/// The `target` of every access line, so that `RUST_LOG=hotdesk::access=off` silences them.
pub const TARGET: &str = "hotdesk::access";

/// What handlers learn about a request that the access line reports.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Noted {
    pub vendor: Option<&'static str>,
    pub mac: Option<Mac>,
    /// The admin API key's name (never the key).
    pub key: Option<String>,
}

tokio::task_local! {
    static NOTED: RefCell<Noted>;
}

/// Runs `fut` with a fresh record and returns its output with what was noted meanwhile.
/// (A combinator, not an async fn: that would hold `fut` twice, captured and awaited, and
/// the request future is moved whole per request.)
pub fn scope<F: Future>(fut: F) -> impl Future<Output = (F::Output, Noted)> {
    NOTED.scope(
        RefCell::new(Noted::default()),
        futures_util::FutureExt::map(fut, |out| (out, NOTED.with(|n| n.take()))),
    )
}

/// Notes the phone a request came from (ignored outside [`scope`]).
pub fn note_phone(vendor: &'static str, mac: Mac) {
    let _ = NOTED.try_with(|n| {
        let mut n = n.borrow_mut();
        n.vendor = Some(vendor);
        n.mac = Some(mac);
    });
}

/// Notes the MAC alone (a provisioning file named for a phone that sent no User-Agent).
pub fn note_mac(mac: Mac) {
    let _ = NOTED.try_with(|n| n.borrow_mut().mac = Some(mac));
}

/// Notes the admin API key's name.
pub fn note_key(name: &str) {
    let _ = NOTED.try_with(|n| n.borrow_mut().key = Some(name.to_owned()));
}

/// `-` where a value is absent, as in a web server's access log.
struct Or<T>(Option<T>);

impl<T: fmt::Display> fmt::Display for Or<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(v) => v.fmt(f),
            None => f.write_str("-"),
        }
    }
}

/// Where access lines go once installed, and in which format.
struct Sink {
    out: BatchWriter,
    json: bool,
}

static SINK: OnceLock<Sink> = OnceLock::new();

/// Sends access lines straight to `out` (the log's own writer) as text or JSON lines, shaped
/// as the `tracing` subscriber writing to `out` shapes its lines. Filtering stays with the
/// subscriber (`RUST_LOG=hotdesk::access=off` still silences them).
pub fn install(out: BatchWriter, json: bool) {
    let _ = SINK.set(Sink { out, json });
}

/// One finished request, as the line reports it.
struct Line<'a> {
    method: &'a str,
    route: &'static str,
    client: IpAddr,
    noted: &'a Noted,
    status: u16,
    us: u64,
}

thread_local! {
    /// The line being formatted, and the timestamp's date and time to the second, reused.
    static SCRATCH: RefCell<(Vec<u8>, i64, [u8; 19])> = const { RefCell::new((Vec::new(), i64::MIN, [0; 19])) };
}

impl Line<'_> {
    /// `2026-11-23T19:27:18.546168Z`, as `tracing_subscriber` writes times (UTC, µs).
    fn timestamp(buf: &mut Vec<u8>, cached: &mut (i64, [u8; 19]), at: SystemTime) {
        let since = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let secs = since.as_secs() as i64;
        if cached.0 != secs {
            let t = time::OffsetDateTime::from_unix_timestamp(secs)
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
            let mut out = [0u8; 19];
            let _ = write!(
                &mut out[..],
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
                t.year(),
                t.month() as u8,
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            );
            *cached = (secs, out);
        }
        buf.extend_from_slice(&cached.1);
        // `.` and six digits, zero-padded.
        let mut frac = *b".000000Z";
        let mut us = since.subsec_micros();
        for digit in frac[1..7].iter_mut().rev() {
            *digit = b'0' + (us % 10) as u8;
            us /= 10;
        }
        buf.extend_from_slice(&frac);
    }

    fn text(&self, buf: &mut Vec<u8>) {
        let n = self.noted;
        buf.extend_from_slice(b"  INFO ");
        buf.extend_from_slice(TARGET.as_bytes());
        buf.extend_from_slice(b": request method=\"");
        buf.extend_from_slice(self.method.as_bytes());
        buf.extend_from_slice(b"\" route=\"");
        buf.extend_from_slice(self.route.as_bytes());
        buf.extend_from_slice(b"\" client=");
        ip(buf, self.client);
        buf.extend_from_slice(b" vendor=\"");
        buf.extend_from_slice(n.vendor.unwrap_or("-").as_bytes());
        buf.extend_from_slice(b"\" mac=");
        mac(buf, n.mac);
        buf.extend_from_slice(b" key=");
        buf.extend_from_slice(n.key.as_deref().unwrap_or("-").as_bytes());
        buf.extend_from_slice(b" status=");
        number(buf, self.status);
        buf.extend_from_slice(b" us=");
        number(buf, self.us);
        buf.push(b'\n');
    }

    /// The fields after the timestamp, as `tracing_subscriber`'s flattened JSON has them.
    fn json(&self, buf: &mut Vec<u8>) {
        let n = self.noted;
        buf.extend_from_slice(b"\",\"level\":\"INFO\",\"message\":\"request\",\"method\":\"");
        buf.extend_from_slice(self.method.as_bytes());
        buf.extend_from_slice(b"\",\"route\":\"");
        buf.extend_from_slice(self.route.as_bytes());
        buf.extend_from_slice(b"\",\"client\":\"");
        ip(buf, self.client);
        buf.extend_from_slice(b"\",\"vendor\":\"");
        buf.extend_from_slice(n.vendor.unwrap_or("-").as_bytes());
        buf.extend_from_slice(b"\",\"mac\":\"");
        mac(buf, n.mac);
        buf.extend_from_slice(b"\",\"key\":");
        // The key's name comes from the config: escaped as any JSON string.
        let _ = serde_json::to_writer(&mut *buf, n.key.as_deref().unwrap_or("-"));
        buf.extend_from_slice(b",\"status\":");
        number(buf, self.status);
        buf.extend_from_slice(b",\"us\":");
        number(buf, self.us);
        buf.extend_from_slice(b",\"target\":\"");
        buf.extend_from_slice(TARGET.as_bytes());
        buf.extend_from_slice(b"\"}\n");
    }

    /// The whole line, newline included, into `buf`.
    fn format(&self, json: bool, at: SystemTime, cached: &mut (i64, [u8; 19]), buf: &mut Vec<u8>) {
        if json {
            buf.extend_from_slice(b"{\"timestamp\":\"");
            Self::timestamp(buf, cached, at);
            self.json(buf);
        } else {
            Self::timestamp(buf, cached, at);
            self.text(buf);
        }
    }

    fn write_to(&self, sink: &Sink, at: SystemTime) {
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            let (buf, secs, date) = &mut *s;
            buf.clear();
            let mut cached = (*secs, *date);
            self.format(sink.json, at, &mut cached, buf);
            (*secs, *date) = cached;
            sink.out.append(buf);
        });
    }
}

/// The fields are written piece by piece rather than through `format_args!`: the
/// formatting machinery was most of the line's cost.
fn number(buf: &mut Vec<u8>, n: impl itoa::Integer) {
    buf.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

fn ip(buf: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf.push(b'.');
                }
                number(buf, octet);
            }
        }
        IpAddr::V6(_) => {
            let _ = write!(buf, "{ip}");
        }
    }
}

fn mac(buf: &mut Vec<u8>, mac: Option<Mac>) {
    match mac {
        Some(m) => buf.extend_from_slice(&m.hex()),
        None => buf.push(b'-'),
    }
}

/// Writes the one line for a finished request. The path and query never go in: the query
/// may carry a PIN.
pub fn line(
    method: &http::Method,
    route: &'static str,
    client: IpAddr,
    noted: &Noted,
    status: u16,
    took: Duration,
) {
    if let Some(sink) = SINK.get() {
        if tracing::enabled!(target: TARGET, tracing::Level::INFO) {
            let line = Line {
                method: method.as_str(),
                route,
                client,
                noted,
                status,
                us: took.as_micros() as u64,
            };
            line.write_to(sink, SystemTime::now());
        }
        return;
    }
    tracing::info!(
        target: TARGET,
        method = method.as_str(),
        route,
        client = %client,
        vendor = noted.vendor.unwrap_or("-"),
        mac = %Or(noted.mac),
        key = %Or(noted.key.as_deref()),
        status,
        us = took.as_micros() as u64,
        "request"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    /// A writer for the test subscriber that keeps what it is given.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn captured(run: impl FnOnce()) -> String {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .without_time()
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, run);
        String::from_utf8(out.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn one_line_with_route_vendor_status_and_latency() {
        let noted = Noted {
            vendor: Some("yealink"),
            mac: Some("805ec0aabbcc".parse().unwrap()),
            key: None,
        };
        let text = captured(|| {
            line(
                &http::Method::GET,
                "app",
                "10.1.2.3".parse().unwrap(),
                &noted,
                200,
                Duration::from_micros(87),
            )
        });
        assert_eq!(
            text,
            " INFO hotdesk::access: request method=\"GET\" route=\"app\" client=10.1.2.3 \
             vendor=\"yealink\" mac=805ec0aabbcc key=- status=200 us=87\n"
        );
    }

    #[test]
    fn what_is_not_known_is_a_dash() {
        let text = captured(|| {
            line(
                &http::Method::DELETE,
                "api/login",
                "::1".parse().unwrap(),
                &Noted {
                    key: Some("ops".into()),
                    ..Noted::default()
                },
                404,
                Duration::from_millis(2),
            )
        });
        assert!(
            text.contains("vendor=\"-\" mac=- key=ops status=404 us=2000"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 1);
    }

    /// The time `tracing_subscriber` would print as `2026-11-23T19:27:18.546168Z`.
    fn at() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_micros(1_795_462_038_546_168)
    }

    /// What `tracing_subscriber` writes for the same request, text or flattened JSON, with
    /// the time replaced by `at()`'s.
    fn by_tracing(json: bool, noted: &Noted) -> String {
        let out = Captured::default();
        let writer = out.clone();
        let run = || {
            line(
                &http::Method::GET,
                "app",
                "10.1.2.3".parse().unwrap(),
                noted,
                200,
                Duration::from_micros(87),
            )
        };
        if json {
            let s = tracing_subscriber::fmt()
                .json()
                .flatten_event(true)
                .with_writer(move || writer.clone())
                .finish();
            tracing::subscriber::with_default(s, run);
        } else {
            let s = tracing_subscriber::fmt()
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .finish();
            tracing::subscriber::with_default(s, run);
        }
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let stamp = if json { 14 } else { 0 };
        let len = "2026-11-23T19:27:18.546168Z".len();
        format!(
            "{}2026-11-23T19:27:18.546168Z{}",
            &text[..stamp],
            &text[stamp + len..]
        )
    }

    fn direct(json: bool, noted: &Noted) -> String {
        let line = Line {
            method: "GET",
            route: "app",
            client: "10.1.2.3".parse().unwrap(),
            noted,
            status: 200,
            us: 87,
        };
        let (mut buf, mut cached) = (Vec::new(), (i64::MIN, [0; 19]));
        line.format(json, at(), &mut cached, &mut buf);
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn the_direct_line_is_the_line_tracing_writes() {
        let notes = [
            Noted {
                vendor: Some("yealink"),
                mac: Some("805ec0aabbcc".parse().unwrap()),
                key: None,
            },
            Noted {
                key: Some("ops \"night\" \\ shift".into()),
                ..Noted::default()
            },
        ];
        for noted in &notes {
            let text = direct(false, noted);
            assert!(
                text.starts_with("2026-11-23T19:27:18.546168Z  INFO hotdesk::access: request "),
                "{text}"
            );
            assert_eq!(text, by_tracing(false, noted));
            let json = direct(true, noted);
            assert_eq!(json.lines().count(), 1);
            let ours: serde_json::Value = serde_json::from_str(&json).unwrap();
            let theirs: serde_json::Value = serde_json::from_str(&by_tracing(true, noted)).unwrap();
            assert_eq!(ours, theirs);
            assert_eq!(ours["timestamp"], "2026-11-23T19:27:18.546168Z");
        }
    }

    #[test]
    fn the_cached_second_moves_with_the_clock() {
        let line = Line {
            method: "GET",
            route: "app",
            client: "::1".parse().unwrap(),
            noted: &Noted::default(),
            status: 200,
            us: 1,
        };
        let (mut buf, mut cached) = (Vec::new(), (i64::MIN, [0; 19]));
        line.format(false, at(), &mut cached, &mut buf);
        line.format(
            false,
            at() + Duration::from_secs(3600 * 24 * 40),
            &mut cached,
            &mut buf,
        );
        // Microseconds are zero-padded to six digits.
        let whole = SystemTime::UNIX_EPOCH + Duration::from_micros(1_795_462_039_000_087);
        line.format(false, whole, &mut cached, &mut buf);
        let text = String::from_utf8(buf).unwrap();
        let stamps: Vec<&str> = text.lines().map(|l| &l[..27]).collect();
        assert_eq!(
            stamps,
            [
                "2026-11-23T19:27:18.546168Z",
                "2027-01-02T19:27:18.546168Z",
                "2026-11-23T19:27:19.000087Z"
            ]
        );
    }

    #[tokio::test]
    async fn notes_reach_the_line_and_only_inside_the_scope() {
        note_phone("snom", "000413aabbcc".parse().unwrap());
        let ((), noted) = scope(async {
            note_phone("snom", "000413aabbcc".parse().unwrap());
            note_key("ops");
        })
        .await;
        assert_eq!(noted.vendor, Some("snom"));
        assert_eq!(
            noted.mac.map(|m| m.to_string()).as_deref(),
            Some("000413aabbcc")
        );
        assert_eq!(noted.key.as_deref(), Some("ops"));
        let ((), fresh) = scope(async {}).await;
        assert_eq!(fresh, Noted::default());
    }
}
