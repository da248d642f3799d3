//! The cache in front of any directory backend.
//!
//! - A fresh entry (younger than `fresh`) is answered from memory.
//! - A stale entry (up to `fresh + stale`) triggers a refresh; if the backend fails or is
//!   slower than `deadline`, the stale entry is answered (stale-if-error) and the refresh
//!   finishes in the background.
//! - Unknown extensions are remembered for `negative`.
//! - Concurrent fetches of one extension become one backend call. The call runs in its own
//!   task, so a phone that hangs up cannot stall or restart it for the others.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use moka::Expiry;
use moka::future::Cache;
use tokio::sync::watch;

use super::{BoxFuture, Directory, DirectoryError, User};
use crate::config::DirectoryKind;
use crate::metrics::{CacheResult, Metrics};

/// How long entries live; see the module doc.
#[derive(Debug, Clone, Copy)]
pub struct CachePolicy {
    pub fresh: Duration,
    pub stale: Duration,
    pub negative: Duration,
    /// How long a lookup waits for the backend before answering stale (or failing on a miss).
    pub deadline: Duration,
}

#[derive(Clone)]
struct Entry {
    user: Option<Arc<User>>,
    fetched: Instant,
}

type Fetched = Result<Option<Arc<User>>, DirectoryError>;

struct Lifetimes(CachePolicy);

impl Expiry<String, Entry> for Lifetimes {
    fn expire_after_create(&self, _: &String, e: &Entry, _: Instant) -> Option<Duration> {
        Some(match e.user {
            Some(_) => self.0.fresh + self.0.stale,
            None => self.0.negative,
        })
    }

    fn expire_after_update(
        &self,
        k: &String,
        e: &Entry,
        now: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        self.expire_after_create(k, e, now)
    }
}

/// Whether the backend has ever answered, and whether it has failed since start; what
/// `/readyz` needs to tell "never loaded" from "not asked yet".
#[derive(Default)]
struct Loaded {
    answered: AtomicBool,
    failed: AtomicBool,
}

pub struct CachedDirectory {
    /// Replaced whole by a SIGHUP reload (see [`CachedDirectory::replace_backend`]).
    backend: ArcSwap<Arc<dyn Directory>>,
    /// Bumped when the backend is replaced; ends the old backend's change watcher, so the
    /// old backend (and its file polling) is dropped.
    epoch: watch::Sender<u64>,
    policy: CachePolicy,
    cache: Cache<String, Entry>,
    /// Fresh answers read before `cache` (directory/hot.rs); told of every write to it.
    hot: Arc<super::hot::Hot>,
    inflight: Arc<Mutex<HashMap<String, watch::Receiver<Option<Fetched>>>>>,
    metrics: Arc<Metrics>,
    adapter: &'static str,
    loaded: Arc<Loaded>,
}

impl CachedDirectory {
    /// The `adapter` label of a directory backend's calls.
    pub fn adapter_label(kind: DirectoryKind) -> &'static str {
        match kind {
            DirectoryKind::File => "file",
            DirectoryKind::Embedded => "embedded",
            DirectoryKind::VoicemailConf => "voicemail_conf",
            DirectoryKind::Http => "http",
            DirectoryKind::Freepbx => "freepbx",
            DirectoryKind::Wazo => "wazo",
        }
    }

    /// `adapter` labels the backend's calls in `metrics` ([`Self::adapter_label`]).
    pub fn new(
        backend: Arc<dyn Directory>,
        policy: CachePolicy,
        metrics: Arc<Metrics>,
        adapter: &'static str,
    ) -> Arc<Self> {
        let cache = Cache::builder()
            .max_capacity(100_000)
            .expire_after(Lifetimes(policy))
            .build();
        let me = Arc::new(Self {
            backend: ArcSwap::from_pointee(backend.clone()),
            epoch: watch::channel(0).0,
            policy,
            cache,
            hot: Arc::new(super::hot::Hot::new(1024)),
            inflight: Arc::new(Mutex::new(HashMap::new())),
            metrics,
            adapter,
            loaded: Arc::default(),
        });
        me.watch_changes(&backend);
        me
    }

    /// Empties the cache whenever `backend` reports a change (a file re-read), until the
    /// backend is replaced.
    fn watch_changes(self: &Arc<Self>, backend: &Arc<dyn Directory>) {
        let Some(mut changes) = backend.changes() else {
            return;
        };
        let weak = Arc::downgrade(self);
        let mut epoch = self.epoch.subscribe();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    changed = changes.changed() => {
                        let (Ok(()), Some(me)) = (changed, weak.upgrade()) else { return };
                        me.invalidate_all();
                    }
                    _ = epoch.changed() => return,
                }
            }
        });
    }

    /// Serves every later lookup from `backend` and forgets what the old one answered.
    /// (A fetch already running against the old backend may still land one entry; it
    /// lives at most its TTL.)
    pub fn replace_backend(self: &Arc<Self>, backend: Arc<dyn Directory>) {
        self.backend.store(Arc::new(backend.clone()));
        self.epoch.send_modify(|e| *e += 1);
        self.invalidate_all();
        self.watch_changes(&backend);
    }

    pub fn invalidate_all(&self) {
        self.cache.invalidate_all();
        self.hot.changed();
    }

    /// `Err` while the backend has never answered and has failed: there is no data to log
    /// anyone in with. File backends loaded before start-up (or start-up failed), so they
    /// never fail here; a PBX that is not asked yet counts as ready, else a fresh install
    /// would wait for a login that cannot reach it.
    pub fn readiness(&self) -> Result<(), &'static str> {
        let l = &self.loaded;
        if !l.answered.load(Ordering::Relaxed) && l.failed.load(Ordering::Relaxed) {
            return Err("the directory has never answered");
        }
        Ok(())
    }

    pub async fn invalidate(&self, extension: &str) {
        self.cache.invalidate(extension).await;
        self.hot.changed();
    }

    /// Starts (or joins) the one backend fetch for `ext`; the result also lands in the cache.
    fn fetch(&self, ext: &str) -> watch::Receiver<Option<Fetched>> {
        let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(rx) = inflight.get(ext) {
            return rx.clone();
        }
        let (tx, rx) = watch::channel(None);
        inflight.insert(ext.to_owned(), rx.clone());
        let backend = self.backend.load_full();
        let (cache, hot) = (self.cache.clone(), self.hot.clone());
        let map = self.inflight.clone();
        let key = ext.to_owned();
        let (metrics, adapter, loaded) = (self.metrics.clone(), self.adapter, self.loaded.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let result = backend.lookup(&key).await;
            metrics.upstream(adapter, "lookup", started.elapsed(), result.is_ok());
            let flag = if result.is_ok() {
                &loaded.answered
            } else {
                &loaded.failed
            };
            flag.store(true, Ordering::Relaxed);
            if let Ok(user) = &result {
                let entry = Entry {
                    user: user.clone(),
                    fetched: Instant::now(),
                };
                cache.insert(key.clone(), entry).await;
                hot.changed();
            }
            map.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
            let _ = tx.send(Some(result));
        });
        rx
    }

    /// Waits for a fetch, at most `deadline`; `None` on time-out.
    async fn wait(&self, mut rx: watch::Receiver<Option<Fetched>>) -> Option<Fetched> {
        let got = tokio::time::timeout(self.policy.deadline, rx.wait_for(Option::is_some)).await;
        match got {
            Ok(Ok(v)) => v.clone(),
            Ok(Err(_)) => Some(Err(DirectoryError::Unavailable("lookup task ended".into()))),
            Err(_) => None,
        }
    }

    async fn lookup_inner(&self, ext: &str) -> Fetched {
        let now = Instant::now();
        let count = |result| self.metrics.directory_cache(result);
        if let Some(user) = self.hot.get(ext, now, self.policy.fresh) {
            count(CacheResult::Hit);
            return Ok(Some(user));
        }
        let writes = self.hot.writes();
        match self.cache.get(ext).await {
            Some(e) if e.user.is_none() || now.duration_since(e.fetched) < self.policy.fresh => {
                count(CacheResult::Hit);
                if let Some(user) = &e.user {
                    self.hot.keep(ext, user, e.fetched, writes);
                }
                Ok(e.user)
            }
            Some(stale) => match self.wait(self.fetch(ext)).await {
                Some(Ok(user)) => {
                    count(CacheResult::Refreshed);
                    Ok(user)
                }
                Some(Err(err)) => {
                    count(CacheResult::Stale);
                    tracing::warn!(error = %err, extension = ext, "directory failed; answering from the stale cache");
                    Ok(stale.user)
                }
                None => {
                    count(CacheResult::Stale);
                    tracing::warn!(
                        extension = ext,
                        "directory slow; answering from the stale cache"
                    );
                    Ok(stale.user)
                }
            },
            None => {
                count(CacheResult::Miss);
                self.wait(self.fetch(ext)).await.unwrap_or_else(|| {
                    Err(DirectoryError::Unavailable(format!(
                        "no answer within {} ms",
                        self.policy.deadline.as_millis()
                    )))
                })
            }
        }
    }

    /// Fetches again unless the entry is younger than a second (a PIN changed at the PBX
    /// then works at once, without doubling calls for a burst of wrong PINs).
    async fn refetch_inner(&self, ext: &str) -> Fetched {
        if let Some(e) = self.cache.get(ext).await
            && e.fetched.elapsed() < Duration::from_secs(1)
        {
            return Ok(e.user);
        }
        match self.wait(self.fetch(ext)).await {
            Some(result) => result,
            None => Err(DirectoryError::Unavailable("refetch timed out".into())),
        }
    }
}

impl Directory for CachedDirectory {
    fn lookup<'a>(&'a self, extension: &'a str) -> BoxFuture<'a, Fetched> {
        Box::pin(self.lookup_inner(extension))
    }

    fn refetch<'a>(&'a self, extension: &'a str) -> BoxFuture<'a, Fetched> {
        Box::pin(self.refetch_inner(extension))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    /// A backend with a call counter, a switchable failure and a latency.
    struct Fake {
        calls: AtomicUsize,
        down: AtomicBool,
        latency: Mutex<Duration>,
        name: Mutex<String>,
    }

    impl Fake {
        fn new() -> Arc<Self> {
            Arc::new(Self {
                calls: AtomicUsize::new(0),
                down: AtomicBool::new(false),
                latency: Mutex::new(Duration::from_millis(20)),
                name: Mutex::new("Ada".into()),
            })
        }
        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    impl Directory for Fake {
        fn lookup<'a>(&'a self, ext: &'a str) -> BoxFuture<'a, Fetched> {
            Box::pin(async move {
                self.calls.fetch_add(1, Ordering::SeqCst);
                let latency = *self.latency.lock().unwrap();
                tokio::time::sleep(latency).await;
                if self.down.load(Ordering::SeqCst) {
                    return Err(DirectoryError::Unavailable("down".into()));
                }
                Ok((ext == "1001").then(|| {
                    Arc::new(User {
                        extension: ext.into(),
                        name: self.name.lock().unwrap().clone(),
                        voicemail_pin: None,
                        sip_password: crate::secret::Secret::new("s"),
                        sip_username: None,
                        template: None,
                        pin_hash: None,
                    })
                }))
            })
        }
    }

    fn cached(fake: &Arc<Fake>, policy: CachePolicy) -> Arc<CachedDirectory> {
        CachedDirectory::new(fake.clone(), policy, Arc::new(Metrics::new()), "http")
    }

    fn policy(fresh_ms: u64) -> CachePolicy {
        CachePolicy {
            fresh: Duration::from_millis(fresh_ms),
            stale: Duration::from_secs(60),
            negative: Duration::from_millis(150),
            deadline: Duration::from_millis(300),
        }
    }

    #[tokio::test]
    async fn concurrent_misses_make_one_call() {
        let fake = Fake::new();
        let cache = cached(&fake, policy(60_000));
        let lookups: Vec<_> = (0..100)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { cache.lookup("1001").await.unwrap().is_some() })
            })
            .collect();
        for l in lookups {
            assert!(l.await.unwrap());
        }
        assert_eq!(fake.calls(), 1);
    }

    #[tokio::test]
    async fn a_cancelled_first_caller_neither_stalls_nor_repeats_the_call() {
        let fake = Fake::new();
        let cache = cached(&fake, policy(60_000));
        let first = {
            let cache = cache.clone();
            tokio::spawn(async move { cache.lookup("1001").await.is_ok() })
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        let waiters: Vec<_> = (0..20)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { cache.lookup("1001").await.unwrap().is_some() })
            })
            .collect();
        first.abort();
        for w in waiters {
            assert!(
                tokio::time::timeout(Duration::from_secs(2), w)
                    .await
                    .unwrap()
                    .unwrap()
            );
        }
        assert_eq!(fake.calls(), 1);
    }

    #[tokio::test]
    async fn stale_entries_are_served_when_the_backend_fails_or_is_slow() {
        let fake = Fake::new();
        let cache = cached(&fake, policy(50));
        assert_eq!(cache.lookup("1001").await.unwrap().unwrap().name, "Ada");
        tokio::time::sleep(Duration::from_millis(80)).await;

        fake.down.store(true, Ordering::SeqCst);
        assert_eq!(
            cache.lookup("1001").await.unwrap().unwrap().name,
            "Ada",
            "stale if error"
        );
        assert!(
            cache.lookup("1002").await.is_err(),
            "a miss cannot be served stale"
        );

        fake.down.store(false, Ordering::SeqCst);
        *fake.latency.lock().unwrap() = Duration::from_secs(1);
        *fake.name.lock().unwrap() = "Ada Lovelace".into();
        let start = Instant::now();
        assert_eq!(
            cache.lookup("1001").await.unwrap().unwrap().name,
            "Ada",
            "stale if slow"
        );
        assert!(start.elapsed() < Duration::from_millis(600));
        // The slow refresh completes in the background and replaces the entry.
        tokio::time::sleep(Duration::from_millis(900)).await;
        *fake.latency.lock().unwrap() = Duration::from_millis(20);
        assert_eq!(
            cache.lookup("1001").await.unwrap().unwrap().name,
            "Ada Lovelace"
        );
        let m = &cache.metrics;
        let count = |result: &str| {
            m.value_of(&format!(
                "hotdesk_directory_cache_lookups_total{{result=\"{result}\"}}"
            ))
        };
        assert_eq!(count("miss"), Some(2.0), "1001 at first, 1002 while down");
        assert_eq!(count("stale"), Some(2.0), "once failing, once slow");
        assert_eq!(count("refreshed"), Some(1.0), "the last one, after 50 ms");
        assert_eq!(count("hit"), None);
        let lookups = "hotdesk_upstream_request_duration_seconds_count{adapter=\"http\",operation=\"lookup\"}";
        assert_eq!(m.value_of(lookups), Some(5.0), "the slow one included");
        let errors = "hotdesk_upstream_errors_total{adapter=\"http\",operation=\"lookup\"}";
        assert_eq!(m.value_of(errors), Some(2.0));
        assert_eq!(cache.readiness(), Ok(()), "it has answered before");
    }

    #[tokio::test]
    async fn not_ready_while_the_backend_never_answered() {
        let fake = Fake::new();
        let cache = cached(&fake, policy(60_000));
        assert_eq!(cache.readiness(), Ok(()), "not asked yet");
        fake.down.store(true, Ordering::SeqCst);
        assert!(cache.lookup("1001").await.is_err());
        assert!(cache.readiness().is_err(), "asked, and it never answered");
        fake.down.store(false, Ordering::SeqCst);
        assert!(cache.lookup("1001").await.unwrap().is_some());
        assert_eq!(cache.readiness(), Ok(()));
        // Failing again later is not "never loaded": the cache may serve stale.
        fake.down.store(true, Ordering::SeqCst);
        assert!(cache.lookup("1002").await.is_err());
        assert_eq!(cache.readiness(), Ok(()));
    }

    #[tokio::test]
    async fn unknown_extensions_are_cached_briefly() {
        let fake = Fake::new();
        let cache = cached(&fake, policy(60_000));
        for _ in 0..5 {
            assert!(cache.lookup("4040").await.unwrap().is_none());
        }
        assert_eq!(fake.calls(), 1);
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(cache.lookup("4040").await.unwrap().is_none());
        assert_eq!(fake.calls(), 2, "the negative entry expired");
    }

    #[tokio::test]
    async fn refetch_and_invalidate() {
        let fake = Fake::new();
        let cache = cached(&fake, policy(60_000));
        cache.lookup("1001").await.unwrap();
        cache.refetch("1001").await.unwrap();
        assert_eq!(
            fake.calls(),
            1,
            "an entry under a second old is not refetched"
        );
        tokio::time::sleep(Duration::from_millis(1100)).await;
        *fake.name.lock().unwrap() = "New".into();
        assert_eq!(cache.refetch("1001").await.unwrap().unwrap().name, "New");
        assert_eq!(fake.calls(), 2);
        cache.invalidate("1001").await;
        cache.lookup("1001").await.unwrap();
        assert_eq!(fake.calls(), 3);
    }
}
