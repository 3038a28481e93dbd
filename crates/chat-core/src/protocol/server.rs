//! Frames from the server.

use serde::{Deserialize, Serialize};

use super::ErrorCode;
use crate::message::{Sender, Seq, StoredMessage};
use crate::names::RoomName;
use crate::pair::UserId;

/// Whether a user joined or left a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PresenceEvent {
    /// The user's first connection to the room opened.
    Join,
    /// The user's last connection to the room closed.
    Leave,
}

/// How far one member of a room has read: every message up to `seq` is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadMark {
    /// The member's user id.
    pub user: UserId,
    /// The highest seq they have read.
    pub seq: Seq,
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
        /// Who is online: everyone, or `Limits::presence_limit` of them in a crowded room.
        online: Vec<Sender>,
        /// How many users are online (more than `online` lists in a crowded room).
        #[serde(default)]
        online_count: usize,
        /// In a pair room, how far each member has read (members who never sent a read
        /// receipt are left out), so that read ticks show from the start. Empty, and left out
        /// of the frame, in public rooms.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        reads: Vec<ReadMark>,
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
        /// The refused message's `client_id`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
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
            client_id: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Timestamp;
    use serde_json::json;

    #[test]
    fn server_frames_match_the_contract() {
        let room = RoomName::parse("lobby").unwrap();
        let msg = StoredMessage {
            attachment: None,
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
