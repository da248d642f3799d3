//! hotdesk: turns shared desk phones into hot desks.
//!
//! # Architecture
//! - [`server`] accepts connections (limits, timeouts, drain), routes, and answers.
//! - [`phone`] turns User-Agent and `?vendor=`/`?mac=` into a [`phone::Handset`] with capabilities.
//! - [`flow`] is the vendor-neutral state machine: network -> extension -> PIN -> login/logout.
//! - [`auth`] checks credentials (admin password, voicemail PIN, user password) and lockouts.
//! - [`directory`] is where users come from, behind a moka cache; [`store`] keeps logins
//!   durable (SQLite) and in memory.
//! - [`screen`] is the neutral screen model; [`dialect`] renders it as each vendor's XML.
//!
//! Dependencies point down: server -> flow -> (directory, auth, store); server -> dialect -> screen.
#![forbid(unsafe_code)]

pub mod activation;
pub mod auth;
pub mod clock;
pub mod config;
pub mod dialect;
pub mod directory;
pub mod flow;
pub mod hex;
pub mod log_writer;
pub mod metrics;
pub mod phone;
pub mod provision;
pub mod reload;
pub mod screen;
pub mod secret;
pub mod server;
pub mod sighup;
pub mod slots;
pub mod store;
pub mod upstream;
pub mod vendor;
pub mod workers;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use config::Config;
use directory::{CachePolicy, CachedDirectory};
use flow::Flow;
use store::{LoginBook, SqliteStore, Store};

/// Everything a request needs, built once at start-up.
pub struct App {
    pub config: Arc<Config>,
    pub flow: Flow,
    pub directory: Arc<CachedDirectory>,
    /// The embedded directory, when `[directory] kind = "embedded"` (the admin API edits it).
    pub users: Option<Arc<directory::embedded::Embedded>>,
    /// Softphone activation links and one-time desk login codes.
    pub activations: Arc<activation::Activations>,
    /// Templates and the settings they render from; replaced by [`App::reload`].
    pub provisioner: provision::live::LiveProvisioner,
    pub clock: Arc<dyn clock::Clock>,
    /// Signs generated links; `None` when `[server] sign_links = false`.
    pub signer: Option<flow::signing::Signer>,
    /// Refused sources, so that each is logged at most once a minute.
    pub refusals: server::access::RefusalLog,
    /// Who may fetch provisioning files and pushes, and how often.
    pub fetch_guard: server::fetch_guard::FetchGuard,
    /// Per-phone provisioning credentials, and the Digest checker for them.
    pub credentials: provision::credentials::Credentials,
    pub digest: server::digest::DigestAuth,
    /// Console and user-page sessions.
    pub web: server::web::Web,
    /// Phones that asked for something lately, for the console.
    pub seen: server::seen::PhonesSeen,
    /// Entry screens rendered this second, reused for phones of the same model.
    pub screens: server::screen_cache::ScreenCache,
    /// This server's Prometheus metrics (one registry per app, never process-global).
    pub metrics: Arc<metrics::Metrics>,
    /// The running settings: the start-up config with what SIGHUP reloads replaced.
    /// (`config` stays the start-up one for everything that needs a restart.)
    live: arc_swap::ArcSwap<Config>,
    /// The TLS certificate holder, once the TLS listener runs.
    tls_certs: std::sync::OnceLock<Arc<server::tls::Certificates>>,
    /// One reload at a time.
    reloading: std::sync::Mutex<()>,
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// Why hotdesk could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("directory: {0}")]
    Directory(String),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("templates: {0}")]
    Templates(String),
    #[error("tls: {0}")]
    Tls(String),
    #[error("[vendors.{0}]: no such vendor; known: {1}")]
    UnknownVendor(String, String),
}

/// `[vendors.<id>]` must name a vendor of the registry.
fn check_vendors(config: &Config) -> Result<(), StartError> {
    if let Some(name) = config
        .vendors
        .keys()
        .find(|k| vendor::by_name(k).is_none_or(|f| f.id() != k.as_str()))
    {
        let known: Vec<&str> = vendor::all().iter().map(|f| f.id()).collect();
        return Err(StartError::UnknownVendor(name.clone(), known.join(", ")));
    }
    Ok(())
}

/// A user of the embedded directory naming a template that exists for no brand is a
/// start-up error, not a broken phone later. (Remote directories are checked per request.)
fn check_user_templates(config: &Config, p: &provision::Provisioner) -> Result<(), StartError> {
    if config.directory.kind != config::DirectoryKind::File {
        return Ok(());
    }
    let Some(file) = &config.directory.file else {
        return Ok(());
    };
    let users = directory::file::load(file).map_err(StartError::Directory)?;
    let known = p.user_template_names();
    for user in users.values() {
        if let Some(t) = &user.template
            && !known.contains(t)
        {
            return Err(StartError::Templates(format!(
                "user {} names template `{t}`, but no <brand>/{t}.cfg.j2 or .xml.j2 exists in [provision] templates (known: {})",
                user.extension,
                known.iter().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
    }
    Ok(())
}

/// Opens the embedded directory in the store, first importing `[directory] seed` when the
/// store has no users yet (so a fresh demo has its users).
fn open_embedded(
    config: &Config,
    store: &Arc<SqliteStore>,
    provisioner: &provision::Provisioner,
) -> Result<Arc<directory::embedded::Embedded>, StartError> {
    use directory::embedded::{Embedded, import, open_key};
    let key = open_key(store, &config.store.path).map_err(StartError::Directory)?;
    let (_, existing) = store.load_users()?;
    if let (true, Some(seed)) = (existing.is_empty(), &config.directory.seed) {
        let users = import::read(seed).map_err(StartError::Directory)?;
        import::check_templates(&users, &provisioner.user_template_names())
            .map_err(StartError::Templates)?;
        for warning in import::warnings(&users) {
            tracing::warn!("{warning}");
        }
        let actor = format!("seed ({})", seed.display());
        let n = import::write(store, &key, &users, &actor).map_err(StartError::Directory)?;
        tracing::info!(users = n, seed = %seed.display(), "embedded directory seeded");
    }
    Embedded::open(store.clone(), key, config.directory.poll_interval.0)
        .map_err(StartError::Directory)
}

impl App {
    /// Opens the directory and the store with the system clock (UTC for time-of-day settings).
    /// Must run inside a tokio runtime (background work runs as tasks).
    pub fn open(config: Config) -> Result<Arc<Self>, StartError> {
        Self::open_with(
            config,
            Arc::new(clock::SystemClock {
                offset: time::UtcOffset::UTC,
            }),
        )
    }

    pub fn open_with(
        config: Config,
        clock: Arc<dyn clock::Clock>,
    ) -> Result<Arc<Self>, StartError> {
        let config = Arc::new(config);
        check_vendors(&config)?;
        for warning in config.warnings() {
            tracing::warn!("{warning}");
        }
        let provisioner = provision::Provisioner::new(config.provision.templates.as_deref())
            .map_err(StartError::Templates)?;
        check_user_templates(&config, &provisioner)?;
        let had_database = config.store.path.exists();
        let key_file = config.store.path.with_file_name("url.key");
        if !had_database && key_file.exists() {
            tracing::error!(store = %config.store.path.display(), "the database is missing but url.key is there: this deployment lost its store, and every login it held; starting with none");
        }
        let store = Arc::new(SqliteStore::open(&config.store.path)?);
        let users = match config.directory.kind {
            config::DirectoryKind::Embedded => Some(open_embedded(&config, &store, &provisioner)?),
            _ => None,
        };
        let backend: Arc<dyn directory::Directory> = match &users {
            Some(u) => u.clone(),
            None => directory::open_backend(&config.directory).map_err(StartError::Directory)?,
        };
        let d = &config.directory;
        let policy = CachePolicy {
            fresh: d.fresh_ttl.0,
            stale: d.stale_window.0,
            negative: d.negative_ttl.0,
            deadline: d.deadline.0,
        };
        let metrics = Arc::new(metrics::Metrics::new());
        let adapter = CachedDirectory::adapter_label(d.kind);
        let directory = CachedDirectory::new(backend, policy, metrics.clone(), adapter);
        let saved_lockouts = store.load_lockouts()?;
        let credentials = provision::credentials::Credentials::new(store.load_credentials()?);
        let writeback = config.writeback_http().cloned();
        let activations = Arc::new(activation::Activations::new(store.clone(), clock.clone()));
        let book = Arc::new(LoginBook::open(store, writeback.is_some())?);
        let mut tasks = Vec::new();
        if let Some(http) = writeback {
            let outbox = upstream::Outbox {
                book: book.clone(),
                client: Arc::new(upstream::Client::new(&http).map_err(StartError::Directory)?),
                kind: config.writeback.kind,
                max_backoff: config
                    .writeback
                    .max_backoff
                    .map_or(Duration::from_secs(300), |s| s.0),
                metrics: metrics.clone(),
            };
            tasks.push(tokio::spawn(outbox.run()));
            tracing::info!(url = %http.url, "PBX write-back on");
        }
        tracing::info!(logins = book.all().len(), store = %config.store.path.display(), "store opened");
        let login = &config.login;
        if login.auto_logout.is_some() || login.max_login.is_some() {
            let policy = flow::expiry::ExpiryPolicy {
                max_login: login.max_login.map(|s| s.0),
                daily_at: login
                    .auto_logout
                    .as_deref()
                    .and_then(|t| config::parse_time_of_day(t).ok()),
                offset: clock.local_offset(),
            };
            let sweep =
                flow::expiry::sweep(book.clone(), clock.clone(), policy, login.expiry_check.0);
            tasks.push(tokio::spawn(sweep));
        }
        tasks.push(tokio::spawn(store_probe(
            book.clone(),
            config.store.probe_interval.0,
        )));
        tasks.push(tokio::spawn(audit_retention(
            book.clone(),
            clock.clone(),
            config.store.audit_retention.0,
        )));
        let flow = Flow::new(
            config.clone(),
            directory.clone(),
            book,
            clock.clone(),
            &saved_lockouts,
            metrics.clone(),
            activations.clone(),
        );
        let signer = if config.server.sign_links {
            if had_database && config.server.url_key.is_none() && !key_file.exists() {
                tracing::error!(key = %key_file.display(), "url.key is missing beside an existing database: a new link-signing key is made, and every link phones hold now is void");
            }
            let key = flow::signing::Signer::load_key(
                config.server.url_key.as_ref().map(|k| k.expose()),
                &key_file,
            )
            .map_err(StartError::Directory)?;
            Some(flow::signing::Signer::new(key, config.server.link_ttl.0))
        } else {
            None
        };
        let fetch_guard = server::fetch_guard::FetchGuard::new(&config.provision);
        let digest = server::digest::DigestAuth::new(&config.provision.realm);
        let web = server::web::Web::new(&config);
        Ok(Arc::new(Self {
            users,
            activations,
            fetch_guard,
            credentials,
            digest,
            live: arc_swap::ArcSwap::new(config.clone()),
            provisioner: provision::live::LiveProvisioner::new(provisioner, config.clone()),
            config,
            flow,
            directory,
            clock,
            refusals: server::access::RefusalLog::new(),
            web,
            seen: server::seen::PhonesSeen::default(),
            screens: server::screen_cache::ScreenCache::default(),
            metrics,
            tls_certs: std::sync::OnceLock::new(),
            reloading: std::sync::Mutex::new(()),

            signer,
            tasks: std::sync::Mutex::new(tasks),
        }))
    }

    /// Stops background work (the outbox worker).
    pub fn stop_tasks(&self) {
        for t in self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            t.abort();
        }
    }
}

/// Probes the store every `interval`, so `/readyz` notices a store that went away or
/// read-only even while no phone logs in.
async fn store_probe(book: Arc<LoginBook>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // The outcome is kept by the store for `health`; it logs the changes itself.
        let _ = book.probe().await;
    }
}

/// Deletes audit events older than `keep`, at start and then hourly (`[store] audit_retention`).
async fn audit_retention(book: Arc<LoginBook>, clock: Arc<dyn clock::Clock>, keep: Duration) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let cutoff = clock.now() - keep;
        match book.prune_audit(cutoff).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                deleted = n,
                "audit events past [store] audit_retention deleted"
            ),
            Err(e) => tracing::warn!(error = %e, "audit retention: events not deleted"),
        }
    }
}

/// Opens everything and serves on `listener` until `shutdown` resolves.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    run_app(App::open(config)?, listener, shutdown).await
}

/// Binds `[tls] listen` when configured.
pub async fn bind_tls(config: &Config) -> Result<Option<TcpListener>, StartError> {
    match &config.tls {
        Some(t) => server::bind(t.listen)
            .map(Some)
            .map_err(|e| StartError::Tls(format!("cannot listen on {}: {e}", t.listen))),
        None => Ok(None),
    }
}

/// Serves an opened app on `listener` (and `[tls] listen` when configured) until `shutdown`
/// resolves, then stops its tasks.
pub async fn run_app(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let tls = bind_tls(&app.config).await?;
    run_app_on(app, listener, tls, shutdown).await
}

/// As [`run_app`], with the TLS listener already bound (tests bind port 0).
pub async fn run_app_on(
    app: Arc<App>,
    listener: TcpListener,
    tls_listener: Option<TcpListener>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let tls = match (&app.config.tls, tls_listener) {
        (Some(t), Some(l)) => {
            let first = server::tls::load(&t.cert, &t.key).map_err(StartError::Tls)?;
            let certs = server::tls::Certificates::new(first, t.cert.clone(), t.key.clone());
            let cfg = server::tls::server_config(certs.clone()).map_err(StartError::Tls)?;
            let _ = app.tls_certs.set(certs.clone());
            let watch = server::tls::watch(certs, t.reload_check.0);
            app.tasks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(tokio::spawn(watch));
            tracing::info!(addr = %l.local_addr().map(|a| a.to_string()).unwrap_or_default(), "TLS listening");
            Some(server::TlsListener {
                listener: l,
                acceptor: tokio_rustls::TlsAcceptor::from(cfg),
            })
        }
        _ => None,
    };
    server::serve(app.clone(), listener, tls, shutdown).await;
    app.stop_tasks();
    Ok(())
}
