//! Every current login in memory, written through to the [`Store`]. Decisions that touch
//! several phones (exclusive takeover, the concurrent cap) are serialised by one async
//! lock, so two phones logging the same extension in at once cannot both win.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use tokio::sync::Notify;

use super::{
    AuditEvent, Change, EventKind, Login, NewOutboxItem, OutboxItem, OutboxStatus, Store,
    StoreError, WriteMethod,
};
use crate::config::Policy;
use crate::phone::Mac;

pub struct LoginBook {
    store: Arc<dyn Store>,
    by_mac: RwLock<HashMap<Mac, Arc<Login>>>,
    writer: tokio::sync::Mutex<()>,
    /// Queue a PBX write-back with every login and logout.
    writeback: bool,
    /// Wakes the outbox worker after a commit that queued something.
    outbox_ready: Arc<Notify>,
}

/// The write-back body for a login (`PUT /devices/{mac}`); no secrets.
fn device_body(l: &Login) -> String {
    use time::format_description::well_known::Rfc3339;
    serde_json::json!({
        "extension": l.extension,
        "vendor": l.vendor,
        "model": l.model,
        "template": l.template,
        "network": l.network,
        "since": l.since.format(&Rfc3339).unwrap_or_default(),
    })
    .to_string()
}

#[derive(Debug, thiserror::Error)]
pub enum BookError {
    #[error("extension is already logged in on {0} phones")]
    TooManyDevices(usize),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a successful login changed elsewhere.
#[derive(Debug, Default)]
pub struct LoginOutcome {
    /// Phones the extension was taken from (exclusive policy).
    pub taken_from: Vec<Mac>,
    /// Who was logged in on this phone before, if someone else.
    pub replaced: Option<Arc<Login>>,
}

impl LoginBook {
    /// Loads the stored logins into memory. With `writeback`, every login and logout also
    /// queues a delivery to the PBX in the same transaction.
    pub fn open(store: Arc<dyn Store>, writeback: bool) -> Result<Self, StoreError> {
        let by_mac = store
            .load_logins()?
            .into_iter()
            .map(|l| (l.mac, Arc::new(l)))
            .collect();
        Ok(Self {
            store,
            by_mac: RwLock::new(by_mac),
            writer: tokio::sync::Mutex::new(()),
            writeback,
            outbox_ready: Arc::new(Notify::new()),
        })
    }

    pub fn outbox_ready(&self) -> Arc<Notify> {
        self.outbox_ready.clone()
    }

    fn queue(&self, change: &mut Change, mac: Mac, method: WriteMethod, body: String) {
        if self.writeback {
            change.outbox.push(NewOutboxItem { mac, method, body });
        }
    }

    /// The login on `mac`, from memory.
    pub fn get(&self, mac: &Mac) -> Option<Arc<Login>> {
        self.read().get(mac).cloned()
    }

    /// All logins, oldest first.
    pub fn all(&self) -> Vec<Arc<Login>> {
        let mut all: Vec<_> = self.read().values().cloned().collect();
        all.sort_by(|a, b| a.since.cmp(&b.since).then(a.mac.cmp(&b.mac)));
        all
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Mac, Arc<Login>>> {
        self.by_mac.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Records `login`, applying the policy, and returns once it is durable.
    pub async fn login(
        &self,
        login: Login,
        policy: Policy,
        max_devices: usize,
        detail: &str,
    ) -> Result<LoginOutcome, BookError> {
        let _serial = self.writer.lock().await;
        let elsewhere: Vec<Arc<Login>> = self
            .read()
            .values()
            .filter(|l| l.extension == login.extension && l.mac != login.mac)
            .cloned()
            .collect();
        let mut change = Change::default();
        let mut outcome = LoginOutcome::default();
        match policy {
            Policy::Exclusive => {
                for old in &elsewhere {
                    change.remove.push(old.mac);
                    self.queue(&mut change, old.mac, WriteMethod::Delete, "{}".into());
                    change.events.push(
                        AuditEvent::new(
                            EventKind::Takeover,
                            format!("extension logged in on {}", login.mac),
                        )
                        .about(old),
                    );
                    outcome.taken_from.push(old.mac);
                }
            }
            Policy::Concurrent if elsewhere.len() >= max_devices => {
                return Err(BookError::TooManyDevices(elsewhere.len()));
            }
            Policy::Concurrent => {}
        }
        if let Some(previous) = self.get(&login.mac)
            && previous.extension != login.extension
        {
            change.events.push(
                AuditEvent::new(
                    EventKind::Logout,
                    format!("replaced by extension {}", login.extension),
                )
                .about(&previous),
            );
            outcome.replaced = Some(previous);
        }
        let mut event = AuditEvent::new(EventKind::Login, detail).about(&login);
        event.source_ip = Some(login.source_ip.clone());
        change.events.push(event);
        self.queue(
            &mut change,
            login.mac,
            WriteMethod::Put,
            device_body(&login),
        );
        change.put.push(login.clone());
        self.commit(change).await?;

        let mut map = self.by_mac.write().unwrap_or_else(|e| e.into_inner());
        for mac in &outcome.taken_from {
            map.remove(mac);
        }
        map.insert(login.mac, Arc::new(login));
        Ok(outcome)
    }

    /// The phone fetched its configuration: its login (if any, and not yet) is applied.
    pub async fn mark_applied(&self, mac: Mac) -> Result<(), StoreError> {
        let Some(login) = self.get(&mac).filter(|l| l.applied_at.is_none()) else {
            return Ok(());
        };
        let now = time::OffsetDateTime::now_utc();
        let since = login.since;
        self.blocking(move |s| s.mark_applied(mac, since, now))
            .await?;
        let mut map = self.by_mac.write().unwrap_or_else(|e| e.into_inner());
        // Only the login that was current when we looked (a new login starts unapplied).
        if let Some(current) = map.get_mut(&mac)
            && current.since == login.since
        {
            let mut updated = (**current).clone();
            updated.applied_at = Some(now);
            *current = Arc::new(updated);
        }
        Ok(())
    }

    /// Ends the login on `mac`; `None` when the phone had none.
    pub async fn logout(
        &self,
        mac: Mac,
        kind: EventKind,
        source_ip: &str,
        detail: &str,
    ) -> Result<Option<Arc<Login>>, BookError> {
        let _serial = self.writer.lock().await;
        let Some(current) = self.get(&mac) else {
            return Ok(None);
        };
        let mut event = AuditEvent::new(kind, detail).about(&current);
        event.source_ip = Some(source_ip.to_owned());
        let mut change = Change {
            remove: vec![mac],
            events: vec![event],
            ..Change::default()
        };
        self.queue(&mut change, mac, WriteMethod::Delete, "{}".into());
        self.commit(change).await?;
        self.by_mac
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&mac);
        Ok(Some(current))
    }

    /// Appends events that change no login (failed attempts, lockouts).
    pub async fn note(&self, events: Vec<AuditEvent>) -> Result<(), BookError> {
        self.commit(Change {
            events,
            ..Change::default()
        })
        .await
        .map_err(Into::into)
    }

    pub async fn audit(&self, limit: usize) -> Result<Vec<AuditEvent>, StoreError> {
        self.blocking(move |s| s.audit(limit)).await
    }

    async fn commit(&self, change: Change) -> Result<(), StoreError> {
        let queued = !change.outbox.is_empty();
        self.blocking(move |s| s.commit(&change)).await?;
        if queued {
            self.outbox_ready.notify_one();
        }
        Ok(())
    }

    /// Runs a store call on the blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(store.as_ref()))
            .await
            .map_err(|e| StoreError::Db(e.to_string()))?
    }

    pub async fn outbox_pending(&self, limit: usize) -> Result<Vec<OutboxItem>, StoreError> {
        self.blocking(move |s| s.outbox_pending(limit)).await
    }

    pub async fn outbox_done(&self, id: i64) -> Result<(), StoreError> {
        self.blocking(move |s| s.outbox_done(id)).await
    }

    pub async fn outbox_failed(
        &self,
        id: i64,
        error: String,
        dead: bool,
    ) -> Result<(), StoreError> {
        self.blocking(move |s| s.outbox_failed(id, &error, dead))
            .await
    }

    pub async fn outbox_status(&self) -> Result<OutboxStatus, StoreError> {
        self.blocking(|s| s.outbox_status()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;
    use crate::store::sample_login as login;

    fn book() -> (tempfile::TempDir, Arc<LoginBook>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("s.sqlite")).unwrap());
        (dir, Arc::new(LoginBook::open(store, false).unwrap()))
    }

    #[tokio::test]
    async fn exclusive_takes_the_extension_from_the_other_phone() {
        let (_d, b) = book();
        b.login(login("000000000001", "1001"), Policy::Exclusive, 4, "")
            .await
            .unwrap();
        let out = b
            .login(login("000000000002", "1001"), Policy::Exclusive, 4, "")
            .await
            .unwrap();
        assert_eq!(out.taken_from, vec!["000000000001".parse().unwrap()]);
        assert!(b.get(&"000000000001".parse().unwrap()).is_none());
        let kinds: Vec<_> = b.audit(10).await.unwrap().iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            vec![EventKind::Login, EventKind::Takeover, EventKind::Login]
        );
    }

    #[tokio::test]
    async fn concurrent_caps_devices_and_races_cannot_exceed_it() {
        let (_d, b) = book();
        let tasks: Vec<_> = (1..=6)
            .map(|i| {
                let b = b.clone();
                tokio::spawn(async move {
                    b.login(
                        login(&format!("00000000000{i}"), "1001"),
                        Policy::Concurrent,
                        4,
                        "",
                    )
                    .await
                })
            })
            .collect();
        let mut ok = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => ok += 1,
                Err(BookError::TooManyDevices(n)) => assert_eq!(n, 4),
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(ok, 4);
        assert_eq!(b.all().len(), 4);
    }

    #[tokio::test]
    async fn logout_and_reload_from_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        {
            let b = LoginBook::open(Arc::new(SqliteStore::open(&path).unwrap()), false).unwrap();
            b.login(login("000000000001", "1001"), Policy::Exclusive, 4, "")
                .await
                .unwrap();
            b.login(login("000000000002", "1002"), Policy::Exclusive, 4, "")
                .await
                .unwrap();
            let gone = b
                .logout(
                    "000000000002".parse().unwrap(),
                    EventKind::Logout,
                    "10.0.0.9",
                    "user",
                )
                .await
                .unwrap();
            assert_eq!(gone.unwrap().extension, "1002");
            assert!(
                b.logout("000000000002".parse().unwrap(), EventKind::Logout, "x", "")
                    .await
                    .unwrap()
                    .is_none()
            );
        }
        let b = LoginBook::open(Arc::new(SqliteStore::open(&path).unwrap()), false).unwrap();
        let all = b.all();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].extension, "1001");
    }
}
