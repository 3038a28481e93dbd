//! Reading a layer message's routing fields (room, seq, sender) without building the frame.

use chat_core::{LayerMessage, RoomName, Sender, Seq};
use serde::Deserialize;

/// The parts of a layer message's payload a socket needs to route and order it.
#[derive(Deserialize)]
pub(crate) struct Meta {
    pub room: Option<RoomName>,
    pub seq: Option<Seq>,
    pub user: Option<Sender>,
}

impl Meta {
    pub fn of(msg: &LayerMessage) -> Option<Self> {
        msg.decode().ok()
    }

    /// The seq of a `chat.message`, read from the fixed start of its frame
    /// (`{"type":"message","room":"…","seq":N,…`) without parsing the rest; every recipient
    /// of every message needs it. Falls back to a full decode for any other shape.
    pub fn seq_of_message(msg: &LayerMessage) -> Option<Seq> {
        Self::fast_route(msg)
            .map(|(_, seq)| seq)
            .or_else(|| Self::of(msg)?.seq)
    }

    /// The room and seq of a `chat.message` from the fixed start of its frame; `None` for
    /// any other shape (read it with [`Meta::of`] then).
    ///
    /// Read from the payload as text, which the layer message already holds as checked
    /// UTF-8: every member of a room does this for every message, and checking the room's
    /// name and the seq's digits again was a few percent of a busy room's CPU.
    pub fn fast_route(msg: &LayerMessage) -> Option<(&str, Seq)> {
        let rest = msg
            .payload_str()
            .strip_prefix("{\"type\":\"message\",\"room\":\"")?;
        // A byte search: the end is an ASCII byte, so a char boundary.
        let end = rest.bytes().position(|b| b == b'"' || b == b'\\')?;
        let (room, rest) = rest.split_at(end);
        let rest = rest.strip_prefix("\",\"seq\":")?;
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let seq = rest[..digits].parse().ok()?;
        Some((room, seq))
    }
}

#[cfg(test)]
mod tests {
    use chat_core::{ServerFrame, StoredMessage, Timestamp};

    use super::*;
    use crate::room::CHAT_MESSAGE;

    fn message(room: &str, seq: Seq, body: &str) -> LayerMessage {
        let frame = ServerFrame::Message(StoredMessage {
            attachment: None,
            room: RoomName::parse(room).unwrap_or_else(|e| panic!("{e}")),
            seq,
            sender: Sender::guest("ana"),
            body: body.into(),
            client_id: Some("c-1".into()),
            sent_at: Timestamp::now(),
        });
        LayerMessage::json(CHAT_MESSAGE, &frame).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_seq_is_read_from_the_start_of_the_frame() {
        for (room, seq, body) in [
            ("lobby", 1, "hi"),
            ("dm_3_8", 9_007_199_254_740_000, "\"seq\":5 inside"),
        ] {
            let msg = message(room, seq, body);
            assert_eq!(Meta::seq_of_message(&msg), Some(seq));
            assert_eq!(Meta::fast_route(&msg), Some((room, seq)));
            assert_eq!(Meta::of(&msg).and_then(|m| m.seq), Some(seq));
        }
        // Another field order still works, through the full decode.
        let reordered = LayerMessage::new(
            CHAT_MESSAGE,
            serde_json::json!({"seq": 7, "type": "message", "room": "lobby"}),
        );
        assert_eq!(Meta::seq_of_message(&reordered), Some(7));
    }
}
