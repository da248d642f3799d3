//! Who may fetch a phone's configuration. A logged-in phone's file carries SIP secrets, so it
//! goes only to the address the login came from (and, where the User-Agent names a MAC, only
//! to that phone); every source is rate-limited, so a sweep of MACs crawls; refusals are
//! audited and logged at most once a minute per source.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http::{HeaderValue, StatusCode, header};

use super::access::RefusalLog;
use super::respond::{self, Resp};
use crate::App;
use crate::auth::lockouts::source_key;
use crate::phone::Mac;
use crate::store::{AuditEvent, EventKind, Login};

/// Sources tracked before idle ones are swept.
const MAX_TRACKED: usize = 10_000;

/// The tracked sources are counted once per this many checks: counting locks every shard
/// of the limiter's map, which cost more than the check itself on each request. At most
/// this many sources are added past [`MAX_TRACKED`] before a sweep.
const COUNT_EVERY: u32 = 256;

pub struct FetchGuard {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    /// Checks since the tracked sources were last counted.
    checks: AtomicU32,
    refusals: RefusalLog,
}

impl FetchGuard {
    pub fn new(config: &crate::config::ProvisionConfig) -> Self {
        let per_second = NonZeroU32::new(config.rate_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(config.rate_burst).unwrap_or(NonZeroU32::MIN);
        Self {
            limiter: RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)),
            checks: AtomicU32::new(0),
            refusals: RefusalLog::new(),
        }
    }

    /// `Err(429)` when `client` (IPv6: its /64) is over its provisioning rate.
    pub fn rate(&self, client: IpAddr) -> Result<(), Box<Resp>> {
        let counted = self
            .checks
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(COUNT_EVERY);
        if counted && self.limiter.len() > MAX_TRACKED {
            self.limiter.retain_recent();
        }
        match self.limiter.check_key(&source_key(client)) {
            Ok(()) => Ok(()),
            Err(_) => {
                let mut resp = respond::text(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many provisioning requests from this address; try again shortly",
                );
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                Err(Box::new(resp))
            }
        }
    }

    /// Answers 403, audits (`provision-refused`) and logs, at most once a minute per source.
    ///
    /// Boxed: the refusal's audit write is rare, and unboxed its state would make every
    /// provisioning request's future (moved whole per request) as large as itself.
    pub fn refuse<'a>(
        &'a self,
        app: &'a App,
        client: IpAddr,
        mac: Mac,
        why: &'static str,
    ) -> futures_util::future::BoxFuture<'a, Resp> {
        Box::pin(self.refuse_inner(app, client, mac, why))
    }

    async fn refuse_inner(&self, app: &App, client: IpAddr, mac: Mac, why: &'static str) -> Resp {
        if self.refusals.should_log(client) {
            tracing::warn!(%client, %mac, why, "provisioning refused (logged once a minute per source)");
            let mut event = AuditEvent::new(EventKind::ProvisionRefused, why);
            event.mac = Some(mac);
            event.source_ip = Some(client.to_canonical().to_string());
            if let Err(e) = app.flow.book().note(vec![event]).await {
                tracing::error!(error = %e, "provisioning refusal not recorded");
            }
        }
        respond::text(StatusCode::FORBIDDEN, why)
    }
}

/// With `[provision] auth = "digest"`: `Err(401 + challenge)` unless the request carries a valid
/// Digest response for `mac`'s own credentials (a phone without credentials gets nothing).
pub fn check_digest(
    app: &App,
    mac: Mac,
    method: &http::Method,
    uri: &http::Uri,
    headers: &http::HeaderMap,
) -> Result<(), Box<Resp>> {
    if app.config.provision.auth != crate::config::ProvisionAuth::Digest {
        return Ok(());
    }
    let now = app.clock.now().unix_timestamp().max(0) as u64;
    let target = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let outcome = match app.credentials.get(&mac) {
        Some(c) => app.digest.verify(
            header,
            method.as_str(),
            target,
            &c.username,
            c.password.expose(),
            now,
        ),
        None => Err(crate::server::digest::Denied::Wrong),
    };
    match outcome {
        Ok(()) => Ok(()),
        Err(denied) => {
            if denied != crate::server::digest::Denied::Missing {
                tracing::info!(%mac, ?denied, "provisioning: digest authentication failed");
            }
            let stale = denied == crate::server::digest::Denied::Stale;
            let mut resp = respond::text(
                StatusCode::UNAUTHORIZED,
                "this phone's provisioning credentials are needed",
            );
            if let Ok(v) = HeaderValue::from_str(&app.digest.challenge(now, stale)) {
                resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
            Err(Box::new(resp))
        }
    }
}

/// Whether `client` may receive the secrets of `logins` (one phone's): only from the address
/// every one of them logged in from.
pub fn may_receive(logins: &[Arc<Login>], client: IpAddr) -> bool {
    // The record keeps the address as text; it is parsed rather than the client's printed,
    // which cost an allocation and the formatter on every provisioning fetch.
    let client = client.to_canonical();
    logins.iter().all(|l| {
        l.source_ip
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.to_canonical() == client)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(source_ip: &str) -> Arc<Login> {
        Arc::new(Login {
            mac: "805ec0aabbcc".parse().unwrap(),
            identity: 0,
            extension: "1001".into(),
            name: "Ada".into(),
            vendor: "yealink".into(),
            model: "T46S".into(),
            network: "internal".into(),
            template: None,
            since: time::OffsetDateTime::UNIX_EPOCH,
            source_ip: source_ip.into(),
            credential: "voicemail-pin".into(),
            applied_at: None,
        })
    }

    #[test]
    fn a_sweep_of_sources_stays_bounded() {
        // A source's state is spent a microsecond after its check at this rate, so the
        // sweeps (once per COUNT_EVERY checks past MAX_TRACKED) drop all but the newest.
        let guard = FetchGuard::new(&crate::config::ProvisionConfig {
            rate_per_second: 1_000_000,
            rate_burst: 1,
            ..Default::default()
        });
        let sources = 5 * MAX_TRACKED as u32 / 2;
        let mut most = 0;
        for n in 0..sources {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n));
            assert!(guard.rate(ip).is_ok(), "a first request from {ip}");
            most = most.max(guard.limiter.len());
        }
        assert!(
            most <= MAX_TRACKED + COUNT_EVERY as usize,
            "{most} sources tracked at once"
        );
        assert!(guard.limiter.len() < MAX_TRACKED, "never swept");
    }

    #[test]
    fn secrets_go_only_to_the_address_every_login_came_from() {
        let v4: IpAddr = "10.0.0.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.0.0.7".parse().unwrap();
        assert!(may_receive(&[from("10.0.0.7")], v4));
        assert!(may_receive(&[from("10.0.0.7")], mapped));
        assert!(!may_receive(&[from("10.0.0.8")], v4));
        assert!(!may_receive(&[from("10.0.0.7"), from("10.0.0.8")], v4));
        assert!(!may_receive(&[from("not an address")], v4));
        let v6: IpAddr = "2001:db8::7".parse().unwrap();
        assert!(may_receive(&[from("2001:db8::7")], v6));
        assert!(!may_receive(&[from("2001:db8::8")], v6));
        // No login: the base profile, which holds no user's secret.
        assert!(may_receive(&[], v4));
    }
}
