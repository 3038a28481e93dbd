//! Accounts, sessions, tokens and private pair rooms against the real binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Client, Server, add_user, cli, login, request, urlencode};
use serde_json::json;

const PW: &str = "correct horse battery";

struct Clinic {
    server: Server,
    dir: tempfile::TempDir,
    ana: i64,
    bruno: i64,
    carol: i64,
}

async fn clinic(extra: &[&str]) -> Clinic {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), extra);
    let ana = add_user(dir.path(), "ana", "Ana", "tutor", PW);
    let bruno = add_user(dir.path(), "bruno", "Bruno", "vet", PW);
    let carol = add_user(dir.path(), "carol", "Carol", "tutor", PW);
    Clinic {
        server,
        dir,
        ana,
        bruno,
        carol,
    }
}

fn dm(a: i64, b: i64) -> String {
    format!("dm_{}_{}", a.min(b), a.max(b))
}

#[tokio::test]
async fn two_users_chat_privately_with_roles_and_unread_counts() {
    let c = clinic(&[]).await;
    let addr = &c.server.addr;
    let (_, ana_cookie) = login(addr, "ana", PW).await;
    let (bruno_session, _) = login(addr, "bruno", PW).await;

    // Ana by cookie, Bruno by ?session= (clients that cannot send cookies on a handshake).
    let mut ana = Client::try_connect_with(
        &c.server.ws_url(&format!("/ws/dm/{}/", c.bruno)),
        &[("cookie", &ana_cookie)],
    )
    .await
    .expect("ana joins her pair room");
    let mut bruno = Client::connect(&c.server.ws_url(&format!(
        "/ws/dm/{}/?session={}",
        c.ana,
        urlencode(&bruno_session)
    )))
    .await;

    ana.send(json!({"type": "message", "body": "Rex is limping", "client_id": "a1"}))
        .await;
    let ack = ana.recv_type("ack").await;
    assert_eq!(ack["room"], dm(c.ana, c.bruno));
    let got = bruno.recv_type("message").await;
    assert_eq!(got["body"], "Rex is limping");
    assert_eq!(
        got["sender"],
        json!({"id": c.ana, "name": "Ana", "role": "tutor"})
    );
    for body in ["Bring him in", "At 3pm?"] {
        bruno.send(json!({"type": "message", "body": body})).await;
        assert_eq!(bruno.recv_type("ack").await["type"], "ack");
    }
    let reply = loop {
        let m = ana.recv_type("message").await;
        if m["body"] == "Bring him in" {
            break m;
        }
        assert_eq!(m["sender"]["id"], c.ana, "only her own echo comes first");
    };
    assert_eq!(
        reply["sender"],
        json!({"id": c.bruno, "name": "Bruno", "role": "vet"})
    );

    // Ana has two unread (her own message does not count), until she reads them.
    let unread = request(addr, "GET", "/api/unread", &[("cookie", &ana_cookie)], None).await;
    assert_eq!(unread.status, 200);
    assert_eq!(unread.json(), json!({ dm(c.ana, c.bruno): 2 }));
    let contacts = request(
        addr,
        "GET",
        "/api/contacts",
        &[("cookie", &ana_cookie)],
        None,
    )
    .await
    .json();
    let b = contacts
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == c.bruno)
        .unwrap();
    assert_eq!(
        (b["unread"].as_u64(), b["role"].as_str(), b["name"].as_str()),
        (Some(2), Some("vet"), Some("Bruno"))
    );
    ana.send(json!({"type": "read", "seq": 3})).await;
    let receipt = bruno.recv_type("read").await;
    assert_eq!(
        (receipt["seq"].as_u64(), receipt["user"]["id"].as_i64()),
        (Some(3), Some(c.ana))
    );
    let unread = request(addr, "GET", "/api/unread", &[("cookie", &ana_cookie)], None).await;
    assert_eq!(unread.json(), json!({ dm(c.ana, c.bruno): 0 }));

    // The pair's history over HTTP, for members.
    let path = format!("/api/rooms/{}/messages", dm(c.ana, c.bruno));
    let h = request(addr, "GET", &path, &[("cookie", &ana_cookie)], None).await;
    assert_eq!(h.status, 200);
    assert_eq!(h.json()["messages"].as_array().unwrap().len(), 3);
    let me = request(addr, "GET", "/api/me", &[("cookie", &ana_cookie)], None)
        .await
        .json();
    assert_eq!(
        me,
        json!({"id": c.ana, "username": "ana", "name": "Ana", "role": "tutor"})
    );
}

#[tokio::test]
async fn outsiders_and_guests_are_refused_before_the_upgrade() {
    let c = clinic(&[]).await;
    let addr = &c.server.addr;
    let (_, carol_cookie) = login(addr, "carol", PW).await;
    let private = dm(c.ana, c.bruno);

    // No credentials: 401 on the socket and on the API.
    let anon = Client::try_connect(&c.server.ws_url(&format!("/ws/dm/{}/", c.bruno)), None).await;
    assert_eq!(anon.err(), Some(401));
    let path = format!("/api/rooms/{private}/messages");
    assert_eq!(request(addr, "GET", &path, &[], None).await.status, 401);
    let guest_post = json!({"body": "hi", "name": "guest"}).to_string();
    assert_eq!(
        request(addr, "POST", &path, &[], Some(&guest_post))
            .await
            .status,
        401
    );

    // A third user: 403 on the API, and the socket cannot reach the room at all.
    let r = request(addr, "GET", &path, &[("cookie", &carol_cookie)], None).await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    let r = request(
        addr,
        "POST",
        &path,
        &[
            ("cookie", &carol_cookie),
            ("content-type", "application/json"),
        ],
        Some(r#"{"body":"let me in"}"#),
    )
    .await;
    assert_eq!(r.status, 403);
    let via_public = Client::try_connect_with(
        &c.server.ws_url(&format!("/ws/chat/{private}/")),
        &[("cookie", &carol_cookie)],
    )
    .await;
    assert_eq!(via_public.err(), Some(403));
    let with_self = Client::try_connect_with(
        &c.server.ws_url(&format!("/ws/dm/{}/", c.carol)),
        &[("cookie", &carol_cookie)],
    )
    .await;
    assert_eq!(with_self.err(), Some(400));
    let nobody = Client::try_connect_with(
        &c.server.ws_url("/ws/dm/999/"),
        &[("cookie", &carol_cookie)],
    )
    .await;
    assert_eq!(nobody.err(), Some(404));

    // A page from another origin cannot use the session (CSWSH).
    let evil = Client::try_connect_with(
        &c.server.ws_url(&format!("/ws/dm/{}/", c.ana)),
        &[("cookie", &carol_cookie), ("origin", "http://evil.example")],
    )
    .await;
    assert_eq!(evil.err(), Some(403));
    let own = format!("http://{addr}");
    assert!(
        Client::try_connect_with(
            &c.server.ws_url(&format!("/ws/dm/{}/", c.ana)),
            &[("cookie", &carol_cookie), ("origin", &own)]
        )
        .await
        .is_ok()
    );

    // The pair page wants a login first.
    let page = request(addr, "GET", &format!("/dm/{}/", c.bruno), &[], None).await;
    assert_eq!(page.status, 303);
    assert!(page.header("location").unwrap().starts_with("/login?next="));
}

#[tokio::test]
async fn sessions_rotate_on_login_and_die_on_logout() {
    let c = clinic(&[]).await;
    let addr = &c.server.addr;
    let body = json!({"username": "ana", "password": PW}).to_string();
    let r = request(
        addr,
        "POST",
        "/login",
        &[("content-type", "application/json")],
        Some(&body),
    )
    .await;
    let set_cookie = r.header("set-cookie").unwrap().to_owned();
    for flag in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(set_cookie.contains(flag), "{flag} missing in {set_cookie}");
    }
    assert!(
        !set_cookie.contains("Secure"),
        "not Secure unless configured"
    );
    let (s1, cookie1) = login(addr, "ana", PW).await;
    let (s2, cookie2) = login(addr, "ana", PW).await;
    assert_ne!(s1, s2, "every login makes a new session");

    let out = request(
        addr,
        "POST",
        "/logout",
        &[("cookie", &cookie1), ("content-type", "application/json")],
        None,
    )
    .await;
    assert_eq!(out.status, 200);
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(
        request(addr, "GET", "/api/me", &[("cookie", &cookie1)], None)
            .await
            .status,
        401
    );
    let old = Client::try_connect(
        &c.server
            .ws_url(&format!("/ws/dm/{}/?session={}", c.bruno, urlencode(&s1))),
        None,
    )
    .await;
    assert_eq!(
        old.err(),
        Some(401),
        "a logged-out session cannot open sockets"
    );
    assert_eq!(
        request(addr, "GET", "/api/me", &[("cookie", &cookie2)], None)
            .await
            .status,
        200,
        "other sessions live on"
    );

    // A forged cookie is anonymous.
    let forged = format!("chat_session={}x", &s2[..s2.len() - 1]);
    assert_eq!(
        request(addr, "GET", "/api/me", &[("cookie", &forged)], None)
            .await
            .status,
        401
    );

    // Secure cookies when configured.
    let dir = tempfile::tempdir().unwrap();
    let secure = Server::start(dir.path(), &["--secure-cookies", "true"]);
    add_user(dir.path(), "dora", "Dora", "", PW);
    let body = json!({"username": "dora", "password": PW}).to_string();
    let r = request(
        &secure.addr,
        "POST",
        "/login",
        &[("content-type", "application/json")],
        Some(&body),
    )
    .await;
    assert!(r.header("set-cookie").unwrap().contains("Secure"));
}

#[tokio::test]
async fn failed_logins_say_nothing_and_are_rate_limited() {
    let c = clinic(&[]).await;
    let addr = &c.server.addr;
    let attempt = |user: &str, pw: &str| json!({"username": user, "password": pw}).to_string();
    let h = [("content-type", "application/json")];
    let wrong_pw = request(
        addr,
        "POST",
        "/login",
        &h,
        Some(&attempt("ana", "nope-nope")),
    )
    .await;
    let no_user = request(
        addr,
        "POST",
        "/login",
        &h,
        Some(&attempt("zed", "nope-nope")),
    )
    .await;
    assert_eq!((wrong_pw.status, no_user.status), (401, 401));
    assert_eq!(
        wrong_pw.body, no_user.body,
        "the answer never says whether the user exists"
    );
    assert!(wrong_pw.header("set-cookie").is_none());
    for _ in 0..4 {
        request(
            addr,
            "POST",
            "/login",
            &h,
            Some(&attempt("ana", "nope-nope")),
        )
        .await;
    }
    let limited = request(addr, "POST", "/login", &h, Some(&attempt("ana", PW))).await;
    assert_eq!(
        limited.status, 429,
        "after 5 failures even the right password waits"
    );
    assert_eq!(limited.json()["error"]["code"], "rate_limited");
    let (_, _) = login(addr, "bruno", PW).await;

    // Form posts from another site are refused outright.
    let evil = request(
        addr,
        "POST",
        "/login",
        &[
            ("origin", "http://evil.example"),
            ("content-type", "application/x-www-form-urlencoded"),
        ],
        Some("username=bruno&password=x"),
    )
    .await;
    assert_eq!(evil.status, 403);
    // A form login redirects and sets the cookie.
    let form = format!(
        "username=bruno&password={}&next=%2Fdm%2F1%2F",
        PW.replace(' ', "+")
    );
    let r = request(
        addr,
        "POST",
        "/login",
        &[("content-type", "application/x-www-form-urlencoded")],
        Some(&form),
    )
    .await;
    assert_eq!((r.status, r.header("location")), (303, Some("/dm/1/")));
    assert!(r.header("set-cookie").is_some());
}

#[tokio::test]
async fn tokens_authenticate_services_and_passwords_are_only_hashed() {
    let c = clinic(&[]).await;
    let addr = &c.server.addr;
    let (ok, token, err) = cli(
        c.dir.path(),
        &["token", "issue", "--user", "bruno", "--ttl", "1h"],
        "",
    );
    assert!(ok, "{err}");
    let token = token.trim();
    assert_eq!(token.lines().count(), 1, "the token alone on stdout");
    let bearer = format!("Bearer {token}");
    let me = request(addr, "GET", "/api/me", &[("authorization", &bearer)], None).await;
    assert_eq!((me.status, me.json()["id"].as_i64()), (200, Some(c.bruno)));
    let post = request(
        addr,
        "POST",
        "/api/rooms/lobby/messages",
        &[
            ("authorization", &bearer),
            ("content-type", "application/json"),
        ],
        Some(r#"{"body":"from a service","client_id":"s1"}"#),
    )
    .await;
    assert_eq!(post.status, 201);
    assert_eq!(
        post.json()["sender"],
        json!({"id": c.bruno, "name": "Bruno", "role": "vet"})
    );
    let flipped = if token.ends_with('0') { '1' } else { '0' };
    let tampered = format!("Bearer {}{flipped}", &token[..token.len() - 1]);
    assert_eq!(
        request(
            addr,
            "GET",
            "/api/me",
            &[("authorization", &tampered)],
            None
        )
        .await
        .status,
        401
    );
    let ws = Client::try_connect_with(
        &c.server.ws_url(&format!("/ws/dm/{}/", c.ana)),
        &[("authorization", &bearer)],
    )
    .await;
    assert!(ws.is_ok(), "tokens open sockets too");
    let (ok, _, err) = cli(c.dir.path(), &["token", "issue", "--user", "nobody"], "");
    assert!(!ok && err.contains("nobody"), "{err}");

    // Several users at once: one token per line, in order; one unknown user prints none.
    let (ok, out, err) = cli(
        c.dir.path(),
        &["token", "issue", "--user", "ana", "--user", "bruno"],
        "",
    );
    assert!(ok, "{err}");
    let ids: Vec<Option<i64>> = {
        let mut ids = Vec::new();
        for t in out.lines() {
            let bearer = format!("Bearer {t}");
            let me = request(addr, "GET", "/api/me", &[("authorization", &bearer)], None).await;
            ids.push(me.json()["id"].as_i64());
        }
        ids
    };
    assert_eq!(ids, vec![Some(c.ana), Some(c.bruno)]);
    let (ok, out, err) = cli(
        c.dir.path(),
        &["token", "issue", "--user", "ana", "--user", "nobody"],
        "",
    );
    assert!(
        !ok && err.contains("nobody") && out.is_empty(),
        "{out}{err}"
    );

    let (ok, list, _) = cli(c.dir.path(), &["user", "list"], "");
    assert!(ok && list.contains("ana") && list.contains("vet"));
    let (ok, _, err) = cli(
        c.dir.path(),
        &["user", "add", "--username", "ana"],
        &format!("{PW}\n"),
    );
    assert!(!ok && err.contains("taken"), "{err}");
    let (ok, _, err) = cli(
        c.dir.path(),
        &["user", "add", "--username", "eve"],
        "short\n",
    );
    assert!(!ok && err.contains("at least"), "{err}");

    let store = chat_store::Store::open(chat_store::StoreConfig::new(format!(
        "{}/chat.db",
        c.dir.path().display()
    )))
    .await
    .unwrap();
    let (_, hash) = store.user_with_password_hash("ana").await.unwrap().unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains(PW));
}
