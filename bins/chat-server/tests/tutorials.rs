//! `--compat tutorials`: the Channels tutorials' URLs speak exactly their pages' frames, on the
//! same rooms and store as our own clients, which keep our protocol through the `chat.v1`
//! subprotocol.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Client, Server, add_user, http_json, login, request};
use serde_json::json;

const PW: &str = "correct horse battery";
const QUIET: Duration = Duration::from_millis(300);
const NATIVE: (&str, &str) = ("sec-websocket-protocol", "chat.v1");

fn hh_mm(v: &serde_json::Value) -> bool {
    let s = v.as_str().unwrap_or_default();
    s.len() == 5
        && s.as_bytes()[2] == b':'
        && s.replace(':', "").bytes().all(|b| b.is_ascii_digit())
}

#[tokio::test]
async fn seed_000_pair_chat_between_a_tutor_and_a_vet() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--compat", "tutorials"]);
    let ana = add_user(dir.path(), "ana", "Ana", "tutor", PW);
    let bruno = add_user(dir.path(), "bruno", "Bruno", "vet", PW);
    let (_, ana_cookie) = login(&server.addr, "ana", PW).await;
    let (_, bruno_cookie) = login(&server.addr, "bruno", PW).await;

    // Not logged in: refused before the upgrade, as the tutorial's consumer closes.
    let anonymous = Client::try_connect(&server.ws_url(&format!("/ws/chat/{bruno}/")), None).await;
    assert_eq!(anonymous.err(), Some(403));

    let connect = |path: String, cookie: String| {
        let url = server.ws_url(&path);
        async move {
            Client::try_connect_with(&url, &[("cookie", &cookie)])
                .await
                .unwrap()
        }
    };
    let mut a = connect(format!("/ws/chat/{bruno}/"), ana_cookie.clone()).await;
    let mut b = connect(format!("/ws/chat/{ana}/"), bruno_cookie.clone()).await;
    a.send(json!({"mensagem": "Rex está tossindo"})).await;
    for c in [&mut a, &mut b] {
        let f = c.recv_any().await;
        assert_eq!(f["mensagem"], "Rex está tossindo");
        assert_eq!(f["enviado_por"], "TUTOR");
        assert!(hh_mm(&f["data_envio"]), "{f}");
        assert_eq!(
            f.as_object().unwrap().len(),
            3,
            "exactly the seed's fields: {f}"
        );
    }
    b.send(json!({"mensagem": "Traga-o às 15h"})).await;
    for c in [&mut a, &mut b] {
        assert_eq!(c.recv_any().await["enviado_por"], "VETERINARIO");
    }
    // A bad frame gets the seed's error shape, and nothing is stored.
    a.send(json!({"mensagem": "   "})).await;
    let e = a.recv_any().await;
    assert!(
        e["error"].is_string() && e.as_object().unwrap().len() == 1,
        "{e}"
    );
    assert!(
        b.silent(QUIET).await,
        "no presence, typing or acks on tutorial sockets"
    );

    // The same room as /ws/dm/, with the same history.
    let room = format!("dm_{}_{}", ana.min(bruno), ana.max(bruno));
    let r = request(
        &server.addr,
        "GET",
        &format!("/api/rooms/{room}/messages"),
        &[("cookie", &ana_cookie)],
        None,
    )
    .await;
    let bodies: Vec<_> = r.json()["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(bodies, ["Rex está tossindo", "Traga-o às 15h"]);
    let mut native = Client::try_connect_with(
        &server.ws_url(&format!("/ws/dm/{ana}/")),
        &[("cookie", &bruno_cookie)],
    )
    .await
    .unwrap();
    native
        .send(json!({"type": "message", "body": "pelo app"}))
        .await;
    assert_eq!(native.recv_type("ack").await["seq"], 3);
    assert_eq!(a.recv_any().await["mensagem"], "pelo app");
}

#[tokio::test]
async fn seed_002_rooms_by_name_share_the_room_with_our_clients() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--compat", "tutorials"]);
    add_user(dir.path(), "ana", "Ana", "tutor", PW);
    let (_, cookie) = login(&server.addr, "ana", PW).await;
    // No trailing slash, and a `?user=` that identifies nobody.
    let mut guest = Client::connect(&server.ws_url("/ws/chat/sala1?user=7&name=carla")).await;
    let mut user = Client::try_connect_with(
        &server.ws_url("/ws/chat/sala1/?user=1"),
        &[("cookie", &cookie)],
    )
    .await
    .unwrap();
    // Our own protocol on the same URL, by asking for it.
    let mut ours = Client::try_connect_with(&server.ws_url("/ws/chat/sala1/?name=dora"), &[NATIVE])
        .await
        .unwrap();
    assert_eq!(ours.recv_type("joined").await["room"], "sala1");

    guest.send(json!({"message": "oi"})).await;
    for c in [&mut guest, &mut user] {
        assert_eq!(
            c.recv_any().await,
            json!({"message": "oi", "remetente": "carla"})
        );
    }
    let m = ours.recv_type("message").await;
    assert_eq!(
        (m["body"].as_str(), m["seq"].as_u64()),
        (Some("oi"), Some(1))
    );
    ours.send(json!({"type": "message", "body": "olá", "client_id": "c1"}))
        .await;
    assert_eq!(ours.recv_type("ack").await["seq"], 2);
    for c in [&mut guest, &mut user] {
        assert_eq!(
            c.recv_any().await,
            json!({"message": "olá", "remetente": "dora"})
        );
    }
    user.send(json!({"message": "sou a Ana"})).await;
    assert_eq!(guest.recv_any().await["remetente"], "Ana");
    // A frame the page never sends gets an error, nothing else.
    guest.send(json!({"mensagem": "wrong field"})).await;
    assert!(guest.recv_any().await["error"].is_string());
    assert!(guest.silent(QUIET).await);
}

#[tokio::test]
async fn seed_003_socket_server_keeps_both_fields() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--compat", "tutorials"]);
    let mut a = Client::connect(&server.ws_url("/ws/socket-server/")).await;
    let mut b = Client::connect(&server.ws_url("/ws/socket-server")).await;
    a.send(json!({"message": "primeira", "message2": "segunda"}))
        .await;
    let expected = json!({"type": "chat", "message": "primeira", "message2": "segunda"});
    for c in [&mut a, &mut b] {
        assert_eq!(c.recv_any().await, expected);
    }
    b.send(json!({"message": "só uma", "message2": ""})).await;
    assert_eq!(
        a.recv_any().await,
        json!({"type": "chat", "message": "só uma", "message2": ""})
    );
    let (status, history) = http_json(&server.addr, "GET", "/api/rooms/test/messages", None).await;
    assert_eq!(status, 200);
    let body = history["messages"][0]["body"].as_str().unwrap();
    assert_eq!(body, "primeira\n\u{2063}segunda");
}

#[tokio::test]
async fn without_the_flag_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let mut c = Client::connect(&server.ws_url("/ws/chat/lobby/?name=ana")).await;
    c.send(json!({"message": "oi"})).await;
    assert_eq!(c.recv_type("ack").await["seq"], 1);
    assert_eq!(
        Client::try_connect(&server.ws_url("/ws/socket-server/"), None)
            .await
            .err(),
        Some(404)
    );
    // Our clients ask for the subprotocol in every mode, and get it.
    let mut ours = Client::try_connect_with(&server.ws_url("/ws/chat/lobby/"), &[NATIVE])
        .await
        .unwrap();
    assert_eq!(ours.recv_type("joined").await["last_seq"], 1);
}
