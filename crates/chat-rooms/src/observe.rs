//! What the chat sockets record through the `metrics` facade (the names and their meaning are in
//! [`chat_core::metrics`]). Per-delivery series keep their handles in `static`s: no lookup,
//! no label formatting per message.

use std::sync::OnceLock;
use std::time::Duration;

use chat_core::metrics::{self as m, GaugeGuard, cached_counter};
use chat_core::{ClientFrame, ErrorCode, FrameError};
use metrics::{Counter, Gauge, Histogram};

/// The `type` label values of [`m::FRAMES_RECEIVED`].
const FRAME_TYPES: [&str; 9] = [
    "message", "join", "leave", "typing", "read", "history", "ping", "invalid", "other",
];

/// Counts a client frame by type (one of [`FRAME_TYPES`]).
fn frame_received(kind: &'static str) {
    static COUNTERS: OnceLock<Vec<Counter>> = OnceLock::new();
    let counters = COUNTERS.get_or_init(|| {
        FRAME_TYPES
            .iter()
            .map(|t| metrics::counter!(m::FRAMES_RECEIVED, "type" => *t))
            .collect()
    });
    if let Some(c) = FRAME_TYPES
        .iter()
        .position(|t| *t == kind)
        .and_then(|i| counters.get(i))
    {
        c.increment(1);
    }
}

/// Counts a parsed frame, or one that did not parse (`invalid`).
pub(crate) fn frame(parsed: &Result<ClientFrame, FrameError>) {
    frame_received(match parsed {
        Ok(f) => f.type_name(),
        Err(_) => "invalid",
    });
}

/// Counts a frame of a known type (a tutorial frame is a message).
pub(crate) fn frame_of(kind: &'static str) {
    frame_received(kind);
}

/// Counts a frame that was not read: binary, or refused by the frame rate limit first.
pub(crate) fn frame_unread() {
    frame_received("other");
}

/// Counts an error sent to a socket.
pub(crate) fn error_sent(code: ErrorCode) {
    metrics::counter!(m::ERRORS_SENT, "code" => code.as_str()).increment(1);
}

/// Counts a frame or a message refused by a socket's rate limit (`frames` or `messages`).
pub(crate) fn rate_limited(limit: &'static str) {
    metrics::counter!(m::RATE_LIMITED, "limit" => limit).increment(1);
}

/// Counts a chat message written to a client.
pub(crate) fn delivered() {
    static C: OnceLock<Counter> = OnceLock::new();
    cached_counter(&C, m::DELIVERIES).increment(1);
}

/// Times one live delivery in [`m::DELIVERY_SAMPLE`] from the message's commit (its
/// `sent_at`): the payload is parsed only for those.
pub(crate) fn delivery_delay(msg: &chat_core::LayerMessage) {
    use std::cell::Cell;
    thread_local! {
        static COUNT: Cell<u32> = const { Cell::new(0) };
    }
    let sampled = COUNT.with(|c| {
        let n = c.get().wrapping_add(1);
        c.set(n);
        n % m::DELIVERY_SAMPLE == 0
    });
    if !sampled {
        return;
    }
    #[derive(serde::Deserialize)]
    struct SentAt {
        sent_at: chat_core::Timestamp,
    }
    let Ok(SentAt { sent_at }) = serde_json::from_slice::<SentAt>(msg.payload()) else {
        return;
    };
    let ms = chat_core::Timestamp::now().unix_millis() - sent_at.unix_millis();
    static H: OnceLock<Histogram> = OnceLock::new();
    H.get_or_init(|| metrics::histogram!(m::COMMIT_TO_DELIVERY_SECONDS))
        .record(ms.max(0) as f64 / 1000.0);
}

/// Counts a page read from the store to catch a socket up (`replay`, `missed`, `gap`).
pub(crate) fn catch_up_read(reason: &'static str) {
    metrics::counter!(m::CATCH_UP_READS, "reason" => reason).increment(1);
}

/// Counts a catch-up sent from the node's recent messages (see [`crate::RecentMessages`]).
pub(crate) fn catch_up_recent(reason: &'static str) {
    metrics::counter!(m::CATCH_UP_RECENT, "reason" => reason).increment(1);
}

/// Records a message frame's time to its ack.
pub(crate) fn send_ack(took: Duration) {
    static H: OnceLock<Histogram> = OnceLock::new();
    H.get_or_init(|| metrics::histogram!(m::SEND_ACK_SECONDS))
        .record(took.as_secs_f64());
}

/// One room subscription held while the guard lives.
pub(crate) fn room_joined() -> GaugeGuard {
    static G: OnceLock<Gauge> = OnceLock::new();
    GaugeGuard::new(G.get_or_init(|| metrics::gauge!(m::ROOMS_JOINED)).clone())
}

/// A presence join (`+1.0`) or leave (`-1.0`) this node announced.
pub(crate) fn users_online(delta: f64) {
    static G: OnceLock<Gauge> = OnceLock::new();
    G.get_or_init(|| metrics::gauge!(m::USERS_ONLINE))
        .increment(delta);
}

/// Counts a WebSocket handshake answered with something else than 101.
#[cfg(feature = "server")]
pub(crate) fn handshake_refused(status: http::StatusCode) {
    metrics::counter!(m::HANDSHAKES_REFUSED, "status" => m::status_label(status.as_u16()))
        .increment(1);
}

/// Counts a password login by result (`ok`, `failed`, `rate_limited`).
#[cfg(feature = "server")]
pub(crate) fn login(result: &'static str) {
    metrics::counter!(m::LOGINS, "result" => result).increment(1);
}

/// One held long-poll while the guard lives.
#[cfg(feature = "server")]
pub(crate) fn long_poll() -> GaugeGuard {
    GaugeGuard::new(metrics::gauge!(m::CONNECTIONS, "kind" => "longpoll"))
}
