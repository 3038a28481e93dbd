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
//! everything after the delivered seq is read from the store. Anything at or below the last
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

/// Sends a live message as the socket's client reads it.
fn emit_live(cx: &mut Context, render: Render, msg: LayerMessage) {
    observe::delivered();
    observe::delivery_delay(&msg);
    match render.live(&msg) {
        None => cx.forward(msg),
        Some(Ok(text)) => cx.send_text(text),
        Some(Err(e)) => tracing::error!(error = %e, "could not render a live message"),
    }
}

/// How much of a catch-up [`RoomSession::fill_from_recent`] sent.
enum Recent {
    /// All of it.
    Complete,
    /// Every seq up to this one; the rest is for the store.
    Upto(Seq),
    /// None: the store sends all of it.
    Nothing,
}

/// [`emit_live`], waiting for room in the outbound queue (a catch-up, paced to the client).
async fn emit_live_wait(cx: &mut Context, render: Render, msg: LayerMessage) {
    observe::delivered();
    let text = match render.live(&msg) {
        None => chat_ws::Utf8Bytes::try_from(msg.into_payload()).map_err(|e| e.to_string()),
        Some(text) => text,
    };
    match text {
        Ok(text) => cx.send_text_wait(text).await,
        Err(e) => tracing::error!(error = %e, "could not render a caught-up message"),
    }
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

    /// Reads and sends every stored message after the delivered seq and before `before`.
    /// `reason` says why, for [`chat_core::metrics::CATCH_UP_READS`].
    async fn fill_gap(
        &mut self,
        cx: &mut Context,
        s: &Shared,
        before: Option<Seq>,
        wait: bool,
        reason: &'static str,
    ) -> bool {
        let Some(mut after) = self.delivered else {
            return true;
        };
        if reason != "replay" {
            match self.fill_from_recent(cx, s, after, before, wait).await {
                Recent::Complete => {
                    observe::catch_up_recent(reason);
                    return true;
                }
                Recent::Upto(seq) => {
                    observe::catch_up_recent(reason);
                    after = seq;
                }
                Recent::Nothing => {}
            }
        }
        loop {
            let query = HistoryQuery {
                after: Some(after),
                before,
                limit: HistoryQuery::MAX_LIMIT,
            };
            observe::catch_up_read(reason);
            let page = match s.store.history(&self.room, query).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(room = %self.room, error = %e, "could not read a gap from the store");
                    return false;
                }
            };
            for m in &page.messages {
                observe::delivered();
                if wait {
                    cx.send_text_wait(s.render.message(m)).await;
                } else {
                    cx.send_text(s.render.message(m));
                }
                after = m.seq;
            }
            self.delivered = Some(after);
            if !page.has_more || page.messages.is_empty() {
                return true;
            }
        }
    }

    /// A live `chat.message` with its seq: delivered in order, exactly once.
    pub async fn deliver(&mut self, cx: &mut Context, s: &Shared, msg: LayerMessage, seq: Seq) {
        let Some(delivered) = self.delivered else {
            // The store could not say where the room was at join: start from here.
            emit_live(cx, s.render, msg);
            self.delivered = Some(seq);
            return;
        };
        if seq <= delivered {
            return;
        }
        if seq == delivered + 1 {
            emit_live(cx, s.render, msg);
            self.delivered = Some(seq);
            self.release_ahead(cx, s.render);
            return;
        }
        self.ahead.entry(seq).or_insert(msg);
        self.ahead_since.get_or_insert_with(Instant::now);
        if self.ahead.len() > MAX_AHEAD {
            self.resolve_gaps(cx, s).await;
        }
    }

    /// The layer lost live messages for this socket (its mailbox was full): sends everything
    /// stored after the delivered seq, then what was held. Paced to the client, like a replay.
    pub async fn catch_up(&mut self, cx: &mut Context, s: &Shared) {
        if !self.fill_gap(cx, s, None, true, "missed").await {
            tracing::warn!(room = %self.room, "could not read the messages this socket missed");
        }
        self.release_ahead(cx, s.render);
    }

    /// Sends what [`RoomSession::fill_gap`] would read from the messages this process
    /// published lately, as far as they hold every seq (see [`RecentMessages`]). The end of a
    /// gap is known; a catch-up's end is the room's last seq, one indexed read. Under load a
    /// commit's publisher can be a little behind its commit, so the newest seqs are often
    /// not here yet: the store is read only for those.
    async fn fill_from_recent(
        &mut self,
        cx: &mut Context,
        s: &Shared,
        after: Seq,
        before: Option<Seq>,
        wait: bool,
    ) -> Recent {
        let Some(recent) = &s.recent else {
            return Recent::Nothing;
        };
        let through = match before {
            Some(before) => before.saturating_sub(1),
            None => match s.store.last_seq(&self.room).await {
                Ok(seq) => seq,
                Err(_) => return Recent::Nothing,
            },
        };
        if through <= after {
            return Recent::Complete;
        }
        let run = recent.run(&self.room, after, through);
        if run.is_empty() {
            return Recent::Nothing;
        }
        let upto = after + run.len() as Seq;
        for msg in run {
            if wait {
                emit_live_wait(cx, s.render, msg).await;
            } else {
                emit_live(cx, s.render, msg);
            }
        }
        self.delivered = Some(upto);
        if upto >= through {
            Recent::Complete
        } else {
            Recent::Upto(upto)
        }
    }

    /// Sends the held messages that now follow the delivered seq without a gap.
    fn release_ahead(&mut self, cx: &mut Context, render: Render) {
        while let Some(entry) = self.ahead.first_entry() {
            let seq = *entry.key();
            let next = self.delivered.map_or(seq, |d| d + 1);
            if seq < next {
                entry.remove();
            } else if seq == next {
                emit_live(cx, render, entry.remove());
                self.delivered = Some(seq);
            } else {
                break;
            }
        }
        if self.ahead.is_empty() {
            self.ahead_since = None;
        }
    }

    /// The wait is over: reads every gap below the held messages from the store and sends
    /// everything in order. When the store is down the gaps stay: what is held goes out
    /// anyway, and the client can resume with `since` later.
    async fn resolve_gaps(&mut self, cx: &mut Context, s: &Shared) {
        while let Some(first) = self.ahead.keys().next().copied() {
            if !self.fill_gap(cx, s, Some(first), false, "gap").await {
                tracing::debug!(room = %self.room, "delivering past a gap");
            }
            // Past whatever the store could not give, so every turn makes progress.
            if self.delivered.is_none_or(|d| d + 1 < first) {
                self.delivered = Some(first - 1);
            }
            self.release_ahead(cx, s.render);
        }
        self.ahead_since = None;
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
