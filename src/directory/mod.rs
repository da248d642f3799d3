//! Where users come from. [`Directory`] is the contract every backend fulfils (the embedded
//! file today; PBX adapters plug in beside it) and [`CachedDirectory`] sits in front of any
//! of them, so `flow` never knows which backend answers.

mod cache;
mod file;

pub use cache::CachedDirectory;
pub use file::FileDirectory;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::Deserialize;

use crate::secret::Secret;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One user of the directory.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub extension: String,
    pub name: String,
    #[serde(default)]
    pub voicemail_pin: Option<Secret>,
    pub sip_password: Secret,
    /// Provisioning template for this user; the brand default when absent.
    #[serde(default)]
    pub template: Option<String>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum DirectoryError {
    /// The backend could not answer (down, timed out, malformed reply).
    #[error("directory unavailable: {0}")]
    Unavailable(String),
}

/// A source of users. `Ok(None)` means "no such extension"; errors mean "cannot tell".
pub trait Directory: Send + Sync + 'static {
    fn lookup<'a>(
        &'a self,
        extension: &'a str,
    ) -> BoxFuture<'a, Result<Option<Arc<User>>, DirectoryError>>;

    /// Fires whenever the backend's data changed wholesale, so caches can drop everything.
    fn changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }
}

/// Extensions are short and dialable: digits plus a few PBX-legal characters.
pub fn valid_extension(ext: &str) -> bool {
    !ext.is_empty()
        && ext.len() <= 32
        && ext.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'*' | b'#' | b'+' | b'_' | b'-' | b'.')
        })
}
