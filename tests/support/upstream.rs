//! A programmable PBX upstream on 127.0.0.1:0 speaking hotdesk's contract: recorded
//! replies, latency, status codes, connection resets, malformed and oversized bodies. It
//! counts every request and keeps the write-back requests it received.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    /// Answer this status with an empty body.
    Status(u16),
    /// Close the connection without answering.
    Reset,
    Malformed,
    Oversized,
}

#[derive(Default)]
struct State {
    users: HashMap<String, serde_json::Value>,
    fault: Option<Fault>,
    latency: Duration,
    lookups: usize,
    /// (method, path, body) of every write-back the fake accepted (2xx).
    writes: Vec<(String, String, String)>,
    /// Every write-back request, accepted or not.
    write_attempts: usize,
    /// Status for write-backs (200 when unset).
    write_status: Option<u16>,
    auth_seen: Vec<String>,
}

#[derive(Clone)]
pub struct Upstream {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    scheme: &'static str,
}

impl Upstream {
    pub async fn start() -> Upstream {
        Self::start_with(None).await
    }

    /// The same upstream over HTTPS with this certificate and key (PEM files).
    pub async fn start_tls(cert: &std::path::Path, key: &std::path::Path) -> Upstream {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs = CertificateDer::pem_file_iter(cert)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(key).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        Self::start_with(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))).await
    }

    async fn start_with(tls: Option<tokio_rustls::TlsAcceptor>) -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let scheme = if tls.is_some() { "https" } else { "http" };
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let state = shared.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(state.clone(), req));
                    match tls {
                        None => {
                            let _ = http1::Builder::new()
                                .serve_connection(TokioIo::new(tcp), svc)
                                .await;
                        }
                        Some(acceptor) => {
                            // A client that does not trust the certificate gives up here.
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                let _ = http1::Builder::new()
                                    .serve_connection(TokioIo::new(stream), svc)
                                    .await;
                            }
                        }
                    }
                });
            }
        });
        Upstream {
            addr,
            state,
            scheme,
        }
    }

    pub fn url(&self) -> String {
        format!("{}://{}/hotdesk/v1", self.scheme, self.addr)
    }

    pub fn user(&self, ext: &str, name: &str, pin: Option<&str>) {
        let mut v = serde_json::json!({
            "extension": ext, "name": name, "sip_password": format!("sip-{ext}"), "enabled": true
        });
        if let Some(pin) = pin {
            v["voicemail_pin"] = pin.into();
        }
        self.state.lock().unwrap().users.insert(ext.into(), v);
    }

    pub fn fault(&self, f: Fault) {
        self.state.lock().unwrap().fault = Some(f);
    }

    pub fn latency(&self, d: Duration) {
        self.state.lock().unwrap().latency = d;
    }

    pub fn write_status(&self, s: Option<u16>) {
        self.state.lock().unwrap().write_status = s;
    }

    pub fn lookups(&self) -> usize {
        self.state.lock().unwrap().lookups
    }

    pub fn writes(&self) -> Vec<(String, String, String)> {
        self.state.lock().unwrap().writes.clone()
    }

    pub fn write_attempts(&self) -> usize {
        self.state.lock().unwrap().write_attempts
    }

    pub fn auth_seen(&self) -> Vec<String> {
        self.state.lock().unwrap().auth_seen.clone()
    }
}

async fn handle(
    state: Arc<Mutex<State>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    if let Some(auth) = req.headers().get("authorization") {
        state
            .lock()
            .unwrap()
            .auth_seen
            .push(auth.to_str().unwrap_or("").to_owned());
    }
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let (fault, latency) = {
        let mut s = state.lock().unwrap();
        if method == "GET" {
            s.lookups += 1;
        }
        (s.fault.unwrap_or(Fault::None), s.latency)
    };
    tokio::time::sleep(latency).await;
    let reply = |status: u16, body: Vec<u8>| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = StatusCode::from_u16(status).unwrap();
        r.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        Ok(r)
    };
    match fault {
        Fault::Status(code) => return reply(code, Vec::new()),
        Fault::Reset => {
            // Panicking the connection task drops the socket without an answer.
            panic!("reset");
        }
        Fault::Malformed => return reply(200, b"{\"extension\": ".to_vec()),
        Fault::Oversized => return reply(200, vec![b' '; 2 << 20]),
        Fault::None => {}
    }
    if method != "GET" {
        let mut s = state.lock().unwrap();
        s.write_attempts += 1;
        let status = s.write_status.unwrap_or(200);
        if (200..300).contains(&status) {
            s.writes
                .push((method, path, String::from_utf8_lossy(&body).into_owned()));
        }
        return reply(status, b"{}".to_vec());
    }
    let ext = path.strip_prefix("/hotdesk/v1/extensions/").unwrap_or("");
    let ext = percent_decode(ext);
    let user = state.lock().unwrap().users.get(&ext).cloned();
    match user {
        Some(u) => reply(200, serde_json::to_vec(&u).unwrap()),
        None => reply(404, b"{\"title\":\"no such extension\"}".to_vec()),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
