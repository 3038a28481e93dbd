//! The message that travels through a channel layer.

use std::borrow::Cow;

use bytes::Bytes;
use bytestring::ByteString;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::LayerError;

/// A type-tagged message whose JSON payload is serialized once and shared.
///
/// Cloning is cheap (a reference count), so a group send to 10,000 members shares one buffer.
/// The payload is always valid UTF-8 JSON text, so a WebSocket consumer can forward it as a
/// text frame without re-encoding.
///
/// Why the payload is a [`ByteString`]: its type carries the UTF-8 guarantee, so every member
/// of a room turns it into a text frame without checking the encoding again
/// ([`LayerMessage::into_text`]); that check, once per delivery, was 3 % of a busy server's
/// CPU. Text is checked once, where it enters ([`LayerMessage::from_json_bytes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerMessage {
    kind: Cow<'static, str>,
    payload: ByteString,
}

impl LayerMessage {
    /// The type of the marker a layer delivers where a channel silently lost messages: a
    /// `group_send` found it full, or messages expired before they were received. A consumer
    /// that can recover what it missed (the chat consumers read the store) does so when it
    /// sees one; the default `handle` of `chat-ws` ignores it.
    pub const MISSED: &'static str = "layer.missed";

    /// The [`LayerMessage::MISSED`] marker.
    pub fn missed() -> Self {
        Self {
            kind: Cow::Borrowed(Self::MISSED),
            payload: ByteString::from_static("{}"),
        }
    }

    /// Whether this is the [`LayerMessage::MISSED`] marker.
    pub fn is_missed(&self) -> bool {
        self.kind == Self::MISSED
    }

    /// A message of type `kind` carrying a JSON value.
    pub fn new(kind: impl Into<Cow<'static, str>>, value: serde_json::Value) -> Self {
        Self {
            kind: kind.into(),
            payload: ByteString::from(value.to_string()),
        }
    }

    /// A message of type `kind` carrying `value` serialized as JSON.
    pub fn json<T: Serialize + ?Sized>(
        kind: impl Into<Cow<'static, str>>,
        value: &T,
    ) -> Result<Self, LayerError> {
        let payload = serde_json::to_string(value)?;
        Ok(Self {
            kind: kind.into(),
            payload: ByteString::from(payload),
        })
    }

    /// A message from an already-serialized JSON payload (for example one read back from
    /// Redis). Only UTF-8 validity is checked; the caller vouches that it is JSON.
    pub fn from_json_bytes(
        kind: impl Into<Cow<'static, str>>,
        payload: Bytes,
    ) -> Result<Self, LayerError> {
        Ok(Self {
            kind: kind.into(),
            payload: ByteString::try_from(payload)?,
        })
    }

    /// The message type (`chat.message`, `chat.typing`, …), used to pick a handler.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The serialized JSON payload.
    pub fn payload(&self) -> &Bytes {
        self.payload.as_bytes()
    }

    /// Takes the payload out (no copy, and no reference-count traffic for a clone).
    pub fn into_payload(self) -> Bytes {
        self.payload.into_bytes()
    }

    /// Takes the payload out as text, still known to be UTF-8 (no copy, no check).
    pub fn into_text(self) -> ByteString {
        self.payload
    }

    /// The payload as text.
    pub fn payload_str(&self) -> &str {
        &self.payload
    }

    /// Decodes the payload.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, LayerError> {
        Ok(serde_json::from_str(&self.payload)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_is_shared_not_copied() {
        let m = LayerMessage::new("chat.message", serde_json::json!({"message": "oi"}));
        let c = m.clone();
        assert_eq!(m.payload().as_ptr(), c.payload().as_ptr());
        assert_eq!(c.kind(), "chat.message");
        assert_eq!(c.decode::<serde_json::Value>().unwrap()["message"], "oi");
    }

    #[test]
    fn the_payload_comes_out_as_text_without_a_copy() {
        let m = LayerMessage::json("chat.message", &serde_json::json!({"message": "olá"})).unwrap();
        let at = m.payload().as_ptr();
        let text = m.clone().into_text();
        assert_eq!(&*text, r#"{"message":"olá"}"#);
        assert_eq!(text.as_bytes().as_ptr(), at);
        assert_eq!(m.payload_str(), &*text);
    }

    #[test]
    fn rejects_non_utf8() {
        assert!(LayerMessage::from_json_bytes("x", Bytes::from_static(&[0xff, 0xfe])).is_err());
    }
}
