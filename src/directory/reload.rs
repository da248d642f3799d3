//! Users loaded from files and re-loaded when any file that was read changes. A broken
//! edit is logged and the last good version stays in use.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use super::{BoxFuture, Directory, DirectoryError, User};

pub(super) type Users = HashMap<String, Arc<User>>;

/// Loads the users and names every file it read (so includes are watched too).
pub(super) type Loader = Arc<dyn Fn() -> Result<(Users, Vec<PathBuf>), String> + Send + Sync>;

type Stamps = Vec<(PathBuf, Option<(SystemTime, u64)>)>;

fn stamps(files: &[PathBuf]) -> Stamps {
    files
        .iter()
        .map(|p| {
            let meta = std::fs::metadata(p).ok();
            let stamp = meta.and_then(|m| Some((m.modified().ok()?, m.len())));
            (p.clone(), stamp)
        })
        .collect()
}

/// Users loaded from files, kept current; a [`Directory`] backend.
pub struct Reloading {
    users: Arc<RwLock<Arc<Users>>>,
    changes: watch::Receiver<u64>,
}

impl Reloading {
    /// Loads once (an error stops start-up), then polls every `poll`.
    pub fn start(what: &'static str, loader: Loader, poll: Duration) -> Result<Self, String> {
        let (first, files) = loader()?;
        // Stamped right after reading; an edit racing the first load is caught next poll.
        let mut last = stamps(&files);
        let users = Arc::new(RwLock::new(Arc::new(first)));
        let (tx, rx) = watch::channel(0u64);
        let shared = users.clone();
        tokio::spawn(async move {
            let mut generation = 0u64;
            let mut tick = tokio::time::interval(poll);
            loop {
                tick.tick().await;
                if tx.is_closed() {
                    return;
                }
                let files: Vec<PathBuf> = last.iter().map(|(p, _)| p.clone()).collect();
                // One stat per file read (with spooldir PINs: per mailbox), off the workers.
                let Ok(now) = tokio::task::spawn_blocking(move || stamps(&files)).await else {
                    continue;
                };
                if now == last {
                    continue;
                }
                let load = loader.clone();
                match tokio::task::spawn_blocking(move || load()).await {
                    Ok(Ok((fresh, files))) => {
                        last = stamps(&files);
                        let count = fresh.len();
                        *shared.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(fresh);
                        generation += 1;
                        let _ = tx.send(generation);
                        tracing::info!(users = count, what, "directory reloaded");
                    }
                    Ok(Err(e)) => {
                        last = now;
                        tracing::error!(error = %e, what, "directory not reloaded; keeping the previous version");
                    }
                    Err(e) => tracing::error!(error = %e, what, "directory reload task failed"),
                }
            }
        });
        Ok(Self { users, changes: rx })
    }

    pub fn get(&self, extension: &str) -> Option<Arc<User>> {
        self.users
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(extension)
            .cloned()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn len(&self) -> usize {
        self.users.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.clone()
    }
}

impl Directory for Reloading {
    fn lookup<'a>(
        &'a self,
        extension: &'a str,
    ) -> BoxFuture<'a, Result<Option<Arc<User>>, DirectoryError>> {
        let found = self.get(extension);
        Box::pin(async move { Ok(found) })
    }

    fn changes(&self) -> Option<watch::Receiver<u64>> {
        Some(self.subscribe())
    }
}
