//! Where users come from. [`Directory`] is the contract every backend fulfils (the embedded
//! file today; PBX adapters plug in beside it) and [`CachedDirectory`] sits in front of any
//! of them, so `flow` never knows which backend answers.

mod asterisk_conf;
mod cache;
mod check;
pub mod embedded;
pub mod file;
mod freepbx;
mod hot;
mod http;
pub mod reload;
mod sip_secrets;
mod voicemail;
mod wazo;

pub use cache::{CachePolicy, CachedDirectory};
pub use check::{check_offline, check_online, config_warnings, describe};
pub use freepbx::FreepbxDirectory;
pub use http::HttpDirectory;
pub use reload::Reloading;
pub use voicemail::parse_file as voicemail_parse;
pub use wazo::WazoDirectory;

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
    /// The SIP user name the phone registers and authenticates as, when it is not the
    /// extension (Wazo lines, pjsip auth sections with their own `username`).
    #[serde(default)]
    pub sip_username: Option<String>,
    /// Provisioning template for this user; the brand default when absent.
    #[serde(default)]
    pub template: Option<String>,
    /// The PIN as an argon2 PHC string (the embedded directory keeps no clear PIN); checked
    /// on the argon2 threads instead of `voicemail_pin`.
    #[serde(skip)]
    pub pin_hash: Option<Arc<str>>,
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

    /// Like `lookup`, but bypassing any cache (used once after a wrong PIN, so a PIN changed
    /// at the PBX works at once).
    fn refetch<'a>(
        &'a self,
        extension: &'a str,
    ) -> BoxFuture<'a, Result<Option<Arc<User>>, DirectoryError>> {
        self.lookup(extension)
    }

    /// Fires whenever the backend's data changed wholesale, so caches can drop everything.
    fn changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }
}

/// Opens the configured backend (the cache goes in front of it separately).
pub fn open_backend(config: &crate::config::DirectoryConfig) -> Result<Arc<dyn Directory>, String> {
    use crate::config::DirectoryKind;
    let poll = config.poll_interval.0;
    match config.kind {
        DirectoryKind::File => {
            let path = config.file.clone().ok_or("no [directory] file")?;
            let d = file::open(path.clone(), poll)?;
            tracing::info!(users = d.len(), file = %path.display(), "directory file loaded");
            Ok(Arc::new(d))
        }
        DirectoryKind::VoicemailConf => {
            let source = voicemail::Source::from_config(config)?;
            let path = source.voicemail_conf.clone();
            let d = voicemail::open(source, poll)?;
            tracing::info!(mailboxes = d.len(), file = %path.display(), "voicemail.conf loaded");
            Ok(Arc::new(d))
        }
        DirectoryKind::Http => {
            let http = config.http.as_ref().ok_or("no [directory.http]")?;
            Ok(Arc::new(HttpDirectory::new(http)?))
        }
        DirectoryKind::Freepbx => {
            let http = config.http.as_ref().ok_or("no [directory.http]")?;
            let fpbx = config.freepbx.as_ref().ok_or("no [directory.freepbx]")?;
            Ok(Arc::new(FreepbxDirectory::new(http, fpbx)?))
        }
        DirectoryKind::Wazo => {
            let http = config.http.as_ref().ok_or("no [directory.http]")?;
            let wazo = config.wazo.as_ref().ok_or("no [directory.wazo]")?;
            Ok(Arc::new(WazoDirectory::new(http, wazo)?))
        }
        // It lives in the store: `App` opens it once the store is open.
        DirectoryKind::Embedded => Err("the embedded directory is opened with the store".into()),
    }
}

/// A voicemail password as Asterisk treats it (apps/app_voicemail.c at f0c1c1a7b7): one leading
/// `-` only marks it as one the user may not change and is not part of it (l.11806-11807); an
/// empty one means no PIN. One starting with `*` is invalid (warned at load, l.13375; refused on
/// change, l.1770): `*` at the PIN prompt escapes instead (l.11788).
pub(crate) fn asterisk_pin(raw: &str) -> Result<Option<Secret>, InvalidPin> {
    let pin = raw.strip_prefix('-').unwrap_or(raw);
    if pin.starts_with('*') {
        return Err(InvalidPin);
    }
    Ok((!pin.is_empty()).then(|| Secret::new(pin)))
}

/// A PIN Asterisk does not accept; the user is left out of the directory (with a warning),
/// so nobody logs in with it and no other credential stands in for it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct InvalidPin;

/// Extensions are short and dialable: digits, `*` and `#`, with an optional leading `+`
/// (E.164). Anything else (dots, slashes, letters) never reaches a backend or an upstream URL.
pub fn valid_extension(ext: &str) -> bool {
    let digits = ext.strip_prefix('+').unwrap_or(ext);
    !digits.is_empty()
        && digits.len() <= 32
        && digits
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'*' | b'#'))
}

#[cfg(test)]
mod tests {
    use super::{InvalidPin, asterisk_pin, valid_extension};

    #[test]
    fn pins_as_asterisk_reads_them() {
        let pin = |raw| asterisk_pin(raw).map(|p| p.map(|p| p.expose().to_owned()));
        assert_eq!(pin("1234"), Ok(Some("1234".into())));
        assert_eq!(
            pin("-1234"),
            Ok(Some("1234".into())),
            "one '-' only marks it fixed"
        );
        assert_eq!(pin("--12"), Ok(Some("-12".into())), "only one is removed");
        assert_eq!(pin(""), Ok(None));
        assert_eq!(pin("-"), Ok(None));
        assert_eq!(pin("*123"), Err(InvalidPin));
        assert_eq!(pin("-*123"), Err(InvalidPin));
    }

    #[test]
    fn extensions_are_dialable_text_only() {
        for ok in ["1001", "*97", "#1", "+4930123", &"9".repeat(32)] {
            assert!(valid_extension(ok), "{ok:?}");
        }
        for bad in [
            "",
            "+",
            "..",
            ".",
            "10.01",
            "1001/..",
            "abc",
            "1001 ",
            "++1",
            &"9".repeat(33),
        ] {
            assert!(!valid_extension(bad), "{bad:?}");
        }
    }
}
