//! Response builders: every answer has a Content-Type and a Content-Length (a full body).

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

pub type Resp = Response<Full<Bytes>>;

pub fn build(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, header_value(content_type));
    h.insert(header::CACHE_CONTROL, NO_STORE);
    r
}

// Made at compile time: `from_static` at run time checks every byte, on every answer.
const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");
const XML: &str = "text/xml; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";
const CONF: &str = "application/xml; charset=utf-8";

fn header_value(content_type: &'static str) -> HeaderValue {
    const XML_VALUE: HeaderValue = HeaderValue::from_static(XML);
    const TEXT_VALUE: HeaderValue = HeaderValue::from_static(TEXT);
    const CONF_VALUE: HeaderValue = HeaderValue::from_static(CONF);
    match content_type {
        XML => XML_VALUE,
        TEXT => TEXT_VALUE,
        CONF => CONF_VALUE,
        other => HeaderValue::from_static(other),
    }
}

pub fn xml(body: impl Into<Bytes>) -> Resp {
    build(StatusCode::OK, XML, body)
}

pub fn text(status: StatusCode, body: impl Into<String>) -> Resp {
    let mut body = body.into();
    body.push('\n');
    build(status, TEXT, body)
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
