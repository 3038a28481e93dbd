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
