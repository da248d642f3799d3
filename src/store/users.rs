//! The embedded directory's rows. Secrets arrive here already protected: the PIN as an
//! argon2 PHC string, the SIP secret sealed (see `directory::embedded`); this module never
//! sees either in clear.

use rusqlite::{OptionalExtension, params};
use time::OffsetDateTime;

use super::sqlite::{db, insert_event, parse_ts, ts};
use super::{AuditEvent, SqliteStore, StoreError};

/// One user as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredUser {
    pub extension: String,
    pub name: String,
    /// argon2 PHC string; `None`: no PIN (the `[login] user_password` applies).
    pub pin_hash: Option<String>,
    /// `nonce || ciphertext || tag`, bound to the extension.
    pub sip_secret: Option<Vec<u8>>,
    pub template: Option<String>,
    pub enabled: bool,
    pub email: Option<String>,
    pub created: OffsetDateTime,
    pub updated: OffsetDateTime,
}

/// One change to the users table.
#[derive(Debug, Clone)]
pub enum UserWrite {
    /// Insert, or update an existing row (keeping its `created`). A `None` PIN or SIP secret
    /// keeps the stored one when `keep_secrets`, else clears it.
    Put {
        user: StoredUser,
        keep_secrets: bool,
    },
    Delete(String),
}

impl SqliteStore {
    /// Every user, in extension order, and the generation they were read at.
    pub fn load_users(&self) -> Result<(i64, Vec<StoredUser>), StoreError> {
        let mut conn = self.conn();
        // One read transaction: the generation belongs to exactly these rows.
        let tx = conn.transaction().map_err(db)?;
        let generation = generation(&tx)?;
        let mut stmt = tx
            .prepare(
                "SELECT extension, name, pin_hash, sip_secret, template, enabled, email, created, updated
                 FROM users ORDER BY extension",
            )
            .map_err(db)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(StoredUser {
                    extension: r.get(0)?,
                    name: r.get(1)?,
                    pin_hash: r.get(2)?,
                    sip_secret: r.get(3)?,
                    template: r.get(4)?,
                    enabled: r.get::<_, i64>(5)? != 0,
                    email: r.get(6)?,
                    created: parse_ts(&r.get::<_, String>(7)?),
                    updated: parse_ts(&r.get::<_, String>(8)?),
                })
            })
            .map_err(db)?;
        let users = rows.collect::<Result<Vec<_>, _>>().map_err(db)?;
        Ok((generation, users))
    }

    /// Counts every change to the users, by any process; cheap to poll.
    pub fn users_generation(&self) -> Result<i64, StoreError> {
        let conn = self.conn();
        generation(&conn)
    }

    /// Applies every write and its audit events in one transaction: all or nothing.
    pub fn write_users(
        &self,
        writes: &[UserWrite],
        events: &[AuditEvent],
    ) -> Result<(), StoreError> {
        let result = self.same_file().and_then(|()| {
            let mut conn = self.conn();
            let tx = conn.transaction().map_err(db)?;
            for w in writes {
                match w {
                    UserWrite::Put { user: u, keep_secrets } => {
                        let sql = if *keep_secrets {
                            "INSERT INTO users (extension, name, pin_hash, sip_secret, template, enabled, email, created, updated)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                             ON CONFLICT(extension) DO UPDATE SET name = excluded.name,
                               pin_hash = COALESCE(excluded.pin_hash, users.pin_hash),
                               sip_secret = COALESCE(excluded.sip_secret, users.sip_secret),
                               template = excluded.template, enabled = excluded.enabled,
                               email = excluded.email, updated = excluded.updated"
                        } else {
                            "INSERT INTO users (extension, name, pin_hash, sip_secret, template, enabled, email, created, updated)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                             ON CONFLICT(extension) DO UPDATE SET name = excluded.name,
                               pin_hash = excluded.pin_hash, sip_secret = excluded.sip_secret,
                               template = excluded.template, enabled = excluded.enabled,
                               email = excluded.email, updated = excluded.updated"
                        };
                        tx.execute(
                            sql,
                            params![
                                u.extension,
                                u.name,
                                u.pin_hash,
                                u.sip_secret,
                                u.template,
                                u.enabled as i64,
                                u.email,
                                ts(u.created),
                                ts(u.updated)
                            ],
                        )
                        .map_err(db)?;
                    }
                    UserWrite::Delete(ext) => {
                        tx.execute("DELETE FROM users WHERE extension = ?1", params![ext])
                            .map_err(db)?;
                    }
                }
            }
            for e in events {
                insert_event(&tx, e)?;
            }
            tx.execute(
                "UPDATE users_generation SET generation = generation + 1 WHERE id = 1",
                [],
            )
            .map_err(db)?;
            tx.commit().map_err(db)
        });
        self.noted(result)
    }
}

fn generation(conn: &rusqlite::Connection) -> Result<i64, StoreError> {
    conn.query_row(
        "SELECT generation FROM users_generation WHERE id = 1",
        [],
        |r| r.get(0),
    )
    .optional()
    .map_err(db)
    .map(|g| g.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{EventKind, Store};

    fn user(ext: &str, pin: Option<&str>) -> StoredUser {
        let at = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        StoredUser {
            extension: ext.into(),
            name: "Zoë <&>".into(),
            pin_hash: pin.map(str::to_owned),
            sip_secret: Some(vec![1, 2, 3]),
            template: None,
            enabled: true,
            email: None,
            created: at,
            updated: at,
        }
    }

    #[test]
    fn writes_commit_together_with_their_audit_and_bump_the_generation() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("u.sqlite")).unwrap();
        assert_eq!(s.load_users().unwrap(), (0, vec![]));
        let put = |u, keep| UserWrite::Put {
            user: u,
            keep_secrets: keep,
        };
        let ev = AuditEvent::new(EventKind::UserChanged, "created");
        s.write_users(&[put(user("1001", Some("$phc")), false)], &[ev])
            .unwrap();
        // An update without secrets keeps them when asked to.
        let mut plain = user("1001", None);
        plain.sip_secret = None;
        plain.name = "Ada".into();
        s.write_users(&[put(plain.clone(), true)], &[]).unwrap();
        let (g, users) = s.load_users().unwrap();
        assert_eq!(g, 2);
        assert_eq!(users[0].name, "Ada");
        assert_eq!(users[0].pin_hash.as_deref(), Some("$phc"));
        assert_eq!(users[0].sip_secret, Some(vec![1, 2, 3]));
        s.write_users(&[put(plain, false)], &[]).unwrap();
        assert_eq!(s.load_users().unwrap().1[0].pin_hash, None);
        assert_eq!(s.audit(10).unwrap()[0].kind, EventKind::UserChanged);
        s.write_users(&[UserWrite::Delete("1001".into())], &[])
            .unwrap();
        assert_eq!(s.load_users().unwrap(), (4, vec![]));
        assert_eq!(s.users_generation().unwrap(), 4);
    }
}
