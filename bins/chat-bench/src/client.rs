//! The benchmark's clients: WebSocket connections that speak either our protocol or the Django
//! Channels tutorial's, and messages that carry their send time so a receipt gives the latency.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// A client connection.
pub type Ws = WebSocketStream<TcpStream>;

/// The wire protocol of the server under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Ours (chat-server and the baseline): `{"type":"message","body":…}` in, `message` and
    /// `ack` frames out.
    Ours,
    /// The Django Channels tutorial's: `{"message": …}` both ways, no acks.
    Django,
}

/// Where the server is and how to greet it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The server's address.
    pub addr: SocketAddr,
    /// Its protocol.
    pub protocol: Protocol,
}

/// The process-wide zero of the send stamps (sender and receiver are this process).
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds since [`epoch`].
pub fn now_nanos() -> u64 {
    u64::try_from(epoch().elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// A message body stamped with its send time and sender: `T@<nanos>@<sender>@` and padding
/// up to `size` bytes.
pub fn stamped_body(sender: usize, size: usize) -> String {
    let mut body = format!("T@{}@{sender}@", now_nanos());
    while body.len() < size {
        body.push('x');
    }
    body
}

/// The stamp of a received message: (latency, sender).
pub fn read_stamp(text: &str) -> Option<(Duration, usize)> {
    let rest = &text[text.find("T@")? + 2..];
    let (sent, rest) = rest.split_once('@')?;
    let (sender, _) = rest.split_once('@')?;
    let sent: u64 = sent.parse().ok()?;
    Some((
        Duration::from_nanos(now_nanos().saturating_sub(sent)),
        sender.parse().ok()?,
    ))
}

/// What a received frame is, as far as the benchmark cares.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A chat message (its text carries the stamp).
    Message,
    /// The acknowledgement of one of our sends.
    Ack,
    /// A refusal.
    Error,
    /// `joined`: the socket is in its room.
    Joined,
    /// Anything else (presence, typing…).
    Other,
}

/// Classifies a frame without parsing all of it: the benchmark shares the machine with the
/// server, so its own per-frame cost must stay small.
pub fn classify(protocol: Protocol, text: &str) -> Frame {
    match protocol {
        Protocol::Django if text.starts_with("{\"message\"") => Frame::Message,
        Protocol::Django => Frame::Other,
        Protocol::Ours => {
            let kind = text
                .strip_prefix("{\"type\":\"")
                .and_then(|rest| rest.split('"').next());
            match kind {
                Some("message") => Frame::Message,
                Some("ack") => Frame::Ack,
                Some("error") => Frame::Error,
                Some("joined") => Frame::Joined,
                _ => Frame::Other,
            }
        }
    }
}

/// The frame that sends `body`.
pub fn message_frame(protocol: Protocol, body: &str, client_id: u64) -> String {
    let body = serde_json::Value::from(body);
    match protocol {
        Protocol::Ours => {
            format!(r#"{{"type":"message","body":{body},"client_id":"c{client_id}"}}"#)
        }
        Protocol::Django => format!(r#"{{"message":{body}}}"#),
    }
}

/// Connects connection number `n` to `path` with extra handshake headers.
pub async fn connect(
    endpoint: &Endpoint,
    path: &str,
    headers: &[(&'static str, String)],
    n: usize,
) -> Result<Ws, String> {
    let url = format!("ws://{}{path}", endpoint.addr);
    let mut req = url
        .as_str()
        .into_client_request()
        .map_err(|e| e.to_string())?;
    // Django's AllowedHostsOriginValidator wants an Origin of an allowed host.
    let origin = format!("http://{}", endpoint.addr);
    req.headers_mut().insert(
        "origin",
        HeaderValue::from_str(&origin).map_err(|e| e.to_string())?,
    );
    for (k, v) in headers {
        req.headers_mut()
            .insert(*k, HeaderValue::from_str(v).map_err(|e| e.to_string())?);
    }
    let stream = crate::net::connect(endpoint.addr, n)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let config = WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0);
    let (ws, _) = tokio_tungstenite::client_async_with_config(req, stream, Some(config))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    Ok(ws)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip_through_both_protocols() {
        let body = stamped_body(42, 64);
        assert_eq!(body.len(), 64);
        for protocol in [Protocol::Ours, Protocol::Django] {
            let frame = message_frame(protocol, &body, 7);
            let (latency, sender) = read_stamp(&frame).unwrap();
            assert_eq!(sender, 42);
            assert!(latency < Duration::from_secs(5));
        }
        assert_eq!(read_stamp("no stamp here"), None);
    }

    #[test]
    fn frames_are_classified() {
        use Protocol::*;
        assert_eq!(
            classify(Ours, r#"{"type":"message","seq":1}"#),
            Frame::Message
        );
        assert_eq!(classify(Ours, r#"{"type":"ack","seq":1}"#), Frame::Ack);
        assert_eq!(
            classify(Ours, r#"{"type":"error","code":"x"}"#),
            Frame::Error
        );
        assert_eq!(classify(Ours, r#"{"type":"joined"}"#), Frame::Joined);
        assert_eq!(classify(Ours, r#"{"type":"presence"}"#), Frame::Other);
        assert_eq!(classify(Django, r#"{"message": "T@1@2@"}"#), Frame::Message);
        assert_eq!(classify(Django, r#"{"other": 1}"#), Frame::Other);
    }
}
