//! Limits of what a client may send before it is even routed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Client, Server, WAIT, http, request};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

/// Sends a GET with a cookie of `size` bytes and returns the response's status line.
async fn status_with_cookie(addr: &str, size: usize) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nCookie: big={}\r\nConnection: close\r\n\r\n",
        "x".repeat(size)
    );
    // The server may answer (and close) before the whole head is written.
    let _ = s.write_all(req.as_bytes()).await;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn a_request_head_over_16_kib_gets_431() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    assert_eq!(
        status_with_cookie(&server.addr, 8 * 1024).await,
        "HTTP/1.1 200 OK"
    );
    assert_eq!(
        status_with_cookie(&server.addr, 20 * 1024).await,
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
}

/// Sends a request head announcing a 1,000-byte body, then only `part` of the body, and
/// stalls. Returns the status line the server answers with and how long it took; panics if it
/// neither answers nor closes within [`WAIT`].
async fn stalled_body(
    addr: &str,
    path: &str,
    content_type: &str,
    part: &str,
) -> (String, Duration) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: 1000\r\n\r\n{part}"
    );
    let started = Instant::now();
    s.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .unwrap_or_else(|_| panic!("POST {path}: a stalled body still holds the connection"))
        .unwrap();
    let status = String::from_utf8_lossy(&out)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    (status, started.elapsed())
}

#[tokio::test]
async fn a_stalled_request_body_gets_408_within_the_body_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--body-timeout", "1"]);
    let addr = server.addr.as_str();
    // An Engine.IO polling session, whose POSTs socketioxide reads itself.
    let open = request(
        addr,
        "GET",
        "/socket.io/?EIO=4&transport=polling",
        &[],
        None,
    )
    .await;
    assert_eq!(open.status, 200, "{}", open.body);
    let handshake: serde_json::Value = serde_json::from_str(&open.body[1..]).unwrap();
    let sid = handshake["sid"].as_str().unwrap();
    let json = "application/json";
    let sio_path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    let (message, login, socketio) = tokio::join!(
        stalled_body(addr, "/api/rooms/lobby/messages", json, r#"{"body": "#),
        stalled_body(addr, "/login", json, r#"{"username": "#),
        stalled_body(addr, &sio_path, "text/plain;charset=UTF-8", "40"),
    );
    for (what, (status, took)) in [
        ("message", message),
        ("login", login),
        ("socket.io", socketio),
    ] {
        assert_eq!(status, "HTTP/1.1 408 Request Timeout", "{what}");
        assert!(
            took >= Duration::from_millis(900),
            "{what}: answered before the timeout ({took:?})"
        );
    }
    // A body that arrives in time is read as before.
    let (s, _) = http(
        addr,
        "POST",
        "/api/rooms/lobby/messages",
        Some(r#"{"body": "hi", "name": "ana"}"#),
    )
    .await;
    assert_eq!(s, 201);
}

/// The next text frame of a raw WebSocket (Engine.IO packets are not JSON).
async fn next_text<S>(ws: &mut S) -> String
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let frame = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame within the wait")
            .expect("socket open")
            .unwrap();
        if let Message::Text(t) = frame {
            return t.as_str().to_owned();
        }
    }
}

/// Connects to `path` until the handshake is accepted, for at most [`WAIT`]: a closed
/// socket's slot is released by the server asynchronously.
async fn connect_when_released(server: &Server, path: &str) -> Client {
    let deadline = Instant::now() + WAIT;
    loop {
        match Client::try_connect(&server.ws_url(path), None).await {
            Ok(c) => return c,
            Err(429) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(status) => panic!("{path}: still refused ({status}) after the other socket closed"),
        }
    }
}

#[tokio::test]
async fn sockets_per_address_are_capped_and_released() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--max-sockets-per-ip", "2"]);
    let url = |p: &str| server.ws_url(p);
    // Refused handshakes hold no slot.
    for path in [
        "/ws/chat/lobby/?name=ana",
        "/ws/chat/lobby/?name=ana",
        "/socket.io/?EIO=4&transport=websocket",
    ] {
        let refused = Client::try_connect(&url(path), Some("http://evil.example")).await;
        assert_eq!(refused.err(), Some(403), "{path}");
    }
    let room = Client::connect(&url("/ws/chat/lobby/?name=ana")).await;
    let (mut socketio, _) =
        tokio_tungstenite::connect_async(url("/socket.io/?EIO=4&transport=websocket"))
            .await
            .unwrap();

    // The third, whatever its route, is refused with 429 and says why.
    for path in [
        "/ws",
        "/ws/chat/lobby/",
        "/ws/dm/1/",
        "/socket.io/?EIO=4&transport=websocket",
    ] {
        assert_eq!(
            Client::try_connect(&url(path), None).await.err(),
            Some(429),
            "{path}"
        );
    }
    let raw = request(
        &server.addr,
        "GET",
        "/ws",
        &[
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ],
        None,
    )
    .await;
    assert_eq!(raw.status, 429);
    assert!(raw.body.contains("too many sockets"), "{}", raw.body);
    // Long-polls count too.
    let (s, _) = http(
        &server.addr,
        "GET",
        "/api/rooms/lobby/poll?after=0&timeout=1",
        None,
    )
    .await;
    assert_eq!(s, 429);

    // Closing a socket frees its slot: a room socket, then a Socket.IO one.
    drop(room);
    let mux = connect_when_released(&server, "/ws").await;
    assert_eq!(
        Client::try_connect(&url("/ws"), None).await.err(),
        Some(429)
    );
    // A Socket.IO client that connects to a namespace and disconnects, as socket.io-client
    // does: a `41` packet, then the transport closes.
    assert!(
        next_text(&mut socketio).await.starts_with('0'),
        "Engine.IO open"
    );
    socketio.send(Message::text("40")).await.unwrap();
    while !next_text(&mut socketio).await.starts_with("40") {}
    socketio.send(Message::text("41")).await.unwrap();
    socketio.close(None).await.unwrap();
    let _again = connect_when_released(&server, "/socket.io/?EIO=4&transport=websocket").await;
    assert_eq!(
        Client::try_connect(&url("/ws"), None).await.err(),
        Some(429)
    );
    drop(mux);
}
