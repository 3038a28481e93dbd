//! The benchmark's clients: WebSocket connections that speak our protocol, the Django Channels
//! tutorial's or Socket.IO's (see [`crate::socketio`]), and messages that carry their send time
//! so a receipt gives the latency.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use futures_util::StreamExt;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::socketio::{self, Namespace};

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
    /// Socket.IO (Engine.IO v4 over WebSocket): `join_chat`, `send_message` and `new_message`
    /// events in a namespace (`/chat` on chat-server, with acks; `/` on the Node peer).
    #[value(name = "socketio")]
    SocketIo,
}

impl Protocol {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Ours => "ours",
            Protocol::Django => "django",
            Protocol::SocketIo => "socketio",
        }
    }
}

/// Where the server is and how to greet it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The server's address; several for the nodes of one cluster, which connection `n`
    /// reaches as node `n % len` (see [`Endpoint::addr`]).
    pub addrs: Vec<SocketAddr>,
    /// Its protocol.
    pub protocol: Protocol,
    /// The Socket.IO namespace (with [`Protocol::SocketIo`] only).
    pub sio: Namespace,
}

impl Endpoint {
    /// The node connection `n` uses: round robin over the addresses.
    pub fn addr(&self, n: usize) -> SocketAddr {
        match self.addrs.as_slice() {
            [] => SocketAddr::from(([127, 0, 0, 1], 0)),
            addrs => addrs[n % addrs.len()],
        }
    }

    /// Whether the server acknowledges each send (else the sender's own copy is the answer).
    pub fn has_acks(&self) -> bool {
        match self.protocol {
            Protocol::Ours => true,
            Protocol::Django => false,
            Protocol::SocketIo => self.sio.acks,
        }
    }
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

/// A message body stamped with its send time, its sender and the sender's number for it:
/// `T@<nanos>@<sender>@<n>@` and padding up to `size` bytes.
pub fn stamped_body(sender: usize, n: u64, size: usize) -> String {
    let mut body = format!("T@{}@{sender}@{n}@", now_nanos());
    while body.len() < size {
        body.push('x');
    }
    body
}

/// What the stamp of a received message says.
#[derive(Debug, PartialEq, Eq)]
pub struct Stamp {
    /// From send to now.
    pub latency: Duration,
    /// The sending connection.
    pub sender: usize,
    /// The sender's number for this message (0, 1, …).
    pub n: u64,
}

/// The stamp of a received message (the first `T@…@…@…@` in the frame), read at `now`
/// (from [`now_nanos`]).
pub fn read_stamp(text: &str, now: u64) -> Option<Stamp> {
    let rest = &text[text.find("T@")? + 2..];
    let (sent, rest) = rest.split_once('@')?;
    let (sender, rest) = rest.split_once('@')?;
    let (n, _) = rest.split_once('@')?;
    let sent: u64 = sent.parse().ok()?;
    Some(Stamp {
        latency: Duration::from_nanos(now.saturating_sub(sent)),
        sender: sender.parse().ok()?,
        n: n.parse().ok()?,
    })
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
    /// An Engine.IO ping, to be answered with a pong.
    Ping,
    /// The server ended the session (a Socket.IO disconnect).
    Closed,
    /// Anything else (presence, typing…).
    Other,
}

/// Classifies a frame without parsing all of it: the benchmark shares the machine with the
/// server, so its own per-frame cost must stay small.
pub fn classify(endpoint: &Endpoint, text: &str) -> Frame {
    match endpoint.protocol {
        Protocol::SocketIo => socketio::classify(&endpoint.sio, text),
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

/// The frame that sends `body` into `chat_id` (the room of the path, except in Socket.IO);
/// `n`: how many this connection sent before (its Socket.IO ack id is `n + 1`).
pub fn message_frame(
    endpoint: &Endpoint,
    chat_id: &str,
    body: &str,
    client_id: u64,
    n: u64,
) -> String {
    match endpoint.protocol {
        Protocol::Ours => {
            let body = serde_json::Value::from(body);
            format!(r#"{{"type":"message","body":{body},"client_id":"c{client_id}"}}"#)
        }
        Protocol::Django => {
            let body = serde_json::Value::from(body);
            format!(r#"{{"message":{body}}}"#)
        }
        Protocol::SocketIo => {
            socketio::message_frame(&endpoint.sio, chat_id, body, client_id, n + 1)
        }
    }
}

/// Opens connection number `n` and, in our protocol, waits for its `joined` (its group
/// membership is in place, so it will get every message sent from now on); in Socket.IO,
/// connects to the namespace and joins `chat_id` (waiting for the join's ack when the server
/// acks).
pub async fn open(
    endpoint: &Endpoint,
    path: &str,
    headers: &[(&'static str, String)],
    chat_id: &str,
    n: usize,
) -> Result<Ws, String> {
    let mut ws = connect(endpoint, path, headers, n).await?;
    match endpoint.protocol {
        Protocol::SocketIo => socketio::handshake(&mut ws, &endpoint.sio, chat_id).await?,
        Protocol::Ours => {
            let joined = async {
                loop {
                    match ws.next().await {
                        Some(Ok(Message::Text(t))) if classify(endpoint, &t) == Frame::Joined => {
                            return Ok(());
                        }
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return Err(e.to_string()),
                        None => return Err("closed before joined".to_owned()),
                    }
                }
            };
            tokio::time::timeout(Duration::from_secs(30), joined)
                .await
                .map_err(|_| "no joined frame within 30 s".to_owned())??;
        }
        Protocol::Django => {}
    }
    Ok(ws)
}

/// Bytes a client reads from its socket at a time: a chat message frame or two.
const READ_CHUNK: usize = 1024;

/// Connects connection number `n` to `path` with extra handshake headers.
pub async fn connect(
    endpoint: &Endpoint,
    path: &str,
    headers: &[(&'static str, String)],
    n: usize,
) -> Result<Ws, String> {
    let addr = endpoint.addr(n);
    let url = format!("ws://{addr}{path}");
    let mut req = url
        .as_str()
        .into_client_request()
        .map_err(|e| e.to_string())?;
    // Django's AllowedHostsOriginValidator wants an Origin of an allowed host.
    let origin = format!("http://{addr}");
    req.headers_mut().insert(
        "origin",
        HeaderValue::from_str(&origin).map_err(|e| e.to_string())?,
    );
    for (k, v) in headers {
        req.headers_mut()
            .insert(*k, HeaderValue::from_str(v).map_err(|e| e.to_string())?);
    }
    let stream = crate::net::connect(addr, n)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    // tungstenite zeroes its read chunk before every read: at a frame per read (a room at a
    // few hundred messages a second) a 4 KiB chunk made the memset the load tool's top
    // symbol. A burst of frames is still read in a few reads.
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_CHUNK)
        .write_buffer_size(0);
    let (ws, _) = tokio_tungstenite::client_async_with_config(req, stream, Some(config))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    Ok(ws)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(protocol: Protocol) -> Endpoint {
        Endpoint {
            addrs: vec![SocketAddr::from(([127, 0, 0, 1], 1))],
            protocol,
            sio: Namespace::new("/chat", true),
        }
    }

    #[test]
    fn stamps_round_trip_through_every_protocol() {
        let body = stamped_body(42, 9, 64);
        assert_eq!(body.len(), 64);
        for protocol in [Protocol::Ours, Protocol::Django, Protocol::SocketIo] {
            let frame = message_frame(&endpoint(protocol), "r0", &body, 7, 0);
            let stamp = read_stamp(&frame, now_nanos()).unwrap();
            assert_eq!((stamp.sender, stamp.n), (42, 9));
            assert!(stamp.latency < Duration::from_secs(5));
        }
        assert_eq!(read_stamp("no stamp here", now_nanos()), None);
        assert!(endpoint(Protocol::Ours).has_acks() && endpoint(Protocol::SocketIo).has_acks());
        assert!(!endpoint(Protocol::Django).has_acks());
    }

    #[test]
    fn frames_are_classified() {
        let (ours, django) = (&endpoint(Protocol::Ours), &endpoint(Protocol::Django));
        assert_eq!(
            classify(ours, r#"{"type":"message","seq":1}"#),
            Frame::Message
        );
        assert_eq!(classify(ours, r#"{"type":"ack","seq":1}"#), Frame::Ack);
        assert_eq!(
            classify(ours, r#"{"type":"error","code":"x"}"#),
            Frame::Error
        );
        assert_eq!(classify(ours, r#"{"type":"joined"}"#), Frame::Joined);
        assert_eq!(classify(ours, r#"{"type":"presence"}"#), Frame::Other);
        assert_eq!(classify(django, r#"{"message": "T@1@2@"}"#), Frame::Message);
        assert_eq!(classify(django, r#"{"other": 1}"#), Frame::Other);
    }
}
