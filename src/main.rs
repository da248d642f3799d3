//! The `hotdesk` command line: serve, check-config, hash-password, new-api-key.

use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use sd_notify::NotifyState;
use tracing_subscriber::EnvFilter;

use hotdesk::config::{Config, LogFormat};

/// jemalloc with its background purge thread: after a boot storm's connections close, their
/// memory goes back to the system within seconds (glibc kept all of it; see README,
/// Performance). glibc builds only: the static musl build keeps musl's allocator. Its
/// build-time options are in `.cargo/config.toml`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// What `--help` says after the commands: where the config lives and what signals do.
const AFTER_HELP: &str = "\
Config file:
  TOML, every key documented in fixtures/hotdesk.toml. A packaged install keeps it in
  /etc/hotdesk/hotdesk.toml (the systemd unit and the container image pass that path).

Signals (serve):
  SIGHUP   reload the config file: the directory, TLS certificate files, provisioning
           templates, [networks], [base] and the [login] lockout limits are applied; any
           other changed setting is logged as needing a restart. A config with a problem
           changes nothing and every problem is logged.
  SIGTERM  stop accepting, let requests in flight finish ([server] shutdown_grace), exit.
  SIGINT   as SIGTERM.

Under systemd (Type=notify) the server reports READY=1 once it listens, RELOADING=1
around a reload and STOPPING=1 on shutdown.";

#[derive(Parser)]
#[command(
    version,
    about = "Hot-desk server for shared desk phones",
    long_about = "Hot-desk server for shared desk phones: vendor-native XML login and logout \
screens, credentials from a cached directory, logins kept in SQLite.",
    after_help = AFTER_HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the server: listen, open the store and the directory, serve phones and admins.
    Serve {
        /// The config file (TOML), e.g. /etc/hotdesk/hotdesk.toml.
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        /// Log format; overrides [log] format in the config. Text has colours only when
        /// standard output is a terminal.
        #[arg(long, value_parser = ["text", "json"])]
        log_format: Option<String>,
    },
    /// Check a config file (and the directory it names) and explain every problem.
    CheckConfig {
        /// The config file (TOML) to check.
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        /// Also contact the directory's PBX as a login would: fetch a token and, with
        /// --extension, look one extension up (secrets are never printed).
        #[arg(long)]
        online: bool,
        /// The extension --online looks up.
        #[arg(long, requires = "online", value_name = "EXTENSION")]
        extension: Option<String>,
    },
    /// Read a password from standard input and print its argon2id PHC string, for
    /// [login] admin_password_hash.
    HashPassword,
    /// Make a random admin API key; prints the key (give it to the client) and the
    /// `[[admin.keys]]` lines for the config (which hold only its hash).
    NewApiKey {
        /// The key's name in logs and the audit trail.
        #[arg(long, default_value = "admin")]
        name: String,
    },
    // --- embedded directory (docs/users.md) ---
    /// Import users into the embedded directory from today's TOML directory file or a CSV
    /// (extension,name,pin,sip_secret,template,email): all checked first, then all or nothing.
    ImportUsers {
        /// The server's config file (its [store] holds the embedded directory).
        #[arg(long, short)]
        config: PathBuf,
        /// A TOML directory file ([[user]] tables) or a CSV with a header line.
        file: PathBuf,
    },
    /// Print the embedded directory's users as CSV, without PINs or SIP secrets.
    ExportUsers {
        /// The server's config file (its [store] holds the embedded directory).
        #[arg(long, short)]
        config: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve { config, log_format } => serve(config, log_format),
        Command::CheckConfig {
            config,
            online,
            extension,
        } => check(config, online, extension),
        Command::ImportUsers { config, file } => users::import(config, file),
        Command::ExportUsers { config } => users::export(config),
        Command::NewApiKey { name } => {
            let mut bytes = [0u8; 24];
            getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
            let key = hotdesk::hex::lower(&bytes);
            println!("key: {key}");
            println!();
            println!("[[admin.keys]]");
            println!("name = {:?}", name);
            println!("hash = \"{}\"", hotdesk::auth::hash_api_key(&key));
            Ok(())
        }
        Command::HashPassword => {
            let mut password = String::new();
            std::io::stdin()
                .read_to_string(&mut password)
                .context("reading standard input")?;
            let password = password.trim_end_matches(['\r', '\n']);
            anyhow::ensure!(!password.is_empty(), "no password on standard input");
            println!(
                "{}",
                hotdesk::auth::hash_password(password).map_err(anyhow::Error::msg)?
            );
            Ok(())
        }
    }
}

fn check(path: PathBuf, online: bool, extension: Option<String>) -> anyhow::Result<()> {
    let config = Config::load(&path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let users = hotdesk::directory::check_offline(&config.directory)
        .map_err(|e| anyhow::anyhow!("directory: {e}"))?;
    println!(
        "{}: ok ({} network(s), {users})",
        path.display(),
        config.networks.len()
    );
    let warnings = config
        .warnings()
        .into_iter()
        .chain(hotdesk::directory::config_warnings(&config.directory));
    for warning in warnings {
        println!("warning: {warning}");
    }
    if online {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let found = runtime
            .block_on(hotdesk::directory::check_online(
                &config.directory,
                extension.as_deref(),
            ))
            .map_err(|e| anyhow::anyhow!("directory (online): {e}"))?;
        println!("online: {found}");
    }
    Ok(())
}

fn serve(path: PathBuf, log_format: Option<String>) -> anyhow::Result<()> {
    let config = Config::load(&path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let json = match log_format.as_deref() {
        Some("json") => true,
        Some(_) => false,
        None => config.log.format == LogFormat::Json,
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Lines are formatted on the worker and written in batches by a thread of their own, so
    // a slow terminal, pipe or disk never stalls a request (`_flush` writes out what is
    // pending when serve returns).
    let (writer, _flush) = hotdesk::log_writer::batched(std::io::stdout());
    hotdesk::server::access_log::install(writer.clone(), json);
    if json {
        tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_env_filter(filter)
            .with_writer(writer)
            .init();
    } else {
        // Colour codes only for a person at a terminal, never into a file or journald.
        use std::io::IsTerminal;
        tracing_subscriber::fmt()
            .with_ansi(std::io::stdout().is_terminal())
            .with_env_filter(filter)
            .with_writer(writer)
            .init();
    }
    // Read the time zone while the process still has one thread (time refuses later).
    let clock = std::sync::Arc::new(hotdesk::clock::SystemClock::detect());
    let runtime = hotdesk::workers::watch(&mut tokio::runtime::Builder::new_multi_thread())
        .enable_all()
        .build()?;
    // Everything runs in a task on the workers, the accept loop included: run by block_on it
    // would sit on this thread, and every connection it accepted would be handed to a worker
    // through the shared queue with a wake-up (a boot storm is 10,000 of them).
    let served = runtime.spawn(async move {
        let listener = hotdesk::server::bind(config.listen)
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        // One line on stdout that tests and scripts can read.
        println!(
            "hotdesk listening on http://{addr} (phones use {}/app)",
            config.base()
        );
        intake(config.server.max_connections);
        let tls = hotdesk::bind_tls(&config)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        if let Some(t) = &tls {
            println!("hotdesk TLS on https://{}", t.local_addr()?);
        }
        let app = hotdesk::App::open_with(config, clock).map_err(|e| anyhow::anyhow!("{e}"))?;
        let reloads = tokio::spawn(reload_on_hangup(app.clone(), path));
        // Listeners bound, store and directory open: systemd may start what depends on us.
        notify(&[NotifyState::Ready]);
        let served = hotdesk::run_app_on(app, listener, tls, async {
            shutdown_signal().await;
            notify(&[NotifyState::Stopping]);
        })
        .await;
        reloads.abort();
        served.map_err(|e| anyhow::anyhow!("{e}"))
    });
    runtime
        .block_on(served)
        .map_err(|e| anyhow::anyhow!("the server task failed: {e}"))?
}

/// Says how many connections the system lets the server take at once: the accept queue
/// (capped by net.core.somaxconn) and open files (the soft limit raised to the hard one,
/// since every connection is a file). A site booting after a power cut needs both. Logged,
/// not printed: whoever started us may have stopped reading stdout after the first line.
fn intake(max_connections: usize) {
    let backlog = hotdesk::server::listen_backlog();
    match hotdesk::server::somaxconn() {
        Some(max) if max < hotdesk::server::LISTEN_BACKLOG => tracing::info!(
            backlog,
            somaxconn = max,
            "listen backlog capped by net.core.somaxconn; raise it for larger boot storms"
        ),
        _ => tracing::info!(backlog, "listen backlog"),
    }
    let before = rlimit::getrlimit(rlimit::Resource::NOFILE).ok();
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(files) => {
            match before {
                Some((soft, _)) if soft < files => {
                    tracing::info!(files, raised_from = soft, "open files limit")
                }
                _ => tracing::info!(files, "open files limit"),
            }
            // The store, the log and the listeners need a few files beside the connections.
            if files < max_connections as u64 + 64 {
                tracing::warn!(
                    files,
                    max_connections,
                    "the open files limit is below [server] max_connections: accepts will \
                     fail before the cap (raise LimitNOFILE / ulimit -n)"
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot read or raise the open files limit"),
    }
}

/// Tells systemd (Type=notify) where the server is; nothing when NOTIFY_SOCKET is unset.
fn notify(state: &[NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// Re-reads the config file on every SIGHUP and applies what can change without a restart.
async fn reload_on_hangup(app: std::sync::Arc<hotdesk::App>, path: PathBuf) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot install the SIGHUP handler; reloads need a restart");
            return;
        }
    };
    while hangups.recv().await.is_some() {
        // systemd wants the monotonic time with RELOADING=1 (Type=notify-reload checks it).
        match NotifyState::monotonic_usec_now() {
            Ok(now) => notify(&[NotifyState::Reloading, now]),
            Err(_) => notify(&[NotifyState::Reloading]),
        }
        tracing::info!(config = %path.display(), "SIGHUP: reloading the config");
        let (app, file) = (app.clone(), path.clone());
        let outcome = tokio::task::spawn_blocking(move || {
            let config = Config::load(&file).map_err(|e| vec![e.to_string()])?;
            for warning in config.warnings() {
                tracing::warn!("{warning}");
            }
            app.reload(config).map_err(|refused| refused.0)
        })
        .await;
        match outcome {
            Ok(Ok(report)) => {
                tracing::info!(applied = %report.applied.join(", "), "config reloaded");
                for setting in &report.needs_restart {
                    tracing::warn!(setting = %setting, "changed, but needs a restart: not applied");
                }
            }
            Ok(Err(problems)) => {
                for problem in &problems {
                    tracing::error!(problem = %problem, "config not reloaded");
                }
                tracing::error!(
                    problems = problems.len(),
                    "config not reloaded; the running settings stay"
                );
            }
            Err(e) => tracing::error!(error = %e, "config reload task failed"),
        }
        notify(&[NotifyState::Ready]);
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// `import-users` / `export-users`: straight on the store, so they work with or without a
/// running server (which picks the change up within `[directory] poll_interval`).
mod users {
    use std::path::PathBuf;

    use anyhow::{Context, bail};
    use hotdesk::config::{Config, DirectoryKind};
    use hotdesk::directory::embedded::{import, open_key};
    use hotdesk::store::SqliteStore;

    fn open(config: &std::path::Path) -> anyhow::Result<(Config, SqliteStore)> {
        let config = Config::load(config).map_err(|e| anyhow::anyhow!("{e}"))?;
        if config.directory.kind != DirectoryKind::Embedded {
            bail!("[directory] kind must be \"embedded\" to import or export users");
        }
        let store = SqliteStore::open(&config.store.path)
            .with_context(|| format!("store {}", config.store.path.display()))?;
        Ok((config, store))
    }

    pub fn import(config: PathBuf, file: PathBuf) -> anyhow::Result<()> {
        let (config, store) = open(&config)?;
        let users = import::read(&file).map_err(anyhow::Error::msg)?;
        let templates = hotdesk::provision::Provisioner::new(config.provision.templates.as_deref())
            .map_err(anyhow::Error::msg)?;
        import::check_templates(&users, &templates.user_template_names())
            .map_err(anyhow::Error::msg)?;
        let key = open_key(&store, &config.store.path).map_err(anyhow::Error::msg)?;
        let actor = format!("import-users ({})", file.display());
        let n = import::write(&store, &key, &users, &actor).map_err(anyhow::Error::msg)?;
        for warning in import::warnings(&users) {
            eprintln!("warning: {warning}");
        }
        println!("imported {n} user(s) from {}", file.display());
        Ok(())
    }

    pub fn export(config: PathBuf) -> anyhow::Result<()> {
        let (config, store) = open(&config)?;
        let key = open_key(&store, &config.store.path).map_err(anyhow::Error::msg)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let csv = runtime.block_on(async {
            let d = hotdesk::directory::embedded::Embedded::open(
                std::sync::Arc::new(store),
                key,
                std::time::Duration::from_secs(3600),
            )
            .map_err(anyhow::Error::msg)?;
            import::export_csv(&d.list()).map_err(anyhow::Error::msg)
        })?;
        print!("{csv}");
        Ok(())
    }
}
