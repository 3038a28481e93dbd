//! Frames from clients: parsed in one pass with precise error codes.

use serde::Deserialize;

use super::{ErrorCode, ServerFrame};
use crate::message::Seq;
use crate::names::RoomName;

/// A frame from a client, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrame {
    /// Send a chat message. `room` may be omitted on room-bound sockets.
    Message {
        /// Target room.
        room: Option<RoomName>,
        /// The text (not yet checked for blankness or length: that is the consumer's rule).
        body: String,
        /// The client's id for this message, for idempotent retries.
        client_id: Option<String>,
        /// The id of a file the sender uploaded to the room, to send with (or as) the message.
        attachment: Option<String>,
    },
    /// Join a room on a multiplexed socket, replaying stored messages after `since`.
    Join {
        /// The room.
        room: RoomName,
        /// Replay messages with seq greater than this first.
        since: Option<Seq>,
    },
    /// Leave a room on a multiplexed socket.
    Leave {
        /// The room.
        room: RoomName,
    },
    /// Start or stop the typing indicator.
    Typing {
        /// The room.
        room: Option<RoomName>,
        /// Whether the user is typing.
        active: bool,
    },
    /// Mark everything up to `seq` as read.
    Read {
        /// The room.
        room: Option<RoomName>,
        /// Last read seq.
        seq: Seq,
    },
    /// Ask for a page of history.
    History {
        /// The room.
        room: Option<RoomName>,
        /// Only messages before this seq (the newest of them).
        before: Option<Seq>,
        /// Only messages after this seq (the oldest of them).
        after: Option<Seq>,
        /// Page size (capped by the server).
        limit: Option<u32>,
    },
    /// Application-level ping; answered with `pong`.
    Ping,
}

/// Why a client frame was refused: the code and message of the error frame to send back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct FrameError {
    /// The error code.
    pub code: ErrorCode,
    /// A sentence for the developer of the client.
    pub message: String,
    /// The room the frame named, when it named a valid one.
    pub room: Option<RoomName>,
    /// The refused message's `client_id`, so the client knows which send failed.
    pub client_id: Option<String>,
}

impl FrameError {
    /// A new frame error.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            room: None,
            client_id: None,
        }
    }

    /// The same error, for the message the client sent with this `client_id`.
    pub fn for_message(mut self, client_id: Option<String>) -> Self {
        self.client_id = client_id;
        self
    }

    /// The same error, tagged with a room.
    pub fn in_room(mut self, room: Option<RoomName>) -> Self {
        self.room = room;
        self
    }

    /// The error frame to send for it.
    pub fn to_frame(&self) -> ServerFrame {
        ServerFrame::Error {
            code: self.code,
            message: self.message.clone(),
            room: self.room.clone(),
            client_id: self.client_id.clone(),
        }
    }
}

/// Every field any client frame may carry; parsed in one pass, then checked per type.
#[derive(Deserialize)]
struct RawFrame {
    #[serde(rename = "type")]
    kind: Option<String>,
    room: Option<String>,
    body: Option<String>,
    message: Option<String>,
    mensagem: Option<String>,
    client_id: Option<String>,
    attachment: Option<String>,
    since: Option<Seq>,
    active: Option<bool>,
    seq: Option<Seq>,
    before: Option<Seq>,
    after: Option<Seq>,
    limit: Option<u32>,
}

impl ClientFrame {
    /// Parses a text frame. Errors carry the protocol's code: `invalid_json`,
    /// `unknown_type` or `invalid_room`.
    pub fn parse(text: &str) -> Result<Self, FrameError> {
        let raw: RawFrame = serde_json::from_str(text).map_err(|e| {
            let what = if e.is_data() {
                format!("a field has the wrong type: {e}")
            } else {
                format!("frames are JSON objects: {e}")
            };
            FrameError::new(ErrorCode::InvalidJson, what)
        })?;
        let room = match raw.room.as_deref() {
            None => None,
            Some(r) => Some(
                RoomName::parse(r)
                    .map_err(|e| FrameError::new(ErrorCode::InvalidRoom, e.to_string()))?,
            ),
        };
        let need_room = |room: Option<RoomName>| {
            room.ok_or_else(|| FrameError::new(ErrorCode::InvalidRoom, "this frame needs a room"))
        };
        let frame = match raw.kind.as_deref() {
            Some("message") => Self::Message {
                room,
                body: raw
                    .body
                    .or(raw.message)
                    .or(raw.mensagem)
                    .unwrap_or_default(),
                client_id: raw.client_id,
                attachment: raw.attachment,
            },
            // The seed tutorials' clients send {"message": "..."} with no type.
            None if raw.message.is_some() || raw.mensagem.is_some() => Self::Message {
                room,
                body: raw.message.or(raw.mensagem).unwrap_or_default(),
                client_id: raw.client_id,
                attachment: None,
            },
            None => {
                return Err(FrameError::new(
                    ErrorCode::UnknownType,
                    "a frame needs a \"type\" (message, join, leave, typing, read, history, ping)",
                ));
            }
            Some("join") => Self::Join {
                room: need_room(room)?,
                since: raw.since,
            },
            Some("leave") => Self::Leave {
                room: need_room(room)?,
            },
            Some("typing") => Self::Typing {
                room,
                active: raw.active.unwrap_or(true),
            },
            Some("read") => Self::Read {
                room: room.clone(),
                seq: raw.seq.ok_or_else(|| {
                    FrameError::new(ErrorCode::InvalidJson, "a read frame needs \"seq\"")
                        .in_room(room)
                })?,
            },
            Some("history") => Self::History {
                room,
                before: raw.before,
                after: raw.after,
                limit: raw.limit,
            },
            Some("ping") => Self::Ping,
            Some(other) => {
                let shown: String = other.chars().take(40).collect();
                return Err(FrameError::new(
                    ErrorCode::UnknownType,
                    format!(
                        "unknown frame type {shown:?} (expected message, join, leave, typing, read, history or ping)"
                    ),
                )
                .in_room(room));
            }
        };
        Ok(frame)
    }

    /// The frame's `type` on the wire (`message`, `join`, `leave`, `typing`, `read`,
    /// `history`, `ping`).
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Message { .. } => "message",
            Self::Join { .. } => "join",
            Self::Leave { .. } => "leave",
            Self::Typing { .. } => "typing",
            Self::Read { .. } => "read",
            Self::History { .. } => "history",
            Self::Ping => "ping",
        }
    }

    /// The room the frame names, if any.
    pub fn room(&self) -> Option<&RoomName> {
        match self {
            Self::Message { room, .. }
            | Self::Typing { room, .. }
            | Self::Read { room, .. }
            | Self::History { room, .. } => room.as_ref(),
            Self::Join { room, .. } | Self::Leave { room } => Some(room),
            Self::Ping => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(text: &str) -> ErrorCode {
        ClientFrame::parse(text).unwrap_err().code
    }

    #[test]
    fn parses_every_client_frame() {
        let lobby = RoomName::parse("lobby").unwrap();
        assert_eq!(
            ClientFrame::parse(
                r#"{"type":"message","room":"lobby","body":"hi","client_id":"c-17"}"#
            )
            .unwrap(),
            ClientFrame::Message {
                attachment: None,
                room: Some(lobby.clone()),
                body: "hi".into(),
                client_id: Some("c-17".into())
            }
        );
        assert_eq!(
            ClientFrame::parse(r#"{"type":"join","room":"lobby","since":42}"#).unwrap(),
            ClientFrame::Join {
                room: lobby.clone(),
                since: Some(42)
            }
        );
        assert_eq!(
            ClientFrame::parse(r#"{"type":"leave","room":"lobby"}"#).unwrap(),
            ClientFrame::Leave {
                room: lobby.clone()
            }
        );
        assert_eq!(
            ClientFrame::parse(r#"{"type":"typing","active":false}"#).unwrap(),
            ClientFrame::Typing {
                room: None,
                active: false
            }
        );
        assert_eq!(
            ClientFrame::parse(r#"{"type":"read","room":"lobby","seq":43}"#).unwrap(),
            ClientFrame::Read {
                room: Some(lobby.clone()),
                seq: 43
            }
        );
        assert_eq!(
            ClientFrame::parse(r#"{"type":"history","before":43,"limit":50}"#).unwrap(),
            ClientFrame::History {
                room: None,
                before: Some(43),
                after: None,
                limit: Some(50)
            }
        );
        assert_eq!(
            ClientFrame::parse(r#"{"type":"ping"}"#).unwrap(),
            ClientFrame::Ping
        );
    }

    #[test]
    fn seed_frames_are_messages() {
        for text in [r#"{"message":"oi"}"#, r#"{"mensagem":"oi"}"#] {
            match ClientFrame::parse(text).unwrap() {
                ClientFrame::Message {
                    attachment: _,
                    body,
                    room: None,
                    client_id: None,
                } => assert_eq!(body, "oi"),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn errors_have_protocol_codes() {
        assert_eq!(code("not json"), ErrorCode::InvalidJson);
        assert_eq!(code("[1,2]"), ErrorCode::InvalidJson);
        assert_eq!(
            code(r#"{"type":"message","body":5}"#),
            ErrorCode::InvalidJson
        );
        assert_eq!(code(r#"{"type":"read","seq":-1}"#), ErrorCode::InvalidJson);
        assert_eq!(code(r#"{"type":"dance"}"#), ErrorCode::UnknownType);
        assert_eq!(code(r#"{"body":"no type"}"#), ErrorCode::UnknownType);
        assert_eq!(
            code(r#"{"type":"join","room":"bad room"}"#),
            ErrorCode::InvalidRoom
        );
        assert_eq!(code(r#"{"type":"join"}"#), ErrorCode::InvalidRoom);
    }

    mod props {
        use proptest::prelude::*;
        use serde_json::{Map, Value, json};

        use super::*;

        const FIELDS: [&str; 13] = [
            "type",
            "room",
            "body",
            "message",
            "mensagem",
            "client_id",
            "since",
            "active",
            "seq",
            "before",
            "after",
            "limit",
            "other",
        ];

        /// Any JSON value, objects keyed mostly by the fields a frame has.
        fn json_value() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::from),
                any::<i64>().prop_map(Value::from),
                any::<u64>().prop_map(Value::from),
                any::<f64>().prop_map(Value::from),
                any::<String>().prop_map(Value::from),
                prop::sample::select(
                    &[
                        "message", "join", "leave", "typing", "read", "history", "ping", "lobby",
                        "dm_1_2", "dm_2_1"
                    ][..]
                )
                .prop_map(Value::from),
            ];
            leaf.prop_recursive(3, 24, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    prop::collection::vec(
                        (
                            prop_oneof![
                                prop::sample::select(&FIELDS[..]).prop_map(String::from),
                                any::<String>()
                            ],
                            inner
                        ),
                        0..6,
                    )
                    .prop_map(|fields| Value::Object(fields.into_iter().collect::<Map<_, _>>())),
                ]
            })
        }

        fn room() -> impl Strategy<Value = RoomName> + Clone {
            prop_oneof![
                "[A-Za-z0-9_-]{1,64}",
                (1..1000i64, 1..1000i64).prop_map(|(a, b)| format!("dm_{}_{}", a.min(b), a.max(b))),
            ]
            .prop_filter_map("a valid room name", |s| RoomName::parse(&s).ok())
        }

        /// Every frame a client can send, built from valid parts.
        fn frame() -> impl Strategy<Value = ClientFrame> {
            let room_opt = prop::option::of(room());
            prop_oneof![
                (
                    room_opt.clone(),
                    any::<String>(),
                    prop::option::of(any::<String>())
                )
                    .prop_map(|(room, body, client_id)| ClientFrame::Message {
                        attachment: None,
                        room,
                        body,
                        client_id
                    }),
                (room(), prop::option::of(any::<Seq>()))
                    .prop_map(|(room, since)| ClientFrame::Join { room, since }),
                room().prop_map(|room| ClientFrame::Leave { room }),
                (room_opt.clone(), any::<bool>())
                    .prop_map(|(room, active)| ClientFrame::Typing { room, active }),
                (room_opt.clone(), any::<Seq>())
                    .prop_map(|(room, seq)| ClientFrame::Read { room, seq }),
                (
                    room_opt,
                    prop::option::of(any::<Seq>()),
                    prop::option::of(any::<Seq>()),
                    prop::option::of(any::<u32>())
                )
                    .prop_map(|(room, before, after, limit)| {
                        ClientFrame::History {
                            room,
                            before,
                            after,
                            limit,
                        }
                    }),
                Just(ClientFrame::Ping),
            ]
        }

        /// The JSON a client writes for a frame (absent options are left out).
        fn to_json(frame: &ClientFrame) -> Value {
            let mut v = match frame {
                ClientFrame::Message {
                    attachment: _,
                    room,
                    body,
                    client_id,
                } => {
                    json!({"type": "message", "room": room, "body": body, "client_id": client_id})
                }
                ClientFrame::Join { room, since } => {
                    json!({"type": "join", "room": room, "since": since})
                }
                ClientFrame::Leave { room } => json!({"type": "leave", "room": room}),
                ClientFrame::Typing { room, active } => {
                    json!({"type": "typing", "room": room, "active": active})
                }
                ClientFrame::Read { room, seq } => {
                    json!({"type": "read", "room": room, "seq": seq})
                }
                ClientFrame::History {
                    room,
                    before,
                    after,
                    limit,
                } => {
                    json!({"type": "history", "room": room, "before": before, "after": after, "limit": limit})
                }
                ClientFrame::Ping => json!({"type": "ping"}),
            };
            if let Value::Object(map) = &mut v {
                map.retain(|_, v| !v.is_null());
            }
            v
        }

        proptest! {
            /// No text makes the parser panic.
            #[test]
            fn any_text_parses_or_errs(s in any::<String>()) {
                let _ = ClientFrame::parse(&s);
            }

            /// No JSON makes the parser panic; a frame it accepts names only valid rooms, and
            /// an error names only a valid room.
            #[test]
            fn any_json_parses_or_errs(v in json_value()) {
                match ClientFrame::parse(&v.to_string()) {
                    Ok(frame) => {
                        if let Some(room) = frame.room() {
                            prop_assert!(RoomName::parse(room.as_str()).is_ok());
                        }
                    }
                    Err(e) => {
                        if let Some(room) = &e.room {
                            prop_assert!(RoomName::parse(room.as_str()).is_ok());
                        }
                    }
                }
            }

            /// A frame written as JSON parses back to the same frame.
            #[test]
            fn frames_round_trip(frame in frame()) {
                let text = to_json(&frame).to_string();
                prop_assert_eq!(ClientFrame::parse(&text), Ok(frame));
            }

            /// The seed tutorials' `{"message": ...}` (no type) is a message with that body.
            #[test]
            fn untyped_messages_are_messages(body in any::<String>(), field in prop::sample::select(&["message", "mensagem"][..])) {
                let text = json!({ field: body }).to_string();
                prop_assert_eq!(
                    ClientFrame::parse(&text),
                    Ok(ClientFrame::Message { attachment: None, room: None, body, client_id: None })
                );
            }
        }
    }
}
