//! `ChatConsumer`: the protocol of a socket bound to one room (`/ws/chat/{room}/`,
//! `/ws/dm/{user}/`). The room logic lives in [`crate::room`]; this adds what belongs to the
//! connection: the `since` handshake parameter, rate limits and abuse control.

use std::sync::Arc;

use bytes::Bytes;
use chat_core::{
    ClientFrame, ErrorCode, FrameError, LayerMessage, Limits, MessageStore, RoomName, Sender, Seq,
    ServerFrame, SharedPresence, TokenBucket, close,
};

use crate::attachment::AttachmentLookup;
use crate::dialect::Render;
use crate::observe;
use crate::room::{CHAT_MESSAGE, CHAT_PRESENCE, Meta, Outgoing, RoomSession, Shared};
use chat_ws::Context;
use chat_ws::{Consumer, ConsumerError, Utf8Bytes};

/// The rate limits of one connection, and what to do with refused frames.
pub(crate) struct Limiter {
    messages: TokenBucket,
    frames: TokenBucket,
    abuse: TokenBucket,
    messages_per_second: u32,
}

impl Limiter {
    pub fn new(limits: &Limits) -> Self {
        Self {
            messages: TokenBucket::new(limits.messages_per_second, limits.message_burst),
            // Frames of any kind (typing, pings, history) get a looser allowance.
            frames: TokenBucket::new(
                limits.messages_per_second.saturating_mul(5),
                limits.message_burst.saturating_mul(5),
            ),
            // A client that keeps sending refused frames is closed with 1008.
            abuse: TokenBucket::new(5, 50),
            messages_per_second: limits.messages_per_second,
        }
    }

    /// Any frame.
    pub fn frame(&mut self) -> Result<(), FrameError> {
        if self.frames.try_take() {
            Ok(())
        } else {
            observe::rate_limited("frames");
            Err(FrameError::new(
                ErrorCode::RateLimited,
                "too many frames per second",
            ))
        }
    }

    /// A chat message.
    pub fn message(&mut self) -> Result<(), FrameError> {
        if self.messages.try_take() {
            Ok(())
        } else {
            observe::rate_limited("messages");
            Err(FrameError::new(
                ErrorCode::RateLimited,
                format!(
                    "more than {} messages per second; this one was not stored",
                    self.messages_per_second
                ),
            ))
        }
    }

    /// Answers a refused frame with `answer` (the error `code` in the client's dialect);
    /// repeated refusals close the connection.
    pub fn refuse(&mut self, cx: &mut Context, code: ErrorCode, answer: String) {
        observe::error_sent(code);
        cx.send_text(answer);
        if !self.abuse.try_take() {
            cx.close(close::POLICY, "too many refused frames");
        }
    }
}

/// The consumer for a socket bound to one room.
pub struct ChatConsumer {
    shared: Shared,
    session: RoomSession,
    since: Option<Seq>,
    limiter: Limiter,
}

impl ChatConsumer {
    /// A consumer for `user` in `room`. Authorization (may this user use this room?) is the
    /// caller's decision, made before the consumer is built.
    pub fn new(room: RoomName, user: Sender, store: Arc<dyn MessageStore>, limits: Limits) -> Self {
        Self {
            limiter: Limiter::new(&limits),
            shared: Shared {
                user,
                store,
                presence: None,
                attachments: None,
                limits,
                render: Render::Native,
                recent: None,
            },
            session: RoomSession::new(room),
            since: None,
        }
    }

    /// Tracks who is online: the socket gets a `joined` frame with the room's online users
    /// when it opens, and the room gets `presence` join/leave events (once per user, however
    /// many tabs they have).
    pub fn with_presence(mut self, presence: SharedPresence) -> Self {
        self.shared.presence = Some(presence);
        self
    }

    /// Catches up from the messages this process published lately when they hold what a
    /// socket missed, instead of reading the store (see [`crate::RecentMessages`]). Give every
    /// consumer of the process the same one.
    pub fn with_recent(mut self, recent: std::sync::Arc<crate::RecentMessages>) -> Self {
        self.shared.recent = Some(recent);
        self
    }

    /// Lets messages carry files uploaded to their room by their sender, found in
    /// `attachments`.
    pub fn with_attachments(mut self, attachments: Arc<dyn AttachmentLookup>) -> Self {
        self.shared.attachments = Some(attachments);
        self
    }

    fn room(&self) -> &RoomName {
        &self.session.room
    }

    /// Checks a client frame before it is handled: the frame rate, its JSON, its room.
    fn admit(&mut self, text: &str) -> Result<ClientFrame, FrameError> {
        if let Err(e) = self.limiter.frame() {
            observe::frame_unread();
            return Err(e);
        }
        let parsed = ClientFrame::parse(text);
        observe::frame(&parsed);
        let frame = parsed?;
        if let Some(r) = frame.room() {
            if r != self.room() {
                return Err(FrameError::new(
                    ErrorCode::NotJoined,
                    format!("this socket is bound to room {}", self.room()),
                ));
            }
        }
        Ok(frame)
    }

    /// Answers a refused frame (repeated refusals close the socket).
    fn refuse(&mut self, cx: &mut Context, e: FrameError) {
        let room = Some(self.room().clone());
        self.limiter
            .refuse(cx, e.code, Render::Native.error(&e.in_room(room)));
    }

    /// Stores and broadcasts a burst of messages that passed the rate limit, and acks each
    /// (or refuses it) in order.
    async fn send_burst(&mut self, cx: &mut Context, burst: Vec<Outgoing>) {
        if burst.is_empty() {
            return;
        }
        let client_ids: Vec<_> = burst.iter().map(|m| m.client_id.clone()).collect();
        let answers = self.session.messages(cx, &self.shared, burst).await;
        for (answer, client_id) in answers.into_iter().zip(client_ids) {
            match answer {
                Ok(m) => cx.send_text(
                    ServerFrame::Ack {
                        room: m.room,
                        client_id: m.client_id,
                        seq: m.seq,
                    }
                    .to_json(),
                ),
                Err(e) => self.refuse(cx, e.for_message(client_id)),
            }
        }
    }

    /// Handles a frame that passed [`ChatConsumer::admit`].
    async fn on_frame(&mut self, cx: &mut Context, frame: ClientFrame) -> Result<(), FrameError> {
        let s = &self.shared;
        match frame {
            ClientFrame::Message {
                body,
                client_id,
                attachment,
                ..
            } => {
                let refused = |e: FrameError| e.for_message(client_id.clone());
                self.limiter.message().map_err(refused)?;
                let m = self
                    .session
                    .message(cx, s, body, client_id.clone(), attachment)
                    .await
                    .map_err(refused)?;
                cx.send_text(
                    ServerFrame::Ack {
                        room: m.room,
                        client_id: m.client_id,
                        seq: m.seq,
                    }
                    .to_json(),
                );
                Ok(())
            }
            ClientFrame::Typing { active, .. } => {
                self.session.typing(cx, s, active).await;
                Ok(())
            }
            ClientFrame::Read { seq, .. } => self.session.read(cx, s, seq).await,
            ClientFrame::History {
                before,
                after,
                limit,
                ..
            } => {
                let page = self.session.history(s, before, after, limit).await?;
                cx.send_text(
                    ServerFrame::History {
                        room: self.session.room.clone(),
                        messages: page.messages,
                        has_more: page.has_more,
                    }
                    .to_json(),
                );
                Ok(())
            }
            ClientFrame::Ping => {
                cx.send_text(ServerFrame::Pong.to_json());
                Ok(())
            }
            ClientFrame::Join { .. } | ClientFrame::Leave { .. } => Err(FrameError::new(
                ErrorCode::UnknownType,
                "join and leave are for the multiplexed socket /ws; this socket is bound to one room",
            )),
        }
    }
}

impl Consumer for ChatConsumer {
    fn kind(&self) -> &'static str {
        "room"
    }

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
        self.session.subscribe(cx, &self.shared, self.since).await?;
        cx.accept();
        Ok(())
    }

    async fn opened(&mut self, cx: &mut Context) -> Result<(), ConsumerError> {
        let online = self.session.announce(cx, &self.shared).await;
        if self.shared.presence.is_some() {
            let last_seq = self.session.last_seq(&self.shared).await;
            let reads = self.session.reads(&self.shared).await;
            cx.send_text(
                ServerFrame::Joined {
                    room: self.room().clone(),
                    last_seq,
                    online: online.users,
                    online_count: online.total,
                    reads,
                }
                .to_json(),
            );
        }
        if self.since.is_some() {
            self.session.replay(cx, &self.shared).await;
        }
        Ok(())
    }

    async fn receive_text(&mut self, cx: &mut Context, text: &str) -> Result<(), ConsumerError> {
        let result = match self.admit(text) {
            Ok(frame) => self.on_frame(cx, frame).await,
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            self.refuse(cx, e);
        }
        Ok(())
    }

    /// A burst: its messages are stored together (one commit where the store allows), each
    /// acked or refused in order; any other frame is handled in its place, after the
    /// messages before it.
    async fn receive_texts(
        &mut self,
        cx: &mut Context,
        texts: Vec<Utf8Bytes>,
    ) -> Result<(), ConsumerError> {
        let mut burst = Vec::new();
        for text in texts {
            if cx.is_ending() {
                break;
            }
            let result = match self.admit(&text) {
                Ok(ClientFrame::Message {
                    body,
                    client_id,
                    attachment,
                    ..
                }) => match self.limiter.message() {
                    Ok(()) => {
                        burst.push(Outgoing {
                            body,
                            client_id,
                            attachment,
                        });
                        continue;
                    }
                    Err(e) => Err(e.for_message(client_id)),
                },
                Ok(frame) => {
                    self.send_burst(cx, std::mem::take(&mut burst)).await;
                    self.on_frame(cx, frame).await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                self.send_burst(cx, std::mem::take(&mut burst)).await;
                self.refuse(cx, e);
            }
        }
        self.send_burst(cx, burst).await;
        Ok(())
    }

    async fn receive_binary(
        &mut self,
        cx: &mut Context,
        _data: Bytes,
    ) -> Result<(), ConsumerError> {
        let e = FrameError::new(
            ErrorCode::InvalidJson,
            "binary frames are not supported; send JSON text frames",
        );
        observe::frame_unread();
        let room = Some(self.room().clone());
        self.limiter
            .refuse(cx, e.code, Render::Native.error(&e.in_room(room)));
        Ok(())
    }

    async fn disconnect(
        &mut self,
        cx: &mut Context,
        _code: Option<u16>,
    ) -> Result<(), ConsumerError> {
        self.session.close(cx, &self.shared).await;
        Ok(())
    }

    fn next_timer(&self) -> Option<tokio::time::Instant> {
        self.session.deadline()
    }

    async fn on_timer(&mut self, cx: &mut Context) -> Result<(), ConsumerError> {
        self.session.on_deadline(cx, &self.shared).await;
        Ok(())
    }

    async fn handle(&mut self, cx: &mut Context, msg: LayerMessage) -> Result<(), ConsumerError> {
        match msg.kind() {
            LayerMessage::MISSED => self.session.catch_up(cx, &self.shared).await,
            CHAT_MESSAGE => match Meta::seq_of_message(&msg) {
                Some(seq) => self.session.deliver(cx, &self.shared, msg, seq).await,
                None => tracing::error!("chat.message without a seq"),
            },
            // One's own arrival and departure are not news to oneself (`joined` covers it).
            CHAT_PRESENCE
                if Meta::of(&msg).and_then(|m| m.user).as_ref() == Some(&self.shared.user) => {}
            _ => cx.forward(msg),
        }
        Ok(())
    }
}
