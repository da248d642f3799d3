//! Where users come from. [`Directory`] is the contract every backend fulfils (the embedded
//! file today; PBX adapters plug in beside it) and [`CachedDirectory`] sits in front of any
//! of them, so `flow` never knows which backend answers.

mod asterisk_conf;
mod cache;
pub mod file;
mod freepbx;
mod http;
pub mod reload;
mod sip_secrets;
mod voicemail;
mod wazo;

pub use cache::{CachePolicy, CachedDirectory};
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
    }
}

/// Reads the configured directory once, for `check-config`; describes what it found.
pub fn check_offline(config: &crate::config::DirectoryConfig) -> Result<String, String> {
    use crate::config::DirectoryKind;
    match config.kind {
        DirectoryKind::File => {
            let path = config.file.as_ref().ok_or("no [directory] file")?;
            Ok(format!(
                "{} user(s) in {}",
                file::load(path)?.len(),
                path.display()
            ))
        }
        DirectoryKind::VoicemailConf => {
            let l = voicemail::load(&voicemail::Source::from_config(config)?)?;
            let mut out = format!(
                "{} mailbox(es) in {} file(s), {} with a SIP secret",
                l.users.len(),
                l.files.len(),
                l.with_secret
            );
            if l.with_secret < l.users.len() {
                out.push_str(" (the others cannot log in: set pjsip_conf or sip_conf)");
            }
            for w in &l.warnings {
                out.push_str(&format!("\n  warning: {w}"));
            }
            Ok(out)
        }
        DirectoryKind::Http | DirectoryKind::Freepbx | DirectoryKind::Wazo => {
            // Builds the client, so a bad ca_file is reported here and not at the first login.
            if let Some(http) = &config.http {
                crate::upstream::Client::new(http)?;
            }
            Ok(format!(
                "{:?} directory at {} (not contacted)",
                config.kind,
                config.http.as_ref().map_or("?", |h| h.url.as_str())
            ))
        }
    }
}

/// What `check-config --online` prints for one lookup: never a secret, only whether it is there.
pub fn describe(extension: &str, found: Option<Arc<User>>) -> String {
    match found {
        None => format!("extension {extension} is unknown to the directory"),
        Some(u) => format!(
            "extension {extension}: {:?}, voicemail PIN {}, SIP secret {}",
            u.name,
            if u.voicemail_pin.is_some() {
                "set"
            } else {
                "not set (the [login] user_password applies)"
            },
            if u.sip_password.is_empty() {
                "missing (logins will be refused)"
            } else {
                "set"
            },
        ),
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

/// Settings that work but deserve a warning; `check-config` prints them.
pub fn config_warnings(config: &crate::config::DirectoryConfig) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(h) = &config.http
        && h.insecure_skip_verify
    {
        out.push(format!("!!! [directory.http] insecure_skip_verify = true: TLS CERTIFICATES ARE NOT CHECKED for {}. Anyone on the network path can pose as the PBX and read every PIN and SIP secret. Use ca_file with the PBX's CA instead. !!!", h.url));
    }
    if let Some(f) = &config.freepbx
        && let Some(scope) = &f.scope
        && scope.split_whitespace().any(|s| s == "gql")
    {
        out.push("[directory.freepbx] scope = \"gql\" asks FreePBX for read AND write on every module (FreePBX 17 grants it whatever the application allows; FreePBX 16 refuses it for a narrowed application). Remove scope to get the application's own scopes, or use \"gql:core:read gql:voicemail:read\".".into());
    }
    out
}

/// `check-config --online`: contacts the configured backend as a login would (a token, then
/// one lookup when `extension` is given) and says what it found, never a secret.
pub async fn check_online(
    config: &crate::config::DirectoryConfig,
    extension: Option<&str>,
) -> Result<String, String> {
    use crate::config::DirectoryKind;
    if let Some(ext) = extension
        && !valid_extension(ext)
    {
        return Err(format!(
            "`{}` is not an extension (digits, * and #, optional leading +)",
            ext.escape_debug()
        ));
    }
    let shown = |r: Result<Option<Arc<User>>, DirectoryError>, ext: &str| {
        r.map(|u| describe(ext, u)).map_err(unavailable_reason)
    };
    match config.kind {
        DirectoryKind::Freepbx => {
            let http = config.http.as_ref().ok_or("no [directory.http]")?;
            let fpbx = config.freepbx.as_ref().ok_or("no [directory.freepbx]")?;
            let d = FreepbxDirectory::new(http, fpbx)?;
            d.probe(extension).await.map_err(unavailable_reason)
        }
        DirectoryKind::Wazo => {
            let http = config.http.as_ref().ok_or("no [directory.http]")?;
            let wazo = config.wazo.as_ref().ok_or("no [directory.wazo]")?;
            let d = WazoDirectory::new(http, wazo)?;
            d.probe(extension).await.map_err(unavailable_reason)
        }
        _ => {
            let Some(ext) = extension else {
                return Ok(format!(
                    "{} (give --extension N to look one up)",
                    check_offline(config)?
                ));
            };
            let backend: Arc<dyn Directory> = match config.kind {
                DirectoryKind::Http => {
                    let http = config.http.as_ref().ok_or("no [directory.http]")?;
                    Arc::new(HttpDirectory::new(http)?)
                }
                _ => open_backend(config)?,
            };
            shown(backend.lookup(ext).await, ext)
        }
    }
}

fn unavailable_reason(e: DirectoryError) -> String {
    match e {
        DirectoryError::Unavailable(why) => why,
    }
}

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
