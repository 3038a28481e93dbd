//! Logs of the real binary: `--log-format json` writes one JSON object per line, requests
//! carry a request id (echoed in `X-Request-Id`) and connections a span with their id, kind,
//! room and user, and no line holds a message body, a password or a session.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Client, Server, add_user, log_message, login, request, urlencode};
use serde_json::{Value, json};

const PASSWORD: &str = "pw-Zq8-correct-horse";
const WRONG_PASSWORD: &str = "pw-Kx7-wrong-battery";
const BODY: &str = "body-Vw3-never-in-a-log";

/// The fields of every span of a JSON log line (`spans`), merged.
fn span_fields(line: &Value) -> serde_json::Map<String, Value> {
    let mut fields = serde_json::Map::new();
    for span in line["spans"].as_array().into_iter().flatten() {
        if let Some(o) = span.as_object() {
            fields.extend(o.clone());
        }
    }
    fields
}

#[tokio::test]
async fn json_logs_carry_request_and_connection_spans_and_no_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let ana = add_user(dir.path(), "ana", "Ana", "", PASSWORD);
    let (server, logs) =
        Server::start_logged(dir.path(), "info,chat_ws=debug", &["--log-format", "json"]);
    let addr = &server.addr;

    // A failed login logs a line in its request's span.
    let body = json!({"username": "ana", "password": WRONG_PASSWORD}).to_string();
    let failed = request(
        addr,
        "POST",
        "/login",
        &[
            ("content-type", "application/json"),
            ("x-request-id", "login-try-1"),
        ],
        Some(&body),
    )
    .await;
    assert_eq!(failed.status, 401, "{}", failed.body);
    assert_eq!(failed.header("x-request-id"), Some("login-try-1"));

    // A user sends a message on a room socket, authenticated by `?session=`.
    let (session, _) = login(addr, "ana", PASSWORD).await;
    let url = server.ws_url(&format!("/ws/chat/lobby/?session={}", urlencode(&session)));
    let mut client = Client::connect(&url).await;
    client
        .send(json!({"type": "message", "body": BODY, "client_id": "c1"}))
        .await;
    assert_eq!(client.recv_type("ack").await["seq"], 1);
    let (status, history) = common::http_json(addr, "GET", "/api/rooms/lobby/messages", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        history["messages"][0]["body"], BODY,
        "the message was stored"
    );
    drop(client);

    let lines = logs
        .wait_json(
            "the connection's end logged",
            Duration::from_secs(10),
            |l| l.iter().any(|l| log_message(l) == "connection ended"),
        )
        .await;

    // Every line is a JSON object with a timestamp, a level and a message.
    assert!(lines.len() >= 4, "{lines:#?}");
    for line in &lines {
        assert!(line["timestamp"].is_string(), "{line}");
        assert!(
            ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"]
                .contains(&line["level"].as_str().unwrap_or("")),
            "{line}"
        );
        assert!(line["fields"]["message"].is_string(), "{line}");
    }
    assert!(
        lines
            .iter()
            .any(|l| log_message(l) == "chat-server started"),
        "{lines:#?}"
    );

    // The failed login's line names its request.
    let failure = lines
        .iter()
        .find(|l| log_message(l) == "failed login")
        .unwrap_or_else(|| panic!("no failed login line: {lines:#?}"));
    assert_eq!(
        span_fields(failure)["request_id"],
        "login-try-1",
        "{failure}"
    );
    assert_eq!(span_fields(failure)["path"], "/login", "{failure}");

    // The connection's lines carry its span: id, kind, room and user, from open to end.
    for message in ["connection opened", "connection ended"] {
        let line = lines
            .iter()
            .find(|l| log_message(l) == message)
            .unwrap_or_else(|| panic!("no {message:?} line: {lines:#?}"));
        let span = span_fields(line);
        assert_eq!(span["kind"], "room", "{line}");
        assert_eq!(span["room"], "lobby", "{line}");
        assert_eq!(span["user"], ana, "{line}");
        assert!(span["id"].is_u64(), "{line}");
        assert!(
            span["request_id"].is_string(),
            "the handshake's request: {line}"
        );
    }

    // No secrets, no bodies: not the message, a password, the session or the secret key.
    let secret_key = std::fs::read_to_string(dir.path().join("secret_key")).unwrap();
    let raw = logs.lines().join("\n");
    for secret in [BODY, PASSWORD, WRONG_PASSWORD, &session, secret_key.trim()] {
        assert!(!raw.contains(secret), "{secret:?} is in the logs:\n{raw}");
    }
    assert!(server.stop(), "clean exit");
}

#[tokio::test]
async fn every_response_has_a_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let get = |headers: &'static [(&'static str, &'static str)]| {
        let addr = server.addr.clone();
        async move { request(&addr, "GET", "/healthz", headers, None).await }
    };
    let given = get(&[("x-request-id", "abc-123")]).await;
    assert_eq!(given.header("x-request-id"), Some("abc-123"));

    let generated = |r: &common::Reply| {
        let id = r.header("x-request-id").expect("x-request-id").to_owned();
        assert!(
            id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{id}"
        );
        id
    };
    let a = generated(&get(&[]).await);
    let b = generated(&get(&[]).await);
    assert_ne!(a, b, "each request gets its own id");
    // Not sane: replaced, not echoed.
    generated(&get(&[("x-request-id", "two words")]).await);
    let long: &'static str = Box::leak("x".repeat(65).into_boxed_str());
    let headers: &'static [(&'static str, &'static str)] =
        Box::leak(vec![("x-request-id", long)].into_boxed_slice());
    generated(&get(headers).await);
    // Errors too.
    let missing = request(
        &server.addr,
        "GET",
        "/nothing",
        &[("x-request-id", "r-404")],
        None,
    )
    .await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.header("x-request-id"), Some("r-404"));
}
