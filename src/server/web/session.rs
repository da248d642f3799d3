//! Browser sessions for the console and the user page: a random token in an `HttpOnly`,
//! `SameSite=Strict` cookie (`Secure` under TLS), kept in memory by its SHA-256 so the map
//! never holds a usable token; idle and absolute expiry; one CSRF token per session.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderValue, header};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Sessions over this are not kept: the oldest goes first.
const MAX_SESSIONS: usize = 10_000;

/// Who a session belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The admin account's name, or the user's extension.
    pub who: String,
    /// Sent back with every state-changing form.
    pub csrf: String,
    started: Instant,
    seen: Instant,
}

/// One kind of session (console or user page), with its cookie.
pub struct Sessions {
    cookie: &'static str,
    path: &'static str,
    idle: Duration,
    max: Duration,
    map: Mutex<HashMap<[u8; 32], Session>>,
}

fn random_token() -> String {
    let mut buf = [0u8; 32];
    // The OS random source failing is not something a web form can recover from.
    getrandom::fill(&mut buf).expect("the OS random source works");
    URL_SAFE_NO_PAD.encode(buf)
}

fn key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Sessions {
    pub fn new(cookie: &'static str, path: &'static str, idle: Duration, max: Duration) -> Self {
        Self {
            cookie,
            path,
            idle,
            max,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn live(&self, s: &Session, now: Instant) -> bool {
        now.duration_since(s.seen) < self.idle && now.duration_since(s.started) < self.max
    }

    /// Starts a session for `who`; returns its token (for the cookie only).
    pub fn start(&self, who: &str, now: Instant) -> (String, Session) {
        let token = random_token();
        let session = Session {
            who: who.to_string(),
            csrf: random_token(),
            started: now,
            seen: now,
        };
        let mut map = self.lock();
        if map.len() >= MAX_SESSIONS {
            map.retain(|_, s| self.live(s, now));
        }
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map.iter().min_by_key(|(_, s)| s.seen).map(|(k, _)| *k)
        {
            map.remove(&oldest);
        }
        map.insert(key(&token), session.clone());
        (token, session)
    }

    /// The live session the request's cookie names; touching it restarts the idle clock.
    pub fn get(&self, headers: &HeaderMap, now: Instant) -> Option<Session> {
        let token = self.token(headers)?;
        let k = key(token);
        let mut map = self.lock();
        let s = map.get_mut(&k)?;
        if !self.live(s, now) {
            map.remove(&k);
            return None;
        }
        s.seen = now;
        Some(s.clone())
    }

    /// Ends every session of `who` (a user whose PIN changed, or who was disabled or deleted:
    /// a session must not outlive the credential that opened it).
    pub fn end_all_of(&self, who: &str) -> usize {
        let mut map = self.lock();
        let before = map.len();
        map.retain(|_, s| s.who != who);
        before - map.len()
    }

    /// Ends the session the request's cookie names.
    pub fn end(&self, headers: &HeaderMap) {
        if let Some(token) = self.token(headers) {
            self.lock().remove(&key(token));
        }
    }

    fn token<'a>(&self, headers: &'a HeaderMap) -> Option<&'a str> {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == self.cookie)
            .map(|(_, value)| value)
    }

    /// The `Set-Cookie` value that carries `token`.
    pub fn cookie(&self, token: &str, secure: bool) -> HeaderValue {
        let secure = if secure { "; Secure" } else { "" };
        let v = format!(
            "{}={token}; Path={}; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
            self.cookie,
            self.path,
            self.max.as_secs()
        );
        HeaderValue::from_str(&v).expect("cookie characters are URL-safe base64")
    }

    /// The `Set-Cookie` value that removes the cookie.
    pub fn clear_cookie(&self, secure: bool) -> HeaderValue {
        let secure = if secure { "; Secure" } else { "" };
        let v = format!(
            "{}=; Path={}; HttpOnly; SameSite=Strict; Max-Age=0{secure}",
            self.cookie, self.path
        );
        HeaderValue::from_str(&v).expect("static cookie text")
    }
}

/// Whether a form's CSRF token is the session's (constant time).
pub fn csrf_ok(session: &Session, sent: Option<&str>) -> bool {
    sent.is_some_and(|t| bool::from(t.as_bytes().ct_eq(session.csrf.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(cookie: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_str(cookie).unwrap());
        h
    }

    #[test]
    fn a_session_lives_until_idle_or_absolute_expiry() {
        let s = Sessions::new(
            "t",
            "/admin",
            Duration::from_secs(60),
            Duration::from_secs(150),
        );
        let t0 = Instant::now();
        let (token, started) = s.start("alice", t0);
        let h = headers(&format!("other=1; t={token}"));
        assert_eq!(
            s.get(&h, t0 + Duration::from_secs(50)).unwrap().who,
            "alice"
        );
        // Touched at 50 s, so alive at 100 s; at 149 s still; past 150 s never.
        assert!(s.get(&h, t0 + Duration::from_secs(100)).is_some());
        assert!(s.get(&h, t0 + Duration::from_secs(149)).is_some());
        assert!(s.get(&h, t0 + Duration::from_secs(151)).is_none());
        // Idle expiry.
        let (token, _) = s.start("bob", t0);
        let h = headers(&format!("t={token}"));
        assert!(s.get(&h, t0 + Duration::from_secs(61)).is_none());
        // Another token, a forged one, or none: nothing.
        assert!(s.get(&headers("t=forged"), t0).is_none());
        assert!(s.get(&HeaderMap::new(), t0).is_none());
        assert!(csrf_ok(&started, Some(&started.csrf)));
        assert!(!csrf_ok(&started, Some("x")));
        assert!(!csrf_ok(&started, None));
    }

    #[test]
    fn ending_a_session_forgets_it_and_cookies_carry_the_flags() {
        let s = Sessions::new(
            "t",
            "/me",
            Duration::from_secs(60),
            Duration::from_secs(600),
        );
        let now = Instant::now();
        let (token, _) = s.start("1001", now);
        let h = headers(&format!("t={token}"));
        s.end(&h);
        assert!(s.get(&h, now).is_none());
        let c = s.cookie(&token, true);
        let c = c.to_str().unwrap();
        for flag in [
            "HttpOnly",
            "SameSite=Strict",
            "Secure",
            "Path=/me",
            "Max-Age=600",
        ] {
            assert!(c.contains(flag), "{c}");
        }
        assert!(!s.cookie(&token, false).to_str().unwrap().contains("Secure"));
        assert!(
            s.clear_cookie(false)
                .to_str()
                .unwrap()
                .contains("Max-Age=0")
        );
    }
}
