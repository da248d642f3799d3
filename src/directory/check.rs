//! What `check-config` says about the directory: offline (the files it reads, settings worth
//! a warning) and `--online` (a token and one lookup against the real backend).

use std::sync::Arc;

use super::{DirectoryError, FreepbxDirectory, User, WazoDirectory, open_backend, valid_extension};
use crate::config::DirectoryConfig;

/// Reads the configured directory once, for `check-config`; describes what it found (its
/// warnings come from [`config_warnings`]).
pub fn check_offline(config: &DirectoryConfig) -> Result<String, String> {
    use crate::config::DirectoryKind;
    match config.kind {
        DirectoryKind::File => {
            let path = config.file.as_ref().ok_or("no [directory] file")?;
            Ok(format!(
                "{} user(s) in {}",
                super::file::load(path)?.len(),
                path.display()
            ))
        }
        DirectoryKind::VoicemailConf => {
            let l = super::voicemail::load(&super::voicemail::Source::from_config(config)?)?;
            let mut out = format!(
                "{} mailbox(es), {} with a SIP secret, {} file(s) watched",
                l.users.len(),
                l.with_secret,
                l.files.len()
            );
            if l.with_secret < l.users.len() {
                out.push_str(" (the others cannot log in: set pjsip_conf or sip_conf)");
            }
            Ok(out)
        }
        DirectoryKind::Embedded => Ok(match &config.seed {
            Some(seed) => format!(
                "embedded directory in the store; seed: {} user(s) in {} (imported while the store has none)",
                super::embedded::import::read(seed)?.len(),
                seed.display()
            ),
            None => "embedded directory in the store".into(),
        }),
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

/// Settings that work but deserve a warning, and lines the files' reader skipped;
/// `check-config` prints them.
pub fn config_warnings(config: &DirectoryConfig) -> Vec<String> {
    let mut out = Vec::new();
    if config.kind == crate::config::DirectoryKind::VoicemailConf
        && let Ok(source) = super::voicemail::Source::from_config(config)
        && let Ok(l) = super::voicemail::load(&source)
    {
        out.extend(l.warnings);
    }
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
    config: &DirectoryConfig,
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
        DirectoryKind::Embedded => check_offline(config),
        _ => {
            let Some(ext) = extension else {
                return Ok(format!(
                    "{} (give --extension N to look one up)",
                    check_offline(config)?
                ));
            };
            let backend = open_backend(config)?;
            shown(backend.lookup(ext).await, ext)
        }
    }
}

fn unavailable_reason(e: DirectoryError) -> String {
    match e {
        DirectoryError::Unavailable(why) => why,
    }
}
