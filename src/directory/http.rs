//! hotdesk's vendor-neutral upstream contract (`docs/upstream-openapi.yaml`):
//! `GET {url}/extensions/{extension}` -> `{extension, name, voicemail_pin?, sip_password,
//! template?, enabled}`, `404` for an unknown extension.

use std::sync::Arc;

use http::{Method, StatusCode};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;

use super::{BoxFuture, Directory, DirectoryError, User};
use crate::config::UpstreamHttp;
use crate::secret::Secret;
use crate::upstream::Client;

/// Everything but unreserved characters is encoded in the path segment (`#` and `*` too).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

pub struct HttpDirectory {
    client: Arc<Client>,
}

#[derive(Deserialize)]
struct ExtensionReply {
    extension: String,
    name: String,
    #[serde(default)]
    voicemail_pin: Option<Secret>,
    sip_password: Secret,
    #[serde(default)]
    sip_username: Option<String>,
    #[serde(default)]
    template: Option<String>,
    #[serde(default = "yes")]
    enabled: bool,
}

fn yes() -> bool {
    true
}

impl HttpDirectory {
    pub fn new(config: &UpstreamHttp) -> Result<Self, String> {
        Ok(Self {
            client: Arc::new(Client::new(config)?),
        })
    }

    pub fn client(&self) -> &Arc<Client> {
        &self.client
    }

    async fn fetch(&self, extension: &str) -> Result<Option<Arc<User>>, DirectoryError> {
        let path = format!("/extensions/{}", utf8_percent_encode(extension, SEGMENT));
        let unavailable = |e: &dyn std::fmt::Display| DirectoryError::Unavailable(e.to_string());
        let reply = self
            .client
            .send(Method::GET, &path, None)
            .await
            .map_err(|e| unavailable(&e))?;
        match reply.status {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Ok(None),
            other => return Err(unavailable(&format!("upstream answered {other}"))),
        }
        let r: ExtensionReply = serde_json::from_slice(&reply.body)
            .map_err(|e| unavailable(&format!("upstream reply not understood: {e}")))?;
        if r.extension != extension {
            return Err(unavailable(&"upstream answered for another extension"));
        }
        // A disabled user cannot log in; to the flow that is the same as unknown.
        Ok(r.enabled.then(|| {
            Arc::new(User {
                extension: r.extension,
                name: r.name,
                voicemail_pin: r.voicemail_pin.filter(|p| !p.is_empty()),
                sip_password: r.sip_password,
                sip_username: r.sip_username.filter(|u| !u.is_empty()),
                template: r.template,
                pin_hash: None,
            })
        }))
    }
}

impl Directory for HttpDirectory {
    fn lookup<'a>(
        &'a self,
        extension: &'a str,
    ) -> BoxFuture<'a, Result<Option<Arc<User>>, DirectoryError>> {
        Box::pin(self.fetch(extension))
    }
}
