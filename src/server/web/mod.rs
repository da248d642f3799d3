//! The browser side: the admin console at `/admin` and the user's own page at `/me`.
//! Server-rendered HTML (minijinja, escaped by default), a little hand-written JS served as a
//! file (the Content-Security-Policy allows no inline script), sessions in cookies, a CSRF
//! token in every state-changing form.

pub mod audit;
pub mod console;
pub mod me;
pub mod outbox;
pub mod preview;
pub mod session;
pub mod settings;
pub mod users;

use std::sync::LazyLock;

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body_util::Full;
use minijinja::Environment;

use crate::config::Config;
use session::Sessions;

/// Browser sessions, one store per audience.
pub struct Web {
    pub admin: Sessions,
    pub users: Sessions,
}

impl Web {
    pub fn new(config: &Config) -> Self {
        let (idle, max) = (config.admin.session_idle.0, config.admin.session_max.0);
        Self {
            admin: Sessions::new("hotdesk_admin", "/admin", idle, max),
            users: Sessions::new("hotdesk_me", "/me", idle, max),
        }
    }
}

static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    for (name, source) in [
        ("layout.html", include_str!("templates/layout.html")),
        ("signin.html", include_str!("templates/signin.html")),
        ("desks.html", include_str!("templates/desks.html")),
        ("desk_rows.html", include_str!("templates/desk_rows.html")),
        ("lockouts.html", include_str!("templates/lockouts.html")),
        ("phones.html", include_str!("templates/phones.html")),
        ("me_signin.html", include_str!("templates/me_signin.html")),
        ("me.html", include_str!("templates/me.html")),
        ("audit.html", include_str!("templates/audit.html")),
        ("outbox.html", include_str!("templates/outbox.html")),
        ("preview.html", include_str!("templates/preview.html")),
        ("config.html", include_str!("templates/config.html")),
        ("activate.html", include_str!("templates/activate.html")),
        ("users.html", include_str!("templates/users.html")),
        ("user.html", include_str!("templates/user.html")),
        (
            "user_result.html",
            include_str!("templates/user_result.html"),
        ),
        ("link_made.html", include_str!("templates/link_made.html")),
        ("softphones.html", include_str!("templates/softphones.html")),
        ("me_result.html", include_str!("templates/me_result.html")),
    ] {
        env.add_template(name, source)
            .expect("the built-in templates parse (checked by a unit test)");
    }
    env
});

/// Renders a built-in template to text; a failure is a bug, logged.
pub fn render_text(name: &str, ctx: minijinja::Value) -> Option<String> {
    TEMPLATES
        .get_template(name)
        .and_then(|t| t.render(ctx))
        .map_err(|e| tracing::error!(template = name, error = %e, "page template failed"))
        .ok()
}

/// A page from a built-in template (a plain 500 if the template fails).
pub fn render(status: StatusCode, name: &str, ctx: minijinja::Value) -> Response {
    match render_text(name, ctx) {
        Some(html) => page(status, html),
        None => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the page could not be drawn",
        )
            .into_response(),
    }
}

/// Headers every page carries: no script but our own file, no framing, no caching.
fn harden(resp: &mut Response) {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// An HTML page.
pub fn page(status: StatusCode, html: String) -> Response {
    let mut resp = Response::new(axum::body::Body::new(Full::new(Bytes::from(html))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    harden(&mut resp);
    resp
}

/// A 303 to `to` (a path of ours), optionally setting a cookie.
pub fn see_other(to: &'static str, cookie: Option<HeaderValue>) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    resp.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(to));
    if let Some(c) = cookie {
        resp.headers_mut().insert(header::SET_COOKIE, c);
    }
    harden(&mut resp);
    resp
}

/// A 303 to `to`, a path of ours built at run time (its parts percent-encoded by the caller).
pub fn see_other_path(to: String) -> Response {
    match HeaderValue::try_from(to) {
        Ok(location) => {
            let mut resp = StatusCode::SEE_OTHER.into_response();
            resp.headers_mut().insert(header::LOCATION, location);
            harden(&mut resp);
            resp
        }
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "bad redirect").into_response(),
    }
}

/// A file to save (`Content-Disposition: attachment`), never cached.
pub fn download(content_type: &'static str, file_name: &'static str, body: String) -> Response {
    let mut resp = Response::new(axum::body::Body::new(Full::new(Bytes::from(body))));
    harden(&mut resp);
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file_name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    resp
}

/// A static file of the console (CSS, JS), cached briefly.
pub fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut resp = Response::new(axum::body::Body::from(body));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=300"),
    );
    resp
}

/// Whether the browser says another site sent this form (Fetch Metadata). Without it, any
/// web page an employee opens could make their browser, inside `[users] allow`, post PIN
/// guesses (and lock users out) on the user page. Clients that send no such header are
/// judged as usual (by the session cookie and the CSRF token).
pub fn cross_site(headers: &http::HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .is_some_and(|v| !matches!(v.as_bytes(), b"same-origin" | b"none"))
}

/// Decodes an `application/x-www-form-urlencoded` body: first value of each key wins.
pub fn form(body: &[u8]) -> std::collections::HashMap<String, String> {
    let mut out = std::collections::HashMap::new();
    for (k, v) in form_urlencoded::parse(body).take(64) {
        out.entry(k.into_owned()).or_insert_with(|| v.into_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_template_parses() {
        let _ = &*super::TEMPLATES;
    }
}
