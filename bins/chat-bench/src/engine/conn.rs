//! One connection's task: waits for the send window, then sends per its plan while it is
//! open and reads everything (deliveries, acks, pings) until the run stops.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tokio_tungstenite::tungstenite::Message;

use super::{Answer, ConnSpec, Plan, ROOM_POLL, Sending, Shared};
use crate::client::{self, Frame, Ws};
use crate::loss::Seen;
use crate::socketio;
use crate::stats::Latencies;

/// What one connection task hands back.
#[derive(Default)]
pub(super) struct ConnResult {
    /// The connection's index.
    pub me: usize,
    /// Its room.
    pub room: usize,
    /// What it received from each sender of its room.
    pub seen: Seen,
    /// Messages it sent.
    pub sent: u64,
    /// Error frames it received.
    pub errors: u64,
    /// Whether the server closed it before the end.
    pub closed_early: bool,
    /// Send to receipt, of other connections' messages.
    pub delivery: Latencies,
    /// Send to ack (or own echo).
    pub ack: Latencies,
}

/// The send window: `(start, end)`, published once every connection is ready.
pub(super) type Window = watch::Receiver<Option<(tokio::time::Instant, tokio::time::Instant)>>;

/// One connection: sends per its plan while the window is open, reads everything, records
/// latencies, stops when told.
pub(super) async fn connection(
    mut ws: Ws,
    me: usize,
    spec: ConnSpec,
    plan: Plan,
    shared: Arc<Shared>,
    mut window: Window,
) -> ConnResult {
    let mut r = ConnResult {
        me,
        room: spec.room,
        ..ConnResult::default()
    };
    let endpoint = &shared.endpoint;
    let has_acks = endpoint.has_acks();
    let mut unanswered: VecDeque<Instant> = VecDeque::new();
    // Wait for the start while reading (and ignoring) set-up frames. The window is looked at
    // before the socket: senders start as soon as it opens, so a message can arrive while this
    // task has not noticed yet; read first, it would be taken for set-up and counted as lost.
    // A message is never set-up (senders wait for the window), so one read here all the same
    // is kept for the loop below.
    let mut early: VecDeque<Message> = VecDeque::new();
    let (start, end) = loop {
        if let Some(w) = *window.borrow_and_update() {
            break w;
        }
        tokio::select! {
            biased;
            _ = shared.stop.cancelled() => return r,
            changed = window.changed() => if changed.is_err() { return r },
            frame = ws.next() => match frame {
                // WebSocket pings are no set-up traffic: counting them, a set-up longer than
                // the server's ping interval (50,000 sockets over three nodes) never settles.
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(m)) => match m.to_text().map(|t| client::classify(endpoint, t)) {
                    Ok(Frame::Ping) if ws.send(Message::text(socketio::PONG)).await.is_ok() => {}
                    Ok(Frame::Ping | Frame::Closed) => { r.closed_early = true; return r; }
                    Ok(Frame::Message) => {
                        shared.early_messages.fetch_add(1, Ordering::Relaxed);
                        early.push_back(m);
                    }
                    _ => { shared.other_frames.fetch_add(1, Ordering::Relaxed); }
                },
                _ => { r.closed_early = true; return r; }
            },
        }
    };
    let (mut ticker, window_size) = match spec.sending {
        Sending::No => (None, 0),
        Sending::Every { period, phase } => {
            let mut t = tokio::time::interval_at(start + phase, period);
            // A sender whose task ran late (the load tool shares two cores with the server)
            // sends what it owes at once: the offered rate is the schedule's, and a late
            // send is still measured from when it left. `Delay` dropped the owed ticks, so
            // the senders fell behind at rates the server kept up with.
            t.set_missed_tick_behavior(MissedTickBehavior::Burst);
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
    // Without acks (Django's protocol, the Node Socket.IO peer) the own echo answers a send.
    let on_echo = !has_acks && !on_room;
    let mut in_flight = 0usize;
    // Made once, not per turn: the load tool shares the machine with the server, and a new
    // `cancelled()` and `sleep_until` per frame (a registration with the run's one token
    // and with the timer each) cost more than reading the frame.
    let stop_token = shared.stop.child_token();
    let stop = stop_token.cancelled();
    tokio::pin!(stop);
    let window_end = tokio::time::sleep_until(end);
    tokio::pin!(window_end);
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
            () = &mut stop => break,
            // Open loop keeps its schedule before it reads: a sender is also a member, and with
            // the read first, a socket that always had a frame ready starved the ticks, so the
            // senders fell behind on the load tool's account, not the server's. A tick comes
            // at most once a period, so reads are never starved in turn.
            _ = tick(&mut ticker), if ticker.is_some() && sending_open => {
                // The tick may come due just as the window closes.
                if tokio::time::Instant::now() >= end { continue; }
                if send(&mut ws, me, &spec, plan, &shared, r.sent).await.is_err() { r.closed_early = true; break; }
                r.sent += 1;
                unanswered.push_back(Instant::now());
            }
            frame = next_frame(&mut early, &mut ws) => {
                let text = match frame {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(_)) => continue,
                    _ => { r.closed_early = !shared.stop.is_cancelled(); break; }
                };
                match client::classify(endpoint, &text) {
                    Frame::Message => {
                        shared.delivered.fetch_add(1, Ordering::Relaxed);
                        shared.delivered_by_room[spec.room].fetch_add(1, Ordering::Relaxed);
                        let now = client::now_nanos();
                        shared.last_event.store(now, Ordering::Relaxed);
                        if let Some(stamp) = client::read_stamp(&text, now) {
                            if let Some(slots) = shared.slots.get() { slots.record(&mut r.seen, spec.room, stamp.sender, stamp.n); }
                            if stamp.sender != me {
                                r.delivery.record(stamp.latency);
                            } else if !has_acks {
                                if on_echo { in_flight = in_flight.saturating_sub(1); }
                                // No acks: the echo is the answer.
                                if let Some(t) = unanswered.pop_front() { r.ack.record(t.elapsed()); }
                            }
                        }
                    }
                    kind @ (Frame::Ack | Frame::Error) => {
                        if kind == Frame::Error { r.errors += 1; }
                        shared.acked.fetch_add(1, Ordering::Relaxed);
                        shared.last_event.store(client::now_nanos(), Ordering::Relaxed);
                        if !on_room { in_flight = in_flight.saturating_sub(1); }
                        if let Some(t) = unanswered.pop_front() { r.ack.record(t.elapsed()); }
                    }
                    Frame::Ping => if ws.send(Message::text(socketio::PONG)).await.is_err() {
                        r.closed_early = !shared.stop.is_cancelled();
                        break;
                    },
                    Frame::Closed => { r.closed_early = !shared.stop.is_cancelled(); break; }
                    Frame::Joined | Frame::Other => {}
                }
            }
            _ = std::future::ready(()), if may_send_now => {
                if send(&mut ws, me, &spec, plan, &shared, r.sent).await.is_err() { r.closed_early = true; break; }
                r.sent += 1;
                in_flight += 1;
                unanswered.push_back(Instant::now());
            }
            () = &mut window_end, if sending_open => {}
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

/// The next frame: those kept from before the window first, then the socket's.
async fn next_frame(
    early: &mut VecDeque<Message>,
    ws: &mut Ws,
) -> Option<Result<Message, tokio_tungstenite::tungstenite::Error>> {
    match early.pop_front() {
        Some(m) => Some(Ok(m)),
        None => ws.next().await,
    }
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

/// Sends this connection's message number `n`.
async fn send(
    ws: &mut Ws,
    me: usize,
    spec: &ConnSpec,
    plan: Plan,
    shared: &Shared,
    n: u64,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    let body = client::stamped_body(me, n, plan.body_size);
    let client_id = ((me as u64) << 32) | n;
    let frame = client::message_frame(&shared.endpoint, &spec.chat_id, &body, client_id, n);
    shared.sent_by_room[spec.room].fetch_add(1, Ordering::Relaxed);
    ws.send(Message::text(frame)).await
}
