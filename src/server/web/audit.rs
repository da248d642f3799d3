//! The audit trail in the console: filters (time range, extension, MAC, kind), newest first
//! a page at a time, and the same selection as CSV. Times are UTC.

use axum::Router;
use axum::extract::{Extension, RawQuery};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, StatusCode};
use minijinja::context;
use serde::Serialize;
use time::macros::format_description;
use time::{Date, OffsetDateTime, PrimitiveDateTime};

use super::console::{rfc3339, signed_in};
use super::{download, render};
use crate::server::routes::{Ctx, parse_query};
use crate::store::{AuditEvent, AuditFilter, EventKind};

/// Events per page.
const PAGE: usize = 200;
/// Events per CSV file (the last row's id continues the export with `before=`).
const CSV_MAX: usize = 50_000;

pub fn routes() -> Router {
    Router::new()
        .route("/admin/audit", get(page))
        .route("/admin/audit.csv", get(csv))
}

/// The filter form as typed, shown back in the form and carried by the "older" link.
#[derive(Debug, Default, Serialize)]
struct Form {
    from: String,
    to: String,
    extension: String,
    mac: String,
    kind: String,
}

impl Form {
    fn read(query: Option<&str>) -> (Self, Option<i64>) {
        let q = parse_query(query);
        let get = |k: &str| {
            q.get(k)
                .map(|v| v.trim().chars().take(64).collect::<String>())
                .unwrap_or_default()
        };
        let form = Form {
            from: get("from"),
            to: get("to"),
            extension: get("extension"),
            mac: get("mac"),
            kind: get("kind"),
        };
        (form, q.get("before").and_then(|b| b.parse().ok()))
    }

    /// The store's filter, or what is wrong with the form.
    fn filter(&self, before_id: Option<i64>) -> Result<AuditFilter, String> {
        let opt = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        Ok(AuditFilter {
            from: opt(&self.from).map(|t| parse_time(&t, false)).transpose()?,
            to: opt(&self.to).map(|t| parse_time(&t, true)).transpose()?,
            extension: opt(&self.extension),
            mac: opt(&self.mac)
                .map(|m| m.parse().map_err(|e| format!("MAC: {e}")))
                .transpose()?,
            kind: opt(&self.kind)
                .map(|k| EventKind::parse(&k).ok_or_else(|| "unknown kind of event".to_owned()))
                .transpose()?,
            before_id,
        })
    }

    /// The query string of these filters (for the next page and the CSV link).
    fn query(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("from", &self.from),
            ("to", &self.to),
            ("extension", &self.extension),
            ("mac", &self.mac),
            ("kind", &self.kind),
        ] {
            if !v.is_empty() {
                q.append_pair(k, v);
            }
        }
        q.finish()
    }
}

/// `2026-11-23`, `2026-11-23T14:05` (what `datetime-local` sends), with seconds, or full
/// RFC 3339. Without an offset the time is UTC. A date alone as the end of a range means
/// the whole day.
fn parse_time(text: &str, end: bool) -> Result<OffsetDateTime, String> {
    let bad = || format!("`{text}` is not a date (2026-11-23) or a time (2026-11-23T14:05)");
    if let Ok(t) = OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339) {
        return Ok(t);
    }
    if let Ok(d) = Date::parse(text, format_description!("[year]-[month]-[day]")) {
        let d = if end {
            d.next_day().ok_or_else(bad)?
        } else {
            d
        };
        return Ok(d.midnight().assume_utc());
    }
    let with_secs = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    let no_secs = format_description!("[year]-[month]-[day]T[hour]:[minute]");
    PrimitiveDateTime::parse(text, with_secs)
        .or_else(|_| PrimitiveDateTime::parse(text, no_secs))
        .map(PrimitiveDateTime::assume_utc)
        .map_err(|_| bad())
}

#[derive(Serialize)]
struct Row {
    id: i64,
    at: String,
    kind: &'static str,
    mac: String,
    extension: String,
    network: String,
    source: String,
    detail: String,
}

fn row(e: &AuditEvent) -> Row {
    Row {
        id: e.id,
        at: rfc3339(e.at),
        kind: e.kind.as_str(),
        mac: e.mac.map(|m| m.to_string()).unwrap_or_default(),
        extension: e.extension.clone().unwrap_or_default(),
        network: e.network.clone().unwrap_or_default(),
        source: e.source_ip.clone().unwrap_or_default(),
        detail: e.detail.clone(),
    }
}

async fn page(
    Extension(ctx): Extension<Ctx>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let session = match signed_in(&ctx, &headers) {
        Ok(s) => s,
        Err(resp) => return *resp,
    };
    let (form, before) = Form::read(q.as_deref());
    let kinds: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
    let show =
        |status: StatusCode, rows: Vec<Row>, older: Option<String>, error: Option<String>| {
            render(
                status,
                "audit.html",
                context! {
                    page => "audit", who => session.who, csrf => session.csrf,
                    form => &form, kinds => kinds, rows => rows, older => older,
                    error => error, paged => before.is_some(), query => form.query(),
                },
            )
        };
    let filter = match form.filter(before) {
        Ok(f) => f,
        Err(e) => return show(StatusCode::BAD_REQUEST, Vec::new(), None, Some(e)),
    };
    match ctx.app.flow.book().audit_query(filter, PAGE + 1).await {
        Ok(mut events) => {
            let older = (events.len() > PAGE).then(|| {
                events.truncate(PAGE);
                let last = events.last().map_or(0, |e| e.id);
                let q = form.query();
                let sep = if q.is_empty() { "" } else { "&" };
                format!("/admin/audit?{q}{sep}before={last}")
            });
            show(
                StatusCode::OK,
                events.iter().map(row).collect(),
                older,
                None,
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "console: audit query failed");
            let msg = "The audit trail cannot be read; see the server log.".to_owned();
            show(
                StatusCode::INTERNAL_SERVER_ERROR,
                Vec::new(),
                None,
                Some(msg),
            )
        }
    }
}

async fn csv(
    Extension(ctx): Extension<Ctx>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    if let Err(resp) = signed_in(&ctx, &headers) {
        return *resp;
    }
    let (form, before) = Form::read(q.as_deref());
    let filter = match form.filter(before) {
        Ok(f) => f,
        Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
    };
    match ctx.app.flow.book().audit_query(filter, CSV_MAX).await {
        Ok(events) => download(
            "text/csv; charset=utf-8",
            "hotdesk-audit.csv",
            to_csv(&events),
        ),
        Err(e) => {
            tracing::error!(error = %e, "console: audit export failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the audit trail cannot be read; see the server log",
            )
                .into_response()
        }
    }
}

/// RFC 4180: CRLF line ends, a header line, fields with `"`, `,`, CR or LF quoted.
fn to_csv(events: &[AuditEvent]) -> String {
    let mut out = String::from("id,at,kind,mac,extension,network,source,detail\r\n");
    for e in events {
        let r = row(e);
        let cells = [
            r.id.to_string(),
            r.at,
            r.kind.to_owned(),
            r.mac,
            r.extension,
            r.network,
            r.source,
            r.detail,
        ];
        let line: Vec<String> = cells.iter().map(|c| cell(c)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}

/// One CSV field. Text a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab, CR
/// first; OWASP "CSV injection") gets a leading `'`, then RFC 4180 quoting applies.
fn cell(text: &str) -> String {
    let guarded;
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        guarded = format!("'{text}");
        guarded.as_str()
    } else {
        text
    };
    if text.contains(['"', ',', '\r', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_are_quoted_and_formulas_neutralised() {
        for (input, expected) in [
            ("plain", "plain"),
            ("", ""),
            ("a,b", "\"a,b\""),
            ("say \"hi\"", "\"say \"\"hi\"\"\""),
            ("two\nlines", "\"two\nlines\""),
            (
                "=HYPERLINK(\"http://x\")",
                "\"'=HYPERLINK(\"\"http://x\"\")\"",
            ),
            ("=1+2", "'=1+2"),
            ("+1", "'+1"),
            ("-1", "'-1"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("\rx", "\"'\rx\""),
            ("a=b", "a=b"),
            ("Zoë 🦀", "Zoë 🦀"),
        ] {
            assert_eq!(cell(input), expected, "{input:?}");
        }
    }

    #[test]
    fn a_csv_file_has_a_header_and_crlf_rows() {
        let mut e = AuditEvent::new(EventKind::LoginFailed, "=cmd|' /C calc'!A0, \"x\"");
        e.id = 7;
        e.at = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        e.extension = Some("1001".into());
        let text = to_csv(&[e]);
        assert_eq!(
            text,
            "id,at,kind,mac,extension,network,source,detail\r\n\
             7,2023-11-14T22:13:20Z,login-failed,,1001,,,\"'=cmd|' /C calc'!A0, \"\"x\"\"\"\r\n"
        );
    }

    #[test]
    fn times_read_as_utc_and_a_date_ends_with_its_day() {
        let at = |t: &str, end| parse_time(t, end).map(|t| t.unix_timestamp());
        assert_eq!(at("2023-11-14", false), Ok(1_699_920_000));
        assert_eq!(at("2023-11-14", true), Ok(1_699_920_000 + 86_400));
        assert_eq!(at("2023-11-14T22:13", false), Ok(1_700_000_000 - 20));
        assert_eq!(at("2023-11-14T22:13:20", true), Ok(1_700_000_000));
        assert_eq!(at("2023-11-14T23:13:20+01:00", false), Ok(1_700_000_000));
        assert!(at("yesterday", false).is_err());
        assert!(at("2023-13-01", false).is_err());
    }
}
