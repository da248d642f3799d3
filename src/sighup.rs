//! SIGHUP: re-reading the config file into the running server.
//!
//! Only some settings have an owner that can swap them while requests run: the directory
//! (its source is re-opened, file directories re-read), the TLS certificate files, the
//! provisioning templates, `[networks]` and `[base]`, and the `[login]` lockout limits.
//! Everything else keeps its start-up value until a restart, and the report names it.
//!
//! A reload is checked whole before anything is swapped: with any problem, nothing changes
//! and every problem is reported.

use std::sync::Arc;

use crate::config::{Config, DirectoryConfig, DirectoryKind};
use crate::{App, directory, provision, server};

/// What a reload did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// The reloadable parts now in use (re-read, or changed and swapped in).
    pub applied: Vec<String>,
    /// Changed settings that were not applied: they take a restart.
    pub needs_restart: Vec<String>,
}

/// Why a reload changed nothing: every problem found in the new config.
#[derive(Debug, thiserror::Error)]
#[error("config not reloaded, the running settings stay: {}", .0.join("; "))]
pub struct ReloadRefused(pub Vec<String>);

/// The `[login]` keys a reload applies (the lockout limits).
const LOCKOUT_KEYS: &str = "max_failures, extension_max_failures, max_failures_per_source, admin_max_failures, shared_max_failures, lockout";

impl App {
    /// Applies the reloadable parts of `new` (see the module doc), or none of them.
    /// Blocks while it reads files: call it from `spawn_blocking` (inside a tokio runtime,
    /// because a re-opened directory starts its polling task).
    pub fn reload(&self, new: Config) -> Result<ReloadReport, ReloadRefused> {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        let running = self.live.load_full();
        let next = Arc::new(merge(&running, &new));
        let mut problems = Vec::new();

        if let Err(e) = crate::check_vendors(&new) {
            problems.push(e.to_string());
        }
        // Files are re-read on every reload; a remote directory only when its settings changed
        // (re-opening it would drop the cached entries that carry phones through an outage).
        // The embedded directory lives in the store: it is never re-opened, and switching to or
        // from it needs a restart.
        let embedded =
            [next.directory.kind, running.directory.kind].contains(&DirectoryKind::Embedded);
        if embedded && next.directory.kind != running.directory.kind {
            problems
                .push("directory: switching to or from kind = \"embedded\" needs a restart".into());
        }
        let reopen = !embedded
            && (matches!(
                next.directory.kind,
                DirectoryKind::File | DirectoryKind::VoicemailConf
            ) || next.directory != running.directory);
        let backend = if reopen {
            directory::open_backend(&next.directory)
                .map_err(|e| problems.push(format!("directory: {e}")))
                .ok()
        } else {
            None
        };
        let provisioner = match provision::Provisioner::new(new.provision.templates.as_deref()) {
            Ok(p) => {
                // Reads the directory file again: only worth it when that file is sound.
                if (backend.is_some() || !reopen)
                    && let Err(e) = crate::check_user_templates(&new, &p)
                {
                    problems.push(e.to_string());
                }
                Some(p)
            }
            Err(e) => {
                problems.push(format!("templates: {e}"));
                None
            }
        };
        let certs = match (&next.tls, self.tls_certs.get()) {
            (Some(t), Some(_)) => server::tls::load(&t.cert, &t.key)
                .map(|pair| (pair, t.cert.clone(), t.key.clone()))
                .map_err(|e| problems.push(format!("tls: {e}")))
                .ok(),
            _ => None,
        };
        let Some(provisioner) = provisioner.filter(|_| problems.is_empty()) else {
            return Err(ReloadRefused(problems));
        };

        let mut applied = Vec::new();
        if let Some(backend) = backend {
            self.directory.replace_backend(backend);
            applied.push(if next.directory == running.directory {
                "[directory] re-read".to_owned()
            } else {
                "[directory] changed and re-opened".to_owned()
            });
        }
        if let (Some(holder), Some((pair, cert, key))) = (self.tls_certs.get(), certs) {
            holder.replace(pair, cert, key);
            applied.push("[tls] certificate re-read".into());
        }
        applied.push("[provision] templates re-read".into());
        self.provisioner.replace(provisioner, next.clone());
        for (changed, what) in [
            (next.networks != running.networks, "[networks]"),
            (next.base_profile != running.base_profile, "[base]"),
            (
                crate::flow::lockout_limits(&next) != crate::flow::lockout_limits(&running),
                "[login] lockout limits",
            ),
        ] {
            if changed {
                applied.push(format!("{what} changed"));
            }
        }
        self.flow.set_config(next.clone());
        let needs_restart = needs_restart(&next, &new);
        self.live.store(next);
        Ok(ReloadReport {
            applied,
            needs_restart,
        })
    }

    /// The settings in use now: the start-up config with the reloaded parts replaced.
    pub fn live_config(&self) -> Arc<Config> {
        self.live.load_full()
    }
}

/// `running` with the reloadable parts taken from `new`.
fn merge(running: &Config, new: &Config) -> Config {
    let mut next = running.clone();
    next.networks = new.networks.clone();
    next.base_profile = new.base_profile.clone();
    next.activation = new.activation.clone();
    // The directory's source, not the cache timings (the cache is built once).
    let keep = &running.directory;
    next.directory = DirectoryConfig {
        fresh_ttl: keep.fresh_ttl,
        stale_window: keep.stale_window,
        negative_ttl: keep.negative_ttl,
        deadline: keep.deadline,
        ..new.directory.clone()
    };
    next.provision.templates = new.provision.templates.clone();
    if let (Some(tls), Some(new_tls)) = (&mut next.tls, &new.tls) {
        tls.cert = new_tls.cert.clone();
        tls.key = new_tls.key.clone();
    }
    let (login, new_login) = (&mut next.login, &new.login);
    login.max_failures = new_login.max_failures;
    login.extension_max_failures = new_login.extension_max_failures;
    login.max_failures_per_source = new_login.max_failures_per_source;
    login.admin_max_failures = new_login.admin_max_failures;
    login.shared_max_failures = new_login.shared_max_failures;
    login.lockout = new_login.lockout;
    next
}

/// What still differs between the merged settings and the file: the settings a restart
/// would apply.
fn needs_restart(next: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |differs: bool, what: &str| {
        if differs {
            out.push(what.to_owned());
        }
    };
    check(next.listen != new.listen, "listen");
    check(next.base_url != new.base_url, "base_url");
    check(next.server != new.server, "[server]");
    check(
        next.directory != new.directory,
        "[directory] fresh_ttl, stale_window, negative_ttl, deadline",
    );
    check(next.store != new.store, "[store]");
    check(
        next.login != new.login,
        &format!("[login] (all but {LOCKOUT_KEYS})"),
    );
    check(next.phones != new.phones, "[phones]");
    check(next.admin != new.admin, "[admin]");
    check(next.reload != new.reload, "[reload]");
    check(next.vendors != new.vendors, "[vendors]");
    check(next.writeback != new.writeback, "[writeback]");
    check(
        next.provision != new.provision,
        "[provision] (all but templates)",
    );
    check(next.innovaphone != new.innovaphone, "[innovaphone]");
    check(next.log != new.log, "[log]");
    check(
        next.tls != new.tls,
        "[tls] (all but cert and key, which apply while TLS runs)",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(text: &str) -> Config {
        Config::parse(text, Path::new("x.toml")).unwrap()
    }

    const BASE: &str = r#"
listen = "127.0.0.1:0"
base_url = "http://127.0.0.1:8080/"
[directory]
file = "d.toml"
[store]
path = "s.sqlite"
[networks.internal]
label = "Internal"
sip_server = "10.0.0.5"
[login]
max_failures = 5
"#;

    #[test]
    fn merge_takes_only_the_reloadable_parts() {
        let running = config(BASE);
        let edited = config(
            &BASE
                .replace("10.0.0.5", "10.0.0.9")
                .replace(
                    "max_failures = 5",
                    "max_failures = 2\npolicy = \"concurrent\"",
                )
                .replace("127.0.0.1:0", "127.0.0.1:1")
                .replace("s.sqlite", "t.sqlite"),
        );
        let next = merge(&running, &edited);
        assert_eq!(next.networks["internal"].sip_server, "10.0.0.9");
        assert_eq!(next.login.max_failures, 2);
        assert_eq!(next.login.policy, running.login.policy);
        assert_eq!(next.listen, running.listen);
        assert_eq!(next.store, running.store);
        let restart = needs_restart(&next, &edited);
        assert_eq!(restart.len(), 3, "{restart:?}");
        assert!(restart.iter().any(|r| r == "listen"));
        assert!(restart.iter().any(|r| r == "[store]"));
        assert!(restart.iter().any(|r| r.starts_with("[login] (all but")));
        assert!(needs_restart(&running, &running).is_empty());
    }
}
