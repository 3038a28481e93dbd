//! Socket.IO's Engine.IO heartbeat follows our limits (`ping_interval`, `idle_timeout`), and
//! the vendored engineioxide's pong signal (a `Notify` instead of a channel, see
//! `vendor/README.md`) keeps a client that answers connected and closes one that stops.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use chat_core::{InMemoryChannelLayer, Limits, MemoryPresence};
use chat_rooms::server::{Chat, ChatConfig, serve};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn an_answering_client_stays_and_a_silent_one_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("chat.db").display());
    let store = chat_store::Store::open(chat_store::StoreConfig::new(&url))
        .await
        .unwrap();
    let mut config = ChatConfig::new("0123456789abcdef0123456789abcdef");
    config.limits = Limits {
        ping_interval: Duration::from_millis(200),
        idle_timeout: Duration::from_millis(1_200),
        ..Limits::default()
    };
    let chat = Chat::new(
        store,
        Arc::new(InMemoryChannelLayer::default()),
        Arc::new(MemoryPresence::new()),
        config,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(serve(listener, chat.service(), stop.clone()));

    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let next = async |ws: &mut tokio_tungstenite::WebSocketStream<_>| {
        tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("the server speaks within the wait")
    };
    let open = match next(&mut ws).await {
        Some(Ok(Message::Text(t))) => t.to_string(),
        other => panic!("expected the open packet, got {other:?}"),
    };
    let params: serde_json::Value = serde_json::from_str(&open[1..]).unwrap();
    assert_eq!(params["pingInterval"], 200, "{open}");
    assert_eq!(params["pingTimeout"], 1_000, "{open}");

    // Five pings answered: still connected (each pong must reach the heartbeat, or the
    // server closes after the first ping's timeout).
    for _ in 0..5 {
        match next(&mut ws).await {
            Some(Ok(Message::Text(t))) if t.as_str() == "2" => {
                ws.send(Message::text("3")).await.unwrap()
            }
            other => panic!("expected a ping, got {other:?}"),
        }
    }
    // Silent from now on: the server closes the session (Engine.IO's close packet, `1`, or
    // the WebSocket itself).
    loop {
        match next(&mut ws).await {
            Some(Ok(Message::Text(t))) if t.as_str() == "2" => continue,
            Some(Ok(Message::Text(t))) if t.as_str() == "1" => break,
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    stop.cancel();
}

/// The vendored engineioxide-core is the one built (`[patch.crates-io]`): each slot of a
/// socket's packet channel, 32 of which every socket keeps, is a small `PacketBuf`. Upstream's
/// is 168 bytes or more (an inline `OpenPacket`, two packets inline).
#[test]
fn the_patched_engineioxide_is_built() {
    let slot = std::mem::size_of::<engineioxide_core::PacketBuf>();
    assert!(
        slot <= 48,
        "PacketBuf is {slot} bytes: is vendor/ patched in?"
    );
}
