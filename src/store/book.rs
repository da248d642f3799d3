//! Every current login in memory, written through to the [`Store`].
//!
//! Group commit: one writer thread takes every change that is waiting, commits them in one
//! transaction (one sync), then updates memory and answers each caller with its own result.
//! Under load (the last batch had company, every request worker busy) it first waits, up to
//! 2 ms, for a worker to run out of work, so that the changes it makes meanwhile join.
//! Memory only ever shows what is durable, and nothing is locked across a commit.
//!
//! Decisions that read logins (exclusive takeover, the concurrent cap, a phone's free
//! identities) are made against memory under a short lock. A queued change holds the phones
//! (MACs) and extensions it touches until it is settled; a decision that would read or
//! touch one of them waits for it and then decides again. So every decision rests on
//! durable logins only: had it built on a queued change instead (an overlay of planned
//! state), a failed commit would leave later decisions, and what phones were told, resting
//! on a login that never existed. Logins of different phones for different extensions (a
//! shift start) share commits; two phones taking one extension, or two requests about one
//! phone, still run one after the other.

use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, mpsc};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, oneshot};

use super::{
    AuditEvent, AuditFilter, Change, EventKind, Login, NewOutboxItem, OutboxEntry, OutboxItem,
    OutboxStatus, ReloadSent, Store, StoreError, WriteMethod,
};

/// Audit events deleted per statement: each batch holds the write lock only briefly.
const PRUNE_BATCH: usize = 1000;
/// At most this many changes share one transaction (bounds one commit's work).
const MAX_BATCH: usize = 256;
/// How long a busy writer waits at most for more changes to join a commit (see `gather`).
const LINGER: Duration = Duration::from_millis(2);
use crate::config::Policy;
use crate::phone::Mac;

/// The committed logins: each phone's, ordered by identity, and which phones each
/// extension is on (so a login decision does not scan every login).
#[derive(Default)]
struct Logins {
    by_mac: HashMap<Mac, Vec<Arc<Login>>>,
    by_extension: HashMap<String, HashSet<Mac>>,
}

impl Logins {
    fn get(&self, mac: &Mac) -> Option<&Vec<Arc<Login>>> {
        self.by_mac.get(mac)
    }

    fn values(&self) -> impl Iterator<Item = &Vec<Arc<Login>>> {
        self.by_mac.values()
    }

    /// Every login of `extension`, on any phone.
    fn holding<'a>(&'a self, extension: &'a str) -> impl Iterator<Item = &'a Arc<Login>> {
        self.by_extension
            .get(extension)
            .into_iter()
            .flatten()
            .flat_map(|mac| self.by_mac.get(mac).into_iter().flatten())
            .filter(move |l| l.extension == extension)
    }

    /// Adds `login`, replacing whoever held its identity on its phone.
    fn insert(&mut self, login: Arc<Login>) {
        self.remove(login.mac, Some(login.identity));
        self.by_extension
            .entry(login.extension.clone())
            .or_default()
            .insert(login.mac);
        let list = self.by_mac.entry(login.mac).or_default();
        list.push(login);
        list.sort_by_key(|l| l.identity);
    }

    /// Ends the phone's logins of one identity, or all of them (`None`).
    fn remove(&mut self, mac: Mac, identity: Option<u8>) {
        let Some(list) = self.by_mac.get_mut(&mac) else {
            return;
        };
        let (gone, kept): (Vec<_>, Vec<_>) = list
            .drain(..)
            .partition(|l| identity.is_none_or(|i| i == l.identity));
        *list = kept;
        if list.is_empty() {
            self.by_mac.remove(&mac);
        }
        for old in gone {
            self.unindex(&old, mac);
        }
    }

    /// Forgets that `old`'s extension is on `mac`, unless another identity there holds it.
    fn unindex(&mut self, old: &Login, mac: Mac) {
        let still = self
            .by_mac
            .get(&mac)
            .is_some_and(|v| v.iter().any(|l| l.extension == old.extension));
        if still {
            return;
        }
        if let Some(macs) = self.by_extension.get_mut(&old.extension) {
            macs.remove(&mac);
            if macs.is_empty() {
                self.by_extension.remove(&old.extension);
            }
        }
    }
}

/// What a committed change does to the logins in memory: removals, then additions, then
/// applied marks (the order `SqliteStore` writes them in).
fn apply(map: &mut Logins, change: &Change) {
    for (mac, identity) in &change.remove {
        map.remove(*mac, *identity);
    }
    for login in &change.put {
        map.insert(Arc::new(login.clone()));
    }
    for (mac, at) in &change.applied {
        for l in map.by_mac.get_mut(mac).into_iter().flatten() {
            if l.applied_at.is_none() && l.since <= *at {
                let mut updated = (**l).clone();
                updated.applied_at = Some(*at);
                *l = Arc::new(updated);
            }
        }
    }
}

/// What a queued change holds until it is settled (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Mac(Mac),
    Extension(String),
}

/// The keys `change` touches, given the logins in memory: the phones it writes and the
/// extensions of every login it adds, replaces or ends.
fn touched(map: &Logins, change: &Change) -> Vec<Key> {
    let on = |mac: &Mac, identity: Option<u8>| {
        map.get(mac)
            .into_iter()
            .flatten()
            .filter(move |l| identity.is_none_or(|i| i == l.identity))
            .map(|l| Key::Extension(l.extension.clone()))
    };
    let mut keys = Vec::new();
    for l in &change.put {
        keys.push(Key::Mac(l.mac));
        keys.push(Key::Extension(l.extension.clone()));
        keys.extend(on(&l.mac, Some(l.identity)));
    }
    for (mac, identity) in &change.remove {
        keys.push(Key::Mac(*mac));
        keys.extend(on(mac, *identity));
    }
    keys.extend(change.applied.iter().map(|(mac, _)| Key::Mac(*mac)));
    keys
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A change on its way to the writer thread.
struct Job {
    change: Change,
    keys: Vec<Key>,
    done: oneshot::Sender<Result<(), StoreError>>,
}

/// What the book's callers and its writer thread share.
struct Shared {
    /// Each phone's logins, ordered by identity: only what is committed.
    by_mac: RwLock<Logins>,
    /// The last reload request sent to each phone.
    reloads: RwLock<HashMap<Mac, ReloadSent>>,
    /// Keys held by queued changes.
    held: Mutex<HashSet<Key>>,
    /// Woken whenever queued changes settle and give their keys back.
    released: Notify,
    /// Changes queued or being committed.
    pending: AtomicUsize,
    /// Wakes the outbox worker after a commit that queued something.
    outbox_ready: Arc<Notify>,
    /// Bumped after every change to the logins in memory (login, logout, applied, reload),
    /// so that live views (the console) know when to look again.
    changed: tokio::sync::watch::Sender<u64>,
}

impl Shared {
    /// After a batch's commit: applies what committed to memory, then gives the keys back.
    fn settle(&self, batch: &[Job], results: &[Result<(), StoreError>]) {
        let (mut seen, mut queued) = (false, false);
        {
            let mut map = self.by_mac.write().unwrap_or_else(|e| e.into_inner());
            let mut reloads = self.reloads.write().unwrap_or_else(|e| e.into_inner());
            for (job, _) in batch.iter().zip(results).filter(|(_, r)| r.is_ok()) {
                let c = &job.change;
                apply(&mut map, c);
                for r in &c.reloads {
                    reloads.insert(r.mac, r.clone());
                }
                seen |= !(c.put.is_empty()
                    && c.remove.is_empty()
                    && c.reloads.is_empty()
                    && c.applied.is_empty());
                queued |= !c.outbox.is_empty();
            }
        }
        let mut held = lock(&self.held);
        for key in batch.iter().flat_map(|j| &j.keys) {
            held.remove(key);
        }
        drop(held);
        self.pending.fetch_sub(batch.len(), Ordering::Relaxed);
        self.released.notify_waiters();
        if seen {
            self.changed.send_modify(|n| *n += 1);
        }
        if queued {
            self.outbox_ready.notify_one();
        }
    }
}

/// The first job and what is waiting behind it. When the last batch had company (changes
/// arriving together, a shift start) and every request worker is busy, first waits, up to
/// `LINGER`, until one runs out of work (`wait_idle`): a sync costs about the same for one row
/// as for sixty, and a busy worker is likely making the next change. A lone change commits at
/// once, and so does one that finds a worker idle.
fn gather(
    jobs: &mpsc::Receiver<Job>,
    first: Job,
    company: bool,
    wait_idle: impl FnOnce(Instant),
) -> Vec<Job> {
    let mut batch = vec![first];
    batch.extend(jobs.try_iter().take(MAX_BATCH - 1));
    if company && batch.len() < MAX_BATCH {
        wait_idle(Instant::now() + LINGER);
        batch.extend(jobs.try_iter().take(MAX_BATCH - batch.len()));
    }
    batch
}

/// The writer thread: everything waiting becomes one batch, one transaction, one sync.
fn write_batches(store: Arc<dyn Store>, shared: Arc<Shared>, jobs: mpsc::Receiver<Job>) {
    let mut company = false;
    while let Ok(first) = jobs.recv() {
        let batch = gather(&jobs, first, company, crate::workers::wait_idle);
        company = batch.len() > 1;
        let changes: Vec<&Change> = batch.iter().map(|j| &j.change).collect();
        // A panic in the store must not stop every later write: the batch counts as failed
        // (an unfinished transaction rolls back as it unwinds).
        let results = std::panic::catch_unwind(AssertUnwindSafe(|| store.commit_batch(&changes)))
            .unwrap_or_else(|_| {
                let failed = || Err(StoreError::Db("the store failed unexpectedly".into()));
                changes.iter().map(|_| failed()).collect()
            });
        drop(changes);
        shared.settle(&batch, &results);
        // A caller that stopped waiting has nothing to hear; its change stands regardless.
        for (job, result) in batch.into_iter().zip(results) {
            let _ = job.done.send(result);
        }
    }
}

pub struct LoginBook {
    store: Arc<dyn Store>,
    shared: Arc<Shared>,
    /// To the writer thread, which ends when the book is dropped.
    jobs: mpsc::Sender<Job>,
    /// Queue a PBX write-back with every login and logout.
    writeback: bool,
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
    /// Loads the stored logins into memory and starts the writer thread. With `writeback`,
    /// every login and logout also queues a delivery to the PBX in the same transaction.
    pub fn open(store: Arc<dyn Store>, writeback: bool) -> Result<Self, StoreError> {
        let mut by_mac = Logins::default();
        for l in store.load_logins()? {
            by_mac.insert(Arc::new(l));
        }
        let reloads = store
            .load_reloads()?
            .into_iter()
            .map(|r| (r.mac, r))
            .collect();
        let shared = Arc::new(Shared {
            by_mac: RwLock::new(by_mac),
            reloads: RwLock::new(reloads),
            held: Mutex::new(HashSet::new()),
            released: Notify::new(),
            pending: AtomicUsize::new(0),
            outbox_ready: Arc::new(Notify::new()),
            changed: tokio::sync::watch::Sender::new(0),
        });
        let (jobs, queue) = mpsc::channel();
        let (s, sh) = (store.clone(), shared.clone());
        std::thread::Builder::new()
            .name("hotdesk-store".into())
            .spawn(move || write_batches(s, sh, queue))
            .map_err(|e| StoreError::Db(format!("cannot start the store writer: {e}")))?;
        Ok(Self {
            store,
            shared,
            jobs,
            writeback,
        })
    }

    /// Changes to the logins in memory: the value is a counter; a receiver sees the latest.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.changed.subscribe()
    }

    pub fn outbox_ready(&self) -> Arc<Notify> {
        self.shared.outbox_ready.clone()
    }

    /// Queues a write-back; `body` is made only when write-back is on.
    fn queue(
        &self,
        change: &mut Change,
        mac: Mac,
        method: WriteMethod,
        body: impl FnOnce() -> String,
    ) {
        if self.writeback {
            change.outbox.push(NewOutboxItem {
                mac,
                method,
                body: body(),
            });
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
    pub fn last_reload(&self, mac: &Mac) -> Option<ReloadSent> {
        self.shared
            .reloads
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

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Logins> {
        self.shared.by_mac.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes queued or being committed.
    #[cfg(test)]
    fn pending(&self) -> usize {
        self.shared.pending.load(Ordering::Relaxed)
    }

    /// Decides a change against the committed logins and commits it (see the module doc).
    /// `reads` are the keys whose logins `plan` looks at; `plan` may run more than once and
    /// returns no change when there is nothing to write.
    async fn decide<T, E: From<StoreError>>(
        &self,
        reads: &[Key],
        mut plan: impl FnMut(&Logins) -> Result<(Option<Change>, T), E>,
    ) -> Result<T, E> {
        loop {
            let mut released = std::pin::pin!(self.shared.released.notified());
            let queued = {
                let mut held = lock(&self.shared.held);
                let free =
                    |held: &HashSet<Key>, keys: &[Key]| keys.iter().all(|k| !held.contains(k));
                let mut queued = None;
                if free(&held, reads) {
                    let map = self.read();
                    let (change, out) = plan(&map)?;
                    let Some(change) = change else {
                        return Ok(out);
                    };
                    let mut keys = touched(&map, &change);
                    drop(map);
                    keys.extend_from_slice(reads);
                    if free(&held, &keys) {
                        held.extend(keys.iter().cloned());
                        queued = Some((self.send(&mut held, change, keys)?, out));
                    }
                }
                if queued.is_none() {
                    // Registered before the lock is let go, so no release is missed.
                    released.as_mut().enable();
                }
                queued
            };
            match queued {
                Some((done, out)) => {
                    let result = done
                        .await
                        .unwrap_or_else(|_| Err(StoreError::Db("the store writer stopped".into())));
                    return result.map(|()| out).map_err(E::from);
                }
                None => released.await,
            }
        }
    }

    /// Queues a change whose keys are already held.
    fn send(
        &self,
        held: &mut HashSet<Key>,
        change: Change,
        keys: Vec<Key>,
    ) -> Result<oneshot::Receiver<Result<(), StoreError>>, StoreError> {
        let (done, answer) = oneshot::channel();
        self.shared.pending.fetch_add(1, Ordering::Relaxed);
        if let Err(mpsc::SendError(job)) = self.jobs.send(Job { change, keys, done }) {
            for key in &job.keys {
                held.remove(key);
            }
            self.shared.pending.fetch_sub(1, Ordering::Relaxed);
            return Err(StoreError::Db("the store writer stopped".into()));
        }
        Ok(answer)
    }

    /// Records `login`, applying the policy, and returns once it is durable. A phone with
    /// `max_identities > 1` keeps its other users and gives the login a free identity; a
    /// one-identity phone's previous user is replaced.
    pub async fn login(
        &self,
        login: Login,
        policy: Policy,
        max_devices: usize,
        max_identities: u8,
        detail: &str,
        forgiven: Vec<String>,
    ) -> Result<LoginOutcome, BookError> {
        let reads = [Key::Mac(login.mac), Key::Extension(login.extension.clone())];
        let plan = |map: &Logins| {
            let mut login = login.clone();
            let elsewhere: Vec<Arc<Login>> = map
                .holding(&login.extension)
                .filter(|l| l.mac != login.mac)
                .cloned()
                .collect();
            let here = map.get(&login.mac).cloned().unwrap_or_default();
            let mut change = Change::default();
            let mut outcome = LoginOutcome::default();
            match policy {
                Policy::Exclusive => {
                    for old in &elsewhere {
                        change.remove.push((old.mac, Some(old.identity)));
                        let body = || serde_json::json!({ "identity": old.identity }).to_string();
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
            login.identity =
                if let Some(same) = here.iter().find(|l| l.extension == login.extension) {
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
            self.queue(&mut change, login.mac, WriteMethod::Put, || {
                device_body(&login)
            });
            change.put.push(login);
            change.lockouts_cleared = forgiven.clone();
            Ok((Some(change), outcome))
        };
        self.decide(&reads, plan).await
    }

    /// The phone fetched its configuration at `at`: its logins from before then are applied.
    pub async fn mark_applied(&self, mac: Mac, at: time::OffsetDateTime) -> Result<(), StoreError> {
        let plan = |map: &Logins| {
            let due = map
                .get(&mac)
                .into_iter()
                .flatten()
                .any(|l| l.applied_at.is_none() && l.since <= at);
            let change = due.then(|| Change {
                applied: vec![(mac, at)],
                ..Change::default()
            });
            Ok((change, ()))
        };
        self.decide(&[Key::Mac(mac)], plan).await
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

    /// Ends one identity's login only if `extension` holds it (checked when the change is
    /// decided, so a login that replaced it meanwhile stays); `None` otherwise.
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
        let plan = |map: &Logins| {
            let ending: Vec<Arc<Login>> = map
                .get(&mac)
                .into_iter()
                .flatten()
                .filter(|l| identity.is_none_or(|i| i == l.identity))
                .filter(|l| extension.is_none_or(|e| e == l.extension))
                .cloned()
                .collect();
            if ending.is_empty() {
                return Ok((None, ending));
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
            let body = || match identity {
                Some(i) => serde_json::json!({ "identity": i }).to_string(),
                None => "{}".to_owned(),
            };
            self.queue(&mut change, mac, WriteMethod::Delete, body);
            Ok::<_, BookError>((Some(change), ending))
        };
        self.decide(&[Key::Mac(mac)], plan).await
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
        self.decide(&[], |_| Ok::<_, BookError>((Some(change.clone()), ())))
            .await
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
            self.shared.outbox_ready.notify_one();
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

    fn store_and_book() -> (tempfile::TempDir, Arc<SqliteStore>, Arc<LoginBook>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("s.sqlite")).unwrap());
        let book = Arc::new(LoginBook::open(store.clone(), false).unwrap());
        (dir, store, book)
    }

    fn job() -> Job {
        Job {
            change: Change::default(),
            keys: Vec::new(),
            done: oneshot::channel().0,
        }
    }

    #[test]
    fn a_lone_change_commits_at_once_with_what_was_waiting() {
        let (tx, rx) = mpsc::channel();
        tx.send(job()).unwrap();
        let batch = gather(&rx, job(), false, |_| panic!("a lone change waited"));
        assert_eq!(batch.len(), 2);
    }

    #[test]
    fn with_company_the_changes_made_while_waiting_join() {
        let (tx, rx) = mpsc::channel();
        tx.send(job()).unwrap();
        let before = Instant::now();
        let batch = gather(&rx, job(), true, |deadline| {
            assert!(deadline >= before + LINGER, "waits up to LINGER");
            // What a busy worker queues meanwhile.
            tx.send(job()).unwrap();
            tx.send(job()).unwrap();
        });
        assert_eq!(batch.len(), 4);
    }

    #[test]
    fn a_full_batch_does_not_wait() {
        let (tx, rx) = mpsc::channel();
        for _ in 0..MAX_BATCH {
            tx.send(job()).unwrap();
        }
        let batch = gather(&rx, job(), true, |_| panic!("a full batch waited"));
        assert_eq!(batch.len(), MAX_BATCH);
        assert_eq!(
            rx.try_iter().count(),
            1,
            "the rest waits for the next batch"
        );
    }

    /// Holds the store's write connection, as a slow sync would, until `open`: the writer
    /// stops inside its first batch and everything else queues behind it.
    struct Gate {
        release: std::sync::mpsc::Sender<()>,
        thread: std::thread::JoinHandle<()>,
    }

    impl Gate {
        fn close(store: Arc<SqliteStore>) -> Gate {
            let (locked, is_locked) = std::sync::mpsc::channel();
            let (release, wait) = std::sync::mpsc::channel::<()>();
            let thread = std::thread::spawn(move || {
                let _conn = store.conn();
                locked.send(()).unwrap();
                let _ = wait.recv();
            });
            is_locked.recv().unwrap();
            Gate { release, thread }
        }

        fn open(self) {
            drop(self.release);
            self.thread.join().unwrap();
        }
    }

    /// Waits until `n` changes are queued or being committed.
    async fn queued(b: &LoginBook, n: usize) {
        while b.pending() < n {
            tokio::task::yield_now().await;
        }
    }

    fn spawn_login(
        b: &Arc<LoginBook>,
        l: Login,
        detail: &'static str,
    ) -> tokio::task::JoinHandle<Result<LoginOutcome, BookError>> {
        let b = b.clone();
        tokio::spawn(async move {
            b.login(l, Policy::Exclusive, 4, 1, detail, Vec::new())
                .await
        })
    }

    fn on_disk(store: &SqliteStore) -> Vec<(String, String)> {
        let mut rows: Vec<_> = store
            .load_logins()
            .unwrap()
            .into_iter()
            .map(|l| (l.mac.to_string(), l.extension))
            .collect();
        rows.sort();
        rows
    }

    fn in_memory(b: &LoginBook) -> Vec<(String, String)> {
        let mut rows: Vec<_> = b
            .all()
            .iter()
            .map(|l| (l.mac.to_string(), l.extension.clone()))
            .collect();
        rows.sort();
        rows
    }

    #[test]
    fn the_extension_index_follows_every_change() {
        let at = |mac: &str, identity: u8, ext: &str| {
            let mut l = login(mac, ext);
            l.identity = identity;
            l
        };
        let put = |l: Login| Change {
            put: vec![l],
            ..Change::default()
        };
        let remove = |m: &str, identity| Change {
            remove: vec![(mac(m), identity)],
            ..Change::default()
        };
        let steps = [
            put(at("000000000001", 0, "1001")),
            put(at("000000000001", 1, "1001")),
            put(at("000000000002", 0, "1001")),
            // Replacing identity 0 keeps 1001 on the phone through identity 1.
            put(at("000000000001", 0, "1002")),
            remove("000000000001", Some(1)),
            remove("000000000002", None),
            remove("000000000001", None),
        ];
        let mut m = Logins::default();
        for (i, change) in steps.iter().enumerate() {
            apply(&mut m, change);
            let mut scanned: HashMap<String, HashSet<Mac>> = HashMap::new();
            for l in m.values().flatten() {
                scanned
                    .entry(l.extension.clone())
                    .or_default()
                    .insert(l.mac);
            }
            assert_eq!(m.by_extension, scanned, "after step {i}");
            let mut held: Vec<_> = m.holding("1001").map(|l| (l.mac, l.identity)).collect();
            let mut want: Vec<_> = m
                .values()
                .flatten()
                .filter(|l| l.extension == "1001")
                .map(|l| (l.mac, l.identity))
                .collect();
            held.sort();
            want.sort();
            assert_eq!(held, want, "after step {i}");
        }
        assert!(m.by_mac.is_empty() && m.by_extension.is_empty());
    }

    #[tokio::test]
    async fn logins_that_arrive_together_share_a_transaction() {
        let (_d, store, b) = store_and_book();
        let before = store.transactions();
        let gate = Gate::close(store.clone());
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                spawn_login(
                    &b,
                    login(&format!("0000000001{i:02x}"), &format!("{}", 2000 + i)),
                    "pin",
                )
            })
            .collect();
        queued(&b, 64).await;
        assert!(b.all().is_empty(), "nothing is shown before it is durable");
        gate.open();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        // The writer's first batch, stopped at the gate, then everything that queued meanwhile.
        let transactions = store.transactions() - before;
        assert!(
            transactions <= 2,
            "{transactions} transactions for 64 logins"
        );
        assert_eq!(b.all().len(), 64);
        assert_eq!(on_disk(&store), in_memory(&b));
        assert_eq!(b.audit(100).await.unwrap().len(), 64);
    }

    #[tokio::test]
    async fn a_login_refused_by_the_store_fails_alone_in_its_batch() {
        let (dir, store, b) = store_and_book();
        // The write connection refuses this one login's audit row (and so its whole change).
        store
            .conn()
            .execute_batch(
                "CREATE TEMP TRIGGER poison BEFORE INSERT ON audit WHEN NEW.detail = 'poison'
                 BEGIN SELECT RAISE(ABORT, 'poisoned row'); END;",
            )
            .unwrap();
        let gate = Gate::close(store.clone());
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let detail = if i == 5 { "poison" } else { "pin" };
                spawn_login(
                    &b,
                    login(&format!("00000000020{i}"), &format!("300{i}")),
                    detail,
                )
            })
            .collect();
        queued(&b, 8).await;
        gate.open();
        for (i, t) in tasks.into_iter().enumerate() {
            let result = t.await.unwrap();
            assert_eq!(result.is_ok(), i != 5, "login {i}: {result:?}");
        }
        assert!(b.get(&mac("000000000205")).is_none());
        assert_eq!(b.all().len(), 7);
        assert_eq!(on_disk(&store), in_memory(&b));
        drop(b);
        let reopened = LoginBook::open(
            Arc::new(SqliteStore::open(&dir.path().join("s.sqlite")).unwrap()),
            false,
        )
        .unwrap();
        assert_eq!(in_memory(&reopened), on_disk(&store));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn phones_racing_for_one_extension_take_it_one_after_another() {
        let (_d, store, b) = store_and_book();
        let phones = 24;
        let tasks: Vec<_> = (0..phones)
            .map(|i| spawn_login(&b, login(&format!("0000000003{i:02x}"), "1001"), "pin"))
            .collect();
        let mut taken = Vec::new();
        for t in tasks {
            let out = t.await.unwrap().unwrap();
            assert!(out.taken_from.len() <= 1, "{:?}", out.taken_from);
            taken.extend(out.taken_from);
        }
        // Every phone but the last holder lost it exactly once: no takeover was lost or
        // doubled, as it would be if two phones had decided on the same state.
        let holder = b.all();
        assert_eq!(holder.len(), 1);
        taken.push(holder[0].mac);
        taken.sort();
        taken.dedup();
        assert_eq!(taken.len(), phones);
        assert_eq!(on_disk(&store), in_memory(&b));
        let kinds: Vec<_> = b.audit(100).await.unwrap().iter().map(|e| e.kind).collect();
        let count = |k| kinds.iter().filter(|&&x| x == k).count();
        assert_eq!(
            (count(EventKind::Login), count(EventKind::Takeover)),
            (phones, phones - 1)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn logins_on_one_phone_replace_each_other_in_turn() {
        let (_d, store, b) = store_and_book();
        let users = 20;
        let tasks: Vec<_> = (0..users)
            .map(|i| spawn_login(&b, login("000000000401", &format!("40{i:02}")), "pin"))
            .collect();
        let mut replaced = Vec::new();
        for t in tasks {
            let out = t.await.unwrap().unwrap();
            replaced.extend(out.replaced.map(|l| l.extension.clone()));
        }
        // One chain: each login replaced the one before it, each user exactly once, and
        // the last one stays.
        let last = b.all();
        assert_eq!(last.len(), 1);
        replaced.push(last[0].extension.clone());
        replaced.sort();
        replaced.dedup();
        assert_eq!(replaced.len(), users);
        assert_eq!(on_disk(&store), in_memory(&b));
    }

    #[tokio::test]
    async fn a_caller_that_stops_waiting_still_gets_its_change_and_frees_the_phone() {
        let (_d, store, b) = store_and_book();
        let gate = Gate::close(store.clone());
        let first = spawn_login(&b, login("000000000501", "5001"), "pin");
        queued(&b, 1).await;
        first.abort();
        assert!(first.await.unwrap_err().is_cancelled());
        gate.open();
        // The same phone again: it waits for the first change to settle, then replaces it.
        let out = b
            .login(
                login("000000000501", "5002"),
                Policy::Exclusive,
                4,
                1,
                "",
                Vec::new(),
            )
            .await
            .unwrap();
        assert_eq!(out.replaced.unwrap().extension, "5001");
        assert_eq!(on_disk(&store), in_memory(&b));
    }

    #[tokio::test]
    async fn applied_marks_only_logins_from_before_the_fetch() {
        let (dir, store, b) = store_and_book();
        let m = mac("000413000009");
        let mut early = login("000413000009", "1001");
        early.since = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let mut late = login("000413000009", "1002");
        late.since = early.since + time::Duration::minutes(5);
        for l in [early, late] {
            b.login(l, Policy::Exclusive, 4, 2, "", Vec::new())
                .await
                .unwrap();
        }
        let fetched = time::OffsetDateTime::from_unix_timestamp(1_700_000_060).unwrap();
        let before = store.transactions();
        b.mark_applied(m, fetched).await.unwrap();
        b.mark_applied(m, fetched).await.unwrap();
        assert_eq!(
            store.transactions() - before,
            1,
            "nothing left to mark the second time"
        );
        let applied = |ls: Vec<Arc<Login>>| ls.iter().map(|l| l.applied_at).collect::<Vec<_>>();
        assert_eq!(applied(b.identities(&m)), [Some(fetched), None]);
        drop(b);
        let b = LoginBook::open(
            Arc::new(SqliteStore::open(&dir.path().join("s.sqlite")).unwrap()),
            false,
        )
        .unwrap();
        assert_eq!(applied(b.identities(&m)), [Some(fetched), None]);
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
