//! The moka cache in front of any directory backend. Concurrent misses for one extension
//! become one backend call; the call runs in its own task, so a phone that hangs up
//! mid-lookup cannot stall the others waiting on it.

use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;

use super::{BoxFuture, Directory, DirectoryError, User};

pub struct CachedDirectory {
    backend: Arc<dyn Directory>,
    cache: Cache<String, Option<Arc<User>>>,
}

impl CachedDirectory {
    pub fn new(backend: Arc<dyn Directory>, ttl: Duration) -> Arc<Self> {
        let cache = Cache::builder()
            .max_capacity(100_000)
            .time_to_live(ttl)
            .build();
        let me = Arc::new(Self { backend, cache });
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
}

impl Directory for CachedDirectory {
    fn lookup<'a>(
        &'a self,
        extension: &'a str,
    ) -> BoxFuture<'a, Result<Option<Arc<User>>, DirectoryError>> {
        Box::pin(async move {
            let backend = self.backend.clone();
            let key = extension.to_owned();
            self.cache
                .try_get_with(key.clone(), async move {
                    tokio::spawn(async move { backend.lookup(&key).await })
                        .await
                        .map_err(|e| {
                            DirectoryError::Unavailable(format!("lookup task failed: {e}"))
                        })?
                })
                .await
                .map_err(|e: Arc<DirectoryError>| (*e).clone())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Slow {
        calls: AtomicUsize,
    }

    impl Directory for Slow {
        fn lookup<'a>(
            &'a self,
            ext: &'a str,
        ) -> BoxFuture<'a, Result<Option<Arc<User>>, DirectoryError>> {
            Box::pin(async move {
                self.calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok((ext == "1001").then(|| {
                    Arc::new(User {
                        extension: ext.into(),
                        name: "Ada".into(),
                        voicemail_pin: None,
                        sip_password: crate::secret::Secret::new("s"),
                        template: None,
                    })
                }))
            })
        }
    }

    #[tokio::test]
    async fn concurrent_misses_make_one_call() {
        let backend = Arc::new(Slow {
            calls: AtomicUsize::new(0),
        });
        let cache = CachedDirectory::new(backend.clone(), Duration::from_secs(60));
        let lookups: Vec<_> = (0..100)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { cache.lookup("1001").await.unwrap().is_some() })
            })
            .collect();
        for l in lookups {
            assert!(l.await.unwrap());
        }
        assert_eq!(backend.calls.load(Ordering::SeqCst), 1);
        assert!(cache.lookup("9999").await.unwrap().is_none());
        assert_eq!(backend.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_cancelled_first_caller_does_not_stall_the_others() {
        let backend = Arc::new(Slow {
            calls: AtomicUsize::new(0),
        });
        let cache = CachedDirectory::new(backend.clone(), Duration::from_secs(60));
        let first = {
            let cache = cache.clone();
            tokio::spawn(async move { cache.lookup("1001").await.map(|u| u.is_some()) })
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
            let got = tokio::time::timeout(Duration::from_secs(2), w).await;
            assert!(got.expect("waiter stalled").unwrap());
        }
    }
}
