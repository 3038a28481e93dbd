//! `/readyz` names each dependency's state and fails only on the store; `/healthz` is
//! "process alive". Against the real binary, with a Redis and a PostgreSQL of the test's own
//! that the tests stop and restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{OwnPostgres, OwnRedis, Server, log_message, request};
use serde_json::{Value, json};

/// How long a dependency's change may take to show (the Redis layer retries with a backoff
/// of at most 5 s).
const CHANGE: Duration = Duration::from_secs(20);

async fn readyz(addr: &str) -> (u16, Value) {
    let r = request(addr, "GET", "/readyz", &[], None).await;
    assert_eq!(
        r.header("content-type"),
        Some("application/json"),
        "{}",
        r.body
    );
    (r.status, r.json())
}

/// Polls `/readyz` until its body is `want`, checking the status of every answer.
async fn wait_ready(addr: &str, want: Value, status: u16) {
    let deadline = std::time::Instant::now() + CHANGE;
    loop {
        let (s, body) = readyz(addr).await;
        if body == want {
            assert_eq!(s, status, "{body}");
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "/readyz never said {want} (last: {s} {body})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn count(lines: &[Value], level: &str, message: &str) -> usize {
    lines
        .iter()
        .filter(|l| l["level"] == level && log_message(l).starts_with(message))
        .count()
}

#[tokio::test]
async fn a_redis_outage_keeps_the_node_ready_and_is_logged_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut redis = OwnRedis::start(0);
    let port = redis.port;
    let (server, logs) = Server::start_logged(
        dir.path(),
        "warn,chat_core=debug",
        &["--redis-url", &redis.url(), "--log-format", "json"],
    );
    let (status, body) = readyz(&server.addr).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"store": "ok", "redis": "ok"}));
    assert_eq!(
        metric(&server.addr, "chat_redis_connected").await,
        Some(1.0)
    );

    redis.stop();
    // Every node shares Redis: its outage must not take the node out of the load balancer.
    wait_ready(&server.addr, json!({"store": "ok", "redis": "down"}), 200).await;
    // Several retries fail while Redis is down, and one warning says so, not one per retry.
    let lines = logs
        .wait_json("two failed retries", CHANGE, |l| {
            count(l, "DEBUG", "redis pub/sub still unavailable") >= 2
        })
        .await;
    let warnings = lines
        .iter()
        .filter(|l| l["level"] == "WARN" && log_message(l).starts_with("redis pub/sub"))
        .count();
    assert_eq!(warnings, 1, "one warning per outage: {lines:#?}");
    assert_eq!(count(&lines, "INFO", "redis channel layer reconnected"), 0);
    assert_eq!(
        metric(&server.addr, "chat_redis_connected").await,
        Some(0.0),
        "the metric follows the same state"
    );
    assert_eq!(
        http_status(&server.addr, "/healthz").await,
        200,
        "the process is alive"
    );

    let _redis = OwnRedis::start(port);
    wait_ready(&server.addr, json!({"store": "ok", "redis": "ok"}), 200).await;
    let lines = logs
        .wait_json("the reconnection logged", CHANGE, |l| {
            count(l, "INFO", "redis channel layer reconnected") >= 1
        })
        .await;
    assert_eq!(
        count(&lines, "INFO", "redis channel layer reconnected"),
        1,
        "{lines:#?}"
    );
    assert_eq!(
        metric(&server.addr, "chat_redis_connected").await,
        Some(1.0)
    );
    drop(redis);
    assert!(server.stop(), "clean exit");
}

/// The value of the unlabelled series `name` in a `/metrics` scrape from loopback.
async fn metric(addr: &str, name: &str) -> Option<f64> {
    common::prom::scrape(addr).await.value(name, &[])
}

async fn http_status(addr: &str, path: &str) -> u16 {
    request(addr, "GET", path, &[], None).await.status
}

#[tokio::test]
async fn without_redis_readyz_says_redis_is_off() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let (status, body) = readyz(&server.addr).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"store": "ok", "redis": "off"}));
    let health = request(&server.addr, "GET", "/healthz", &[], None).await;
    assert_eq!((health.status, health.body.as_str()), (200, "ok"));
}

#[tokio::test]
async fn a_store_outage_is_503_and_says_which_dependency_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let mut pg = OwnPostgres::start();
    let server = Server::start(dir.path(), &["--database-url", &pg.url()]);
    let (status, body) = readyz(&server.addr).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"store": "ok", "redis": "off"}));

    pg.stop();
    wait_ready(&server.addr, json!({"store": "down", "redis": "off"}), 503).await;
    assert_eq!(
        http_status(&server.addr, "/healthz").await,
        200,
        "alive, only not ready"
    );

    pg.restart();
    wait_ready(&server.addr, json!({"store": "ok", "redis": "off"}), 200).await;
}
