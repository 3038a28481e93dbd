//! `chat-bench`: the end-to-end benchmark of chat-server.
//!
//! Every scenario runs against each server of `--against` in turn (default: our chat-server,
//! then the bare baseline server), in the same run on the same machine, and reports
//! deliveries/s, acked sends/s, latency percentiles from an HDR histogram (send to receipt,
//! from a timestamp in each message), losses, and the server's memory and CPU from /proc.
//! See docs/benchmarks.md for the commands and the figures.
//!
//! ```text
//! cargo build --release -p chat-server -p chat-bench
//! target/release/chat-bench fanout --clients 1000 --rooms 1
//! target/release/chat-bench openloop --clients 1000 --senders 200 --rates 100,200,300,500
//! target/release/chat-bench pairs --users 10000
//! target/release/chat-bench idle --connections 19000
//! target/release/chat-bench persist --rooms 100
//! target/release/chat-bench fanout --against external --url ws://127.0.0.1:8300 --pid N --protocol django
//! # our native socket, our Socket.IO endpoint and the Node Socket.IO peer, in one run
//! target/release/chat-bench fanout --against chat,chat,external --protocol ours,socketio,socketio \
//!     --url ws://127.0.0.1:8400 --pid N --clients 100
//! ```

mod baseline;
mod client;
mod engine;
mod loss;
mod net;
mod openloop;
mod proc;
mod scenario;
mod socketio;
mod stats;
mod target;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::engine::Plan;
use crate::stats::Report;
use crate::target::{Kind, TargetArgs};

#[derive(Debug, Parser)]
#[command(
    name = "chat-bench",
    version,
    about = "End-to-end benchmark of chat-server"
)]
struct Cli {
    /// Also write the reports as JSON to this file.
    #[arg(long, global = true)]
    json: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The bare tokio-tungstenite server every result is compared with.
    BaselineServer {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9100")]
        bind: SocketAddr,
    },
    /// C clients in R rooms, S of them sending: deliveries/s and latency.
    Fanout {
        #[command(flatten)]
        params: scenario::Fanout,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// A room at a fixed offered rate, stepped up: p50/p99/p99.9 per step, highest clean rate.
    Openloop {
        #[command(flatten)]
        params: openloop::OpenLoop,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Users two by two in pair rooms, authenticated: latency and loss at a steady rate.
    Pairs {
        #[command(flatten)]
        params: scenario::Pairs,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Idle connections held open: server memory per connection.
    Idle {
        #[command(flatten)]
        params: scenario::Idle,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Persisted, acknowledged sends as fast as the server takes them.
    Persist {
        #[command(flatten)]
        params: scenario::Persist,
        #[command(flatten)]
        target: TargetArgs,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let limit = net::raise_fd_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Command::BaselineServer { bind } = cli.command {
        return match runtime.block_on(baseline::run(bind)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    eprintln!("open files limit: {limit}");
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    let mut reports = Vec::new();
    let (name, args) = match &cli.command {
        Command::BaselineServer { .. } => return Ok(()),
        Command::Fanout { target, .. } => ("fanout", target),
        Command::Openloop { target, .. } => ("openloop", target),
        Command::Pairs { target, .. } => ("pairs", target),
        Command::Idle { target, .. } => ("idle", target),
        Command::Persist { target, .. } => ("persist", target),
    };
    // An external chat-server given with its secret key also runs chat-server subcommands.
    let bin = if args.against.contains(&Kind::Chat) || args.secret_key.is_some() {
        Some(target::server_bin(args)?)
    } else {
        None
    };
    for (i, kind) in args.against.iter().enumerate() {
        let protocol = args.protocol(i, *kind)?;
        let target = target::start(*kind, protocol, args).await?;
        eprintln!("{name}: running against {}", target.name);
        let mut report = match &cli.command {
            Command::BaselineServer { .. } => return Ok(()),
            Command::Fanout { params, .. } => {
                let plan = Plan {
                    duration: Duration::from_secs(params.duration),
                    body_size: params.body,
                };
                let specs = scenario::fanout_specs(params, &target);
                scenario::measure(name, json(params), &target, specs, plan).await
            }
            Command::Openloop { params, .. } => openloop::run(params, &target).await,
            Command::Persist { params, .. } => {
                let plan = Plan {
                    duration: Duration::from_secs(params.duration),
                    body_size: params.body,
                };
                let specs = scenario::persist_specs(params, &target);
                scenario::measure(name, json(params), &target, specs, plan).await
            }
            Command::Pairs { params, .. } => {
                let plan = Plan {
                    duration: Duration::from_secs(params.duration),
                    body_size: params.body,
                };
                let specs = scenario::pairs_specs(params, &target, bin.as_deref()).await?;
                scenario::measure(name, json(params), &target, specs, plan).await
            }
            Command::Idle { params, .. } => {
                let plan = Plan {
                    duration: Duration::from_secs(params.hold),
                    body_size: 0,
                };
                let specs = scenario::idle_specs(params, &target);
                scenario::measure(name, json(params), &target, specs, plan).await
            }
        };
        report.is_baseline = *kind == Kind::Baseline;
        if let Some(label) = args.label.get(i) {
            report.target.clone_from(label);
        }
        reports.push(report);
        drop(target);
    }
    compare_with_baseline(&mut reports);
    for r in &reports {
        r.print();
    }
    let text = serde_json::to_string_pretty(&reports).map_err(|e| e.to_string())?;
    match &cli.json {
        Some(path) => std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?,
        None => println!("{text}"),
    }
    Ok(())
}

fn json(params: &impl serde::Serialize) -> serde_json::Value {
    serde_json::to_value(params).unwrap_or_default()
}

/// Sets every non-baseline report's ratio to the baseline's figure of merit: acked sends/s
/// for `persist`, memory per connection for `idle`, the highest clean deliveries/s for
/// `openloop`, deliveries/s otherwise.
fn compare_with_baseline(reports: &mut [Report]) {
    let merit = |r: &Report| match r.scenario.as_str() {
        "persist" => r.acks_per_s,
        "idle" => r.server_rss_per_connection_kib,
        _ => match &r.openloop {
            Some(steps) => steps.highest_clean_deliveries_per_s,
            None => r.deliveries_per_s,
        },
    };
    let Some(base) = reports.iter().find(|r| r.is_baseline).map(merit) else {
        return;
    };
    if base <= 0.0 {
        return;
    }
    for r in reports.iter_mut().filter(|r| !r.is_baseline) {
        r.ratio_to_baseline = Some(merit(r) / base);
    }
}
