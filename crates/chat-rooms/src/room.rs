//! One room as a socket sees it, shared by the room-bound [`ChatConsumer`](crate::ChatConsumer)
//! and the multiplexed [`MuxConsumer`](crate::MuxConsumer): sending (store, then broadcast, then
//! ack), typing, read receipts, history, presence and in-order delivery.
//!
//! Delivery guarantee: the client sees every message of the room exactly once and in seq
//! order from the point it asked for (`since`, or "now"). Live messages can arrive out of
//! order (two senders publish concurrently) or not at all (a full mailbox, a Redis outage). A
//! message that arrives ahead of a missing seq is held for up to [`REORDER_WAIT`]: usually the
//! missing one overtaken by it arrives meanwhile and both go out in order. Only when it does not
//! is the gap read from the store. A loss with nothing after it (the tail of a burst dropped by
//! a full mailbox, or whatever Redis published while this node reconnected) shows no gap: the
//! layer's [`LayerMessage::MISSED`](chat_core::LayerMessage::MISSED) marker says so instead, and
//! everything after the delivered seq is read from the store. Both reads first take what
//! the node's [`RecentMessages`](crate::RecentMessages) holds. Anything at or below the last
//! delivered seq is skipped.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chat_core::{
    ErrorCode, FrameError, GroupName, HistoryPage, HistoryQuery, LayerMessage, Limits,
    MessageStore, OnlineUsers, PresenceEvent, RoomName, Sender, Seq, ServerFrame, SharedPresence,
};
use tokio::time::Instant;

use crate::attachment::AttachmentLookup;
use crate::dialect::Render;
use crate::observe;
use crate::recent::RecentMessages;
use chat_ws::ConsumerError;
use chat_ws::Context;

mod delivery;
mod meta;
mod reads;
mod send;

pub(crate) use meta::Meta;
pub use send::Outgoing;

/// Layer message type of a stored chat message (payload: the `message` frame).
pub const CHAT_MESSAGE: &str = "chat.message";
/// Layer message type of a typing indicator (payload: the `typing` frame).
pub const CHAT_TYPING: &str = "chat.typing";
/// Layer message type of a read receipt (payload: the `read` frame).
pub const CHAT_READ: &str = "chat.read";
/// Layer message type of a presence change (payload: the `presence` frame).
pub const CHAT_PRESENCE: &str = "chat.presence";

/// A typing indicator ends by itself this long after its last refresh.
pub const TYPING_EXPIRY: Duration = Duration::from_secs(5);
/// While a user keeps typing, the room hears it again at most this often.
const TYPING_REPEAT: Duration = Duration::from_secs(3);

/// How long a live message that arrived ahead of a missing seq waits for it before the gap is
/// read from the store. A room's seqs are assigned in order but broadcast by each sender's own
/// task, so a later seq often overtakes an earlier one by a little; reading the store at every
/// overtake would cost every recipient a query (it was the largest cost of a busy room). Under
/// load an overtaken message can be late by tens of milliseconds (its sender's task waits
/// behind the room's recipients); a wait shorter than that turns load into store reads, which
/// add load. The wait only delays anything when a message was really lost.
pub const REORDER_WAIT: Duration = Duration::from_millis(250);
/// Messages held ahead of a gap, at most; beyond that the gap is read from the store at once.
const MAX_AHEAD: usize = 256;

/// What every room of a connection shares: who is connected and the services.
#[derive(Clone)]
pub(crate) struct Shared {
    pub user: Sender,
    pub store: Arc<dyn MessageStore>,
    pub presence: Option<SharedPresence>,
    /// Where the files messages may carry are found; `None`: messages carry none.
    pub attachments: Option<Arc<dyn AttachmentLookup>>,
    pub limits: Limits,
    /// What the socket's client reads.
    pub render: Render,
    /// The messages this process published lately, for catch-ups (`None`: always the store).
    pub recent: Option<Arc<RecentMessages>>,
}

/// A socket's state in one room.
pub(crate) struct RoomSession {
    pub room: RoomName,
    group: GroupName,
    /// The highest seq delivered, with every lower one delivered too.
    delivered: Option<Seq>,
    /// While typing: when the indicator expires, and when the room last heard about it.
    typing: Option<(Instant, Instant)>,
    /// Live messages that arrived ahead of a missing seq, by seq.
    ahead: BTreeMap<Seq, LayerMessage>,
    /// Since when the oldest gap has been waited for.
    ahead_since: Option<Instant>,
    presence_conn: Option<String>,
    /// Counts this subscription in the rooms-joined gauge while the socket is in the room.
    joined: Option<chat_core::metrics::GaugeGuard>,
}

impl RoomSession {
    pub fn new(room: RoomName) -> Self {
        Self {
            group: room.group(),
            room,
            delivered: None,
            typing: None,
            ahead: BTreeMap::new(),
            ahead_since: None,
            presence_conn: None,
            joined: None,
        }
    }

    /// Joins the room's group, then fixes where delivery starts. Joining before reading the
    /// store means whatever commits after the read arrives live and whatever committed before
    /// is in the read: no gap.
    pub async fn subscribe(
        &mut self,
        cx: &mut Context,
        s: &Shared,
        since: Option<Seq>,
    ) -> Result<(), ConsumerError> {
        cx.group_add(&self.group).await?;
        self.joined.get_or_insert_with(observe::room_joined);
        self.delivered = match since {
            Some(since) => Some(since),
            None => match s.store.last_seq(&self.room).await {
                Ok(seq) => Some(seq),
                Err(e) => {
                    tracing::warn!(room = %self.room, error = %e, "last_seq failed at join");
                    None
                }
            },
        };
        Ok(())
    }

    /// Announces the user (once per user, and only while the room has at most
    /// `presence_limit` users online) and returns who is online in the room, up to that limit
    /// (nobody when presence is not tracked).
    pub async fn announce(&mut self, cx: &mut Context, s: &Shared) -> OnlineUsers {
        let Some(presence) = s.presence.clone() else {
            return OnlineUsers::default();
        };
        let conn = cx.channel_name().to_string();
        let first = match presence.join(&self.room, &s.user, &conn).await {
            Ok(first) => {
                self.presence_conn = Some(conn);
                first
            }
            Err(e) => {
                tracing::warn!(room = %self.room, error = %e, "presence join failed");
                false
            }
        };
        let limit = s.limits.presence_limit;
        let online = presence
            .online_upto(&self.room, limit)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(room = %self.room, error = %e, "presence online failed");
                OnlineUsers {
                    users: vec![s.user.clone()],
                    total: 1,
                }
            });
        if first {
            observe::users_online(1.0);
            if online.total <= limit {
                let frame = ServerFrame::Presence {
                    room: self.room.clone(),
                    user: s.user.clone(),
                    event: PresenceEvent::Join,
                };
                self.broadcast(cx, CHAT_PRESENCE, &frame).await;
            }
        }
        online
    }

    /// The room's latest seq, for `joined` (the delivered one when the store does not answer).
    pub async fn last_seq(&self, s: &Shared) -> Seq {
        match s.store.last_seq(&self.room).await {
            Ok(seq) => seq,
            Err(_) => self.delivered.unwrap_or(0),
        }
    }

    /// Replays what was stored after `since`, pacing itself to the client; an error tells the
    /// client when the store could not be read.
    pub async fn replay(&mut self, cx: &mut Context, s: &Shared) {
        if !self.fill_gap(cx, s, None, true, "replay").await {
            let e = FrameError::new(
                ErrorCode::StoreUnavailable,
                "could not replay the messages after since; they will be sent when the store is back",
            )
            .in_room(Some(self.room.clone()));
            observe::error_sent(e.code);
            cx.send_text(s.render.error(&e));
        }
    }

    /// The socket leaves the room: typing ends, presence may announce a leave.
    pub async fn close(&mut self, cx: &mut Context, s: &Shared) {
        self.stop_typing(cx, s).await;
        if let (Some(presence), Some(conn)) = (s.presence.clone(), self.presence_conn.take()) {
            match presence.leave(&self.room, &s.user, &conn).await {
                Ok(true) => {
                    observe::users_online(-1.0);
                    // Counted after the leave: a crowd's leaves are as silent as its joins.
                    let crowded = presence
                        .count(&self.room)
                        .await
                        .is_ok_and(|n| n >= s.limits.presence_limit);
                    if crowded {
                        return;
                    }
                    let frame = ServerFrame::Presence {
                        room: self.room.clone(),
                        user: s.user.clone(),
                        event: PresenceEvent::Leave,
                    };
                    self.broadcast(cx, CHAT_PRESENCE, &frame).await;
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(room = %self.room, error = %e, "presence leave failed"),
            }
        }
    }

    /// Leaves the room's group (multiplexed sockets leaving one room).
    pub async fn unsubscribe(&mut self, cx: &mut Context) -> Result<(), ConsumerError> {
        self.joined = None;
        cx.group_discard(&self.group).await
    }

    /// Starts, refreshes or stops the typing indicator. The room hears a start, a refresh at
    /// most every 3 s, and a stop (sent, left, said so, or 5 s without a refresh).
    pub async fn typing(&mut self, cx: &mut Context, s: &Shared, active: bool) {
        if !active {
            self.stop_typing(cx, s).await;
            return;
        }
        let now = Instant::now();
        let announce = match self.typing {
            Some((_, told)) => now.duration_since(told) >= TYPING_REPEAT,
            None => true,
        };
        let told = match self.typing {
            Some((_, told)) if !announce => told,
            _ => now,
        };
        self.typing = Some((now + TYPING_EXPIRY, told));
        if announce {
            self.broadcast_typing(cx, s, true).await;
        }
    }

    async fn broadcast_typing(&self, cx: &mut Context, s: &Shared, active: bool) {
        let frame = ServerFrame::Typing {
            room: self.room.clone(),
            user: s.user.clone(),
            active,
        };
        self.broadcast(cx, CHAT_TYPING, &frame).await;
    }

    async fn stop_typing(&mut self, cx: &mut Context, s: &Shared) {
        if self.typing.take().is_some() {
            self.broadcast_typing(cx, s, false).await;
        }
    }

    /// When this room next needs [`RoomSession::on_deadline`]: its typing indicator expires,
    /// or a held message has waited long enough for the seq it overtook.
    pub fn deadline(&self) -> Option<Instant> {
        let typing = self.typing.map(|(until, _)| until);
        let gap = self.ahead_since.map(|since| since + REORDER_WAIT);
        typing.into_iter().chain(gap).min()
    }

    /// Ends an expired typing indicator and resolves a gap waited for long enough.
    pub async fn on_deadline(&mut self, cx: &mut Context, s: &Shared) {
        let now = Instant::now();
        if self.typing.is_some_and(|(until, _)| until <= now) {
            self.stop_typing(cx, s).await;
        }
        if self
            .ahead_since
            .is_some_and(|since| since + REORDER_WAIT <= now)
        {
            self.resolve_gaps(cx, s).await;
        }
    }

    /// Reads a page of history.
    pub async fn history(
        &self,
        s: &Shared,
        before: Option<Seq>,
        after: Option<Seq>,
        limit: Option<u32>,
    ) -> Result<HistoryPage, FrameError> {
        let query = HistoryQuery {
            before,
            after,
            limit: limit.unwrap_or(50).min(s.limits.max_history),
        };
        s.store
            .history(&self.room, query)
            .await
            .map_err(|_| FrameError::new(ErrorCode::StoreUnavailable, "could not read the history"))
    }

    async fn broadcast(&self, cx: &mut Context, kind: &'static str, frame: &ServerFrame) {
        broadcast_to(cx, &self.group, kind, frame).await;
    }
}

/// Sends `frame` to a room's group.
async fn broadcast_to(
    cx: &mut Context,
    group: &GroupName,
    kind: &'static str,
    frame: &ServerFrame,
) {
    match LayerMessage::json(kind, frame) {
        Ok(lm) => {
            if let Err(e) = cx.group_send(group, lm).await {
                // Stored all the same: receivers recover messages from the store.
                tracing::warn!(group = group.as_str(), error = %e, "group_send failed");
            }
        }
        Err(e) => tracing::error!(error = %e, "could not encode a frame"),
    }
}
