//! Response builders: every answer has a Content-Type and a Content-Length (a full body).

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

pub type Resp = Response<Full<Bytes>>;

pub fn build(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub fn xml(body: impl Into<Bytes>) -> Resp {
    build(StatusCode::OK, "text/xml; charset=utf-8", body)
}

pub fn text(status: StatusCode, body: impl Into<String>) -> Resp {
    let mut body = body.into();
    body.push('\n');
    build(status, "text/plain; charset=utf-8", body)
}

pub fn json(status: StatusCode, value: &impl serde::Serialize) -> Resp {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    build(status, "application/json", body)
}

pub fn json_error(status: StatusCode, message: &str) -> Resp {
    json(status, &serde_json::json!({ "error": message }))
}

pub fn empty(status: StatusCode) -> Resp {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    r
}
