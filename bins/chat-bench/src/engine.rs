//! The load engine every scenario runs on: open the connections, wait until the server is
//! quiet, send for the duration (at a fixed rate or closed-loop), drain, and count.
//!
//! Each connection is one task that owns its socket and its histograms; counters that the
//! drain watches are shared atomics. Nothing is locked per message.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::client::{self, Endpoint, Frame, Protocol, Ws};
use crate::stats::Latencies;

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
}

/// Counters the drain watches.
struct Shared {
    protocol: Protocol,
    sent_by_room: Vec<AtomicU64>,
    delivered_by_room: Vec<AtomicU64>,
    /// Members and senders of each room, known once every connection is open.
    rooms: std::sync::OnceLock<(Vec<u64>, Vec<u64>)>,
    delivered: AtomicU64,
    acked: AtomicU64,
    other_frames: AtomicU64,
    last_event: AtomicU64,
    stop: CancellationToken,
}

/// What one connection task hands back.
#[derive(Default)]
struct ConnResult {
    sent: u64,
    errors: u64,
    closed_early: bool,
    delivery: Latencies,
    ack: Latencies,
}

/// The send window: `(start, end)`, published once every connection is ready.
type Window = watch::Receiver<Option<(tokio::time::Instant, tokio::time::Instant)>>;

/// Opens one connection and, in our protocol, waits for its `joined` (its group membership is
/// in place, so it will get every message sent from now on).
async fn open(endpoint: &Endpoint, spec: &ConnSpec, n: usize) -> Result<Ws, String> {
    let mut ws = client::connect(endpoint, &spec.path, &spec.headers, n).await?;
    if endpoint.protocol == Protocol::Ours {
        let deadline = tokio::time::sleep(Duration::from_secs(30));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => return Err("no joined frame within 30 s".into()),
                frame = ws.next() => match frame {
                    Some(Ok(Message::Text(t))) if client::classify(Protocol::Ours, &t) == Frame::Joined => break,
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e.to_string()),
                    None => return Err("closed before joined".into()),
                },
            }
        }
    }
    Ok(ws)
}

/// Runs the scenario; `server_pid` is sampled for memory and CPU.
pub async fn run(
    endpoint: &Endpoint,
    specs: Vec<ConnSpec>,
    plan: Plan,
    server_pid: Option<u32>,
) -> Outcome {
    let rooms = specs.iter().map(|s| s.room + 1).max().unwrap_or(0);
    let mut members = vec![0u64; rooms];
    let shared = Arc::new(Shared {
        protocol: endpoint.protocol,
        sent_by_room: (0..rooms).map(|_| AtomicU64::new(0)).collect(),
        delivered_by_room: (0..rooms).map(|_| AtomicU64::new(0)).collect(),
        rooms: std::sync::OnceLock::new(),
        delivered: AtomicU64::new(0),
        acked: AtomicU64::new(0),
        other_frames: AtomicU64::new(0),
        last_event: AtomicU64::new(0),
        stop: CancellationToken::new(),
    });
    let mut out = Outcome {
        server_before: crate::proc::sample(server_pid).unwrap_or_default(),
        ..Outcome::default()
    };
    let (window_tx, window_rx) = watch::channel(None);

    // Open every connection, a bounded number at a time.
    let opened: Vec<(usize, Result<Ws, String>)> =
        futures_util::stream::iter(specs.iter().enumerate())
            .map(|(n, spec)| async move { (n, open(endpoint, spec, n).await) })
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
    let mut senders = vec![0u64; rooms];
    for (n, spec) in specs.iter().enumerate() {
        if !matches!(spec.sending, Sending::No) && opened_ok.contains(&n) {
            senders[spec.room] += 1;
        }
    }
    let _ = shared.rooms.set((members.clone(), senders));
    settle(&shared).await;
    out.server_connected = crate::proc::sample(server_pid).unwrap_or_default();

    out.bench_before = crate::proc::sample(None).unwrap_or_default();
    let cpu_before = crate::proc::sample(server_pid).unwrap_or_default();
    let start = tokio::time::Instant::now();
    let end = start + plan.duration;
    let _ = window_tx.send(Some((start, end)));
    tokio::time::sleep_until(end).await;
    drain(&shared, &members).await;
    out.server_after = crate::proc::sample(server_pid).unwrap_or_default();
    out.server_before.cpu = cpu_before.cpu;
    out.bench_after = crate::proc::sample(None).unwrap_or_default();
    let last = shared.last_event.load(Ordering::Relaxed);
    out.elapsed = Duration::from_nanos(last.saturating_sub(start_nanos(start)));
    shared.stop.cancel();

    for t in tasks {
        if let Ok(r) = t.await {
            out.sent += r.sent;
            out.errors += r.errors;
            out.closed_early += usize::from(r.closed_early);
            out.delivery.merge(&r.delivery);
            out.ack.merge(&r.ack);
        }
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
        if seen.0 >= expected(shared, members)
            && (shared.protocol == Protocol::Django || acks_done(shared))
        {
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

/// One connection: sends per its plan while the window is open, reads everything, records
/// latencies, stops when told.
async fn connection(
    mut ws: Ws,
    me: usize,
    spec: ConnSpec,
    plan: Plan,
    shared: Arc<Shared>,
    mut window: Window,
) -> ConnResult {
    let mut r = ConnResult::default();
    let protocol = shared.protocol;
    let mut unanswered: VecDeque<Instant> = VecDeque::new();
    // Wait for the start while reading (and ignoring) set-up frames. The window is looked at
    // before the socket: senders start as soon as it opens, so a message can arrive while this
    // task has not noticed yet; read first, it would be taken for set-up and counted as lost.
    let (start, end) = loop {
        if let Some(w) = *window.borrow_and_update() {
            break w;
        }
        tokio::select! {
            biased;
            _ = shared.stop.cancelled() => return r,
            changed = window.changed() => if changed.is_err() { return r },
            frame = ws.next() => match frame {
                Some(Ok(_)) => { shared.other_frames.fetch_add(1, Ordering::Relaxed); }
                _ => { r.closed_early = true; return r; }
            },
        }
    };
    let (mut ticker, window_size) = match spec.sending {
        Sending::No => (None, 0),
        Sending::Every { period, phase } => {
            let mut t = tokio::time::interval_at(start + phase, period);
            t.set_missed_tick_behavior(MissedTickBehavior::Delay);
            (Some(t), usize::MAX)
        }
        Sending::ClosedLoop { window, .. } => (None, window.max(1)),
    };
    let closed_loop = matches!(spec.sending, Sending::ClosedLoop { .. });
    let on_room = matches!(
        spec.sending,
        Sending::ClosedLoop {
            answer: Answer::Room,
            ..
        }
    );
    // Django's protocol has no acks: there the own echo answers a send.
    let on_echo = protocol == Protocol::Django && !on_room;
    let mut in_flight = 0usize;
    loop {
        let sending_open = tokio::time::Instant::now() < end;
        let may_send_now = closed_loop
            && sending_open
            && if on_room {
                room_has_room(&shared, spec.room, window_size as u64)
            } else {
                in_flight < window_size
            };
        tokio::select! {
            biased;
            _ = shared.stop.cancelled() => break,
            frame = ws.next() => {
                let text = match frame {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(_)) => continue,
                    _ => { r.closed_early = !shared.stop.is_cancelled(); break; }
                };
                match client::classify(protocol, &text) {
                    Frame::Message => {
                        shared.delivered.fetch_add(1, Ordering::Relaxed);
                        shared.delivered_by_room[spec.room].fetch_add(1, Ordering::Relaxed);
                        shared.last_event.store(client::now_nanos(), Ordering::Relaxed);
                        if let Some((latency, sender)) = client::read_stamp(&text) {
                            if sender != me {
                                r.delivery.record(latency);
                            } else if protocol == Protocol::Django {
                                if on_echo { in_flight = in_flight.saturating_sub(1); }
                                // No acks in Django's protocol: the echo is the answer.
                                if let Some(t) = unanswered.pop_front() { r.ack.record(t.elapsed()); }
                            }
                        }
                    }
                    Frame::Ack | Frame::Error => {
                        if client::classify(protocol, &text) == Frame::Error { r.errors += 1; }
                        shared.acked.fetch_add(1, Ordering::Relaxed);
                        shared.last_event.store(client::now_nanos(), Ordering::Relaxed);
                        if !on_room { in_flight = in_flight.saturating_sub(1); }
                        if let Some(t) = unanswered.pop_front() { r.ack.record(t.elapsed()); }
                    }
                    Frame::Joined | Frame::Other => {}
                }
            }
            _ = tick(&mut ticker), if ticker.is_some() && sending_open => {
                // The tick may come due just as the window closes.
                if tokio::time::Instant::now() >= end { continue; }
                if send(&mut ws, protocol, me, &spec, plan, &shared, r.sent).await.is_err() { r.closed_early = true; break; }
                r.sent += 1;
                unanswered.push_back(Instant::now());
            }
            _ = std::future::ready(()), if may_send_now => {
                if send(&mut ws, protocol, me, &spec, plan, &shared, r.sent).await.is_err() { r.closed_early = true; break; }
                r.sent += 1;
                in_flight += 1;
                unanswered.push_back(Instant::now());
            }
            _ = tokio::time::sleep_until(end), if sending_open => {}
            // Waiting for the rest of the room: its progress is not a frame to this socket,
            // so look again shortly.
            _ = tokio::time::sleep(ROOM_POLL), if on_room && sending_open && !may_send_now => {}
        }
    }
    let _ = ws.close(None).await;
    r
}

/// Whether a sender in `room` may send: fewer than `window` messages per sender of the room
/// are still on their way to some member.
fn room_has_room(shared: &Shared, room: usize, window: u64) -> bool {
    let Some((members, senders)) = shared.rooms.get() else {
        return false;
    };
    let m = members[room].max(1);
    let sent = shared.sent_by_room[room].load(Ordering::Relaxed);
    let delivered = shared.delivered_by_room[room].load(Ordering::Relaxed);
    (sent * m).saturating_sub(delivered) < window * senders[room].max(1) * m
}

/// The next tick, or never without a ticker.
async fn tick(ticker: &mut Option<tokio::time::Interval>) {
    match ticker {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

async fn send(
    ws: &mut Ws,
    protocol: Protocol,
    me: usize,
    spec: &ConnSpec,
    plan: Plan,
    shared: &Shared,
    n: u64,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    let body = client::stamped_body(me, plan.body_size);
    let frame = client::message_frame(protocol, &body, ((me as u64) << 32) | n);
    shared.sent_by_room[spec.room].fetch_add(1, Ordering::Relaxed);
    ws.send(Message::text(frame)).await
}
