//! The load engine every scenario runs on: open the connections, wait until the server is
//! quiet, send for the duration (at a fixed rate or closed-loop), drain, and count.
//!
//! Each connection is one task that owns its socket and its histograms; counters that the
//! drain watches are shared atomics. Nothing is locked per message.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

mod conn;

use crate::client::{self, Endpoint, Ws};
use crate::loss::{LossDetail, Slots};
use crate::stats::Latencies;
use conn::{ConnResult, connection};

/// Connections opened at once while setting up.
const CONNECT_CONCURRENCY: usize = 128;
/// How often a closed-loop sender waiting for its room to catch up looks again.
const ROOM_POLL: Duration = Duration::from_millis(1);
/// How long the drain waits without progress before it counts the rest as lost.
const DRAIN_PATIENCE: Duration = Duration::from_secs(5);

/// How one connection sends.
#[derive(Debug, Clone, Copy)]
pub enum Sending {
    /// Never.
    No,
    /// One message per `period`, the first after `phase`.
    Every {
        /// Time between messages.
        period: Duration,
        /// Offset of the first message, to spread senders.
        phase: Duration,
    },
    /// As fast as the server answers: at most `window` messages unanswered.
    ClosedLoop {
        /// Messages in flight.
        window: usize,
        /// What answers a send.
        answer: Answer,
    },
}

/// What tells a closed-loop sender that a message is through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Its ack (stored): measures persistence. Django's protocol has none and uses the echo.
    Ack,
    /// Delivery of its room's messages to every member: at most `window` messages per sender
    /// not yet received by everyone. The offered load follows what the server delivers to
    /// all, not what the fastest socket sees, so the result is the most the server sustains.
    Room,
}

/// One connection of a scenario.
#[derive(Debug, Clone)]
pub struct ConnSpec {
    /// The WebSocket path.
    pub path: String,
    /// Its room's name, for protocols that name it in each event (Socket.IO's `chat_id`).
    pub chat_id: String,
    /// Extra handshake headers.
    pub headers: Vec<(&'static str, String)>,
    /// Index of its room (for counting expected deliveries).
    pub room: usize,
    /// How it sends.
    pub sending: Sending,
}

/// The load to apply.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// How long senders send.
    pub duration: Duration,
    /// Message body size in bytes.
    pub body_size: usize,
}

/// Processes that start sending together: each leaves a file in `dir` once its connections
/// are set up, and waits until there are `parties` files.
#[derive(Debug, Clone)]
pub struct Barrier {
    /// The meeting place (emptied by whoever runs the processes, before they start).
    pub dir: std::path::PathBuf,
    /// How many processes meet.
    pub parties: usize,
}

impl Barrier {
    /// Arrives, then waits (at most 10 minutes) for the others. Another process's arrival
    /// is a file appearing, which nothing here can wait on but a look every 20 ms.
    async fn meet(&self) -> Result<(), String> {
        let mine = self.dir.join(format!("ready-{}", std::process::id()));
        std::fs::create_dir_all(&self.dir)
            .and_then(|()| std::fs::write(&mine, b""))
            .map_err(|e| format!("{}: {e}", mine.display()))?;
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let arrived = std::fs::read_dir(&self.dir)
                .map_err(|e| format!("{}: {e}", self.dir.display()))?
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("ready-"))
                .count();
            if arrived >= self.parties {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} of {} processes at the barrier after 10 minutes",
                    arrived, self.parties
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// What the run measured (the scenario turns it into a report).
#[derive(Default)]
pub struct Outcome {
    /// Connections open when sending started.
    pub connections: usize,
    /// Connections that could not be opened.
    pub connect_failures: usize,
    /// Connections the server closed before the end.
    pub closed_early: usize,
    /// Messages sent.
    pub sent: u64,
    /// Acks received.
    pub acked: u64,
    /// Error frames received.
    pub errors: u64,
    /// Messages received.
    pub delivered: u64,
    /// Messages that should have been received.
    pub expected: u64,
    /// From the first send to the last delivery or ack.
    pub elapsed: Duration,
    /// Send to receipt by another client.
    pub delivery: Latencies,
    /// Send to ack.
    pub ack: Latencies,
    /// Server and bench readings around the send window.
    pub server_before: crate::proc::Sample,
    /// After connecting, before sending.
    pub server_connected: crate::proc::Sample,
    /// After the drain.
    pub server_after: crate::proc::Sample,
    /// This process, before sending.
    pub bench_before: crate::proc::Sample,
    /// This process, after the drain.
    pub bench_after: crate::proc::Sample,
    /// Where deliveries went missing.
    pub loss: LossDetail,
}

/// Counters the drain watches.
struct Shared {
    endpoint: Endpoint,
    sent_by_room: Vec<AtomicU64>,
    delivered_by_room: Vec<AtomicU64>,
    /// Members and senders of each room, known once every connection is open.
    rooms: std::sync::OnceLock<(Vec<u64>, Vec<u64>)>,
    /// Each sender's slot in its room, for locating losses (set with `rooms`).
    slots: std::sync::OnceLock<Slots>,
    delivered: AtomicU64,
    acked: AtomicU64,
    other_frames: AtomicU64,
    /// Messages read before their receiver saw the send window open.
    early_messages: AtomicU64,
    last_event: AtomicU64,
    stop: CancellationToken,
}

/// Runs the scenario; the `server_pids` (one per node) are sampled for memory and CPU.
pub async fn run(
    endpoint: &Endpoint,
    specs: Vec<ConnSpec>,
    plan: Plan,
    server_pids: &[u32],
    barrier: Option<&Barrier>,
) -> Outcome {
    let rooms = specs.iter().map(|s| s.room + 1).max().unwrap_or(0);
    let mut members = vec![0u64; rooms];
    let shared = Arc::new(Shared {
        endpoint: endpoint.clone(),
        sent_by_room: (0..rooms).map(|_| AtomicU64::new(0)).collect(),
        delivered_by_room: (0..rooms).map(|_| AtomicU64::new(0)).collect(),
        rooms: std::sync::OnceLock::new(),
        slots: std::sync::OnceLock::new(),
        delivered: AtomicU64::new(0),
        acked: AtomicU64::new(0),
        other_frames: AtomicU64::new(0),
        early_messages: AtomicU64::new(0),
        last_event: AtomicU64::new(0),
        stop: CancellationToken::new(),
    });
    let mut out = Outcome {
        server_before: crate::proc::sample_all(server_pids).unwrap_or_default(),
        ..Outcome::default()
    };
    let (window_tx, window_rx) = watch::channel(None);

    // Open every connection, a bounded number at a time.
    let opened: Vec<(usize, Result<Ws, String>)> =
        futures_util::stream::iter(specs.iter().enumerate())
            .map(|(n, spec)| async move {
                let ws = client::open(endpoint, &spec.path, &spec.headers, &spec.chat_id, n);
                (n, ws.await)
            })
            .buffer_unordered(CONNECT_CONCURRENCY)
            .collect()
            .await;
    let mut tasks = Vec::with_capacity(opened.len());
    let mut first_error = None;
    let mut opened_ok = std::collections::HashSet::new();
    for (n, ws) in opened {
        match ws {
            Ok(ws) => {
                opened_ok.insert(n);
                members[specs[n].room] += 1;
                let spec = specs[n].clone();
                tasks.push(tokio::spawn(connection(
                    ws,
                    n,
                    spec,
                    plan,
                    shared.clone(),
                    window_rx.clone(),
                )));
            }
            Err(e) => {
                out.connect_failures += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        eprintln!(
            "{} connections failed; the first: {e}",
            out.connect_failures
        );
    }
    out.connections = tasks.len();
    let slots = Slots::new(specs.len(), rooms, |n| {
        let sends = !matches!(specs[n].sending, Sending::No) && opened_ok.contains(&n);
        sends.then_some(specs[n].room)
    });
    let senders = slots.senders_of.iter().map(|s| s.len() as u64).collect();
    let _ = shared.rooms.set((members.clone(), senders));
    let _ = shared.slots.set(slots);
    settle(&shared).await;
    if let Some(barrier) = barrier {
        if let Err(e) = barrier.meet().await {
            eprintln!("barrier: {e}; sending anyway");
        }
    }
    out.server_connected = crate::proc::sample_all(server_pids).unwrap_or_default();

    out.bench_before = crate::proc::sample(None).unwrap_or_default();
    let cpu_before = crate::proc::sample_all(server_pids).unwrap_or_default();
    let start = tokio::time::Instant::now();
    let end = start + plan.duration;
    let _ = window_tx.send(Some((start, end)));
    tokio::time::sleep_until(end).await;
    drain(&shared, &members).await;
    out.server_after = crate::proc::sample_all(server_pids).unwrap_or_default();
    out.server_before.cpu = cpu_before.cpu;
    out.bench_after = crate::proc::sample(None).unwrap_or_default();
    let last = shared.last_event.load(Ordering::Relaxed);
    out.elapsed = Duration::from_nanos(last.saturating_sub(start_nanos(start)));
    shared.stop.cancel();

    let results: Vec<ConnResult> = futures_util::future::join_all(tasks)
        .await
        .into_iter()
        .flatten()
        .collect();
    let mut sent = vec![0u64; specs.len()];
    for r in &results {
        sent[r.me] = r.sent;
    }
    for r in results {
        if let Some(slots) = shared.slots.get() {
            out.loss.add(r.me, &r.seen, slots, r.room, &sent);
        }
        out.sent += r.sent;
        out.errors += r.errors;
        out.closed_early += usize::from(r.closed_early);
        out.delivery.merge(&r.delivery);
        out.ack.merge(&r.ack);
    }
    let early = shared.early_messages.load(Ordering::Relaxed);
    if early > 0 {
        eprintln!("{early} messages were read before their receiver saw the window open (counted)");
    }
    out.expected = expected(&shared, &members);
    out.delivered = shared.delivered.load(Ordering::Relaxed);
    out.acked = shared.acked.load(Ordering::Relaxed);
    out
}

/// The send window's start in the clock of the message stamps.
fn start_nanos(start: tokio::time::Instant) -> u64 {
    let ago = tokio::time::Instant::now().saturating_duration_since(start);
    client::now_nanos().saturating_sub(u64::try_from(ago.as_nanos()).unwrap_or(0))
}

/// Waits until the set-up traffic (presence of everyone joining) has died down.
async fn settle(shared: &Shared) {
    let mut last = shared.other_frames.load(Ordering::Relaxed);
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = shared.other_frames.load(Ordering::Relaxed);
        if now == last {
            return;
        }
        last = now;
    }
}

/// Messages that should be received: every message sent, once per member of its room.
fn expected(shared: &Shared, members: &[u64]) -> u64 {
    shared
        .sent_by_room
        .iter()
        .zip(members)
        .map(|(sent, m)| sent.load(Ordering::Relaxed) * m)
        .sum()
}

/// Waits until every expected message arrived, or until nothing has arrived for
/// [`DRAIN_PATIENCE`].
async fn drain(shared: &Shared, members: &[u64]) {
    let mut last_progress = Instant::now();
    let mut last_seen = (0, 0);
    loop {
        let seen = (
            shared.delivered.load(Ordering::Relaxed),
            shared.acked.load(Ordering::Relaxed),
        );
        let acks_in = !shared.endpoint.has_acks() || acks_done(shared);
        if seen.0 >= expected(shared, members) && acks_in {
            return;
        }
        if seen != last_seen {
            last_seen = seen;
            last_progress = Instant::now();
        } else if last_progress.elapsed() > DRAIN_PATIENCE {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn acks_done(shared: &Shared) -> bool {
    let sent: u64 = shared
        .sent_by_room
        .iter()
        .map(|s| s.load(Ordering::Relaxed))
        .sum();
    shared.acked.load(Ordering::Relaxed) >= sent
}
