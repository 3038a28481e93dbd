//! `TutorialConsumer`: a socket bound to one room that speaks exactly the frames of one of the
//! Channels tutorials our users come from, so their pages work unchanged. Behind the frames it
//! is a room like any other: messages are stored with their seq, delivered in order and
//! exactly once, shared with every other client of the room, authorized and rate-limited.
//!
//! The tutorial pages render every frame they receive, so nothing but messages and errors is
//! ever sent: no acks, no presence, no typing.

use std::sync::Arc;

use bytes::Bytes;
use chat_core::{
    ErrorCode, FrameError, LayerMessage, Limits, MessageStore, RoomName, Sender, SharedPresence,
};
use time::UtcOffset;

use crate::chat::Limiter;
use crate::dialect::{MESSAGE2_SEPARATOR, Render, Tutorial};
use crate::observe;
use crate::room::{CHAT_MESSAGE, Meta, RoomSession, Shared};
use chat_ws::Context;
use chat_ws::{Consumer, ConsumerError};

/// The consumer of a tutorial page's socket.
pub struct TutorialConsumer {
    tutorial: Tutorial,
    shared: Shared,
    session: RoomSession,
    limiter: Limiter,
}

impl TutorialConsumer {
    /// A socket for `user` in `room` speaking `tutorial`'s frames. Authorization is the
    /// caller's decision, made before the consumer is built. Times (seed 000's `data_envio`)
    /// are in UTC until [`TutorialConsumer::with_utc_offset`] says otherwise.
    pub fn new(
        tutorial: Tutorial,
        room: RoomName,
        user: Sender,
        store: Arc<dyn MessageStore>,
        limits: Limits,
    ) -> Self {
        Self {
            tutorial,
            limiter: Limiter::new(&limits),
            shared: Shared {
                user,
                store,
                presence: None,
                attachments: None,
                limits,
                render: Render::Tutorial(tutorial, UtcOffset::UTC),
                recent: None,
            },
            session: RoomSession::new(room),
        }
    }

    /// Writes times in this offset (the server's time zone, as the tutorials' Django did).
    pub fn with_utc_offset(mut self, offset: UtcOffset) -> Self {
        self.shared.render = Render::Tutorial(self.tutorial, offset);
        self
    }

    /// Counts the socket's user as online in the room: other clients see them join and leave.
    /// The tutorial page itself hears nothing of it.
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

    /// The message body a tutorial frame carries.
    fn body(&self, text: &str) -> Result<String, FrameError> {
        let (field, example) = match self.tutorial {
            Tutorial::PairChat => ("mensagem", r#"{"mensagem": "…"}"#),
            Tutorial::NamedRoom => ("message", r#"{"message": "…"}"#),
            Tutorial::SocketServer => ("message", r#"{"message": "…", "message2": "…"}"#),
        };
        let wrong = || FrameError::new(ErrorCode::InvalidJson, format!("send {example}"));
        let value: serde_json::Value = serde_json::from_str(text).map_err(|_| wrong())?;
        let body = value
            .get(field)
            .and_then(serde_json::Value::as_str)
            .ok_or_else(wrong)?;
        if self.tutorial != Tutorial::SocketServer {
            return Ok(body.to_owned());
        }
        match value.get("message2") {
            None | Some(serde_json::Value::Null) => Ok(body.to_owned()),
            Some(serde_json::Value::String(m2)) if m2.trim().is_empty() => Ok(body.to_owned()),
            Some(serde_json::Value::String(m2)) => Ok(format!("{body}{MESSAGE2_SEPARATOR}{m2}")),
            Some(_) => Err(wrong()),
        }
    }

    async fn on_text(&mut self, cx: &mut Context, text: &str) -> Result<(), FrameError> {
        if let Err(e) = self.limiter.frame() {
            observe::frame_unread();
            return Err(e);
        }
        let body = self.body(text);
        observe::frame_of(if body.is_ok() { "message" } else { "invalid" });
        let body = body?;
        self.limiter.message()?;
        // The sender sees its message when the room's broadcast reaches it, as in the
        // tutorials' group_send: no ack.
        self.session
            .message(cx, &self.shared, body, None, None)
            .await?;
        Ok(())
    }
}

impl Consumer for TutorialConsumer {
    fn kind(&self) -> &'static str {
        "tutorial"
    }

    async fn connect(&mut self, cx: &mut Context) -> Result<(), ConsumerError> {
        self.session.subscribe(cx, &self.shared, None).await?;
        cx.accept();
        Ok(())
    }

    async fn opened(&mut self, cx: &mut Context) -> Result<(), ConsumerError> {
        self.session.announce(cx, &self.shared).await;
        Ok(())
    }

    async fn receive_text(&mut self, cx: &mut Context, text: &str) -> Result<(), ConsumerError> {
        if let Err(e) = self.on_text(cx, text).await {
            let answer = self.shared.render.error(&e);
            self.limiter.refuse(cx, e.code, answer);
        }
        Ok(())
    }

    async fn receive_binary(
        &mut self,
        cx: &mut Context,
        _data: Bytes,
    ) -> Result<(), ConsumerError> {
        let e = FrameError::new(ErrorCode::InvalidJson, "send JSON text frames");
        observe::frame_unread();
        let answer = self.shared.render.error(&e);
        self.limiter.refuse(cx, e.code, answer);
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
            // Presence, typing and read receipts: the tutorial pages would draw them as
            // messages.
            _ => {}
        }
        Ok(())
    }
}
