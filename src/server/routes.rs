//! Routing and the request span. Phone routes answer with the phone's XML; everything that
//! cannot be tied to a phone answers with plain text or JSON.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body, Incoming};
use tracing::Instrument;

use super::respond::{self, Resp};
use super::{access, admin};
use crate::App;
use crate::config::ReloadMethod;
use crate::dialect::Target;
use crate::flow::{PhoneRequest, Step, screens};
use crate::phone;
use crate::vendor;

/// Query pairs beyond this are ignored: phones send a handful.
const MAX_QUERY_PAIRS: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Health,
    Ready,
    Metrics,
    Phone(Step),
    Logins,
    Login,
    Audit,
    Invalidate,
    Outbox,
    Lockouts,
    Credentials,
    Provision,
    Push,
    NotFound,
}

fn route(path: &str) -> Route {
    match path {
        "/healthz" => Route::Health,
        "/readyz" => Route::Ready,
        "/metrics" => Route::Metrics,
        "/app" | "/app/" => Route::Phone(Step::Entry),
        "/app/login" => Route::Phone(Step::Login),
        "/app/logout" => Route::Phone(Step::Logout),
        "/app/apply" => Route::Phone(Step::Apply),
        "/app/push" => Route::Push,
        "/api/v1/logins" => Route::Logins,
        "/api/v1/audit" => Route::Audit,
        "/api/v1/directory/invalidate" => Route::Invalidate,
        "/api/v1/outbox" => Route::Outbox,
        "/api/v1/lockouts" => Route::Lockouts,
        p if p.starts_with("/api/v1/logins/") => Route::Login,
        p if p.starts_with("/api/v1/phones/") && p.ends_with("/credentials") => Route::Credentials,
        p if p.starts_with("/provision/") && !p[11..].contains('/') => Route::Provision,
        _ => Route::NotFound,
    }
}

fn route_name(r: Route) -> &'static str {
    match r {
        Route::Health => "healthz",
        Route::Ready => "readyz",
        Route::Metrics => "metrics",
        Route::Phone(Step::Entry) => "app",
        Route::Phone(Step::Login) => "app/login",
        Route::Phone(Step::Logout) => "app/logout",
        Route::Phone(Step::Apply) => "app/apply",
        Route::Logins => "api/logins",
        Route::Login => "api/login",
        Route::Audit => "api/audit",
        Route::Invalidate => "api/directory/invalidate",
        Route::Outbox => "api/outbox",
        Route::Lockouts => "api/lockouts",
        Route::Credentials => "api/phone-credentials",
        Route::Provision => "provision",
        Route::Push => "app/push",
        Route::NotFound => "not-found",
    }
}

/// Decodes the query: first value of each key wins, at most [`MAX_QUERY_PAIRS`].
pub fn parse_query(query: Option<&str>) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()).take(MAX_QUERY_PAIRS) {
        out.entry(k.into_owned()).or_insert_with(|| v.into_owned());
    }
    out
}

/// Answers one request. A phone step that may change state starts at once in its own task:
/// hyper drops a request whose client has closed without ever polling it, and a guess must
/// be counted (and a login finished) whether or not anyone waits for the answer.
pub fn handle(
    app: Arc<App>,
    peer: SocketAddr,
    secure: bool,
    req: Request<Incoming>,
) -> impl std::future::Future<Output = Result<Resp, Infallible>> + Send {
    let eager = matches!(
        route(req.uri().path()),
        Route::Phone(Step::Login | Step::Logout | Step::Apply)
    );
    let work = answer(app, peer, secure, req);
    let task = if eager {
        Ok(tokio::spawn(work))
    } else {
        Err(work)
    };
    async move {
        Ok(match task {
            Ok(t) => t.await.unwrap_or_else(|e| {
                tracing::error!(error = %e, "request task failed");
                respond::text(StatusCode::INTERNAL_SERVER_ERROR, "hotdesk had a problem")
            }),
            Err(work) => work.await,
        })
    }
}

async fn answer(app: Arc<App>, peer: SocketAddr, secure: bool, req: Request<Incoming>) -> Resp {
    let started = Instant::now();
    let r = route(req.uri().path());
    // The path and query never go into the log: the query carries the PIN.
    let span = tracing::info_span!(
        "req",
        method = %req.method(),
        route = route_name(r),
        peer = %peer.ip().to_canonical(),
        vendor = tracing::field::Empty,
        mac = tracing::field::Empty,
        key = tracing::field::Empty,
    );
    let timeout = app.config.server.request_timeout.0;
    let resp = async {
        match tokio::time::timeout(timeout, dispatch(&app, peer, secure, r, req)).await {
            Ok(resp) => resp,
            Err(_) => {
                tracing::warn!("request timed out");
                respond::text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "hotdesk took too long to answer; try again",
                )
            }
        }
    }
    .instrument(span.clone())
    .await;
    let took = started.elapsed();
    app.metrics.http_request(route_name(r), resp.status(), took);
    span.in_scope(|| {
        tracing::info!(
            status = resp.status().as_u16(),
            us = took.as_micros() as u64,
            "request"
        )
    });
    resp
}

async fn dispatch(
    app: &Arc<App>,
    peer: SocketAddr,
    secure: bool,
    r: Route,
    req: Request<Incoming>,
) -> Resp {
    let (parts, body) = req.into_parts();
    // Bodies are read whole, within the limit; only the admin API uses them.
    let body = if body.size_hint().exact() == Some(0) {
        bytes::Bytes::new()
    } else {
        let max = app.config.server.max_body_bytes;
        match Limited::new(body, max).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                let msg = format!("request body over {max} bytes");
                return respond::text(StatusCode::PAYLOAD_TOO_LARGE, msg);
            }
        }
    };
    let query = parse_query(parts.uri.query());
    let method = &parts.method;
    // The address that counts (through trusted proxies only), checked against its group.
    let client = access::client_ip(
        peer.ip(),
        &parts.headers,
        &app.config.server.trusted_proxies,
    );
    let group = match r {
        Route::Phone(_) | Route::Provision | Route::Push => {
            Some((&app.config.phones.allow, "phone"))
        }
        Route::Logins
        | Route::Login
        | Route::Audit
        | Route::Invalidate
        | Route::Outbox
        | Route::Lockouts
        | Route::Credentials
        | Route::Metrics => Some((&app.config.admin.allow, "admin")),
        Route::Health | Route::Ready | Route::NotFound => None,
    };
    if let Some((allow, what)) = group
        && !access::allowed(client, allow)
    {
        if app.refusals.should_log(client) {
            tracing::warn!(%client, group = what, "refused: source not in the allow-list (logged once a minute per source)");
        }
        return respond::text(
            StatusCode::FORBIDDEN,
            format!("{what} access is not allowed from {client}"),
        );
    }
    let peer = SocketAddr::new(client, peer.port());
    match (r, method) {
        (Route::Health, &Method::GET | &Method::HEAD) => respond::text(StatusCode::OK, "ok"),
        (Route::Ready, &Method::GET | &Method::HEAD) => super::metrics_route::ready(app),
        (Route::Metrics, &Method::GET) => super::metrics_route::metrics(app).await,
        (Route::Push, &Method::GET) => super::provision::push(app, &parts, &query, client).await,
        (Route::Provision, &Method::GET) if parts.uri.path() == "/provision/innovaphone.txt" => {
            match app.fetch_guard.rate(client) {
                Ok(()) => super::provision::innovaphone(
                    app,
                    query.get("sn").map(String::as_str),
                    query.get("CHECK").map(String::as_str),
                ),
                Err(resp) => *resp,
            }
        }
        (Route::Provision, &Method::GET) => {
            let file = &parts.uri.path()["/provision/".len()..];
            let vendor = query.get("vendor").map(String::as_str);
            super::provision::handle(app, file, &parts, vendor, client).await
        }
        // HEAD never changes state: only the entry screen answers it.
        (Route::Phone(Step::Entry), &Method::HEAD) | (Route::Phone(_), &Method::GET) => {
            let Route::Phone(step) = r else {
                unreachable!("matched a phone route")
            };
            let base = link_base(app, secure, &parts.headers);
            phone(app, peer, base, step, &parts.uri, &parts.headers, &query).await
        }
        (Route::Logins, &Method::GET)
        | (Route::Login, &Method::DELETE)
        | (Route::Audit, &Method::GET)
        | (Route::Outbox, &Method::GET)
        | (Route::Lockouts, &Method::GET | &Method::DELETE)
        | (Route::Credentials, &Method::POST | &Method::DELETE)
        | (Route::Invalidate, &Method::POST) => {
            let req = admin::AdminRequest {
                peer,
                path: parts.uri.path(),
                method,
                headers: &parts.headers,
                query: &query,
                body: &body,
            };
            admin::handle(app, req).await
        }
        (Route::NotFound, _) => {
            respond::text(StatusCode::NOT_FOUND, "not found; phones start at /app")
        }
        (r, _) => {
            let allow = match r {
                Route::Login => "DELETE",
                Route::Invalidate => "POST",
                Route::Lockouts => "GET, DELETE",
                Route::Credentials => "POST, DELETE",
                Route::Phone(Step::Entry) | Route::Health | Route::Ready => "GET, HEAD",
                _ => "GET",
            };
            let mut resp = respond::text(StatusCode::METHOD_NOT_ALLOWED, format!("use {allow}"));
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
            resp
        }
    }
}

async fn phone(
    app: &Arc<App>,
    peer: SocketAddr,
    base: &str,
    step: Step,
    uri: &http::Uri,
    headers: &http::HeaderMap,
    query: &HashMap<String, String>,
) -> Resp {
    let handset = match identify_request(headers, query) {
        Ok(h) => h,
        Err(resp) => return *resp,
    };

    // Every step after the entry must come from a link hotdesk signed, not yet expired;
    // anything else starts over at the entry screen.
    let now = app.clock.now().unix_timestamp();
    let beyond_entry = match step {
        Step::Entry => false,
        Step::Login => query.contains_key("net"),
        Step::Logout | Step::Apply => true,
    };
    let step = match &app.signer {
        Some(signer) if beyond_entry => {
            let ordered: Vec<(String, String)> =
                form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
                    .into_owned()
                    .take(MAX_QUERY_PAIRS)
                    .collect();
            if signer.verify(uri.path(), &ordered, now) {
                step
            } else {
                tracing::info!("unsigned, forged or expired link; starting over");
                Step::Entry
            }
        }
        _ => step,
    };
    let reload = reload_for(app, handset.vendor);
    let effect = effect_of(reload, &handset.caps);
    let mut screen = match step {
        // The entry screen changes nothing and is the hot path: answered inline.
        Step::Entry => {
            let req = PhoneRequest {
                handset: &handset,
                source_ip: peer.ip(),
                effect,
                query,
            };
            app.flow.handle(step, &req).await
        }
        _ => run_to_completion(app, step, &handset, peer, effect, query).await,
    };
    super::reload::after_apply(app, &handset, peer.ip(), &mut screen, reload);
    if let Some(signer) = &app.signer {
        signer.sign_screen(&mut screen, now);
    }
    let target = Target {
        handset: &handset,
        base,
        reload,
    };
    let rendered = vendor::render(&screen, target);
    let mut resp = respond::xml(rendered.body);
    if let Some((secs, url)) = rendered.refresh
        && let Ok(v) = HeaderValue::from_str(&format!("{secs}; url={url}"))
    {
        resp.headers_mut().insert("refresh", v);
    }
    resp
}

/// Runs a step that may change state in its own task, so that it finishes (failure counted,
/// login committed to disk and memory) whether or not the client waits. A phone waits only
/// a few seconds: past the budget it is told the step is still running, never an outcome
/// that may not be the one recorded.
async fn run_to_completion(
    app: &Arc<App>,
    step: Step,
    handset: &phone::Handset,
    peer: SocketAddr,
    effect: screens::ApplyEffect,
    query: &HashMap<String, String>,
) -> crate::screen::Screen {
    let task = {
        let (app, handset, query) = (app.clone(), handset.clone(), query.clone());
        tokio::spawn(
            async move {
                let req = PhoneRequest {
                    handset: &handset,
                    source_ip: peer.ip(),
                    effect,
                    query: &query,
                };
                app.flow.handle(step, &req).await
            }
            .in_current_span(),
        )
    };
    let budget = app.config.server.request_timeout.0.mul_f32(0.8);
    match tokio::time::timeout(budget, task).await {
        Ok(Ok(screen)) => screen,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "phone step failed");
            screens::try_later("hotdesk had a problem.")
        }
        Err(_) => {
            tracing::warn!("phone step outlived the request budget; it goes on");
            screens::still_working()
        }
    }
}

/// The phone behind a request (User-Agent, `?vendor=`, `?mac=`), recorded in the request
/// span; a plain 400 saying what was expected otherwise.
pub(super) fn identify_request(
    headers: &http::HeaderMap,
    query: &HashMap<String, String>,
) -> Result<phone::Handset, Box<Resp>> {
    let ua = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let vendor = query.get("vendor").map(String::as_str);
    let handset =
        vendor::identify(ua, vendor, query.get("mac").map(String::as_str)).map_err(|e| {
            tracing::info!(error = %e, "phone not identified");
            respond::text(StatusCode::BAD_REQUEST, e.to_string())
        })?;
    let span = tracing::Span::current();
    span.record("vendor", handset.vendor.as_str());
    span.record("mac", tracing::field::display(handset.mac));
    Ok(handset)
}

/// The base for generated links: the configured URL whose scheme and host match what the
/// phone used (so an https phone stays on https), else `base_url`. The Host header only
/// selects among configured URLs; it never becomes a link itself.
fn link_base<'a>(app: &'a App, secure: bool, headers: &http::HeaderMap) -> &'a str {
    let scheme = if secure { "https://" } else { "http://" };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    std::iter::once(app.config.base_url.as_str())
        .chain(app.config.server.base_urls.iter().map(String::as_str))
        .map(|b| b.trim_end_matches('/'))
        .find(|b| {
            b.strip_prefix(scheme)
                .map(|rest| rest.split('/').next().unwrap_or(""))
                .is_some_and(|authority| !host.is_empty() && authority.eq_ignore_ascii_case(host))
        })
        .unwrap_or_else(|| app.config.base())
}

/// What the phone's apply does under `method`, so its success screen says it honestly.
fn effect_of(method: ReloadMethod, caps: &phone::Caps) -> screens::ApplyEffect {
    use screens::ApplyEffect::{Later, Live, Restart};
    match method {
        ReloadMethod::Push if caps.dynamic_sip => Live,
        ReloadMethod::Push | ReloadMethod::FastReboot | ReloadMethod::Reboot => Restart,
        ReloadMethod::Resync => Live,
        // A check-sync reboots unless it says `reboot=false` (Yealink: per
        // `sip.notify_reboot_enable`; Snom re-reads settings with `reboot=false`).
        ReloadMethod::CheckSync => Restart,
        ReloadMethod::None => Later,
    }
}

/// The reload method for this vendor: `[vendors.<id>] reload`, else the family's default.
pub(super) fn reload_for(app: &App, vendor: phone::Vendor) -> ReloadMethod {
    app.config
        .vendor(vendor.as_str())
        .and_then(|v| v.reload)
        .unwrap_or_else(|| vendor::family(vendor).default_reload())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing_is_bounded_and_first_wins() {
        let q = parse_query(Some("a=1&a=2&b=%ZZ&c=%E2%82%AC&&=x&d"));
        assert_eq!(q["a"], "1");
        assert_eq!(q["c"], "€");
        assert_eq!(q["d"], "");
        let long: String = (0..100).map(|i| format!("k{i}=v&")).collect();
        assert_eq!(parse_query(Some(&long)).len(), MAX_QUERY_PAIRS);
    }

    #[test]
    fn routes() {
        assert_eq!(route("/app"), Route::Phone(Step::Entry));
        assert_eq!(route("/api/v1/logins/00085d000001"), Route::Login);
        assert_eq!(route("/app/../etc"), Route::NotFound);
    }
}
