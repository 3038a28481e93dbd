//! `SocketIoConsumer`: the rooms of seed 001's Socket.IO chat (`join_chat`, `send_message`,
//! `new_message`, …) on the same rooms, store, seqs, presence and limits as our own sockets.
//!
//! It is independent of any Socket.IO library: the server's Engine.IO/Socket.IO layer runs it
//! through a [`Bridge`](chat_ws::Bridge) and translates with the envelopes here. Each event
//! arrives as [`incoming`] text (event, ack id, data) and leaves as [`Outgoing`] text (an event
//! or an ack answer). One task per socket applies its events one at a time, in the order the
//! client sent them.

use std::sync::Arc;

use bytes::Bytes;
use chat_core::{
    ClientFrame, ErrorCode, FrameError, LayerMessage, Limits, MessageStore, PresenceEvent,
    RoomName, Sender, Seq, ServerFrame, SharedPresence, StoredMessage,
};
use serde_json::{Value, json};

use crate::attachment::AttachmentLookup;
use crate::dialect::Render;
use crate::observe;
use crate::room::Shared;
use crate::rooms::{Reply, RoomAccess, Rooms, RoomsSocket, admit, receive_many, receive_one};
use chat_ws::Context;
use chat_ws::{Consumer, ConsumerError, Utf8Bytes};

/// The envelope of an event from the client, as [`SocketIoConsumer`] reads it.
pub fn incoming(event: &str, ack: Option<i64>, data: &Value) -> String {
    json!({ "event": event, "ack": ack, "data": data }).to_string()
}

/// What [`SocketIoConsumer`] sends, read back from its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outgoing<'a> {
    /// Emit `name` with this JSON payload.
    Event {
        /// The event name.
        name: &'a str,
        /// The payload, JSON.
        data: &'a str,
    },
    /// Answer the client's ack `id` with this JSON payload.
    Ack {
        /// The client's ack id.
        id: i64,
        /// The payload, JSON.
        data: &'a str,
    },
}

impl<'a> Outgoing<'a> {
    /// Reads a text the consumer sent; `None` for anything else.
    pub fn parse(text: &'a str) -> Option<Self> {
        let (head, data) = text.split_once('\n')?;
        match head.strip_prefix('#') {
            Some(id) => Some(Self::Ack {
                id: id.parse().ok()?,
                data,
            }),
            None => Some(Self::Event { name: head, data }),
        }
    }
}

/// The text of an event (event names never start with `#`).
pub(crate) fn event(name: &str, data: &Value) -> String {
    format!("{name}\n{data}")
}

fn ack(id: i64, data: &Value) -> String {
    format!("#{id}\n{data}")
}

/// `new_message`: seed 001's fields and ours, so both vocabularies work.
pub(crate) fn message(m: &StoredMessage) -> Value {
    let mut v = json!({
        "chat_id": m.room,
        "seq": m.seq,
        "conteudo": m.body,
        "remetente": {"id": m.sender.id, "nome": m.sender.name, "tipo": m.sender.role},
        "data_envio": m.sent_at,
        "room": m.room,
        "body": m.body,
        "sender": m.sender,
        "sent_at": m.sent_at,
    });
    if let Some(obj) = v.as_object_mut() {
        if let Some(id) = &m.client_id {
            obj.insert("client_id".into(), json!(id));
        }
        if let Some(a) = &m.attachment {
            obj.insert("attachment".into(), json!(a));
        }
    }
    v
}

/// The `error` event's payload, and an ack's `error` member.
pub(crate) fn error(e: &FrameError) -> Value {
    let mut v = json!({ "code": e.code, "message": e.message });
    if let Some(obj) = v.as_object_mut() {
        if let Some(room) = &e.room {
            obj.insert("chat_id".into(), json!(room));
        }
        if let Some(id) = &e.client_id {
            obj.insert("client_id".into(), json!(id));
        }
    }
    v
}

/// An event from the client, as [`incoming`] wrapped it.
#[derive(serde::Deserialize)]
struct Envelope {
    event: String,
    ack: Option<i64>,
    #[serde(default)]
    data: Value,
}

/// Seed 001's fields, and ours where a client would reach for them.
#[derive(serde::Deserialize)]
struct Fields {
    chat_id: Option<Value>,
    since: Option<Seq>,
    conteudo: Option<String>,
    body: Option<String>,
    client_id: Option<String>,
    attachment: Option<String>,
    seq: Option<Seq>,
    before: Option<Seq>,
    after: Option<Seq>,
    limit: Option<u32>,
}

fn invalid(what: impl Into<String>) -> FrameError {
    FrameError::new(ErrorCode::InvalidJson, what)
}

/// `chat_id` as a room: a string, or a number (seed 001 passes its database ids).
fn chat_id(f: &Fields) -> Result<RoomName, FrameError> {
    let name = match &f.chat_id {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => return Err(invalid("chat_id is a room name or a number")),
        None => {
            return Err(FrameError::new(
                ErrorCode::InvalidRoom,
                "chat_id is missing",
            ));
        }
    };
    RoomName::parse(&name).map_err(|e| FrameError::new(ErrorCode::InvalidRoom, e.to_string()))
}

/// The request an event makes, in our protocol's terms.
fn request(event: &str, data: Value) -> Result<ClientFrame, FrameError> {
    let known = [
        "join_chat",
        "leave_chat",
        "send_message",
        "typing_start",
        "typing_stop",
        "history",
        "mark_read",
    ];
    if !known.contains(&event) {
        return Err(FrameError::new(
            ErrorCode::UnknownType,
            format!(
                "unknown event {event:?}; the events are {}",
                known.join(", ")
            ),
        ));
    }
    if !data.is_object() {
        return Err(invalid(format!(
            "{event} takes an object: {{\"chat_id\": …}}"
        )));
    }
    let f: Fields = serde_json::from_value(data)
        .map_err(|e| invalid(format!("a field has the wrong type: {e}")))?;
    let room = chat_id(&f)?;
    let need_seq = || f.seq.ok_or_else(|| invalid("mark_read needs seq"));
    Ok(match event {
        "join_chat" => ClientFrame::Join {
            room,
            since: f.since,
        },
        "leave_chat" => ClientFrame::Leave { room },
        "send_message" => ClientFrame::Message {
            room: Some(room),
            // With a file, the text may be left out.
            body: match (f.conteudo.or(f.body), &f.attachment) {
                (Some(text), _) => text,
                (None, Some(_)) => String::new(),
                (None, None) => return Err(invalid("send_message needs conteudo, a string")),
            },
            client_id: f.client_id,
            attachment: f.attachment,
        },
        "typing_start" | "typing_stop" => ClientFrame::Typing {
            room: Some(room),
            active: event == "typing_start",
        },
        "history" => ClientFrame::History {
            room: Some(room),
            before: f.before,
            after: f.after,
            limit: f.limit,
        },
        _ => ClientFrame::Read {
            room: Some(room),
            seq: need_seq()?,
        },
    })
}

/// The consumer of a Socket.IO socket (namespace `/chat`).
pub struct SocketIoConsumer {
    rooms: Rooms,
}

impl SocketIoConsumer {
    /// A socket for `user`, with `access` deciding which rooms they may join.
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
            render: Render::SocketIo,
            recent: None,
        };
        Self {
            rooms: Rooms::new(shared, access),
        }
    }

    /// Tracks who is online: `join_chat` answers with the room's online users, and the room
    /// hears `user_joined` and `user_left`.
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

    async fn answer(&mut self, cx: &mut Context, id: Option<i64>, reply: Reply) {
        let (payload, replay) = match reply {
            Reply::Joined {
                room,
                last_seq,
                online,
                reads,
                replay,
            } => {
                let mut p = json!({
                    "chat_id": room,
                    "last_seq": last_seq,
                    "online": online.users,
                    "online_count": online.total,
                });
                if !reads.is_empty() {
                    p["reads"] = json!(reads);
                }
                (p, replay.then_some(room))
            }
            Reply::Sent(m) => {
                let mut p = json!({"chat_id": m.room, "seq": m.seq});
                if let (Some(c), Some(obj)) = (m.client_id, p.as_object_mut()) {
                    obj.insert("client_id".into(), json!(c));
                }
                (p, None)
            }
            Reply::History { room, page } => {
                let messages: Vec<Value> = page.messages.iter().map(message).collect();
                let p = json!({"chat_id": room, "messages": messages, "has_more": page.has_more});
                (p, None)
            }
            Reply::Left(room) => (json!({"ok": true, "chat_id": room}), None),
            Reply::Read { room, seq } => (json!({"ok": true, "chat_id": room, "seq": seq}), None),
            Reply::Done | Reply::Pong => (json!({"ok": true}), None),
        };
        if let Some(id) = id {
            cx.send_text(ack(id, &payload));
        }
        // The join's answer first, then what was stored after `since`.
        if let Some(room) = replay {
            self.rooms.replay(cx, &room).await;
        }
    }

    /// The room's typing, presence and read receipts, as seed 001's events.
    fn translate(msg: &LayerMessage) -> Option<String> {
        Some(match msg.decode::<ServerFrame>().ok()? {
            ServerFrame::Typing { room, user, active } => event(
                "user_typing",
                &json!({"chat_id": room, "user": user, "typing": active}),
            ),
            ServerFrame::Presence {
                room,
                user,
                event: e,
            } => {
                let name = match e {
                    PresenceEvent::Join => "user_joined",
                    PresenceEvent::Leave => "user_left",
                };
                event(name, &json!({"chat_id": room, "user": user}))
            }
            ServerFrame::Read { room, user, seq } => event(
                "message_read",
                &json!({"chat_id": room, "user": user, "seq": seq}),
            ),
            _ => return None,
        })
    }
}

impl RoomsSocket for SocketIoConsumer {
    /// The client's ack id, when it asked for an answer.
    type Key = Option<i64>;

    fn rooms(&mut self) -> &mut Rooms {
        &mut self.rooms
    }

    fn read(&mut self, text: &str) -> Option<(Option<i64>, Result<ClientFrame, FrameError>)> {
        let Ok(envelope) = serde_json::from_str::<Envelope>(text) else {
            tracing::error!("a Socket.IO event in an unknown envelope");
            observe::frame_of("invalid");
            return None;
        };
        let Envelope { event, ack, data } = envelope;
        Some((ack, admit(&mut self.rooms, || request(&event, data))))
    }

    async fn answer(&mut self, cx: &mut Context, id: Option<i64>, reply: Reply) {
        SocketIoConsumer::answer(self, cx, id, reply).await;
    }

    fn refuse(&mut self, cx: &mut Context, id: Option<i64>, e: &FrameError) {
        let text = match id {
            Some(id) => ack(id, &json!({ "error": error(e) })),
            None => event("error", &error(e)),
        };
        self.rooms.limiter.refuse(cx, e.code, text);
    }
}

impl Consumer for SocketIoConsumer {
    fn kind(&self) -> &'static str {
        "socketio"
    }

    async fn receive_text(&mut self, cx: &mut Context, text: &str) -> Result<(), ConsumerError> {
        receive_one(self, cx, text).await;
        Ok(())
    }

    /// Events read together: consecutive `send_message`s to one room are stored together,
    /// each acked in order.
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
        let e = invalid("binary attachments are not supported; send JSON");
        observe::frame_unread();
        RoomsSocket::refuse(self, cx, None, &e);
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
            if let Some(text) = Self::translate(&rest) {
                cx.send_text(text);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outgoing_texts_read_back() {
        let e = event("new_message", &json!({"seq": 1}));
        assert_eq!(
            Outgoing::parse(&e),
            Some(Outgoing::Event {
                name: "new_message",
                data: r#"{"seq":1}"#
            })
        );
        let a = ack(17, &json!({"seq": 2}));
        assert_eq!(
            Outgoing::parse(&a),
            Some(Outgoing::Ack {
                id: 17,
                data: r#"{"seq":2}"#
            })
        );
        assert_eq!(Outgoing::parse("no newline"), None);
    }

    #[test]
    fn events_become_requests_with_precise_errors() {
        let join = request("join_chat", json!({"chat_id": 5, "since": 2}));
        assert!(
            matches!(join, Ok(ClientFrame::Join { room, since: Some(2) }) if room.as_str() == "5")
        );
        let send = request(
            "send_message",
            json!({"chat_id": "dm_3_8", "conteudo": "oi"}),
        );
        assert!(matches!(send, Ok(ClientFrame::Message { body, .. }) if body == "oi"));
        let code = |event: &str, data: Value| request(event, data).err().map(|e| e.code);
        assert_eq!(code("dance", json!({})), Some(ErrorCode::UnknownType));
        assert_eq!(
            code("join_chat", json!("lobby")),
            Some(ErrorCode::InvalidJson)
        );
        assert_eq!(code("join_chat", json!({})), Some(ErrorCode::InvalidRoom));
        assert_eq!(
            code("join_chat", json!({"chat_id": "a b"})),
            Some(ErrorCode::InvalidRoom)
        );
        assert_eq!(
            code("send_message", json!({"chat_id": "x", "conteudo": 5})),
            Some(ErrorCode::InvalidJson)
        );
        assert_eq!(
            code("mark_read", json!({"chat_id": "x"})),
            Some(ErrorCode::InvalidJson)
        );
    }
}
