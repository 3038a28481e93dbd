//! Just enough of a Socket.IO client for the benchmark, by hand over the WebSocket client:
//! Engine.IO v4 (WebSocket transport only, so one packet per frame) carrying Socket.IO v5.
//!
//! ```text
//! GET /socket.io/?EIO=4&transport=websocket&name=u7     (the guest's name for chat-server)
//! <- 0{"sid":…,"pingInterval":…}                        Engine.IO open
//! -> 40/chat,                                           connect to namespace /chat ("40" for /)
//! <- 40/chat,{"sid":…}                                  connected (44/chat,{…}: refused)
//! -> 42/chat,0["join_chat",{"chat_id":"r0"}]            join; ack id 0 only if the server acks
//! <- 43/chat,0[…]                                       its ack
//! -> 42/chat,1["send_message",{"chat_id":"r0","conteudo":"T@…","client_id":"c1"}]
//! <- 43/chat,1[{"seq":1}]                               ack (chat-server only)
//! <- 42/chat,["new_message",{"chat_id":"r0","conteudo":"T@…",…}]
//! <- 2   -> 3                                           Engine.IO ping and pong
//! ```
//!
//! The Node peer (namespace `/`) sends no acks; chat-server (namespace `/chat`) acks joins and
//! sends with the Socket.IO ack callback.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::client::{Frame, Ws};

/// The Engine.IO pong, the answer to every ping (`2`).
pub const PONG: &str = "3";

/// How long the handshake and the join may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// A Socket.IO namespace as the client addresses it, with its packet prefixes made once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    /// `/` or `/chat`.
    pub name: String,
    /// Whether the server acknowledges `join_chat` and `send_message` (chat-server) or not
    /// (the Node peer).
    pub acks: bool,
    /// `42` followed by the namespace's `/chat,` (nothing for `/`).
    event: String,
    /// `43` and the namespace.
    ack: String,
    /// `40` and the namespace.
    connect: String,
    /// `44` and the namespace.
    connect_error: String,
    /// `41` and the namespace.
    disconnect: String,
}

impl Namespace {
    /// The namespace `name` (`/` or `/something`); `acks`: whether the server answers events.
    pub fn new(name: &str, acks: bool) -> Self {
        let name = if name.starts_with('/') {
            name.to_owned()
        } else {
            format!("/{name}")
        };
        let part = if name == "/" {
            String::new()
        } else {
            format!("{name},")
        };
        Self {
            event: format!("42{part}"),
            ack: format!("43{part}"),
            connect: format!("40{part}"),
            connect_error: format!("44{part}"),
            disconnect: format!("41{part}"),
            name,
            acks,
        }
    }
}

/// The WebSocket path of a Socket.IO connection for the guest `name` (chat-server reads the
/// guest's name from the query; the Node peer ignores it).
pub fn path(name: &str) -> String {
    format!("/socket.io/?EIO=4&transport=websocket&name={name}")
}

/// Classifies a packet without parsing its JSON: `new_message` events, acks (errors when the
/// ack carries an `"error"`), pings, and the namespace's disconnect.
pub fn classify(ns: &Namespace, text: &str) -> Frame {
    if text == "2" {
        return Frame::Ping;
    }
    if let Some(rest) = text.strip_prefix(ns.event.as_str()) {
        let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit());
        return if rest.starts_with("[\"new_message\"") {
            Frame::Message
        } else {
            Frame::Other
        };
    }
    if let Some(rest) = text.strip_prefix(ns.ack.as_str()) {
        return if rest.contains("\"error\"") {
            Frame::Error
        } else {
            Frame::Ack
        };
    }
    if text.starts_with(ns.disconnect.as_str()) || text == "1" {
        return Frame::Closed;
    }
    Frame::Other
}

/// An event packet: `42/ns,<ack>["event",{payload}]` (no ack id without acks).
fn event(ns: &Namespace, ack: Option<u64>, name: &str, payload: &serde_json::Value) -> String {
    let ack = match ack {
        Some(id) if ns.acks => id.to_string(),
        _ => String::new(),
    };
    format!(r#"{}{ack}["{name}",{payload}]"#, ns.event)
}

/// The `send_message` packet for `body` into `chat_id`, with ack id `ack` when the server acks.
pub fn message_frame(
    ns: &Namespace,
    chat_id: &str,
    body: &str,
    client_id: u64,
    ack: u64,
) -> String {
    let payload = serde_json::json!({
        "chat_id": chat_id,
        "conteudo": body,
        "client_id": format!("c{client_id}"),
    });
    event(ns, Some(ack), "send_message", &payload)
}

/// Reads the next text packet, answering pings on the way.
async fn next_packet(ws: &mut Ws) -> Result<String, String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.as_str() == "2" => ws
                .send(Message::text(PONG))
                .await
                .map_err(|e| format!("pong: {e}"))?,
            Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_owned()),
            Some(Ok(Message::Close(c))) => return Err(format!("closed: {c:?}")),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("closed".into()),
        }
    }
}

/// Opens the Engine.IO session, connects to the namespace and joins `chat_id`; with acks,
/// waits for the join's ack, so the connection gets every message sent from then on.
pub async fn handshake(ws: &mut Ws, ns: &Namespace, chat_id: &str) -> Result<(), String> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake_steps(ws, ns, chat_id))
        .await
        .map_err(|_| format!("no Socket.IO handshake within {HANDSHAKE_TIMEOUT:?}"))?
}

async fn handshake_steps(ws: &mut Ws, ns: &Namespace, chat_id: &str) -> Result<(), String> {
    let open = next_packet(ws).await?;
    if !open.starts_with('0') {
        return Err(format!("expected the Engine.IO open packet, got {open:?}"));
    }
    ws.send(Message::text(ns.connect.clone()))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    loop {
        let packet = next_packet(ws).await?;
        if packet.starts_with(ns.connect.as_str()) {
            break;
        }
        if packet.starts_with(ns.connect_error.as_str()) {
            return Err(format!("namespace {} refused: {packet}", ns.name));
        }
    }
    let join = event(
        ns,
        Some(0),
        "join_chat",
        &serde_json::json!({ "chat_id": chat_id }),
    );
    ws.send(Message::text(join))
        .await
        .map_err(|e| format!("join: {e}"))?;
    if !ns.acks {
        // The Node peer neither acks nor answers a join; it handles a socket's packets in
        // order, and the engine lets the server settle before anyone sends.
        return Ok(());
    }
    let join_ack = format!("{}0[", ns.ack);
    loop {
        let packet = next_packet(ws).await?;
        if packet.starts_with(join_ack.as_str()) {
            return if packet.contains("\"error\"") {
                Err(format!("join_chat refused: {packet}"))
            } else {
                Ok(())
            };
        }
        if classify(ns, &packet) == Frame::Closed {
            return Err(format!("disconnected while joining: {packet}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_carry_the_namespace_and_the_ack_id() {
        let chat = Namespace::new("/chat", true);
        let root = Namespace::new("/", false);
        assert_eq!(
            message_frame(&chat, "r0", "T@1@2@", 3, 17),
            r#"42/chat,17["send_message",{"chat_id":"r0","client_id":"c3","conteudo":"T@1@2@"}]"#
        );
        assert_eq!(
            message_frame(&root, "r0", "hi", 3, 17),
            r#"42["send_message",{"chat_id":"r0","client_id":"c3","conteudo":"hi"}]"#
        );
        assert_eq!(Namespace::new("chat", true), chat);
    }

    #[test]
    fn packets_are_classified() {
        let chat = Namespace::new("/chat", true);
        let root = Namespace::new("/", false);
        assert_eq!(classify(&chat, "2"), Frame::Ping);
        assert_eq!(
            classify(
                &chat,
                r#"42/chat,["new_message",{"seq":1,"conteudo":"T@1@2@"}]"#
            ),
            Frame::Message
        );
        assert_eq!(classify(&chat, r#"43/chat,5[{"seq":1}]"#), Frame::Ack);
        assert_eq!(
            classify(&chat, r#"43/chat,5[{"error":{"code":"rate_limited"}}]"#),
            Frame::Error
        );
        assert_eq!(classify(&chat, r#"42/chat,["presence",{}]"#), Frame::Other);
        assert_eq!(classify(&chat, "41/chat,"), Frame::Closed);
        // Another namespace's packets are not ours.
        assert_eq!(
            classify(&chat, r#"42["new_message",{"conteudo":"x"}]"#),
            Frame::Other
        );
        assert_eq!(
            classify(&root, r#"42["new_message",{"conteudo":"x"}]"#),
            Frame::Message
        );
        assert_eq!(classify(&root, "41"), Frame::Closed);
        assert_eq!(classify(&root, "1"), Frame::Closed);
    }
}
