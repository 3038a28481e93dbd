//! `MuxConsumer`: one socket, many rooms (`GET /ws`). `join` and `leave` rooms at will, each
//! authorized exactly like the room-bound sockets; every other frame names its room. A socket
//! in 100 rooms is still one connection, one outbound queue and one task.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use chat_core::{
    ClientFrame, ErrorCode, FrameError, LayerMessage, Limits, MessageStore, RoomName, Sender,
    ServerFrame, SharedPresence,
};

use crate::chat::Limiter;
use crate::consumer::{Consumer, ConsumerError};
use crate::context::Context;
use crate::room::{CHAT_MESSAGE, CHAT_PRESENCE, Meta, RoomSession, Shared};

/// Decides which rooms a user may join on a multiplexed socket. The server's rule: guests
/// only public rooms (when guests are allowed), pair rooms only their two members.
pub trait RoomAccess: Send + Sync + 'static {
    /// `Ok` when `user` may use `room`; otherwise the error to answer (usually `forbidden`).
    fn check(&self, user: &Sender, room: &RoomName) -> Result<(), FrameError>;
}

/// Most rooms one socket may be in at once.
pub const MAX_ROOMS_PER_SOCKET: usize = 500;

/// The consumer of a multiplexed socket.
pub struct MuxConsumer {
    shared: Shared,
    access: Arc<dyn RoomAccess>,
    rooms: HashMap<RoomName, RoomSession>,
    limiter: Limiter,
}

impl MuxConsumer {
    /// A multiplexed socket for `user`, with `access` deciding which rooms they may join.
    pub fn new(
        user: Sender,
        access: Arc<dyn RoomAccess>,
        store: Arc<dyn MessageStore>,
        limits: Limits,
    ) -> Self {
        Self {
            limiter: Limiter::new(&limits),
            shared: Shared {
                user,
                store,
                presence: None,
                limits,
            },
            access,
            rooms: HashMap::new(),
        }
    }

    /// Tracks who is online (see [`crate::ChatConsumer::with_presence`]).
    pub fn with_presence(mut self, presence: SharedPresence) -> Self {
        self.shared.presence = Some(presence);
        self
    }

    fn joined(&mut self, room: Option<RoomName>) -> Result<&mut RoomSession, FrameError> {
        let room = room.ok_or_else(|| {
            FrameError::new(ErrorCode::InvalidRoom, "on /ws every frame names its room")
        })?;
        match self.rooms.get_mut(&room) {
            Some(session) => Ok(session),
            None => Err(FrameError::new(
                ErrorCode::NotJoined,
                format!("join {room} before using it"),
            )
            .in_room(Some(room))),
        }
    }

    async fn on_frame(&mut self, cx: &mut Context, frame: ClientFrame) -> Result<(), FrameError> {
        let room = frame.room().cloned();
        let tag = |e: FrameError| e.in_room(room.clone());
        match frame {
            ClientFrame::Join { room, since } => {
                self.access.check(&self.shared.user, &room).map_err(tag)?;
                if self.rooms.contains_key(&room) {
                    return Err(tag(FrameError::new(
                        ErrorCode::InvalidRoom,
                        format!("already in {room}; leave it first to join again with since"),
                    )));
                }
                if self.rooms.len() >= MAX_ROOMS_PER_SOCKET {
                    return Err(tag(FrameError::new(
                        ErrorCode::Forbidden,
                        format!("a socket may be in at most {MAX_ROOMS_PER_SOCKET} rooms"),
                    )));
                }
                let mut session = RoomSession::new(room.clone());
                session
                    .subscribe(cx, &self.shared, since)
                    .await
                    .map_err(|e| {
                        tracing::warn!(room = %room, error = %e, "join failed");
                        tag(FrameError::new(
                            ErrorCode::Internal,
                            "could not join the room",
                        ))
                    })?;
                session.open(cx, &self.shared, since.is_some(), true).await;
                self.rooms.insert(room, session);
                Ok(())
            }
            ClientFrame::Leave { room } => {
                let mut session = self.rooms.remove(&room).ok_or_else(|| {
                    tag(FrameError::new(
                        ErrorCode::NotJoined,
                        format!("not in {room}"),
                    ))
                })?;
                session.close(cx, &self.shared).await;
                if let Err(e) = session.unsubscribe(cx).await {
                    tracing::warn!(room = %room, error = %e, "leave failed");
                }
                Ok(())
            }
            ClientFrame::Message {
                room,
                body,
                client_id,
            } => {
                self.limiter.message().map_err(tag)?;
                let s = self.shared.clone();
                self.joined(room)?
                    .message(cx, &s, body, client_id)
                    .await
                    .map_err(tag)
            }
            ClientFrame::Typing { room, active } => {
                let s = self.shared.clone();
                self.joined(room)?.typing(cx, &s, active).await;
                Ok(())
            }
            ClientFrame::Read { room, seq } => {
                let s = self.shared.clone();
                self.joined(room)?.read(cx, &s, seq).await.map_err(tag)
            }
            ClientFrame::History {
                room,
                before,
                after,
                limit,
            } => {
                let s = self.shared.clone();
                self.joined(room)?
                    .history(cx, &s, before, after, limit)
                    .await
                    .map_err(tag)
            }
            ClientFrame::Ping => {
                cx.send_frame(&ServerFrame::Pong);
                Ok(())
            }
        }
    }
}

impl Consumer for MuxConsumer {
    async fn receive_text(&mut self, cx: &mut Context, text: &str) -> Result<(), ConsumerError> {
        let result = match self.limiter.frame() {
            Ok(()) => match ClientFrame::parse(text) {
                Ok(frame) => self.on_frame(cx, frame).await,
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            self.limiter.refuse(cx, e);
        }
        Ok(())
    }

    async fn receive_binary(
        &mut self,
        cx: &mut Context,
        _data: Bytes,
    ) -> Result<(), ConsumerError> {
        self.limiter.refuse(
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
        for (_, mut session) in self.rooms.drain() {
            session.close(cx, &self.shared).await;
        }
        Ok(())
    }

    fn next_timer(&self) -> Option<tokio::time::Instant> {
        self.rooms.values().filter_map(RoomSession::deadline).min()
    }

    async fn on_timer(&mut self, cx: &mut Context) -> Result<(), ConsumerError> {
        for session in self.rooms.values_mut() {
            session.on_deadline(cx, &self.shared).await;
        }
        Ok(())
    }

    async fn handle(&mut self, cx: &mut Context, msg: LayerMessage) -> Result<(), ConsumerError> {
        if msg.is_missed() {
            // The socket's one mailbox lost something: any of its rooms may be behind.
            for session in self.rooms.values_mut() {
                session.catch_up(cx, &self.shared).await;
            }
            return Ok(());
        }
        let Some(meta) = Meta::of(&msg) else {
            return Ok(());
        };
        let Some(session) = meta.room.as_ref().and_then(|r| self.rooms.get_mut(r)) else {
            // A room this socket just left.
            return Ok(());
        };
        match msg.kind() {
            CHAT_MESSAGE => match meta.seq {
                Some(seq) => session.deliver(cx, &self.shared, msg, seq).await,
                None => tracing::error!("chat.message without a seq"),
            },
            CHAT_PRESENCE if meta.user.as_ref() == Some(&self.shared.user) => {}
            _ => cx.forward(msg),
        }
        Ok(())
    }
}
