//! Asterisk/FreePBX `voicemail.conf` as a directory, read as `apps/app_voicemail.c`
//! (asterisk/asterisk at f0c1c1a7b7) reads it; the file syntax is [`super::asterisk_conf`].
//!
//! - `mailbox => PIN,name,email,pager,options` in context sections (l.13360-13390); FreePBX
//!   writes `=`. `[general]`, `[zonemessages]` and the `aliasescontext` section are not
//!   mailboxes, compared case-insensitively (`load_users`, l.14822-14826).
//! - Lookups use the `default` context unless `[general] searchcontexts = yes` or hotdesk's
//!   `context = "*"` (every context, the first in file order wins), as `find_user` (l.1984).
//! - A mailbox starting with `*` is ignored (l.13319); so is a PIN starting with `*`
//!   ([`super::asterisk_pin`]). Anything else that is not a dialable extension is skipped with
//!   a warning, never fatal.
//! - `passwordlocation = spooldir` (in `[general]`, l.15345, or a mailbox's options, l.1700):
//!   the PIN is `[general] password` of `<spool>/<context>/<mailbox>/secret.conf` when that
//!   exists (l.13395-13398, `read_password_from_file` l.15512), else the one in voicemail.conf.
//!   Those files are watched like includes.
//! - SIP secrets come from pjsip.conf or sip.conf ([`super::sip_secrets`]): the configured
//!   ones, else those beside voicemail.conf (Asterisk's config folder) when present; without a
//!   secret a user's login is refused by the flow.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::asterisk_conf::{self, Parsed};
use super::reload::{Loader, Reloading, Users};
use super::{User, asterisk_pin, sip_secrets, valid_extension};
use crate::config::DirectoryConfig;
use crate::secret::Secret;

/// Asterisk's spool folder for voicemail (`ast_config_AST_SPOOL_DIR` + `/voicemail`).
pub const DEFAULT_SPOOL: &str = "/var/spool/asterisk/voicemail";

/// Everything the voicemail-conf backend reads.
#[derive(Debug, Clone)]
pub struct Source {
    pub voicemail_conf: PathBuf,
    /// `None`: `default` (or every context when the file says `searchcontexts = yes`);
    /// `Some("*")`: every context.
    pub context: Option<String>,
    pub spool: PathBuf,
    pub pjsip_conf: Option<PathBuf>,
    pub sip_conf: Option<PathBuf>,
}

impl Source {
    pub fn new(voicemail_conf: PathBuf, context: Option<String>) -> Self {
        Self {
            voicemail_conf,
            context,
            spool: PathBuf::from(DEFAULT_SPOOL),
            pjsip_conf: None,
            sip_conf: None,
        }
    }

    pub fn from_config(config: &DirectoryConfig) -> Result<Self, String> {
        let path = config
            .voicemail_conf
            .clone()
            .ok_or("no [directory] voicemail_conf")?;
        let mut source = Self::new(path, config.context.clone());
        if let Some(spool) = &config.spool {
            source.spool = spool.clone();
        }
        // Asterisk keeps pjsip.conf and sip.conf in the same folder as voicemail.conf; they are
        // used from there unless configured.
        let beside = |name: &str| {
            let p = source.voicemail_conf.parent()?.join(name);
            p.is_file().then_some(p)
        };
        source.pjsip_conf = config.pjsip_conf.clone().or_else(|| beside("pjsip.conf"));
        source.sip_conf = config.sip_conf.clone().or_else(|| beside("sip.conf"));
        Ok(source)
    }
}

/// What one read found.
pub struct Loaded {
    pub users: Users,
    pub files: Vec<PathBuf>,
    pub warnings: Vec<String>,
    /// Users that have a SIP secret.
    pub with_secret: usize,
}

/// The voicemail-conf directory, re-read when any file it read changes (an error stops
/// start-up; later, the previous version stays).
pub fn open(source: Source, poll: Duration) -> Result<Reloading, String> {
    let loader: Loader = Arc::new(move || load(&source).map(|l| (l.users, l.files)));
    Reloading::start("voicemail.conf", loader, poll)
}

/// Reads `path` (and includes) with the default settings; returns the mailboxes and every
/// file read.
pub fn parse_file(path: &Path, context: Option<&str>) -> Result<(Users, Vec<PathBuf>), String> {
    load(&Source::new(path.to_owned(), context.map(str::to_owned))).map(|l| (l.users, l.files))
}

pub fn load(source: &Source) -> Result<Loaded, String> {
    let conf = asterisk_conf::read(&source.voicemail_conf)?;
    let mut files = conf.files.clone();
    let mut warnings = conf.warnings.clone();
    let secrets = sip_secrets_of(source, &mut files, &mut warnings)?;
    let mut users = read_mailboxes(&conf, source, &mut files, &mut warnings);
    for w in &warnings {
        tracing::warn!("{w}");
    }
    let mut with_secret = 0;
    for user in users.values_mut() {
        if let Some(line) = secrets.get(&user.extension) {
            let user = Arc::make_mut(user);
            user.sip_password = line.secret.clone();
            user.sip_username = line.username.clone();
            with_secret += 1;
        }
    }
    Ok(Loaded {
        users,
        files,
        warnings,
        with_secret,
    })
}

fn sip_secrets_of(
    source: &Source,
    files: &mut Vec<PathBuf>,
    warnings: &mut Vec<String>,
) -> Result<HashMap<String, sip_secrets::SipLine>, String> {
    let mut secrets = HashMap::new();
    if let Some(path) = &source.pjsip_conf {
        let conf = asterisk_conf::read(path)?;
        files.extend(conf.files.iter().cloned());
        warnings.extend(conf.warnings.iter().cloned());
        let before = warnings.len();
        secrets = sip_secrets::from_pjsip(&conf, warnings);
        for w in &mut warnings[before..] {
            *w = format!("{}: {w}", path.display());
        }
    }
    if let Some(path) = &source.sip_conf {
        let conf = asterisk_conf::read(path)?;
        files.extend(conf.files.iter().cloned());
        warnings.extend(conf.warnings.iter().cloned());
        for (peer, secret) in sip_secrets::from_sip(&conf) {
            secrets.entry(peer).or_insert(secret);
        }
    }
    Ok(secrets)
}

fn yes(value: Option<&str>) -> bool {
    value.is_some_and(|v| {
        ["yes", "true", "y", "t", "1", "on"]
            .iter()
            .any(|y| v.eq_ignore_ascii_case(y))
    })
}

fn read_mailboxes(
    conf: &Parsed,
    source: &Source,
    files: &mut Vec<PathBuf>,
    warnings: &mut Vec<String>,
) -> Users {
    let aliases = conf.value("general", "aliasescontext").unwrap_or("");
    let spooldir_everywhere = conf
        .value("general", "passwordlocation")
        .is_some_and(|v| v.eq_ignore_ascii_case("spooldir"));
    let every_context = match source.context.as_deref() {
        Some("*") => true,
        Some(_) => false,
        None => yes(conf.value("general", "searchcontexts")),
    };
    let wanted = source.context.as_deref().unwrap_or("default");
    let mut users: Users = HashMap::new();
    for section in &conf.sections {
        let name = section.name.as_str();
        let special = ["general", "zonemessages"]
            .iter()
            .any(|s| name.eq_ignore_ascii_case(s))
            || (!aliases.is_empty() && name.eq_ignore_ascii_case(aliases));
        // FreePBX writes `[pbxaliases]` and `[device]` beside the contexts
        // (Voicemail.class.php saveVoicemail); they hold no mailboxes even when every
        // context is searched.
        let freepbx = ["pbxaliases", "device"]
            .iter()
            .any(|s| name.eq_ignore_ascii_case(s));
        if section.template || special || (every_context && freepbx) {
            continue;
        }
        if !every_context && !name.eq_ignore_ascii_case(wanted) {
            continue;
        }
        for var in &section.vars {
            let mailbox = var.name.as_str();
            let what = || format!("{}: [{name}] mailbox `{}`", var.at, mailbox.escape_debug());
            if mailbox.starts_with('*') || !valid_extension(mailbox) {
                warnings.push(format!(
                    "{}: not a dialable mailbox number; skipped",
                    what()
                ));
                continue;
            }
            let mut fields = var.value.splitn(5, ',');
            let mut pin = fields.next().unwrap_or("").trim().to_owned();
            let full_name = fields.next().unwrap_or("").trim();
            let options = fields.nth(2).unwrap_or("");
            if spooldir_everywhere || spooldir_option(options) {
                let secret = source.spool.join(name).join(mailbox).join("secret.conf");
                if let Some(p) = read_secret_conf(&secret, files, warnings) {
                    pin = p;
                }
            }
            let voicemail_pin = match asterisk_pin(&pin) {
                Ok(p) => p,
                Err(_) => {
                    warnings.push(format!("{}: its PIN starts with '*'; skipped", what()));
                    continue;
                }
            };
            let user = User {
                extension: mailbox.to_owned(),
                name: if full_name.is_empty() {
                    mailbox.to_owned()
                } else {
                    full_name.to_owned()
                },
                voicemail_pin,
                sip_password: Secret::default(),
                sip_username: None,
                template: None,
                pin_hash: None,
            };
            // The first context (and the first line) that defines a mailbox wins, as
            // `find_or_create` keeps the first.
            users
                .entry(user.extension.clone())
                .or_insert_with(|| Arc::new(user));
        }
    }
    users
}

/// `passwordlocation=spooldir` among a mailbox's `|`-separated options (`apply_options`).
fn spooldir_option(options: &str) -> bool {
    options.split('|').any(|o| {
        o.split_once('=').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("passwordlocation")
                && v.trim().eq_ignore_ascii_case("spooldir")
        })
    })
}

/// `[general] password` of a mailbox's secret.conf; `None` when it is missing or has none
/// (Asterisk then uses voicemail.conf's). The file is watched either way.
fn read_secret_conf(
    path: &Path,
    files: &mut Vec<PathBuf>,
    warnings: &mut Vec<String>,
) -> Option<String> {
    if !path.exists() {
        files.push(path.to_owned());
        return None;
    }
    match asterisk_conf::read(path) {
        Ok(conf) => {
            files.extend(conf.files.iter().cloned());
            warnings.extend(conf.warnings.iter().cloned());
            conf.value("general", "password").map(str::to_owned)
        }
        Err(e) => {
            files.push(path.to_owned());
            warnings.push(format!("{e}; using the PIN in voicemail.conf"));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
[General]
format=wav49|gsm|wav
maxmsg=100 ; inline comment
aliasescontext = myaliases

[ZoneMessages]
eastern=America/New_York|'vm-received' Q 'digits/at' IMp

;-- a block comment
1999 => 0000,Not Real
--;
[default]
1001 => 4242,Ada Lovelace,ada@example.com,,attach=yes|saycid=yes
1002 => -8642,Grace Hopper ; unchangeable PIN
1003 => ,No Pin User
1004=1357,FreePBX Style,,,attach=no
1008=*999,Star Pin
*77 => 1234,Star Mailbox
a stray line without an equals sign
#include \"more.conf\"
#tryinclude \"missing.conf\"

[myaliases]
1234@devices => 1234@default

[other](+)
1001 => 9999,Shadowed
2001 => 1111,Other Context
";

    fn write(dir: &Path) -> PathBuf {
        std::fs::write(
            dir.join("more.conf"),
            "[default]\n1005 => 2468,From Include\n",
        )
        .unwrap();
        let p = dir.join("voicemail.conf");
        std::fs::write(&p, SAMPLE.replace("[other](+)", "[other]")).unwrap();
        p
    }

    fn pin(users: &Users, e: &str) -> Option<String> {
        users[e]
            .voicemail_pin
            .as_ref()
            .map(|p| p.expose().to_owned())
    }

    #[test]
    fn reads_mailboxes_like_asterisk() {
        let dir = tempfile::tempdir().unwrap();
        let l = load(&Source::new(write(dir.path()), None)).unwrap();
        let users = &l.users;
        assert_eq!(
            l.files.len(),
            3,
            "the include and the missing tryinclude are watched"
        );
        assert_eq!(users["1001"].name, "Ada Lovelace");
        assert_eq!(
            pin(users, "1001").as_deref(),
            Some("4242"),
            "default context only"
        );
        assert_eq!(pin(users, "1002").as_deref(), Some("8642"));
        assert_eq!(users["1002"].name, "Grace Hopper");
        assert_eq!(pin(users, "1003"), None);
        assert_eq!(pin(users, "1004").as_deref(), Some("1357"));
        assert_eq!(users["1005"].name, "From Include");
        assert!(!users.contains_key("2001"), "[other] is another tenant");
        assert!(!users.contains_key("1999"), "block comments are skipped");
        assert!(!users.contains_key("format"), "[General] is not a context");
        assert!(!users.contains_key("eastern"), "[ZoneMessages] neither");
        let mut keys: Vec<_> = users.keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, ["1001", "1002", "1003", "1004", "1005"]);
        assert!(users.values().all(|u| u.sip_password.is_empty()));
        // The stray line, the '*' mailbox and the '*' PIN are warnings with their place.
        let w = l.warnings.join("\n");
        assert!(w.contains("voicemail.conf:19"), "{w}");
        assert!(
            w.contains("voicemail.conf:18: [default] mailbox `*77`"),
            "{w}"
        );
        assert!(
            w.contains("voicemail.conf:17: [default] mailbox `1008`"),
            "{w}"
        );
        assert_eq!(l.warnings.len(), 3, "{w}");
    }

    #[test]
    fn context_choice() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path());
        let (users, _) = parse_file(&p, Some("other")).unwrap();
        let mut keys: Vec<_> = users.keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, ["1001", "2001"]);
        assert_eq!(users["1001"].name, "Shadowed");
        let (users, _) = parse_file(&p, Some("OTHER")).unwrap();
        assert_eq!(users.len(), 2, "contexts compare case-insensitively");
        // Every context: an explicit choice, or the file's own searchcontexts.
        let (users, _) = parse_file(&p, Some("*")).unwrap();
        assert_eq!(users["1001"].name, "Ada Lovelace", "the first context wins");
        assert!(users.contains_key("2001"));
        let text = std::fs::read_to_string(&p)
            .unwrap()
            .replace("[General]", "[General]\nsearchcontexts = yes");
        std::fs::write(&p, text).unwrap();
        assert!(parse_file(&p, None).unwrap().0.contains_key("2001"));
    }

    #[test]
    fn aliases_are_skipped_only_when_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v.conf");
        std::fs::write(&p, "[default]\n1234 => 1,a\n1234@devices => 1234@default\n").unwrap();
        // Not an alias context here: Asterisk would load a mailbox `1234@devices`; hotdesk
        // skips it with a warning, and keeps the rest.
        let l = load(&Source::new(p, None)).unwrap();
        assert_eq!(l.users.len(), 1);
        assert_eq!(l.warnings.len(), 1);
    }

    #[test]
    fn spooldir_secrets_override_and_are_watched() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("voicemail.conf");
        std::fs::write(
            &p,
            "[general]\npasswordlocation = spooldir\n[default]\n1001 => 1111,Ada\n1002 => 2222,Grace\n",
        )
        .unwrap();
        let spool = dir.path().join("spool");
        std::fs::create_dir_all(spool.join("default/1001")).unwrap();
        std::fs::write(
            spool.join("default/1001/secret.conf"),
            "[general]\npassword=-5151\n",
        )
        .unwrap();
        let mut source = Source::new(p.clone(), None);
        source.spool = spool.clone();
        let l = load(&source).unwrap();
        assert_eq!(
            pin(&l.users, "1001").as_deref(),
            Some("5151"),
            "secret.conf wins"
        );
        assert_eq!(
            pin(&l.users, "1002").as_deref(),
            Some("2222"),
            "no secret.conf: voicemail.conf's"
        );
        assert!(l.files.contains(&spool.join("default/1001/secret.conf")));
        assert!(
            l.files.contains(&spool.join("default/1002/secret.conf")),
            "a secret.conf that appears later is noticed"
        );
        // Per mailbox, in the options field.
        std::fs::write(
            &p,
            "[default]\n1001 => 1111,Ada,,,attach=no|passwordlocation=spooldir\n",
        )
        .unwrap();
        assert_eq!(
            pin(&load(&source).unwrap().users, "1001").as_deref(),
            Some("5151")
        );
    }

    #[test]
    fn sip_secrets_from_pjsip_and_sip_conf() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("voicemail.conf");
        std::fs::write(
            &p,
            "[default]\n1001 => 1,Ada\n1002 => 2,Grace\n1003 => 3,Nobody\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("pjsip.conf"),
            "[1001]\ntype=endpoint\nauth=1001\n[1001](+)\n#include pjsip_auth.conf\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("pjsip_auth.conf"),
            "[1001-a]\ntype=auth\nusername=1001\npassword=pj1001\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("sip.conf"),
            "[1002]\ntype=friend\nsecret=cs1002\n",
        )
        .unwrap();
        let mut source = Source::new(p, None);
        source.pjsip_conf = Some(dir.path().join("pjsip.conf"));
        source.sip_conf = Some(dir.path().join("sip.conf"));
        let l = load(&source).unwrap();
        // 1001's endpoint names auth `1001`, which is an endpoint, not an auth section.
        assert!(l.users["1001"].sip_password.is_empty());
        assert_eq!(l.users["1002"].sip_password.expose(), "cs1002");
        assert!(l.users["1003"].sip_password.is_empty());
        std::fs::write(
            dir.path().join("pjsip.conf"),
            "[1001]\ntype=endpoint\nauth=1001-a\n#include pjsip_auth.conf\n",
        )
        .unwrap();
        let l = load(&source).unwrap();
        assert_eq!(l.users["1001"].sip_password.expose(), "pj1001");
        assert_eq!(l.with_secret, 2);
        assert!(l.files.iter().any(|f| f.ends_with("pjsip_auth.conf")));
    }

    #[tokio::test]
    async fn a_pin_changed_in_the_spool_is_read_again() {
        use crate::directory::Directory;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("voicemail.conf");
        std::fs::write(
            &p,
            "[general]\npasswordlocation=spooldir\n[default]\n1001 => 1111,Ada\n",
        )
        .unwrap();
        let mut source = Source::new(p, None);
        source.spool = dir.path().join("spool");
        let d = open(source, Duration::from_millis(20)).unwrap();
        let mut changes = d.changes().unwrap();
        let current = |d: &Reloading| d.get("1001").unwrap().voicemail_pin.clone().unwrap();
        assert_eq!(current(&d).expose(), "1111");
        // VoiceMailMain writes the new PIN into the spool (it did not exist before).
        let box_dir = dir.path().join("spool/default/1001");
        std::fs::create_dir_all(&box_dir).unwrap();
        std::fs::write(box_dir.join("secret.conf"), "[general]\npassword=2468\n").unwrap();
        tokio::time::timeout(Duration::from_secs(5), changes.changed())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(current(&d).expose(), "2468");
        assert!(d.lookup("1001").await.unwrap().is_some());
    }

    /// Asterisk's own sample loads: vendored beside the project when present
    /// (../shared/vendors/asterisk/voicemail.conf.sample, asterisk/asterisk at f0c1c1a7b7).
    #[test]
    fn asterisk_stock_sample_loads() {
        let sample = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/vendors/asterisk/voicemail.conf.sample");
        if !sample.exists() {
            eprintln!("skipped: {} not present", sample.display());
            return;
        }
        let l = load(&Source::new(sample.clone(), None)).unwrap();
        assert_eq!(l.users.len(), 1, "[default] holds one mailbox");
        assert_eq!(l.users["1234"].name, "Example Mailbox");
        assert_eq!(pin(&l.users, "1234").as_deref(), Some("4242"));
        // aliasescontext is commented out in the sample, so [myaliases] is a context; it is
        // not searched by default. Every context: [other] 1234 loses to [default] 1234.
        let all = parse_file(&sample, Some("*")).unwrap().0;
        assert_eq!(pin(&all, "1234").as_deref(), Some("4242"));
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    }
}
