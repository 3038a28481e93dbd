//! The scenarios: which connections, in which rooms, sending how — and the report of a run.

use std::time::Duration;

use chat_core::MessageStore as _;
use chat_store::{NewUser, Store, StoreConfig};

use crate::client::Protocol;
use crate::engine::{self, Answer, ConnSpec, Outcome, Plan, Sending};
use crate::stats::Report;
use crate::target::Target;

/// `fanout`: clients spread over rooms, some of them sending.
#[derive(Debug, Clone, clap::Args, serde::Serialize)]
pub struct Fanout {
    /// Connections.
    #[arg(long, default_value_t = 1_000)]
    pub clients: usize,
    /// Rooms (clients are dealt round robin).
    #[arg(long, default_value_t = 1)]
    pub rooms: usize,
    /// How many of the clients send.
    #[arg(long, default_value_t = 10)]
    pub senders: usize,
    /// Total messages per second over all senders; 0: closed loop (at most `--window`
    /// messages per sender on their way to some member of the room), to find the most the
    /// server delivers to everyone.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Messages in flight per sender in closed loop.
    #[arg(long, default_value_t = 4)]
    pub window: usize,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Body size in bytes.
    #[arg(long, default_value_t = 100)]
    pub body: usize,
}

/// `persist`: every client sends as fast as acks come back; what counts is acked sends.
#[derive(Debug, Clone, clap::Args, serde::Serialize)]
pub struct Persist {
    /// Rooms.
    #[arg(long, default_value_t = 100)]
    pub rooms: usize,
    /// Sending connections per room (each also receives its room's messages).
    #[arg(long, default_value_t = 1)]
    pub per_room: usize,
    /// Unacknowledged messages per connection.
    #[arg(long, default_value_t = 32)]
    pub window: usize,
    /// Seconds of sending.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Body size in bytes.
    #[arg(long, default_value_t = 100)]
    pub body: usize,
}

/// `pairs`: users chatting two by two in pair rooms (authenticated on chat-server).
#[derive(Debug, Clone, clap::Args, serde::Serialize)]
pub struct Pairs {
    /// Users (two per room).
    #[arg(long, default_value_t = 10_000)]
    pub users: usize,
    /// Messages per second in each room.
    #[arg(long, default_value_t = 1.0)]
    pub per_room_rate: f64,
    /// Seconds of chatting.
    #[arg(long, default_value_t = 20)]
    pub duration: u64,
    /// Body size in bytes.
    #[arg(long, default_value_t = 100)]
    pub body: usize,
}

/// `idle`: connections that only stay open.
#[derive(Debug, Clone, clap::Args, serde::Serialize)]
pub struct Idle {
    /// Connections.
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
    /// Connections per room.
    #[arg(long, default_value_t = 10)]
    pub per_room: usize,
    /// Seconds to hold them open (longer than the server's 20 s ping shows pings work).
    #[arg(long, default_value_t = 25)]
    pub hold: u64,
}

/// Connection `client` as a guest in the public room `{prefix}{room}` (guests have names on
/// our servers; the Django and Node peers ignore the query). In Socket.IO the path is the
/// endpoint's and the room is joined by name after connecting.
fn public_room(
    target: &Target,
    prefix: &str,
    room: usize,
    client: usize,
    sending: Sending,
) -> ConnSpec {
    let chat_id = format!("{prefix}{room}");
    let path = match target.endpoint.protocol {
        Protocol::SocketIo => crate::socketio::path(&format!("u{client}")),
        Protocol::Ours | Protocol::Django => format!("/ws/chat/{chat_id}/?name=u{client}"),
    };
    ConnSpec {
        path,
        chat_id,
        headers: Vec::new(),
        room,
        sending,
    }
}

/// A short tag for this run, so rooms never collide with an earlier run's in a reused
/// database.
fn run_tag() -> String {
    format!(
        "r{:x}",
        crate::client::now_nanos() ^ u64::from(std::process::id())
    )
}

/// The fan-out connections.
pub fn fanout_specs(p: &Fanout, target: &Target) -> Vec<ConnSpec> {
    let tag = run_tag();
    let senders = p.senders.min(p.clients).max(1);
    (0..p.clients)
        .map(|i| {
            let sending = if i >= senders {
                Sending::No
            } else if p.rate <= 0.0 {
                Sending::ClosedLoop {
                    window: p.window,
                    answer: Answer::Room,
                }
            } else {
                let period = Duration::from_secs_f64(senders as f64 / p.rate);
                Sending::Every {
                    period,
                    phase: period.mul_f64(i as f64 / senders as f64),
                }
            };
            public_room(target, &format!("f{tag}x"), i % p.rooms.max(1), i, sending)
        })
        .collect()
}

/// The persist connections.
pub fn persist_specs(p: &Persist, target: &Target) -> Vec<ConnSpec> {
    let tag = run_tag();
    let n = p.rooms.max(1) * p.per_room.max(1);
    let sending = Sending::ClosedLoop {
        window: p.window,
        answer: Answer::Ack,
    };
    (0..n)
        .map(|i| public_room(target, &format!("p{tag}x"), i % p.rooms.max(1), i, sending))
        .collect()
}

/// The idle connections.
pub fn idle_specs(p: &Idle, target: &Target) -> Vec<ConnSpec> {
    let tag = run_tag();
    let per_room = p.per_room.max(1);
    (0..p.connections)
        .map(|i| public_room(target, &format!("i{tag}x"), i / per_room, i, Sending::No))
        .collect()
}

/// The pair connections. On chat-server the users are real accounts (created in its database,
/// with a password nobody can log in with) using bearer tokens on `/ws/dm/{peer}/`; other
/// servers, and Socket.IO, get one public room per pair.
pub async fn pairs_specs(
    p: &Pairs,
    target: &Target,
    bin: Option<&std::path::Path>,
) -> Result<Vec<ConnSpec>, String> {
    let users = p.users.max(2) / 2 * 2;
    let period = Duration::from_secs_f64(1.0 / p.per_room_rate.max(0.001));
    // One member of each pair sends; phases spread the rooms over the period.
    let sending = |i: usize| {
        if i % 2 == 0 {
            Sending::Every {
                period,
                phase: period.mul_f64((i / 2) as f64 / (users / 2) as f64),
            }
        } else {
            Sending::No
        }
    };
    if !target.is_chat() || target.endpoint.protocol == Protocol::SocketIo {
        let tag = run_tag();
        return Ok((0..users)
            .map(|i| public_room(target, &format!("d{tag}x"), i / 2, i, sending(i)))
            .collect());
    }
    let url = target.database_url.clone().ok_or("no database")?;
    let store = Store::open(StoreConfig::new(url))
        .await
        .map_err(|e| e.to_string())?;
    let tag = run_tag();
    let mut ids = Vec::with_capacity(users);
    let mut names = Vec::with_capacity(users);
    for i in 0..users {
        let username = format!("{tag}u{i}");
        let user = store
            .create_user(NewUser {
                username: username.clone(),
                display_name: format!("User {i}"),
                role: String::new(),
                // Not a password hash: nobody can log in as a benchmark user.
                password_hash: "!benchmark".into(),
            })
            .await
            .map_err(|e| e.to_string())?;
        ids.push(user.id);
        names.push(username);
    }
    store.ping().await.map_err(|e| e.to_string())?;
    drop(store);
    let mut args = vec![
        "token".to_owned(),
        "issue".into(),
        "--ttl".into(),
        "1d".into(),
    ];
    for n in &names {
        args.push("--user".into());
        args.push(n.clone());
    }
    let tokens = target
        .cli(&args, bin.ok_or("no chat-server binary")?)
        .await?;
    let tokens: Vec<&str> = tokens.lines().collect();
    if tokens.len() != users {
        return Err(format!("expected {users} tokens, got {}", tokens.len()));
    }
    Ok((0..users)
        .map(|i| {
            let peer = ids[i ^ 1];
            ConnSpec {
                path: format!("/ws/dm/{peer}/"),
                chat_id: String::new(),
                headers: vec![("authorization", format!("Bearer {}", tokens[i]))],
                room: i / 2,
                sending: sending(i),
            }
        })
        .collect())
}

/// Runs specs on a target and turns the outcome into a report.
pub async fn measure(
    scenario: &str,
    params: serde_json::Value,
    target: &Target,
    specs: Vec<ConnSpec>,
    plan: Plan,
) -> Report {
    let out = engine::run(
        &target.endpoint,
        specs,
        plan,
        &target.pids,
        target.barrier.as_ref(),
    )
    .await;
    report(scenario, params, target, &out)
}

fn report(scenario: &str, params: serde_json::Value, target: &Target, out: &Outcome) -> Report {
    let secs = out.elapsed.as_secs_f64().max(1e-9);
    let server_cpu = out
        .server_after
        .cpu
        .saturating_sub(out.server_before.cpu)
        .as_secs_f64();
    let grown = out
        .server_connected
        .rss
        .saturating_sub(out.server_before.rss) as f64;
    Report {
        scenario: scenario.into(),
        target: target.name.clone(),
        params,
        connections: out.connections,
        connect_failures: out.connect_failures,
        closed_early: out.closed_early,
        elapsed_s: out.elapsed.as_secs_f64(),
        sent: out.sent,
        acked: out.acked,
        errors: out.errors,
        delivered: out.delivered,
        expected: out.expected,
        lost: out.expected.saturating_sub(out.delivered),
        lost_detail: (out.loss.receivers > 0 || out.loss.late > 0).then(|| out.loss.clone()),
        deliveries_per_s: out.delivered as f64 / secs,
        acks_per_s: out.acked.saturating_sub(out.errors) as f64 / secs,
        delivery_latency: out.delivery.summary(),
        ack_latency: out.ack.summary(),
        server_rss_mib: out.server_after.rss as f64 / (1024.0 * 1024.0),
        server_rss_per_connection_kib: if out.connections > 0 {
            grown / 1024.0 / out.connections as f64
        } else {
            0.0
        },
        server_cpu_s: server_cpu,
        server_cpu_ms_per_1k_deliveries: if out.delivered > 0 {
            server_cpu * 1000.0 / (out.delivered as f64 / 1000.0)
        } else {
            0.0
        },
        bench_cpu_s: out
            .bench_after
            .cpu
            .saturating_sub(out.bench_before.cpu)
            .as_secs_f64(),
        ratio_to_baseline: None,
        database: target.database_url.as_deref().map(|url| {
            if url.starts_with("postgres") {
                "postgres".to_owned()
            } else {
                "sqlite".to_owned()
            }
        }),
        ..Report::default()
    }
}
