//! `ChatConsumer`: the protocol of a socket bound to one room (`/ws/chat/{room}/`,
//! `/ws/dm/{user}/`).
//!
//! Delivery guarantee: the client sees every message of the room exactly once and in seq
//! order from the point it asked for (`?since=SEQ`, or "now"). Live messages can arrive out
//! of order (two senders publish concurrently) or not at all (a full layer channel drops
//! them); whenever a live message is not the next seq, the gap is read from the store before
//! it is delivered, and anything at or below the last delivered seq is skipped.

use std::sync::Arc;

use bytes::Bytes;
use chat_core::{
    ClientFrame, ErrorCode, FrameError, GroupName, HistoryQuery, LayerMessage, Limits,
    MessageStore, NewMessage, PresenceEvent, RoomName, Sender, Seq, ServerFrame, SharedPresence,
    StoredMessage, TokenBucket, close,
};
use serde::Deserialize;

use crate::consumer::{Consumer, ConsumerError};
use crate::context::Context;

/// Layer message type of a stored chat message (payload: the `message` frame).
pub const CHAT_MESSAGE: &str = "chat.message";
/// Layer message type of a typing indicator (payload: the `typing` frame).
pub const CHAT_TYPING: &str = "chat.typing";
/// Layer message type of a read receipt (payload: the `read` frame).
pub const CHAT_READ: &str = "chat.read";
/// Layer message type of a presence change (payload: the `presence` frame).
pub const CHAT_PRESENCE: &str = "chat.presence";

/// The consumer for a socket bound to one room.
pub struct ChatConsumer {
    room: RoomName,
    group: GroupName,
    user: Sender,
    store: Arc<dyn MessageStore>,
    limits: Limits,
    since: Option<Seq>,
    /// The highest seq delivered to this client, with every lower one delivered too.
    delivered: Option<Seq>,
    messages: TokenBucket,
    frames: TokenBucket,
    abuse: TokenBucket,
    presence: Option<SharedPresence>,
    /// The connection id presence knows this socket by (its channel name).
    presence_conn: Option<String>,
    typing: bool,
}

#[derive(Deserialize)]
struct SeqOnly {
    seq: Seq,
}

impl ChatConsumer {
    /// A consumer for `user` in `room`. Authorization (may this user use this room?) is the
    /// caller's decision, made before the consumer is built.
    pub fn new(room: RoomName, user: Sender, store: Arc<dyn MessageStore>, limits: Limits) -> Self {
        let messages = TokenBucket::new(limits.messages_per_second, limits.message_burst);
        // Frames of any kind (typing, pings, history) get a looser allowance than messages.
        let frames = TokenBucket::new(
            limits.messages_per_second.saturating_mul(5),
            limits.message_burst.saturating_mul(5),
        );
        Self {
            group: room.group(),
            room,
            user,
            store,
            limits,
            since: None,
            delivered: None,
            messages,
            frames,
            // A client that keeps sending refused frames is closed with 1008.
            abuse: TokenBucket::new(5, 50),
            presence: None,
            presence_conn: None,
            typing: false,
        }
    }

    /// Tracks who is online: the socket gets a `joined` frame with the room's online users
    /// when it opens, and the room gets `presence` join/leave events (once per user, however
    /// many tabs they have).
    pub fn with_presence(mut self, presence: SharedPresence) -> Self {
        self.presence = Some(presence);
        self
    }

    /// Refuses a frame with an error frame; repeated refusals close the connection.
    fn refuse(&mut self, cx: &mut Context, err: FrameError) {
        cx.send_frame(&err.in_room(Some(self.room.clone())).to_frame());
        if !self.abuse.try_take() {
            cx.close(close::POLICY, "too many refused frames");
        }
    }

    fn message_frame(msg: &StoredMessage) -> String {
        ServerFrame::Message(msg.clone()).to_json()
    }

    /// Reads and sends every stored message after `self.delivered` and before `before`.
    async fn fill_gap(&mut self, cx: &mut Context, before: Option<Seq>, wait: bool) -> bool {
        let Some(mut after) = self.delivered else {
            return true;
        };
        loop {
            let query = HistoryQuery {
                after: Some(after),
                before,
                limit: HistoryQuery::MAX_LIMIT,
            };
            let page = match self.store.history(&self.room, query).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(room = %self.room, error = %e, "could not read a gap from the store");
                    return false;
                }
            };
            for m in &page.messages {
                if wait {
                    cx.send_text_wait(Self::message_frame(m)).await;
                } else {
                    cx.send_text(Self::message_frame(m));
                }
                after = m.seq;
            }
            self.delivered = Some(after);
            if !page.has_more || page.messages.is_empty() {
                return true;
            }
        }
    }

    fn check_room(&self, room: Option<&RoomName>) -> Result<(), FrameError> {
        match room {
            Some(r) if *r != self.room => Err(FrameError::new(
                ErrorCode::NotJoined,
                format!("this socket is bound to room {}", self.room),
            )),
            _ => Ok(()),
        }
    }

    async fn on_message(
        &mut self,
        cx: &mut Context,
        body: String,
        client_id: Option<String>,
    ) -> Result<(), FrameError> {
        if !self.messages.try_take() {
            return Err(FrameError::new(
                ErrorCode::RateLimited,
                format!(
                    "more than {} messages per second; this one was not stored",
                    self.limits.messages_per_second
                ),
            ));
        }
        self.limits.check_message(&body, client_id.as_deref())?;
        let appended = self
            .store
            .append(NewMessage {
                room: self.room.clone(),
                sender: self.user.clone(),
                body,
                client_id,
            })
            .await
            .map_err(|e| {
                tracing::warn!(room = %self.room, error = %e, "append failed");
                FrameError::new(
                    ErrorCode::StoreUnavailable,
                    "the message could not be stored; it was not sent, try again",
                )
            })?;
        let msg = appended.message;
        if self.typing {
            // Sending ends typing, for everyone watching.
            self.typing = false;
            let frame = ServerFrame::Typing {
                room: self.room.clone(),
                user: self.user.clone(),
                active: false,
            };
            self.broadcast(cx, CHAT_TYPING, &frame).await;
        }
        if !appended.duplicate {
            let frame = ServerFrame::Message(msg.clone());
            match LayerMessage::json(CHAT_MESSAGE, &frame) {
                Ok(lm) => {
                    if let Err(e) = cx.group_send(&self.group, lm).await {
                        // Stored and acked all the same: receivers recover it from the store.
                        tracing::warn!(room = %self.room, error = %e, "group_send failed");
                    }
                }
                Err(e) => tracing::error!(error = %e, "could not encode a message"),
            }
        }
        cx.send_frame(&ServerFrame::Ack {
            room: self.room.clone(),
            client_id: msg.client_id.clone(),
            seq: msg.seq,
        });
        Ok(())
    }

    async fn on_frame(&mut self, cx: &mut Context, frame: ClientFrame) -> Result<(), FrameError> {
        self.check_room(frame.room())?;
        match frame {
            ClientFrame::Message {
                body, client_id, ..
            } => self.on_message(cx, body, client_id).await,
            ClientFrame::Typing { active, .. } => {
                self.typing = active;
                let frame = ServerFrame::Typing {
                    room: self.room.clone(),
                    user: self.user.clone(),
                    active,
                };
                self.broadcast(cx, CHAT_TYPING, &frame).await;
                Ok(())
            }
            ClientFrame::Read { seq, .. } => {
                let Some(user_id) = self.user.id else {
                    return Err(FrameError::new(
                        ErrorCode::Forbidden,
                        "guests have no read state; log in to send read receipts",
                    ));
                };
                self.store
                    .mark_read(&self.room, user_id, seq)
                    .await
                    .map_err(|_| {
                        FrameError::new(
                            ErrorCode::StoreUnavailable,
                            "could not store the read receipt",
                        )
                    })?;
                let frame = ServerFrame::Read {
                    room: self.room.clone(),
                    user: self.user.clone(),
                    seq,
                };
                self.broadcast(cx, CHAT_READ, &frame).await;
                Ok(())
            }
            ClientFrame::History {
                before,
                after,
                limit,
                ..
            } => {
                let query = HistoryQuery {
                    before,
                    after,
                    limit: limit.unwrap_or(50).min(self.limits.max_history),
                };
                let page = self.store.history(&self.room, query).await.map_err(|_| {
                    FrameError::new(ErrorCode::StoreUnavailable, "could not read the history")
                })?;
                cx.send_frame(&ServerFrame::History {
                    room: self.room.clone(),
                    messages: page.messages,
                    has_more: page.has_more,
                });
                Ok(())
            }
            ClientFrame::Ping => {
                cx.send_frame(&ServerFrame::Pong);
                Ok(())
            }
            ClientFrame::Join { .. } | ClientFrame::Leave { .. } => Err(FrameError::new(
                ErrorCode::UnknownType,
                "join and leave are for the multiplexed socket /ws; this socket is bound to one room",
            )),
        }
    }

    async fn broadcast(&self, cx: &mut Context, kind: &'static str, frame: &ServerFrame) {
        match LayerMessage::json(kind, frame) {
            Ok(lm) => {
                if let Err(e) = cx.group_send(&self.group, lm).await {
                    tracing::warn!(room = %self.room, error = %e, "group_send failed");
                }
            }
            Err(e) => tracing::error!(error = %e, "could not encode a frame"),
        }
    }
}

impl Consumer for ChatConsumer {
    async fn connect(&mut self, cx: &mut Context) -> Result<(), ConsumerError> {
        match cx.request().query("since") {
            None | Some("") => {}
            Some(s) => match s.parse::<Seq>() {
                Ok(seq) => self.since = Some(seq),
                Err(_) => {
                    cx.reject(400, "since must be a message sequence number (0 or more)");
                    return Ok(());
                }
            },
        }
        // Join the group before reading the store: whatever commits after the read arrives
        // live, whatever committed before it is in the read. No gap.
        cx.group_add(&self.group).await?;
        self.delivered = match self.since {
            Some(since) => Some(since),
            None => match self.store.last_seq(&self.room).await {
                Ok(seq) => Some(seq),
                Err(e) => {
                    tracing::warn!(room = %self.room, error = %e, "last_seq failed at connect");
                    None
                }
            },
        };
        cx.accept();
        Ok(())
    }

    async fn opened(&mut self, cx: &mut Context) -> Result<(), ConsumerError> {
        if let Some(presence) = self.presence.clone() {
            let conn = cx.channel_name().to_string();
            match presence.join(&self.room, &self.user, &conn).await {
                Ok(first) => {
                    self.presence_conn = Some(conn);
                    if first {
                        let frame = ServerFrame::Presence {
                            room: self.room.clone(),
                            user: self.user.clone(),
                            event: PresenceEvent::Join,
                        };
                        self.broadcast(cx, CHAT_PRESENCE, &frame).await;
                    }
                }
                Err(e) => tracing::warn!(room = %self.room, error = %e, "presence join failed"),
            }
            let online = presence.online(&self.room).await.unwrap_or_else(|e| {
                tracing::warn!(room = %self.room, error = %e, "presence online failed");
                vec![self.user.clone()]
            });
            let last_seq = match self.store.last_seq(&self.room).await {
                Ok(seq) => seq,
                Err(_) => self.delivered.unwrap_or(0),
            };
            cx.send_frame(&ServerFrame::Joined {
                room: self.room.clone(),
                last_seq,
                online,
            });
        }
        if self.since.is_some() && !self.fill_gap(cx, None, true).await {
            cx.send_frame(&ServerFrame::error(
                ErrorCode::StoreUnavailable,
                "could not replay the messages after since; they will be sent when the store is back",
                Some(self.room.clone()),
            ));
        }
        Ok(())
    }

    async fn receive_text(&mut self, cx: &mut Context, text: &str) -> Result<(), ConsumerError> {
        if !self.frames.try_take() {
            self.refuse(
                cx,
                FrameError::new(ErrorCode::RateLimited, "too many frames per second"),
            );
            return Ok(());
        }
        let result = match ClientFrame::parse(text) {
            Ok(frame) => self.on_frame(cx, frame).await,
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            self.refuse(cx, e);
        }
        Ok(())
    }

    async fn receive_binary(
        &mut self,
        cx: &mut Context,
        _data: Bytes,
    ) -> Result<(), ConsumerError> {
        self.refuse(
            cx,
            FrameError::new(
                ErrorCode::InvalidJson,
                "binary frames are not supported; send JSON text frames",
            ),
        );
        Ok(())
    }

    async fn disconnect(
        &mut self,
        cx: &mut Context,
        _code: Option<u16>,
    ) -> Result<(), ConsumerError> {
        if self.typing {
            self.typing = false;
            let frame = ServerFrame::Typing {
                room: self.room.clone(),
                user: self.user.clone(),
                active: false,
            };
            self.broadcast(cx, CHAT_TYPING, &frame).await;
        }
        if let (Some(presence), Some(conn)) = (self.presence.clone(), self.presence_conn.take()) {
            match presence.leave(&self.room, &self.user, &conn).await {
                Ok(true) => {
                    let frame = ServerFrame::Presence {
                        room: self.room.clone(),
                        user: self.user.clone(),
                        event: PresenceEvent::Leave,
                    };
                    self.broadcast(cx, CHAT_PRESENCE, &frame).await;
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(room = %self.room, error = %e, "presence leave failed"),
            }
        }
        Ok(())
    }

    async fn handle(&mut self, cx: &mut Context, msg: LayerMessage) -> Result<(), ConsumerError> {
        if msg.kind() == CHAT_PRESENCE {
            // One's own arrival and departure are not news to oneself (`joined` covers it).
            #[derive(Deserialize)]
            struct Who {
                user: Sender,
            }
            if msg.decode::<Who>().is_ok_and(|w| w.user == self.user) {
                return Ok(());
            }
        }
        if msg.kind() != CHAT_MESSAGE {
            cx.forward(&msg);
            return Ok(());
        }
        let seq = match msg.decode::<SeqOnly>() {
            Ok(s) => s.seq,
            Err(e) => {
                tracing::error!(error = %e, "chat.message without a seq");
                return Ok(());
            }
        };
        let delivered = self.delivered;
        if delivered.is_some_and(|d| seq <= d) {
            return Ok(());
        }
        // When the store is down the gap stays: deliver what we have; the client can resume
        // with `since` later.
        if delivered.is_some_and(|d| seq > d + 1) && !self.fill_gap(cx, Some(seq), false).await {
            tracing::debug!(room = %self.room, "delivering past a gap");
        }
        cx.forward(&msg);
        self.delivered = Some(self.delivered.map_or(seq, |d| d.max(seq)));
        Ok(())
    }
}
