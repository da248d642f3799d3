//! Every current login in memory, written through to the [`Store`]. Decisions that touch
//! several phones (exclusive takeover, the concurrent cap) are serialised by one async
//! lock, so two phones logging the same extension in at once cannot both win.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use tokio::sync::Notify;

use super::{
    AuditEvent, AuditFilter, Change, EventKind, Login, NewOutboxItem, OutboxEntry, OutboxItem,
    OutboxStatus, Store, StoreError, WriteMethod,
};

/// Audit events deleted per statement: each batch holds the write lock only briefly.
const PRUNE_BATCH: usize = 1000;
use crate::config::Policy;
use crate::phone::Mac;

type Logins = HashMap<Mac, Vec<Arc<Login>>>;

/// What a committed change does to the logins in memory: removals, then additions.
fn apply(map: &mut Logins, change: &Change) {
    for (mac, identity) in &change.remove {
        if let Some(v) = map.get_mut(mac) {
            v.retain(|l| identity.is_some_and(|i| i != l.identity));
        }
    }
    for login in &change.put {
        let list = map.entry(login.mac).or_default();
        list.retain(|l| l.identity != login.identity);
        list.push(Arc::new(login.clone()));
        list.sort_by_key(|l| l.identity);
    }
    map.retain(|_, v| !v.is_empty());
}

pub struct LoginBook {
    store: Arc<dyn Store>,
    /// Each phone's logins, ordered by identity. Shared with the blocking commit, which
    /// updates it right after the transaction, so memory and disk agree even when the
    /// caller stops waiting.
    by_mac: Arc<RwLock<Logins>>,
    writer: tokio::sync::Mutex<()>,
    /// Queue a PBX write-back with every login and logout.
    writeback: bool,
    /// Wakes the outbox worker after a commit that queued something.
    outbox_ready: Arc<Notify>,
    /// The last reload request sent to each phone.
    reloads: Arc<RwLock<HashMap<Mac, super::ReloadSent>>>,
    /// Bumped after every change to the logins in memory (login, logout, applied, reload),
    /// so that live views (the console) know when to look again.
    changed: Arc<tokio::sync::watch::Sender<u64>>,
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
        "identity": l.identity,
        "since": l.since.format(&Rfc3339).unwrap_or_default(),
    })
    .to_string()
}

#[derive(Debug, thiserror::Error)]
pub enum BookError {
    #[error("extension is already logged in on {0} phones")]
    TooManyDevices(usize),
    #[error("all {0} identities of the phone are in use")]
    NoFreeIdentity(u8),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a successful login changed elsewhere.
#[derive(Debug, Default)]
pub struct LoginOutcome {
    /// Phones the extension was taken from (exclusive policy).
    pub taken_from: Vec<Mac>,
    /// Who was logged in on this phone before, if someone else (one-identity phones).
    pub replaced: Option<Arc<Login>>,
    /// The identity the login got.
    pub identity: u8,
}

impl LoginBook {
    /// Loads the stored logins into memory. With `writeback`, every login and logout also
    /// queues a delivery to the PBX in the same transaction.
    pub fn open(store: Arc<dyn Store>, writeback: bool) -> Result<Self, StoreError> {
        let mut by_mac: HashMap<Mac, Vec<Arc<Login>>> = HashMap::new();
        for l in store.load_logins()? {
            by_mac.entry(l.mac).or_default().push(Arc::new(l));
        }
        for v in by_mac.values_mut() {
            v.sort_by_key(|l| l.identity);
        }
        let reloads = store
            .load_reloads()?
            .into_iter()
            .map(|r| (r.mac, r))
            .collect();
        Ok(Self {
            reloads: Arc::new(RwLock::new(reloads)),
            store,
            by_mac: Arc::new(RwLock::new(by_mac)),
            writer: tokio::sync::Mutex::new(()),
            writeback,
            outbox_ready: Arc::new(Notify::new()),
            changed: Arc::new(tokio::sync::watch::Sender::new(0)),
        })
    }

    /// Changes to the logins in memory: the value is a counter; a receiver sees the latest.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub fn outbox_ready(&self) -> Arc<Notify> {
        self.outbox_ready.clone()
    }

    fn queue(&self, change: &mut Change, mac: Mac, method: WriteMethod, body: String) {
        if self.writeback {
            change.outbox.push(NewOutboxItem { mac, method, body });
        }
    }

    /// The phone's first identity, from memory.
    pub fn get(&self, mac: &Mac) -> Option<Arc<Login>> {
        self.read().get(mac).and_then(|v| v.first().cloned())
    }

    /// Every identity logged in on the phone, in identity order.
    pub fn identities(&self, mac: &Mac) -> Vec<Arc<Login>> {
        self.read().get(mac).cloned().unwrap_or_default()
    }

    /// The last reload request sent to `mac`, if any.
    pub fn last_reload(&self, mac: &Mac) -> Option<super::ReloadSent> {
        self.reloads
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(mac)
            .cloned()
    }

    /// All logins, oldest first.
    pub fn all(&self) -> Vec<Arc<Login>> {
        let mut all: Vec<_> = self.read().values().flatten().cloned().collect();
        all.sort_by(|a, b| {
            a.since
                .cmp(&b.since)
                .then(a.mac.cmp(&b.mac))
                .then(a.identity.cmp(&b.identity))
        });
        all
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Mac, Vec<Arc<Login>>>> {
        self.by_mac.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Mac, Vec<Arc<Login>>>> {
        self.by_mac.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Records `login`, applying the policy, and returns once it is durable. A phone with
    /// `max_identities > 1` keeps its other users and gives the login a free identity; a
    /// one-identity phone's previous user is replaced.
    pub async fn login(
        &self,
        mut login: Login,
        policy: Policy,
        max_devices: usize,
        max_identities: u8,
        detail: &str,
        forgiven: Vec<String>,
    ) -> Result<LoginOutcome, BookError> {
        let _serial = self.writer.lock().await;
        let elsewhere: Vec<Arc<Login>> = self
            .read()
            .values()
            .flatten()
            .filter(|l| l.extension == login.extension && l.mac != login.mac)
            .cloned()
            .collect();
        let here = self.identities(&login.mac);
        let mut change = Change::default();
        let mut outcome = LoginOutcome::default();
        match policy {
            Policy::Exclusive => {
                for old in &elsewhere {
                    change.remove.push((old.mac, Some(old.identity)));
                    let body = serde_json::json!({ "identity": old.identity }).to_string();
                    self.queue(&mut change, old.mac, WriteMethod::Delete, body);
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
        login.identity = if let Some(same) = here.iter().find(|l| l.extension == login.extension) {
            // The same user again: a fresh login in the same identity.
            same.identity
        } else if max_identities > 1 {
            let free = (0..max_identities).find(|i| here.iter().all(|l| l.identity != *i));
            free.ok_or(BookError::NoFreeIdentity(max_identities))?
        } else {
            for previous in &here {
                change.remove.push((previous.mac, Some(previous.identity)));
                let mut event = AuditEvent::new(
                    EventKind::Logout,
                    format!("replaced by extension {}", login.extension),
                )
                .about(previous);
                event.source_ip = Some(login.source_ip.clone());
                change.events.push(event);
                outcome.replaced = Some(previous.clone());
            }
            0
        };
        outcome.identity = login.identity;
        let mut event = AuditEvent::new(EventKind::Login, detail).about(&login);
        event.source_ip = Some(login.source_ip.clone());
        change.events.push(event);
        self.queue(
            &mut change,
            login.mac,
            WriteMethod::Put,
            device_body(&login),
        );
        change.put.push(login);
        change.lockouts_cleared = forgiven;
        self.commit(change).await?;
        Ok(outcome)
    }

    /// The phone fetched its configuration at `at`: its logins from before then are applied.
    pub async fn mark_applied(&self, mac: Mac, at: time::OffsetDateTime) -> Result<(), StoreError> {
        if self
            .identities(&mac)
            .iter()
            .all(|l| l.applied_at.is_some() || l.since > at)
        {
            return Ok(());
        }
        self.blocking(move |s| s.mark_applied(mac, at)).await?;
        if let Some(list) = self.write().get_mut(&mac) {
            for l in list
                .iter_mut()
                .filter(|l| l.applied_at.is_none() && l.since <= at)
            {
                let mut updated = (**l).clone();
                updated.applied_at = Some(at);
                *l = Arc::new(updated);
            }
        }
        self.changed.send_modify(|n| *n += 1);
        Ok(())
    }

    /// Ends every login on `mac`; empty when the phone had none.
    pub async fn logout(
        &self,
        mac: Mac,
        kind: EventKind,
        source_ip: &str,
        detail: &str,
    ) -> Result<Vec<Arc<Login>>, BookError> {
        self.end(mac, None, None, kind, source_ip, detail).await
    }

    /// Ends one identity's login; `None` when that identity had none.
    pub async fn logout_identity(
        &self,
        mac: Mac,
        identity: u8,
        kind: EventKind,
        source_ip: &str,
        detail: &str,
    ) -> Result<Option<Arc<Login>>, BookError> {
        Ok(self
            .end(mac, Some(identity), None, kind, source_ip, detail)
            .await?
            .pop())
    }

    /// Ends one identity's login only if `extension` holds it (checked under the writer
    /// lock, so a login that replaced it meanwhile stays); `None` otherwise.
    pub async fn logout_own(
        &self,
        mac: Mac,
        identity: u8,
        extension: &str,
        kind: EventKind,
        source_ip: &str,
        detail: &str,
    ) -> Result<Option<Arc<Login>>, BookError> {
        Ok(self
            .end(
                mac,
                Some(identity),
                Some(extension),
                kind,
                source_ip,
                detail,
            )
            .await?
            .pop())
    }

    async fn end(
        &self,
        mac: Mac,
        identity: Option<u8>,
        extension: Option<&str>,
        kind: EventKind,
        source_ip: &str,
        detail: &str,
    ) -> Result<Vec<Arc<Login>>, BookError> {
        let _serial = self.writer.lock().await;
        let ending: Vec<Arc<Login>> = self
            .identities(&mac)
            .into_iter()
            .filter(|l| identity.is_none_or(|i| i == l.identity))
            .filter(|l| extension.is_none_or(|e| e == l.extension))
            .collect();
        if ending.is_empty() {
            return Ok(ending);
        }
        let mut change = Change {
            remove: vec![(mac, identity)],
            ..Change::default()
        };
        for l in &ending {
            let mut event = AuditEvent::new(kind, detail).about(l);
            event.source_ip = Some(source_ip.to_owned());
            change.events.push(event);
        }
        let body = match identity {
            Some(i) => serde_json::json!({ "identity": i }).to_string(),
            None => "{}".to_owned(),
        };
        self.queue(&mut change, mac, WriteMethod::Delete, body);
        self.commit(change).await?;
        Ok(ending)
    }

    /// Appends events that change no login (failed attempts, lockouts).
    pub async fn note(&self, events: Vec<AuditEvent>) -> Result<(), BookError> {
        self.record(Change {
            events,
            ..Change::default()
        })
        .await
    }

    /// Commits a change that touches no login (audit events, lockout histories).
    pub async fn record(&self, change: Change) -> Result<(), BookError> {
        self.commit(change).await.map_err(Into::into)
    }

    pub async fn lockouts(&self) -> Result<Vec<super::LockoutRow>, StoreError> {
        self.blocking(|s| s.load_lockouts()).await
    }

    pub fn load_credentials(&self) -> Result<Vec<super::PhoneCredential>, StoreError> {
        self.store.load_credentials()
    }

    /// `Err(why)` while the store cannot take writes.
    pub fn health(&self) -> Result<(), String> {
        self.store.health()
    }

    /// Probes the store now (see [`Store::probe`]).
    pub async fn probe(&self) -> Result<(), StoreError> {
        self.blocking(|s| s.probe()).await
    }

    pub async fn audit(&self, limit: usize) -> Result<Vec<AuditEvent>, StoreError> {
        self.blocking(move |s| s.audit(limit)).await
    }

    /// One extension's recent events of these kinds, newest first.
    pub async fn audit_of(
        &self,
        extension: &str,
        kinds: &'static [EventKind],
        limit: usize,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        let extension = extension.to_owned();
        self.blocking(move |s| s.audit_of(&extension, kinds, limit))
            .await
    }

    /// The events `filter` selects, newest first, at most `limit`.
    pub async fn audit_query(
        &self,
        filter: AuditFilter,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        self.blocking(move |s| s.audit_query(&filter, limit)).await
    }

    /// Deletes every audit event from before `cutoff`, a batch per store call so logins
    /// never wait long behind it; returns how many went.
    pub async fn prune_audit(&self, cutoff: time::OffsetDateTime) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let n = self
                .blocking(move |s| s.audit_prune(cutoff, PRUNE_BATCH))
                .await?;
            total += n;
            if n < PRUNE_BATCH {
                return Ok(total);
            }
            tokio::task::yield_now().await;
        }
    }

    /// Commits and then updates memory in one blocking call: once started, both happen even
    /// if the caller stops waiting.
    async fn commit(&self, change: Change) -> Result<(), StoreError> {
        let queued = !change.outbox.is_empty();
        let (map, reloads) = (self.by_mac.clone(), self.reloads.clone());
        let changed = self.changed.clone();
        self.blocking(move |s| {
            s.commit(&change)?;
            apply(&mut map.write().unwrap_or_else(|e| e.into_inner()), &change);
            let mut reloads = reloads.write().unwrap_or_else(|e| e.into_inner());
            for r in &change.reloads {
                reloads.insert(r.mac, r.clone());
            }
            if !(change.put.is_empty() && change.remove.is_empty() && change.reloads.is_empty()) {
                changed.send_modify(|n| *n += 1);
            }
            Ok(())
        })
        .await?;
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

    pub async fn outbox_entries(&self, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        self.blocking(move |s| s.outbox_entries(limit)).await
    }

    /// Makes dead write-backs pending again (all of them when `ids` is empty) and wakes the
    /// outbox worker; returns how many.
    pub async fn outbox_retry(&self, ids: Vec<i64>) -> Result<usize, StoreError> {
        let n = self.blocking(move |s| s.outbox_retry(&ids)).await?;
        if n > 0 {
            self.outbox_ready.notify_one();
        }
        Ok(n)
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

    fn mac(s: &str) -> Mac {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn exclusive_takes_the_extension_from_the_other_phone() {
        let (_d, b) = book();
        b.login(
            login("000000000001", "1001"),
            Policy::Exclusive,
            4,
            1,
            "",
            Vec::new(),
        )
        .await
        .unwrap();
        let out = b
            .login(
                login("000000000002", "1001"),
                Policy::Exclusive,
                4,
                1,
                "",
                Vec::new(),
            )
            .await
            .unwrap();
        assert_eq!(out.taken_from, vec![mac("000000000001")]);
        assert!(b.get(&mac("000000000001")).is_none());
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
                let l = login(&format!("00000000000{i}"), "1001");
                tokio::spawn(
                    async move { b.login(l, Policy::Concurrent, 4, 1, "", Vec::new()).await },
                )
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
    async fn several_identities_log_off_one_or_all_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        let open = || LoginBook::open(Arc::new(SqliteStore::open(&path).unwrap()), false).unwrap();
        let b = open();
        let m = mac("000413000001");
        for ext in ["1001", "1002", "1003"] {
            b.login(
                login("000413000001", ext),
                Policy::Exclusive,
                4,
                3,
                "",
                Vec::new(),
            )
            .await
            .unwrap();
        }
        let ids: Vec<_> = b
            .identities(&m)
            .iter()
            .map(|l| (l.identity, l.extension.clone()))
            .collect();
        assert_eq!(
            ids,
            [(0, "1001".into()), (1, "1002".into()), (2, "1003".into())]
        );
        let full = b
            .login(
                login("000413000001", "1004"),
                Policy::Exclusive,
                4,
                3,
                "",
                Vec::new(),
            )
            .await;
        assert!(matches!(full, Err(BookError::NoFreeIdentity(3))));
        // The same user again keeps their identity.
        let again = b
            .login(
                login("000413000001", "1002"),
                Policy::Exclusive,
                4,
                3,
                "",
                Vec::new(),
            )
            .await
            .unwrap();
        assert_eq!(again.identity, 1);

        let gone = b
            .logout_identity(m, 1, EventKind::Logout, "x", "")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(gone.extension, "1002");
        let out = b
            .login(
                login("000413000001", "1004"),
                Policy::Exclusive,
                4,
                3,
                "",
                Vec::new(),
            )
            .await
            .unwrap();
        assert_eq!(out.identity, 1, "the freed identity is reused");
        drop(b);

        let b = open();
        assert_eq!(b.identities(&m).len(), 3);
        let all = b.logout(m, EventKind::Logout, "x", "").await.unwrap();
        assert_eq!(all.len(), 3);
        assert!(b.identities(&m).is_empty());
        assert!(open().all().is_empty());
    }

    #[tokio::test]
    async fn logout_and_reload_from_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite");
        {
            let b = LoginBook::open(Arc::new(SqliteStore::open(&path).unwrap()), false).unwrap();
            b.login(
                login("000000000001", "1001"),
                Policy::Exclusive,
                4,
                1,
                "",
                Vec::new(),
            )
            .await
            .unwrap();
            b.login(
                login("000000000002", "1002"),
                Policy::Exclusive,
                4,
                1,
                "",
                Vec::new(),
            )
            .await
            .unwrap();
            let gone = b
                .logout(mac("000000000002"), EventKind::Logout, "10.0.0.9", "user")
                .await
                .unwrap();
            assert_eq!(gone[0].extension, "1002");
            assert!(
                b.logout(mac("000000000002"), EventKind::Logout, "x", "")
                    .await
                    .unwrap()
                    .is_empty()
            );
        }
        let b = LoginBook::open(Arc::new(SqliteStore::open(&path).unwrap()), false).unwrap();
        let all = b.all();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].extension, "1001");
    }

    #[tokio::test]
    async fn logout_own_ends_only_the_named_extensions_login() {
        let (_dir, b) = book();
        let m = mac("000000000001");
        b.login(
            login("000000000001", "1002"),
            Policy::Exclusive,
            4,
            1,
            "",
            Vec::new(),
        )
        .await
        .unwrap();
        // 1001 does not hold the identity: nothing ends, nothing is written.
        let none = b
            .logout_own(
                m,
                0,
                "1001",
                EventKind::Logout,
                "10.0.0.9",
                "user page (1001)",
            )
            .await
            .unwrap();
        assert!(none.is_none());
        assert_eq!(b.identities(&m).len(), 1);
        assert!(
            b.audit(10)
                .await
                .unwrap()
                .iter()
                .all(|e| e.kind != EventKind::Logout)
        );
        let ended = b
            .logout_own(
                m,
                0,
                "1002",
                EventKind::Logout,
                "10.0.0.9",
                "user page (1002)",
            )
            .await
            .unwrap();
        assert_eq!(ended.unwrap().extension, "1002");
        assert!(b.identities(&m).is_empty());
    }

    #[tokio::test]
    async fn pruning_goes_through_every_batch_and_keeps_recent_events() {
        let (_d, b) = book();
        let cutoff = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let old = PRUNE_BATCH * 2 + 17;
        let events: Vec<AuditEvent> = (0..old + 3)
            .map(|i| {
                let mut e = AuditEvent::new(EventKind::Login, "t");
                e.at = if i < old {
                    cutoff - time::Duration::days(1)
                } else {
                    cutoff + time::Duration::seconds(i as i64)
                };
                e
            })
            .collect();
        b.note(events).await.unwrap();
        assert_eq!(b.prune_audit(cutoff).await.unwrap(), old);
        let left = b.audit(10).await.unwrap();
        assert_eq!(left.len(), 3);
        assert!(left.iter().all(|e| e.at > cutoff));
        assert_eq!(b.prune_audit(cutoff).await.unwrap(), 0);
    }
}
