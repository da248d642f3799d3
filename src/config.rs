//! One typed [`Config`] read from TOML, validated once at start-up.
//!
//! Unknown keys are rejected (serde `deny_unknown_fields`), and toml's errors carry the line and a
//! caret excerpt, so an admin sees exactly which line is wrong.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;
use ipnet::IpNet;
use serde::Deserialize;

use crate::secret::Secret;

/// Why a config file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// A duration written as `"90s"`, `"15m"`, `"10h"`, `"2d"` or `"250ms"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span(pub Duration);

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        parse_span(&text)
            .map(Span)
            .map_err(serde::de::Error::custom)
    }
}

/// Parses `"<number><unit>"` with unit `ms`, `s`, `m`, `h` or `d`.
pub fn parse_span(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like \"90s\", \"15m\" or \"10h\""))?;
    let secs = match unit {
        "ms" => return Ok(Duration::from_millis(n)),
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        _ => {
            return Err(format!(
                "`{text}` has no known unit: use ms, s, m, h or d (e.g. \"15m\")"
            ));
        }
    };
    Ok(Duration::from_secs(secs))
}

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address the plain-HTTP listener binds.
    pub listen: SocketAddr,
    /// The URL phones use to reach hotdesk; every generated link starts with it.
    pub base_url: String,
    #[serde(default)]
    pub server: ServerConfig,
    pub directory: DirectoryConfig,
    pub store: StoreConfig,
    /// Address sets a phone can register through, keyed `internal` / `external` (any key
    /// works), shown in file order.
    pub networks: IndexMap<String, NetworkConfig>,
    #[serde(default)]
    pub login: LoginConfig,
    #[serde(default)]
    pub phones: PhonesConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub users: UsersConfig,
    /// Softphone activation links and one-time desk login codes.
    #[serde(default)]
    pub activation: ActivationConfig,
    /// `[reload]`: how reload requests are sent (SIP NOTIFY from hotdesk, or the PBX over
    /// AMI), and the per-vendor keys of earlier releases (now `[vendors.<id>] reload`).
    #[serde(default)]
    pub reload: crate::reload::ReloadConfig,
    /// Per-vendor settings, keyed by the vendor's id (`aastra`, `yealink`, `htek`, `sangoma`,
    /// `snom`); checked against the vendor registry at start-up.
    #[serde(default)]
    pub vendors: IndexMap<String, VendorSettings>,
    #[serde(default)]
    pub writeback: WritebackConfig,
    #[serde(default)]
    pub provision: ProvisionConfig,
    /// The innovaphone update script (hot desking there is the phone's own key).
    #[serde(default)]
    pub innovaphone: InnovaphoneConfig,
    /// What a logged-out phone registers as (an emergency-only line); none when absent.
    #[serde(rename = "base")]
    pub base_profile: Option<BaseProfile>,
    #[serde(default)]
    pub log: LogConfig,
    /// HTTPS beside plain HTTP; none when absent.
    pub tls: Option<TlsConfig>,
    /// The text this was parsed from, for the console's masked view (a [`Secret`] so that
    /// `Debug` never prints it).
    #[serde(skip)]
    pub source: Secret,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// A connection that has not sent a full request head in this time is closed.
    pub header_timeout: Span,
    /// A request whose answer takes longer gets a 503 screen.
    pub request_timeout: Span,
    /// Connections above this are closed at once.
    pub max_connections: usize,
    /// Connections from one source (an IPv4 address, an IPv6 /64) above this are closed at
    /// once, before the global cap is touched; trusted proxies are exempt.
    pub max_connections_per_source: usize,
    /// An HTTP/2 connection with no open stream for this long is closed (GOAWAY).
    pub h2_idle_timeout: Span,
    /// Any connection is closed this long after it was opened (after its current request).
    pub max_connection_age: Span,
    /// Sources outside `[phones] allow`, `[admin] allow`, `[users] allow` and `trusted_proxies` whose
    /// connections are still accepted, e.g. a monitor that only calls /healthz. Connections
    /// from any other source are closed at accept, unanswered.
    pub healthz_allow: Vec<IpNet>,
    /// Request bodies above this get 413.
    pub max_body_bytes: usize,
    /// Request heads above this get 431.
    pub max_header_bytes: usize,
    /// How long in-flight requests may take to finish on shutdown.
    pub shutdown_grace: Span,
    /// Reverse proxies whose `X-Forwarded-For` is believed; nobody else's is.
    pub trusted_proxies: Vec<IpNet>,
    /// Sign the links hotdesk generates (HMAC) so their state cannot be forged or replayed.
    pub sign_links: bool,
    /// How long a generated link stays valid.
    pub link_ttl: Span,
    /// The signing key; generated and stored as `url.key` beside the store when absent.
    pub url_key: Option<Secret>,
    /// Other URLs phones reach hotdesk by (e.g. the https one). A phone whose request came
    /// by one of these (scheme and Host) gets links on it; otherwise links use `base_url`.
    pub base_urls: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            header_timeout: Span(Duration::from_secs(10)),
            request_timeout: Span(Duration::from_secs(8)),
            max_connections: 16_384,
            max_connections_per_source: 64,
            h2_idle_timeout: Span(Duration::from_secs(30)),
            max_connection_age: Span(Duration::from_secs(600)),
            healthz_allow: Vec::new(),
            max_body_bytes: 64 * 1024,
            max_header_bytes: 16 * 1024,
            shutdown_grace: Span(Duration::from_secs(10)),
            trusted_proxies: Vec::new(),
            sign_links: true,
            link_ttl: Span(Duration::from_secs(600)),
            url_key: None,
            base_urls: Vec::new(),
        }
    }
}

/// Where users come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DirectoryKind {
    /// The embedded TOML file of `[[user]]` tables.
    #[default]
    File,
    /// Asterisk/FreePBX `voicemail.conf` (mailbox => PIN,name,...).
    VoicemailConf,
    /// hotdesk's vendor-neutral HTTP contract (`docs/upstream-openapi.yaml`).
    Http,
    /// FreePBX's API module (OAuth2 client credentials + GraphQL).
    Freepbx,
    /// Wazo Platform: a wazo-auth token, then wazo-confd.
    Wazo,
    /// Users kept in hotdesk's own store (hashed PINs, encrypted SIP secrets), managed by
    /// the admin API and `hotdesk import-users`.
    Embedded,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryConfig {
    #[serde(default)]
    pub kind: DirectoryKind,
    /// `kind = "file"`: the TOML file, re-read when it changes.
    pub file: Option<PathBuf>,
    /// `kind = "voicemail-conf"`: the Asterisk voicemail.conf, re-read when it (or an
    /// included file) changes.
    pub voicemail_conf: Option<PathBuf>,
    /// `kind = "voicemail-conf"`: the context mailboxes are looked up in; `default` when
    /// absent (as Asterisk), `"*"` for every context.
    pub context: Option<String>,
    /// `kind = "voicemail-conf"`: Asterisk's voicemail spool, where `passwordlocation =
    /// spooldir` keeps each mailbox's `secret.conf`; `/var/spool/asterisk/voicemail` when absent.
    pub spool: Option<PathBuf>,
    /// `kind = "voicemail-conf"`: pjsip.conf whose `type=auth` sections give users their SIP
    /// secret (via each endpoint's `auth =`); the one beside voicemail.conf when absent.
    pub pjsip_conf: Option<PathBuf>,
    /// `kind = "voicemail-conf"`: chan_sip's sip.conf, whose peers' `secret =` is used when
    /// pjsip.conf has none; the one beside voicemail.conf when absent.
    pub sip_conf: Option<PathBuf>,
    /// `kind = "http"`, and the transport for `kind = "freepbx"`.
    pub http: Option<UpstreamHttp>,
    /// `kind = "freepbx"`: the API application's credentials.
    pub freepbx: Option<FreepbxConfig>,
    /// `kind = "wazo"`: the wazo-auth user hotdesk logs in as, and where to look.
    pub wazo: Option<WazoConfig>,
    /// A looked-up user is answered from memory this long.
    #[serde(default = "default_fresh")]
    pub fresh_ttl: Span,
    /// After that, for this long, the old entry is answered when the upstream fails or is slow.
    #[serde(default = "default_stale")]
    pub stale_window: Span,
    /// Unknown extensions are remembered this long.
    #[serde(default = "default_negative")]
    pub negative_ttl: Span,
    /// How long a lookup waits for the backend before answering stale (or failing).
    #[serde(default = "default_deadline")]
    pub deadline: Span,
    /// How often files are checked for changes.
    #[serde(default = "default_poll")]
    pub poll_interval: Span,
    /// `kind = "embedded"`: a directory file (TOML or CSV) imported once, when the store
    /// has no users yet (demo and first start).
    pub seed: Option<PathBuf>,
    /// `kind = "embedded"`: digits of a PIN the admin API generates (6 to 12).
    #[serde(default = "default_pin_length")]
    pub pin_length: usize,
}

fn default_pin_length() -> usize {
    6
}

/// A FreePBX API application (Admin > API > Applications, type "Machine-to-Machine").
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreepbxConfig {
    pub client_id: String,
    pub client_secret: Secret,
    /// OAuth2 scope. None by default: FreePBX then grants the application's own scopes.
    /// `gql` asks for read and write on every module (check-config warns).
    pub scope: Option<String>,
}

/// A Wazo service user (wazo-auth) whose policy grants the confd read ACLs hotdesk needs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WazoConfig {
    pub username: String,
    pub password: Secret,
    /// wazo-auth backend; `wazo_user` when absent.
    #[serde(default = "default_wazo_backend")]
    pub backend: String,
    /// Token lifetime asked for; renewed a minute before it ends.
    #[serde(default = "default_wazo_expiration")]
    pub token_expiration: Span,
    /// Only extensions of this context (e.g. `default`); every context when absent.
    pub context: Option<String>,
    /// Sent as `Wazo-Tenant` (a tenant UUID) when set.
    pub tenant: Option<String>,
}

fn default_wazo_backend() -> String {
    "wazo_user".into()
}

fn default_wazo_expiration() -> Span {
    Span(Duration::from_secs(3600))
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamAuth {
    #[default]
    Bearer,
    Basic,
    None,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamHttp {
    /// Base URL of the contract, e.g. `https://pbx.example.com/hotdesk/v1`.
    pub url: String,
    #[serde(default)]
    pub auth: UpstreamAuth,
    /// Bearer token (`auth = "bearer"`).
    pub token: Option<Secret>,
    /// HTTP basic user and password (`auth = "basic"`).
    pub username: Option<String>,
    pub password: Option<Secret>,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Span,
    /// Whole request, headers and body.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: Span,
    /// Larger replies are refused.
    #[serde(default = "default_reply_bytes")]
    pub max_reply_bytes: usize,
    /// Consecutive failures that open the circuit breaker.
    #[serde(default = "default_breaker_failures")]
    pub breaker_failures: u32,
    /// How long an open breaker fails fast before one trial request.
    #[serde(default = "default_breaker_cooldown")]
    pub breaker_cooldown: Span,
    /// PEM certificates trusted besides the public web roots (an on-site PBX's own CA).
    pub ca_file: Option<PathBuf>,
    /// Take any certificate (testing only); check-config and every start warn loudly.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProvisionConfig {
    /// Folder of `<brand>/<name>.<cfg|xml>.j2` templates (brand: aastra, yealink, htek, snom).
    /// A user's `template = "sales"` picks `<brand>/sales.*` on that brand's phones.
    pub templates: Option<PathBuf>,
    /// Provisioning fetches (files and Aastra push pages) one source address (IPv6: one /64)
    /// may make per second on average, and in a burst.
    pub rate_per_second: u32,
    pub rate_burst: u32,
    /// `"digest"`: every provisioning fetch needs the phone's own HTTP Digest credentials
    /// (made with `POST /api/v1/phones/{mac}/credentials`).
    pub auth: ProvisionAuth,
    /// The Digest realm phones see.
    pub realm: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProvisionAuth {
    /// The login's source address (and the User-Agent's MAC) decide.
    None,
    /// As `none`, plus HTTP Digest with per-phone credentials.
    Digest,
}

impl Default for ProvisionConfig {
    fn default() -> Self {
        Self {
            templates: None,
            rate_per_second: 2,
            rate_burst: 20,
            auth: ProvisionAuth::None,
            realm: "hotdesk".into(),
        }
    }
}

/// innovaphone phones fetch an update-server script. hotdesk adds `config write`,
/// `config activate` and `iresetn`; the lines that set the Hot Desk Base user and the
/// hot-desking key come from here, copied from a real device's `config show` (see
/// vendor-xml/innovaphone/README.md). `{password}` in a line is replaced by `password`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InnovaphoneConfig {
    #[serde(default)]
    pub lines: Vec<String>,
    pub password: Option<Secret>,
}

/// The registration a logged-out phone gets, e.g. an emergency-only extension.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaseProfile {
    pub extension: String,
    pub secret: Secret,
    /// What the phone shows for the line.
    pub label: String,
    /// Which `[networks]` entry's `sip_server` it registers with.
    pub network: String,
}

/// How logins and logouts reach the PBX.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WritebackKind {
    #[default]
    None,
    /// `PUT {url}/devices/{mac}` and `DELETE {url}/devices/{mac}`.
    Devices,
    /// `POST {url}` of an event per login and logout.
    Webhook,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WritebackConfig {
    #[serde(default)]
    pub kind: WritebackKind,
    /// Where to deliver; for `devices`, `[directory.http]` is used when this is absent.
    pub http: Option<UpstreamHttp>,
    /// Longest wait between delivery rounds while the PBX fails.
    #[serde(default = "default_max_backoff")]
    pub max_backoff: Option<Span>,
}

fn default_max_backoff() -> Option<Span> {
    Some(Span(Duration::from_secs(300)))
}

/// The demo config's credentials (`fixtures/hotdesk.toml`): fine for `make run`, never for phones.
const DEMO_KEY_HASH: &str =
    "sha256:c14d7bdecf2188289bf9d4365a650f7fdd6f26d9f1656d412eb47b8176e320ed";
const DEMO_ADMIN_PHC: &str = "$argon2id$v=19$m=19456,t=2,p=1$vvw2euy2cAzcdUG7CoZ5rg$3bJl19cGqvQGkLqUhw5kQ6JwM8sv5VCnvMW8UhDtbsk";
/// Shorter shared user passwords fall to guessing even within the global budget.
const MIN_USER_PASSWORD: usize = 6;

impl Config {
    /// What the admin set for `vendor` (`[vendors.<id>]`, falling back to the `[reload]` keys
    /// of earlier releases).
    pub fn vendor(&self, vendor: &str) -> Option<VendorSettings> {
        let mut settings = self.vendors.get(vendor).cloned();
        if let Some(legacy) = self.reload.legacy(vendor)
            && settings.as_ref().is_none_or(|s| s.reload.is_none())
        {
            settings.get_or_insert_with(VendorSettings::default).reload = Some(legacy);
        }
        settings
    }

    /// Settings that work but weaken the defences or are spelled as an earlier release did;
    /// `check-config` and `serve` print them.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for key in self.reload.legacy_keys() {
            out.push(format!(
                "[reload] {key} is the old spelling; write [vendors.{key}] reload = … instead (the old one is read for now)"
            ));
        }
        if self.admin.legacy_api_keys > 0 {
            out.push(format!(
                "[admin] api_keys is the first release's spelling and holds plaintext keys; they work for now (as legacy-1…legacy-{}), but make a key per client with `hotdesk new-api-key` and list it as [[admin.keys]] name/hash instead",
                self.admin.legacy_api_keys
            ));
        }
        if let Some(p) = &self.login.user_password
            && !p.is_empty()
            && p.expose().chars().count() < MIN_USER_PASSWORD
        {
            out.push(format!(
                "[login] user_password is shorter than {MIN_USER_PASSWORD} characters: it logs in every user without a voicemail PIN, so make it long"
            ));
        }
        if self.admin.keys.iter().any(|k| k.hash == DEMO_KEY_HASH) {
            out.push("[[admin.keys]] holds the demo key from fixtures/hotdesk.toml; make your own with `hotdesk new-api-key`".into());
        }
        if self.login.admin_password_hash.as_deref() == Some(DEMO_ADMIN_PHC) {
            out.push("[login] admin_password_hash is the demo one (\"999999\"); make your own with `hotdesk hash-password`".into());
        }
        out
    }

    /// The HTTP settings write-backs use, if write-back is on.
    pub fn writeback_http(&self) -> Option<&UpstreamHttp> {
        match self.writeback.kind {
            WritebackKind::None => None,
            WritebackKind::Devices => self
                .writeback
                .http
                .as_ref()
                .or(self.directory.http.as_ref()),
            WritebackKind::Webhook => self.writeback.http.as_ref(),
        }
    }
}

fn default_fresh() -> Span {
    Span(Duration::from_secs(60))
}
fn default_stale() -> Span {
    Span(Duration::from_secs(3600))
}
fn default_negative() -> Span {
    Span(Duration::from_secs(10))
}
fn default_deadline() -> Span {
    Span(Duration::from_secs(2))
}
fn default_poll() -> Span {
    Span(Duration::from_secs(2))
}
fn default_connect_timeout() -> Span {
    Span(Duration::from_secs(2))
}
fn default_request_timeout() -> Span {
    Span(Duration::from_secs(3))
}
fn default_reply_bytes() -> usize {
    64 * 1024
}
fn default_breaker_failures() -> u32 {
    5
}
fn default_breaker_cooldown() -> Span {
    Span(Duration::from_secs(30))
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// SQLite file for logins and the audit trail; created on first start.
    pub path: PathBuf,
    /// How often the store is checked (still the same file, writable) for `/readyz`.
    #[serde(default = "default_probe")]
    pub probe_interval: Span,
    /// Audit events older than this are deleted in the background (checked hourly).
    #[serde(default = "default_audit_retention")]
    pub audit_retention: Span,
}

fn default_probe() -> Span {
    Span(Duration::from_secs(10))
}

fn default_audit_retention() -> Span {
    Span(Duration::from_secs(400 * 86_400))
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// What the phone shows for this choice.
    pub label: String,
    /// The SIP server a phone on this network registers with.
    pub sip_server: String,
    /// Phones whose source address is in one of these see this network first.
    #[serde(default)]
    pub cidrs: Vec<IpNet>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// A second login of the same extension logs the first phone out.
    Exclusive,
    /// Up to `max_devices` phones per extension.
    Concurrent,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoginConfig {
    /// Accepted only for users without a voicemail PIN.
    pub user_password: Option<Secret>,
    /// argon2id PHC string (`hotdesk hash-password`); logs in any existing extension.
    pub admin_password_hash: Option<String>,
    pub policy: Policy,
    pub max_devices: usize,
    /// Failed attempts per extension, or per phone, before a lockout.
    pub max_failures: u32,
    /// The window failures are counted in, and how long a lockout lasts (doubling for
    /// every further lockout of the same subject, up to a day).
    pub lockout: Span,
    /// Failed attempts from one source address (IPv6: one /64) before it is locked out.
    pub max_failures_per_source: u32,
    /// Failed attempts from one source before the admin password stops being tried for it.
    pub admin_max_failures: u32,
    /// Failed attempts on one extension from all sources together before it is locked
    /// everywhere (`max_failures` locks it only for the source that failed).
    pub extension_max_failures: u32,
    /// Failed attempts that could have been the shared user password, or the admin password,
    /// across every extension and source, before that password stops being accepted.
    pub shared_max_failures: u32,
    /// Threads that run argon2 (each keeps one block of the hash's memory, 19 MiB by default).
    pub argon2_threads: usize,
    /// argon2 checks that may wait for a thread; past this a phone is told to try later.
    pub argon2_queue: usize,
    /// Logging out from the phone needs the user's PIN (else: the address the login came from).
    pub logout_requires_pin: bool,
    /// End every login at this time of day (server time zone), e.g. "02:00".
    pub auto_logout: Option<String>,
    /// End every login after this long, e.g. "10h".
    pub max_login: Option<Span>,
    /// How often logins are checked against the two settings above.
    pub expiry_check: Span,
}

/// `"HH:MM"` -> a time of day.
pub fn parse_time_of_day(text: &str) -> Result<time::Time, String> {
    let bad = || format!("`{text}` is not a time of day like \"02:00\"");
    let (h, m) = text.trim().split_once(':').ok_or_else(bad)?;
    let (h, m): (u8, u8) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    time::Time::from_hms(h, m, 0).map_err(|_| bad())
}

impl Default for LoginConfig {
    fn default() -> Self {
        Self {
            user_password: None,
            admin_password_hash: None,
            policy: Policy::Exclusive,
            max_devices: 4,
            max_failures: 5,
            lockout: Span(Duration::from_secs(15 * 60)),
            max_failures_per_source: 20,
            admin_max_failures: 3,
            extension_max_failures: 50,
            shared_max_failures: 30,
            argon2_threads: 2,
            argon2_queue: 32,
            logout_requires_pin: false,
            auto_logout: None,
            max_login: None,
            expiry_check: Span(Duration::from_secs(30)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Keys for the admin API (`Authorization: Bearer <key>`), stored hashed.
    #[serde(default)]
    pub keys: Vec<ApiKey>,
    /// Source addresses allowed to use the admin API; loopback only by default.
    #[serde(default = "loopback")]
    pub allow: Vec<IpNet>,
    /// Named accounts for the console at `/admin` (besides `admin` with
    /// `[login] admin_password_hash`).
    #[serde(default)]
    pub accounts: Vec<AdminAccount>,
    /// A console session ends after this long without a request...
    #[serde(default = "default_session_idle")]
    pub session_idle: Span,
    /// ... and this long after sign-in, whatever happens.
    #[serde(default = "default_session_max")]
    pub session_max: Span,
    /// The first release's plaintext `api_keys = ["..."]`: hashed into `keys` (named
    /// `legacy-1`, `legacy-2`, …) as the file is loaded, then emptied, so no plaintext key
    /// stays in memory. Counted in `legacy_api_keys` for the warning.
    #[serde(default, rename = "api_keys")]
    plaintext_api_keys: Vec<Secret>,
    /// How many keys came from `api_keys`.
    #[serde(skip)]
    pub legacy_api_keys: usize,
}

fn default_session_idle() -> Span {
    Span(Duration::from_secs(30 * 60))
}

fn default_session_max() -> Span {
    Span(Duration::from_secs(12 * 3600))
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            keys: Vec::new(),
            allow: loopback(),
            accounts: Vec::new(),
            session_idle: default_session_idle(),
            session_max: default_session_max(),
            plaintext_api_keys: Vec::new(),
            legacy_api_keys: 0,
        }
    }
}

/// A named console account: `hotdesk hash-password` makes the hash.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminAccount {
    pub name: String,
    /// argon2id PHC string.
    pub password_hash: String,
}

impl AdminConfig {
    /// Moves the first release's `api_keys` into `keys`, hashed as `[[admin.keys]]` holds them.
    fn absorb_legacy_keys(&mut self) -> Result<(), String> {
        let plain = std::mem::take(&mut self.plaintext_api_keys);
        for (i, key) in plain.iter().enumerate() {
            // The first release refused shorter keys; a config it accepted still loads.
            if key.expose().len() < 16 {
                return Err(format!(
                    "[admin] api_keys[{i}] is shorter than 16 characters; make a long random key with `hotdesk new-api-key`"
                ));
            }
            self.keys.push(ApiKey {
                name: format!("legacy-{}", i + 1),
                hash: crate::auth::hash_api_key(key.expose()),
                from: Vec::new(),
            });
        }
        self.legacy_api_keys += plain.len();
        Ok(())
    }
}

/// One admin API key: a name for the logs, its hash, and optionally where it may be used from.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    pub name: String,
    /// `sha256:<64 hex digits>` of the key (`hotdesk new-api-key` prints both).
    pub hash: String,
    /// Source addresses this key works from; anywhere the admin allow-list permits when empty.
    #[serde(default)]
    pub from: Vec<IpNet>,
}

/// Who may use the phone-facing routes (`/app`, `/provision`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhonesConfig {
    /// Private, link-local and loopback ranges by default; phones on the internet must be
    /// listed explicitly.
    #[serde(default = "private_ranges")]
    pub allow: Vec<IpNet>,
}

impl Default for PhonesConfig {
    fn default() -> Self {
        Self {
            allow: private_ranges(),
        }
    }
}

/// `[activation]`: softphones provisioned by a single-use link (Linphone remote
/// provisioning), and one-time codes typed at a desk phone instead of extension and PIN.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActivationConfig {
    /// How long an activation link stays usable.
    pub link_ttl: Span,
    /// Softphones one user may activate before an admin (or the user) frees a slot.
    pub max_devices: usize,
    /// Users may make links and codes for themselves on `/me`.
    pub self_service: bool,
    /// The network whose `sip_server` a softphone registers with (default: the first).
    pub network: Option<String>,
    /// The SIP domain of the identity `sip:<ext>@<domain>` (default: the server's host).
    pub domain: Option<String>,
    /// With a realm the softphone gets `ha1` (the digest hash for that realm) instead of the
    /// password itself; it must be the realm the PBX challenges with (Asterisk: `asterisk`
    /// unless `realm` is set in pjsip.conf / sip.conf).
    pub realm: Option<String>,
    pub ha1_algorithm: Ha1Algorithm,
    /// `transport=` of the proxy address: "udp", "tcp" or "tls".
    pub transport: String,
    /// How long a one-time desk login code stays usable.
    pub code_ttl: Span,
    /// The phone's login menu offers "Log in with a code" (then the menu shows even with one
    /// network).
    pub phone_codes: bool,
    /// Email the link (never a password) when set.
    pub smtp: Option<SmtpConfig>,
    /// Who may fetch activation links (`/provisioning/...`); `[users] allow` when absent.
    /// Softphones roam: widen it (e.g. `["0.0.0.0/0", "::/0"]`) to activate from anywhere;
    /// a link is 256 random bits, single use, and fetches are rate-limited per source.
    pub allow: Option<Vec<IpNet>>,
}

impl Default for ActivationConfig {
    fn default() -> Self {
        Self {
            link_ttl: Span(Duration::from_secs(24 * 3600)),
            max_devices: 4,
            self_service: false,
            network: None,
            domain: None,
            realm: None,
            ha1_algorithm: Ha1Algorithm::Md5,
            transport: "udp".into(),
            code_ttl: Span(Duration::from_secs(600)),
            phone_codes: true,
            smtp: None,
            allow: None,
        }
    }
}

/// The digest algorithm of `ha1` (Linphone's `algorithm` entry).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum Ha1Algorithm {
    #[default]
    #[serde(rename = "MD5")]
    Md5,
    #[serde(rename = "SHA-256")]
    Sha256,
}

/// `[activation.smtp]`: where activation emails go out.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    #[serde(default = "smtp_port")]
    pub port: u16,
    /// `"starttls"` (the default: refused if the server does not offer it), `"tls"`
    /// (implicit TLS, port 465), or `"none"` (plain text: only to a loopback address).
    #[serde(default)]
    pub security: SmtpSecurity,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// The sender, e.g. `"hotdesk <hotdesk@example.com>"`.
    pub from: String,
    #[serde(default = "smtp_timeout")]
    pub timeout: Span,
}

fn smtp_port() -> u16 {
    587
}

fn smtp_timeout() -> Span {
    Span(Duration::from_secs(15))
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    #[default]
    Starttls,
    Tls,
    None,
}

impl Config {
    /// Sources that may fetch activation links.
    pub fn activation_allow(&self) -> &[IpNet] {
        self.activation
            .allow
            .as_deref()
            .unwrap_or_else(|| self.users_allow())
    }

    /// The network softphones register through.
    pub fn activation_network(&self) -> (&str, &NetworkConfig) {
        self.activation
            .network
            .as_deref()
            .and_then(|k| self.networks.get_key_value(k))
            .or_else(|| self.networks.first())
            .map(|(k, n)| (k.as_str(), n))
            .expect("validated: at least one network")
    }

    fn validate_activation(&self) -> Result<(), String> {
        let a = &self.activation;
        if let Some(net) = &a.network
            && !self.networks.contains_key(net)
        {
            return Err(format!(
                "[activation] network = \"{net}\" is not one of [networks] ({})",
                self.networks.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        if a.max_devices == 0 {
            return Err("[activation] max_devices must be at least 1".into());
        }
        if a.link_ttl.0 < Duration::from_secs(60) || a.link_ttl.0 > Duration::from_secs(30 * 86_400)
        {
            return Err("[activation] link_ttl must be between 1m and 30d".into());
        }
        if a.code_ttl.0 < Duration::from_secs(60) || a.code_ttl.0 > Duration::from_secs(86_400) {
            return Err("[activation] code_ttl must be between 1m and 1d".into());
        }
        if !matches!(a.transport.as_str(), "udp" | "tcp" | "tls") {
            return Err(format!(
                "[activation] transport = \"{}\": use \"udp\", \"tcp\" or \"tls\"",
                a.transport
            ));
        }
        for (what, v) in [("domain", &a.domain), ("realm", &a.realm)] {
            if let Some(v) = v
                && (v.is_empty()
                    || v.chars()
                        .any(|c| c.is_control() || c == '"' || c.is_whitespace()))
            {
                return Err(format!(
                    "[activation] {what} must be a host or realm name without spaces or quotes"
                ));
            }
        }
        if let Some(smtp) = &a.smtp {
            if smtp.host.trim().is_empty() || smtp.from.trim().is_empty() {
                return Err("[activation.smtp] needs host and from".into());
            }
            if smtp.username.is_some() != smtp.password.is_some() {
                return Err("[activation.smtp] username and password go together".into());
            }
            if smtp.security == SmtpSecurity::None {
                let loopback = smtp.host == "localhost"
                    || smtp
                        .host
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback());
                if !loopback {
                    return Err(format!(
                        "[activation.smtp] security = \"none\" sends mail in clear text: allowed only to a loopback host, not {}",
                        smtp.host
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Who may use the user page (`/me`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsersConfig {
    /// `[phones] allow` when absent: users sit where their phones are, and an upgrade must
    /// not admit sources that a narrowed `[phones] allow` keeps out.
    pub allow: Option<Vec<IpNet>>,
}

impl Config {
    /// Sources that may use the user page.
    pub fn users_allow(&self) -> &[IpNet] {
        self.users.allow.as_deref().unwrap_or(&self.phones.allow)
    }
}

fn loopback() -> Vec<IpNet> {
    ["127.0.0.0/8", "::1/128"]
        .iter()
        .map(|n| n.parse().expect("constant"))
        .collect()
}

fn private_ranges() -> Vec<IpNet> {
    [
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "169.254.0.0/16",
        "127.0.0.0/8",
        "fc00::/7",
        "fe80::/10",
        "::1/128",
    ]
    .iter()
    .map(|n| n.parse().expect("constant"))
    .collect()
}

/// `[vendors.<id>]`: what an admin sets for one vendor's phones.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VendorSettings {
    /// How the phone loads its new configuration after a login or logout; the vendor's
    /// documented default when absent (see `vendor-xml/<id>/README.md`).
    pub reload: Option<ReloadMethod>,
    /// Htek/Sangoma only, unverified: the DSS key type value of "XML Browser" on your firmware.
    /// Set, the hot-desk key is provisioned on line key 2; unset, no key (vendor-xml/htek/README.md).
    pub dss_key_type: Option<u32>,
}

/// The vendor-neutral reload choices; each dialect maps them to its own command
/// (see `vendor-xml/<vendor>/README.md` for which are verified).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReloadMethod {
    /// Aastra: push the new line as `AastraIPPhoneConfiguration` without a reboot where the
    /// firmware has dynamic SIP (2.5.0 and later), else `fast-reboot`.
    Push,
    /// Aastra `Command: FastReboot` where the firmware has it, else `Command: Reset`.
    FastReboot,
    /// A full reboot (Aastra `Command: Reset`).
    Reboot,
    /// Re-fetch the configuration without a reboot (Yealink/Htek `Command: AutoP`).
    Resync,
    /// A SIP NOTIFY `Event: check-sync` (sent by hotdesk, or by the PBX over AMI: `[reload]
    /// via`), the vendors' documented way; nothing in the phone's apply screen.
    CheckSync,
    /// Do nothing; the admin reloads phones another way (e.g. SIP check-sync from the PBX).
    None,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub listen: SocketAddr,
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
    pub key: PathBuf,
    /// How often the files are checked for a new certificate (SIGHUP reloads at once).
    #[serde(default = "default_poll")]
    pub reload_check: Span,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    #[serde(default)]
    pub format: LogFormat,
}

impl Config {
    /// Reads, parses and validates `path`. Relative paths inside are taken from the
    /// current directory, as `make run` and services expect.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        config
            .admin
            .absorb_legacy_keys()
            .map_err(|message| ConfigError::Invalid {
                path: path.to_owned(),
                message,
            })?;
        config.source = Secret::new(text);
        config.validate().map_err(|message| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        })?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        let base = self.base_url.trim_end_matches('/');
        let rest = base
            .strip_prefix("http://")
            .or_else(|| base.strip_prefix("https://"))
            .ok_or_else(|| {
                format!(
                    "base_url `{}` must start with http:// or https:// (it is the address phones use)",
                    self.base_url
                )
            })?;
        if rest.is_empty() || rest.contains(['?', '#', ' ']) {
            return Err(format!(
                "base_url `{}` must be scheme://host[:port][/path] with no query",
                self.base_url
            ));
        }
        if self.networks.is_empty() {
            return Err(
                "[networks] needs at least one network, e.g. [networks.internal] label = \"Internal\""
                    .into(),
            );
        }
        for (key, net) in &self.networks {
            if key.is_empty()
                || !key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(format!(
                    "network key `{key}` may only hold letters, digits, - and _"
                ));
            }
            if net.label.trim().is_empty() {
                return Err(format!("[networks.{key}] label must not be empty"));
            }
            if net.sip_server.trim().is_empty() {
                return Err(format!("[networks.{key}] sip_server must not be empty"));
            }
        }
        self.validate_directory()?;
        self.validate_activation()?;
        if let Some(b) = &self.base_profile
            && !self.networks.contains_key(&b.network)
        {
            return Err(format!(
                "[base] network `{}` is not one of [networks]",
                b.network
            ));
        }
        if self.writeback.kind != WritebackKind::None && self.writeback_http().is_none() {
            return Err("[writeback] needs a [writeback.http] table with url (for kind = \"devices\", [directory.http] also serves)".into());
        }
        if self.login.max_failures == 0 {
            return Err("[login] max_failures must be at least 1".into());
        }
        if let Some(t) = &self.login.auto_logout {
            parse_time_of_day(t).map_err(|e| format!("[login] auto_logout: {e}"))?;
        }
        if self.login.expiry_check.0.is_zero() {
            return Err("[login] expiry_check must be above zero".into());
        }
        self.reload.validate()?;
        if self.provision.rate_per_second == 0 || self.provision.rate_burst == 0 {
            return Err("[provision] rate_per_second and rate_burst must be at least 1".into());
        }
        if self.login.argon2_threads == 0 {
            return Err("[login] argon2_threads must be at least 1".into());
        }
        if self.login.max_devices == 0 {
            return Err("[login] max_devices must be at least 1".into());
        }
        if let Some(hash) = &self.login.admin_password_hash {
            crate::auth::check_phc(hash).map_err(|e| {
                format!("[login] admin_password_hash is not an argon2 PHC string ({e}); make one with `hotdesk hash-password`")
            })?;
        }
        if self.server.max_connections == 0 {
            return Err("[server] max_connections must be at least 1".into());
        }
        if self.server.max_connections_per_source == 0 {
            return Err("[server] max_connections_per_source must be at least 1".into());
        }
        if self.server.h2_idle_timeout.0.is_zero() || self.server.max_connection_age.0.is_zero() {
            return Err(
                "[server] h2_idle_timeout and max_connection_age must be above zero".into(),
            );
        }
        if self.server.max_header_bytes < 8192 {
            return Err("[server] max_header_bytes must be at least 8192".into());
        }
        for account in &self.admin.accounts {
            crate::auth::check_phc(&account.password_hash).map_err(|e| {
                format!("[[admin.accounts]] `{}`: password_hash is not an argon2 PHC string ({e}); make one with `hotdesk hash-password`", account.name)
            })?;
        }
        for key in &self.admin.keys {
            if crate::auth::parse_key_hash(&key.hash).is_none() {
                return Err(format!(
                    "[[admin.keys]] `{}`: hash must be sha256:<64 hex digits>; make one with `hotdesk new-api-key`",
                    key.name
                ));
            }
        }
        Ok(())
    }

    fn validate_directory(&self) -> Result<(), String> {
        let d = &self.directory;
        match d.kind {
            DirectoryKind::File if d.file.is_none() => {
                return Err(
                    "[directory] kind = \"file\" needs file = \"path/to/directory.toml\"".into(),
                );
            }
            DirectoryKind::VoicemailConf if d.voicemail_conf.is_none() => {
                return Err("[directory] kind = \"voicemail-conf\" needs voicemail_conf = \"/etc/asterisk/voicemail.conf\"".into());
            }
            DirectoryKind::Freepbx if d.freepbx.is_none() || d.http.is_none() => {
                return Err("[directory] kind = \"freepbx\" needs [directory.http] url = \"https://pbx/admin/api/api\" (auth = \"none\") and [directory.freepbx] client_id, client_secret".into());
            }
            DirectoryKind::Wazo if d.wazo.is_none() || d.http.is_none() => {
                return Err("[directory] kind = \"wazo\" needs [directory.http] url = \"https://wazo.example.com/api\" (auth = \"none\") and [directory.wazo] username, password".into());
            }
            DirectoryKind::Http | DirectoryKind::Freepbx | DirectoryKind::Wazo => {
                let Some(h) = &d.http else {
                    return Err(
                        "[directory] kind = \"http\" needs a [directory.http] table with url"
                            .into(),
                    );
                };
                if !(h.url.starts_with("http://") || h.url.starts_with("https://")) {
                    return Err(format!(
                        "[directory.http] url `{}` must start with http:// or https://",
                        h.url
                    ));
                }
                match h.auth {
                    _ if d.kind != DirectoryKind::Http => {}
                    UpstreamAuth::Bearer if h.token.is_none() => {
                        return Err("[directory.http] auth = \"bearer\" needs token".into());
                    }
                    UpstreamAuth::Basic if h.username.is_none() || h.password.is_none() => {
                        return Err(
                            "[directory.http] auth = \"basic\" needs username and password".into(),
                        );
                    }
                    _ => {}
                }
                if h.breaker_failures == 0 {
                    return Err("[directory.http] breaker_failures must be at least 1".into());
                }
            }
            _ => {}
        }
        if !(6..=12).contains(&d.pin_length) {
            return Err("[directory] pin_length must be 6 to 12".into());
        }
        if d.deadline.0.is_zero() || d.fresh_ttl.0.is_zero() {
            return Err("[directory] fresh_ttl and deadline must be above zero".into());
        }
        Ok(())
    }

    /// `base_url` without a trailing slash.
    pub fn base(&self) -> &str {
        self.base_url.trim_end_matches('/')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
listen = "127.0.0.1:0"
base_url = "http://127.0.0.1:8080/"
[directory]
file = "d.toml"
[store]
path = "s.sqlite"
[networks.internal]
label = "Internal"
sip_server = "10.0.0.5"
"#;

    #[test]
    fn spans() {
        let cases = [
            ("90s", Some(90)),
            ("15m", Some(900)),
            ("10h", Some(36_000)),
            ("2d", Some(172_800)),
            ("15", None),
            ("m", None),
            ("-5s", None),
            ("5 years", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_span(text).ok().map(|d| d.as_secs()), want, "{text:?}");
        }
        assert_eq!(parse_span("250ms").unwrap(), Duration::from_millis(250));
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = Config::parse(MINIMAL, Path::new("x.toml")).unwrap();
        assert_eq!(c.base(), "http://127.0.0.1:8080");
        assert_eq!(c.login.policy, Policy::Exclusive);
        assert_eq!(c.login.max_devices, 4);
        assert_eq!(c.login.lockout.0, Duration::from_secs(900));
    }

    #[test]
    fn weak_or_demo_credentials_are_warned_about() {
        let c = Config::parse(MINIMAL, Path::new("x.toml")).unwrap();
        assert!(c.warnings().is_empty(), "{:?}", c.warnings());
        let demo =
            Config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/hotdesk.toml"))
                .unwrap();
        let w = demo.warnings().join("\n");
        assert!(w.contains("user_password is shorter"), "{w}");
        assert!(w.contains("demo key"), "{w}");
        assert!(w.contains("admin_password_hash is the demo one"), "{w}");
    }

    #[test]
    fn first_release_api_keys_are_hashed_and_warned_about() {
        let key = "0123456789abcdef-first-release";
        let text =
            format!("{MINIMAL}[admin]\napi_keys = [\"{key}\", \"another-long-legacy-key\"]\n");
        let c = Config::parse(&text, Path::new("x.toml")).unwrap();
        assert_eq!(c.admin.keys.len(), 2);
        assert_eq!(c.admin.keys[0].name, "legacy-1");
        assert_eq!(c.admin.keys[1].name, "legacy-2");
        assert_eq!(c.admin.keys[0].hash, crate::auth::hash_api_key(key));
        assert!(c.admin.plaintext_api_keys.is_empty());
        assert!(!format!("{c:?}").contains(key));
        let w = c.warnings().join("\n");
        assert!(w.contains("[[admin.keys]]"), "{w}");
        assert!(w.contains("hotdesk new-api-key"), "{w}");
        let short = format!("{MINIMAL}[admin]\napi_keys = [\"short\"]\n");
        let err = Config::parse(&short, Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("api_keys[0]"), "{err}");
    }

    #[test]
    fn unknown_key_names_the_line() {
        let text = MINIMAL.replace("[store]", "[store]\npaht = \"x\"");
        let err = Config::parse(&text, Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 7"), "{err}");
        assert!(err.contains("paht"), "{err}");
    }

    #[test]
    fn invalid_values_are_explained() {
        let cases = [
            (
                MINIMAL.replace("http://127.0.0.1:8080/", "ftp://x"),
                "base_url",
            ),
            (
                MINIMAL.replace("sip_server = \"10.0.0.5\"", "sip_server = \"\""),
                "sip_server",
            ),
            (
                format!("{MINIMAL}[login]\nmax_failures = 0\n"),
                "max_failures",
            ),
            (
                format!("{MINIMAL}[login]\nadmin_password_hash = \"plain\"\n"),
                "hash-password",
            ),
            (
                format!("{MINIMAL}[login]\nlockout = \"soon\"\n"),
                "duration",
            ),
            (
                format!("{MINIMAL}[[admin.keys]]\nname = \"x\"\nhash = \"plain-key\"\n"),
                "new-api-key",
            ),
        ];
        for (text, needle) in cases {
            let err = Config::parse(&text, Path::new("x.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{needle}: {err}");
        }
    }
}
