//! The inbox socket (`/ws/inbox/`): who of one's contacts is online, and when one's
//! conversations change, pushed to every page a user has open; and the read positions a pair
//! room's `joined` frame carries, so read ticks survive a reload.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Client, Server, add_user, login, request};
use serde_json::{Value, json};

const PW: &str = "correct horse battery";

async fn inbox(server: &Server, cookie: &str) -> (Client, Value) {
    let mut c = Client::try_connect_with(&server.ws_url("/ws/inbox/"), &[("cookie", cookie)])
        .await
        .expect("inbox opens");
    let first = c.recv_any().await;
    assert_eq!(first["type"], "inbox", "{first}");
    (c, first)
}

fn ids(users: &Value) -> Vec<i64> {
    let mut v: Vec<i64> = users
        .as_array()
        .expect("a list")
        .iter()
        .map(|u| u["id"].as_i64().expect("an id"))
        .collect();
    v.sort_unstable();
    v
}

#[tokio::test]
async fn the_inbox_tells_who_may_be_talked_with_is_online_and_when_a_conversation_changes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--pair-policy", "roles:tutor=vet"]);
    let ana = add_user(dir.path(), "ana", "Ana", "tutor", PW);
    let bea = add_user(dir.path(), "bea", "Bea", "vet", PW);
    let cid = add_user(dir.path(), "cid", "Cid", "tutor", PW);
    let (_, ana_cookie) = login(&server.addr, "ana", PW).await;
    let (_, bea_cookie) = login(&server.addr, "bea", PW).await;
    let (_, cid_cookie) = login(&server.addr, "cid", PW).await;
    let room = format!("dm_{}_{}", ana.min(bea), ana.max(bea));

    // Guests have no inbox.
    assert_eq!(
        Client::try_connect(&server.ws_url("/ws/inbox/"), None)
            .await
            .err(),
        Some(401)
    );

    let (mut ana_inbox, first) = inbox(&server, &ana_cookie).await;
    assert_eq!(ids(&first["online"]), Vec::<i64>::new());
    let (mut bea_inbox, first) = inbox(&server, &bea_cookie).await;
    assert_eq!(ids(&first["online"]), vec![ana], "Bea sees Ana online");
    let came = ana_inbox.recv_any().await;
    assert_eq!(
        (came["type"].as_str(), came["user"]["id"].as_i64()),
        (Some("online"), Some(bea))
    );
    // Cid (a tutor, like Ana) is no one Ana may talk with: she never hears of him, and he
    // does not see her.
    let (_cid_inbox, first) = inbox(&server, &cid_cookie).await;
    assert_eq!(ids(&first["online"]), vec![bea]);

    // A message in the pair room, over the socket and over HTTP: Ana's inbox hears of both
    // (and of nothing about Cid before them); Bea's own inbox hears of neither.
    let mut bea_dm = Client::try_connect_with(
        &server.ws_url(&format!("/ws/dm/{ana}/")),
        &[("cookie", &bea_cookie)],
    )
    .await
    .unwrap();
    bea_dm
        .send(json!({"type": "message", "body": "is Rex better?"}))
        .await;
    bea_dm.recv_type("message").await;
    let n = ana_inbox.recv_any().await;
    assert_eq!(n, json!({"type": "unread", "room": room, "seq": 1}));
    let posted = request(
        &server.addr,
        "POST",
        &format!("/api/rooms/{room}/messages"),
        &[
            ("content-type", "application/json"),
            ("cookie", &bea_cookie),
        ],
        Some(&json!({"body": "call me"}).to_string()),
    )
    .await;
    assert_eq!(posted.status, 201, "{}", posted.body);
    assert_eq!(
        ana_inbox.recv_any().await,
        json!({"type": "unread", "room": room, "seq": 2})
    );

    // Ana reads in one tab: her other pages hear it (to clear the badge).
    let mut ana_dm = Client::try_connect_with(
        &server.ws_url(&format!("/ws/dm/{bea}/")),
        &[("cookie", &ana_cookie)],
    )
    .await
    .unwrap();
    ana_dm.recv_type("joined").await;
    ana_dm.send(json!({"type": "read", "seq": 2})).await;
    assert_eq!(
        ana_inbox.recv_any().await,
        json!({"type": "read", "room": room, "seq": 2})
    );
    // Bea's inbox heard of Cid (a vet may talk with tutors), then of none of the above: its
    // next frame is Ana going offline, once her last page closes.
    let came = bea_inbox.recv_any().await;
    assert_eq!(
        (came["type"].as_str(), came["user"]["id"].as_i64()),
        (Some("online"), Some(cid))
    );
    drop(ana_dm);
    drop(ana_inbox);
    let gone = bea_inbox.recv_any().await;
    assert_eq!(
        (gone["type"].as_str(), gone["user"]["id"].as_i64()),
        (Some("offline"), Some(ana))
    );
}

#[tokio::test]
async fn a_pair_rooms_joined_frame_says_how_far_each_member_has_read() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let ana = add_user(dir.path(), "ana", "Ana", "tutor", PW);
    let bea = add_user(dir.path(), "bea", "Bea", "vet", PW);
    let (_, ana_cookie) = login(&server.addr, "ana", PW).await;
    let (_, bea_cookie) = login(&server.addr, "bea", PW).await;
    let open = |cookie: String, other: i64| {
        let url = server.ws_url(&format!("/ws/dm/{other}/"));
        async move {
            let mut c = Client::try_connect_with(&url, &[("cookie", &cookie)])
                .await
                .unwrap();
            let joined = c.recv_type("joined").await;
            (c, joined)
        }
    };
    let (mut a, joined) = open(ana_cookie.clone(), bea).await;
    assert!(joined.get("reads").is_none(), "nobody has read: {joined}");
    a.send(json!({"type": "message", "body": "one"})).await;
    a.send(json!({"type": "message", "body": "two"})).await;
    a.recv_type("ack").await;
    a.recv_type("ack").await;
    let (mut b, _) = open(bea_cookie, ana).await;
    b.send(json!({"type": "read", "seq": 1})).await;
    assert_eq!(a.recv_type("read").await["seq"], 1);
    drop(a);
    // Ana reloads: Bea's position comes with the join, before any new receipt.
    let (_a, joined) = open(ana_cookie, bea).await;
    assert_eq!(joined["reads"], json!([{"user": bea, "seq": 1}]));
    // A public room carries no read positions.
    let mut lobby = Client::connect(&server.ws_url("/ws/chat/lobby/?name=guest")).await;
    let joined = lobby.recv_type("joined").await;
    assert!(joined.get("reads").is_none(), "{joined}");
}
