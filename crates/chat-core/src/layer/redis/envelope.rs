//! What travels over Redis Pub/Sub: the sending node, the target channel (for point-to-point
//! sends), the message type and the payload, in a small text frame:
//! `v1\n<origin node>\n<target channel or empty>\n<type>\n<payload>`. The payload is JSON
//! and goes last, so it may contain anything.

use bytes::Bytes;

use crate::layer::{LayerError, LayerMessage};

/// A decoded envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Envelope {
    pub origin: String,
    pub target: Option<String>,
    pub message: LayerMessage,
}

/// Encodes a message for Pub/Sub.
pub(crate) fn encode(origin: &str, target: Option<&str>, msg: &LayerMessage) -> Vec<u8> {
    let target = target.unwrap_or("");
    let mut out = Vec::with_capacity(16 + origin.len() + target.len() + msg.payload().len());
    for part in [
        b"v1".as_slice(),
        origin.as_bytes(),
        target.as_bytes(),
        msg.kind().as_bytes(),
    ] {
        out.extend_from_slice(part);
        out.push(b'\n');
    }
    out.extend_from_slice(msg.payload());
    out
}

/// Decodes an envelope; `None` for anything that is not one (another program on the topic).
pub(crate) fn decode(raw: &[u8]) -> Result<Envelope, LayerError> {
    let bad = || LayerError::NotAnEnvelope;
    let mut parts = raw.splitn(5, |b| *b == b'\n');
    let version = parts.next().ok_or_else(bad)?;
    if version != b"v1" {
        return Err(bad());
    }
    let mut text = || -> Result<String, LayerError> {
        let p = parts.next().ok_or_else(bad)?;
        String::from_utf8(p.to_vec()).map_err(|_| bad())
    };
    let origin = text()?;
    let target = text()?;
    let kind = text()?;
    let payload = parts.next().ok_or_else(bad)?;
    let message = LayerMessage::from_json_bytes(kind, Bytes::copy_from_slice(payload))?;
    Ok(Envelope {
        origin,
        target: (!target.is_empty()).then_some(target),
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let msg = LayerMessage::new("chat.message", serde_json::json!({"body": "a\nb"}));
        let raw = encode("n1", Some("specific.n1!3"), &msg);
        let e = decode(&raw).unwrap();
        assert_eq!(e.origin, "n1");
        assert_eq!(e.target.as_deref(), Some("specific.n1!3"));
        assert_eq!(e.message, msg);
        let e = decode(&encode("n2", None, &msg)).unwrap();
        assert_eq!(e.target, None);
    }

    #[test]
    fn rejects_foreign_payloads() {
        assert!(decode(b"hello").is_err());
        assert!(decode(b"v1\nn1\n").is_err());
        assert!(decode(b"v2\nn1\n\nk\n{}").is_err());
    }
}
