//! A turn of a socket that joins rooms at will (`/ws`, Socket.IO): one request, or a burst
//! of them read together. Both consumers speak their own dialect but share this logic, so a
//! burst of messages is stored in one commit on either, exactly as on a room-bound socket
//! ([`ChatConsumer`](crate::ChatConsumer)).

use chat_core::{ClientFrame, FrameError, RoomName, StoredMessage};
use chat_ws::{Context, Utf8Bytes};

use super::{Reply, Rooms};
use crate::observe;
use crate::room::Outgoing;

/// A consumer built on [`Rooms`], as a turn needs it: how it reads a request, and how it
/// answers one in its dialect.
pub(crate) trait RoomsSocket: Send {
    /// What identifies a request's answer (a Socket.IO ack id; nothing on `/ws`).
    type Key: Send;

    /// The socket's rooms.
    fn rooms(&mut self) -> &mut Rooms;

    /// Reads a request, after [`admit`]; `None` for a text that is no request at all (it was
    /// logged and counted).
    fn read(&mut self, text: &str) -> Option<(Self::Key, Result<ClientFrame, FrameError>)>;

    /// Answers a request that succeeded.
    fn answer(
        &mut self,
        cx: &mut Context,
        key: Self::Key,
        reply: Reply,
    ) -> impl Future<Output = ()> + Send;

    /// Answers a refused request (repeated refusals close the socket).
    fn refuse(&mut self, cx: &mut Context, key: Self::Key, e: &FrameError);
}

/// The frame rate limit, then `parse`: what every request passes before it is applied.
pub(crate) fn admit(
    rooms: &mut Rooms,
    parse: impl FnOnce() -> Result<ClientFrame, FrameError>,
) -> Result<ClientFrame, FrameError> {
    if let Err(e) = rooms.limiter.frame() {
        observe::frame_unread();
        return Err(e);
    }
    let parsed = parse();
    observe::frame(&parsed);
    parsed
}

/// One request: applied and answered.
pub(crate) async fn receive_one<S: RoomsSocket>(socket: &mut S, cx: &mut Context, text: &str) {
    let Some((key, parsed)) = socket.read(text) else {
        return;
    };
    let result = match parsed {
        Ok(frame) => socket.rooms().apply(cx, frame).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(reply) => socket.answer(cx, key, reply).await,
        Err(e) => socket.refuse(cx, key, &e),
    }
}

/// Requests read together. Consecutive messages to one room are stored together (one commit
/// where the store allows) and answered in order; any other request is applied in its place,
/// after the messages before it.
pub(crate) async fn receive_many<S: RoomsSocket>(
    socket: &mut S,
    cx: &mut Context,
    texts: Vec<Utf8Bytes>,
) {
    let mut pending = Pending::default();
    for text in texts {
        if cx.is_ending() {
            break;
        }
        let Some((key, parsed)) = socket.read(&text) else {
            continue;
        };
        match parsed {
            Ok(ClientFrame::Message {
                room: Some(room),
                body,
                client_id,
                attachment,
            }) => match socket.rooms().limiter.message() {
                Ok(()) => {
                    if pending.room.as_ref().is_some_and(|r| *r != room) {
                        pending.flush(socket, cx).await;
                    }
                    pending.room = Some(room);
                    pending.keys.push(key);
                    pending.messages.push(Outgoing {
                        body,
                        client_id,
                        attachment,
                    });
                }
                Err(e) => {
                    pending.flush(socket, cx).await;
                    socket.refuse(cx, key, &e.in_room(Some(room)).for_message(client_id));
                }
            },
            Ok(frame) => {
                pending.flush(socket, cx).await;
                match socket.rooms().apply(cx, frame).await {
                    Ok(reply) => socket.answer(cx, key, reply).await,
                    Err(e) => socket.refuse(cx, key, &e),
                }
            }
            Err(e) => {
                pending.flush(socket, cx).await;
                socket.refuse(cx, key, &e);
            }
        }
    }
    pending.flush(socket, cx).await;
}

/// Messages of a burst to one room that passed the rate limit, waiting to be stored together.
struct Pending<K> {
    room: Option<RoomName>,
    keys: Vec<K>,
    messages: Vec<Outgoing>,
}

impl<K> Default for Pending<K> {
    fn default() -> Self {
        Self {
            room: None,
            keys: Vec::new(),
            messages: Vec::new(),
        }
    }
}

impl<K: Send> Pending<K> {
    /// Stores what is pending and answers each message in order.
    async fn flush<S: RoomsSocket<Key = K>>(&mut self, socket: &mut S, cx: &mut Context) {
        let Some(room) = self.room.take() else {
            return;
        };
        let messages = std::mem::take(&mut self.messages);
        let client_ids: Vec<_> = messages.iter().map(|m| m.client_id.clone()).collect();
        let answers = socket.rooms().messages(cx, &room, messages).await;
        for ((answer, key), client_id) in
            answers.into_iter().zip(self.keys.drain(..)).zip(client_ids)
        {
            match answer {
                Ok(m) => socket.answer(cx, key, Reply::Sent(m)).await,
                Err(e) => socket.refuse(
                    cx,
                    key,
                    &e.in_room(Some(room.clone())).for_message(client_id),
                ),
            }
        }
    }
}

impl Rooms {
    /// Stores a burst of messages to `room` (which the socket must have joined) and
    /// broadcasts each: one answer per message, in order. The caller has checked the rate
    /// limit.
    pub async fn messages(
        &mut self,
        cx: &mut Context,
        room: &RoomName,
        burst: Vec<Outgoing>,
    ) -> Vec<Result<StoredMessage, FrameError>> {
        let s = self.shared.clone();
        match self.joined(Some(room.clone())) {
            Ok(session) => session.messages(cx, &s, burst).await,
            Err(e) => burst.iter().map(|_| Err(e.clone())).collect(),
        }
    }
}
