//! Routing (axum on the existing hyper stack) and the request span. Phone routes answer with
//! the phone's XML; everything that cannot be tied to a phone answers with plain text or JSON.
//! A wrong method gets 405 with `Allow`; each route group checks its source allow-list first.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use std::time::Instant;

use axum::Router;
use axum::extract::{Extension, Path, Request};
use axum::handler::Handler;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post};
use futures_util::FutureExt;
use futures_util::future::Either;
use http::{HeaderValue, Method, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body, Incoming};
use tower::ServiceExt;
use tracing::Instrument;

use super::respond::{self, Resp};
use super::{access, access_log, admin, screen_cache};
use crate::App;
use crate::config::{Config, ReloadMethod};
use crate::dialect::Target;
use crate::flow::{PhoneRequest, Step, screens};
use crate::phone;
use crate::vendor;

/// Query pairs beyond this are ignored: phones send a handful.
const MAX_QUERY_PAIRS: usize = 32;

/// What every handler needs beside the request: the server, the client's address (through
/// trusted proxies only) and whether the connection is TLS.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub app: Arc<App>,
    /// The address that counts: the peer, or the client a trusted proxy names.
    pub client: SocketAddr,
    pub secure: bool,
}

/// Built once: the routes hold no state (each request carries its [`Ctx`]).
static ROUTER: LazyLock<Router> = LazyLock::new(router);

fn router() -> Router {
    let phone = Router::new()
        // The entry screen changes nothing: GET and HEAD.
        .route("/app", get(entry))
        .route("/app/", get(entry))
        .route("/app/login", get_only(login))
        .route("/app/logout", get_only(logout))
        .route("/app/apply", get_only(apply))
        .route("/app/push", get_only(push))
        .route("/provision/{file}", get_only(provision));
    let admin = Router::new()
        .route("/api/v1/logins", get(admin_api))
        .route("/api/v1/logins/{mac}", delete(admin_api))
        .route("/api/v1/audit", get(admin_api))
        .route("/api/v1/outbox", get(admin_api))
        .route("/api/v1/lockouts", get(admin_api).delete(admin_api))
        .route(
            "/api/v1/phones/{mac}/credentials",
            post(admin_api).delete(admin_api),
        )
        .route("/api/v1/directory/invalidate", post(admin_api))
        .route("/metrics", get_only(metrics))
        // The embedded directory's users (server/users_api.rs).
        .route("/api/v1/users", get(admin_api).post(admin_api))
        .route(
            "/api/v1/users/{ext}",
            get(admin_api).patch(admin_api).delete(admin_api),
        )
        .route("/api/v1/users/{ext}/pin", post(admin_api))
        .route("/api/v1/users/{ext}/sip-secret", post(admin_api))
        // Softphone activation and one-time login codes (server/activations_api.rs).
        .route(
            "/api/v1/users/{ext}/activations",
            get(admin_api).post(admin_api).delete(admin_api),
        )
        .route("/api/v1/users/{ext}/devices/{id}", delete(admin_api))
        .route("/api/v1/users/{ext}/login-codes", post(admin_api))
        .merge(super::web::console::routes())
        .layer(middleware::from_fn(admin_group));
    // Softphones fetching their account by a single-use link (server/softphone.rs).
    let softphones = Router::new()
        .route("/provisioning/{token}", get_only(softphone_fetch))
        .route("/provisioning/{token}/{file}", get(softphone_qr))
        .layer(middleware::from_fn(activation_group));
    Router::new()
        .route("/healthz", get(health))
        // Ready = the store takes writes and the directory has answered (liveness: `/healthz`).
        .route("/readyz", get(ready))
        .merge(phone)
        .merge(admin)
        .merge(softphones)
        .merge(super::web::me::routes().layer(middleware::from_fn(users_group)))
        .fallback(not_found)
}

/// GET only: a phone step that may change state never answers HEAD (a HEAD must not count
/// as a guess or commit a login).
fn get_only<H, T>(handler: H) -> MethodRouter
where
    H: Handler<T, ()>,
    T: 'static,
{
    get(handler).head(only_get).fallback(only_get)
}

async fn only_get() -> Resp {
    let mut resp = respond::text(StatusCode::METHOD_NOT_ALLOWED, "use GET");
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET"));
    resp
}

/// The route's name in the log and the metrics: a bounded set, never a path. Read off the
/// path before routing (a middleware layer for it costs a boxed future on the hot path);
/// a path no route takes is `not-found`.
fn route_name(path: &str) -> &'static str {
    match path {
        "/healthz" => "healthz",
        "/readyz" => "readyz",
        "/metrics" => "metrics",
        "/app" | "/app/" => "app",
        "/app/login" => "app/login",
        "/app/logout" => "app/logout",
        "/app/apply" => "app/apply",
        "/app/push" => "app/push",
        "/api/v1/logins" => "api/logins",
        "/api/v1/audit" => "api/audit",
        "/api/v1/outbox" => "api/outbox",
        "/api/v1/lockouts" => "api/lockouts",
        "/api/v1/directory/invalidate" => "api/directory/invalidate",
        p if p.starts_with("/provision/") && !p[11..].contains('/') => "provision",
        // Never the token: it is the link's whole secret.
        p if p.starts_with("/provisioning/") => "provisioning-link",
        p if p.starts_with("/api/v1/logins/") => "api/login",
        p if p.starts_with("/api/v1/phones/") => "api/phone-credentials",
        p if p.starts_with("/api/v1/users") => "api/users",
        p if p.starts_with("/api/") => "api/other",
        p if p == "/admin" || p.starts_with("/admin/") => "admin",
        p if p == "/me" || p.starts_with("/me/") => "me",
        _ => "not-found",
    }
}

/// The phone group (`[phones] allow`), checked in the handlers themselves: a middleware
/// layer costs a boxed future and a service clone on the hottest path.
fn phone_refused(ctx: &Ctx) -> Option<Resp> {
    refused(ctx, "phone", &ctx.app.config.phones.allow)
}

fn refused(ctx: &Ctx, what: &str, allow: &[ipnet::IpNet]) -> Option<Resp> {
    let client = ctx.client.ip();
    if access::allowed(client, allow) {
        return None;
    }
    if ctx.app.refusals.should_log(client) {
        tracing::warn!(%client, group = what, "refused: source not in the allow-list (logged once a minute per source)");
    }
    Some(respond::text(
        StatusCode::FORBIDDEN,
        format!("{what} access is not allowed from {client}"),
    ))
}

/// The admin group: `[admin] allow`.
async fn admin_group(req: Request, next: Next) -> Response {
    group(req, next, "admin", |c| &c.admin.allow).await
}

/// Activation links: `[activation] allow`.
async fn activation_group(req: Request, next: Next) -> Response {
    group(req, next, "activation", Config::activation_allow).await
}

/// The user page: `[users] allow`.
async fn users_group(req: Request, next: Next) -> Response {
    group(req, next, "user page", Config::users_allow).await
}

async fn group(
    req: Request,
    next: Next,
    what: &'static str,
    allow: fn(&Config) -> &[ipnet::IpNet],
) -> Response {
    let Some(ctx) = req.extensions().get::<Ctx>() else {
        return respond::text(StatusCode::INTERNAL_SERVER_ERROR, "no request context")
            .into_response();
    };
    if let Some(resp) = refused(ctx, what, allow(&ctx.app.config)) {
        return resp.into_response();
    }
    next.run(req).await
}

/// Decodes the query: first value of each key wins, at most [`MAX_QUERY_PAIRS`].
pub fn parse_query(query: Option<&str>) -> HashMap<String, String> {
    first_wins(query_pairs(query))
}

/// The query's pairs in the order received, decoded, at most [`MAX_QUERY_PAIRS`].
fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .take(MAX_QUERY_PAIRS)
        .collect()
}

/// The pairs by key; the first value of a repeated key wins.
fn first_wins(pairs: impl IntoIterator<Item = (String, String)>) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for (k, v) in pairs {
        out.entry(k).or_insert(v);
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
    req: http::Request<Incoming>,
) -> impl std::future::Future<Output = Result<Response, Infallible>> + Send {
    let eager = match *req.method() {
        Method::GET => matches!(
            req.uri().path(),
            "/app/login" | "/app/logout" | "/app/apply"
        ),
        // The user page's guesses and logouts, likewise.
        Method::POST => matches!(req.uri().path(), "/me/signin" | "/me/logout"),
        _ => false,
    };
    // Combinators rather than an async block around `work`: a block would hold the answer's
    // state twice (once captured, once awaited), and hyper moves this future per request.
    let work = answer(app, peer, secure, req);
    if eager {
        Either::Left(tokio::spawn(work).map(|joined| {
            Ok(joined.unwrap_or_else(|e| {
                tracing::error!(error = %e, "request task failed");
                respond::text(StatusCode::INTERNAL_SERVER_ERROR, "hotdesk had a problem")
                    .into_response()
            }))
        }))
    } else {
        Either::Right(work.map(Ok))
    }
}

async fn answer(
    app: Arc<App>,
    peer: SocketAddr,
    secure: bool,
    req: http::Request<Incoming>,
) -> Response {
    let started = Instant::now();
    let route = route_name(req.uri().path());
    let method = req.method().clone();
    let client = access::client_ip(peer.ip(), req.headers(), &app.config.server.trusted_proxies);
    // Context for what handlers log at debug level; the access line below carries it at
    // info (a span at info cost an allocation and a line of its own per request).
    let span = tracing::debug_span!("req", route, client = %client);
    let timeout = app.config.server.request_timeout.0;
    let (parts, body) = req.into_parts();
    let ctx = Ctx {
        app: app.clone(),
        client: SocketAddr::new(client, peer.port()),
        secure,
    };
    // Boxed: the handler's future is a kilobyte or more, and the layers around it (time-out,
    // span, access record) and hyper move the request's future whole several times.
    let work = Box::pin(routed(route, ctx, parts, body));
    let (resp, noted) =
        access_log::scope(tokio::time::timeout(timeout, work).instrument(span)).await;
    let resp = resp.unwrap_or_else(|_| {
        tracing::warn!(route, %client, "request timed out");
        respond::text(
            StatusCode::SERVICE_UNAVAILABLE,
            "hotdesk took too long to answer; try again",
        )
        .into_response()
    });
    let took = started.elapsed();
    app.metrics.http_request(route, resp.status(), took);
    access_log::line(&method, route, client, &noted, resp.status().as_u16(), took);
    resp
}

/// The handler's answer: the phones' hot GETs skip the router (its routing, extractors and
/// boxed futures cost more than a cached entry screen), everything else goes through it
/// with the context among the request's extensions.
fn routed(
    route: &'static str,
    ctx: Ctx,
    mut parts: http::request::Parts,
    body: Incoming,
) -> impl Future<Output = Response> + Send {
    match fast_route(route, &parts) {
        Some(fast) => Either::Left(fast.answer(ctx, parts)),
        None => {
            parts.extensions.insert(ctx);
            let req = Request::from_parts(parts, axum::body::Body::new(body));
            Either::Right(ROUTER.clone().oneshot(req).map(|r| match r {
                Ok(resp) => resp,
                Err(never) => match never {},
            }))
        }
    }
}

/// A GET the router need not see: the entry screen, and a provisioning file whose name
/// needs no percent-decoding (the router's `Path` would decode it).
enum FastRoute {
    Entry,
    Provision,
}

fn fast_route(route: &'static str, parts: &http::request::Parts) -> Option<FastRoute> {
    if parts.method != Method::GET {
        return None;
    }
    match route {
        "app" => Some(FastRoute::Entry),
        "provision" if !parts.uri.path().contains('%') => Some(FastRoute::Provision),
        _ => None,
    }
}

impl FastRoute {
    fn answer(
        self,
        ctx: Ctx,
        parts: http::request::Parts,
    ) -> impl Future<Output = Response> + Send {
        match self {
            FastRoute::Entry => {
                Either::Left(step(Step::Entry, ctx, parts).map(IntoResponse::into_response))
            }
            FastRoute::Provision => {
                Either::Right(provision_file(ctx, None, parts).map(IntoResponse::into_response))
            }
        }
    }
}

async fn health() -> Resp {
    respond::text(StatusCode::OK, "ok")
}

async fn ready(Extension(ctx): Extension<Ctx>) -> Resp {
    super::metrics_route::ready(&ctx.app)
}

async fn metrics(Extension(ctx): Extension<Ctx>) -> Resp {
    super::metrics_route::metrics(&ctx.app).await
}

async fn not_found() -> Resp {
    respond::text(StatusCode::NOT_FOUND, "not found; phones start at /app")
}

async fn entry(Extension(ctx): Extension<Ctx>, req: Request) -> Resp {
    step(Step::Entry, ctx, req.into_parts().0).await
}

async fn login(Extension(ctx): Extension<Ctx>, req: Request) -> Resp {
    step(Step::Login, ctx, req.into_parts().0).await
}

async fn logout(Extension(ctx): Extension<Ctx>, req: Request) -> Resp {
    step(Step::Logout, ctx, req.into_parts().0).await
}

async fn apply(Extension(ctx): Extension<Ctx>, req: Request) -> Resp {
    step(Step::Apply, ctx, req.into_parts().0).await
}

async fn step(step: Step, ctx: Ctx, parts: http::request::Parts) -> Resp {
    if let Some(resp) = phone_refused(&ctx) {
        return resp;
    }
    // Parsed once: the signature covers the pairs in order, the flow looks them up by key.
    let ordered = query_pairs(parts.uri.query());
    let query = first_wins(ordered.iter().cloned());
    let base = link_base(&ctx.app, ctx.secure, &parts.headers);
    let req = PhoneQuery {
        path: parts.uri.path(),
        ordered: &ordered,
        query: &query,
    };
    phone(&ctx.app, ctx.client, base, step, &parts.headers, req).await
}

/// A phone request's path and query, in order and by key.
struct PhoneQuery<'a> {
    path: &'a str,
    ordered: &'a [(String, String)],
    query: &'a HashMap<String, String>,
}

async fn push(Extension(ctx): Extension<Ctx>, req: Request) -> Resp {
    if let Some(resp) = phone_refused(&ctx) {
        return resp;
    }
    let (parts, _) = req.into_parts();
    let query = parse_query(parts.uri.query());
    super::provision::push(&ctx.app, &parts, &query, ctx.client.ip()).await
}

async fn provision(Extension(ctx): Extension<Ctx>, Path(file): Path<String>, req: Request) -> Resp {
    provision_file(ctx, Some(file), req.into_parts().0).await
}

/// `decoded`: the file name the router percent-decoded; without it, the path's own.
async fn provision_file(ctx: Ctx, decoded: Option<String>, parts: http::request::Parts) -> Resp {
    if let Some(resp) = phone_refused(&ctx) {
        return resp;
    }
    let file = match &decoded {
        Some(name) => name.as_str(),
        None => parts
            .uri
            .path()
            .strip_prefix("/provision/")
            .unwrap_or_default(),
    };
    let query = parse_query(parts.uri.query());
    let (app, client) = (&ctx.app, ctx.client.ip());
    if file == "innovaphone.txt" {
        return match app.fetch_guard.rate(client) {
            Ok(()) => super::provision::innovaphone(
                app,
                query.get("sn").map(String::as_str),
                query.get("CHECK").map(String::as_str),
            ),
            Err(resp) => *resp,
        };
    }
    let vendor = query.get("vendor").map(String::as_str);
    super::provision::handle(app, file, &parts, vendor, client).await
}

async fn softphone_fetch(
    Extension(ctx): Extension<Ctx>,
    Path(token): Path<String>,
    req: Request,
) -> Response {
    super::softphone::fetch(&ctx.app, &token, req.headers(), ctx.client.ip()).await
}

async fn softphone_qr(
    Extension(ctx): Extension<Ctx>,
    Path((token, file)): Path<(String, String)>,
) -> Resp {
    super::softphone::qr_image(&ctx.app, &token, &file, ctx.client.ip()).await
}

/// The admin JSON API: the body is read whole, within `[server] max_body_bytes`.
async fn admin_api(Extension(ctx): Extension<Ctx>, req: Request) -> Resp {
    let (parts, body) = req.into_parts();
    let max = ctx.app.config.server.max_body_bytes;
    let body = if body.size_hint().exact() == Some(0) {
        bytes::Bytes::new()
    } else {
        match Limited::new(body, max).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                let msg = format!("request body over {max} bytes");
                return respond::text(StatusCode::PAYLOAD_TOO_LARGE, msg);
            }
        }
    };
    let query = parse_query(parts.uri.query());
    let req = admin::AdminRequest {
        peer: ctx.client,
        path: parts.uri.path(),
        method: &parts.method,
        headers: &parts.headers,
        query: &query,
        body: &body,
    };
    admin::handle(&ctx.app, req).await
}

async fn phone(
    app: &Arc<App>,
    peer: SocketAddr,
    base: &str,
    step: Step,
    headers: &http::HeaderMap,
    PhoneQuery {
        path,
        ordered,
        query,
    }: PhoneQuery<'_>,
) -> Resp {
    let handset = match identify_request(headers, query) {
        Ok(h) => h,
        Err(resp) => return *resp,
    };
    let at = app.clock.now();
    app.seen.saw(&handset, peer.ip(), at);

    // Every step after the entry must come from a link hotdesk signed, not yet expired;
    // anything else starts over at the entry screen.
    let now = at.unix_timestamp();
    let beyond_entry = match step {
        Step::Entry => false,
        Step::Login => query.contains_key("net"),
        Step::Logout | Step::Apply => true,
    };
    let step = match &app.signer {
        Some(signer) if beyond_entry => {
            if signer.verify(path, ordered, now) {
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
    let target = Target {
        handset: &handset,
        base,
        reload,
    };
    let doc = match step {
        // The entry screen changes nothing and is the hot path: answered inline, and the same
        // screen for the same model in the same second is the same document.
        Step::Entry => {
            let screen = app.flow.entry_shared(&PhoneRequest {
                handset: &handset,
                source_ip: peer.ip(),
                effect,
                query,
            });
            let key = screen_cache::Key {
                screen: &screen,
                target,
                second: now,
            };
            match app.screens.get(&key) {
                Some(doc) => doc,
                None => {
                    let doc = document(app, (*screen.screen).clone(), target, now);
                    app.screens.put(&key, doc.clone());
                    doc
                }
            }
        }
        _ => {
            let mut screen = run_to_completion(app, step, &handset, peer, effect, query).await;
            super::reload::after_apply(app, &handset, peer.ip(), &mut screen, reload);
            document(app, screen, target, now)
        }
    };
    let mut resp = respond::xml(doc.body);
    if let Some(v) = doc.refresh {
        resp.headers_mut().insert("refresh", v);
    }
    resp
}

/// `screen` with its links signed for `now`, rendered for `target`.
fn document(
    app: &App,
    mut screen: crate::screen::Screen,
    target: Target<'_>,
    now: i64,
) -> screen_cache::Document {
    if let Some(signer) = &app.signer {
        signer.sign_screen(&mut screen, now);
    }
    let rendered = vendor::render(&screen, target);
    screen_cache::Document {
        body: rendered.body.into(),
        refresh: rendered
            .refresh
            .and_then(|(secs, url)| HeaderValue::from_str(&format!("{secs}; url={url}")).ok()),
    }
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
    super::access_log::note_phone(handset.vendor.as_str(), handset.mac);
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
pub(super) fn effect_of(method: ReloadMethod, caps: &phone::Caps) -> screens::ApplyEffect {
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
    fn routes_are_named_and_only_plain_phone_gets_bypass_the_router() {
        let names = [
            ("/healthz", "healthz"),
            ("/readyz", "readyz"),
            ("/metrics", "metrics"),
            ("/app", "app"),
            ("/app/", "app"),
            ("/app/login", "app/login"),
            ("/app/logout", "app/logout"),
            ("/app/apply", "app/apply"),
            ("/app/push", "app/push"),
            ("/provision/805ec0aabbcc.cfg", "provision"),
            ("/provision/a/b.cfg", "not-found"),
            ("/provisioning/secret-token/qr.png", "provisioning-link"),
            ("/api/v1/logins", "api/logins"),
            ("/api/v1/logins/805ec0aabbcc", "api/login"),
            ("/api/v1/audit", "api/audit"),
            ("/api/v1/outbox", "api/outbox"),
            ("/api/v1/lockouts", "api/lockouts"),
            ("/api/v1/directory/invalidate", "api/directory/invalidate"),
            (
                "/api/v1/phones/805ec0aabbcc/credentials",
                "api/phone-credentials",
            ),
            ("/api/v1/users/1001/pin", "api/users"),
            ("/api/v2/x", "api/other"),
            ("/admin", "admin"),
            ("/admin/phones", "admin"),
            ("/me", "me"),
            ("/me/signin", "me"),
            ("/administrator", "not-found"),
            ("/", "not-found"),
        ];
        for (path, name) in names {
            assert_eq!(route_name(path), name, "{path}");
        }
        let fast = |method: Method, path: &str| {
            let req = http::Request::builder()
                .method(method)
                .uri(path)
                .body(())
                .unwrap();
            match fast_route(route_name(req.uri().path()), &req.into_parts().0) {
                Some(FastRoute::Entry) => "entry",
                Some(FastRoute::Provision) => "provision",
                None => "router",
            }
        };
        assert_eq!(fast(Method::GET, "/app?mac=805ec0aabbcc"), "entry");
        assert_eq!(fast(Method::GET, "/app/"), "entry");
        assert_eq!(
            fast(Method::GET, "/provision/805ec0aabbcc.cfg"),
            "provision"
        );
        // HEAD and other methods get the router's 405 or HEAD handling; a name that needs
        // percent-decoding gets the router's `Path`; state-changing steps never skip it.
        assert_eq!(fast(Method::HEAD, "/app"), "router");
        assert_eq!(fast(Method::POST, "/provision/805ec0aabbcc.cfg"), "router");
        assert_eq!(fast(Method::GET, "/provision/805ec0aabbcc%2ecfg"), "router");
        assert_eq!(fast(Method::GET, "/app/login"), "router");
        assert_eq!(fast(Method::GET, "/healthz"), "router");
    }

    #[test]
    fn the_router_builds() {
        // Overlapping or malformed routes panic when the router is built.
        let _ = router();
    }
}
