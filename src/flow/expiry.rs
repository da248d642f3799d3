//! Logins end by themselves: after `max_login`, and/or at the first `auto_logout` time of day
//! after they began (server time zone). The phone gets the base profile at its next fetch;
//! the audit trail says why.

use std::sync::Arc;
use std::time::Duration;

use time::{OffsetDateTime, Time, UtcOffset};

use crate::clock::Clock;
use crate::store::{EventKind, Login, LoginBook};

#[derive(Debug, Clone, Copy)]
pub struct ExpiryPolicy {
    pub max_login: Option<Duration>,
    pub daily_at: Option<Time>,
    pub offset: UtcOffset,
}

/// Why `login` has ended by `now`, if it has.
pub fn expired(policy: &ExpiryPolicy, login: &Login, now: OffsetDateTime) -> Option<String> {
    if let Some(max) = policy.max_login
        && now >= login.since + max
    {
        return Some(format!("logged in longer than {}", humanize(max)));
    }
    if let Some(at) = policy.daily_at {
        let since = login.since.to_offset(policy.offset);
        let mut boundary = since.replace_time(at);
        if boundary <= since {
            boundary += time::Duration::DAY;
        }
        if now >= boundary {
            return Some(format!(
                "daily logout at {:02}:{:02}",
                at.hour(),
                at.minute()
            ));
        }
    }
    None
}

fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, (s % 3600) / 60) {
        (0, m) => format!("{m}m"),
        (h, 0) => format!("{h}h"),
        (h, m) => format!("{h}h{m}m"),
    }
}

/// Checks every `every` and ends what has expired. Runs until aborted.
pub async fn sweep(
    book: Arc<LoginBook>,
    clock: Arc<dyn Clock>,
    policy: ExpiryPolicy,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let now = clock.now();
        for login in book.all() {
            let Some(reason) = expired(&policy, &login, now) else {
                continue;
            };
            match book
                .logout_identity(
                    login.mac,
                    login.identity,
                    EventKind::AutoLogout,
                    "hotdesk",
                    &reason,
                )
                .await
            {
                Ok(Some(_)) => {
                    tracing::info!(mac = %login.mac, extension = %login.extension, reason, "auto-logout")
                }
                Ok(None) => {}
                Err(e) => tracing::error!(error = %e, mac = %login.mac, "auto-logout not recorded"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{datetime, offset, time};

    fn login_at(since: OffsetDateTime) -> Login {
        let mut l = crate::store::sample_login("00085d000001", "1001");
        l.since = since;
        l
    }

    #[test]
    fn max_login_and_daily_time() {
        let policy = ExpiryPolicy {
            max_login: Some(Duration::from_secs(10 * 3600)),
            daily_at: Some(time!(02:00)),
            offset: offset!(+1),
        };
        // Logged in 09:00 local (08:00 UTC).
        let l = login_at(datetime!(2026-11-23 08:00 UTC));
        assert_eq!(expired(&policy, &l, datetime!(2026-11-23 17:59 UTC)), None);
        assert_eq!(
            expired(&policy, &l, datetime!(2026-11-23 18:00 UTC)).as_deref(),
            Some("logged in longer than 10h")
        );
        let daily_only = ExpiryPolicy {
            max_login: None,
            ..policy
        };
        // 02:00 local on the next day is 01:00 UTC.
        assert_eq!(
            expired(&daily_only, &l, datetime!(2026-11-24 00:59 UTC)),
            None
        );
        assert_eq!(
            expired(&daily_only, &l, datetime!(2026-11-24 01:00 UTC)).as_deref(),
            Some("daily logout at 02:00")
        );
        // Logged in at 01:30 local: the same night's 02:00 ends it.
        let night = login_at(datetime!(2026-11-23 00:30 UTC));
        assert!(expired(&daily_only, &night, datetime!(2026-11-23 01:00 UTC)).is_some());
        let none = ExpiryPolicy {
            max_login: None,
            daily_at: None,
            offset: offset!(UTC),
        };
        assert_eq!(expired(&none, &l, datetime!(2030-01-01 00:00 UTC)), None);
    }
}
