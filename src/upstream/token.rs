//! One cached access token per PBX backend (FreePBX OAuth2, wazo-auth): reused until shortly
//! before it expires, fetched by one caller at a time (the lock is held across the fetch, so
//! concurrent lookups wait for that one request instead of each asking for a token).

use std::future::Future;
use std::time::Duration;

use http::HeaderValue;
use tokio::sync::Mutex;
use tokio::time::Instant;

#[derive(Default)]
pub struct TokenSlot {
    slot: Mutex<Option<(HeaderValue, Instant)>>,
}

impl TokenSlot {
    /// The cached token, unless `renew` or it has expired; else the one `fetch` brings, kept
    /// for the life it reports.
    pub async fn get<E, Fut>(
        &self,
        renew: bool,
        fetch: impl FnOnce() -> Fut,
    ) -> Result<HeaderValue, E>
    where
        Fut: Future<Output = Result<(HeaderValue, Duration), E>>,
    {
        let mut slot = self.slot.lock().await;
        if let Some((value, until)) = slot.as_ref()
            && !renew
            && Instant::now() < *until
        {
            return Ok(value.clone());
        }
        *slot = None;
        let (value, life) = fetch().await?;
        *slot = Some((value.clone(), Instant::now() + life));
        Ok(value)
    }
}

/// `text` as a header value that is never logged (`set_sensitive`); `None` when it holds
/// characters a header cannot.
pub fn sensitive_header(text: &str) -> Option<HeaderValue> {
    let mut value = HeaderValue::from_str(text).ok()?;
    value.set_sensitive(true);
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn reused_until_it_expires_or_renewal_is_asked() {
        let slot = TokenSlot::default();
        let fetches = std::cell::Cell::new(0);
        let fetch = |n: &str| {
            fetches.set(fetches.get() + 1);
            let v = sensitive_header(n).unwrap();
            async move { Ok::<_, ()>((v, Duration::from_secs(60))) }
        };
        assert_eq!(slot.get(false, || fetch("a")).await.unwrap(), "a");
        assert_eq!(slot.get(false, || fetch("b")).await.unwrap(), "a");
        assert_eq!(slot.get(true, || fetch("c")).await.unwrap(), "c");
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(slot.get(false, || fetch("d")).await.unwrap(), "d");
        assert_eq!(fetches.get(), 3);
        assert!(sensitive_header("bad\nvalue").is_none());
        assert!(sensitive_header("ok").unwrap().is_sensitive());
    }
}
