//! The access log: one line per request, written when its answer is ready, with what the
//! request span used to carry (method, route, client, vendor, MAC, admin key) plus status and
//! latency. Handlers note the phone or key they identified into a task-local record instead
//! of a span: a span per request cost a formatted-fields allocation and a second line.
//! The line itself leaves the worker through the non-blocking writer `main` installs.

use std::cell::RefCell;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

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
pub async fn scope<F: Future>(fut: F) -> (F::Output, Noted) {
    NOTED
        .scope(RefCell::new(Noted::default()), async {
            let out = fut.await;
            (out, NOTED.with(|n| n.take()))
        })
        .await
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
