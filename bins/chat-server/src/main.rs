//! `chat-server`: the bundled chat server. A thin binary: flags, wiring, the accept loop.

mod api;
mod app;
mod cli;
mod config;
mod origin;
mod pages;
mod ratelimit;
mod respond;
mod routes;
mod server;
mod ws;

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use chat_core::{InMemoryChannelLayer, LayerConfig};
use chat_ws::ConnectionConfig;
use clap::Parser;

use crate::app::App;
use crate::cli::{Cli, Command};
use crate::config::ServerConfig;
use crate::ratelimit::KeyedLimiter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.settings.log)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
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
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    let config = ServerConfig::resolve(cli.settings)?;
    let store = chat_store::Store::open(chat_store::StoreConfig::new(&config.database_url))
        .await
        .map_err(|e| format!("cannot open the database {}: {e}", config.database_url))?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Migrate => {
            println!("migrations applied to {}", config.database_url);
            Ok(())
        }
        Command::Serve => serve(config, store).await,
    }
}

async fn serve(
    config: ServerConfig,
    store: chat_store::Store,
) -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind(config.settings.bind)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.settings.bind))?;
    let addr = listener.local_addr()?;
    let layer = InMemoryChannelLayer::new(LayerConfig {
        // A connection's layer mailbox holds as much as its outbound queue.
        capacity: config.limits.outbound_queue,
        ..LayerConfig::default()
    });
    let app = App {
        store: Arc::new(store),
        layer: Arc::new(layer),
        connections: ConnectionConfig {
            limits: config.limits.clone(),
            ..ConnectionConfig::default()
        },
        post_limiter: Arc::new(KeyedLimiter::new(
            config.limits.messages_per_second,
            config.limits.message_burst,
        )),
        config: Arc::new(config),
    };
    tracing::info!(%addr, database = %app.config.database_url, "chat-server started");
    // Scripts and tests read this line to learn the port when binding to :0.
    println!("listening on http://{addr}");
    let _ = std::io::stdout().flush();
    server::serve(app, listener, server::shutdown_signal()).await;
    tracing::info!("stopped");
    Ok(())
}
