//! Wazo Platform as a directory: a wazo-auth token, then wazo-confd (`{url}` is the public API
//! base, e.g. `https://wazo.example.com/api`). Sources: wazo-platform/wazo-auth @ f1c4e527,
//! wazo-platform/wazo-confd @ 4086b2e45 (file and line beside each step; replies recorded in
//! fixtures/upstream/wazo/).
//!
//! 1. `POST {url}/auth/0.1/token`, HTTP Basic (a service user), JSON `{"backend", "expiration"}`
//!    (`plugins/http/tokens/schemas.py` l.14-22) → `{"data": {"token", …}}` (`token.py`
//!    `to_dict` l.86-104). Kept until a minute before it expires; one request renews it for
//!    every waiting lookup. 401 `{"reason": ["Authentication Failed"], …}` for bad credentials
//!    (`plugins/http/tokens/http.py` l.218, `http.py` l.33-34).
//! 2. `GET {url}/confd/1.1/extensions?exten=N&type=internal[&context=C]` (ACL
//!    `confd.extensions.read`; `plugins/extension/api.yml` l.2-38) → `{total, items: [{exten,
//!    context, enabled, lines: [{id}]}]}` (`schema.py` l.10-31). `total: 0`, a disabled
//!    extension or one without a line is unknown.
//! 3. `GET {url}/confd/1.1/lines/{id}` (ACL `confd.lines.{line_id}.read`) → `LineListSchema`
//!    (`plugins/line/schema.py` l.137-165): `caller_id_name`, `users: [{uuid, firstname,
//!    lastname}]`, `endpoint_sip: {uuid, …}` (the password is not in it).
//! 4. `GET {url}/confd/1.1/endpoints/sip/{uuid}?view=merged` (ACL
//!    `confd.endpoints.sip.{uuid}.read`) → `MergedEndpointSIPSchema` (`plugins/endpoint_sip/
//!    schema.py` l.81-97, templates merged in): `auth_section_options: [["username", …],
//!    ["password", …]]`.
//! 5. `GET {url}/confd/1.1/users/{uuid}/voicemails` (ACL `confd.users.{user_id}.voicemails.read`;
//!    `plugins/user_voicemail/resource.py` l.50-57) → `{total, items: [{password, enabled, …}]}`
//!    (`plugins/voicemail/schema.py` l.14-36; `password` digits only).
//!
//! Any confd call answered 401, 403 or 5xx gets one new token and one retry.
//! Wazo gives lines their own (random) SIP user names; the phone is provisioned with it.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use http::{HeaderValue, Method, StatusCode};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;

use super::{BoxFuture, Directory, DirectoryError, User, asterisk_pin};
use crate::config::{UpstreamHttp, WazoConfig};
use crate::secret::Secret;
use crate::upstream::{Client, Outgoing, Reply};

pub struct WazoDirectory {
    client: Client,
    basic: HeaderValue,
    backend: String,
    expiration: Duration,
    context: Option<String>,
    tenant: Option<HeaderValue>,
    token: crate::upstream::TokenSlot,
}

#[derive(Deserialize)]
struct TokenReply {
    data: TokenData,
}

#[derive(Deserialize)]
struct TokenData {
    token: String,
}

#[derive(Deserialize)]
#[serde(bound(deserialize = "T: Deserialize<'de>"))]
struct Items<T> {
    #[serde(default = "Vec::new")]
    items: Vec<T>,
}

#[derive(Deserialize)]
struct Extension {
    exten: String,
    #[serde(default)]
    context: String,
    enabled: Option<bool>,
    #[serde(default)]
    lines: Vec<Id>,
}

#[derive(Deserialize)]
struct Id {
    id: u64,
}

#[derive(Deserialize)]
struct Line {
    caller_id_name: Option<String>,
    endpoint_sip: Option<EndpointRef>,
    #[serde(default)]
    users: Vec<LineUser>,
}

#[derive(Deserialize)]
struct EndpointRef {
    uuid: String,
}

#[derive(Deserialize)]
struct LineUser {
    uuid: String,
    firstname: Option<String>,
    lastname: Option<String>,
}

#[derive(Deserialize)]
struct Endpoint {
    #[serde(default)]
    auth_section_options: Vec<(String, String)>,
}

#[derive(Deserialize)]
struct Voicemail {
    password: Option<String>,
    enabled: Option<bool>,
}

fn unavailable(what: impl std::fmt::Display) -> DirectoryError {
    DirectoryError::Unavailable(format!("Wazo: {what}"))
}

fn token_trouble(status: StatusCode) -> bool {
    status == StatusCode::UNAUTHORIZED
        || status == StatusCode::FORBIDDEN
        || status.is_server_error()
}

/// A UUID from a reply, checked before it goes into a path.
fn uuid(text: &str) -> Result<&str, DirectoryError> {
    let ok = !text.is_empty()
        && text.len() <= 64
        && text.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    ok.then_some(text)
        .ok_or_else(|| unavailable("a reply holds an id that is not a UUID"))
}

impl WazoDirectory {
    pub fn new(http: &UpstreamHttp, wazo: &WazoConfig) -> Result<Self, String> {
        let raw = format!("{}:{}", wazo.username, wazo.password.expose());
        let mut basic = HeaderValue::from_str(&format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        ))
        .map_err(|_| "[directory.wazo] credentials hold characters not allowed in a header")?;
        basic.set_sensitive(true);
        let tenant = wazo
            .tenant
            .as_deref()
            .map(|t| {
                uuid(t)
                    .ok()
                    .and_then(|t| HeaderValue::from_str(t).ok())
                    .ok_or("[directory.wazo] tenant must be a tenant UUID")
            })
            .transpose()?;
        Ok(Self {
            client: Client::new(http)?,
            basic,
            backend: wazo.backend.clone(),
            expiration: wazo.token_expiration.0.max(Duration::from_secs(60)),
            context: wazo.context.clone(),
            tenant,
            token: crate::upstream::TokenSlot::default(),
        })
    }

    async fn token(&self, renew: bool) -> Result<HeaderValue, DirectoryError> {
        self.token.get(renew, || self.fetch_token()).await
    }

    async fn fetch_token(&self) -> Result<(HeaderValue, Duration), DirectoryError> {
        let body = serde_json::json!({
            "backend": self.backend,
            "expiration": self.expiration.as_secs(),
        });
        let reply = self
            .client
            .execute(Outgoing {
                method: Method::POST,
                path: "/auth/0.1/token",
                body: Some((body.to_string().into_bytes(), "application/json")),
                auth: Some(self.basic.clone()),
                headers: Vec::new(),
                key: None,
                retry: false,
                defer_5xx: false,
            })
            .await
            .map_err(|e| unavailable(format_args!("token request: {e}")))?;
        match reply.status {
            StatusCode::OK => {}
            StatusCode::UNAUTHORIZED => {
                return Err(unavailable(
                    "wazo-auth refused the token request (401 Authentication Failed): username, password or backend is wrong",
                ));
            }
            other => {
                return Err(unavailable(format_args!(
                    "the token request answered {other}"
                )));
            }
        }
        let t: TokenReply = serde_json::from_slice(&reply.body)
            .map_err(|e| unavailable(format_args!("token reply not understood: {e}")))?;
        let value = crate::upstream::sensitive_header(&t.data.token)
            .ok_or_else(|| unavailable("token holds characters not allowed in a header"))?;
        Ok((value, token_life(self.expiration)))
    }

    async fn send(&self, path: &str, token: HeaderValue) -> Result<Reply, DirectoryError> {
        let mut headers = vec![("x-auth-token", token)];
        if let Some(t) = &self.tenant {
            headers.push(("wazo-tenant", t.clone()));
        }
        self.client
            .execute(Outgoing {
                method: Method::GET,
                path,
                body: None,
                auth: None,
                headers,
                key: None,
                retry: true,
                defer_5xx: true,
            })
            .await
            .map_err(unavailable)
    }

    /// One confd GET, with one new token and one retry after 401, 403 or 5xx.
    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, DirectoryError> {
        let mut reply = self.send(path, self.token(false).await?).await?;
        if token_trouble(reply.status) {
            reply = self.send(path, self.token(true).await?).await?;
            if reply.status.is_server_error() {
                self.client.count_failure(&reply.status);
            }
        }
        if reply.status != StatusCode::OK {
            let what = path.split('?').next().unwrap_or(path);
            return Err(unavailable(format_args!(
                "confd answered {} for {what}{}",
                reply.status,
                refusal(&reply)
            )));
        }
        serde_json::from_slice(&reply.body)
            .map_err(|e| unavailable(format_args!("confd reply not understood: {e}")))
    }

    async fn fetch(&self, extension: &str) -> Result<Option<Arc<User>>, DirectoryError> {
        let mut query = format!(
            "/confd/1.1/extensions?type=internal&exten={}",
            utf8_percent_encode(extension, NON_ALPHANUMERIC)
        );
        if let Some(c) = &self.context {
            query.push_str(&format!(
                "&context={}",
                utf8_percent_encode(c, NON_ALPHANUMERIC)
            ));
        }
        let found: Items<Extension> = self.get(&query).await?;
        let mut matching = found
            .items
            .into_iter()
            .filter(|e| e.exten == extension && e.enabled != Some(false));
        let Some(ext) = matching.next() else {
            return Ok(None);
        };
        if let Some(other) = matching.next() {
            return Err(unavailable(format_args!(
                "extension {extension} exists in contexts {} and {}; set [directory.wazo] context",
                ext.context, other.context
            )));
        }
        let Some(line_id) = ext.lines.first().map(|l| l.id) else {
            return Ok(None); // a queue, a group, …: not a phone line
        };
        let line: Line = self.get(&format!("/confd/1.1/lines/{line_id}")).await?;
        let Some(owner) = line.users.first() else {
            return Ok(None); // a line nobody owns
        };
        let (sip_username, sip_password) = match &line.endpoint_sip {
            Some(e) => {
                let path = format!("/confd/1.1/endpoints/sip/{}?view=merged", uuid(&e.uuid)?);
                let endpoint: Endpoint = self.get(&path).await?;
                sip_line(extension, &endpoint)
            }
            None => (None, Secret::default()),
        };
        let path = format!("/confd/1.1/users/{}/voicemails", uuid(&owner.uuid)?);
        let boxes: Items<Voicemail> = self.get(&path).await?;
        let raw_pin = boxes
            .items
            .into_iter()
            .find(|v| v.enabled != Some(false))
            .and_then(|v| v.password);
        let voicemail_pin = match raw_pin.as_deref().map(asterisk_pin) {
            None => None,
            Some(Ok(pin)) => pin,
            Some(Err(_)) => {
                tracing::warn!(%extension, "Wazo voicemail password starts with '*'; extension left out");
                return Ok(None);
            }
        };
        let full = [owner.firstname.as_deref(), owner.lastname.as_deref()]
            .into_iter()
            .flatten()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        let name = Some(full)
            .filter(|n| !n.is_empty())
            .or(line.caller_id_name.filter(|n| !n.trim().is_empty()))
            .unwrap_or_else(|| extension.to_owned());
        Ok(Some(Arc::new(User {
            extension: extension.to_owned(),
            name,
            voicemail_pin,
            sip_password,
            sip_username,
            template: None,
            pin_hash: None,
        })))
    }

    /// `check-config --online`: a token, then one lookup when an extension is given.
    pub async fn probe(&self, extension: Option<&str>) -> Result<String, DirectoryError> {
        self.token(true).await?;
        let token = "Wazo: token ok";
        match extension {
            None => Ok(format!("{token} (give --extension N to look one up)")),
            Some(ext) => Ok(format!(
                "{token}; {}",
                super::describe(ext, self.fetch(ext).await?)
            )),
        }
    }
}

/// Why confd said 401: Wazo's `{"details": {"reason", "required_access"}}` (the token itself,
/// also echoed there, is never shown).
fn refusal(reply: &Reply) -> String {
    if reply.status != StatusCode::UNAUTHORIZED {
        return String::new();
    }
    let v: serde_json::Value = serde_json::from_slice(&reply.body).unwrap_or_default();
    let details = &v["details"];
    match (
        details["reason"].as_str(),
        details["required_access"].as_str(),
    ) {
        (Some("missing_permission_or_invalid_tenant"), Some(acl)) => format!(
            ": the service user's policy lacks ACL {} (or the tenant is wrong)",
            acl.escape_debug()
        ),
        (Some(reason), _) => format!(" ({})", reason.escape_debug()),
        _ => String::new(),
    }
}

/// How long a token is used: until a minute before it expires (half its life when short), so
/// none expires mid-lookup.
fn token_life(expiration: Duration) -> Duration {
    expiration
        .saturating_sub(Duration::from_secs(60))
        .max(expiration / 2)
}

/// The line's SIP user name (when it is not the extension) and password.
fn sip_line(extension: &str, endpoint: &Endpoint) -> (Option<String>, Secret) {
    let option = |key: &str| {
        endpoint
            .auth_section_options
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    match (option("username"), option("password")) {
        (Some(user), Some(password)) => (
            (user != extension).then(|| user.to_owned()),
            Secret::new(password),
        ),
        _ => (None, Secret::default()),
    }
}

impl Directory for WazoDirectory {
    fn lookup<'a>(
        &'a self,
        extension: &'a str,
    ) -> BoxFuture<'a, Result<Option<Arc<User>>, DirectoryError>> {
        Box::pin(self.fetch(extension))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_renewed_before_they_expire() {
        let secs = |s| Duration::from_secs(s);
        assert_eq!(token_life(secs(3600)), secs(3540));
        assert_eq!(token_life(secs(60)), secs(30));
        assert_eq!(token_life(secs(100)), secs(50));
    }

    #[test]
    fn a_line_gives_its_secret_and_its_own_user_name() {
        let endpoint = |user: &str| Endpoint {
            auth_section_options: vec![
                ("username".into(), user.into()),
                ("password".into(), "pw".into()),
            ],
        };
        let (user, secret) = sip_line("1001", &endpoint("1001"));
        assert_eq!((user, secret.expose()), (None, "pw"));
        let (user, secret) = sip_line("1001", &endpoint("x7k2p9qa"));
        assert_eq!((user.as_deref(), secret.expose()), (Some("x7k2p9qa"), "pw"));
        let (user, secret) = sip_line(
            "1001",
            &Endpoint {
                auth_section_options: vec![],
            },
        );
        assert!(user.is_none() && secret.is_empty());
    }

    #[test]
    fn ids_from_replies_are_checked_before_they_go_into_a_path() {
        assert!(uuid("0f2e4d6c-8b0a-4c1e-9f3d-5b7a9c1e3f50").is_ok());
        for bad in ["", "../users", "a/b", "1?x=1", &"a".repeat(65)] {
            assert!(uuid(bad).is_err(), "{bad}");
        }
    }
}
