//! The rooms of a socket that joins and leaves them at will: what the multiplexed socket
//! ([`MuxConsumer`](crate::MuxConsumer)) and the Socket.IO endpoint
//! ([`SocketIoConsumer`](crate::SocketIoConsumer)) share. Each request is applied here and
//! answered with a [`Reply`] that the consumer writes in its own dialect (a frame, a Socket.IO
//! ack), so both speak for the same rooms, limits and errors.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use chat_core::{
    ClientFrame, ErrorCode, FrameError, HistoryPage, LayerMessage, OnlineUsers, ReadMark, RoomName,
    Sender, Seq, StoredMessage,
};

use crate::chat::Limiter;
use crate::room::{CHAT_MESSAGE, CHAT_PRESENCE, Meta, RoomSession, Shared};
use chat_ws::Context;

mod turn;

pub(crate) use turn::{RoomsSocket, admit, receive_many, receive_one};

/// The future of a [`RoomAccess`] check.
pub type AccessCheck<'a> = Pin<Box<dyn Future<Output = Result<(), FrameError>> + Send + 'a>>;

/// Decides which rooms a user may join on a multiplexed socket. The server's rule: guests
/// only public rooms (when guests are allowed), pair rooms only their two members, and only
/// when its pair policy allows the two (which may take a look at the store: hence a future).
pub trait RoomAccess: Send + Sync + 'static {
    /// `Ok` when `user` may use `room`; otherwise the error to answer (usually `forbidden`).
    fn check<'a>(&'a self, user: &'a Sender, room: &'a RoomName) -> AccessCheck<'a>;
}

/// Most rooms one socket may be in at once.
pub const MAX_ROOMS_PER_SOCKET: usize = 500;

/// The outcome of a request, for the consumer to answer in its dialect.
pub(crate) enum Reply {
    /// Nothing to answer.
    Done,
    /// The socket joined a room; after answering, call [`Rooms::replay`] when `replay`.
    Joined {
        room: RoomName,
        last_seq: Seq,
        online: OnlineUsers,
        reads: Vec<ReadMark>,
        replay: bool,
    },
    /// The socket left a room.
    Left(RoomName),
    /// A message was stored (or had been, for a repeated `client_id`).
    Sent(StoredMessage),
    /// A read receipt was stored.
    Read { room: RoomName, seq: Seq },
    /// A page of history.
    History { room: RoomName, page: HistoryPage },
    /// An application-level ping.
    Pong,
}

/// A socket's rooms, with its identity, limits and access rule.
pub(crate) struct Rooms {
    pub shared: Shared,
    access: Arc<dyn RoomAccess>,
    /// Boxed: most sockets are in one room, and a map allocates room for several entries at
    /// once; inline sessions made that first allocation 760 bytes per idle socket.
    sessions: HashMap<RoomName, Box<RoomSession>>,
    pub limiter: Limiter,
}

impl Rooms {
    pub fn new(shared: Shared, access: Arc<dyn RoomAccess>) -> Self {
        Self {
            limiter: Limiter::new(&shared.limits),
            shared,
            access,
            sessions: HashMap::new(),
        }
    }

    fn joined(&mut self, room: Option<RoomName>) -> Result<&mut RoomSession, FrameError> {
        let room = room.ok_or_else(|| {
            FrameError::new(ErrorCode::InvalidRoom, "every request names its room")
        })?;
        match self.sessions.get_mut(&room) {
            Some(session) => Ok(session),
            None => Err(FrameError::new(
                ErrorCode::NotJoined,
                format!("join {room} before using it"),
            )
            .in_room(Some(room))),
        }
    }

    /// Applies one request. Errors name the room they concern.
    pub async fn apply(
        &mut self,
        cx: &mut Context,
        frame: ClientFrame,
    ) -> Result<Reply, FrameError> {
        let room = frame.room().cloned();
        let tag = |e: FrameError| e.in_room(room.clone());
        let s = self.shared.clone();
        match frame {
            ClientFrame::Join { room, since } => {
                self.access.check(&s.user, &room).await.map_err(tag)?;
                if self.sessions.contains_key(&room) {
                    return Err(tag(FrameError::new(
                        ErrorCode::InvalidRoom,
                        format!("already in {room}; leave it first to join again with since"),
                    )));
                }
                if self.sessions.len() >= MAX_ROOMS_PER_SOCKET {
                    return Err(tag(FrameError::new(
                        ErrorCode::Forbidden,
                        format!("a socket may be in at most {MAX_ROOMS_PER_SOCKET} rooms"),
                    )));
                }
                let mut session = RoomSession::new(room.clone());
                session.subscribe(cx, &s, since).await.map_err(|e| {
                    tracing::warn!(room = %room, error = %e, "join failed");
                    tag(FrameError::new(
                        ErrorCode::Internal,
                        "could not join the room",
                    ))
                })?;
                let online = session.announce(cx, &s).await;
                let last_seq = session.last_seq(&s).await;
                let reads = session.reads(&s).await;
                self.sessions.insert(room.clone(), Box::new(session));
                Ok(Reply::Joined {
                    room,
                    last_seq,
                    online,
                    reads,
                    replay: since.is_some(),
                })
            }
            ClientFrame::Leave { room } => {
                let mut session = self.sessions.remove(&room).ok_or_else(|| {
                    tag(FrameError::new(
                        ErrorCode::NotJoined,
                        format!("not in {room}"),
                    ))
                })?;
                session.close(cx, &s).await;
                if let Err(e) = session.unsubscribe(cx).await {
                    tracing::warn!(room = %room, error = %e, "leave failed");
                }
                Ok(Reply::Left(room))
            }
            ClientFrame::Message {
                attachment,
                room,
                body,
                client_id,
            } => {
                let refused = |e: FrameError| tag(e).for_message(client_id.clone());
                self.limiter.message().map_err(refused)?;
                let session = self.joined(room).map_err(refused)?;
                let stored = session
                    .message(cx, &s, body, client_id.clone(), attachment)
                    .await;
                stored.map(Reply::Sent).map_err(refused)
            }
            ClientFrame::Typing { room, active } => {
                self.joined(room)?.typing(cx, &s, active).await;
                Ok(Reply::Done)
            }
            ClientFrame::Read { room, seq } => {
                let session = self.joined(room)?;
                session.read(cx, &s, seq).await.map_err(tag)?;
                Ok(Reply::Read {
                    room: session.room.clone(),
                    seq,
                })
            }
            ClientFrame::History {
                room,
                before,
                after,
                limit,
            } => {
                let session = self.joined(room)?;
                let page = session.history(&s, before, after, limit).await;
                Ok(Reply::History {
                    room: session.room.clone(),
                    page: page.map_err(tag)?,
                })
            }
            ClientFrame::Ping => Ok(Reply::Pong),
        }
    }

    /// Sends what was stored after a join's `since`, once the join was answered.
    pub async fn replay(&mut self, cx: &mut Context, room: &RoomName) {
        let s = self.shared.clone();
        if let Some(session) = self.sessions.get_mut(room) {
            session.replay(cx, &s).await;
        }
    }

    /// The socket is closing: it leaves every room.
    pub async fn close_all(&mut self, cx: &mut Context) {
        for (_, mut session) in self.sessions.drain() {
            session.close(cx, &self.shared).await;
        }
    }

    /// When a room next needs [`Rooms::on_deadline`].
    pub fn deadline(&self) -> Option<tokio::time::Instant> {
        self.sessions.values().filter_map(|s| s.deadline()).min()
    }

    /// Expires typing indicators and resolves gaps waited for long enough.
    pub async fn on_deadline(&mut self, cx: &mut Context) {
        for session in self.sessions.values_mut() {
            session.on_deadline(cx, &self.shared).await;
        }
    }

    /// Delivers a layer message: chat messages in order and exactly once, a missed marker as
    /// a catch-up from the store. Returns what is left for the consumer to write (typing,
    /// presence, read receipts of rooms the socket is in, never its own presence).
    pub async fn handle(&mut self, cx: &mut Context, msg: LayerMessage) -> Option<LayerMessage> {
        if msg.is_missed() {
            // The socket's one mailbox lost something: any of its rooms may be behind.
            for session in self.sessions.values_mut() {
                session.catch_up(cx, &self.shared).await;
            }
            return None;
        }
        if msg.kind() == CHAT_MESSAGE {
            // Every member of a busy room reads this: from the frame's fixed start when it can.
            let route = match Meta::fast_route(&msg) {
                Some((room, seq)) => self.sessions.get_mut(room).map(|s| (s, seq)),
                None => Meta::of(&msg).and_then(|m| {
                    let session = self.sessions.get_mut(m.room.as_ref()?)?;
                    Some((session, m.seq?))
                }),
            };
            // None: a room this socket just left (or a message without a seq).
            if let Some((session, seq)) = route {
                session.deliver(cx, &self.shared, msg, seq).await;
            }
            return None;
        }
        let meta = Meta::of(&msg)?;
        meta.room
            .as_ref()
            .filter(|r| self.sessions.contains_key(*r))?;
        match msg.kind() {
            CHAT_PRESENCE if meta.user.as_ref() == Some(&self.shared.user) => None,
            _ => Some(msg),
        }
    }
}
