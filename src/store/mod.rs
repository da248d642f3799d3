//! Durable logins and the audit trail. [`Store`] is the storage contract (SQLite today, a
//! shared PostgreSQL later); [`LoginBook`] keeps every login in memory for the hot path and
//! writes through to the store before a phone is told anything.

mod activations;
mod book;
mod sqlite;
mod users;

pub use book::{BookError, LoginBook, LoginOutcome};

pub use activations::{Device, LinkState, Redeemed, token_hash};
pub use sqlite::SqliteStore;
pub use users::{StoredUser, UserWrite};

use time::OffsetDateTime;

use crate::phone::Mac;

/// "Extension E is on handset M via network N since T, with template X".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    pub mac: Mac,
    /// Which identity of the phone (0-based; Snom phones hold several, others only 0).
    pub identity: u8,
    pub extension: String,
    pub name: String,
    pub vendor: String,
    pub model: String,
    pub network: String,
    pub template: Option<String>,
    pub since: OffsetDateTime,
    pub source_ip: String,
    /// Which credential was used (`voicemail-pin`, `user-password`, `admin-password`).
    pub credential: String,
    /// When the phone first fetched its configuration after this login (it applied it).
    pub applied_at: Option<OffsetDateTime>,
}

/// One line of the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// Assigned by the store; 0 before it is written.
    pub id: i64,
    pub at: OffsetDateTime,
    pub kind: EventKind,
    pub mac: Option<Mac>,
    pub extension: Option<String>,
    pub network: Option<String>,
    pub source_ip: Option<String>,
    /// Free text for humans: never a secret.
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Login,
    Logout,
    /// Logged out because the extension logged in elsewhere (exclusive policy).
    Takeover,
    LoginFailed,
    LockedOut,
    /// An admin cleared lockouts.
    LockoutCleared,
    /// A provisioning file was refused (another phone's, or from another address).
    ProvisionRefused,
    /// A phone's provisioning credentials were made or revoked.
    CredentialsChanged,
    /// hotdesk asked a phone to load its configuration (SIP NOTIFY check-sync).
    Reload,
    /// An admin logged the phone out through the API.
    AdminLogout,
    /// `max_login` or `auto_logout` ended the login.
    AutoLogout,
    /// Someone signed in to the console (or failed to).
    ConsoleSignIn,
    ConsoleSignInFailed,
    /// A user signed in to their own page (`/me`).
    UserPageSignIn,
    /// An admin made dead PBX write-backs pending again.
    OutboxRetried,
    /// A user of the embedded directory was created, changed, imported or deleted.
    UserChanged,
    /// A softphone activation link was made (or replaced) for a user.
    ActivationLink,
    /// A softphone fetched its account through an activation link.
    SoftphoneActivated,
    /// An activation link was refused: used, expired, or the user's device limit reached.
    ActivationRefused,
    /// Activated softphones were removed (one, or the whole count reset).
    DevicesReset,
    /// A one-time desk login code was made (never the code itself).
    LoginCode,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Login => "login",
            EventKind::Logout => "logout",
            EventKind::Takeover => "takeover",
            EventKind::LoginFailed => "login-failed",
            EventKind::LockedOut => "locked-out",
            EventKind::LockoutCleared => "lockout-cleared",
            EventKind::ProvisionRefused => "provision-refused",
            EventKind::CredentialsChanged => "credentials-changed",
            EventKind::Reload => "reload",
            EventKind::AdminLogout => "admin-logout",
            EventKind::AutoLogout => "auto-logout",
            EventKind::ConsoleSignIn => "console-sign-in",
            EventKind::ConsoleSignInFailed => "console-sign-in-failed",
            EventKind::UserPageSignIn => "user-page-sign-in",
            EventKind::OutboxRetried => "outbox-retried",
            EventKind::UserChanged => "user-changed",
            EventKind::ActivationLink => "activation-link",
            EventKind::SoftphoneActivated => "softphone-activated",
            EventKind::ActivationRefused => "activation-refused",
            EventKind::DevicesReset => "devices-reset",
            EventKind::LoginCode => "login-code",
        }
    }

    /// Every kind, for filters.
    pub const ALL: [EventKind; 21] = [
        EventKind::Login,
        EventKind::Logout,
        EventKind::Takeover,
        EventKind::LoginFailed,
        EventKind::LockedOut,
        EventKind::LockoutCleared,
        EventKind::ProvisionRefused,
        EventKind::CredentialsChanged,
        EventKind::Reload,
        EventKind::AdminLogout,
        EventKind::AutoLogout,
        EventKind::ConsoleSignIn,
        EventKind::ConsoleSignInFailed,
        EventKind::UserPageSignIn,
        EventKind::OutboxRetried,
        EventKind::UserChanged,
        EventKind::ActivationLink,
        EventKind::SoftphoneActivated,
        EventKind::ActivationRefused,
        EventKind::DevicesReset,
        EventKind::LoginCode,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl AuditEvent {
    pub fn new(kind: EventKind, detail: impl Into<String>) -> Self {
        Self {
            id: 0,
            at: OffsetDateTime::now_utc(),
            kind,
            mac: None,
            extension: None,
            network: None,
            source_ip: None,
            detail: detail.into(),
        }
    }

    pub fn about(mut self, login: &Login) -> Self {
        self.mac = Some(login.mac);
        self.extension = Some(login.extension.clone());
        self.network = Some(login.network.clone());
        self
    }
}

/// Everything one decision changes, committed atomically.
#[derive(Debug, Clone, Default)]
pub struct Change {
    pub put: Vec<Login>,
    /// Logins to end: one identity, or every identity of the phone (`None`).
    pub remove: Vec<(Mac, Option<u8>)>,
    pub events: Vec<AuditEvent>,
    /// Write-backs to the PBX, delivered later by the outbox worker.
    pub outbox: Vec<NewOutboxItem>,
    /// Failure histories to keep (upsert by subject) and to forget.
    pub lockouts: Vec<LockoutRow>,
    pub lockouts_cleared: Vec<String>,
    /// Per-phone provisioning credentials to set (replacing any) and to revoke.
    pub credentials_put: Vec<PhoneCredential>,
    pub credentials_removed: Vec<Mac>,
    /// The last reload request sent to each phone.
    pub reloads: Vec<ReloadSent>,
    /// The phone fetched its configuration then: its logins that began by then (and are
    /// not yet marked) are applied; a newer login stays unapplied.
    pub applied: Vec<(Mac, OffsetDateTime)>,
}

/// A reload request hotdesk sent to a phone (a SIP NOTIFY check-sync), and its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadSent {
    pub mac: Mac,
    pub at: OffsetDateTime,
    /// Short text for humans: `sip 200 OK`, `sip timeout after 32 s`, `ami Success`.
    pub result: String,
}

/// What one phone must present to fetch its configuration (`[provision] auth = "digest"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneCredential {
    pub mac: Mac,
    pub username: String,
    /// Kept (in the owner-only store) because the phone's own file carries it back to the
    /// phone where its vendor documents a key for it.
    pub password: crate::secret::Secret,
    pub created: OffsetDateTime,
}

/// One lockout subject's history (times in Unix seconds), so lockouts survive a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockoutRow {
    /// The subject's text form (`extension-from:1001@10.0.0.5`, `user-password`, ...).
    pub subject: String,
    pub failures: Vec<i64>,
    pub strikes: u32,
    pub locked_until: Option<i64>,
    pub last: i64,
}

/// How a write-back reaches the PBX.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMethod {
    /// `PUT {url}/devices/{mac}`: the phone now carries the login in `body`.
    Put,
    /// `DELETE {url}/devices/{mac}`: the phone is logged out.
    Delete,
}

impl WriteMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            WriteMethod::Put => "PUT",
            WriteMethod::Delete => "DELETE",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "PUT" => Some(WriteMethod::Put),
            "DELETE" => Some(WriteMethod::Delete),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOutboxItem {
    pub mac: Mac,
    pub method: WriteMethod,
    /// JSON; never holds a secret.
    pub body: String,
}

/// A stored write-back; `id` orders delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    pub id: i64,
    pub mac: Mac,
    pub method: WriteMethod,
    pub body: String,
    pub attempts: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxStatus {
    pub pending: u64,
    /// Refused by the PBX for good (a 4xx); kept for the admin to see.
    pub dead: u64,
    pub oldest: Option<OffsetDateTime>,
    pub last_error: Option<String>,
}

/// Which audit events to read (every field optional), newest first, a page at a time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// From this time on (inclusive).
    pub from: Option<OffsetDateTime>,
    /// Before this time (exclusive).
    pub to: Option<OffsetDateTime>,
    pub extension: Option<String>,
    pub mac: Option<Mac>,
    pub kind: Option<EventKind>,
    /// Only events older than this id (the next page).
    pub before_id: Option<i64>,
}

/// A write-back as the console shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    pub item: OutboxItem,
    pub created: OffsetDateTime,
    pub last_error: Option<String>,
    pub dead: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store: {0}")]
    Db(String),
}

/// Durable storage. Calls block; [`LoginBook`] runs them on the blocking pool.
pub trait Store: Send + Sync + 'static {
    fn load_logins(&self) -> Result<Vec<Login>, StoreError>;
    /// Applies the whole change in one transaction, durable when it returns.
    fn commit(&self, change: &Change) -> Result<(), StoreError>;
    /// Commits each change, all durable when it returns, one result per change in order;
    /// a change that fails leaves nothing of itself behind. A store that can share one
    /// transaction (and one sync) between them should.
    fn commit_batch(&self, changes: &[&Change]) -> Vec<Result<(), StoreError>> {
        changes.iter().map(|c| self.commit(c)).collect()
    }
    /// Newest first.
    fn audit(&self, limit: usize) -> Result<Vec<AuditEvent>, StoreError>;
    /// One extension's events of these kinds, newest first (the user page).
    fn audit_of(
        &self,
        extension: &str,
        kinds: &[EventKind],
        limit: usize,
    ) -> Result<Vec<AuditEvent>, StoreError>;
    /// The events `filter` selects, newest first, at most `limit`.
    fn audit_query(
        &self,
        filter: &AuditFilter,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, StoreError>;
    /// Deletes up to `batch` events from before `before`; returns how many went.
    fn audit_prune(&self, before: OffsetDateTime, batch: usize) -> Result<usize, StoreError>;
    /// Undelivered write-backs, oldest first.
    fn outbox_pending(&self, limit: usize) -> Result<Vec<OutboxItem>, StoreError>;
    fn outbox_done(&self, id: i64) -> Result<(), StoreError>;
    /// Counts a failed attempt; `dead` when the PBX refused it for good.
    fn outbox_failed(&self, id: i64, error: &str, dead: bool) -> Result<(), StoreError>;
    fn outbox_status(&self) -> Result<OutboxStatus, StoreError>;
    /// Pending and dead write-backs for the console, oldest first, at most `limit`.
    fn outbox_entries(&self, limit: usize) -> Result<Vec<OutboxEntry>, StoreError>;
    /// Makes dead write-backs pending again (every dead one when `ids` is empty); returns
    /// how many.
    fn outbox_retry(&self, ids: &[i64]) -> Result<usize, StoreError>;
    fn load_lockouts(&self) -> Result<Vec<LockoutRow>, StoreError>;
    fn load_credentials(&self) -> Result<Vec<PhoneCredential>, StoreError>;
    fn load_reloads(&self) -> Result<Vec<ReloadSent>, StoreError>;
    /// Checks that the store is still the file it opened and takes a write; the outcome is
    /// what [`Store::health`] reports until the next probe or commit.
    fn probe(&self) -> Result<(), StoreError>;
    /// `Err(why)` while the store is missing, replaced, read-only or corrupt.
    fn health(&self) -> Result<(), String>;
}

/// A login for tests: a hostile name, a fixed time (so stored rows compare equal).
#[cfg(test)]
pub(crate) fn sample_login(mac: &str, ext: &str) -> Login {
    Login {
        mac: mac.parse().unwrap(),
        identity: 0,
        extension: ext.into(),
        name: "Zoë \"O'Neil\" <&>".into(),
        vendor: "aastra".into(),
        model: "6737i".into(),
        network: "internal".into(),
        template: None,
        since: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
        source_ip: "10.0.0.9".into(),
        credential: "voicemail-pin".into(),
        applied_at: None,
    }
}
