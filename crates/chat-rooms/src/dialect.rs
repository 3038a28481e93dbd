//! How a socket's messages are written out. Every socket of a room shares the same rooms,
//! seqs and store; only the text it receives differs: our protocol's frames, the frames of
//! the Channels tutorials our users come from, or Socket.IO events.
//!
//! A live message travels the channel layer once, as our `message` frame (serialized once for
//! every recipient). Sockets that speak our protocol forward it as it is; the others render it
//! from the decoded [`StoredMessage`], so a room mixing clients costs a decode only for the
//! sockets that need one.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use chat_core::{FrameError, LayerMessage, Sender, ServerFrame, StoredMessage};
use chat_ws::Utf8Bytes;
use serde_json::json;
use time::UtcOffset;
use time::macros::format_description;

thread_local! {
    static RENDERED: RefCell<Rendered> = RefCell::new(Rendered::default());
}

/// Live messages a thread rendered lately, at most.
const RENDERED_KEEP: usize = 512;

/// Live messages rendered lately, by dialect and payload. A payload is known by its address:
/// the layer shares one payload among a message's recipients, and the entry keeps it alive,
/// so the address cannot be reused for another message meanwhile.
#[derive(Default)]
struct Rendered {
    texts: HashMap<(Render, usize), (Bytes, Utf8Bytes)>,
    order: VecDeque<(Render, usize)>,
}

impl Rendered {
    fn get(&self, render: Render, payload: &Bytes) -> Option<Utf8Bytes> {
        let (source, text) = self.texts.get(&(render, payload.as_ptr() as usize))?;
        (source.len() == payload.len()).then(|| text.clone())
    }

    fn put(&mut self, render: Render, payload: &Bytes, text: &Utf8Bytes) {
        let key = (render, payload.as_ptr() as usize);
        if self
            .texts
            .insert(key, (payload.clone(), text.clone()))
            .is_none()
        {
            self.order.push_back(key);
        }
        while self.order.len() > RENDERED_KEEP {
            if let Some(old) = self.order.pop_front() {
                self.texts.remove(&old);
            }
        }
    }
}

/// The Channels tutorials whose frames a [`TutorialConsumer`](crate::TutorialConsumer)
/// speaks, each exactly as its page script expects them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tutorial {
    /// The tutor and vet pair chat (seed 000): `{"mensagem"}` in,
    /// `{"mensagem","enviado_por","data_envio"}` out.
    PairChat,
    /// Rooms by name (seeds 002 and 004): `{"message"}` in, `{"message","remetente"}` out.
    NamedRoom,
    /// The smallest Channels app (seed 003): `{"message","message2"}` in,
    /// `{"type":"chat","message","message2"}` out.
    SocketServer,
}

/// Seed 003's second field is kept in the stored body, after a line break and this invisible
/// separator, so that its sockets get the two fields back apart while every other client sees
/// one readable message.
pub const MESSAGE2_SEPARATOR: &str = "\n\u{2063}";

/// What a socket's client reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Render {
    /// Our protocol's frames.
    Native,
    /// A tutorial's frames; times in the given offset.
    Tutorial(Tutorial, UtcOffset),
    /// Socket.IO events, in the envelope of [`crate::socketio`].
    SocketIo,
}

impl Render {
    /// The text that carries a stored message to this socket.
    pub fn message(self, m: &StoredMessage) -> String {
        match self {
            Self::Native => ServerFrame::Message(m.clone()).to_json(),
            Self::Tutorial(t, offset) => tutorial_message(t, offset, m).to_string(),
            Self::SocketIo => crate::socketio::event("new_message", &crate::socketio::message(m)),
        }
    }

    /// The text that carries a live message (the layer's `message` frame) to this socket, or
    /// `None` when the payload is forwarded as it is.
    ///
    /// A room's message reaches all its members on this process's few worker threads, and
    /// each member takes a burst of messages at a time: each thread keeps the messages it
    /// rendered lately, so a message is decoded and rendered about once per thread instead of
    /// once per member, and every member shares its text.
    pub fn live(self, msg: &LayerMessage) -> Option<Result<Utf8Bytes, String>> {
        if self == Self::Native {
            return None;
        }
        let payload = msg.payload();
        if let Some(text) = RENDERED.with_borrow(|r| r.get(self, payload)) {
            return Some(Ok(text));
        }
        let text = match msg.decode::<ServerFrame>() {
            Ok(ServerFrame::Message(m)) => Utf8Bytes::from(self.message(&m)),
            Ok(_) => return Some(Err("a chat.message that is not a message frame".into())),
            Err(e) => return Some(Err(e.to_string())),
        };
        RENDERED.with_borrow_mut(|r| r.put(self, payload, &text));
        Some(Ok(text))
    }

    /// The text that tells this socket a frame was refused.
    pub fn error(self, e: &FrameError) -> String {
        match self {
            Self::Native => e.to_frame().to_json(),
            Self::Tutorial(..) => json!({ "error": e.message }).to_string(),
            Self::SocketIo => crate::socketio::event("error", &crate::socketio::error(e)),
        }
    }
}

/// Seed 000's `enviado_por`: the sender's role in capitals (`tutor` → `TUTOR`, `vet` or
/// `veterinario` → `VETERINARIO`); a sender without a role is shown by name.
pub(crate) fn role_label(sender: &Sender) -> String {
    match sender.role.as_deref().map(str::to_lowercase).as_deref() {
        Some("tutor") => "TUTOR".into(),
        Some("vet" | "veterinario" | "veterinário") => "VETERINARIO".into(),
        Some(role) if !role.is_empty() => role.to_uppercase(),
        _ => sender.name.clone(),
    }
}

fn hour_minute(m: &StoredMessage, offset: UtcOffset) -> String {
    let fmt = format_description!("[hour]:[minute]");
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(m.sent_at.unix_millis()) * 1_000_000)
        .ok()
        .and_then(|t| t.to_offset(offset).format(&fmt).ok())
        .unwrap_or_default()
}

fn tutorial_message(t: Tutorial, offset: UtcOffset, m: &StoredMessage) -> serde_json::Value {
    match t {
        Tutorial::PairChat => json!({
            "mensagem": m.body,
            "enviado_por": role_label(&m.sender),
            "data_envio": hour_minute(m, offset),
        }),
        Tutorial::NamedRoom => json!({ "message": m.body, "remetente": m.sender.name }),
        Tutorial::SocketServer => {
            let (message, message2) = m
                .body
                .split_once(MESSAGE2_SEPARATOR)
                .unwrap_or((m.body.as_str(), ""));
            json!({ "type": "chat", "message": message, "message2": message2 })
        }
    }
}

#[cfg(test)]
mod tests {
    use chat_core::{RoomName, Timestamp};

    use super::*;

    fn stored(body: &str, sender: Sender) -> StoredMessage {
        StoredMessage {
            attachment: None,
            room: RoomName::parse("dm_3_8").unwrap_or_else(|e| panic!("{e}")),
            seq: 4,
            sender,
            body: body.into(),
            client_id: None,
            // 2026-11-18T12:34:56Z
            sent_at: Timestamp::from_unix_millis(1_795_005_296_000),
        }
    }

    #[test]
    fn seed_000_frames_name_the_role_and_the_local_time() {
        let offset = UtcOffset::from_hms(-3, 0, 0).unwrap_or_else(|e| panic!("{e}"));
        let vet = Sender::user(8, "Bruno", Some("vet".into()));
        let text = Render::Tutorial(Tutorial::PairChat, offset).message(&stored("oi", vet));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        assert_eq!(
            v,
            json!({"mensagem": "oi", "enviado_por": "VETERINARIO", "data_envio": "09:34"})
        );
        assert_eq!(
            role_label(&Sender::user(3, "Ana", Some("Tutor".into()))),
            "TUTOR"
        );
        assert_eq!(role_label(&Sender::guest("ana")), "ana");
        assert_eq!(
            role_label(&Sender::user(5, "C", Some("admin".into()))),
            "ADMIN"
        );
    }

    #[test]
    fn seed_003_gets_its_two_fields_back_apart() {
        let r = Render::Tutorial(Tutorial::SocketServer, UtcOffset::UTC);
        let body = format!("oi{MESSAGE2_SEPARATOR}tudo bem?");
        let v: serde_json::Value =
            serde_json::from_str(&r.message(&stored(&body, Sender::guest("a"))))
                .unwrap_or_default();
        assert_eq!(
            v,
            json!({"type": "chat", "message": "oi", "message2": "tudo bem?"})
        );
        let v: serde_json::Value =
            serde_json::from_str(&r.message(&stored("a\nb", Sender::guest("a"))))
                .unwrap_or_default();
        assert_eq!(
            v,
            json!({"type": "chat", "message": "a\nb", "message2": ""})
        );
    }

    #[test]
    fn tutorial_errors_are_a_sentence() {
        let r = Render::Tutorial(Tutorial::NamedRoom, UtcOffset::UTC);
        let e = FrameError::new(chat_core::ErrorCode::EmptyMessage, "the message is empty");
        assert_eq!(r.error(&e), r#"{"error":"the message is empty"}"#);
    }
}
