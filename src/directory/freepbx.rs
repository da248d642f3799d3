//! FreePBX (API module, GraphQL) as a directory, as FreePBX 16 and 17 really answer.
//!
//! 1. `POST {url}/token` with `grant_type=client_credentials`, `client_id`, `client_secret`
//!    (form body) and no `scope` unless configured: FreePBX then grants the application's own
//!    scopes (api `Oauth/Repositories/ScopeRepository.php` l.40-46). Tokens live one hour; one
//!    is kept until a minute before it expires. After each new token the schema is asked once
//!    whether the token can see `fetchExtension` and `fetchVoiceMail` (see below).
//! 2. `POST {url}/gql` with `Authorization: Bearer <token>` and one query for both the
//!    extension (name, SIP secret `extPassword`) and its voicemail PIN (`fetchVoiceMail.password`).
//!
//! How replies are read (api `Gql/Api.php::buildSlimApp`, 16: l.98-118, 17: l.101-137):
//! - an unknown extension is HTTP 400 `{"errors":[{"message":…,"status":false}]}`; the message is
//!   translated by FreePBX, so only `status` is read;
//! - a GraphQL error is the same 400 shape on 16, which is why the schema check above exists:
//!   a query the token may not run would otherwise read as "unknown" for everyone;
//! - a rejected token is 401 on 16 (`ResourceServerMiddleware`, l.81) but 500 on 17 (l.91 throws
//!   into the framework's error page), so 401, 403 and 5xx all fetch a new token and retry once
//!   before a failure is counted;
//! - `user` is null for adhoc devices (core `Api/Gql/Extensions.php` l.303-306): the user is
//!   returned with an empty SIP secret and the flow refuses the login with a clear screen.
//!
//! `{url}` is the API base, e.g. `https://pbx.example.com/admin/api/api`.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Method, StatusCode};
use serde::Deserialize;

use super::{BoxFuture, Directory, DirectoryError, User, asterisk_pin};
use crate::config::{FreepbxConfig, UpstreamHttp};
use crate::secret::Secret;
use crate::upstream::{Client, Outgoing, Reply};

/// Extension, SIP secret and voicemail PIN in one round trip. `e` must come first: FreePBX
/// judges the whole reply by the first field's `status`, and a missing mailbox must not turn
/// an existing extension into a 400.
const QUERY: &str = "query ($ext: ID!) { \
e: fetchExtension(extensionId: $ext) { status message extensionId user { name extPassword } } \
v: fetchVoiceMail(extensionId: $ext) { status password name } }";

/// The root query fields the token can see (the schema is built from the token's scopes).
const SCHEMA_QUERY: &str = "{ __schema { queryType { fields { name } } } }";

pub struct FreepbxDirectory {
    client: Client,
    client_id: String,
    client_secret: Secret,
    scope: Option<String>,
    /// The current token; the async lock makes concurrent refreshes one request.
    token: crate::upstream::TokenSlot,
}

#[derive(Deserialize)]
struct TokenReply {
    access_token: String,
    #[serde(default = "hour")]
    expires_in: u64,
}

/// league/oauth2-server's error body: 6.1.1 (FreePBX 16) `{error, message, hint?}`, 8.5.4
/// (FreePBX 17) `{error, error_description, hint?, message}`.
#[derive(Deserialize, Default)]
struct OauthError {
    #[serde(default)]
    error: String,
    #[serde(default)]
    hint: Option<String>,
}

fn hour() -> u64 {
    3600
}

#[derive(Deserialize)]
struct GqlReply {
    data: Option<GqlData>,
    #[serde(default)]
    errors: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct GqlData {
    e: Option<ExtensionNode>,
    v: Option<VoicemailNode>,
}

#[derive(Deserialize)]
struct ExtensionNode {
    status: Option<bool>,
    #[serde(rename = "extensionId")]
    extension_id: Option<String>,
    user: Option<UserNode>,
}

#[derive(Deserialize)]
struct UserNode {
    name: Option<String>,
    #[serde(rename = "extPassword")]
    ext_password: Option<Secret>,
}

#[derive(Deserialize)]
struct VoicemailNode {
    status: Option<bool>,
    password: Option<String>,
    name: Option<String>,
}

/// FreePBX's own 400: `{"errors":[{"message":…,"status":false}]}`.
#[derive(Deserialize)]
struct Refusal {
    #[serde(default)]
    errors: Vec<RefusalItem>,
}

#[derive(Deserialize)]
struct RefusalItem {
    status: Option<serde_json::Value>,
}

fn unavailable(what: impl std::fmt::Display) -> DirectoryError {
    DirectoryError::Unavailable(format!("FreePBX: {what}"))
}

/// A reply after which a new token is worth one more try.
fn token_trouble(status: StatusCode) -> bool {
    status == StatusCode::UNAUTHORIZED
        || status == StatusCode::FORBIDDEN
        || status.is_server_error()
}

impl FreepbxDirectory {
    pub fn new(http: &UpstreamHttp, fpbx: &FreepbxConfig) -> Result<Self, String> {
        Ok(Self {
            client: Client::new(http)?,
            client_id: fpbx.client_id.clone(),
            client_secret: fpbx.client_secret.clone(),
            scope: fpbx.scope.clone().filter(|s| !s.trim().is_empty()),
            token: crate::upstream::TokenSlot::default(),
        })
    }

    async fn token(&self, renew: bool) -> Result<HeaderValue, DirectoryError> {
        self.token.get(renew, || self.fetch_token()).await
    }

    async fn fetch_token(&self) -> Result<(HeaderValue, Duration), DirectoryError> {
        let form = {
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "client_credentials")
                .append_pair("client_id", &self.client_id)
                .append_pair("client_secret", self.client_secret.expose());
            if let Some(scope) = &self.scope {
                form.append_pair("scope", scope);
            }
            form.finish()
        };
        let reply = self
            .client
            .execute(Outgoing {
                method: Method::POST,
                path: "/token",
                body: Some((form.into_bytes(), "application/x-www-form-urlencoded")),
                auth: None,
                headers: Vec::new(),
                key: None,
                retry: false,
                defer_5xx: false,
            })
            .await
            .map_err(|e| unavailable(format_args!("token request: {e}")))?;
        if reply.status != StatusCode::OK {
            return Err(unavailable(self.token_refusal(&reply)));
        }
        let t: TokenReply = serde_json::from_slice(&reply.body)
            .map_err(|e| unavailable(format_args!("token reply not understood: {e}")))?;
        let value = crate::upstream::sensitive_header(&format!("Bearer {}", t.access_token))
            .ok_or_else(|| unavailable("token holds characters not allowed in a header"))?;
        self.check_schema(&value).await?;
        // Renew a minute early so a token never expires mid-request.
        Ok((
            value,
            Duration::from_secs(t.expires_in.saturating_sub(60).max(1)),
        ))
    }

    /// One line that says why the token endpoint said no.
    fn token_refusal(&self, reply: &Reply) -> String {
        let e: OauthError = serde_json::from_slice(&reply.body).unwrap_or_default();
        match e.error.as_str() {
            "invalid_client" => format!(
                "the token request was refused (invalid_client, {}): client_id or client_secret is wrong, or the application was deleted",
                reply.status
            ),
            "invalid_scope" => format!(
                "the token request was refused (invalid_scope, {}): the API application does not allow scope `{}`{}; remove [directory.freepbx] scope to get the application's own scopes",
                reply.status,
                self.scope.as_deref().unwrap_or(""),
                e.hint.map(|h| format!(" ({h})")).unwrap_or_default()
            ),
            "" => format!("the token request answered {}", reply.status),
            other => format!(
                "the token request was refused ({}, {})",
                other.escape_debug(),
                reply.status
            ),
        }
    }

    /// FreePBX builds the schema from the token's scopes; a query the token may not run is a
    /// 400 that looks exactly like "unknown extension" on FreePBX 16. So a new token's schema
    /// must show both fields the lookup uses.
    async fn check_schema(&self, token: &HeaderValue) -> Result<(), DirectoryError> {
        let reply = self.post_gql(SCHEMA_QUERY, None, token.clone()).await?;
        if reply.status.is_server_error() {
            self.client.count_failure(&reply.status);
        }
        if reply.status != StatusCode::OK {
            return Err(unavailable(format_args!(
                "the schema query answered {}",
                reply.status
            )));
        }
        let v: serde_json::Value = serde_json::from_slice(&reply.body)
            .map_err(|e| unavailable(format_args!("schema reply not understood: {e}")))?;
        let fields = v["data"]["__schema"]["queryType"]["fields"]
            .as_array()
            .ok_or_else(|| unavailable("schema reply has no query fields"))?;
        let has = |name: &str| fields.iter().any(|f| f["name"] == name);
        let missing: Vec<&str> = [
            ("fetchExtension", "gql:core:read"),
            ("fetchVoiceMail", "gql:voicemail:read"),
        ]
        .into_iter()
        .filter(|(field, _)| !has(field))
        .map(|(_, scope)| scope)
        .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(unavailable(format_args!(
                "the token may not read extensions or voicemail; give the API application scope {}",
                missing.join(" and ")
            )))
        }
    }

    async fn post_gql(
        &self,
        query: &str,
        extension: Option<&str>,
        token: HeaderValue,
    ) -> Result<Reply, DirectoryError> {
        let body = match extension {
            Some(ext) => serde_json::json!({ "query": query, "variables": { "ext": ext } }),
            None => serde_json::json!({ "query": query }),
        };
        self.client
            .execute(Outgoing {
                method: Method::POST,
                path: "/gql",
                body: Some((body.to_string().into_bytes(), "application/json")),
                auth: Some(token),
                headers: Vec::new(),
                key: None,
                retry: true, // a read-only query
                defer_5xx: true,
            })
            .await
            .map_err(unavailable)
    }

    async fn fetch(&self, extension: &str) -> Result<Option<Arc<User>>, DirectoryError> {
        let token = self.token(false).await?;
        let mut reply = self.post_gql(QUERY, Some(extension), token).await?;
        if token_trouble(reply.status) {
            // FreePBX 17 answers a revoked token with 500: a new token decides.
            tracing::debug!(status = %reply.status, "FreePBX refused the query; fetching a new token");
            reply = self
                .post_gql(QUERY, Some(extension), self.token(true).await?)
                .await?;
            if reply.status.is_server_error() {
                self.client.count_failure(&reply.status);
            }
        }
        read_reply(extension, &reply)
    }
}

/// Turns FreePBX's reply to [`QUERY`] into a user, "unknown", or "cannot tell".
fn read_reply(extension: &str, reply: &Reply) -> Result<Option<Arc<User>>, DirectoryError> {
    match reply.status {
        StatusCode::OK => {}
        StatusCode::BAD_REQUEST => {
            let r: Refusal = serde_json::from_slice(&reply.body)
                .map_err(|e| unavailable(format_args!("400 reply not understood: {e}")))?;
            let is_false = |i: &RefusalItem| {
                matches!(&i.status, Some(serde_json::Value::Bool(false)))
                    || i.status.as_ref().is_some_and(|s| s == "" || s == 0)
            };
            if !r.errors.is_empty() && r.errors.iter().all(is_false) {
                return Ok(None);
            }
            return Err(unavailable("GraphQL answered 400"));
        }
        status if token_trouble(status) => {
            return Err(unavailable(format_args!(
                "GraphQL answered {status}, with a fresh token too"
            )));
        }
        status => return Err(unavailable(format_args!("GraphQL answered {status}"))),
    }
    let r: GqlReply = serde_json::from_slice(&reply.body)
        .map_err(|e| unavailable(format_args!("GraphQL reply: {e}")))?;
    let Some(data) = r.data else {
        return Err(unavailable(format_args!(
            "GraphQL errors: {}",
            r.errors.len()
        )));
    };
    // A resolver that failed inside FreePBX leaves the field null: that is not "unknown".
    let e = data
        .e
        .ok_or_else(|| unavailable("the reply has no extension"))?;
    if e.status == Some(false) {
        return Ok(None);
    }
    if e.extension_id.as_deref().is_some_and(|id| id != extension) {
        return Err(unavailable("answered for another extension"));
    }
    let vm = data.v.filter(|v| v.status != Some(false));
    let pin = match vm.as_ref().and_then(|v| v.password.as_deref()) {
        None => None,
        Some(raw) => match asterisk_pin(raw) {
            Ok(pin) => pin,
            Err(_) => {
                tracing::warn!(%extension, "FreePBX voicemail password starts with '*', which Asterisk refuses; extension left out");
                return Ok(None);
            }
        },
    };
    // `user` is null for adhoc devices: the name comes from the mailbox, and the empty SIP
    // secret makes the flow refuse the login (never a made-up one).
    let name = e
        .user
        .as_ref()
        .and_then(|u| u.name.clone())
        .or_else(|| vm.as_ref().and_then(|v| v.name.clone()))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| extension.to_owned());
    Ok(Some(Arc::new(User {
        extension: extension.to_owned(),
        name,
        voicemail_pin: pin,
        sip_password: e.user.and_then(|u| u.ext_password).unwrap_or_default(),
        sip_username: None,
        template: None,
        pin_hash: None,
    })))
}

impl FreepbxDirectory {
    /// `check-config --online`: a token (and the schema check), then one lookup when an
    /// extension is given; what was found, never a secret.
    pub async fn probe(&self, extension: Option<&str>) -> Result<String, DirectoryError> {
        self.token(true).await?;
        let token = "FreePBX: token ok, the token can read extensions and voicemail";
        match extension {
            None => Ok(format!("{token} (give --extension N to look one up)")),
            Some(ext) => Ok(format!(
                "{token}; {}",
                super::describe(ext, self.fetch(ext).await?)
            )),
        }
    }
}

impl Directory for FreepbxDirectory {
    fn lookup<'a>(
        &'a self,
        extension: &'a str,
    ) -> BoxFuture<'a, Result<Option<Arc<User>>, DirectoryError>> {
        Box::pin(self.fetch(extension))
    }
}
