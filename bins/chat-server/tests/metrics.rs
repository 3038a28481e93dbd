//! `GET /metrics` on the real binary: real traffic moves the series, the text parses as the
//! Prometheus format, only local unproxied requests may read it on the main listener, and
//! `--metrics-bind` moves it to a listener of its own.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use common::prom::{parse, scrape, scrape_until};
use common::{Client, Server, request};
use serde_json::json;

#[test]
fn the_parser_reads_the_text_format() {
    let s = parse(
        "# HELP a_total A.\n# TYPE a_total counter\na_total{code=\"x\\\"y\",by=\"server\"} 3\n\
         b 1.5 1700000000\nh_bucket{le=\"+Inf\"} 2\n",
    );
    assert_eq!(s.types["a_total"], "counter");
    assert_eq!(s.get("a_total", &[("code", "x\"y")]), 3.0);
    assert_eq!(s.get("b", &[]), 1.5);
    assert_eq!(s.get("h_bucket", &[("le", "+Inf")]), 2.0);
    assert_eq!(s.value("a_total", &[("code", "z")]), None);
}

#[tokio::test]
async fn real_traffic_moves_the_metrics() {
    let dir = tempfile::tempdir().unwrap();
    common::add_user(dir.path(), "ana", "Ana", "", "correct horse battery");
    let server = Server::start(dir.path(), &[]);

    // Two guests in a room; one sends three messages, the other receives them.
    let mut a = Client::connect(&server.ws_url("/ws/chat/lobby/?name=Ana")).await;
    let mut b = Client::connect(&server.ws_url("/ws/chat/lobby/?name=Bruno")).await;
    const N: usize = 3;
    for i in 0..N {
        a.send(json!({"type": "message", "body": format!("oi {i}"), "client_id": format!("c{i}")}))
            .await;
    }
    // The sender gets an ack and its own copy of each message, in either order.
    let (mut acks, mut echoes) = (0, 0);
    while acks < N || echoes < N {
        match a.recv().await["type"].as_str() {
            Some("ack") => acks += 1,
            Some("message") => echoes += 1,
            other => panic!("unexpected frame {other:?}"),
        }
    }
    for _ in 0..N {
        b.recv_type("message").await;
    }
    // A frame that is not JSON: an `invalid_json` error.
    a.send_text("this is not json").await;
    assert_eq!(a.recv_type("error").await["code"], "invalid_json");
    // A failed login and a good one.
    let bad = json!({"username": "ana", "password": "wrong"}).to_string();
    let r = request(
        &server.addr,
        "POST",
        "/login",
        &[("content-type", "application/json")],
        Some(&bad),
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.body);
    common::login(&server.addr, "ana", "correct horse battery").await;
    // A handshake refused: private rooms need an account.
    assert_eq!(
        Client::try_connect(&server.ws_url("/ws/dm/1/"), None)
            .await
            .err(),
        Some(401)
    );

    let s = scrape(&server.addr).await;
    let n = N as f64;
    assert_eq!(s.get("chat_connections", &[("kind", "room")]), 2.0);
    assert_eq!(s.get("chat_rooms_joined", &[]), 2.0);
    assert_eq!(s.get("chat_users_online", &[]), 2.0, "two guests online");
    assert_eq!(
        s.get("chat_messages_stored_total", &[("backend", "sqlite")]),
        n
    );
    assert_eq!(
        s.get("chat_frames_received_total", &[("type", "message")]),
        n
    );
    assert!(s.get("chat_frames_received_total", &[("type", "invalid")]) >= 1.0);
    assert!(s.get("chat_errors_sent_total", &[("code", "invalid_json")]) >= 1.0);
    assert_eq!(s.get("chat_logins_total", &[("result", "failed")]), 1.0);
    assert_eq!(s.get("chat_logins_total", &[("result", "ok")]), 1.0);
    assert!(s.get("chat_handshakes_refused_total", &[("status", "401")]) >= 1.0);
    // Each message reached both sockets (the sender's own copy included).
    assert_eq!(s.get("chat_deliveries_total", &[]), 2.0 * n);

    // Histograms are Prometheus histograms (buckets), and counted every message.
    assert_eq!(s.types["chat_send_ack_seconds"], "histogram");
    assert_eq!(s.get("chat_send_ack_seconds_count", &[]), n);
    assert_eq!(
        s.get("chat_send_ack_seconds_bucket", &[("le", "+Inf")]),
        n,
        "every ack is in the last bucket"
    );
    assert!(s.get("chat_send_ack_seconds_sum", &[]) > 0.0);
    assert!(s.get("chat_store_commit_seconds_count", &[("backend", "sqlite")]) >= 1.0);
    assert!(s.get("chat_store_batch_size_sum", &[("backend", "sqlite")]) >= n);
    // Every message fanned out to the room's two members.
    assert!(s.get("chat_group_send_members_count", &[]) >= n);
    assert!(s.get("chat_group_send_members_sum", &[]) >= 2.0 * n);

    // Labels come from fixed sets: never a room name or a user.
    for v in s.label_values("chat_frames_received_total", "type") {
        assert!(
            [
                "message", "join", "leave", "typing", "read", "history", "ping", "invalid", "other"
            ]
            .contains(&v.as_str()),
            "{v}"
        );
    }
    assert!(!s.samples.iter().any(|x| {
        x.labels
            .values()
            .any(|v| v == "lobby" || v == "Ana" || v == "Bruno")
    }));

    // A client leaves: the gauges come down and the close is counted. The connection gauge
    // drops when the socket closes, presence and the joined rooms a moment later (when the
    // consumer has left its room): wait for all of them.
    drop(b);
    let s = scrape_until(&server.addr, "b's close", |s| {
        s.value("chat_connections", &[("kind", "room")]) == Some(1.0)
            && s.value("chat_closes_total", &[("by", "client")])
                .unwrap_or(0.0)
                >= 1.0
            && s.value("chat_users_online", &[]) == Some(1.0)
            && s.value("chat_rooms_joined", &[]) == Some(1.0)
    })
    .await;
    assert_eq!(s.get("chat_rooms_joined", &[]), 1.0);
    assert_eq!(s.get("chat_users_online", &[]), 1.0);
    drop(a);
    assert!(server.stop());
}

#[tokio::test]
async fn the_main_listener_serves_metrics_only_to_local_unproxied_requests() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    // A proxy on this machine connects from loopback for any client: refused.
    for header in ["x-forwarded-for", "forwarded", "x-real-ip"] {
        let r = request(
            &server.addr,
            "GET",
            "/metrics",
            &[(header, "203.0.113.7")],
            None,
        )
        .await;
        assert_eq!(r.status, 403, "{header}: {}", r.body);
    }
    scrape(&server.addr).await;
    assert!(server.stop());
}

/// A Socket.IO connection refused at its namespace (after its HTTP handshake succeeded) counts
/// as a refused handshake, with the status a WebSocket handshake would have got.
#[tokio::test]
async fn a_socketio_refusal_counts_as_a_refused_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--allow-guests", "false"]);
    let open = request(
        &server.addr,
        "GET",
        "/socket.io/?EIO=4&transport=polling",
        &[],
        None,
    )
    .await;
    assert_eq!(open.status, 200, "{}", open.body);
    let handshake: serde_json::Value = serde_json::from_str(&open.body[1..]).unwrap();
    let sid = handshake["sid"].as_str().unwrap().to_owned();
    let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    let posted = request(
        &server.addr,
        "POST",
        &path,
        &[("content-type", "text/plain")],
        Some("40/chat,"),
    )
    .await;
    assert_eq!(posted.status, 200, "{}", posted.body);
    // Engine.IO may send a ping first, alone or batched before it (packets separated by
    // U+001E): a client answers it and polls again.
    let mut polled = Vec::new();
    for _ in 0..5 {
        let answer = request(&server.addr, "GET", &path, &[], None).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        let packets: Vec<String> = answer.body.split('\u{1e}').map(str::to_owned).collect();
        let only_pings = packets.iter().all(|p| p == "2");
        polled.extend(packets);
        if !only_pings {
            break;
        }
        let pong = request(
            &server.addr,
            "POST",
            &path,
            &[("content-type", "text/plain")],
            Some("3"),
        )
        .await;
        assert_eq!(pong.status, 200, "{}", pong.body);
    }
    assert!(
        polled
            .iter()
            .any(|p| p.starts_with("44/chat,") && p.contains("log in to chat")),
        "a connect_error: {polled:?}"
    );
    let scrape = scrape(&server.addr).await;
    assert_eq!(
        scrape.value("chat_handshakes_refused_total", &[("status", "401")]),
        Some(1.0)
    );
    assert!(server.stop());
}

/// One live delivery in 64 per server thread is timed from its commit: 600 deliveries
/// (300 messages, two members) give at least one sample on any server of up to 9 threads.
#[tokio::test]
async fn commit_to_delivery_is_sampled() {
    let dir = tempfile::tempdir().unwrap();
    let unlimited = [
        "--messages-per-second",
        "100000",
        "--message-burst",
        "100000",
    ];
    let server = Server::start(dir.path(), &unlimited);
    let mut a = Client::connect(&server.ws_url("/ws/chat/lobby/?name=Ana")).await;
    let mut b = Client::connect(&server.ws_url("/ws/chat/lobby/?name=Bruno")).await;
    const N: u64 = 300;
    for i in 0..N {
        a.send(json!({"type": "message", "body": format!("m{i}"), "client_id": format!("c{i}")}))
            .await;
    }
    let mut last = 0;
    while last < N {
        let m = b.recv_type("message").await;
        last = m["seq"].as_u64().unwrap();
    }
    let (mut acks, mut echoes) = (0, 0);
    while acks < N || echoes < N {
        match a.recv().await["type"].as_str() {
            Some("ack") => acks += 1,
            Some("message") => echoes += 1,
            _ => {}
        }
    }
    let scrape = scrape(&server.addr).await;
    let samples = scrape
        .value("chat_commit_to_delivery_seconds_count", &[])
        .unwrap_or(0.0);
    assert!(samples >= 1.0, "no delivery was timed");
    assert!(
        samples <= (2 * N / 64 + 9) as f64,
        "sampled, not every delivery: {samples}"
    );
    let sum = scrape
        .value("chat_commit_to_delivery_seconds_sum", &[])
        .unwrap();
    assert!(
        sum / samples < 10.0,
        "delays in seconds: {sum} over {samples}"
    );
    assert!(server.stop());
}

#[tokio::test]
async fn no_metrics_serves_none_and_the_server_still_works() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--no-metrics"]);
    let r = request(&server.addr, "GET", "/metrics", &[], None).await;
    assert_eq!(r.status, 404, "{}", r.body);
    let mut ana = Client::connect(&server.ws_url("/ws/chat/lobby/?name=ana")).await;
    ana.send(json!({"type": "message", "body": "oi", "client_id": "c1"}))
        .await;
    assert_eq!(ana.recv_type("ack").await["seq"], 1);
    assert!(server.stop());
}

/// A server started with `--metrics-bind 127.0.0.1:0`: the child, its main address and its
/// metrics address, read from its `metrics on` and `listening on` lines.
struct MetricsServer {
    child: Child,
    addr: String,
    metrics: String,
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_with_metrics_bind(dir: &std::path::Path) -> MetricsServer {
    let mut child = Command::new(env!("CARGO_BIN_EXE_chat-server"))
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .args(["--metrics-bind", "127.0.0.1:0"])
        .env("CHAT_LOG", "warn")
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env_remove("CHAT_METRICS_BIND")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start chat-server");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut metrics = None;
    let addr = loop {
        let line = lines
            .next()
            .expect("chat-server exited before listening")
            .expect("read stdout");
        if let Some(rest) = line.strip_prefix("metrics on http://") {
            metrics = rest.trim().strip_suffix("/metrics").map(str::to_owned);
        }
        if let Some(rest) = line.strip_prefix("listening on http://") {
            break rest.trim().to_owned();
        }
    };
    MetricsServer {
        child,
        addr,
        metrics: metrics.expect("a `metrics on http://…/metrics` line before `listening on`"),
    }
}

#[tokio::test]
async fn metrics_bind_moves_metrics_to_their_own_listener() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with_metrics_bind(dir.path());
    assert_ne!(server.addr, server.metrics);

    // The main listener no longer has it, even for local requests.
    let r = request(&server.addr, "GET", "/metrics", &[], None).await;
    assert_eq!(r.status, 404, "{}", r.body);

    // Traffic on the main listener shows on the metrics listener.
    let bad = json!({"username": "nobody", "password": "wrong"}).to_string();
    let r = request(
        &server.addr,
        "POST",
        "/login",
        &[("content-type", "application/json")],
        Some(&bad),
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.body);
    let s = scrape(&server.metrics).await;
    assert_eq!(s.get("chat_logins_total", &[("result", "failed")]), 1.0);

    // The metrics listener serves nothing else.
    let r = request(&server.metrics, "GET", "/healthz", &[], None).await;
    assert_eq!(r.status, 404, "{}", r.body);
}
