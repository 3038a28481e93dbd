//! The wire protocol: client frames (parsed with precise errors), server frames, error and
//! close codes, and the default limits. See `docs/protocol.md` for the contract in prose.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::message::{Sender, Seq, StoredMessage};
use crate::names::RoomName;

/// The error codes of error frames and HTTP error bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame was not a JSON object, or a field had the wrong type.
    InvalidJson,
    /// The frame's `type` is not one the server knows.
    UnknownType,
    /// The room name is not valid.
    InvalidRoom,
    /// The caller may not use this room.
    Forbidden,
    /// A multiplexed socket sent a frame for a room it has not joined.
    NotJoined,
    /// The frame or the body is over the limit.
    TooLarge,
    /// The body is empty or blank.
    EmptyMessage,
    /// The sender is over the rate limit; the message was not stored.
    RateLimited,
    /// The store could not take the message; it was not stored and not acked.
    StoreUnavailable,
    /// Something failed on the server.
    Internal,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidJson => "invalid_json",
            Self::UnknownType => "unknown_type",
            Self::InvalidRoom => "invalid_room",
            Self::Forbidden => "forbidden",
            Self::NotJoined => "not_joined",
            Self::TooLarge => "too_large",
            Self::EmptyMessage => "empty_message",
            Self::RateLimited => "rate_limited",
            Self::StoreUnavailable => "store_unavailable",
            Self::Internal => "internal",
        }
    }
}

/// WebSocket close codes used by the server.
pub mod close {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// The server is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// Policy violation (repeated abuse, idle timeout).
    pub const POLICY: u16 = 1008;
    /// A frame was larger than the limit.
    pub const TOO_LARGE: u16 = 1009;
    /// The server failed.
    pub const INTERNAL: u16 = 1011;
    /// The client did not keep up with its outbound queue.
    pub const TRY_AGAIN_LATER: u16 = 1013;
}

/// The protocol's limits. The defaults are the contract's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted WebSocket frame/message, in bytes.
    pub max_frame_bytes: usize,
    /// Longest message body, in characters.
    pub max_body_chars: usize,
    /// Sustained messages per second per connection.
    pub messages_per_second: u32,
    /// Burst of messages allowed above the sustained rate.
    pub message_burst: u32,
    /// Frames that may wait for a slow client before it is closed with 1013.
    pub outbound_queue: usize,
    /// How often the server pings.
    pub ping_interval: Duration,
    /// A client silent for this long is closed.
    pub idle_timeout: Duration,
    /// Largest `limit` of a history request.
    pub max_history: u32,
    /// Longest `client_id`, in bytes.
    pub max_client_id_bytes: usize,
    /// Longest guest name, in characters.
    pub max_name_chars: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_bytes: 64 * 1024,
            max_body_chars: 4_000,
            messages_per_second: 20,
            message_burst: 40,
            outbound_queue: 1_024,
            ping_interval: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(60),
            max_history: 200,
            max_client_id_bytes: 128,
            max_name_chars: 64,
        }
    }
}

impl Limits {
    /// Checks a message body and client id against the limits: not blank (`empty_message`),
    /// at most `max_body_chars` characters and a client id of 1 to `max_client_id_bytes`
    /// bytes (`too_large`).
    pub fn check_message(&self, body: &str, client_id: Option<&str>) -> Result<(), FrameError> {
        if body.trim().is_empty() {
            return Err(FrameError::new(
                ErrorCode::EmptyMessage,
                "the message is empty",
            ));
        }
        let chars = body.chars().count();
        if chars > self.max_body_chars {
            return Err(FrameError::new(
                ErrorCode::TooLarge,
                format!(
                    "the message has {chars} characters; the limit is {}",
                    self.max_body_chars
                ),
            ));
        }
        if client_id.is_some_and(|c| c.is_empty() || c.len() > self.max_client_id_bytes) {
            return Err(FrameError::new(
                ErrorCode::TooLarge,
                format!("client_id must be 1 to {} bytes", self.max_client_id_bytes),
            ));
        }
        Ok(())
    }

    /// Checks and normalizes a guest's display name: trimmed, 1 to `max_name_chars`
    /// characters, no control characters. The error says what to fix.
    pub fn check_guest_name(&self, name: &str) -> Result<String, String> {
        let name = name.trim();
        if name.is_empty() {
            return Err("the name is empty".into());
        }
        if name.chars().count() > self.max_name_chars {
            return Err(format!(
                "a name has at most {} characters",
                self.max_name_chars
            ));
        }
        if name.chars().any(char::is_control) {
            return Err("a name cannot contain control characters".into());
        }
        Ok(name.to_owned())
    }
}

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
}

impl FrameError {
    /// A new frame error.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            room: None,
        }
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
            },
            // The seed tutorials' clients send {"message": "..."} with no type.
            None if raw.message.is_some() || raw.mensagem.is_some() => Self::Message {
                room,
                body: raw.message.or(raw.mensagem).unwrap_or_default(),
                client_id: raw.client_id,
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

/// Whether a user joined or left a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PresenceEvent {
    /// The user's first connection to the room opened.
    Join,
    /// The user's last connection to the room closed.
    Leave,
}

/// A frame from the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// A stored chat message.
    Message(StoredMessage),
    /// The sender's message is stored.
    Ack {
        /// The room.
        room: RoomName,
        /// The client's id for the message.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
        /// The message's seq.
        seq: Seq,
    },
    /// The socket joined a room.
    Joined {
        /// The room.
        room: RoomName,
        /// The room's latest seq at join time.
        last_seq: Seq,
        /// Who is online.
        online: Vec<Sender>,
    },
    /// A user joined or left.
    Presence {
        /// The room.
        room: RoomName,
        /// Who.
        user: Sender,
        /// Join or leave.
        event: PresenceEvent,
    },
    /// A user started or stopped typing.
    Typing {
        /// The room.
        room: RoomName,
        /// Who.
        user: Sender,
        /// Typing or not.
        active: bool,
    },
    /// A user read up to `seq`.
    Read {
        /// The room.
        room: RoomName,
        /// Who.
        user: Sender,
        /// Last read seq.
        seq: Seq,
    },
    /// A page of history, oldest first.
    History {
        /// The room.
        room: RoomName,
        /// The messages.
        messages: Vec<StoredMessage>,
        /// Whether more exist beyond this page.
        has_more: bool,
    },
    /// Answer to `ping`.
    Pong,
    /// A refused frame. Never closes the connection by itself.
    Error {
        /// The code.
        code: ErrorCode,
        /// What went wrong.
        message: String,
        /// The room concerned.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<RoomName>,
    },
}

impl ServerFrame {
    /// The frame as JSON text.
    pub fn to_json(&self) -> String {
        // Serializing these types cannot fail: every map key is a string and no Serialize
        // impl here returns an error.
        serde_json::to_string(self).unwrap_or_else(|_| {
            r#"{"type":"error","code":"internal","message":"serialization failed"}"#.to_owned()
        })
    }

    /// An error frame.
    pub fn error(code: ErrorCode, message: impl Into<String>, room: Option<RoomName>) -> Self {
        Self::Error {
            code,
            message: message.into(),
            room,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Timestamp;
    use serde_json::json;

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
    fn message_and_name_limits() {
        let l = Limits::default();
        assert!(l.check_message("hi", Some("c-1")).is_ok());
        assert_eq!(
            l.check_message(" \n\t", None).unwrap_err().code,
            ErrorCode::EmptyMessage
        );
        assert!(l.check_message(&"é".repeat(4_000), None).is_ok());
        assert_eq!(
            l.check_message(&"é".repeat(4_001), None).unwrap_err().code,
            ErrorCode::TooLarge
        );
        assert_eq!(
            l.check_message("x", Some("")).unwrap_err().code,
            ErrorCode::TooLarge
        );
        assert_eq!(
            l.check_message("x", Some(&"c".repeat(129)))
                .unwrap_err()
                .code,
            ErrorCode::TooLarge
        );
        assert_eq!(l.check_guest_name("  ana ").unwrap(), "ana");
        assert!(l.check_guest_name("").is_err());
        assert!(l.check_guest_name("a\u{7}b").is_err());
        assert!(l.check_guest_name(&"n".repeat(65)).is_err());
    }

    #[test]
    fn seed_frames_are_messages() {
        for text in [r#"{"message":"oi"}"#, r#"{"mensagem":"oi"}"#] {
            match ClientFrame::parse(text).unwrap() {
                ClientFrame::Message {
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

    #[test]
    fn server_frames_match_the_contract() {
        let room = RoomName::parse("lobby").unwrap();
        let msg = StoredMessage {
            room: room.clone(),
            seq: 43,
            sender: Sender::user(3, "ana", Some("tutor".into())),
            body: "hi".into(),
            client_id: Some("c-17".into()),
            sent_at: Timestamp::from_unix_millis(1_795_003_200_123),
        };
        let v: serde_json::Value =
            serde_json::from_str(&ServerFrame::Message(msg).to_json()).unwrap();
        assert_eq!(
            v,
            json!({"type":"message","room":"lobby","seq":43,"sender":{"id":3,"name":"ana","role":"tutor"},
                   "body":"hi","client_id":"c-17","sent_at":"2026-11-18T12:00:00.123Z"})
        );
        let v: serde_json::Value = serde_json::from_str(
            &ServerFrame::error(ErrorCode::NotJoined, "join first", Some(room)).to_json(),
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"type":"error","code":"not_joined","message":"join first","room":"lobby"})
        );
        assert_eq!(ServerFrame::Pong.to_json(), r#"{"type":"pong"}"#);
    }
}
