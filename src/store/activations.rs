//! Softphone activation links, the softphones they activated, and one-time desk login codes.
//! Only hashes are stored: a link's token as SHA-256 (it is 256 random bits), a code salted
//! (it is 8 digits and lives minutes). Each redemption is one transaction: a link or code is
//! used at most once even when two requests race.

use rusqlite::{OptionalExtension, TransactionBehavior, params};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use super::sqlite::{db, insert_event, parse_ts, ts};
use super::{AuditEvent, SqliteStore, StoreError};

/// Used and expired links are kept this long (a late fetch is told 410, not 404).
const KEEP_SPENT: time::Duration = time::Duration::days(30);

/// One activated softphone.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Device {
    pub id: i64,
    pub extension: String,
    #[serde(serialize_with = "rfc3339")]
    pub activated: OffsetDateTime,
    /// What the softphone said it was (its User-Agent), trimmed.
    pub user_agent: String,
    pub source_ip: String,
}

fn rfc3339<S: serde::Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
    use time::format_description::well_known::Rfc3339;
    s.serialize_str(&t.format(&Rfc3339).unwrap_or_default())
}

/// What a link is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    /// Never made (or long forgotten).
    Unknown,
    /// Used or expired.
    Gone,
    Live {
        extension: String,
        network: String,
        expires: OffsetDateTime,
    },
}

/// The outcome of fetching a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redeemed {
    Unknown,
    Gone,
    /// The user already has this many softphones: the link stays unused.
    Limit(usize),
    Activated {
        extension: String,
        network: String,
        device: i64,
    },
}

/// The SHA-256 of a link token, its key in the store.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn code_hash(salt: &[u8], code: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(code.as_bytes());
    h.finalize().into()
}

fn prune(tx: &rusqlite::Transaction<'_>, now: OffsetDateTime) -> Result<(), StoreError> {
    tx.execute(
        "DELETE FROM activation_links WHERE expires < ?1",
        params![ts(now - KEEP_SPENT)],
    )
    .map_err(db)?;
    tx.execute(
        "DELETE FROM login_codes WHERE expires < ?1",
        params![ts(now)],
    )
    .map_err(db)?;
    Ok(())
}

/// A link's row: extension, network, expiry and when it was used.
type LinkRow = (String, String, OffsetDateTime, Option<String>);

fn link_row(conn: &rusqlite::Connection, hash: &[u8; 32]) -> Result<Option<LinkRow>, StoreError> {
    conn.query_row(
        "SELECT extension, network, expires, used FROM activation_links WHERE token_hash = ?1",
        params![&hash[..]],
        |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                parse_ts(&r.get::<_, String>(2)?),
                r.get(3)?,
            ))
        },
    )
    .optional()
    .map_err(db)
}

fn devices_of(conn: &rusqlite::Connection, extension: &str) -> Result<Vec<Device>, StoreError> {
    let mut stmt = conn
        .prepare(
            "SELECT id, extension, activated, user_agent, source_ip FROM devices
             WHERE extension = ?1 ORDER BY id",
        )
        .map_err(db)?;
    let rows = stmt
        .query_map(params![extension], |r| {
            Ok(Device {
                id: r.get(0)?,
                extension: r.get(1)?,
                activated: parse_ts(&r.get::<_, String>(2)?),
                user_agent: r.get(3)?,
                source_ip: r.get(4)?,
            })
        })
        .map_err(db)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(db)
}

impl SqliteStore {
    /// Records a new link for `extension`; any unused link of that user stops working (one
    /// live link per user: a refreshed link replaces the old one).
    pub fn put_activation_link(
        &self,
        hash: &[u8; 32],
        extension: &str,
        network: &str,
        now: OffsetDateTime,
        expires: OffsetDateTime,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        let result = self.same_file().and_then(|()| {
            let mut conn = self.conn();
            let tx = conn.transaction().map_err(db)?;
            prune(&tx, now)?;
            tx.execute(
                "UPDATE activation_links SET expires = ?2
                 WHERE extension = ?1 AND used IS NULL AND expires > ?2",
                params![extension, ts(now)],
            )
            .map_err(db)?;
            tx.execute(
                "INSERT INTO activation_links (token_hash, extension, network, created, expires)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![&hash[..], extension, network, ts(now), ts(expires)],
            )
            .map_err(db)?;
            insert_event(&tx, event)?;
            tx.commit().map_err(db)
        });
        self.noted(result)
    }

    /// The link as it is, without using it (the QR image, the landing page).
    pub fn activation_link(
        &self,
        hash: &[u8; 32],
        now: OffsetDateTime,
    ) -> Result<LinkState, StoreError> {
        let row = link_row(&self.reader(), hash)?;
        Ok(match row {
            None => LinkState::Unknown,
            Some((_, _, expires, used)) if used.is_some() || expires <= now => LinkState::Gone,
            Some((extension, network, expires, None)) => LinkState::Live {
                extension,
                network,
                expires,
            },
            Some(_) => LinkState::Gone,
        })
    }

    /// The unused, unexpired link of each user who has one: when it expires.
    pub fn live_activation_link(
        &self,
        extension: &str,
        now: OffsetDateTime,
    ) -> Result<Option<OffsetDateTime>, StoreError> {
        let conn = self.reader();
        conn.query_row(
            "SELECT MAX(expires) FROM activation_links
             WHERE extension = ?1 AND used IS NULL AND expires > ?2",
            params![extension, ts(now)],
            |r| r.get::<_, Option<String>>(0),
        )
        .map(|t| t.map(|t| parse_ts(&t)))
        .map_err(db)
    }

    /// Uses a link: marks it used and counts one softphone, in one transaction, unless the
    /// user already has `max_devices` (then the link stays as it was). `refused` and
    /// `activated` are the audit events of either outcome (completed here with the user).
    #[allow(clippy::too_many_arguments)]
    pub fn redeem_activation_link(
        &self,
        hash: &[u8; 32],
        now: OffsetDateTime,
        max_devices: usize,
        user_agent: &str,
        source_ip: &str,
        mut refused: AuditEvent,
        mut activated: AuditEvent,
    ) -> Result<Redeemed, StoreError> {
        let result = self.same_file().and_then(|()| {
            let mut conn = self.conn();
            // IMMEDIATE: the read and the write are one step, whoever else writes.
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db)?;
            let row = link_row(&tx, hash)?;
            let Some((extension, network, expires, used)) = row else {
                return Ok(Redeemed::Unknown);
            };
            refused.extension = Some(extension.clone());
            refused.source_ip = Some(source_ip.to_owned());
            if used.is_some() || expires <= now {
                refused.detail = format!(
                    "activation link {}",
                    if used.is_some() { "already used" } else { "expired" }
                );
                insert_event(&tx, &refused)?;
                tx.commit().map_err(db)?;
                return Ok(Redeemed::Gone);
            }
            let count: i64 = tx
                .query_row(
                    "SELECT COUNT(*) FROM devices WHERE extension = ?1",
                    params![extension],
                    |r| r.get(0),
                )
                .map_err(db)?;
            let count = usize::try_from(count).unwrap_or(usize::MAX);
            if count >= max_devices {
                refused.detail = format!("device activation limit reached ({count} of {max_devices})");
                insert_event(&tx, &refused)?;
                tx.commit().map_err(db)?;
                return Ok(Redeemed::Limit(count));
            }
            tx.execute(
                "UPDATE activation_links SET used = ?2 WHERE token_hash = ?1",
                params![&hash[..], ts(now)],
            )
            .map_err(db)?;
            tx.execute(
                "INSERT INTO devices (extension, activated, user_agent, source_ip) VALUES (?1, ?2, ?3, ?4)",
                params![extension, ts(now), user_agent, source_ip],
            )
            .map_err(db)?;
            let device = tx.last_insert_rowid();
            activated.extension = Some(extension.clone());
            activated.network = Some(network.clone());
            activated.source_ip = Some(source_ip.to_owned());
            insert_event(&tx, &activated)?;
            tx.commit().map_err(db)?;
            Ok(Redeemed::Activated {
                extension,
                network,
                device,
            })
        });
        self.noted(result)
    }

    /// The softphones `extension` activated, oldest first.
    pub fn devices(&self, extension: &str) -> Result<Vec<Device>, StoreError> {
        devices_of(&self.reader(), extension)
    }

    /// Every user's softphone count.
    pub fn device_counts(&self) -> Result<std::collections::HashMap<String, usize>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn
            .prepare("SELECT extension, COUNT(*) FROM devices GROUP BY extension")
            .map_err(db)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as usize))
            })
            .map_err(db)?;
        rows.collect::<Result<_, _>>().map_err(db)
    }

    /// Removes one softphone of `extension` (`Some(id)`) or all of them (a reset), with its
    /// audit event; how many went.
    pub fn remove_devices(
        &self,
        extension: &str,
        id: Option<i64>,
        event: &AuditEvent,
    ) -> Result<usize, StoreError> {
        let result = self.same_file().and_then(|()| {
            let mut conn = self.conn();
            let tx = conn.transaction().map_err(db)?;
            let n = match id {
                Some(id) => tx.execute(
                    "DELETE FROM devices WHERE extension = ?1 AND id = ?2",
                    params![extension, id],
                ),
                None => tx.execute(
                    "DELETE FROM devices WHERE extension = ?1",
                    params![extension],
                ),
            }
            .map_err(db)?;
            if n > 0 {
                insert_event(&tx, event)?;
            }
            tx.commit().map_err(db)?;
            Ok(n)
        });
        self.noted(result)
    }

    /// Whether a live code has this value (codes must be told apart by value alone).
    fn code_taken(
        tx: &rusqlite::Transaction<'_>,
        code: &str,
        now: OffsetDateTime,
    ) -> Result<Option<(i64, String)>, StoreError> {
        let mut stmt = tx
            .prepare(
                "SELECT id, salt, code_hash, extension FROM login_codes
                 WHERE used IS NULL AND expires > ?1",
            )
            .map_err(db)?;
        let rows = stmt
            .query_map(params![ts(now)], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })
            .map_err(db)?;
        let mut found = None;
        // Every live row is compared, in constant time each, whether or not one matched.
        for row in rows {
            let (id, salt, hash, extension) = row.map_err(db)?;
            if bool::from(code_hash(&salt, code).ct_eq(&hash[..])) && found.is_none() {
                found = Some((id, extension));
            }
        }
        Ok(found)
    }

    /// Records a new code unless a live code already has its value (`Ok(false)`: draw
    /// another). `event` is audited with it; the code itself never is.
    pub fn put_login_code(
        &self,
        code: &str,
        extension: &str,
        now: OffsetDateTime,
        expires: OffsetDateTime,
        event: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).map_err(db)?;
        let result = self.same_file().and_then(|()| {
            let mut conn = self.conn();
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db)?;
            prune(&tx, now)?;
            if Self::code_taken(&tx, code, now)?.is_some() {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO login_codes (salt, code_hash, extension, expires) VALUES (?1, ?2, ?3, ?4)",
                params![&salt[..], &code_hash(&salt, code)[..], extension, ts(expires)],
            )
            .map_err(db)?;
            insert_event(&tx, event)?;
            tx.commit().map_err(db)?;
            Ok(true)
        });
        self.noted(result)
    }

    /// Uses a code: the extension it was made for, once.
    pub fn redeem_login_code(
        &self,
        code: &str,
        now: OffsetDateTime,
    ) -> Result<Option<String>, StoreError> {
        let result = self.same_file().and_then(|()| {
            let mut conn = self.conn();
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db)?;
            let Some((id, extension)) = Self::code_taken(&tx, code, now)? else {
                return Ok(None);
            };
            tx.execute(
                "UPDATE login_codes SET used = ?2 WHERE id = ?1",
                params![id, ts(now)],
            )
            .map_err(db)?;
            tx.commit().map_err(db)?;
            Ok(Some(extension))
        });
        self.noted(result)
    }

    /// Forgets every unused link and code of a user (disabled, deleted).
    pub fn revoke_activations(
        &self,
        extension: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let result = self.same_file().and_then(|()| {
            let mut conn = self.conn();
            let tx = conn.transaction().map_err(db)?;
            tx.execute(
                "UPDATE activation_links SET expires = ?2
                 WHERE extension = ?1 AND used IS NULL AND expires > ?2",
                params![extension, ts(now)],
            )
            .map_err(db)?;
            tx.execute(
                "DELETE FROM login_codes WHERE extension = ?1",
                params![extension],
            )
            .map_err(db)?;
            tx.commit().map_err(db)
        });
        self.noted(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{EventKind, Store};

    /// An audit event about `extension`.
    pub fn event(kind: EventKind, extension: &str, detail: impl Into<String>) -> AuditEvent {
        let mut e = AuditEvent::new(kind, detail);
        e.extension = Some(extension.to_owned());
        e
    }

    fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("a.sqlite")).unwrap();
        (dir, s)
    }

    fn at(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_700_000_000 + secs).unwrap()
    }

    fn ev(kind: EventKind) -> AuditEvent {
        AuditEvent::new(kind, "")
    }

    fn redeem(s: &SqliteStore, token: &str, now: i64, max: usize) -> Redeemed {
        s.redeem_activation_link(
            &token_hash(token),
            at(now),
            max,
            "Linphone/5.2",
            "192.0.2.7",
            ev(EventKind::ActivationRefused),
            ev(EventKind::SoftphoneActivated),
        )
        .unwrap()
    }

    #[test]
    fn a_link_works_once_then_is_gone_and_a_new_one_replaces_the_old() {
        let (_d, s) = store();
        let e = event(EventKind::ActivationLink, "1001", "made");
        s.put_activation_link(&token_hash("a"), "1001", "internal", at(0), at(100), &e)
            .unwrap();
        assert!(matches!(
            s.activation_link(&token_hash("a"), at(1)).unwrap(),
            LinkState::Live { .. }
        ));
        assert_eq!(
            s.live_activation_link("1001", at(1)).unwrap(),
            Some(at(100))
        );
        // A refreshed link: the old one is gone at once.
        s.put_activation_link(&token_hash("b"), "1001", "internal", at(2), at(100), &e)
            .unwrap();
        assert_eq!(redeem(&s, "a", 3, 4), Redeemed::Gone);
        let Redeemed::Activated { extension, .. } = redeem(&s, "b", 3, 4) else {
            panic!("the fresh link activates");
        };
        assert_eq!(extension, "1001");
        assert_eq!(redeem(&s, "b", 4, 4), Redeemed::Gone);
        assert_eq!(redeem(&s, "never", 4, 4), Redeemed::Unknown);
        assert_eq!(s.devices("1001").unwrap().len(), 1);
        assert_eq!(s.devices("1001").unwrap()[0].user_agent, "Linphone/5.2");
        let kinds: Vec<_> = s.audit(10).unwrap().iter().map(|e| e.kind).collect();
        assert!(kinds.contains(&EventKind::SoftphoneActivated));
        assert!(kinds.contains(&EventKind::ActivationRefused));
    }

    #[test]
    fn an_expired_link_is_gone_and_the_limit_keeps_a_link_unused() {
        let (_d, s) = store();
        let e = event(EventKind::ActivationLink, "1001", "made");
        s.put_activation_link(&token_hash("x"), "1001", "internal", at(0), at(10), &e)
            .unwrap();
        assert_eq!(redeem(&s, "x", 10, 4), Redeemed::Gone);
        s.put_activation_link(&token_hash("y"), "1001", "internal", at(20), at(100), &e)
            .unwrap();
        assert_eq!(redeem(&s, "y", 21, 0), Redeemed::Limit(0));
        // Still usable once a slot is free.
        assert!(matches!(redeem(&s, "y", 22, 1), Redeemed::Activated { .. }));
        let reset = event(EventKind::DevicesReset, "1001", "reset");
        assert_eq!(s.remove_devices("1001", None, &reset).unwrap(), 1);
        assert_eq!(s.remove_devices("1001", None, &reset).unwrap(), 0);
        assert!(s.device_counts().unwrap().is_empty());
    }

    #[test]
    fn a_code_is_used_once_expires_and_is_stored_salted() {
        let (_d, s) = store();
        let e = event(EventKind::LoginCode, "1002", "made");
        assert!(
            s.put_login_code("12345678", "1002", at(0), at(600), &e)
                .unwrap()
        );
        // The same value cannot be live twice.
        assert!(
            !s.put_login_code("12345678", "1003", at(1), at(600), &e)
                .unwrap()
        );
        assert_eq!(s.redeem_login_code("87654321", at(2)).unwrap(), None);
        assert_eq!(
            s.redeem_login_code("12345678", at(2)).unwrap().as_deref(),
            Some("1002")
        );
        assert_eq!(s.redeem_login_code("12345678", at(3)).unwrap(), None);
        assert!(
            s.put_login_code("11112222", "1002", at(0), at(600), &e)
                .unwrap()
        );
        assert_eq!(s.redeem_login_code("11112222", at(600)).unwrap(), None);
        // Nothing in the file holds the code in clear.
        let conn = s.conn();
        let stored: Vec<u8> = conn
            .query_row("SELECT code_hash FROM login_codes LIMIT 1", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_ne!(stored, b"12345678");
        assert_eq!(stored.len(), 32);
    }
}
