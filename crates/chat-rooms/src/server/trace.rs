//! Spans that tie log lines together, so one request's or one client's story can be
//! selected from the logs: a span per HTTP request with its request id, and a span per
//! connection (room socket, `/ws`, Socket.IO, long-poll, tutorial) with a connection id, its
//! kind, its room when known at connect, and its user id or guest id. Never a name, a
//! message body or a credential.

use std::sync::atomic::{AtomicU64, Ordering};

use chat_core::Sender;
use http::{HeaderMap, HeaderName};

/// The header that carries a request's id, in and out.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest request id taken from a client (or a proxy in front of the server).
const MAX_REQUEST_ID: usize = 64;

/// The id of a request: the incoming `X-Request-Id` when it is sane (1 to 64 visible ASCII
/// characters, as a proxy or a client may have set it to follow a request across services),
/// else a new random one.
pub fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(&REQUEST_ID)
        .map(http::HeaderValue::as_bytes)
        .filter(|b| is_sane(b))
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_else(|| format!("{:016x}", rand::random::<u64>()))
}

fn is_sane(id: &[u8]) -> bool {
    !id.is_empty() && id.len() <= MAX_REQUEST_ID && id.iter().all(|b| b.is_ascii_graphic())
}

/// The span of one HTTP request. The path has no query string (it may carry credentials).
pub fn request_span(id: &str, method: &http::Method, path: &str) -> tracing::Span {
    tracing::info_span!("request", request_id = %id, %method, path)
}

/// What kind of connection a span is for.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// A socket bound to one room (`/ws/chat/{room}/`, `/ws/dm/{user_id}/`).
    Room,
    /// The multiplexed socket (`/ws`): rooms are joined later, with frames.
    Ws,
    /// A Socket.IO socket.
    SocketIo,
    /// A held long-poll (`/api/rooms/{room}/poll`).
    LongPoll,
    /// A socket speaking the Channels tutorials' frames (`--compat tutorials`).
    Tutorial,
    /// A logged-in user's inbox socket (`/ws/inbox/`): unread and online changes.
    Inbox,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Room => "room",
            Self::Ws => "ws",
            Self::SocketIo => "socketio",
            Self::LongPoll => "long-poll",
            Self::Tutorial => "tutorial",
            Self::Inbox => "inbox",
        }
    }
}

static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

/// The span of one connection: `conn{id kind room user|guest}`. The connection's task runs
/// in it (chat-ws spawns connection tasks in the span current at the upgrade); `who` is
/// `None` when the caller is not known yet (a long-poll records its user once
/// authenticated, see [`record_user`]).
pub fn connection_span(kind: Kind, room: Option<&str>, who: Option<&Sender>) -> tracing::Span {
    let id = NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed);
    let span = tracing::info_span!(
        "conn",
        id,
        kind = kind.as_str(),
        room = tracing::field::Empty,
        user = tracing::field::Empty,
        guest = tracing::field::Empty,
    );
    if let Some(room) = room {
        span.record("room", room);
    }
    if let Some(who) = who {
        record_sender(&span, who);
    }
    span
}

/// Records who a connection is, on its span.
pub fn record_sender(span: &tracing::Span, who: &Sender) {
    if let Some(id) = who.id {
        span.record("user", id);
    } else if let Some(guest) = &who.guest {
        span.record("guest", tracing::field::display(guest));
    }
}

/// Records a user id on the current span, if it has a `user` field (a connection span).
pub fn record_user(id: chat_core::UserId) {
    tracing::Span::current().record("user", id);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID, http::HeaderValue::from_static(value));
        h
    }

    #[test]
    fn a_sane_incoming_request_id_is_kept() {
        assert_eq!(request_id(&with("abc-123")), "abc-123");
        let long = "a".repeat(MAX_REQUEST_ID);
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID, long.parse().unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(request_id(&h), long);
    }

    #[test]
    fn other_request_ids_are_replaced() {
        let generated = |h: &HeaderMap| {
            let id = request_id(h);
            assert_eq!(id.len(), 16, "{id}");
            assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
            id
        };
        generated(&HeaderMap::new());
        generated(&with(""));
        generated(&with("has space"));
        let mut h = HeaderMap::new();
        let long = "a".repeat(MAX_REQUEST_ID + 1);
        h.insert(REQUEST_ID, long.parse().unwrap_or_else(|e| panic!("{e}")));
        generated(&h);
        let mut h = HeaderMap::new();
        h.insert(
            REQUEST_ID,
            http::HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap_or_else(|e| panic!("{e}")),
        );
        generated(&h);
        assert_ne!(request_id(&HeaderMap::new()), request_id(&HeaderMap::new()));
    }
}
