//! The server on the real PostgreSQL: an outage is `store_unavailable` (no ack, nothing
//! claimed stored), the server keeps running, and it recovers when the database is back.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Client, Server, cli, postgres};
use serde_json::json;

#[tokio::test]
async fn an_outage_is_store_unavailable_and_the_server_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let db = postgres().await;
    let server = Server::start(dir.path(), &["--database-url", db.url()]);
    let mut ana = Client::connect(&server.ws_url("/ws/chat/lobby/?name=ana")).await;
    ana.send(json!({"type": "message", "body": "before", "client_id": "c1"}))
        .await;
    assert_eq!(ana.recv_type("ack").await["seq"], 1);

    db.cut_off().await.unwrap();
    ana.send(json!({"type": "message", "body": "during", "client_id": "c2"}))
        .await;
    let refused = ana.recv_type("error").await;
    assert_eq!(refused["code"], "store_unavailable", "{refused}");
    let (status, _) = common::http(&server.addr, "GET", "/api/rooms/lobby/messages", None).await;
    assert_eq!(status, 503, "history is unavailable too, not empty");

    db.restore().await.unwrap();
    // The socket survived; the client resends its unacknowledged message.
    ana.send(json!({"type": "message", "body": "during", "client_id": "c2"}))
        .await;
    let ack = ana.recv_type("ack").await;
    assert_eq!(ack["seq"], 2, "the failed attempt took no seq: {ack}");
    let (status, v) =
        common::http_json(&server.addr, "GET", "/api/rooms/lobby/messages", None).await;
    assert_eq!(status, 200);
    let bodies: Vec<_> = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(bodies, ["before", "during"]);
}

#[tokio::test]
async fn doctor_passes_on_a_migrated_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let db = postgres().await;
    let (ok, out, err) = cli(dir.path(), &["doctor", "--database-url", db.url()], "");
    assert!(ok, "doctor failed on a healthy PostgreSQL:\n{out}\n{err}");
    assert!(out.contains("ok    database"), "{out}");
}
