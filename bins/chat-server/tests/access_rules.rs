//! Who may post where: users under their account, guests only when allowed, and rate limits
//! keyed by the right client address behind a proxy.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Client, Server, add_user, login, request};
use serde_json::json;

const PW: &str = "correct horse battery";

#[tokio::test]
async fn logged_in_users_post_in_public_rooms_under_their_name_and_guests_can_be_disabled() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--allow-guests", "false"]);
    add_user(dir.path(), "ana", "Ana", "tutor", PW);
    let (_, cookie) = login(&server.addr, "ana", PW).await;
    assert_eq!(
        Client::try_connect(&server.ws_url("/ws/chat/lobby/?name=guest"), None)
            .await
            .err(),
        Some(401)
    );
    let mut ana = Client::try_connect_with(
        &server.ws_url("/ws/chat/lobby/?name=ignored"),
        &[("cookie", &cookie)],
    )
    .await
    .unwrap();
    ana.send(json!({"type": "message", "body": "hello"})).await;
    let m = ana.recv_type("message").await;
    assert_eq!(
        m["sender"]["name"], "Ana",
        "users speak under their account, not ?name="
    );
}

#[tokio::test]
async fn behind_a_trusted_proxy_limits_follow_the_forwarded_address() {
    // A different username each time, so only the per-address limit is in play.
    let fail_from = |addr: String, ip: &'static str, n: u32| async move {
        let attempt =
            json!({"username": format!("nobody{n}"), "password": "wrong-password"}).to_string();
        request(
            &addr,
            "POST",
            "/login",
            &[
                ("content-type", "application/json"),
                ("x-forwarded-for", ip),
            ],
            Some(&attempt),
        )
        .await
        .status
    };
    // Trusted: ten failures from one forwarded address limit that address only.
    let dir = tempfile::tempdir().unwrap();
    let proxied = Server::start(dir.path(), &["--trust-proxy", "true"]);
    for n in 0..10 {
        assert_eq!(fail_from(proxied.addr.clone(), "203.0.113.7", n).await, 401);
    }
    assert_eq!(
        fail_from(proxied.addr.clone(), "203.0.113.7", 10).await,
        429
    );
    assert_eq!(
        fail_from(proxied.addr.clone(), "203.0.113.8", 11).await,
        401,
        "another client is not limited"
    );

    // Not trusted (the default): the header is ignored, everyone shares the peer address.
    let dir = tempfile::tempdir().unwrap();
    let direct = Server::start(dir.path(), &[]);
    for n in 0..10 {
        let ip = if n % 2 == 0 {
            "203.0.113.7"
        } else {
            "203.0.113.8"
        };
        assert_eq!(fail_from(direct.addr.clone(), ip, n).await, 401);
    }
    assert_eq!(
        fail_from(direct.addr.clone(), "203.0.113.9", 10).await,
        429,
        "a forged header changes nothing"
    );
}

#[tokio::test]
async fn the_pair_policy_applies_on_every_path() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--pair-policy", "roles:tutor=vet"]);
    let ana = add_user(dir.path(), "ana", "Ana", "tutor", PW);
    let bruno = add_user(dir.path(), "bruno", "Bruno", "vet", PW);
    let carla = add_user(dir.path(), "carla", "Carla", "tutor", PW);
    let (_, ana_cookie) = login(&server.addr, "ana", PW).await;
    let (_, carla_cookie) = login(&server.addr, "carla", PW).await;
    let room = |a: i64, b: i64| format!("dm_{}_{}", a.min(b), a.max(b));

    // A tutor and a vet: allowed.
    let ok = Client::try_connect_with(
        &server.ws_url(&format!("/ws/dm/{bruno}/")),
        &[("cookie", &ana_cookie)],
    )
    .await;
    assert!(ok.is_ok());

    // Two tutors: refused on the pair socket, on /ws and on every HTTP route.
    let refused = Client::try_connect_with(
        &server.ws_url(&format!("/ws/dm/{ana}/")),
        &[("cookie", &carla_cookie)],
    )
    .await;
    assert_eq!(refused.err(), Some(403));
    let mut mux = Client::try_connect_with(&server.ws_url("/ws"), &[("cookie", &carla_cookie)])
        .await
        .unwrap();
    let tutors = room(ana, carla);
    mux.send(json!({"type": "join", "room": tutors})).await;
    let e = mux.recv_type("error").await;
    assert_eq!(e["code"], "forbidden", "{e}");
    let h = [("cookie", carla_cookie.as_str())];
    for (method, path, body) in [
        ("GET", format!("/api/rooms/{tutors}/messages"), None),
        (
            "POST",
            format!("/api/rooms/{tutors}/messages"),
            Some(json!({"body": "oi"}).to_string()),
        ),
        (
            "GET",
            format!("/api/rooms/{tutors}/poll?after=0&timeout=0"),
            None,
        ),
        ("GET", format!("/api/rooms/{tutors}/online"), None),
    ] {
        let mut headers = h.to_vec();
        headers.push(("content-type", "application/json"));
        let r = request(&server.addr, method, &path, &headers, body.as_deref()).await;
        assert_eq!(r.status, 403, "{method} {path}: {}", r.body);
    }
    // The allowed pair's room reads as usual.
    let (_, bruno_cookie) = login(&server.addr, "bruno", PW).await;
    let r = request(
        &server.addr,
        "GET",
        &format!("/api/rooms/{}/messages", room(ana, bruno)),
        &[("cookie", &bruno_cookie)],
        None,
    )
    .await;
    assert_eq!(r.status, 200);

    // A pair room with someone who does not exist is no conversation.
    let ghost = request(
        &server.addr,
        "GET",
        &format!("/api/rooms/{}/messages", room(ana, 999)),
        &[("cookie", &ana_cookie)],
        None,
    )
    .await;
    assert_eq!(ghost.status, 404, "{}", ghost.body);
}

#[test]
fn a_bad_pair_policy_is_refused_at_start_with_the_syntax() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, err) = common::cli(dir.path(), &["migrate", "--pair-policy", "tutors"], "");
    assert!(!ok);
    assert!(err.contains("roles:tutor=vet"), "{err}");
}
