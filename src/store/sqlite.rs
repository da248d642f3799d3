//! The embedded store: one SQLite file, created on first start, migrated by
//! `PRAGMA user_version`. WAL with `synchronous=FULL`: a commit survives `kill -9`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{
    AuditEvent, AuditFilter, Change, EventKind, LockoutRow, Login, OutboxEntry, OutboxItem,
    OutboxStatus, PhoneCredential, ReloadSent, Store, StoreError, WriteMethod,
};

/// Schema steps; step N brings `user_version` from N to N+1. Append, never edit.
const MIGRATIONS: &[&str] = &[
    "CREATE TABLE logins (
        mac        TEXT PRIMARY KEY,
        extension  TEXT NOT NULL,
        name       TEXT NOT NULL,
        vendor     TEXT NOT NULL,
        model      TEXT NOT NULL,
        network    TEXT NOT NULL,
        template   TEXT,
        since      TEXT NOT NULL,
        source_ip  TEXT NOT NULL,
        credential TEXT NOT NULL
     );
     CREATE INDEX logins_extension ON logins(extension);
     CREATE TABLE audit (
        id        INTEGER PRIMARY KEY AUTOINCREMENT,
        at        TEXT NOT NULL,
        kind      TEXT NOT NULL,
        mac       TEXT,
        extension TEXT,
        network   TEXT,
        source_ip TEXT,
        detail    TEXT NOT NULL
     );",
    // The write-back outbox: rows commit with the login they describe.
    "CREATE TABLE outbox (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        mac        TEXT NOT NULL,
        method     TEXT NOT NULL,
        body       TEXT NOT NULL,
        created    TEXT NOT NULL,
        attempts   INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        dead       INTEGER NOT NULL DEFAULT 0
     );
     CREATE INDEX outbox_pending ON outbox(dead, id);",
    "ALTER TABLE logins ADD COLUMN applied_at TEXT;",
    // Several identities per phone (Snom): the key becomes (mac, identity).
    "CREATE TABLE logins_v4 (
        mac        TEXT NOT NULL,
        identity   INTEGER NOT NULL,
        extension  TEXT NOT NULL,
        name       TEXT NOT NULL,
        vendor     TEXT NOT NULL,
        model      TEXT NOT NULL,
        network    TEXT NOT NULL,
        template   TEXT,
        since      TEXT NOT NULL,
        source_ip  TEXT NOT NULL,
        credential TEXT NOT NULL,
        applied_at TEXT,
        PRIMARY KEY (mac, identity)
     );
     INSERT INTO logins_v4 SELECT mac, 0, extension, name, vendor, model, network, template,
        since, source_ip, credential, applied_at FROM logins;
     DROP TABLE logins;
     ALTER TABLE logins_v4 RENAME TO logins;
     CREATE INDEX logins_extension ON logins(extension);",
    // Lockouts survive a restart; `health` takes the readiness probe's write.
    "CREATE TABLE lockouts (
        subject      TEXT PRIMARY KEY,
        failures     TEXT NOT NULL,
        strikes      INTEGER NOT NULL,
        locked_until INTEGER,
        last         INTEGER NOT NULL
     );
     CREATE TABLE health (id INTEGER PRIMARY KEY, at TEXT NOT NULL);
     CREATE TABLE phone_credentials (
        mac      TEXT PRIMARY KEY,
        username TEXT NOT NULL,
        password TEXT NOT NULL,
        created  TEXT NOT NULL
     );",
    // The last reload request (SIP NOTIFY) sent to each phone, for the admin API.
    "CREATE TABLE reloads (mac TEXT PRIMARY KEY, at TEXT NOT NULL, result TEXT NOT NULL);",
    // The user page reads one extension's recent events.
    "CREATE INDEX audit_extension ON audit(extension, id);",
    // The console filters the audit trail by time, extension, MAC and kind; retention
    // deletes by time.
    "CREATE INDEX audit_at ON audit(at);
     CREATE INDEX IF NOT EXISTS audit_extension ON audit(extension, id);
     CREATE INDEX audit_mac ON audit(mac, id);
     CREATE INDEX audit_kind ON audit(kind, id);",
    // The embedded directory (`[directory] kind = "embedded"`): PINs as argon2 PHC strings,
    // SIP secrets sealed with users.key; `users_generation` tells other processes' writes.
    "CREATE TABLE users (
        extension  TEXT PRIMARY KEY,
        name       TEXT NOT NULL,
        pin_hash   TEXT,
        sip_secret BLOB,
        template   TEXT,
        enabled    INTEGER NOT NULL DEFAULT 1,
        email      TEXT,
        created    TEXT NOT NULL,
        updated    TEXT NOT NULL
     );
     CREATE TABLE users_generation (id INTEGER PRIMARY KEY CHECK (id = 1), generation INTEGER NOT NULL);
     INSERT INTO users_generation (id, generation) VALUES (1, 0);",
    // Softphone activation links (only a hash of each token), the softphones they activated,
    // and one-time desk login codes (salted hashes). See store/activations.rs.
    "CREATE TABLE activation_links (
        token_hash BLOB PRIMARY KEY,
        extension  TEXT NOT NULL,
        network    TEXT NOT NULL,
        created    TEXT NOT NULL,
        expires    TEXT NOT NULL,
        used       TEXT
     );
     CREATE INDEX activation_links_extension ON activation_links(extension);
     CREATE TABLE devices (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        extension  TEXT NOT NULL,
        activated  TEXT NOT NULL,
        user_agent TEXT NOT NULL,
        source_ip  TEXT NOT NULL
     );
     CREATE INDEX devices_extension ON devices(extension);
     CREATE TABLE login_codes (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        salt       BLOB NOT NULL,
        code_hash  BLOB NOT NULL,
        extension  TEXT NOT NULL,
        expires    TEXT NOT NULL,
        used       TEXT
     );",
];

pub struct SqliteStore {
    /// The one connection that writes (and what `conn()` hands out).
    conn: Mutex<Connection>,
    /// Reads only (`query_only`): the console and the API read while a commit is being
    /// synced on `conn` (WAL lets one writer and readers run at once).
    reader: Mutex<Connection>,
    /// Write transactions committed, for tests and metrics.
    transactions: AtomicU64,
    path: PathBuf,
    /// The file the connection opened (device, inode): a deleted or replaced file is noticed
    /// before a write is acknowledged, since SQLite would go on writing to the unlinked one.
    file_id: Option<(u64, u64)>,
    /// `Some(why)` while the store is unusable.
    broken: Mutex<Option<String>>,
}

/// How long SQLite waits for a lock held by another process: well inside a phone's request
/// budget, so a phone is told the truth rather than timed out.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

#[cfg(unix)]
fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn file_id(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|_| (0, 0))
}

pub(super) fn db(e: impl std::fmt::Display) -> StoreError {
    StoreError::Db(e.to_string())
}

pub(super) fn ts(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

pub(super) fn parse_ts(s: &str) -> OffsetDateTime {
    OffsetDateTime::parse(s, &Rfc3339).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// A time bound compared with stored [`ts`] text: UTC, whole seconds, with a zero fraction,
/// so that `…:00Z` and `…:00.5Z` both sort on the right side of it ('.' < digits < 'Z').
fn bound_ts(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.000000000Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn audit_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditEvent> {
    Ok(AuditEvent {
        id: r.get(0)?,
        at: parse_ts(&r.get::<_, String>(1)?),
        kind: EventKind::parse(&r.get::<_, String>(2)?).unwrap_or(EventKind::Logout),
        mac: r.get::<_, Option<String>>(3)?.and_then(|m| m.parse().ok()),
        extension: r.get(4)?,
        network: r.get(5)?,
        source_ip: r.get(6)?,
        detail: r.get(7)?,
    })
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Db(format!("cannot create {}: {e}", dir.display())))?;
        }
        let mut conn = Connection::open(path)
            .map_err(|e| StoreError::Db(format!("cannot open {}: {e}", path.display())))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(db)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(db)?;
        migrate(&mut conn)?;
        restrict_mode(path);
        let quick: String = conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .unwrap_or_else(|e| e.to_string());
        let reader = Connection::open(path)
            .map_err(|e| StoreError::Db(format!("cannot open {}: {e}", path.display())))?;
        reader.busy_timeout(BUSY_TIMEOUT).map_err(db)?;
        reader.pragma_update(None, "query_only", true).map_err(db)?;
        let store = Self {
            conn: Mutex::new(conn),
            reader: Mutex::new(reader),
            transactions: AtomicU64::new(0),
            path: path.to_owned(),
            file_id: file_id(path),
            broken: Mutex::new(None),
        };
        if quick != "ok" {
            store.set_broken(Some(format!("integrity check failed: {quick}")));
        } else {
            let _ = store.probe();
        }
        Ok(store)
    }

    fn set_broken(&self, why: Option<String>) {
        let mut broken = self.broken.lock().unwrap_or_else(|e| e.into_inner());
        match (&*broken, &why) {
            (None, Some(w)) => {
                tracing::error!(store = %self.path.display(), why = %w, "the store is unusable; logins are refused until it is back")
            }
            (Some(_), None) => {
                tracing::warn!(store = %self.path.display(), "the store is usable again")
            }
            _ => {}
        }
        *broken = why;
    }

    /// The database file is still the one this connection writes to.
    pub(super) fn same_file(&self) -> Result<(), StoreError> {
        match file_id(&self.path) {
            Some(id) if Some(id) == self.file_id => Ok(()),
            Some(_) => Err(StoreError::Db(format!(
                "{} was replaced while hotdesk was running",
                self.path.display()
            ))),
            None => Err(StoreError::Db(format!(
                "{} was deleted while hotdesk was running",
                self.path.display()
            ))),
        }
    }

    /// Records a write's outcome for `health`.
    pub(super) fn noted<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        match &result {
            Ok(_) => self.set_broken(None),
            Err(StoreError::Db(e)) => self.set_broken(Some(e.clone())),
        }
        result
    }

    /// Every row of `sql` that `map` keeps (rows whose MAC no longer parses are skipped).
    fn query_all<T>(
        &self,
        sql: &str,
        mut map: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<Option<T>>,
    ) -> Result<Vec<T>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare(sql).map_err(db)?;
        let rows = stmt.query_map([], |r| map(r)).map_err(db)?;
        let mut out = Vec::new();
        for row in rows {
            out.extend(row.map_err(db)?);
        }
        Ok(out)
    }

    pub(super) fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The read-only connection: never waits for a commit's sync.
    pub(super) fn reader(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.reader.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many write transactions `commit` and `commit_batch` have committed.
    pub fn transactions(&self) -> u64 {
        self.transactions.load(Ordering::Relaxed)
    }

    /// Writes `changes` in one transaction on `conn`: all of them or, on any error, none.
    fn write_together(&self, conn: &mut Connection, changes: &[&Change]) -> Result<(), StoreError> {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        for change in changes {
            write_change(&tx, change)?;
        }
        // On any `?` above the dropped transaction rolls back; a failed COMMIT too.
        tx.commit().map_err(db)?;
        self.transactions.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let version: usize = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(db)?;
    if version > MIGRATIONS.len() {
        return Err(StoreError::Db(format!(
            "database schema version {version} is newer than this hotdesk ({}); upgrade hotdesk",
            MIGRATIONS.len()
        )));
    }
    for (i, step) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.transaction().map_err(db)?;
        tx.execute_batch(step).map_err(db)?;
        tx.pragma_update(None, "user_version", i + 1).map_err(db)?;
        tx.commit().map_err(db)?;
    }
    Ok(())
}

/// Logins and the audit trail are nobody else's business: owner-only, like `url.key`.
#[cfg(unix)]
fn restrict_mode(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
}

#[cfg(not(unix))]
fn restrict_mode(_: &Path) {}

impl Store for SqliteStore {
    fn load_logins(&self) -> Result<Vec<Login>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn
            .prepare(
                "SELECT mac, extension, name, vendor, model, network, template, since, source_ip, credential, applied_at, identity
                 FROM logins ORDER BY since",
            )
            .map_err(db)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    Login {
                        mac: "000000000000".parse().expect("constant"),
                        extension: r.get(1)?,
                        name: r.get(2)?,
                        vendor: r.get(3)?,
                        model: r.get(4)?,
                        network: r.get(5)?,
                        template: r.get(6)?,
                        since: parse_ts(&r.get::<_, String>(7)?),
                        source_ip: r.get(8)?,
                        credential: r.get(9)?,
                        applied_at: r.get::<_, Option<String>>(10)?.map(|t| parse_ts(&t)),
                        identity: r.get(11)?,
                    },
                ))
            })
            .map_err(db)?;
        let mut out = Vec::new();
        for row in rows {
            let (mac, mut login) = row.map_err(db)?;
            match mac.parse() {
                Ok(m) => {
                    login.mac = m;
                    out.push(login);
                }
                Err(e) => tracing::warn!(error = %e, "skipping a stored login with a bad MAC"),
            }
        }
        Ok(out)
    }

    fn commit(&self, change: &Change) -> Result<(), StoreError> {
        let mut results = self.commit_batch(&[change]);
        results.pop().unwrap_or(Ok(()))
    }

    /// One transaction (one sync) for the whole batch. If it fails, each change is retried
    /// in its own transaction, so one bad row fails only its own change and every caller
    /// learns its own outcome.
    fn commit_batch(&self, changes: &[&Change]) -> Vec<Result<(), StoreError>> {
        if changes.is_empty() {
            return Vec::new();
        }
        if let Err(StoreError::Db(why)) = self.same_file() {
            self.set_broken(Some(why.clone()));
            return changes
                .iter()
                .map(|_| Err(StoreError::Db(why.clone())))
                .collect();
        }
        let mut conn = self.conn();
        let together = self.write_together(&mut conn, changes);
        let results = match together {
            Ok(()) => changes.iter().map(|_| Ok(())).collect(),
            Err(e) if changes.len() == 1 => vec![Err(e)],
            Err(e) => {
                tracing::warn!(error = %e, changes = changes.len(), "a batch commit failed; committing its changes one by one");
                changes
                    .iter()
                    .map(|c| self.write_together(&mut conn, &[c]))
                    .collect::<Vec<_>>()
            }
        };
        drop(conn);
        // The store is healthy if it took any write; one refused row is not a broken store.
        let refused = results.iter().find_map(|r| match r {
            Err(StoreError::Db(why)) => Some(why.clone()),
            Ok(()) => None,
        });
        if results.iter().any(Result::is_ok) {
            self.set_broken(None);
        } else {
            self.set_broken(refused);
        }
        results
    }

    fn load_lockouts(&self) -> Result<Vec<LockoutRow>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn
            .prepare("SELECT subject, failures, strikes, locked_until, last FROM lockouts")
            .map_err(db)?;
        let rows = stmt
            .query_map([], |r| {
                let failures: String = r.get(1)?;
                Ok(LockoutRow {
                    subject: r.get(0)?,
                    failures: failures.split(',').filter_map(|t| t.parse().ok()).collect(),
                    strikes: r.get(2)?,
                    locked_until: r.get(3)?,
                    last: r.get(4)?,
                })
            })
            .map_err(db)?;
        rows.collect::<Result<_, _>>().map_err(db)
    }

    fn load_credentials(&self) -> Result<Vec<PhoneCredential>, StoreError> {
        let sql = "SELECT mac, username, password, created FROM phone_credentials";
        self.query_all(sql, |r| {
            let (mac, username, password, created): (String, String, String, String) =
                (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
            Ok(mac.parse().ok().map(|mac| PhoneCredential {
                mac,
                username,
                password: crate::secret::Secret::new(password),
                created: parse_ts(&created),
            }))
        })
    }

    fn load_reloads(&self) -> Result<Vec<ReloadSent>, StoreError> {
        self.query_all("SELECT mac, at, result FROM reloads", |r| {
            let (mac, at, result): (String, String, String) = (r.get(0)?, r.get(1)?, r.get(2)?);
            Ok(mac.parse().ok().map(|mac| ReloadSent {
                mac,
                at: parse_ts(&at),
                result,
            }))
        })
    }

    fn probe(&self) -> Result<(), StoreError> {
        let result = self.same_file().and_then(|()| {
            self.conn()
                .execute(
                    "INSERT OR REPLACE INTO health (id, at) VALUES (1, ?1)",
                    params![ts(OffsetDateTime::now_utc())],
                )
                .map(|_| ())
                .map_err(db)
        });
        self.noted(result)
    }

    fn health(&self) -> Result<(), String> {
        match &*self.broken.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(why) => Err(why.clone()),
            None => Ok(()),
        }
    }

    fn outbox_pending(&self, limit: usize) -> Result<Vec<OutboxItem>, StoreError> {
        self.outbox_query(
            "SELECT id, mac, method, body, attempts FROM outbox WHERE dead = 0 ORDER BY id LIMIT ?1",
            limit,
        )
    }

    fn outbox_done(&self, id: i64) -> Result<(), StoreError> {
        self.conn()
            .execute("DELETE FROM outbox WHERE id = ?1", params![id])
            .map_err(db)?;
        Ok(())
    }

    fn outbox_failed(&self, id: i64, error: &str, dead: bool) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?2, dead = ?3 WHERE id = ?1",
                params![id, error, dead as i64],
            )
            .map_err(db)?;
        Ok(())
    }

    fn outbox_status(&self) -> Result<OutboxStatus, StoreError> {
        let conn = self.reader();
        let (pending, oldest): (i64, Option<String>) = conn
            .query_row(
                "SELECT COUNT(*), MIN(created) FROM outbox WHERE dead = 0",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(db)?;
        let dead: i64 = conn
            .query_row("SELECT COUNT(*) FROM outbox WHERE dead = 1", [], |r| {
                r.get(0)
            })
            .map_err(db)?;
        let last_error: Option<String> = conn
            .query_row(
                "SELECT last_error FROM outbox WHERE last_error IS NOT NULL ORDER BY id DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(db)?
            .flatten();
        Ok(OutboxStatus {
            pending: pending as u64,
            dead: dead as u64,
            oldest: oldest.map(|t| parse_ts(&t)),
            last_error,
        })
    }

    fn audit(&self, limit: usize) -> Result<Vec<AuditEvent>, StoreError> {
        self.audit_query(&AuditFilter::default(), limit)
    }

    fn audit_query(
        &self,
        filter: &AuditFilter,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        use rusqlite::types::Value;
        // Only placeholders go into the text; every value is bound.
        let mut clauses: Vec<&str> = Vec::new();
        let mut values: Vec<Value> = Vec::new();
        let mut add = |clause: &'static str, value: Value| {
            clauses.push(clause);
            values.push(value);
        };
        if let Some(t) = filter.from {
            add("at >= ?", Value::Text(bound_ts(t)));
        }
        if let Some(t) = filter.to {
            add("at < ?", Value::Text(bound_ts(t)));
        }
        if let Some(e) = &filter.extension {
            add("extension = ?", Value::Text(e.clone()));
        }
        if let Some(m) = filter.mac {
            add("mac = ?", Value::Text(m.to_string()));
        }
        if let Some(k) = filter.kind {
            add("kind = ?", Value::Text(k.as_str().to_owned()));
        }
        if let Some(id) = filter.before_id {
            add("id < ?", Value::Integer(id));
        }
        let mut sql = String::from(
            "SELECT id, at, kind, mac, extension, network, source_ip, detail FROM audit",
        );
        if !clauses.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&clauses.join(" AND "));
        }
        sql.push_str(" ORDER BY id DESC LIMIT ?");
        values.push(Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
        let conn = self.reader();
        let mut stmt = conn.prepare(&sql).map_err(db)?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(values), audit_row)
            .map_err(db)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db)
    }

    fn audit_prune(&self, before: OffsetDateTime, batch: usize) -> Result<usize, StoreError> {
        let result = self.same_file().and_then(|()| {
            self.conn()
                .execute(
                    "DELETE FROM audit WHERE id IN
                     (SELECT id FROM audit WHERE at < ?1 ORDER BY at LIMIT ?2)",
                    params![bound_ts(before), i64::try_from(batch).unwrap_or(i64::MAX)],
                )
                .map_err(db)
        });
        self.noted(result)
    }

    fn outbox_entries(&self, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        let sql = format!(
            "SELECT id, mac, method, body, attempts, created, last_error, dead FROM outbox
             ORDER BY id LIMIT {}",
            i64::try_from(limit).unwrap_or(i64::MAX)
        );
        self.query_all(&sql, |r| {
            let (mac, method): (String, String) = (r.get(1)?, r.get(2)?);
            let (Ok(mac), Some(method)) = (mac.parse(), WriteMethod::parse(&method)) else {
                return Ok(None);
            };
            Ok(Some(OutboxEntry {
                item: OutboxItem {
                    id: r.get(0)?,
                    mac,
                    method,
                    body: r.get(3)?,
                    attempts: r.get::<_, i64>(4)? as u32,
                },
                created: parse_ts(&r.get::<_, String>(5)?),
                last_error: r.get(6)?,
                dead: r.get::<_, i64>(7)? != 0,
            }))
        })
    }

    fn outbox_retry(&self, ids: &[i64]) -> Result<usize, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db)?;
        let mut n = 0;
        if ids.is_empty() {
            n += tx
                .execute(
                    "UPDATE outbox SET dead = 0, attempts = 0 WHERE dead = 1",
                    [],
                )
                .map_err(db)?;
        }
        for id in ids {
            n += tx
                .execute(
                    "UPDATE outbox SET dead = 0, attempts = 0 WHERE dead = 1 AND id = ?1",
                    params![id],
                )
                .map_err(db)?;
        }
        tx.commit().map_err(db)?;
        Ok(n)
    }

    fn audit_of(
        &self,
        extension: &str,
        kinds: &[EventKind],
        limit: usize,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        if kinds.is_empty() {
            return Ok(Vec::new());
        }
        // Placeholders only in the text; every value is bound.
        let marks: Vec<String> = (0..kinds.len()).map(|i| format!("?{}", i + 3)).collect();
        let sql = format!(
            "SELECT id, at, kind, mac, extension, network, source_ip, detail
             FROM audit WHERE extension = ?1 AND kind IN ({})
             ORDER BY id DESC LIMIT ?2",
            marks.join(", ")
        );
        let mut values: Vec<rusqlite::types::Value> =
            vec![extension.to_owned().into(), (limit as i64).into()];
        values.extend(kinds.iter().map(|k| k.as_str().to_owned().into()));
        let conn = self.reader();
        let mut stmt = conn.prepare(&sql).map_err(db)?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(values), audit_row)
            .map_err(db)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db)
    }
}

/// Writes one change inside the caller's transaction (which commits or rolls back).
fn write_change(tx: &rusqlite::Transaction<'_>, change: &Change) -> Result<(), StoreError> {
    for (mac, identity) in &change.remove {
        match identity {
            Some(i) => tx
                .prepare_cached("DELETE FROM logins WHERE mac = ?1 AND identity = ?2")
                .map_err(db)?
                .execute(params![mac.to_string(), i]),
            None => tx
                .prepare_cached("DELETE FROM logins WHERE mac = ?1")
                .map_err(db)?
                .execute(params![mac.to_string()]),
        }
        .map_err(db)?;
    }
    const PUT: &str = "INSERT OR REPLACE INTO logins
        (mac, extension, name, vendor, model, network, template, since, source_ip, credential, applied_at, identity)
        VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)";
    for l in &change.put {
        tx.prepare_cached(PUT)
            .map_err(db)?
            .execute(params![
                l.mac.to_string(),
                l.extension,
                l.name,
                l.vendor,
                l.model,
                l.network,
                l.template,
                ts(l.since),
                l.source_ip,
                l.credential,
                l.applied_at.map(ts),
                l.identity
            ])
            .map_err(db)?;
    }
    for o in &change.outbox {
        tx.prepare_cached(
            "INSERT INTO outbox (mac, method, body, created) VALUES (?1, ?2, ?3, ?4)",
        )
        .map_err(db)?
        .execute(params![
            o.mac.to_string(),
            o.method.as_str(),
            o.body,
            ts(OffsetDateTime::now_utc())
        ])
        .map_err(db)?;
    }
    for e in &change.events {
        insert_event(tx, e)?;
    }
    for l in &change.lockouts {
        let failures: Vec<String> = l.failures.iter().map(i64::to_string).collect();
        tx.prepare_cached(
            "INSERT OR REPLACE INTO lockouts (subject, failures, strikes, locked_until, last)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .map_err(db)?
        .execute(params![
            l.subject,
            failures.join(","),
            l.strikes,
            l.locked_until,
            l.last
        ])
        .map_err(db)?;
    }
    for c in &change.credentials_put {
        tx.prepare_cached(
            "INSERT OR REPLACE INTO phone_credentials (mac, username, password, created)
                 VALUES (?1, ?2, ?3, ?4)",
        )
        .map_err(db)?
        .execute(params![
            c.mac.to_string(),
            c.username,
            c.password.expose(),
            ts(c.created)
        ])
        .map_err(db)?;
    }
    for mac in &change.credentials_removed {
        tx.prepare_cached("DELETE FROM phone_credentials WHERE mac = ?1")
            .map_err(db)?
            .execute(params![mac.to_string()])
            .map_err(db)?;
    }
    for r in &change.reloads {
        tx.prepare_cached("INSERT OR REPLACE INTO reloads (mac, at, result) VALUES (?1, ?2, ?3)")
            .map_err(db)?
            .execute(params![r.mac.to_string(), ts(r.at), r.result])
            .map_err(db)?;
    }
    for subject in &change.lockouts_cleared {
        tx.prepare_cached("DELETE FROM lockouts WHERE subject = ?1")
            .map_err(db)?
            .execute(params![subject])
            .map_err(db)?;
    }
    const APPLIED: &str = "UPDATE logins SET applied_at = ?2
        WHERE mac = ?1 AND since <= ?2 AND applied_at IS NULL";
    for (mac, at) in &change.applied {
        // RFC 3339 UTC strings of one format compare in time order.
        tx.prepare_cached(APPLIED)
            .map_err(db)?
            .execute(params![mac.to_string(), ts(*at)])
            .map_err(db)?;
    }
    Ok(())
}

/// One audit row, inside the caller's transaction.
pub(super) fn insert_event(
    tx: &rusqlite::Transaction<'_>,
    e: &AuditEvent,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO audit (at, kind, mac, extension, network, source_ip, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .map_err(db)?
    .execute(params![
        ts(e.at),
        e.kind.as_str(),
        e.mac.map(|m| m.to_string()),
        e.extension,
        e.network,
        e.source_ip,
        e.detail
    ])
    .map(|_| ())
    .map_err(db)
}

impl SqliteStore {
    fn outbox_query(&self, sql: &str, limit: usize) -> Result<Vec<OutboxItem>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare(sql).map_err(db)?;
        let rows = stmt
            .query_map(params![limit as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })
            .map_err(db)?;
        let mut out = Vec::new();
        for row in rows {
            let (id, mac, method, body, attempts) = row.map_err(db)?;
            let (Ok(mac), Some(method)) = (mac.parse(), WriteMethod::parse(&method)) else {
                continue;
            };
            out.push(OutboxItem {
                id,
                mac,
                method,
                body,
                attempts: attempts as u32,
            });
        }
        Ok(out)
    }

    /// The schema version on disk (for tests and `check-config`).
    pub fn schema_version(&self) -> Result<usize, StoreError> {
        self.reader()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .optional()
            .map_err(db)
            .map(|v| v.unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sample_login as login;

    /// Makes the write connection refuse any audit row whose detail is `poison` (a temporary
    /// trigger: this connection only, nothing on disk).
    fn poison(s: &SqliteStore) {
        s.conn()
            .execute_batch(
                "CREATE TEMP TRIGGER poison BEFORE INSERT ON audit WHEN NEW.detail = 'poison'
                 BEGIN SELECT RAISE(ABORT, 'poisoned row'); END;",
            )
            .unwrap();
    }

    fn login_change(mac: &str, ext: &str, detail: &str) -> Change {
        let l = login(mac, ext);
        Change {
            events: vec![AuditEvent::new(EventKind::Login, detail).about(&l)],
            put: vec![l],
            ..Change::default()
        }
    }

    #[test]
    fn a_batch_shares_one_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("b.sqlite")).unwrap();
        let before = s.transactions();
        let changes: Vec<Change> = (1..=20)
            .map(|i| login_change(&format!("00085d0000{i:02}"), &format!("10{i:02}"), "pin"))
            .collect();
        let refs: Vec<&Change> = changes.iter().collect();
        let results = s.commit_batch(&refs);
        assert!(results.iter().all(Result::is_ok));
        assert_eq!(s.transactions() - before, 1);
        assert_eq!(s.load_logins().unwrap().len(), 20);
        assert_eq!(s.audit(100).unwrap().len(), 20);
    }

    #[test]
    fn a_failing_change_fails_alone_and_leaves_nothing_of_itself() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.sqlite");
        let s = SqliteStore::open(&path).unwrap();
        poison(&s);
        let changes = [
            login_change("00085d000001", "1001", "pin"),
            // Its login row is fine; its audit row is refused: neither may stay.
            login_change("00085d000002", "1002", "poison"),
            login_change("00085d000003", "1003", "pin"),
        ];
        let before = s.transactions();
        let results = s.commit_batch(&changes.iter().collect::<Vec<_>>());
        assert!(results[0].is_ok() && results[2].is_ok(), "{results:?}");
        let err = results[1].as_ref().unwrap_err().to_string();
        assert!(err.contains("poisoned row"), "{err}");
        // The shared transaction rolled back; the two good changes committed on their own.
        assert_eq!(s.transactions() - before, 2);
        assert_eq!(s.health(), Ok(()), "one refused row is not a broken store");
        drop(s);
        let s = SqliteStore::open(&path).unwrap();
        let macs: Vec<String> = s
            .load_logins()
            .unwrap()
            .iter()
            .map(|l| l.mac.to_string())
            .collect();
        assert_eq!(macs, ["00085d000001", "00085d000003"]);
        let details: Vec<String> = s.audit(10).unwrap().into_iter().map(|e| e.detail).collect();
        assert_eq!(details, ["pin", "pin"]);
    }

    #[test]
    fn a_batch_cut_off_before_its_commit_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sqlite");
        let s = SqliteStore::open(&path).unwrap();
        s.commit(&login_change("00085d000001", "1001", "kept"))
            .unwrap();
        {
            let mut conn = s.conn();
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .unwrap();
            write_change(&tx, &login_change("00085d000002", "1002", "lost")).unwrap();
            write_change(
                &tx,
                &Change {
                    remove: vec![("00085d000001".parse().unwrap(), None)],
                    ..Change::default()
                },
            )
            .unwrap();
            // Dropped without COMMIT, as a crash mid-batch would leave it.
        }
        drop(s);
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(
            s.load_logins().unwrap(),
            vec![login("00085d000001", "1001")]
        );
        let details: Vec<String> = s.audit(10).unwrap().into_iter().map(|e| e.detail).collect();
        assert_eq!(details, ["kept"]);
    }

    #[test]
    fn reads_do_not_wait_for_a_write_in_progress() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("r.sqlite")).unwrap();
        s.commit(&login_change("00085d000001", "1001", "committed"))
            .unwrap();
        let mut conn = s.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .unwrap();
        write_change(&tx, &login_change("00085d000002", "1002", "in flight")).unwrap();
        // The write connection is held (as during a commit's sync): reads answer anyway,
        // with the committed state only. (Were they on the write connection, this would
        // deadlock on its mutex.)
        let details: Vec<String> = s.audit(10).unwrap().into_iter().map(|e| e.detail).collect();
        assert_eq!(details, ["committed"]);
        assert_eq!(s.load_logins().unwrap().len(), 1);
        tx.commit().unwrap();
        drop(conn);
        assert_eq!(s.load_logins().unwrap().len(), 2);
    }

    #[test]
    fn credentials_and_reloads_survive_a_reopen_and_can_be_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hd.sqlite");
        let mac: crate::phone::Mac = "805ec02f3c2e".parse().unwrap();
        let at = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let cred = PhoneCredential {
            mac,
            username: "hd-805ec02f3c2e".into(),
            password: crate::secret::Secret::new("pw"),
            created: at,
        };
        let reload = ReloadSent {
            mac,
            at,
            result: "sip 200 OK".into(),
        };
        {
            let s = SqliteStore::open(&path).unwrap();
            let change = Change {
                credentials_put: vec![cred.clone()],
                reloads: vec![reload.clone()],
                ..Change::default()
            };
            s.commit(&change).unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.load_credentials().unwrap(), vec![cred]);
        assert_eq!(s.load_reloads().unwrap(), vec![reload]);
        let change = Change {
            credentials_removed: vec![mac],
            ..Change::default()
        };
        s.commit(&change).unwrap();
        assert!(s.load_credentials().unwrap().is_empty());
    }

    #[test]
    fn round_trip_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/hd.sqlite");
        {
            let s = SqliteStore::open(&path).unwrap();
            assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len());
            let a = login("00085d000001", "1001");
            let change = Change {
                put: vec![a.clone(), login("00085d000002", "1002")],
                events: vec![AuditEvent::new(EventKind::Login, "pin").about(&a)],
                ..Change::default()
            };
            s.commit(&change).unwrap();
            s.commit(&Change {
                remove: vec![("00085d000002".parse().unwrap(), None)],
                events: vec![AuditEvent::new(EventKind::Logout, "user")],
                ..Change::default()
            })
            .unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        let logins = s.load_logins().unwrap();
        assert_eq!(logins, vec![login("00085d000001", "1001")]);
        let audit = s.audit(10).unwrap();
        assert_eq!(audit.len(), 2);
        assert_eq!(audit[0].kind, EventKind::Logout, "newest first");
        assert_eq!(audit[1].mac, Some("00085d000001".parse().unwrap()));
    }

    #[test]
    fn audit_of_one_extension_is_its_own_kinds_newest_first_and_limited() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("a.sqlite")).unwrap();
        let a = login("00085d000001", "1001");
        let b = login("00085d000002", "1002");
        let mut events = Vec::new();
        for i in 0..5 {
            events.push(AuditEvent::new(EventKind::Login, format!("a{i}")).about(&a));
            events.push(AuditEvent::new(EventKind::Login, "b").about(&b));
            events.push(AuditEvent::new(EventKind::LoginFailed, "f").about(&a));
        }
        // A hostile extension is a value, never SQL.
        let mut evil = AuditEvent::new(EventKind::Login, "x");
        evil.extension = Some("1001' OR '1'='1".into());
        events.push(evil);
        s.commit(&Change {
            events,
            ..Change::default()
        })
        .unwrap();
        let got = s.audit_of("1001", &[EventKind::Login], 3).unwrap();
        let details: Vec<&str> = got.iter().map(|e| e.detail.as_str()).collect();
        assert_eq!(details, ["a4", "a3", "a2"]);
        let both = s
            .audit_of("1001", &[EventKind::Login, EventKind::LoginFailed], 100)
            .unwrap();
        assert_eq!(both.len(), 10);
        assert!(
            s.audit_of("1001' OR '1'='1", &[EventKind::Login], 10)
                .unwrap()
                .len()
                == 1
        );
        assert!(s.audit_of("1001", &[], 10).unwrap().is_empty());
        assert!(
            s.audit_of("9999", &[EventKind::Login], 10)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn outbox_rows_commit_with_the_login_and_keep_their_order() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("o.sqlite")).unwrap();
        let mac: crate::phone::Mac = "00085d000001".parse().unwrap();
        let item = |m| crate::store::NewOutboxItem {
            mac,
            method: m,
            body: "{}".into(),
        };
        s.commit(&Change {
            put: vec![login("00085d000001", "1001")],
            outbox: vec![item(WriteMethod::Put), item(WriteMethod::Delete)],
            ..Change::default()
        })
        .unwrap();
        let pending = s.outbox_pending(10).unwrap();
        assert_eq!(
            pending.iter().map(|i| i.method).collect::<Vec<_>>(),
            [WriteMethod::Put, WriteMethod::Delete]
        );
        let st = s.outbox_status().unwrap();
        assert_eq!((st.pending, st.dead, st.last_error), (2, 0, None));
        s.outbox_failed(pending[0].id, "PBX answered 503", false)
            .unwrap();
        s.outbox_failed(pending[1].id, "PBX answered 422", true)
            .unwrap();
        let st = s.outbox_status().unwrap();
        assert_eq!((st.pending, st.dead), (1, 1));
        assert_eq!(st.last_error.as_deref(), Some("PBX answered 422"));
        assert_eq!(s.outbox_pending(10).unwrap()[0].attempts, 1);
        s.outbox_done(pending[0].id).unwrap();
        assert_eq!(s.outbox_status().unwrap().pending, 0);
    }

    fn event_at(kind: EventKind, mac: &str, ext: &str, unix: i64) -> AuditEvent {
        let mut e = AuditEvent::new(kind, "t");
        e.mac = Some(mac.parse().unwrap());
        e.extension = Some(ext.into());
        e.at = OffsetDateTime::from_unix_timestamp(unix).unwrap();
        e
    }

    #[test]
    fn audit_filters_combine_and_page_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("a.sqlite")).unwrap();
        let t0 = 1_700_000_000;
        let mut half = event_at(EventKind::Logout, "00085d000001", "1001", t0 + 100);
        // A stored time with a fraction sorts right against a whole-second bound.
        half.at += time::Duration::milliseconds(500);
        s.commit(&Change {
            events: vec![
                event_at(EventKind::Login, "00085d000001", "1001", t0),
                half,
                event_at(EventKind::Login, "00085d000002", "1002", t0 + 200),
                event_at(
                    EventKind::LoginFailed,
                    "00085d000002",
                    "1001'; DROP TABLE audit; --",
                    t0 + 300,
                ),
            ],
            ..Change::default()
        })
        .unwrap();
        let at = |u: i64| Some(OffsetDateTime::from_unix_timestamp(u).unwrap());
        let ids = |f: AuditFilter, limit| -> Vec<i64> {
            s.audit_query(&f, limit)
                .unwrap()
                .iter()
                .map(|e| e.id)
                .collect()
        };
        assert_eq!(ids(AuditFilter::default(), 10), [4, 3, 2, 1]);
        let ext = AuditFilter {
            extension: Some("1001".into()),
            ..AuditFilter::default()
        };
        assert_eq!(ids(ext.clone(), 10), [2, 1]);
        assert_eq!(
            ids(
                AuditFilter {
                    before_id: Some(2),
                    ..ext
                },
                10
            ),
            [1]
        );
        let mac = AuditFilter {
            mac: Some("00085d000002".parse().unwrap()),
            kind: Some(EventKind::Login),
            ..AuditFilter::default()
        };
        assert_eq!(ids(mac, 10), [3]);
        // [from, to): the event at exactly `to` is out, the one 0.5 s after `from` in.
        let range = AuditFilter {
            from: at(t0 + 100),
            to: at(t0 + 200),
            ..AuditFilter::default()
        };
        assert_eq!(ids(range, 10), [2]);
        assert_eq!(ids(AuditFilter::default(), 2), [4, 3]);
        let hostile = AuditFilter {
            extension: Some("1001'; DROP TABLE audit; --".into()),
            ..AuditFilter::default()
        };
        assert_eq!(ids(hostile, 10), [4]);
        assert_eq!(s.audit(10).unwrap().len(), 4);
    }

    #[test]
    fn pruning_deletes_old_events_in_batches_and_keeps_recent_ones() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("p.sqlite")).unwrap();
        let cutoff = 1_700_000_000;
        let events: Vec<_> = (0..7)
            .map(|i| {
                event_at(
                    EventKind::Login,
                    "00085d000001",
                    "1001",
                    cutoff - 10 + i * 3,
                )
            })
            .collect();
        s.commit(&Change {
            events,
            ..Change::default()
        })
        .unwrap();
        let before = OffsetDateTime::from_unix_timestamp(cutoff).unwrap();
        // Times -10, -7, -4, -1 are old; 2, 5, 8 stay.
        assert_eq!(s.audit_prune(before, 3).unwrap(), 3);
        assert_eq!(s.audit_prune(before, 3).unwrap(), 1);
        assert_eq!(s.audit_prune(before, 3).unwrap(), 0);
        let left: Vec<i64> = s
            .audit(10)
            .unwrap()
            .iter()
            .map(|e| e.at.unix_timestamp())
            .collect();
        assert_eq!(left, [cutoff + 8, cutoff + 5, cutoff + 2]);
    }

    #[test]
    fn dead_write_backs_can_be_retried_one_or_all() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("r.sqlite")).unwrap();
        let item = |m: &str| crate::store::NewOutboxItem {
            mac: m.parse().unwrap(),
            method: WriteMethod::Put,
            body: "{}".into(),
        };
        s.commit(&Change {
            outbox: vec![
                item("00085d000001"),
                item("00085d000002"),
                item("00085d000003"),
            ],
            ..Change::default()
        })
        .unwrap();
        for id in [1, 2] {
            s.outbox_failed(id, "PBX answered 422", true).unwrap();
        }
        let entries = s.outbox_entries(10).unwrap();
        assert_eq!(
            entries
                .iter()
                .map(|e| (e.item.id, e.dead))
                .collect::<Vec<_>>(),
            [(1, true), (2, true), (3, false)]
        );
        assert_eq!(entries[0].last_error.as_deref(), Some("PBX answered 422"));
        // A pending row is not "retried"; a dead one is.
        assert_eq!(s.outbox_retry(&[3]).unwrap(), 0);
        assert_eq!(s.outbox_retry(&[2]).unwrap(), 1);
        assert_eq!(s.outbox_status().unwrap().dead, 1);
        assert_eq!(s.outbox_retry(&[]).unwrap(), 1);
        let st = s.outbox_status().unwrap();
        assert_eq!((st.pending, st.dead), (3, 0));
        assert_eq!(s.outbox_pending(10).unwrap()[0].attempts, 0);
    }
}
