//! TLS with rustls on the ring provider: certificates from PEM files (PKCS#8, PKCS#1 or SEC1
//! keys), swapped in when the files change or on SIGHUP (`App::reload`, which may also name
//! new files), without touching open connections.
//! ALPN offers h2 and http/1.1.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Reads a certificate chain and its key.
pub fn load(cert: &Path, key: &Path) -> Result<CertifiedKey, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in the file", cert.display()));
    }
    let key_der =
        PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key_der)
        .map_err(|e| format!("{}: {e}", key.display()))?;
    let certified = CertifiedKey::new(certs, signer);
    certified.keys_match().map_err(|e| {
        format!(
            "{} does not belong to {}: {e}",
            key.display(),
            cert.display()
        )
    })?;
    Ok(certified)
}

/// Hands every new handshake the current certificate.
#[derive(Debug)]
pub struct Certificates {
    current: RwLock<Arc<CertifiedKey>>,
    /// The certificate and key files the current pair came from (polled for changes).
    files: RwLock<(PathBuf, PathBuf)>,
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

impl Certificates {
    pub fn new(first: CertifiedKey, cert: PathBuf, key: PathBuf) -> Arc<Self> {
        Arc::new(Self {
            current: RwLock::new(Arc::new(first)),
            files: RwLock::new((cert, key)),
        })
    }

    /// Serves `next` (read from `cert` and `key`) to every later handshake.
    pub fn replace(&self, next: CertifiedKey, cert: PathBuf, key: PathBuf) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
        *self.files.write().unwrap_or_else(|e| e.into_inner()) = (cert, key);
    }

    pub fn files(&self) -> (PathBuf, PathBuf) {
        self.files.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The rustls server configuration around `certs`.
pub fn server_config(certs: Arc<Certificates>) -> Result<Arc<ServerConfig>, String> {
    let mut cfg =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_cert_resolver(certs);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

fn stamp(p: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(p).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Reloads the certificate when its files change (polled every `poll`). A broken pair is
/// logged and the current certificate stays. Runs until aborted.
pub async fn watch(certs: Arc<Certificates>, poll: Duration) {
    let files = certs.files();
    let mut last = (files.clone(), stamp(&files.0), stamp(&files.1));
    let mut tick = tokio::time::interval(poll);
    loop {
        tick.tick().await;
        let (cert, key) = certs.files();
        let now = ((cert.clone(), key.clone()), stamp(&cert), stamp(&key));
        if now == last {
            continue;
        }
        last = now;
        let (c, k) = (cert.clone(), key.clone());
        match tokio::task::spawn_blocking(move || load(&c, &k)).await {
            Ok(Ok(next)) => {
                certs.replace(next, cert.clone(), key);
                tracing::info!(cert = %cert.display(), "TLS certificate reloaded");
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "TLS certificate not reloaded; keeping the current one")
            }
            Err(e) => tracing::error!(error = %e, "TLS reload task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/tls")
            .join(name)
    }

    #[test]
    fn loads_pkcs8_pkcs1_and_sec1_keys_and_refuses_mismatches() {
        for (cert, key) in [
            ("cert-a.pem", "key-a.pem"),
            ("cert-rsa.pem", "key-rsa-pkcs1.pem"),
            ("cert-b.pem", "key-b-sec1.pem"),
        ] {
            load(&fixture(cert), &fixture(key)).unwrap_or_else(|e| panic!("{key}: {e}"));
        }
        let err = load(&fixture("cert-a.pem"), &fixture("key-b.pem")).unwrap_err();
        assert!(err.contains("does not belong"), "{err}");
        assert!(load(&fixture("key-a.pem"), &fixture("key-a.pem")).is_err());
        assert!(load(&fixture("nope.pem"), &fixture("key-a.pem")).is_err());
    }
}
