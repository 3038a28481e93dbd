//! `chat-server`: the bundled chat server. A thin binary: flags, wiring, the accept loop.

mod cli;
mod cli_accounts;
mod config;
mod counters;
mod doctor;
mod prometheus;
mod server;

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use chat_core::{
    InMemoryChannelLayer, LayerConfig, MemoryPresence, RedisChannelLayer, RedisLayerConfig,
    RedisPresence, SharedLayer, SharedPresence,
};
use chat_store::redact_url;
use clap::Parser;

use crate::cli::{Cli, Command};
use crate::config::ServerConfig;
use chat_rooms::server::Chat;
use chat_rooms::server::attachments::DbAttachments;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.settings);
    // The local offset can only be read soundly while the process has one thread: now.
    let utc_offset = time::UtcOffset::current_local_offset().unwrap_or(time::UtcOffset::UTC);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, utc_offset)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to standard error, filtered by `--log`, as text or JSON (`--log-format`).
fn init_logging(settings: &cli::Settings) {
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match settings.log_format {
        cli::LogFormat::Text => logs.init(),
        // The current span (a request's id, a connection's id, kind, room and user) and its
        // parents go with every line, so one request's or one client's lines can be selected.
        cli::LogFormat::Json => logs
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .init(),
    }
}

async fn run(cli: Cli, utc_offset: time::UtcOffset) -> Result<(), Box<dyn std::error::Error>> {
    if matches!(cli.command, Some(Command::Doctor)) {
        return if doctor::run(cli.settings).await {
            Ok(())
        } else {
            Err("doctor found problems".into())
        };
    }
    let mut config = ServerConfig::resolve(cli.settings, utc_offset)?;
    let store_config = chat_store::StoreConfig {
        commit_interval: std::time::Duration::from_micros(config.settings.commit_interval_us),
        ..chat_store::StoreConfig::new(&config.database_url)
    };
    let store = chat_store::Store::open(store_config).await.map_err(|e| {
        format!(
            "cannot open the database {}: {e}",
            redact_url(&config.database_url)
        )
    })?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Migrate => {
            println!("migrations applied to {}", redact_url(&config.database_url));
            Ok(())
        }
        Command::Serve => {
            if store.backend_name() == "postgres" {
                // Every node must serve every file: keep them in the shared database.
                config.chat.attachments = Some(Arc::new(DbAttachments::new(store.clone())));
            }
            serve(config, store).await
        }
        Command::Doctor => Ok(()),
        Command::User(cmd) => cli_accounts::user(&store, &config, cmd).await,
        Command::Token(cmd) => cli_accounts::token(&store, &config, cmd).await,
    }
}

/// Binds the listening socket with a long accept backlog, so that thousands of clients
/// connecting at once (a reconnect storm after a restart) queue instead of being dropped.
fn listen(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4_096)
}

async fn serve(
    config: ServerConfig,
    store: chat_store::Store,
) -> Result<(), Box<dyn std::error::Error>> {
    // Before anything records: the crates keep their hot-path handles from their first use.
    let metrics = if config.settings.no_metrics {
        None
    } else {
        Some(prometheus::install()?)
    };
    // Every connection is a file descriptor: allow as many as the system lets this process.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open files limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open files limit"),
    }
    let listener = listen(config.settings.bind)
        .map_err(|e| format!("cannot listen on {}: {e}", config.settings.bind))?;
    let addr = listener.local_addr()?;
    let metrics_listener = match config.settings.metrics_bind {
        Some(bind) => {
            Some(listen(bind).map_err(|e| format!("cannot listen for metrics on {bind}: {e}"))?)
        }
        None => None,
    };
    let layer_config = LayerConfig {
        // A connection's layer mailbox holds as much as its outbound queue.
        capacity: config.chat.limits.outbound_queue,
        ..LayerConfig::default()
    };
    let (layer, presence): (SharedLayer, SharedPresence) = match &config.redis_url {
        None => (
            Arc::new(InMemoryChannelLayer::new(layer_config)),
            Arc::new(MemoryPresence::new()),
        ),
        Some(url) => {
            let prefix = &config.settings.redis_prefix;
            let layer = RedisChannelLayer::connect(RedisLayerConfig {
                layer: layer_config,
                prefix: prefix.clone(),
                ..RedisLayerConfig::new(url)
            })
            .await
            .map_err(|e| {
                format!(
                    "cannot start the Redis channel layer ({}): {e}",
                    redact_url(url)
                )
            })?;
            let ttl = std::time::Duration::from_secs(config.settings.presence_ttl.max(1));
            let presence = RedisPresence::connect(url, prefix, ttl)
                .map_err(|e| format!("cannot start Redis presence ({}): {e}", redact_url(url)))?;
            (Arc::new(layer), Arc::new(presence))
        }
    };
    let app = Chat::new(store, layer, presence, config.chat.clone());
    if let Some(metrics) = &metrics {
        prometheus::spawn_upkeep(metrics.clone(), app.shutdown_token());
    }
    let (main_metrics, metrics_addr) = match (metrics_listener, metrics) {
        // `/metrics` on its own listener; the main one answers 404 for it.
        (Some(listener), Some(metrics)) => {
            let metrics_addr = listener.local_addr()?;
            tokio::spawn(prometheus::serve_listener(
                listener,
                metrics,
                app.shutdown_token(),
            ));
            (None, Some(metrics_addr))
        }
        (_, metrics) => (metrics, None),
    };
    if config.redis_url.is_some() {
        // Other nodes die without a goodbye: announce their users' departures.
        let ttl = std::time::Duration::from_secs(config.settings.presence_ttl.max(1));
        chat_rooms::spawn_presence_sweeper(
            app.presence().clone(),
            app.layer().clone(),
            ttl / 3,
            app.shutdown_token(),
        );
    }
    tracing::info!(
        %addr,
        database = %redact_url(&config.database_url),
        layer = if config.redis_url.is_some() { "redis" } else { "memory" },
        "chat-server started"
    );
    // Signals are handled from here on: a SIGTERM right after the line below is graceful.
    let shutdown = server::shutdown_signal();
    // Scripts and tests read these lines to learn the ports when binding to :0.
    if let Some(metrics_addr) = metrics_addr {
        println!("metrics on http://{metrics_addr}/metrics");
    }
    println!("listening on http://{addr}");
    let _ = std::io::stdout().flush();
    server::run(app, main_metrics, listener, shutdown).await;
    tracing::info!("stopped");
    Ok(())
}
