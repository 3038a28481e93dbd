//! `chat-server`: the bundled chat server. A thin binary: flags, wiring, the accept loop.

mod access;
mod accounts;
mod api;
mod app;
mod auth;
mod body;
mod cli;
mod cli_accounts;
mod config;
mod doctor;
mod origin;
mod pages;
mod ratelimit;
mod respond;
mod routes;
mod server;
mod socketio;
mod sockets;
mod tutorials;
mod ws;

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use chat_core::{
    InMemoryChannelLayer, LayerConfig, MemoryPresence, RedisChannelLayer, RedisLayerConfig,
    RedisPresence, SharedLayer, SharedPresence,
};
use chat_store::redact_url;
use clap::Parser;

use crate::app::App;
use crate::cli::{Cli, Command};
use crate::config::ServerConfig;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.settings.log)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
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

async fn run(cli: Cli, utc_offset: time::UtcOffset) -> Result<(), Box<dyn std::error::Error>> {
    if matches!(cli.command, Some(Command::Doctor)) {
        return if doctor::run(cli.settings).await {
            Ok(())
        } else {
            Err("doctor found problems".into())
        };
    }
    let config = ServerConfig::resolve(cli.settings, utc_offset)?;
    let store = chat_store::Store::open(chat_store::StoreConfig::new(&config.database_url))
        .await
        .map_err(|e| {
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
        Command::Serve => serve(config, store).await,
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
    // Every connection is a file descriptor: allow as many as the system lets this process.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open files limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open files limit"),
    }
    let listener = listen(config.settings.bind)
        .map_err(|e| format!("cannot listen on {}: {e}", config.settings.bind))?;
    let addr = listener.local_addr()?;
    let layer_config = LayerConfig {
        // A connection's layer mailbox holds as much as its outbound queue.
        capacity: config.limits.outbound_queue,
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
    let app = App::new(store, layer, presence, config).with_socketio();
    if app.config.redis_url.is_some() {
        // Other nodes die without a goodbye: announce their users' departures.
        let ttl = std::time::Duration::from_secs(app.config.settings.presence_ttl.max(1));
        chat_ws::spawn_presence_sweeper(
            app.presence.clone(),
            app.layer.clone(),
            ttl / 3,
            app.connections.shutdown.clone(),
        );
    }
    tracing::info!(
        %addr,
        database = %redact_url(&app.config.database_url),
        layer = if app.config.redis_url.is_some() { "redis" } else { "memory" },
        "chat-server started"
    );
    // Scripts and tests read this line to learn the port when binding to :0.
    println!("listening on http://{addr}");
    let _ = std::io::stdout().flush();
    server::serve(app, listener, server::shutdown_signal()).await;
    tracing::info!("stopped");
    Ok(())
}
