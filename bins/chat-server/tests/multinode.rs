//! Two chat-server processes sharing Redis (the channel layer) and one PostgreSQL database
//! (the store), both the real servers: clients on different nodes chat as if there were one
//! server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::hash::{BuildHasher, Hasher};

use common::{Client, Server, add_user_in, login, postgres, request};
use serde_json::json;

fn prefix() -> String {
    let r = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    format!("chat-test-{r:x}")
}

/// The flags of a node sharing Redis (under `prefix`) and the database at `db_url` with the
/// others; `presence_ttl` in seconds, to see a dead node's users leave quickly.
fn node_flags<'a>(prefix: &'a str, db_url: &'a str, presence_ttl: Option<&'a str>) -> Vec<&'a str> {
    let mut flags = vec![
        "--redis-url",
        "redis://127.0.0.1:6379",
        "--redis-prefix",
        prefix,
        "--database-url",
        db_url,
    ];
    if let Some(ttl) = presence_ttl {
        flags.extend(["--presence-ttl", ttl]);
    }
    flags
}

#[tokio::test]
async fn clients_on_two_nodes_share_rooms_and_pair_rooms() {
    let dir = tempfile::tempdir().unwrap();
    let db = postgres().await;
    let p = prefix();
    let flags = node_flags(&p, db.url(), None);
    let a = Server::start(dir.path(), &flags);
    let b = Server::start(dir.path(), &flags);
    let db_flags = ["--database-url", db.url()];
    let ana_id = add_user_in(dir.path(), &db_flags, "ana", "Ana", "tutor", "password-ana");
    let bruno_id = add_user_in(
        dir.path(),
        &db_flags,
        "bruno",
        "Bruno",
        "vet",
        "password-bruno",
    );

    // A public room, one client per node.
    let mut on_a = Client::connect(&a.ws_url("/ws/chat/lobby/?name=ana")).await;
    let mut on_b = Client::connect(&b.ws_url("/ws/chat/lobby/?name=bruno")).await;
    on_a.send(json!({"type": "message", "body": "from A"}))
        .await;
    let seq = on_a.recv_type("ack").await["seq"].as_u64().unwrap();
    let got = on_b.recv_type("message").await;
    assert_eq!(
        (got["body"].as_str(), got["seq"].as_u64()),
        (Some("from A"), Some(seq))
    );
    on_b.send(json!({"type": "message", "body": "from B"}))
        .await;
    let back = loop {
        let m = on_a.recv_type("message").await;
        if m["body"] == "from B" {
            break m;
        }
    };
    assert_eq!(
        back["seq"].as_u64(),
        Some(seq + 1),
        "one gap-free sequence across nodes"
    );

    // A pair room, one member per node.
    let (_, ana_cookie) = login(&a.addr, "ana", "password-ana").await;
    let (_, bruno_cookie) = login(&b.addr, "bruno", "password-bruno").await;
    let mut ana = Client::try_connect_with(
        &a.ws_url(&format!("/ws/dm/{bruno_id}/")),
        &[("cookie", &ana_cookie)],
    )
    .await
    .unwrap();
    let mut bruno = Client::try_connect_with(
        &b.ws_url(&format!("/ws/dm/{ana_id}/")),
        &[("cookie", &bruno_cookie)],
    )
    .await
    .unwrap();
    ana.send(json!({"type": "message", "body": "private, across nodes"}))
        .await;
    let m = bruno.recv_type("message").await;
    assert_eq!(m["body"], "private, across nodes");
    assert_eq!(m["sender"]["role"], "tutor");
}

fn online_names(v: &serde_json::Value) -> Vec<String> {
    let mut n: Vec<String> = v["online"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap().to_owned())
        .collect();
    n.sort();
    n
}

#[tokio::test]
async fn presence_spans_nodes_and_forgets_a_dead_node() {
    let dir = tempfile::tempdir().unwrap();
    let db = postgres().await;
    let p = prefix();
    let flags = node_flags(&p, db.url(), Some("2"));
    let a = Server::start(dir.path(), &flags);
    let b = Server::start(dir.path(), &flags);
    // A third node sweeps for dead nodes too: a departure is still announced once.
    let _c = Server::start(dir.path(), &flags);

    // ana is one browser: its guest cookie (set by the index page) makes her tabs one guest,
    // on every node.
    let page = common::request(&a.addr, "GET", "/", &[], None).await;
    let ana_cookie = page
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .expect("the index page sets the guest cookie")
        .to_owned();
    let ana_browser = [("cookie", ana_cookie.as_str())];
    let mut ana = Client::try_connect_with(&a.ws_url("/ws/chat/lobby/?name=ana"), &ana_browser)
        .await
        .unwrap();
    let joined = ana.recv_type("joined").await;
    assert_eq!(online_names(&joined), vec!["ana"]);
    let mut bruno = Client::connect(&b.ws_url("/ws/chat/lobby/?name=bruno")).await;
    let joined = bruno.recv_type("joined").await;
    assert_eq!(
        online_names(&joined),
        vec!["ana", "bruno"],
        "node B sees node A's user"
    );
    let p = ana.recv_type("presence").await;
    assert_eq!(
        (p["event"].as_str(), p["user"]["name"].as_str()),
        (Some("join"), Some("bruno"))
    );

    // A second tab of ana on node B: no new join.
    let mut ana2 = Client::try_connect_with(&b.ws_url("/ws/chat/lobby/?name=ana"), &ana_browser)
        .await
        .unwrap();
    assert_eq!(
        online_names(&ana2.recv_type("joined").await),
        vec!["ana", "bruno"]
    );

    // Node A dies without saying goodbye: ana's tab there stops counting within the TTL;
    // she stays online through her tab on node B. Carol, only on A, disappears.
    let mut carol = Client::connect(&a.ws_url("/ws/chat/lobby/?name=carol")).await;
    carol.recv_type("joined").await;
    let (_, v) = common::http_json(&b.addr, "GET", "/api/rooms/lobby/online", None).await;
    assert_eq!(online_names(&v), vec!["ana", "bruno", "carol"]);
    drop(a); // SIGKILL
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let (_, v) = common::http_json(&b.addr, "GET", "/api/rooms/lobby/online", None).await;
        if online_names(&v) == vec!["ana", "bruno"] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "node A's users still online: {v}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    ana2.send(json!({"type": "ping"})).await;
    assert_eq!(ana2.recv().await["type"], "pong");

    // The live nodes said goodbye for carol, once, and not for ana (still here on B).
    let p = bruno.recv_type("presence").await;
    assert_eq!(
        (p["event"].as_str(), p["user"]["name"].as_str()),
        (Some("join"), Some("carol"))
    );
    let p = bruno.recv_type("presence").await;
    assert_eq!(
        (p["event"].as_str(), p["user"]["name"].as_str()),
        (Some("leave"), Some("carol"))
    );
    assert!(
        bruno.silent(std::time::Duration::from_secs(2)).await,
        "one goodbye, from one node"
    );
}

#[tokio::test]
async fn a_file_uploaded_to_one_node_is_served_by_the_other() {
    // Each node has its own data directory (as on two machines): the file must come from
    // the shared database, not from a directory they happen to share.
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let db = postgres().await;
    let p = prefix();
    let key = "a-secret-key-the-two-nodes-share-0123456789";
    let flags = [
        "--redis-url",
        "redis://127.0.0.1:6379",
        "--redis-prefix",
        p.as_str(),
        "--database-url",
        db.url(),
        "--secret-key",
        key,
    ];
    let a = Server::start(dir_a.path(), &flags);
    let b = Server::start(dir_b.path(), &flags);
    let note = "o Rex comeu bem hoje\n";
    let up = request(
        &a.addr,
        "POST",
        "/api/rooms/lobby/attachments?name=rex.txt",
        &[],
        Some(note),
    )
    .await;
    assert_eq!(up.status, 201, "{}", up.body);
    let id = up.json()["id"].as_str().unwrap().to_owned();
    let got = request(&b.addr, "GET", &format!("/api/attachments/{id}"), &[], None).await;
    assert_eq!((got.status, got.body.as_str()), (200, note));
    assert!(
        !dir_a.path().join("attachments").exists(),
        "with PostgreSQL, files live in the database"
    );
}

#[tokio::test]
async fn the_inbox_spans_nodes_and_a_dead_nodes_users_go_offline() {
    let dir = tempfile::tempdir().unwrap();
    let db = postgres().await;
    let p = prefix();
    let flags = node_flags(&p, db.url(), Some("2"));
    let a = Server::start(dir.path(), &flags);
    let b = Server::start(dir.path(), &flags);
    let db_flags = ["--database-url", db.url()];
    let ana = add_user_in(dir.path(), &db_flags, "ana", "Ana", "tutor", "password-ana");
    let bruno = add_user_in(dir.path(), &db_flags, "bruno", "Bruno", "vet", "pw-bruno-1");
    let (_, ana_cookie) = login(&a.addr, "ana", "password-ana").await;
    let (_, bruno_cookie) = login(&b.addr, "bruno", "pw-bruno-1").await;
    let inbox = async |server: &Server, cookie: &str| {
        let mut c = Client::try_connect_with(&server.ws_url("/ws/inbox/"), &[("cookie", cookie)])
            .await
            .unwrap();
        let first = c.recv_any().await;
        assert_eq!(first["type"], "inbox", "{first}");
        (c, first)
    };

    // Bruno's inbox on B hears Ana's open on A, and Ana's sees Bruno: one presence set.
    let (mut bruno_inbox, first) = inbox(&b, &bruno_cookie).await;
    assert_eq!(first["online"], json!([]));
    let (mut ana_inbox, first) = inbox(&a, &ana_cookie).await;
    assert_eq!(first["online"][0]["id"], bruno);
    let came = bruno_inbox.recv_any().await;
    assert_eq!(
        (came["type"].as_str(), came["user"]["id"].as_i64()),
        (Some("online"), Some(ana))
    );

    // Bruno writes on B: Ana's inbox on A hears of it.
    let mut dm = Client::try_connect_with(
        &b.ws_url(&format!("/ws/dm/{ana}/")),
        &[("cookie", &bruno_cookie)],
    )
    .await
    .unwrap();
    dm.send(json!({"type": "message", "body": "results are in"}))
        .await;
    let n = ana_inbox.recv_any().await;
    assert_eq!(
        (n["type"].as_str(), n["seq"].as_u64()),
        (Some("unread"), Some(1))
    );

    // Node A dies without a goodbye: within the presence TTL, node B says Ana is offline.
    drop(a); // SIGKILL
    let gone = bruno_inbox.recv_any().await;
    assert_eq!(
        (gone["type"].as_str(), gone["user"]["id"].as_i64()),
        (Some("offline"), Some(ana))
    );
}
