//! `GET /ws` over a real socket: many rooms on one connection, authorized per room.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Client, Server, add_user, login};
use serde_json::json;

#[tokio::test]
async fn one_socket_many_rooms_each_authorized() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let ana_id = add_user(dir.path(), "ana", "Ana", "tutor", "password-ana");
    let bruno_id = add_user(dir.path(), "bruno", "Bruno", "vet", "password-bruno");
    let pair = format!("dm_{}_{}", ana_id.min(bruno_id), ana_id.max(bruno_id));

    let mut guest = Client::connect(&server.ws_url("/ws?name=guest")).await;
    let mut room_socket = Client::connect(&server.ws_url("/ws/chat/lobby/?name=old-school")).await;
    for room in ["lobby", "other"] {
        guest.send(json!({"type": "join", "room": room})).await;
        assert_eq!(guest.recv_type("joined").await["room"], room);
    }
    guest.send(json!({"type": "join", "room": pair})).await;
    let e = guest.recv_type("error").await;
    assert_eq!(
        (e["code"].as_str(), e["room"].as_str()),
        (Some("forbidden"), Some(pair.as_str()))
    );
    guest
        .send(json!({"type": "message", "room": "lobby", "body": "over /ws", "client_id": "m1"}))
        .await;
    assert_eq!(guest.recv_type("ack").await["room"], "lobby");
    let got = room_socket.recv_type("message").await;
    assert_eq!(
        (got["body"].as_str(), got["sender"]["name"].as_str()),
        (Some("over /ws"), Some("guest"))
    );
    guest
        .send(json!({"type": "message", "room": "nowhere", "body": "x"}))
        .await;
    assert_eq!(guest.recv_type("error").await["code"], "not_joined");

    // A member joins the pair room on /ws with a session.
    let (_, cookie) = login(&server.addr, "ana", "password-ana").await;
    let mut ana = Client::try_connect_with(&server.ws_url("/ws"), &[("cookie", &cookie)])
        .await
        .unwrap();
    ana.send(json!({"type": "join", "room": pair, "since": 0}))
        .await;
    assert_eq!(ana.recv_type("joined").await["room"], pair.as_str());

    // Without guests, an anonymous /ws is refused before the upgrade.
    let dir2 = tempfile::tempdir().unwrap();
    let closed = Server::start(dir2.path(), &["--allow-guests", "false"]);
    assert_eq!(
        Client::try_connect(&closed.ws_url("/ws"), None).await.err(),
        Some(401)
    );
}
