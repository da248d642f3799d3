//! Delivers queued write-backs to the PBX. Rows are delivered oldest first; when one fails,
//! later rows for the same phone wait, so a phone's logins and logouts arrive in order.
//! Delivery is at least once: a row is removed only after the PBX accepted it, so a crash
//! between the two can repeat one; the `since` field and the row id (`Idempotency-Key`)
//! let the PBX drop a repeat.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};

use super::{Client, UpstreamError};
use crate::config::WritebackKind;
use crate::metrics::Metrics;
use crate::phone::Mac;
use crate::store::{LoginBook, OutboxItem, WriteMethod};

const BATCH: usize = 100;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Re-check now and then even without a wake-up (rows left by an earlier run).
const IDLE_RECHECK: Duration = Duration::from_secs(30);

enum Failure {
    /// Try again later.
    Retry(String),
    /// The PBX refused this row for good (a 4xx): keep it as dead, go on.
    Refused(String),
}

pub struct Outbox {
    pub book: Arc<LoginBook>,
    pub client: Arc<Client>,
    pub kind: WritebackKind,
    pub max_backoff: Duration,
    pub metrics: Arc<Metrics>,
}

impl Outbox {
    /// Runs until the task is aborted.
    pub async fn run(self) {
        let ready = self.book.outbox_ready();
        let mut backoff = FIRST_BACKOFF;
        loop {
            let items = match self.book.outbox_pending(BATCH).await {
                Ok(items) => items,
                Err(e) => {
                    tracing::error!(error = %e, "outbox: cannot read pending rows");
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            };
            if items.is_empty() {
                let _ = tokio::time::timeout(IDLE_RECHECK, ready.notified()).await;
                continue;
            }
            if self.round(items).await {
                backoff = FIRST_BACKOFF;
            } else {
                let pending = self
                    .book
                    .outbox_status()
                    .await
                    .map(|s| s.pending)
                    .unwrap_or(0);
                tracing::warn!(
                    pending,
                    retry_in_ms = backoff.as_millis() as u64,
                    "outbox: PBX delivery failing"
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(self.max_backoff);
            }
        }
    }

    /// One pass over the pending rows; false when something must be retried.
    async fn round(&self, items: Vec<OutboxItem>) -> bool {
        let mut blocked: HashSet<Mac> = HashSet::new();
        for item in items {
            if blocked.contains(&item.mac) {
                continue;
            }
            let outcome = self.deliver(&item).await;
            let stored = match outcome {
                Ok(()) => self.book.outbox_done(item.id).await,
                Err(Failure::Refused(e)) => {
                    tracing::error!(mac = %item.mac, id = item.id, error = %e, "outbox: the PBX refused a write-back; kept as dead");
                    self.book.outbox_failed(item.id, e, true).await
                }
                Err(Failure::Retry(e)) => {
                    blocked.insert(item.mac);
                    self.book.outbox_failed(item.id, e, false).await
                }
            };
            if let Err(e) = stored {
                tracing::error!(error = %e, "outbox: cannot record a delivery");
                return false;
            }
        }
        blocked.is_empty()
    }

    async fn deliver(&self, item: &OutboxItem) -> Result<(), Failure> {
        let (method, path, body) = match self.kind {
            WritebackKind::Devices => {
                let path = format!("/devices/{}", item.mac);
                match item.method {
                    WriteMethod::Put => (Method::PUT, path, Some(item.body.clone().into_bytes())),
                    WriteMethod::Delete => (Method::DELETE, path, None),
                }
            }
            WritebackKind::Webhook => {
                let mut event: serde_json::Value =
                    serde_json::from_str(&item.body).unwrap_or_else(|_| serde_json::json!({}));
                event["id"] = item.id.to_string().into();
                event["type"] = match item.method {
                    WriteMethod::Put => "hotdesk.login",
                    WriteMethod::Delete => "hotdesk.logout",
                }
                .into();
                event["mac"] = item.mac.to_string().into();
                (
                    Method::POST,
                    String::new(),
                    Some(event.to_string().into_bytes()),
                )
            }
            WritebackKind::None => return Ok(()),
        };
        let key = item.id.to_string();
        let started = Instant::now();
        let sent = self
            .client
            .send_with_key(method.clone(), &path, body, Some(&key))
            .await;
        let outcome = match sent {
            Ok(r) if r.status.is_success() => Ok(()),
            // Already logged out at the PBX: that is what we wanted.
            Ok(r) if method == Method::DELETE && r.status == StatusCode::NOT_FOUND => Ok(()),
            Ok(r)
                if r.status.is_client_error()
                    && r.status != StatusCode::REQUEST_TIMEOUT
                    && r.status != StatusCode::TOO_MANY_REQUESTS =>
            {
                Err(Failure::Refused(format!("PBX answered {}", r.status)))
            }
            Ok(r) => Err(Failure::Retry(format!("PBX answered {}", r.status))),
            Err(e @ UpstreamError::BreakerOpen) => Err(Failure::Retry(e.to_string())),
            Err(e) => Err(Failure::Retry(e.to_string())),
        };
        let took = started.elapsed();
        self.metrics
            .upstream("writeback", "deliver", took, outcome.is_ok());
        outcome
    }
}
