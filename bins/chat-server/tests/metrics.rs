//! `GET /metrics` on the real binary: real traffic moves the series, the text parses as the
//! Prometheus format, only local unproxied requests may read it on the main listener, and
//! `--metrics-bind` moves it to a listener of its own.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use common::{Client, Server, WAIT, request};
use serde_json::json;

/// One sample of the text format: name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A scrape, parsed.
#[derive(Debug, Default)]
struct Scrape {
    samples: Vec<Sample>,
    /// `# TYPE` of each family.
    types: HashMap<String, String>,
}

/// Parses `k="v",k2="v2"` (with the format's `\\`, `\"` and `\n` escapes).
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            return labels;
        }
        assert_eq!(
            chars.next(),
            Some('"'),
            "label {key} has a quoted value: {text}"
        );
        let mut value = String::new();
        loop {
            match chars
                .next()
                .unwrap_or_else(|| panic!("unterminated label value: {text}"))
            {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(c) => value.push(c),
                    None => panic!("dangling escape: {text}"),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        labels.insert(key.trim().to_owned(), value);
    }
}

fn parse_value(text: &str) -> f64 {
    match text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().unwrap_or_else(|e| panic!("value {v:?}: {e}")),
    }
}

/// Parses the Prometheus text exposition format (what a scraper reads).
fn parse(text: &str) -> Scrape {
    let mut scrape = Scrape::default();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            scrape.types.insert(name.to_owned(), kind.trim().to_owned());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (name, labels, rest) = match line.find('{') {
            Some(open) => {
                let close = line.rfind('}').expect("labels end with }");
                (
                    &line[..open],
                    parse_labels(&line[open + 1..close]),
                    &line[close + 1..],
                )
            }
            None => {
                let (name, rest) = line.split_once(' ').expect("name value");
                (name, BTreeMap::new(), rest)
            }
        };
        // A timestamp may follow the value.
        let value = rest.split_whitespace().next().expect("a value");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "metric name {name:?}"
        );
        scrape.samples.push(Sample {
            name: name.to_owned(),
            labels,
            value: parse_value(value),
        });
    }
    scrape
}

impl Scrape {
    /// The sum of the samples named `name` whose labels include `labels`; `None` when there
    /// is none.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let matching: Vec<f64> = self
            .samples
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .collect();
        (!matching.is_empty()).then(|| matching.iter().sum())
    }

    /// Like [`Scrape::value`], failing the test when the series is missing.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels)
            .unwrap_or_else(|| panic!("no series {name}{labels:?} in the scrape"))
    }

    /// The values of `label` on the samples named `name`.
    fn label_values(&self, name: &str, label: &str) -> Vec<String> {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter_map(|s| s.labels.get(label).cloned())
            .collect()
    }
}

/// `GET /metrics` from 127.0.0.1, parsed.
async fn scrape(addr: &str) -> Scrape {
    let r = request(addr, "GET", "/metrics", &[], None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.header("content-type")
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        r.header("content-type")
    );
    parse(&r.body)
}

/// Scrapes until `done` holds (the server records some things on other tasks, such as a
/// connection's end), failing after [`WAIT`].
async fn scrape_until(addr: &str, what: &str, done: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let s = scrape(addr).await;
        if done(&s) {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within the wait; last scrape: {s:?}"
        );
        tokio::task::yield_now().await;
    }
}

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

    // A client leaves: the gauges come down and the close is counted.
    drop(b);
    let s = scrape_until(&server.addr, "b's close", |s| {
        s.value("chat_connections", &[("kind", "room")]) == Some(1.0)
            && s.value("chat_closes_total", &[("by", "client")])
                .unwrap_or(0.0)
                >= 1.0
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
    let answer = request(&server.addr, "GET", &path, &[], None).await;
    // Engine.IO may batch a ping before it, packets separated by U+001E.
    assert!(
        answer
            .body
            .split('\u{1e}')
            .any(|p| p.starts_with("44/chat,") && p.contains("log in to chat")),
        "a connect_error: {}",
        answer.body
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
