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
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::future::Cache;
use tokio::sync::watch;

use super::{BoxFuture, Directory, DirectoryError, User};

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

pub struct CachedDirectory {
    backend: Arc<dyn Directory>,
    policy: CachePolicy,
    cache: Cache<String, Entry>,
    inflight: Arc<Mutex<HashMap<String, watch::Receiver<Option<Fetched>>>>>,
}

impl CachedDirectory {
    pub fn new(backend: Arc<dyn Directory>, policy: CachePolicy) -> Arc<Self> {
        let cache = Cache::builder()
            .max_capacity(100_000)
            .expire_after(Lifetimes(policy))
            .build();
        let me = Arc::new(Self {
            backend,
            policy,
            cache,
            inflight: Arc::new(Mutex::new(HashMap::new())),
        });
        if let Some(mut changes) = me.backend.changes() {
            let weak = Arc::downgrade(&me);
            tokio::spawn(async move {
                while changes.changed().await.is_ok() {
                    let Some(me) = weak.upgrade() else { return };
                    me.invalidate_all();
                }
            });
        }
        me
    }

    pub fn invalidate_all(&self) {
        self.cache.invalidate_all();
    }

    pub async fn invalidate(&self, extension: &str) {
        self.cache.invalidate(extension).await;
    }

    /// Starts (or joins) the one backend fetch for `ext`; the result also lands in the cache.
    fn fetch(&self, ext: &str) -> watch::Receiver<Option<Fetched>> {
        let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(rx) = inflight.get(ext) {
            return rx.clone();
        }
        let (tx, rx) = watch::channel(None);
        inflight.insert(ext.to_owned(), rx.clone());
        let backend = self.backend.clone();
        let cache = self.cache.clone();
        let map = self.inflight.clone();
        let key = ext.to_owned();
        tokio::spawn(async move {
            let result = backend.lookup(&key).await;
            if let Ok(user) = &result {
                let entry = Entry {
                    user: user.clone(),
                    fetched: Instant::now(),
                };
                cache.insert(key.clone(), entry).await;
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
        match self.cache.get(ext).await {
            Some(e) if e.user.is_none() || now.duration_since(e.fetched) < self.policy.fresh => {
                Ok(e.user)
            }
            Some(stale) => match self.wait(self.fetch(ext)).await {
                Some(Ok(user)) => Ok(user),
                Some(Err(err)) => {
                    tracing::warn!(error = %err, extension = ext, "directory failed; answering from the stale cache");
                    Ok(stale.user)
                }
                None => {
                    tracing::warn!(
                        extension = ext,
                        "directory slow; answering from the stale cache"
                    );
                    Ok(stale.user)
                }
            },
            None => self.wait(self.fetch(ext)).await.unwrap_or_else(|| {
                Err(DirectoryError::Unavailable(format!(
                    "no answer within {} ms",
                    self.policy.deadline.as_millis()
                )))
            }),
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
        let cache = CachedDirectory::new(fake.clone(), policy(60_000));
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
        let cache = CachedDirectory::new(fake.clone(), policy(60_000));
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
        let cache = CachedDirectory::new(fake.clone(), policy(50));
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
    }

    #[tokio::test]
    async fn unknown_extensions_are_cached_briefly() {
        let fake = Fake::new();
        let cache = CachedDirectory::new(fake.clone(), policy(60_000));
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
        let cache = CachedDirectory::new(fake.clone(), policy(60_000));
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
