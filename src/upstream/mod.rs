//! Talking to the PBX side: one HTTP client with timeouts, a reply size limit, one retry for
//! idempotent requests and a circuit breaker. The directory backend and the outbox use it.

mod breaker;
mod outbox;
mod token;

pub use breaker::Breaker;
pub use outbox::Outbox;
pub use token::{TokenSlot, sensitive_header};

use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::{UpstreamAuth, UpstreamHttp};

#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream circuit breaker is open")]
    BreakerOpen,
    #[error("upstream did not answer within {0} ms")]
    Timeout(u128),
    #[error("upstream request failed: {0}")]
    Transport(String),
    #[error("upstream reply over {0} bytes")]
    TooLarge(usize),
    #[error("upstream answered {0}")]
    Status(u16),
    #[error("upstream reply not understood: {0}")]
    Malformed(String),
}

/// One request to send.
pub struct Outgoing<'a> {
    pub method: Method,
    /// Appended to the configured base URL.
    pub path: &'a str,
    /// Body and its content type.
    pub body: Option<(Vec<u8>, &'static str)>,
    /// Overrides the configured credentials (e.g. an OAuth2 access token).
    pub auth: Option<HeaderValue>,
    /// More headers (e.g. Wazo's `X-Auth-Token`); mark secret values sensitive.
    pub headers: Vec<(&'static str, HeaderValue)>,
    pub key: Option<&'a str>,
    /// Safe to send twice (GET, or a read-only query).
    pub retry: bool,
    /// Hand a 5xx back as a reply without counting it against the breaker: the caller
    /// retries with a new token first and counts a failure itself ([`Client::count_failure`]).
    pub defer_5xx: bool,
}

/// A complete reply.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Bytes,
}

pub struct Client {
    http: HyperClient<HttpsConnector<HttpConnector>, Full<Bytes>>,
    base: String,
    auth: Option<HeaderValue>,
    request_timeout: Duration,
    max_reply: usize,
    breaker: Breaker,
}

/// The public web roots, plus the PEM certificates in `ca_file` (an on-site PBX's own CA);
/// or, with `insecure`, no certificate check at all (only handshake signatures).
fn tls_config(
    ca_file: Option<&std::path::Path>,
    insecure: bool,
) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!(
                "ca_file {} holds no PEM certificate",
                path.display()
            ));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    Ok(if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(std::sync::Arc::new(NoCertificateCheck(provider)))
            .with_no_client_auth()
    } else {
        builder.with_root_certificates(roots).with_no_client_auth()
    })
}

/// `insecure_skip_verify = true`: any certificate is taken; check-config and every start say so.
#[derive(Debug)]
struct NoCertificateCheck(std::sync::Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoCertificateCheck {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// An error and its causes in one line ("client error (Connect): … Connection refused").
fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

impl Client {
    pub fn new(c: &UpstreamHttp) -> Result<Self, String> {
        if c.insecure_skip_verify {
            tracing::warn!(url = %c.url, "TLS CERTIFICATE VERIFICATION IS OFF (insecure_skip_verify): anyone between hotdesk and this upstream can impersonate it and read PINs and SIP secrets");
        }
        let mut connector = HttpConnector::new();
        connector.enforce_http(false);
        connector.set_connect_timeout(Some(c.connect_timeout.0));
        connector.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config(c.ca_file.as_deref(), c.insecure_skip_verify)?)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let http = HyperClient::builder(TokioExecutor::new())
            // Without a pool timer the idle timeout silently does nothing (rust-notes B3);
            // keep it below common upstream keep-alive timeouts.
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(20))
            .build(https);
        let auth = match c.auth {
            UpstreamAuth::None => None,
            UpstreamAuth::Bearer => {
                let token = c.token.as_ref().ok_or("bearer auth needs a token")?;
                Some(format!("Bearer {}", token.expose()))
            }
            UpstreamAuth::Basic => {
                let user = c.username.as_deref().ok_or("basic auth needs a username")?;
                let pass = c.password.as_ref().ok_or("basic auth needs a password")?;
                let raw = format!("{user}:{}", pass.expose());
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(raw)
                ))
            }
        };
        let auth = auth
            .map(|a| {
                let mut v = HeaderValue::from_str(&a)
                    .map_err(|_| "credentials hold characters not allowed in a header")?;
                v.set_sensitive(true);
                Ok::<_, String>(v)
            })
            .transpose()?;
        Ok(Self {
            http,
            base: c.url.trim_end_matches('/').to_owned(),
            auth,
            request_timeout: c.request_timeout.0,
            max_reply: c.max_reply_bytes,
            breaker: Breaker::new(c.breaker_failures, c.breaker_cooldown.0),
        })
    }

    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// Sends one request to `base + path`. GETs are retried once after a transport error.
    /// 5xx, time-outs and transport errors count against the breaker.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        json: Option<Vec<u8>>,
    ) -> Result<Reply, UpstreamError> {
        self.send_with_key(method, path, json, None).await
    }

    /// As [`Client::send`], with an `Idempotency-Key` header when `key` is given.
    pub async fn send_with_key(
        &self,
        method: Method,
        path: &str,
        json: Option<Vec<u8>>,
        key: Option<&str>,
    ) -> Result<Reply, UpstreamError> {
        let retry = method == Method::GET;
        let body = json.map(|b| (b, "application/json"));
        self.execute(Outgoing {
            method,
            path,
            body,
            auth: None,
            headers: Vec::new(),
            key,
            retry,
            defer_5xx: false,
        })
        .await
    }

    /// Counts one failure the caller detected (see [`Outgoing::defer_5xx`]).
    pub fn count_failure(&self, what: &dyn std::fmt::Display) {
        if self.breaker.failure() {
            tracing::warn!(error = %what, "upstream circuit breaker opened");
        }
    }

    /// Sends `out`; retried once after a transport error when `out.retry`.
    /// 5xx, time-outs and transport errors count against the breaker.
    pub async fn execute(&self, out: Outgoing<'_>) -> Result<Reply, UpstreamError> {
        if !self.breaker.allow() {
            return Err(UpstreamError::BreakerOpen);
        }
        let attempts = if out.retry { 2 } else { 1 };
        let mut last = UpstreamError::Transport("not sent".into());
        for attempt in 0..attempts {
            match self.once(&out).await {
                Ok(reply) if reply.status.is_server_error() && out.defer_5xx => return Ok(reply),
                Ok(reply) if reply.status.is_server_error() => {
                    last = UpstreamError::Status(reply.status.as_u16());
                    break;
                }
                Ok(reply) => {
                    self.breaker.success();
                    return Ok(reply);
                }
                Err(e @ (UpstreamError::Transport(_) | UpstreamError::Timeout(_)))
                    if attempt + 1 < attempts =>
                {
                    tracing::debug!(error = %e, "upstream request failed; retrying once");
                    last = e;
                }
                Err(e) => {
                    last = e;
                    break;
                }
            }
        }
        if self.breaker.failure() {
            tracing::warn!(error = %last, "upstream circuit breaker opened");
        }
        Err(last)
    }

    async fn once(&self, out: &Outgoing<'_>) -> Result<Reply, UpstreamError> {
        let mut req = Request::builder()
            .method(out.method.clone())
            .uri(format!("{}{}", self.base, out.path))
            .header(header::ACCEPT, "application/json")
            .header(
                header::USER_AGENT,
                concat!("hotdesk/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(auth) = out.auth.as_ref().or(self.auth.as_ref()) {
            req = req.header(header::AUTHORIZATION, auth.clone());
        }
        if let Some(key) = out.key {
            req = req.header("idempotency-key", key);
        }
        for (name, value) in &out.headers {
            req = req.header(*name, value.clone());
        }
        let body = match &out.body {
            Some((b, content_type)) => {
                req = req.header(header::CONTENT_TYPE, *content_type);
                Full::new(Bytes::from(b.clone()))
            }
            None => Full::new(Bytes::new()),
        };
        let req = req
            .body(body)
            .map_err(|e| UpstreamError::Transport(e.to_string()))?;
        let max = self.max_reply;
        let exchange = async {
            let resp = self
                .http
                .request(req)
                .await
                .map_err(|e| UpstreamError::Transport(with_causes(&e)))?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), max)
                .collect()
                .await
                .map_err(|e| {
                    if e.downcast_ref::<http_body_util::LengthLimitError>()
                        .is_some()
                    {
                        UpstreamError::TooLarge(max)
                    } else {
                        UpstreamError::Transport(e.to_string())
                    }
                })?
                .to_bytes();
            Ok(Reply { status, body })
        };
        tokio::time::timeout(self.request_timeout, exchange)
            .await
            .map_err(|_| UpstreamError::Timeout(self.request_timeout.as_millis()))?
    }
}
