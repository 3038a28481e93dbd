//! A socket lives no longer than the credentials it was opened with: logging out closes the
//! session's sockets, and a token's sockets close at its expiry (close code 4001).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Client, Server, add_user, cli, login, request};
use serde_json::json;

const PW: &str = "correct horse battery";

#[tokio::test]
async fn logging_out_closes_that_sessions_sockets_and_no_others() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    add_user(dir.path(), "ana", "Ana", "tutor", PW);
    let (_, first) = login(&server.addr, "ana", PW).await;
    let (_, second) = login(&server.addr, "ana", PW).await;
    let open = |path: &'static str, cookie: String| {
        let url = server.ws_url(path);
        async move {
            Client::try_connect_with(&url, &[("cookie", &cookie)])
                .await
                .unwrap()
        }
    };
    let mut room = open("/ws/chat/lobby/", first.clone()).await;
    let mut mux = open("/ws", first.clone()).await;
    let mut other_session = open("/ws/chat/lobby/", second.clone()).await;
    room.send(json!({"type": "message", "body": "before"}))
        .await;
    assert_eq!(room.recv_type("ack").await["seq"], 1);

    let r = request(
        &server.addr,
        "POST",
        "/logout",
        &[("cookie", &first), ("content-type", "application/json")],
        Some("{}"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(room.closed().await, Some(4001));
    assert_eq!(mux.closed().await, Some(4001));
    // The other session of the same user is not logged out.
    other_session
        .send(json!({"type": "message", "body": "still here"}))
        .await;
    assert_eq!(other_session.recv_type("ack").await["seq"], 2);
}

#[tokio::test]
async fn a_tokens_sockets_close_at_its_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    add_user(dir.path(), "bot", "Bot", "", PW);
    let (ok, token, err) = cli(
        dir.path(),
        &["token", "issue", "--user", "bot", "--ttl", "3s"],
        "",
    );
    assert!(ok, "{err}");
    let bearer = format!("Bearer {}", token.trim());
    let mut ws = Client::try_connect_with(
        &server.ws_url("/ws/chat/lobby/"),
        &[("authorization", &bearer)],
    )
    .await
    .unwrap();
    ws.send(json!({"type": "message", "body": "while valid"}))
        .await;
    assert_eq!(ws.recv_type("ack").await["seq"], 1);
    assert_eq!(ws.closed().await, Some(4001));
}
