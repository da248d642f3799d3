//! FreePBX (API module, GraphQL) as a directory.
//!
//! 1. `POST {url}/token` with `grant_type=client_credentials`, `client_id`, `client_secret`,
//!    `scope` (form body) -> `{access_token, expires_in}`; tokens live one hour, so one is
//!    kept until a minute before it expires and fetched again once after a 401.
//! 2. `POST {url}/gql` with `Authorization: Bearer <token>` and one query for both the
//!    extension (name, SIP secret `extPassword`) and its voicemail PIN (`fetchVoiceMail.password`).
//!
//! `{url}` is the API base, e.g. `https://pbx.example.com/admin/api/api`. FreePBX answers an
//! unknown extension with HTTP 200 and `status: false`, which becomes "unknown" here.
//! Sources: FreePBX/api (Oauth.php, Gql/Api.php), FreePBX/core Api/Gql/Extensions.php,
//! FreePBX/voicemail Api/Gql/Voicemail.php (see ../shared/upstream.md section 1).

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderValue, Method, StatusCode};
use serde::Deserialize;

use super::{BoxFuture, Directory, DirectoryError, User};
use crate::config::{FreepbxConfig, UpstreamHttp};
use crate::secret::Secret;
use crate::upstream::{Client, Outgoing, Reply};

/// Extension, SIP secret and voicemail PIN in one round trip.
const QUERY: &str = "query ($ext: ID!) { \
e: fetchExtension(extensionId: $ext) { status message extensionId user { name extPassword } } \
v: fetchVoiceMail(extensionId: $ext) { status password name } }";

pub struct FreepbxDirectory {
    client: Client,
    client_id: String,
    client_secret: Secret,
    scope: String,
    /// The current token; the async lock makes concurrent refreshes one request.
    token: tokio::sync::Mutex<Option<(HeaderValue, Instant)>>,
}

#[derive(Deserialize)]
struct TokenReply {
    access_token: String,
    #[serde(default = "hour")]
    expires_in: u64,
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
    password: Option<Secret>,
    name: Option<String>,
}

fn unavailable(what: impl std::fmt::Display) -> DirectoryError {
    DirectoryError::Unavailable(format!("FreePBX: {what}"))
}

impl FreepbxDirectory {
    pub fn new(http: &UpstreamHttp, fpbx: &FreepbxConfig) -> Result<Self, String> {
        Ok(Self {
            client: Client::new(http)?,
            client_id: fpbx.client_id.clone(),
            client_secret: fpbx.client_secret.clone(),
            scope: fpbx.scope.clone().unwrap_or_else(|| "gql".into()),
            token: tokio::sync::Mutex::new(None),
        })
    }

    async fn token(&self, renew: bool) -> Result<HeaderValue, DirectoryError> {
        let mut slot = self.token.lock().await;
        if let Some((value, until)) = slot.as_ref()
            && !renew
            && Instant::now() < *until
        {
            return Ok(value.clone());
        }
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("client_id", &self.client_id)
            .append_pair("client_secret", self.client_secret.expose())
            .append_pair("scope", &self.scope)
            .finish();
        let reply = self
            .client
            .execute(Outgoing {
                method: Method::POST,
                path: "/token",
                body: Some((form.into_bytes(), "application/x-www-form-urlencoded")),
                auth: None,
                key: None,
                retry: false,
            })
            .await
            .map_err(unavailable)?;
        if reply.status != StatusCode::OK {
            return Err(unavailable(format_args!(
                "token request answered {}",
                reply.status
            )));
        }
        let t: TokenReply = serde_json::from_slice(&reply.body)
            .map_err(|e| unavailable(format_args!("token reply: {e}")))?;
        let mut value = HeaderValue::from_str(&format!("Bearer {}", t.access_token))
            .map_err(|_| unavailable("token holds characters not allowed in a header"))?;
        value.set_sensitive(true);
        // Renew a minute early so a token never expires mid-request.
        let life = Duration::from_secs(t.expires_in.saturating_sub(60).max(1));
        *slot = Some((value.clone(), Instant::now() + life));
        Ok(value)
    }

    async fn query(&self, extension: &str, token: HeaderValue) -> Result<Reply, DirectoryError> {
        let body = serde_json::json!({ "query": QUERY, "variables": { "ext": extension } });
        self.client
            .execute(Outgoing {
                method: Method::POST,
                path: "/gql",
                body: Some((body.to_string().into_bytes(), "application/json")),
                auth: Some(token),
                key: None,
                retry: true, // a read-only query
            })
            .await
            .map_err(unavailable)
    }

    async fn fetch(&self, extension: &str) -> Result<Option<Arc<User>>, DirectoryError> {
        let mut reply = self.query(extension, self.token(false).await?).await?;
        if reply.status == StatusCode::UNAUTHORIZED {
            reply = self.query(extension, self.token(true).await?).await?;
        }
        if reply.status != StatusCode::OK {
            return Err(unavailable(format_args!(
                "GraphQL answered {}",
                reply.status
            )));
        }
        let r: GqlReply = serde_json::from_slice(&reply.body)
            .map_err(|e| unavailable(format_args!("GraphQL reply: {e}")))?;
        let Some(data) = r.data else {
            return Err(unavailable(format_args!(
                "GraphQL errors: {}",
                r.errors.len()
            )));
        };
        let Some(e) = data.e.filter(|e| e.status != Some(false)) else {
            return Ok(None);
        };
        if e.extension_id.as_deref().is_some_and(|id| id != extension) {
            return Err(unavailable("answered for another extension"));
        }
        let vm = data.v.filter(|v| v.status != Some(false));
        // `user` is null for adhoc devices (device-and-user mode); the mailbox still names them.
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
            voicemail_pin: vm.and_then(|v| v.password).filter(|p| !p.is_empty()),
            sip_password: e.user.and_then(|u| u.ext_password).unwrap_or_default(),
            template: None,
        })))
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
