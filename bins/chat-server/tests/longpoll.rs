//! The long-poll fallback: answers at once, on the next message, or empty on timeout; held
//! polls are released when the server shuts down.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Server, http, http_json};
use serde_json::json;

#[tokio::test]
async fn poll_answers_at_once_on_new_messages_and_empty_on_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let addr = server.addr.clone();
    let post = |body: &str| json!({"body": body, "name": "svc"});
    let (s, _) = http_json(&addr, "POST", "/api/rooms/lp/messages", Some(post("first"))).await;
    assert_eq!(s, 201);

    // Something after 0 exists: at once.
    let (s, v) = http_json(&addr, "GET", "/api/rooms/lp/poll?after=0&timeout=30", None).await;
    assert_eq!(s, 200);
    assert_eq!(v["messages"][0]["body"], "first");

    // Nothing after 1 yet: the poll waits for the next message (the client helper gives up
    // after 10 s, far below the 30 s timeout, so only the message can end this poll).
    let waiting = tokio::spawn({
        let addr = addr.clone();
        async move { http_json(&addr, "GET", "/api/rooms/lp/poll?after=1&timeout=30", None).await }
    });
    tokio::task::yield_now().await;
    let (s, _) = http_json(
        &addr,
        "POST",
        "/api/rooms/lp/messages",
        Some(post("second")),
    )
    .await;
    assert_eq!(s, 201);
    let (s, v) = waiting.await.unwrap();
    assert_eq!(s, 200);
    let bodies: Vec<&str> = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, vec!["second"]);

    // Nothing comes: empty after the timeout.
    let (s, v) = http_json(&addr, "GET", "/api/rooms/lp/poll?after=2&timeout=1", None).await;
    assert_eq!((s, v), (200, json!({"messages": [], "has_more": false})));

    // Bad parameters.
    assert_eq!(
        http(&addr, "GET", "/api/rooms/lp/poll?after=2&timeout=31", None)
            .await
            .0,
        400
    );
    assert_eq!(
        http(&addr, "GET", "/api/rooms/lp/poll?after=x", None)
            .await
            .0,
        400
    );
    assert_eq!(
        http(&addr, "GET", "/api/rooms/bad%20room/poll", None)
            .await
            .0,
        400
    );
    assert_eq!(
        http(&addr, "GET", "/api/rooms/dm_1_2/poll", None).await.0,
        401
    );
}

#[tokio::test]
async fn held_polls_are_released_on_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let addr = server.addr.clone();
    let held = tokio::spawn(async move {
        http_json(
            &addr,
            "GET",
            "/api/rooms/quiet/poll?after=0&timeout=30",
            None,
        )
        .await
    });
    // Give the poll time to reach the server before stopping it (a held poll is the point).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let stopped = tokio::task::spawn_blocking(move || server.stop())
        .await
        .unwrap();
    assert!(stopped, "clean exit");
    let (s, v) = held.await.unwrap();
    assert_eq!((s, v["messages"].as_array().map(Vec::len)), (200, Some(0)));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "shutdown does not wait for the 30 s timeout"
    );
}
