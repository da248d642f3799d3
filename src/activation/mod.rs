//! Softphone activation and one-time desk login codes.
//!
//! An admin (or, with `[activation] self_service`, the user) makes a link; a softphone
//! fetches `/provisioning/{token}` once and gets its account as Linphone remote-provisioning
//! XML, which counts one device against `[activation] max_devices`. A link is 256 random
//! bits, single use, expiring, and only its hash is stored. A login code is 8 digits typed at
//! a desk phone instead of extension and PIN: single use, `code_ttl`, bound to its user.

pub mod linphone;
pub mod mail;
pub mod qr;

use std::sync::Arc;

use base64::Engine;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::clock::Clock;
use crate::config::Config;
use crate::secret::Secret;
use crate::store::{AuditEvent, Device, EventKind, LinkState, Redeemed, SqliteStore, StoreError};

/// A link just made: shown once (the store keeps only its hash).
#[derive(Debug, Clone)]
pub struct NewLink {
    pub token: Secret,
    pub url: String,
    pub qr_png_url: String,
    pub qr_svg_url: String,
    pub expires: OffsetDateTime,
}

impl NewLink {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "url": self.url,
            "qr_png_url": self.qr_png_url,
            "qr_svg_url": self.qr_svg_url,
            "expires_at": rfc3339(self.expires),
        })
    }
}

pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// Links, devices and codes over the store; every store call runs off the tokio workers.
pub struct Activations {
    store: Arc<SqliteStore>,
    clock: Arc<dyn Clock>,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Db(e.to_string()))?
}

/// The path of a link: the token is the whole secret, so it is never logged (the access log
/// names the route, not the path).
pub fn link_path(token: &str) -> String {
    format!("/provisioning/{token}")
}

/// A token looks like one we make (43 base64url characters), before any store lookup.
pub fn plausible_token(token: &str) -> bool {
    token.len() == 43
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Activations {
    pub fn new(store: Arc<SqliteStore>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    /// Makes a link for `extension` (the caller checked the user exists and is enabled);
    /// any unused link of theirs stops working.
    pub async fn create_link(
        &self,
        config: &Config,
        extension: &str,
        actor: &str,
    ) -> Result<NewLink, StoreError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| StoreError::Db(e.to_string()))?;
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let now = self.clock.now();
        let expires = now + config.activation.link_ttl.0;
        let (network, _) = config.activation_network();
        let mut event = AuditEvent::new(
            EventKind::ActivationLink,
            format!(
                "{actor}: activation link made, valid until {}",
                rfc3339(expires)
            ),
        );
        event.extension = Some(extension.to_owned());
        event.network = Some(network.to_owned());
        let (store, hash, ext, net) = (
            self.store.clone(),
            crate::store::token_hash(&token),
            extension.to_owned(),
            network.to_owned(),
        );
        blocking(move || store.put_activation_link(&hash, &ext, &net, now, expires, &event))
            .await?;
        let base = config.base();
        let url = format!("{base}{}", link_path(&token));
        Ok(NewLink {
            qr_png_url: format!("{url}/qr.png"),
            qr_svg_url: format!("{url}/qr.svg"),
            url,
            token: Secret::new(token),
            expires,
        })
    }

    /// The link as it is now, without using it.
    pub async fn peek(&self, token: &str) -> Result<LinkState, StoreError> {
        if !plausible_token(token) {
            return Ok(LinkState::Unknown);
        }
        let (store, hash, now) = (
            self.store.clone(),
            crate::store::token_hash(token),
            self.clock.now(),
        );
        blocking(move || store.activation_link(&hash, now)).await
    }

    /// Uses the link (one softphone more), unless used, expired, or the user is at the limit.
    pub async fn redeem(
        &self,
        config: &Config,
        token: &str,
        user_agent: &str,
        source_ip: &str,
    ) -> Result<Redeemed, StoreError> {
        if !plausible_token(token) {
            return Ok(Redeemed::Unknown);
        }
        let max = config.activation.max_devices;
        let ua: String = user_agent
            .chars()
            .filter(|c| !c.is_control())
            .take(120)
            .collect();
        let (store, hash, now, ip) = (
            self.store.clone(),
            crate::store::token_hash(token),
            self.clock.now(),
            source_ip.to_owned(),
        );
        let refused = AuditEvent::new(EventKind::ActivationRefused, "");
        let activated = AuditEvent::new(
            EventKind::SoftphoneActivated,
            format!(
                "softphone activated: {}",
                if ua.is_empty() {
                    "(no User-Agent)"
                } else {
                    &ua
                }
            ),
        );
        blocking(move || {
            store.redeem_activation_link(&hash, now, max, &ua, &ip, refused, activated)
        })
        .await
    }

    /// When the user's unused link expires, if there is one.
    pub async fn live_link(&self, extension: &str) -> Result<Option<OffsetDateTime>, StoreError> {
        let (store, ext, now) = (self.store.clone(), extension.to_owned(), self.clock.now());
        blocking(move || store.live_activation_link(&ext, now)).await
    }

    pub async fn devices(&self, extension: &str) -> Result<Vec<Device>, StoreError> {
        let (store, ext) = (self.store.clone(), extension.to_owned());
        blocking(move || store.devices(&ext)).await
    }

    pub async fn device_counts(
        &self,
    ) -> Result<std::collections::HashMap<String, usize>, StoreError> {
        let store = self.store.clone();
        blocking(move || store.device_counts()).await
    }

    /// Removes one softphone (`Some(id)`) or resets the count; audited with `why`.
    pub async fn remove_devices(
        &self,
        extension: &str,
        id: Option<i64>,
        why: String,
    ) -> Result<usize, StoreError> {
        let mut event = AuditEvent::new(EventKind::DevicesReset, why);
        event.extension = Some(extension.to_owned());
        let (store, ext) = (self.store.clone(), extension.to_owned());
        blocking(move || store.remove_devices(&ext, id, &event)).await
    }

    /// Unused links and codes of a user stop working (disabled or deleted).
    pub async fn revoke(&self, extension: &str) -> Result<(), StoreError> {
        let (store, ext, now) = (self.store.clone(), extension.to_owned(), self.clock.now());
        blocking(move || store.revoke_activations(&ext, now)).await
    }

    /// A one-time desk login code for `extension`: 8 digits from the OS random source, unique
    /// among live codes. Returned once; audited without the code.
    pub async fn create_code(
        &self,
        config: &Config,
        extension: &str,
        actor: &str,
    ) -> Result<(Secret, OffsetDateTime), StoreError> {
        let now = self.clock.now();
        let expires = now + config.activation.code_ttl.0;
        for _ in 0..8 {
            let code = Secret::new(new_code().map_err(StoreError::Db)?);
            let mut event = AuditEvent::new(
                EventKind::LoginCode,
                format!(
                    "{actor}: one-time login code made, valid until {}",
                    rfc3339(expires)
                ),
            );
            event.extension = Some(extension.to_owned());
            let (store, c, ext) = (self.store.clone(), code.clone(), extension.to_owned());
            if blocking(move || store.put_login_code(c.expose(), &ext, now, expires, &event))
                .await?
            {
                return Ok((code, expires));
            }
        }
        Err(StoreError::Db(
            "no free login code was found; try again".into(),
        ))
    }

    /// The extension a code was made for, once.
    pub async fn redeem_code(&self, code: &str) -> Result<Option<String>, StoreError> {
        if !is_code_shaped(code) {
            return Ok(None);
        }
        let (store, c, now) = (self.store.clone(), code.to_owned(), self.clock.now());
        blocking(move || store.redeem_login_code(&c, now)).await
    }
}

/// Eight digits: what a login code looks like.
pub fn is_code_shaped(code: &str) -> bool {
    code.len() == 8 && code.bytes().all(|b| b.is_ascii_digit())
}

/// Eight uniform digits (rejection sampling: no modulo bias).
fn new_code() -> Result<String, String> {
    let mut out = String::with_capacity(8);
    while out.len() < 8 {
        let mut b = [0u8; 16];
        getrandom::fill(&mut b).map_err(|e| e.to_string())?;
        for x in b {
            if x < 250 && out.len() < 8 {
                out.push(char::from(b'0' + x % 10));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_eight_digits_and_tokens_have_one_shape() {
        for _ in 0..50 {
            let c = new_code().unwrap();
            assert!(is_code_shaped(&c), "{c}");
        }
        assert!(!is_code_shaped("1234567"));
        assert!(!is_code_shaped("1234567a"));
        assert!(plausible_token(&"A".repeat(43)));
        assert!(!plausible_token(&"A".repeat(44)));
        assert!(!plausible_token(&format!("{}/", "A".repeat(42))));
    }
}
