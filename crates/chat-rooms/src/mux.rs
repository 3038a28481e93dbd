//! `MuxConsumer`: one socket, many rooms (`GET /ws`). `join` and `leave` rooms at will, each
//! authorized exactly like the room-bound sockets; every other frame names its room. A socket
//! in 100 rooms is still one connection, one outbound queue and one task.

use std::sync::Arc;

use bytes::Bytes;
use chat_core::{
    ClientFrame, ErrorCode, FrameError, LayerMessage, Limits, MessageStore, Sender, ServerFrame,
    SharedPresence,
};

use crate::attachment::AttachmentLookup;
use crate::dialect::Render;
use crate::observe;
use crate::room::Shared;
use crate::rooms::{Reply, RoomAccess, Rooms, RoomsSocket, admit, receive_many, receive_one};
use chat_ws::Context;
use chat_ws::{Consumer, ConsumerError, Utf8Bytes};

/// The consumer of a multiplexed socket.
pub struct MuxConsumer {
    rooms: Rooms,
}

impl MuxConsumer {
    /// A multiplexed socket for `user`, with `access` deciding which rooms they may join.
    pub fn new(
        user: Sender,
        access: Arc<dyn RoomAccess>,
        store: Arc<dyn MessageStore>,
        limits: Limits,
    ) -> Self {
        let shared = Shared {
            user,
            store,
            presence: None,
            attachments: None,
            limits,
            render: Render::Native,
            recent: None,
        };
        Self {
            rooms: Rooms::new(shared, access),
        }
    }

    /// Tracks who is online (see [`crate::ChatConsumer::with_presence`]).
    pub fn with_presence(mut self, presence: SharedPresence) -> Self {
        self.rooms.shared.presence = Some(presence);
        self
    }

    /// Catches up from the messages this process published lately when they hold what a
    /// socket missed, instead of reading the store (see [`crate::RecentMessages`]). Give every
    /// consumer of the process the same one.
    pub fn with_recent(mut self, recent: std::sync::Arc<crate::RecentMessages>) -> Self {
        self.rooms.shared.recent = Some(recent);
        self
    }

    /// Lets messages carry files uploaded to their room by their sender, found in
    /// `attachments`.
    pub fn with_attachments(mut self, attachments: Arc<dyn AttachmentLookup>) -> Self {
        self.rooms.shared.attachments = Some(attachments);
        self
    }

    async fn answer(&mut self, cx: &mut Context, reply: Reply) {
        match reply {
            Reply::Joined {
                room,
                last_seq,
                online,
                reads,
                replay,
            } => {
                cx.send_text(
                    ServerFrame::Joined {
                        room: room.clone(),
                        last_seq,
                        online: online.users,
                        online_count: online.total,
                        reads,
                    }
                    .to_json(),
                );
                if replay {
                    self.rooms.replay(cx, &room).await;
                }
            }
            Reply::Sent(m) => cx.send_text(
                ServerFrame::Ack {
                    room: m.room,
                    client_id: m.client_id,
                    seq: m.seq,
                }
                .to_json(),
            ),
            Reply::History { room, page } => cx.send_text(
                ServerFrame::History {
                    room,
                    messages: page.messages,
                    has_more: page.has_more,
                }
                .to_json(),
            ),
            Reply::Pong => cx.send_text(ServerFrame::Pong.to_json()),
            Reply::Done | Reply::Left(_) | Reply::Read { .. } => {}
        }
    }
}

impl RoomsSocket for MuxConsumer {
    type Key = ();

    fn rooms(&mut self) -> &mut Rooms {
        &mut self.rooms
    }

    fn read(&mut self, text: &str) -> Option<((), Result<ClientFrame, FrameError>)> {
        Some(((), admit(&mut self.rooms, || ClientFrame::parse(text))))
    }

    async fn answer(&mut self, cx: &mut Context, _: (), reply: Reply) {
        MuxConsumer::answer(self, cx, reply).await;
    }

    fn refuse(&mut self, cx: &mut Context, _: (), e: &FrameError) {
        self.rooms
            .limiter
            .refuse(cx, e.code, Render::Native.error(e));
    }
}

impl Consumer for MuxConsumer {
    fn kind(&self) -> &'static str {
        "mux"
    }

    async fn receive_text(&mut self, cx: &mut Context, text: &str) -> Result<(), ConsumerError> {
        receive_one(self, cx, text).await;
        Ok(())
    }

    /// A burst: consecutive messages to one room are stored together, each acked in order.
    async fn receive_texts(
        &mut self,
        cx: &mut Context,
        texts: Vec<Utf8Bytes>,
    ) -> Result<(), ConsumerError> {
        receive_many(self, cx, texts).await;
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
        RoomsSocket::refuse(self, cx, (), &e);
        Ok(())
    }

    async fn disconnect(
        &mut self,
        cx: &mut Context,
        _code: Option<u16>,
    ) -> Result<(), ConsumerError> {
        self.rooms.close_all(cx).await;
        Ok(())
    }

    fn next_timer(&self) -> Option<tokio::time::Instant> {
        self.rooms.deadline()
    }

    async fn on_timer(&mut self, cx: &mut Context) -> Result<(), ConsumerError> {
        self.rooms.on_deadline(cx).await;
        Ok(())
    }

    async fn handle(&mut self, cx: &mut Context, msg: LayerMessage) -> Result<(), ConsumerError> {
        if let Some(rest) = self.rooms.handle(cx, msg).await {
            cx.forward(rest);
        }
        Ok(())
    }
}
