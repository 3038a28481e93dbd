//! End to end over real sockets: the chat-server binary, WebSocket clients, a restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Client, Server, http, http_json, request};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn room_chat_with_acks_resume_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let mut ana = Client::connect(&server.ws_url("/ws/chat/lobby/?name=ana")).await;
    let mut bruno = Client::connect(&server.ws_url("/ws/chat/lobby/?name=bruno")).await;

    ana.send(json!({"type": "message", "body": "oi", "client_id": "c-1"}))
        .await;
    let ack = ana.recv_type("ack").await;
    assert_eq!(
        ack,
        json!({"type": "ack", "room": "lobby", "client_id": "c-1", "seq": 1})
    );
    let at_ana = ana.recv_type("message").await;
    let at_bruno = bruno.recv_type("message").await;
    assert_eq!(at_ana, at_bruno, "both clients get the same message");
    assert_eq!(at_bruno["seq"], 1);
    assert_eq!(at_bruno["sender"]["name"], "ana");

    // A third client that saw seq 1 misses 2..4 and resumes with since=1.
    for i in 2..=4 {
        ana.send(json!({"type": "message", "body": format!("m{i}")}))
            .await;
        assert_eq!(ana.recv_type("ack").await["seq"], i);
    }
    let mut carol = Client::connect(&server.ws_url("/ws/chat/lobby/?name=carol&since=1")).await;
    for i in 2..=4 {
        let m = carol.recv().await;
        assert_eq!(
            (m["type"].as_str(), m["seq"].as_u64()),
            (Some("message"), Some(i))
        );
    }
    assert!(
        carol.silent(Duration::from_millis(300)).await,
        "nothing beyond the missed ones"
    );
    bruno.send(json!({"type": "message", "body": "live"})).await;
    let live = carol.recv().await;
    assert_eq!(
        (live["seq"].as_u64(), live["body"].as_str()),
        (Some(5), Some("live"))
    );

    // Graceful stop: sockets are told the server is going away, the process exits cleanly.
    let stopping = tokio::task::spawn_blocking(move || server.stop());
    assert_eq!(ana.closed().await, Some(1001));
    assert!(stopping.await.unwrap(), "clean exit on SIGTERM");

    // Restart on the same data: history survives, seqs continue.
    let server = Server::start(dir.path(), &[]);
    let (status, page) = http_json(&server.addr, "GET", "/api/rooms/lobby/messages", None).await;
    assert_eq!(status, 200);
    let seqs: Vec<u64> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
    assert_eq!(page["messages"][0]["type"], "message");
    assert_eq!(page["has_more"], false);
    let mut dora = Client::connect(&server.ws_url("/ws/chat/lobby/?name=dora")).await;
    dora.send(json!({"type": "message", "body": "after restart"}))
        .await;
    assert_eq!(dora.recv_type("ack").await["seq"], 6);
}

#[tokio::test]
async fn bad_input_gets_clear_errors_over_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let mut c = Client::connect(&server.ws_url("/ws/chat/lobby/?name=ana")).await;
    let cases = [
        ("{oops", "invalid_json"),
        (r#"{"type":"dance"}"#, "unknown_type"),
        (r#"{"type":"message","body":"  "}"#, "empty_message"),
    ];
    for (frame, code) in cases {
        c.send_text(frame).await;
        let e = c.recv().await;
        assert_eq!(
            (e["type"].as_str(), e["code"].as_str()),
            (Some("error"), Some(code)),
            "{frame}"
        );
    }
    let (status, page) = http_json(&server.addr, "GET", "/api/rooms/lobby/messages", None).await;
    assert_eq!(status, 200);
    assert_eq!(page["messages"], json!([]), "bad frames store nothing");

    // An oversized frame closes the socket with 1009.
    c.send_raw(Message::Text("x".repeat(70 * 1024).into()))
        .await;
    assert_eq!(c.closed().await, Some(1009));
}

#[tokio::test]
async fn invalid_room_and_foreign_origin_are_refused_before_the_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let bad = Client::try_connect(&server.ws_url("/ws/chat/bad%20name!/"), None).await;
    assert_eq!(bad.err(), Some(400));
    let too_long = format!("/ws/chat/{}/", "x".repeat(65));
    assert_eq!(
        Client::try_connect(&server.ws_url(&too_long), None)
            .await
            .err(),
        Some(400)
    );
    let evil = Client::try_connect(
        &server.ws_url("/ws/chat/lobby/"),
        Some("http://evil.example"),
    )
    .await;
    assert_eq!(evil.err(), Some(403));
    let own = format!("http://{}", server.addr);
    assert!(
        Client::try_connect(&server.ws_url("/ws/chat/lobby/"), Some(&own))
            .await
            .is_ok()
    );
    let dm = Client::try_connect(&server.ws_url("/ws/dm/3/"), None).await;
    assert_eq!(dm.err(), Some(401));
}

#[tokio::test]
async fn a_flood_is_rate_limited_and_only_accepted_messages_are_stored() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let mut c = Client::connect(&server.ws_url("/ws/chat/flood/?name=ana")).await;
    // 40 pass (the burst) plus what refills meanwhile; the rest are refused. Fewer than the ~50
    // refusals that close a socket for abuse, and enough that a slow machine still hits the
    // limit (it would need over 2 s to refill 45 tokens).
    const SENT: u64 = 85;
    for i in 0..SENT {
        c.send(json!({"type": "message", "body": format!("m{i}")}))
            .await;
    }
    let (mut acks, mut limited) = (0u64, 0u64);
    while acks + limited < SENT {
        let v = c.recv().await;
        match (v["type"].as_str(), v["code"].as_str()) {
            (Some("ack"), _) => acks += 1,
            (Some("error"), Some("rate_limited")) => limited += 1,
            (Some("message"), _) => {}
            _ => panic!("unexpected {v}"),
        }
    }
    assert!(limited > 0, "a flood of {SENT} must hit the limit");
    assert!(acks >= 40, "the burst of 40 is allowed");
    let (_, page) = http_json(
        &server.addr,
        "GET",
        "/api/rooms/flood/messages?limit=200",
        None,
    )
    .await;
    assert_eq!(page["messages"].as_array().unwrap().len() as u64, acks);
}

#[tokio::test]
async fn http_api_posts_reach_sockets_and_history_pages() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let mut watcher = Client::connect(&server.ws_url("/ws/chat/api-room/?name=w")).await;
    let post = json!({"body": "from http", "client_id": "h-1", "name": "svc"}).to_string();
    let json_type = ("content-type", "application/json");
    let path = "/api/rooms/api-room/messages";
    let first = request(&server.addr, "POST", path, &[json_type], Some(&post)).await;
    assert_eq!(first.status, 201, "{}", first.body);
    assert_eq!(
        (first.json()["type"].as_str(), first.json()["seq"].as_u64()),
        (Some("message"), Some(1))
    );
    // A guest is the guest of its `chat_guest` cookie: the retry sends back the one the first
    // answer set.
    let cookie = first
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .expect("a guest post without the guest cookie gets one")
        .to_owned();
    let again = request(
        &server.addr,
        "POST",
        path,
        &[json_type, ("cookie", &cookie)],
        Some(&post),
    )
    .await;
    assert_eq!(
        again.status, 200,
        "a repeated client_id answers the first message"
    );
    assert_eq!(again.json()["seq"], 1);
    let live = watcher.recv().await;
    assert_eq!(
        (live["body"].as_str(), live["sender"]["name"].as_str()),
        (Some("from http"), Some("svc"))
    );
    assert!(
        watcher.silent(Duration::from_millis(300)).await,
        "the repeat is not broadcast"
    );

    for i in 2..=5 {
        let (s, _) = http_json(
            &server.addr,
            "POST",
            "/api/rooms/api-room/messages",
            Some(json!({"body": format!("m{i}"), "name": "svc"})),
        )
        .await;
        assert_eq!(s, 201);
    }
    let (_, page) = http_json(
        &server.addr,
        "GET",
        "/api/rooms/api-room/messages?before=5&limit=2",
        None,
    )
    .await;
    let seqs: Vec<u64> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![3, 4]);
    assert_eq!(page["has_more"], true);
    let (_, page) = http_json(
        &server.addr,
        "GET",
        "/api/rooms/api-room/messages?after=3",
        None,
    )
    .await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 2);
    assert_eq!(page["has_more"], false);

    let errors = [
        (
            "GET",
            "/api/rooms/bad%20room/messages",
            None,
            400,
            "invalid_room",
        ),
        (
            "GET",
            "/api/rooms/lobby/messages?after=x",
            None,
            400,
            "invalid_json",
        ),
        (
            "POST",
            "/api/rooms/lobby/messages",
            Some("{nope"),
            400,
            "invalid_json",
        ),
        (
            "POST",
            "/api/rooms/lobby/messages",
            Some(r#"{"body":" ","name":"a"}"#),
            422,
            "empty_message",
        ),
        (
            "POST",
            "/api/rooms/lobby/messages",
            Some(r#"{"body":"hi"}"#),
            400,
            "invalid_json",
        ),
    ];
    for (method, path, body, want_status, want_code) in errors {
        let (status, text) = http(&server.addr, method, path, body).await;
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (want_status, Some(want_code)),
            "{method} {path}: {text}"
        );
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    let big = json!({"body": "x".repeat(4_001), "name": "a"}).to_string();
    let (status, _) = http(
        &server.addr,
        "POST",
        "/api/rooms/lobby/messages",
        Some(&big),
    )
    .await;
    assert_eq!(status, 413);
    let huge = json!({"body": "x".repeat(70_000), "name": "a"}).to_string();
    let (status, _) = http(
        &server.addr,
        "POST",
        "/api/rooms/lobby/messages",
        Some(&huge),
    )
    .await;
    assert_eq!(status, 413);
}

#[tokio::test]
async fn pages_and_probes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let (status, body) = http(&server.addr, "GET", "/", None).await;
    assert_eq!(status, 200);
    assert!(body.contains("<html") || body.contains("<!doctype") || body.contains("<!DOCTYPE"));
    assert_eq!(http(&server.addr, "GET", "/chat/lobby/", None).await.0, 200);
    let (status, body) = http(&server.addr, "GET", "/chat/bad%20name/", None).await;
    assert_eq!(status, 400);
    assert!(
        body.contains("letters"),
        "the page says what is wrong: {body}"
    );
    assert_eq!(http(&server.addr, "GET", "/chat/lobby", None).await.0, 301);
    assert_eq!(
        http(&server.addr, "GET", "/static/app.js", None).await.0,
        200
    );
    assert_eq!(
        http(&server.addr, "GET", "/static/nope.js", None).await.0,
        404
    );
    assert_eq!(http(&server.addr, "GET", "/healthz", None).await.0, 200);
    assert_eq!(http(&server.addr, "GET", "/readyz", None).await.0, 200);
    assert_eq!(http(&server.addr, "GET", "/nothing", None).await.0, 404);
}
