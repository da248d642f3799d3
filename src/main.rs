//! The `hotdesk` command line: serve, check-config, hash-password.

use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use hotdesk::config::{Config, LogFormat};

#[derive(Parser)]
#[command(version, about = "Hot-desk server for shared desk phones")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the server.
    Serve {
        #[arg(long, short)]
        config: PathBuf,
        /// Log format; overrides [log] format in the config.
        #[arg(long, value_parser = ["text", "json"])]
        log_format: Option<String>,
    },
    /// Check a config file (and the directory it names) and explain every problem.
    CheckConfig {
        #[arg(long, short)]
        config: PathBuf,
        /// Also contact the directory's PBX as a login would: fetch a token and, with
        /// --extension, look one extension up (secrets are never printed).
        #[arg(long)]
        online: bool,
        /// The extension --online looks up.
        #[arg(long, requires = "online")]
        extension: Option<String>,
    },
    /// Read a password from standard input and print its argon2id PHC string.
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
        #[arg(long, short)]
        config: PathBuf,
        file: PathBuf,
    },
    /// Print the embedded directory's users as CSV, without PINs or SIP secrets.
    ExportUsers {
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
            let key: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
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
    if json {
        tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_env_filter(filter)
            .init();
    } else {
        // Colour codes only for a person at a terminal, never into a file or journald.
        use std::io::IsTerminal;
        tracing_subscriber::fmt()
            .with_ansi(std::io::stdout().is_terminal())
            .with_env_filter(filter)
            .init();
    }
    // Read the time zone while the process still has one thread (time refuses later).
    let clock = std::sync::Arc::new(hotdesk::clock::SystemClock::detect());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = hotdesk::server::bind(config.listen)
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        // One line on stdout that tests and scripts can read.
        println!(
            "hotdesk listening on http://{addr} (phones use {}/app)",
            config.base()
        );
        let tls = hotdesk::bind_tls(&config)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        if let Some(t) = &tls {
            println!("hotdesk TLS on https://{}", t.local_addr()?);
        }
        let app = hotdesk::App::open_with(config, clock).map_err(|e| anyhow::anyhow!("{e}"))?;
        hotdesk::run_app_on(app, listener, tls, shutdown_signal())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))
    })
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
