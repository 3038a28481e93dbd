//! Guests are told apart by a random guest id, never by their display name: two guests called
//! "ana" are two people for presence and for `client_id` de-duplication, and one browser (its
//! `chat_guest` cookie) stays one guest across reconnects, renames and transports.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Client, Server, WAIT, http_json, request};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The `name=value` part of a `chat_guest` `Set-Cookie` header, if the response has one.
fn guest_cookie<'a>(set_cookies: impl IntoIterator<Item = &'a str>) -> Option<String> {
    set_cookies
        .into_iter()
        .filter(|c| c.starts_with("chat_guest="))
        .map(|c| c.split(';').next().unwrap_or_default().trim().to_owned())
        .next()
}

/// Opens a WebSocket with extra headers and returns it with the response's guest cookie.
async fn open_raw(url: &str, headers: &[(&str, &str)]) -> (Ws, Option<String>) {
    let mut req = url.into_client_request().unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(
            tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let (ws, res) = tokio_tungstenite::connect_async(req).await.unwrap();
    let cookie = guest_cookie(
        res.headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok()),
    );
    (ws, cookie)
}

/// The next text frame of a raw socket.
async fn next_text(ws: &mut Ws) -> String {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("no frame within the wait")
            .expect("socket closed")
            .expect("socket error");
        if let Message::Text(t) = msg {
            return t.to_string();
        }
    }
}

/// The next Socket.IO packet of a raw Engine.IO socket, answering Engine.IO pings.
async fn next_packet(ws: &mut Ws) -> String {
    loop {
        let t = next_text(ws).await;
        if t == "2" {
            ws.send(Message::Text("3".into())).await.unwrap();
            continue;
        }
        return t;
    }
}

/// Sends a message frame and returns its ack's seq (a duplicate is acked, not echoed).
async fn ack(c: &mut Client, client_id: &str, body: &str) -> u64 {
    c.send(json!({"type": "message", "body": body, "client_id": client_id}))
        .await;
    c.recv_type("ack").await["seq"].as_u64().unwrap()
}

/// Sends a new message and returns its seq and the echo's `sender`.
async fn send(c: &mut Client, client_id: &str, body: &str) -> (u64, Value) {
    let seq = ack(c, client_id, body).await;
    loop {
        let m = c.recv_type("message").await;
        if m["seq"] == seq {
            return (seq, m["sender"].clone());
        }
    }
}

/// Who `GET /api/rooms/{room}/online` lists under `name`.
async fn online_named(addr: &str, room: &str, name: &str) -> Vec<Value> {
    let (status, v) = http_json(addr, "GET", &format!("/api/rooms/{room}/online"), None).await;
    assert_eq!(status, 200, "{v}");
    v["online"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["name"] == name)
        .cloned()
        .collect()
}

#[tokio::test]
async fn two_guests_with_one_name_are_online_as_two() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let mut watcher = Client::connect(&server.ws_url("/ws/chat/twins/?name=watcher")).await;
    watcher.recv_type("joined").await;

    let mut first = Client::connect(&server.ws_url("/ws/chat/twins/?name=ana")).await;
    first.recv_type("joined").await;
    let mut second = Client::connect(&server.ws_url("/ws/chat/twins/?name=ana")).await;
    let joined = second.recv_type("joined").await;
    let anas: Vec<&Value> = joined["online"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["name"] == "ana")
        .collect();
    assert_eq!(anas.len(), 2, "both guests called ana are online: {joined}");

    let (_, first_sender) = send(&mut first, "c-1", "from the first ana").await;
    let first_id = first_sender["guest"].clone();
    assert!(
        first_id.is_string(),
        "a guest has a guest id: {first_sender}"
    );
    assert_eq!(first_sender["name"], "ana");
    assert!(first_sender.get("id").is_none(), "a guest has no user id");
    let (_, second_sender) = send(&mut second, "c-2", "from the second ana").await;
    let second_id = second_sender["guest"].clone();
    assert_ne!(first_id, second_id, "two guests, two guest ids");
    assert_eq!(online_named(&server.addr, "twins", "ana").await.len(), 2);

    // The watcher heard both arrive, each under their own guest id.
    let mut arrived = Vec::new();
    while arrived.len() < 2 {
        let p = watcher.recv_type("presence").await;
        if p["event"] == "join" && p["user"]["name"] == "ana" {
            arrived.push(p["user"]["guest"].clone());
        }
    }
    assert_eq!(arrived, [first_id.clone(), second_id.clone()]);

    // The first leaves: the watcher hears that one leave, and the other is still online.
    drop(first);
    let left = watcher.recv_type("presence").await;
    assert_eq!(left["event"], "leave", "{left}");
    assert_eq!(left["user"]["guest"], first_id, "{left}");
    let still = online_named(&server.addr, "twins", "ana").await;
    assert_eq!(still.len(), 1, "{still:?}");
    assert_eq!(still[0]["guest"], second_id);
}

#[tokio::test]
async fn one_client_id_from_two_guests_with_one_name_is_two_messages() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let mut first = Client::connect(&server.ws_url("/ws/chat/same/?name=ana")).await;
    let mut second = Client::connect(&server.ws_url("/ws/chat/same/?name=ana")).await;
    let a = ack(&mut first, "c-1", "first ana").await;
    let b = ack(&mut second, "c-1", "second ana").await;
    assert_ne!(a, b, "the second ana's message is not acked as the first's");

    // The same over HTTP, for guests without a cookie: each post is its own guest.
    let post = |body: &'static str| {
        let addr = server.addr.clone();
        async move {
            request(
                &addr,
                "POST",
                "/api/rooms/same/messages",
                &[("content-type", "application/json")],
                Some(&json!({"body": body, "client_id": "h-1", "name": "ana"}).to_string()),
            )
            .await
        }
    };
    let one = post("http ana 1").await;
    let two = post("http ana 2").await;
    assert_eq!(
        (one.status, two.status),
        (201, 201),
        "{} {}",
        one.body,
        two.body
    );
    assert_ne!(one.json()["seq"], two.json()["seq"]);
    assert_ne!(one.json()["sender"]["guest"], two.json()["sender"]["guest"]);
}

#[tokio::test]
async fn a_browser_keeps_its_guest_id_across_reconnects_renames_and_transports() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);

    // The room page gives the browser its guest cookie.
    let page = request(&server.addr, "GET", "/chat/keep/", &[], None).await;
    assert_eq!(page.status, 200);
    let set_cookie = page
        .headers
        .iter()
        .filter(|(k, _)| k == "set-cookie")
        .map(|(_, v)| v.as_str())
        .find(|v| v.starts_with("chat_guest="))
        .expect("the page sets the guest cookie")
        .to_owned();
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age="] {
        assert!(set_cookie.contains(attr), "{attr} in {set_cookie}");
    }
    assert!(
        !set_cookie.contains("Secure"),
        "no Secure without --secure-cookies"
    );
    let cookie = guest_cookie([set_cookie.as_str()]).unwrap();
    let again = request(
        &server.addr,
        "GET",
        "/chat/keep/",
        &[("cookie", &cookie)],
        None,
    )
    .await;
    assert!(
        guest_cookie(
            again
                .headers
                .iter()
                .filter(|(k, _)| k == "set-cookie")
                .map(|(_, v)| v.as_str())
        )
        .is_none(),
        "a browser that has the cookie keeps it"
    );
    let with_cookie = [("cookie", cookie.as_str())];

    let mut tab = Client::try_connect_with(&server.ws_url("/ws/chat/keep/?name=ana"), &with_cookie)
        .await
        .unwrap();
    let (seq, sender) = send(&mut tab, "c-1", "once").await;
    let guest = sender["guest"].clone();
    assert!(guest.is_string(), "{sender}");
    assert!(
        !cookie.contains(guest.as_str().unwrap()),
        "the public guest id does not reveal the cookie"
    );
    drop(tab);

    // Reconnected under another name: the retry is recognised, and it is the same guest.
    let mut tab =
        Client::try_connect_with(&server.ws_url("/ws/chat/keep/?name=ana-2"), &with_cookie)
            .await
            .unwrap();
    let retry = ack(&mut tab, "c-1", "once").await;
    assert_eq!(retry, seq, "the same browser's retry is not stored twice");
    let (_, renamed) = send(&mut tab, "c-2", "renamed").await;
    assert_eq!(renamed["guest"], guest);
    assert_eq!(renamed["name"], "ana-2");

    // The multiplexed socket, with the same cookie.
    let mut mux = Client::try_connect_with(&server.ws_url("/ws?name=ana-3"), &with_cookie)
        .await
        .unwrap();
    mux.send(json!({"type": "join", "room": "keep"})).await;
    mux.recv_type("joined").await;
    mux.send(json!({"type": "message", "room": "keep", "body": "once", "client_id": "c-1"}))
        .await;
    assert_eq!(mux.recv_type("ack").await["seq"], seq);

    // HTTP, with the same cookie.
    let posted = request(
        &server.addr,
        "POST",
        "/api/rooms/keep/messages",
        &[("content-type", "application/json"), ("cookie", &cookie)],
        Some(&json!({"body": "once", "client_id": "c-1", "name": "ana-4"}).to_string()),
    )
    .await;
    assert_eq!(posted.status, 200, "{}", posted.body);
    assert_eq!(posted.json()["seq"], seq);

    // Socket.IO over WebSocket, with the same cookie.
    let (mut sio, _) = open_raw(
        &server.ws_url("/socket.io/?EIO=4&transport=websocket"),
        &with_cookie,
    )
    .await;
    assert!(next_text(&mut sio).await.starts_with('0'), "Engine.IO open");
    sio.send(Message::Text(r#"40/chat,{"name":"sio-ana"}"#.into()))
        .await
        .unwrap();
    let connected = next_packet(&mut sio).await;
    assert!(connected.starts_with("40/chat,"), "connected: {connected}");
    let ask = |id: u32, event: &str, data: Value| {
        Message::Text(format!("42/chat,{id}{}", json!([event, data])).into())
    };
    let ack_of = async |sio: &mut Ws, id: u32| -> Value {
        let prefix = format!("43/chat,{id}");
        loop {
            let t = next_packet(sio).await;
            if let Some(rest) = t.strip_prefix(&prefix) {
                return serde_json::from_str::<Value>(rest).unwrap()[0].clone();
            }
        }
    };
    sio.send(ask(1, "join_chat", json!({"chat_id": "keep"})))
        .await
        .unwrap();
    ack_of(&mut sio, 1).await;
    sio.send(ask(
        2,
        "send_message",
        json!({"chat_id": "keep", "conteudo": "once", "client_id": "c-1"}),
    ))
    .await
    .unwrap();
    assert_eq!(
        ack_of(&mut sio, 2).await["seq"],
        seq,
        "Socket.IO: the same guest"
    );

    // Another guest under the first name, without the cookie, is someone else.
    let mut other = Client::connect(&server.ws_url("/ws/chat/keep/?name=ana")).await;
    let (theirs, their_sender) = send(&mut other, "c-1", "once").await;
    assert_ne!(theirs, seq, "someone else's message, not a duplicate");
    assert_ne!(their_sender["guest"], guest);
}

#[tokio::test]
async fn a_socket_without_the_cookie_gets_one_that_keeps_its_guest_id() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let (mut ws, cookie) = open_raw(&server.ws_url("/ws/chat/first/?name=bo"), &[]).await;
    let cookie = cookie.expect("the handshake of a guest without the cookie sets it");
    ws.send(Message::Text(
        json!({"type": "message", "body": "hi", "client_id": "c-1"})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let seq = loop {
        let v: Value = serde_json::from_str(&next_text(&mut ws).await).unwrap();
        if v["type"] == "ack" {
            break v["seq"].clone();
        }
    };
    drop(ws);
    let (mut again, set_again) = open_raw(
        &server.ws_url("/ws/chat/first/?name=bo"),
        &[("cookie", &cookie)],
    )
    .await;
    assert_eq!(
        set_again, None,
        "a guest that has the cookie is not given another"
    );
    again
        .send(Message::Text(
            json!({"type": "message", "body": "hi", "client_id": "c-1"})
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
    let retry = loop {
        let v: Value = serde_json::from_str(&next_text(&mut again).await).unwrap();
        if v["type"] == "ack" {
            break v["seq"].clone();
        }
    };
    assert_eq!(retry, seq, "the cookie the handshake set keeps the guest");

    // Socket.IO's handshake sets it too, on both transports.
    let (_sio, cookie) =
        open_raw(&server.ws_url("/socket.io/?EIO=4&transport=websocket"), &[]).await;
    assert!(
        cookie.is_some(),
        "a Socket.IO handshake without the cookie sets it"
    );
    let polling = request(
        &server.addr,
        "GET",
        "/socket.io/?EIO=4&transport=polling",
        &[],
        None,
    )
    .await;
    assert_eq!(polling.status, 200, "{}", polling.body);
    assert!(
        guest_cookie(
            polling
                .headers
                .iter()
                .filter(|(k, _)| k == "set-cookie")
                .map(|(_, v)| v.as_str())
        )
        .is_some(),
        "the polling handshake sets it"
    );
}

#[tokio::test]
async fn the_tutorials_public_rooms_know_the_guest_cookie() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--compat", "tutorials"]);
    let page = request(&server.addr, "GET", "/", &[], None).await;
    let cookie = guest_cookie(
        page.headers
            .iter()
            .filter(|(k, _)| k == "set-cookie")
            .map(|(_, v)| v.as_str()),
    )
    .expect("the index page sets the guest cookie");
    let mut seed =
        Client::try_connect_with(&server.ws_url("/ws/chat/tut/"), &[("cookie", &cookie)])
            .await
            .unwrap();
    seed.send(json!({"message": "from the tutorial page"}))
        .await;
    let got = seed.recv_any().await;
    assert_eq!(got["message"], "from the tutorial page");
    let generated = got["remetente"].as_str().unwrap().to_owned();
    assert!(generated.starts_with("guest-"), "{got}");
    assert_ne!(
        generated.len(),
        "guest-1234".len(),
        "not the old 10,000 names"
    );

    let mut native = Client::try_connect_with(
        &server.ws_url("/ws/chat/tut/"),
        &[("cookie", &cookie), ("sec-websocket-protocol", "chat.v1")],
    )
    .await
    .unwrap();
    let (_, sender) = send(&mut native, "n-1", "from our client").await;
    assert_eq!(
        sender["name"], generated,
        "the generated name follows the guest id"
    );
    let (status, history) = http_json(&server.addr, "GET", "/api/rooms/tut/messages", None).await;
    assert_eq!(status, 200);
    let guests: Vec<&Value> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["sender"]["guest"])
        .collect();
    assert_eq!(guests.len(), 2, "{history}");
    assert!(guests[0].is_string(), "{history}");
    assert_eq!(guests[0], guests[1], "one browser, one guest, on both URLs");
}
