//! HTTP Digest authentication (RFC 7616 with `algorithm=MD5`, `qop=auth`, the form desk phones
//! implement) for `[provision] auth = "digest"`: each phone proves it holds its own
//! credentials before it gets its configuration.
//!
//! Nonces are stateless: a timestamp and an HMAC of it under a key made at start-up, valid for
//! [`NONCE_TTL`]; an older one is answered with `stale=true` so the phone retries at once.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac as _};
use md5::{Digest, Md5};
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub const NONCE_TTL: Duration = Duration::from_secs(300);

/// Issues and checks nonces; one per process.
pub struct DigestAuth {
    key: [u8; 32],
    pub realm: String,
}

/// Why a request did not authenticate; every case gets a fresh challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No `Authorization: Digest` header, or not one that parses.
    Missing,
    /// A nonce that was ours but is too old: the phone retries with the new one.
    Stale,
    /// Wrong user, realm, URI, nonce or response.
    Wrong,
}

fn md5_hex(parts: &[&str]) -> String {
    let mut h = Md5::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update(b":");
        }
        h.update(p.as_bytes());
    }
    crate::hex::lower(&h.finalize())
}

/// The parameters of an `Authorization: Digest ...` header (quoted or token values).
pub fn parse(header: &str) -> Option<HashMap<String, String>> {
    let rest = header.trim_start();
    let rest = rest
        .get(..6)
        .filter(|s| s.eq_ignore_ascii_case("digest"))
        .map(|_| &rest[6..])?;
    let mut out = HashMap::new();
    let mut s = rest.trim_start();
    while !s.is_empty() {
        let eq = s.find('=')?;
        let key = s[..eq].trim().to_ascii_lowercase();
        s = s[eq + 1..].trim_start();
        let value;
        if let Some(q) = s.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = q.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => v.push(chars.next()?.1),
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => v.push(c),
                }
            }
            value = v;
            s = &q[end?..];
        } else {
            let end = s.find(',').unwrap_or(s.len());
            value = s[..end].trim().to_owned();
            s = &s[end..];
        }
        if key.is_empty() || out.insert(key, value).is_some() {
            return None; // a repeated parameter is not a header a phone sends
        }
        s = s.trim_start().strip_prefix(',').unwrap_or(s).trim_start();
    }
    Some(out)
}

impl DigestAuth {
    pub fn new(realm: &str) -> Self {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).expect("the OS random source");
        Self {
            key,
            realm: realm.to_owned(),
        }
    }

    fn tag(&self, ts: u64) -> [u8; 16] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(&ts.to_be_bytes());
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        out
    }

    pub fn nonce(&self, now_unix: u64) -> String {
        let mut raw = now_unix.to_be_bytes().to_vec();
        raw.extend_from_slice(&self.tag(now_unix));
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// The `WWW-Authenticate` value for a 401.
    pub fn challenge(&self, now_unix: u64, stale: bool) -> String {
        format!(
            "Digest realm=\"{}\", qop=\"auth\", algorithm=MD5, nonce=\"{}\"{}",
            self.realm,
            self.nonce(now_unix),
            if stale { ", stale=true" } else { "" }
        )
    }

    fn check_nonce(&self, nonce: &str, now_unix: u64) -> Result<(), Denied> {
        let raw = URL_SAFE_NO_PAD.decode(nonce).map_err(|_| Denied::Wrong)?;
        if raw.len() != 24 {
            return Err(Denied::Wrong);
        }
        let ts = u64::from_be_bytes(raw[..8].try_into().expect("8 bytes"));
        if !bool::from(self.tag(ts).ct_eq(&raw[8..])) {
            return Err(Denied::Wrong);
        }
        if now_unix.saturating_sub(ts) > NONCE_TTL.as_secs() || ts > now_unix + 60 {
            return Err(Denied::Stale);
        }
        Ok(())
    }

    /// Checks `header` for `method` on `uri` (the request target as sent) against the one
    /// credential this phone has.
    pub fn verify(
        &self,
        header: Option<&str>,
        method: &str,
        uri: &str,
        username: &str,
        password: &str,
        now_unix: u64,
    ) -> Result<(), Denied> {
        let p = header.and_then(parse).ok_or(Denied::Missing)?;
        let get = |k: &str| p.get(k).map(String::as_str).ok_or(Denied::Wrong);
        let (user, realm, nonce, response) = (
            get("username")?,
            get("realm")?,
            get("nonce")?,
            get("response")?,
        );
        if let Some(alg) = p.get("algorithm")
            && !alg.eq_ignore_ascii_case("MD5")
        {
            return Err(Denied::Wrong);
        }
        // The URI the phone hashed must be the one it asked for, or a response for one file
        // would open another.
        if get("uri")? != uri || realm != self.realm {
            return Err(Denied::Wrong);
        }
        self.check_nonce(nonce, now_unix)?;
        let ha1 = md5_hex(&[username, &self.realm, password]);
        let ha2 = md5_hex(&[method, uri]);
        let expected = match p.get("qop").map(String::as_str) {
            Some("auth") => md5_hex(&[&ha1, nonce, get("nc")?, get("cnonce")?, "auth", &ha2]),
            // RFC 2069 form, still sent by old firmware.
            None => md5_hex(&[&ha1, nonce, &ha2]),
            Some(_) => return Err(Denied::Wrong),
        };
        let user_ok: bool = crate::secret::Secret::new(username).matches(user);
        let response_ok: bool = expected.as_bytes().ct_eq(response.as_bytes()).into();
        if user_ok && response_ok {
            Ok(())
        } else {
            Err(Denied::Wrong)
        }
    }
}

/// What a client computes for a challenge (used by tests, and as the reference of the format).
pub fn client_response(
    username: &str,
    realm: &str,
    password: &str,
    method: &str,
    uri: &str,
    nonce: &str,
    cnonce: &str,
) -> String {
    let ha1 = md5_hex(&[username, realm, password]);
    let ha2 = md5_hex(&[method, uri]);
    let response = md5_hex(&[&ha1, nonce, "00000001", cnonce, "auth", &ha2]);
    format!(
        "Digest username=\"{username}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"{cnonce}\", response=\"{response}\""
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_2617_example_computes_as_published() {
        // RFC 2617 section 3.5: Mufasa / "Circle Of Life" / testrealm@host.com.
        let ha1 = md5_hex(&["Mufasa", "testrealm@host.com", "Circle Of Life"]);
        let ha2 = md5_hex(&["GET", "/dir/index.html"]);
        let r = md5_hex(&[
            &ha1,
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            "00000001",
            "0a4f113b",
            "auth",
            &ha2,
        ]);
        assert_eq!(r, "6629fae49393a05397450978507c4ef1");
    }

    #[test]
    fn verifies_a_phone_and_refuses_everything_else() {
        let d = DigestAuth::new("hotdesk");
        let now = 1_800_000_000;
        let nonce = d.nonce(now);
        let uri = "/provision/805ec02f3c2e.cfg";
        let good = client_response("hd-805ec02f3c2e", "hotdesk", "pw", "GET", uri, &nonce, "c1");
        let v = |h: &str, uri: &str, at: u64| {
            d.verify(Some(h), "GET", uri, "hd-805ec02f3c2e", "pw", at)
        };
        assert_eq!(v(&good, uri, now), Ok(()));
        assert_eq!(
            v(&good, "/provision/000000000000.cfg", now),
            Err(Denied::Wrong)
        );
        assert_eq!(v(&good, uri, now + 301), Err(Denied::Stale));
        let wrong = client_response("hd-805ec02f3c2e", "hotdesk", "px", "GET", uri, &nonce, "c1");
        assert_eq!(v(&wrong, uri, now), Err(Denied::Wrong));
        let other_user =
            client_response("hd-000000000000", "hotdesk", "pw", "GET", uri, &nonce, "c1");
        assert_eq!(v(&other_user, uri, now), Err(Denied::Wrong));
        let forged = client_response(
            "hd-805ec02f3c2e",
            "hotdesk",
            "pw",
            "GET",
            uri,
            &URL_SAFE_NO_PAD.encode([0u8; 24]),
            "c1",
        );
        assert_eq!(v(&forged, uri, now), Err(Denied::Wrong));
        assert_eq!(
            d.verify(None, "GET", uri, "u", "p", now),
            Err(Denied::Missing)
        );
        assert_eq!(v("Basic aGQ6cHc=", uri, now), Err(Denied::Missing));
    }

    #[test]
    fn parses_quoted_and_token_values_and_refuses_repeats() {
        let p = parse(r#"Digest username="a\"b", nc=00000001 , qop=auth,uri="/x,y""#).unwrap();
        assert_eq!(p["username"], "a\"b");
        assert_eq!(p["nc"], "00000001");
        assert_eq!(p["qop"], "auth");
        assert_eq!(p["uri"], "/x,y");
        assert!(parse(r#"Digest username="a", username="b""#).is_none());
        assert!(parse(r#"Digest username="unterminated"#).is_none());
    }
}
