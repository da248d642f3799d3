//! The embedded directory (`[directory] kind = "embedded"`): users kept in hotdesk's own
//! store, PINs as argon2 hashes, SIP secrets sealed with `users.key` beside the database.
//! Lookups answer from memory; the memory is rebuilt after every change made here and when
//! another process (`hotdesk import-users`) changed the users (a generation counter, polled).

pub mod import;
pub mod sealing;
pub mod secrets;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::watch;

use super::{BoxFuture, Directory, DirectoryError, User, valid_extension};
use crate::secret::Secret;
use crate::store::{AuditEvent, EventKind, SqliteStore, StoredUser, UserWrite};
use sealing::SealKey;

/// What the admin API shows of a user: never a secret, only whether one is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserRecord {
    pub extension: String,
    pub name: String,
    pub template: Option<String>,
    pub enabled: bool,
    pub email: Option<String>,
    pub has_pin: bool,
    pub has_sip_secret: bool,
    #[serde(serialize_with = "rfc3339")]
    pub created: OffsetDateTime,
    #[serde(serialize_with = "rfc3339")]
    pub updated: OffsetDateTime,
}

fn rfc3339<S: serde::Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
    use time::format_description::well_known::Rfc3339;
    s.serialize_str(&t.format(&Rfc3339).unwrap_or_default())
}

/// Why a change to the users was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsersError {
    #[error("no user with extension {0}")]
    NotFound(String),
    #[error("extension {0} already exists")]
    Exists(String),
    #[error("{0}")]
    Invalid(String),
    #[error("the users could not be saved: {0}")]
    Store(String),
}

/// Who made a change, for the audit trail (`admin API (key ops)`, `import-users`).
pub type Actor<'a> = &'a str;

struct Entry {
    record: UserRecord,
    user: Arc<User>,
    stored: StoredUser,
}

type Entries = HashMap<String, Entry>;

/// The key file beside the database.
pub fn key_file(store_path: &Path) -> PathBuf {
    store_path.with_file_name("users.key")
}

/// Opens `users.key`: made on first use, but never silently replaced while the store holds
/// secrets sealed with it (a new key could not open them).
pub fn open_key(store: &SqliteStore, store_path: &Path) -> Result<SealKey, String> {
    let file = key_file(store_path);
    let (_, users) = store.load_users().map_err(|e| e.to_string())?;
    let sealed = users.iter().filter(|u| u.sip_secret.is_some()).count();
    if sealed > 0 && !file.exists() {
        return Err(format!(
            "{} is missing beside {}, which holds {sealed} sealed SIP secret(s); restore users.key from your backup (a new key cannot open them)",
            file.display(),
            store_path.display()
        ));
    }
    SealKey::load_or_create(&file, sealed == 0)
}

fn build(key: &SealKey, rows: Vec<StoredUser>) -> Result<Entries, String> {
    let mut out = HashMap::with_capacity(rows.len());
    for row in rows {
        let sip_password = match &row.sip_secret {
            Some(sealed) => key
                .open(&row.extension, sealed)
                .map_err(|e| format!("user {}: {e}", row.extension))?,
            None => Secret::default(),
        };
        let user = Arc::new(User {
            extension: row.extension.clone(),
            name: row.name.clone(),
            voicemail_pin: None,
            sip_password,
            sip_username: None,
            template: row.template.clone(),
            pin_hash: row.pin_hash.as_deref().map(Arc::from),
        });
        let record = UserRecord {
            extension: row.extension.clone(),
            name: row.name.clone(),
            template: row.template.clone(),
            enabled: row.enabled,
            email: row.email.clone(),
            has_pin: row.pin_hash.is_some(),
            has_sip_secret: row.sip_secret.is_some(),
            created: row.created,
            updated: row.updated,
        };
        out.insert(
            row.extension.clone(),
            Entry {
                record,
                user,
                stored: row,
            },
        );
    }
    Ok(out)
}

/// The users of the store, in memory; a [`Directory`] backend.
pub struct Embedded {
    store: Arc<SqliteStore>,
    key: Arc<SealKey>,
    entries: RwLock<Arc<Entries>>,
    generation: std::sync::atomic::AtomicI64,
    changes: watch::Sender<u64>,
}

/// A new user, checked by [`NewUser::check`].
#[derive(Debug, Clone, Default)]
pub struct NewUser {
    pub extension: String,
    pub name: String,
    pub pin: Option<Secret>,
    pub sip_secret: Option<Secret>,
    pub template: Option<String>,
    pub email: Option<String>,
    pub enabled: bool,
}

/// Changes to a user's plain fields; `Some("")` clears `template` and `email`.
#[derive(Debug, Clone, Default)]
pub struct Patch {
    pub name: Option<String>,
    pub template: Option<String>,
    pub email: Option<String>,
    pub enabled: Option<bool>,
}

/// A display name: one line, not empty, at most 100 characters. (Other control characters
/// pass, as from a directory file: every screen and file escapes or drops them.)
pub fn check_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() || name.chars().count() > 100 || name.contains(['\r', '\n', '\0']) {
        return Err("name must be 1 to 100 characters on one line".into());
    }
    Ok(())
}

/// An email address as far as hotdesk cares: one `@`, no spaces or control characters.
pub fn check_email(email: &str) -> Result<(), String> {
    let ok = email.len() <= 254
        && email.matches('@').count() == 1
        && !email.starts_with('@')
        && !email.ends_with('@')
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not an email address",
            email.escape_debug()
        ))
    }
}

/// A template name: letters, digits, `-` and `_` (it names a file).
pub fn check_template(template: &str) -> Result<(), String> {
    let ok = !template.is_empty()
        && template.len() <= 64
        && template
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "template `{}` must be letters, digits, - and _",
            template.escape_debug()
        ))
    }
}

impl NewUser {
    /// Everything but the PIN's strength (imports keep legacy PINs; the API checks it).
    pub fn check(&self) -> Result<(), String> {
        if !valid_extension(&self.extension) {
            return Err(format!(
                "extension `{}` must be up to 32 digits, * and #, with an optional leading +",
                self.extension.escape_debug()
            ));
        }
        check_name(&self.name)?;
        if let Some(pin) = &self.pin {
            let p = pin.expose();
            if p.is_empty() || p.len() > secrets::PIN_MAX || !p.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(format!("a PIN must be 1 to {} digits", secrets::PIN_MAX));
            }
        }
        if let Some(s) = &self.sip_secret
            && (s.is_empty() || s.expose().len() > 128 || s.expose().chars().any(char::is_control))
        {
            return Err(
                "a SIP secret must be 1 to 128 characters without control characters".into(),
            );
        }
        if let Some(t) = &self.template {
            check_template(t)?;
        }
        if let Some(e) = &self.email {
            check_email(e)?;
        }
        Ok(())
    }

    /// The row for the store: the PIN hashed (argon2, slow: call off the tokio workers),
    /// the SIP secret sealed.
    pub fn to_stored(&self, key: &SealKey, now: OffsetDateTime) -> Result<StoredUser, String> {
        let pin_hash = self
            .pin
            .as_ref()
            .map(|p| crate::auth::hash_password(p.expose()))
            .transpose()?;
        let sip_secret = self
            .sip_secret
            .as_ref()
            .map(|s| key.seal(&self.extension, s))
            .transpose()?;
        Ok(StoredUser {
            extension: self.extension.clone(),
            name: self.name.clone(),
            pin_hash,
            sip_secret,
            template: self.template.clone(),
            enabled: self.enabled,
            email: self.email.clone(),
            created: now,
            updated: now,
        })
    }
}

fn event(actor: Actor<'_>, extension: &str, what: &str) -> AuditEvent {
    let mut e = AuditEvent::new(EventKind::UserChanged, format!("{actor}: {what}"));
    e.extension = Some(extension.to_owned());
    e
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, UsersError> + Send + 'static,
) -> Result<T, UsersError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| UsersError::Store(e.to_string()))?
}

impl Embedded {
    /// Loads the users (a SIP secret that does not open stops start-up) and polls the
    /// store's generation every `poll` for other processes' changes.
    pub fn open(
        store: Arc<SqliteStore>,
        key: SealKey,
        poll: Duration,
    ) -> Result<Arc<Self>, String> {
        let (generation, rows) = store.load_users().map_err(|e| e.to_string())?;
        let entries = build(&key, rows)?;
        let (tx, _) = watch::channel(0);
        let me = Arc::new(Self {
            store,
            key: Arc::new(key),
            entries: RwLock::new(Arc::new(entries)),
            generation: generation.into(),
            changes: tx,
        });
        let weak = Arc::downgrade(&me);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(poll);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(me) = weak.upgrade() else { return };
                let store = me.store.clone();
                let Ok(Ok(now)) =
                    tokio::task::spawn_blocking(move || store.users_generation()).await
                else {
                    continue;
                };
                if now != me.generation.load(std::sync::atomic::Ordering::Acquire)
                    && let Err(e) = me.reload().await
                {
                    tracing::error!(error = %e, "embedded directory not reloaded; keeping the previous users");
                }
            }
        });
        Ok(me)
    }

    pub fn key(&self) -> &SealKey {
        &self.key
    }

    pub fn len(&self) -> usize {
        self.snapshot().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn snapshot(&self) -> Arc<Entries> {
        self.entries
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Re-reads every user from the store and tells the cache in front.
    pub async fn reload(&self) -> Result<(), UsersError> {
        let store = self.store.clone();
        let key = self.key.clone();
        let (generation, entries) = blocking(move || {
            let (g, rows) = store
                .load_users()
                .map_err(|e| UsersError::Store(e.to_string()))?;
            Ok((g, build(&key, rows).map_err(UsersError::Store)?))
        })
        .await?;
        let count = entries.len();
        *self.entries.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(entries);
        self.generation
            .store(generation, std::sync::atomic::Ordering::Release);
        self.changes.send_modify(|n| *n += 1);
        tracing::info!(users = count, "embedded directory loaded");
        Ok(())
    }

    /// Every user, in extension order.
    pub fn list(&self) -> Vec<UserRecord> {
        let mut out: Vec<UserRecord> = self.snapshot().values().map(|e| e.record.clone()).collect();
        out.sort_by(|a, b| a.extension.cmp(&b.extension));
        out
    }

    pub fn get(&self, extension: &str) -> Option<UserRecord> {
        self.snapshot().get(extension).map(|e| e.record.clone())
    }

    async fn write(
        &self,
        writes: Vec<UserWrite>,
        events: Vec<AuditEvent>,
    ) -> Result<(), UsersError> {
        let store = self.store.clone();
        blocking(move || {
            store
                .write_users(&writes, &events)
                .map_err(|e| UsersError::Store(e.to_string()))
        })
        .await?;
        self.reload().await
    }

    fn stored(&self, extension: &str) -> Result<StoredUser, UsersError> {
        self.snapshot()
            .get(extension)
            .map(|e| e.stored.clone())
            .ok_or_else(|| UsersError::NotFound(extension.to_owned()))
    }

    /// Adds a user; `Exists` when the extension is taken.
    pub async fn create(&self, user: NewUser, actor: Actor<'_>) -> Result<UserRecord, UsersError> {
        user.check().map_err(UsersError::Invalid)?;
        if self.snapshot().contains_key(&user.extension) {
            return Err(UsersError::Exists(user.extension));
        }
        let key = self.key.clone();
        let ext = user.extension.clone();
        let row = blocking(move || {
            user.to_stored(&key, OffsetDateTime::now_utc())
                .map_err(UsersError::Invalid)
        })
        .await?;
        let ev = event(actor, &ext, "user created");
        self.write(
            vec![UserWrite::Put {
                user: row,
                keep_secrets: false,
            }],
            vec![ev],
        )
        .await?;
        self.get(&ext).ok_or(UsersError::NotFound(ext))
    }

    /// Changes plain fields; says what changed in the audit trail (never a secret).
    pub async fn update(
        &self,
        extension: &str,
        patch: Patch,
        actor: Actor<'_>,
    ) -> Result<UserRecord, UsersError> {
        let mut row = self.stored(extension)?;
        let asked = patch.name.is_some()
            || patch.template.is_some()
            || patch.email.is_some()
            || patch.enabled.is_some();
        if !asked {
            return Err(UsersError::Invalid(
                "nothing to change: give name, template, email or enabled".into(),
            ));
        }
        let mut changed = Vec::new();
        if let Some(name) = patch.name {
            check_name(&name).map_err(UsersError::Invalid)?;
            row.name = name;
            changed.push("name".to_owned());
        }
        if let Some(t) = patch.template {
            if !t.is_empty() {
                check_template(&t).map_err(UsersError::Invalid)?;
            }
            row.template = (!t.is_empty()).then_some(t);
            changed.push("template".to_owned());
        }
        if let Some(e) = patch.email {
            if !e.is_empty() {
                check_email(&e).map_err(UsersError::Invalid)?;
            }
            row.email = (!e.is_empty()).then_some(e);
            changed.push("email".to_owned());
        }
        if let Some(enabled) = patch.enabled
            && enabled != row.enabled
        {
            row.enabled = enabled;
            changed.push(if enabled { "enabled" } else { "disabled" }.to_owned());
        }
        if changed.is_empty() {
            // Already so (disabling a disabled user): nothing to write or audit.
            return self
                .get(extension)
                .ok_or_else(|| UsersError::NotFound(extension.to_owned()));
        }
        row.updated = OffsetDateTime::now_utc();
        let ev = event(
            actor,
            extension,
            &format!("user changed: {}", changed.join(", ")),
        );
        self.write(
            vec![UserWrite::Put {
                user: row,
                keep_secrets: false,
            }],
            vec![ev],
        )
        .await?;
        self.get(extension)
            .ok_or_else(|| UsersError::NotFound(extension.to_owned()))
    }

    pub async fn delete(&self, extension: &str, actor: Actor<'_>) -> Result<(), UsersError> {
        self.stored(extension)?;
        let ev = event(actor, extension, "user deleted");
        self.write(vec![UserWrite::Delete(extension.to_owned())], vec![ev])
            .await
    }

    /// Replaces the PIN (hashed here; the caller checked its strength). `how` goes to the
    /// audit trail (`generated`, `chosen`).
    pub async fn set_pin(
        &self,
        extension: &str,
        pin: Secret,
        how: &str,
        actor: Actor<'_>,
    ) -> Result<(), UsersError> {
        let mut row = self.stored(extension)?;
        let hash =
            blocking(move || crate::auth::hash_password(pin.expose()).map_err(UsersError::Invalid))
                .await?;
        row.pin_hash = Some(hash);
        row.updated = OffsetDateTime::now_utc();
        let ev = event(actor, extension, &format!("PIN set ({how})"));
        self.write(
            vec![UserWrite::Put {
                user: row,
                keep_secrets: false,
            }],
            vec![ev],
        )
        .await
    }

    /// Replaces the SIP secret (sealed here).
    pub async fn set_sip_secret(
        &self,
        extension: &str,
        secret: Secret,
        how: &str,
        actor: Actor<'_>,
    ) -> Result<(), UsersError> {
        let mut row = self.stored(extension)?;
        row.sip_secret = Some(
            self.key
                .seal(extension, &secret)
                .map_err(UsersError::Store)?,
        );
        row.updated = OffsetDateTime::now_utc();
        let ev = event(actor, extension, &format!("SIP secret set ({how})"));
        self.write(
            vec![UserWrite::Put {
                user: row,
                keep_secrets: false,
            }],
            vec![ev],
        )
        .await
    }

    /// Imports checked users in one transaction (see [`import`]).
    pub async fn import(&self, users: Vec<NewUser>, actor: &str) -> Result<usize, UsersError> {
        let store = self.store.clone();
        let key = self.key.clone();
        let actor = actor.to_owned();
        let n = blocking(move || {
            import::write(&store, &key, &users, &actor).map_err(UsersError::Invalid)
        })
        .await?;
        self.reload().await?;
        Ok(n)
    }
}

impl Directory for Embedded {
    fn lookup<'a>(
        &'a self,
        extension: &'a str,
    ) -> BoxFuture<'a, Result<Option<Arc<User>>, DirectoryError>> {
        // A disabled user is no user: the phone says what it says for an unknown extension.
        let found = self
            .snapshot()
            .get(extension)
            .filter(|e| e.record.enabled)
            .map(|e| e.user.clone());
        Box::pin(async move { Ok(found) })
    }

    fn changes(&self) -> Option<watch::Receiver<u64>> {
        Some(self.changes.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn users_round_trip_through_the_store_with_secrets_protected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hd.sqlite");
        let store = Arc::new(SqliteStore::open(&path).unwrap());
        let key = open_key(&store, &path).unwrap();
        let d = Embedded::open(store.clone(), key, Duration::from_secs(60)).unwrap();
        let user = NewUser {
            extension: "1001".into(),
            name: "Ada".into(),
            pin: Some(Secret::new("583920")),
            sip_secret: Some(Secret::new("sip-secret-plain-1001")),
            enabled: true,
            ..NewUser::default()
        };
        let rec = d.create(user.clone(), "test").await.unwrap();
        assert!(rec.has_pin && rec.has_sip_secret && rec.enabled);
        assert_eq!(
            d.create(user, "test").await,
            Err(UsersError::Exists("1001".into()))
        );
        let found = d.lookup("1001").await.unwrap().unwrap();
        assert_eq!(found.sip_password.expose(), "sip-secret-plain-1001");
        let (_, rows) = store.load_users().unwrap();
        assert!(
            rows[0]
                .pin_hash
                .as_deref()
                .unwrap()
                .starts_with("$argon2id$")
        );
        let sealed = rows[0].sip_secret.clone().unwrap();
        assert!(!sealed.windows(6).any(|w| w == b"secret"));

        d.update(
            "1001",
            Patch {
                enabled: Some(false),
                ..Patch::default()
            },
            "test",
        )
        .await
        .unwrap();
        assert!(d.lookup("1001").await.unwrap().is_none(), "disabled");
        assert!(!d.get("1001").unwrap().enabled);

        // The key cannot silently be replaced while sealed secrets exist.
        drop(d);
        std::fs::remove_file(key_file(&path)).unwrap();
        let err = open_key(&store, &path).err().unwrap();
        assert!(err.contains("restore users.key"), "{err}");
    }
}
