//! Self-registration (`POST /register`) against the real binary: open on the embedded setup,
//! with the server's configured role only, closable by flag.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Server, request};
use serde_json::json;

const PW: &str = "correct horse battery";

#[tokio::test]
async fn registration_is_open_on_the_embedded_setup_and_can_be_closed() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let addr = &server.addr;
    let h = [("content-type", "application/json")];
    let body = json!({"username": "newbie", "password": PW, "name": "New Bie"}).to_string();
    let r = request(addr, "POST", "/register", &h, Some(&body)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["user"]["name"], "New Bie");
    assert_eq!(r.json()["user"]["role"], "", "no role by default");
    // Nobody picks their own role: a stranger cannot sign up as a vet.
    let vet = json!({"username": "fakevet", "password": PW, "role": "vet"}).to_string();
    let r = request(addr, "POST", "/register", &h, Some(&vet)).await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    assert_eq!(
        request(addr, "POST", "/register", &h, Some(&body))
            .await
            .status,
        409
    );
    let admin = json!({"username": "boss", "password": PW, "role": "admin"}).to_string();
    assert_eq!(
        request(addr, "POST", "/register", &h, Some(&admin))
            .await
            .status,
        403
    );
    let weak = json!({"username": "weak", "password": "123"}).to_string();
    assert_eq!(
        request(addr, "POST", "/register", &h, Some(&weak))
            .await
            .status,
        400
    );

    let other_dir = tempfile::tempdir().unwrap();
    let closed = Server::start(other_dir.path(), &["--allow-registration", "false"]);
    let r = request(&closed.addr, "POST", "/register", &h, Some(&body)).await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
}

#[tokio::test]
async fn registration_gives_the_configured_role() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--register-role", "tutor"]);
    let h = [("content-type", "application/json")];
    let body = json!({"username": "ana", "password": PW}).to_string();
    let r = request(&server.addr, "POST", "/register", &h, Some(&body)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["user"]["role"], "tutor");
    let vet = json!({"username": "bia", "password": PW, "role": "vet"}).to_string();
    let r = request(&server.addr, "POST", "/register", &h, Some(&vet)).await;
    assert_eq!(r.status, 403, "{}", r.body);
}
