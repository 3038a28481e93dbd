//! The metrics every crate of the framework records, by name, in one catalogue.
//!
//! The crates record through the [`metrics`] facade and depend on no exporter: until a
//! program installs a recorder every call is a no-op (one atomic load), and whoever embeds
//! the crates picks the exporter (Prometheus, StatsD, OpenTelemetry…) by installing their own.
//! `chat-server` installs `metrics-exporter-prometheus` and serves `GET /metrics`.
//!
//! Labels have a small fixed set of values each: never a room name, a user id or free text.
//!
//! Hot paths (a delivery per member of a room) keep their handle in a `static`, resolved the
//! first time it is used: install the recorder before the first connection (a program's
//! `main` does), or those series stay with the no-op recorder.

use ::metrics::{Counter, Gauge, describe_counter, describe_gauge, describe_histogram};

/// Gauge, label `kind` (`room`, `mux`, `tutorial`, `socketio`, `inbox`, `longpoll`, `custom`): open
/// connections of this node.
pub const CONNECTIONS: &str = "chat_connections";
/// Gauge: room subscriptions held by this node's sockets (a socket in three rooms counts 3).
pub const ROOMS_JOINED: &str = "chat_rooms_joined";
/// Gauge: presence joins minus presence leaves this node announced, that is (user, room)
/// pairs that came online through this node and have not gone. Summed over the nodes: users
/// online per room, added up over the rooms (a user in two rooms counts twice). One node's
/// value alone can drift (a user who joined through one node may leave through another).
pub const USERS_ONLINE: &str = "chat_users_online";
/// Counter, label `type` (`message`, `join`, `leave`, `typing`, `read`, `history`, `ping`,
/// `invalid`: did not parse, `other`: binary, or refused by the frame rate limit before it
/// was read): frames (Socket.IO events, tutorial frames) received from clients.
pub const FRAMES_RECEIVED: &str = "chat_frames_received_total";
/// Counter, label `backend` (`sqlite`, `postgres`): messages committed to the store
/// (repeats of a `client_id` not counted).
pub const MESSAGES_STORED: &str = "chat_messages_stored_total";
/// Counter: chat messages written to clients' sockets (live, or read from the store to fill
/// a gap).
pub const DELIVERIES: &str = "chat_deliveries_total";
/// Counter, label `code` (the protocol's [`ErrorCode`](crate::ErrorCode)s): errors sent to
/// sockets (error frames, Socket.IO error acks and events).
pub const ERRORS_SENT: &str = "chat_errors_sent_total";
/// Counter, label `limit` (`frames`, `messages`: a socket's; `http_posts`, `logins`,
/// `sockets_per_ip`: the server's): requests refused by a rate limit.
pub const RATE_LIMITED: &str = "chat_rate_limited_total";
/// Counter, labels `code` (`1000`, `1001`, `1006`, `1007`, `1008`, `1009`, `1011`, `1013`,
/// `4001`, `none`, `other`) and `by` (`server`, `client`): connections closed.
pub const CLOSES: &str = "chat_closes_total";
/// Counter, label `status` (`400`, `401`, `403`, `404`, `426`, `429`, `500`, `503`,
/// `other`): WebSocket handshakes answered with something else than 101, and Socket.IO
/// connections refused at their namespace, with the status a handshake would have got.
pub const HANDSHAKES_REFUSED: &str = "chat_handshakes_refused_total";
/// Counter, label `reason` (`full`: a member's mailbox was full at a `group_send`;
/// `expired`: a message waited longer than the layer's expiry): layer deliveries dropped.
pub const LAYER_DROPPED: &str = "chat_layer_dropped_total";
/// Counter: "you missed messages" markers handed to consumers (each is followed by a
/// catch-up from the store).
pub const MISSED_MARKERS: &str = "chat_layer_missed_markers_total";
/// Counter, label `reason` (`replay`: a join's `since`; `missed`: after a missed marker;
/// `gap`: a seq that never arrived live): pages read from the store to catch a socket up.
pub const CATCH_UP_READS: &str = "chat_catch_up_reads_total";
/// Counter, label `reason` (`missed`, `gap`, as for [`CATCH_UP_READS`]): catch-ups sent, all
/// or from their start, from the messages this node published lately instead of the store.
pub const CATCH_UP_RECENT: &str = "chat_catch_up_recent_total";
/// Counter: times the Redis layer's Pub/Sub connection came back after it was lost (or after
/// a failed first connection).
pub const REDIS_RECONNECTS: &str = "chat_redis_reconnects_total";
/// Gauge: 1 while the Redis layer's Pub/Sub connection is up, 0 while it is down (the state
/// `/readyz` reports and the layer logs on each change).
pub const REDIS_CONNECTED: &str = "chat_redis_connected";
/// Counter: times the PostgreSQL writer connected again after a failed batch dropped its
/// connection.
pub const POSTGRES_RECONNECTS: &str = "chat_postgres_reconnects_total";
/// Counter, label `result` (`ok`, `failed`, `rate_limited`): password logins.
pub const LOGINS: &str = "chat_logins_total";
/// Counter, label `backend`: store batches that failed and were rolled back.
pub const STORE_COMMIT_ERRORS: &str = "chat_store_commit_errors_total";
/// Histogram: seconds from a message frame reaching the room logic to its ack being queued
/// (the store's commit and the broadcast included).
pub const SEND_ACK_SECONDS: &str = "chat_send_ack_seconds";
/// Histogram, label `backend`: seconds one store batch took to commit (or fail).
pub const STORE_COMMIT_SECONDS: &str = "chat_store_commit_seconds";
/// Histogram, label `backend`: writes (appends and read receipts) in one store batch.
pub const STORE_BATCH_SIZE: &str = "chat_store_batch_size";
/// Histogram: seconds from a message's commit (its `sent_at`, set in the store's
/// transaction) to its live delivery to a socket, sampled one delivery in
/// [`DELIVERY_SAMPLE`] on each thread. Its high quantiles are the last local deliveries of a
/// message; clocks of different nodes add their skew.
pub const COMMIT_TO_DELIVERY_SECONDS: &str = "chat_commit_to_delivery_seconds";
/// One delivery in this many is timed for [`COMMIT_TO_DELIVERY_SECONDS`]: every delivery
/// would cost a histogram sample per member of every room.
pub const DELIVERY_SAMPLE: u32 = 64;
/// Histogram: members of the group a local `group_send` fanned out to (a message arriving
/// from another node through Redis is one local fan-out too).
pub const GROUP_SEND_MEMBERS: &str = "chat_group_send_members";

/// Every series above, for tools and tests that list them.
pub const ALL: &[&str] = &[
    CONNECTIONS,
    ROOMS_JOINED,
    USERS_ONLINE,
    REDIS_CONNECTED,
    FRAMES_RECEIVED,
    MESSAGES_STORED,
    DELIVERIES,
    ERRORS_SENT,
    RATE_LIMITED,
    CLOSES,
    HANDSHAKES_REFUSED,
    LAYER_DROPPED,
    MISSED_MARKERS,
    CATCH_UP_READS,
    CATCH_UP_RECENT,
    REDIS_RECONNECTS,
    POSTGRES_RECONNECTS,
    LOGINS,
    STORE_COMMIT_ERRORS,
    SEND_ACK_SECONDS,
    STORE_COMMIT_SECONDS,
    STORE_BATCH_SIZE,
    COMMIT_TO_DELIVERY_SECONDS,
    GROUP_SEND_MEMBERS,
];

/// Gives every series above its help text, for exporters that show one (Prometheus'
/// `# HELP`). Call it once after installing a recorder.
pub fn describe() {
    describe_gauge!(CONNECTIONS, "Open connections by kind");
    describe_gauge!(
        ROOMS_JOINED,
        "Room subscriptions held by this node's sockets"
    );
    describe_gauge!(
        USERS_ONLINE,
        "Presence joins minus leaves announced by this node; sum over nodes"
    );
    describe_counter!(FRAMES_RECEIVED, "Client frames received, by type");
    describe_counter!(MESSAGES_STORED, "Messages committed to the store");
    describe_counter!(DELIVERIES, "Chat messages written to client sockets");
    describe_counter!(ERRORS_SENT, "Errors sent to sockets, by code");
    describe_counter!(RATE_LIMITED, "Requests refused by a rate limit, by limit");
    describe_counter!(CLOSES, "Connections closed, by close code and side");
    describe_counter!(
        HANDSHAKES_REFUSED,
        "WebSocket handshakes refused, by status"
    );
    describe_counter!(LAYER_DROPPED, "Channel layer deliveries dropped, by reason");
    describe_counter!(
        MISSED_MARKERS,
        "Missed-messages markers delivered to consumers"
    );
    describe_counter!(
        CATCH_UP_READS,
        "Store reads to catch a socket up, by reason"
    );
    describe_counter!(
        CATCH_UP_RECENT,
        "Catch-ups sent (all or in part) from this node's recent messages, by reason"
    );
    describe_counter!(REDIS_RECONNECTS, "Redis Pub/Sub reconnections");
    describe_gauge!(
        REDIS_CONNECTED,
        "1 while Redis Pub/Sub is connected, else 0"
    );
    describe_counter!(POSTGRES_RECONNECTS, "PostgreSQL writer reconnections");
    describe_counter!(LOGINS, "Password logins, by result");
    describe_counter!(STORE_COMMIT_ERRORS, "Store batches rolled back");
    describe_histogram!(
        SEND_ACK_SECONDS,
        ::metrics::Unit::Seconds,
        "Message frame to ack"
    );
    describe_histogram!(
        STORE_COMMIT_SECONDS,
        ::metrics::Unit::Seconds,
        "Store batch commit time"
    );
    describe_histogram!(STORE_BATCH_SIZE, "Writes per store batch");
    describe_histogram!(
        COMMIT_TO_DELIVERY_SECONDS,
        ::metrics::Unit::Seconds,
        "Commit to live delivery, sampled"
    );
    describe_histogram!(
        GROUP_SEND_MEMBERS,
        "Members reached by one local group_send"
    );
}

/// A gauge that counts one while the guard lives: incremented when made, decremented when
/// dropped, so an early return or a panic cannot leave it high.
#[derive(Debug)]
pub struct GaugeGuard(Gauge);

impl GaugeGuard {
    /// Counts one on `gauge` until the guard is dropped.
    pub fn new(gauge: Gauge) -> Self {
        gauge.increment(1.0);
        Self(gauge)
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// The label value of a WebSocket close code (one of a fixed set).
pub fn close_code_label(code: Option<u16>) -> &'static str {
    match code {
        None => "none",
        Some(1000) => "1000",
        Some(1001) => "1001",
        Some(1005) => "1005",
        Some(1006) => "1006",
        Some(1007) => "1007",
        Some(1008) => "1008",
        Some(1009) => "1009",
        Some(1011) => "1011",
        Some(1013) => "1013",
        Some(4001) => "4001",
        Some(_) => "other",
    }
}

/// The label value of an HTTP status (one of a fixed set).
pub fn status_label(status: u16) -> &'static str {
    match status {
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        426 => "426",
        429 => "429",
        500 => "500",
        503 => "503",
        _ => "other",
    }
}

/// A counter without labels, resolved once and kept in `cell` (for hot paths).
pub fn cached_counter(
    cell: &'static std::sync::OnceLock<Counter>,
    name: &'static str,
) -> &'static Counter {
    cell.get_or_init(|| ::metrics::counter!(name))
}

#[cfg(test)]
mod tests {

    /// The operator's documentation names every series, and the dashboard uses no other.
    #[test]
    fn the_docs_and_the_dashboard_know_every_series() {
        let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
        let guide = std::fs::read_to_string(docs.join("observability.md")).unwrap();
        for name in ALL {
            assert!(
                guide.contains(&format!("`{name}`")),
                "{name} is not documented"
            );
        }
        let dashboard = std::fs::read_to_string(docs.join("grafana/chat.json")).unwrap();
        let _: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
        let mut used = 0;
        for word in dashboard.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if !word.starts_with("chat_") {
                continue;
            }
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| word.strip_suffix(s))
                .unwrap_or(word);
            assert!(
                ALL.contains(&base),
                "the dashboard uses an unknown series {word}"
            );
            used += 1;
        }
        assert!(used > 20, "the dashboard queries the series");
    }

    use super::*;

    #[test]
    fn labels_come_from_fixed_sets() {
        assert_eq!(close_code_label(Some(1013)), "1013");
        assert_eq!(close_code_label(Some(3999)), "other");
        assert_eq!(close_code_label(None), "none");
        assert_eq!(status_label(403), "403");
        assert_eq!(status_label(418), "other");
    }

    #[test]
    fn without_a_recorder_everything_is_a_no_op() {
        describe();
        static C: std::sync::OnceLock<Counter> = std::sync::OnceLock::new();
        cached_counter(&C, DELIVERIES).increment(1);
        let guard = GaugeGuard::new(::metrics::gauge!(CONNECTIONS, "kind" => "custom"));
        drop(guard);
        ::metrics::histogram!(SEND_ACK_SECONDS).record(0.1);
    }
}
