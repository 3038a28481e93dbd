//! The fault suite (issue 13): real `chat-server` processes under mixed traffic while something
//! fails, and nothing acknowledged is lost or duplicated.
//!
//! Every scenario runs the same traffic: four peers on the multiplexed socket (`/ws`), two per
//! node, each sending a fixed number of messages with `client_id`s (a few in flight at once) to
//! two of three rooms (the public rooms `lobby` and `games`, and the pair room of the users ana
//! and bruno) while receiving everything in them from seq 1. Then a fault:
//!
//! 1. `kill -9` of node A: its peers reconnect to node B;
//! 2. SIGTERM of node A: its peers are closed with 1001 and reconnect to A restarted at the
//!    same address;
//! 3. a restart of PostgreSQL (one of the test's own): sends get `store_unavailable` and the
//!    peers resend them, with the same `client_id`s, once it is back;
//! 4. a restart of Redis (one of the test's own): sends keep being acked meanwhile, and what
//!    the nodes missed on Pub/Sub reaches the peers from the store.
//!
//! A peer whose socket ends reconnects and rejoins every room with `since` = the last seq it
//! saw, and resends every message it has no ack for with its original `client_id`.
//!
//! What must hold, in every scenario: every message is eventually acked, once per seq; every
//! peer sees every seq of its rooms exactly once and in order (no gap, no duplicate), and each
//! seq carries the message that was acked with it (no false ack); a fresh client resuming with
//! `since` (from 0 on `/ws`, from the middle on the room sockets) gets exactly the acked
//! messages. Each scenario prints its counts. (The single-sender Redis restart that was
//! `redis_restart.rs` is scenario 4 now.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "faults/harness.rs"]
mod harness;

use std::hash::{BuildHasher, Hasher};

use common::{OwnPostgres, OwnRedis, Server, postgres};
use harness::*;
use tokio::sync::watch;
use tokio::task::block_in_place;

fn prefix() -> String {
    let r = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    format!("chat-faults-{r:x}")
}

// ---------------------------------------------------------------------------------------------
// The scenarios.

/// Scenario 1: node A dies with SIGKILL in the middle of the traffic; its peers move to B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_a_node_under_traffic_loses_nothing() {
    let started = std::time::Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let db = postgres().await;
    let p = prefix();
    let mut flags = vec![
        "--redis-url",
        "redis://127.0.0.1:6379",
        "--redis-prefix",
        p.as_str(),
        "--database-url",
        db.url(),
    ];
    flags.extend(NO_RATE_LIMIT);
    let a = block_in_place(|| Server::start(dir.path(), &flags));
    let b = block_in_place(|| Server::start(dir.path(), &flags));
    let users = Users::create(dir.path(), db.url(), &b.addr).await;

    let (to_a, route_a) = watch::channel((0, a.addr.clone()));
    let (_to_b, route_b) = watch::channel((0, b.addr.clone()));
    let mut traffic = Traffic::start(users.peers(&route_a, &route_b), false);
    traffic
        .until("acks before the kill", |p| p.acked >= FAULT_AT)
        .await;
    // A's peers go to B once their sockets break.
    to_a.send_replace((1, b.addr.clone()));
    let acked = traffic.acked();
    block_in_place(|| a.kill9());
    println!("[kill -9] node A killed after {acked} acks");
    let (reports, targets) = traffic.finish().await;

    let expect = Expect {
        cut: &["ana", "gina"],
        close: None,
        store_errors: false,
    };
    verify(
        "kill -9", &b.addr, &users, &reports, &targets, &expect, acked,
    )
    .await;
    println!("[kill -9] took {:?}", started.elapsed());
}

/// Scenario 2: node A stops gracefully (SIGTERM) in the middle of the traffic; its peers are
/// closed with 1001 and resume on A restarted at the same address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_traffic_loses_nothing() {
    let started = std::time::Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let db = postgres().await;
    let p = prefix();
    let mut flags = vec![
        "--redis-url",
        "redis://127.0.0.1:6379",
        "--redis-prefix",
        p.as_str(),
        "--database-url",
        db.url(),
    ];
    flags.extend(NO_RATE_LIMIT);
    let a = block_in_place(|| Server::start(dir.path(), &flags));
    let b = block_in_place(|| Server::start(dir.path(), &flags));
    let users = Users::create(dir.path(), db.url(), &b.addr).await;

    let addr_a = a.addr.clone();
    let (to_a, route_a) = watch::channel((0, addr_a.clone()));
    let (_to_b, route_b) = watch::channel((0, b.addr.clone()));
    let mut traffic = Traffic::start(users.peers(&route_a, &route_b), false);
    traffic
        .until("acks before SIGTERM", |p| p.acked >= FAULT_AT)
        .await;
    let acked = traffic.acked();
    let clean = block_in_place(|| a.stop());
    assert!(clean, "node A exits successfully on SIGTERM");
    println!("[SIGTERM] node A stopped after {acked} acks");
    let closed = traffic
        .until("A's peers see their sockets close", |p| p.closed >= 2)
        .await;
    let a2 = block_in_place(|| Server::start_at(dir.path(), &addr_a, &flags));
    to_a.send_replace((1, a2.addr.clone()));
    println!(
        "[SIGTERM] node A restarted at {addr_a}; {} acks meanwhile",
        closed.acked
    );
    let (reports, targets) = traffic.finish().await;

    let expect = Expect {
        cut: &["ana", "gina"],
        close: Some(1001),
        store_errors: false,
    };
    verify(
        "SIGTERM", &a2.addr, &users, &reports, &targets, &expect, acked,
    )
    .await;
    across(&a2.addr, &b.addr).await;
    across(&b.addr, &a2.addr).await;
    println!("[SIGTERM] took {:?}", started.elapsed());
}

/// Scenario 3: PostgreSQL stops in the middle of the traffic and starts again. Sends meanwhile
/// get `store_unavailable` and no ack; resent with their `client_id`s afterwards, each is stored
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_under_traffic_loses_nothing() {
    let started = std::time::Instant::now();
    let mut pg = block_in_place(OwnPostgres::start);
    let url = pg.url();
    let dir = tempfile::tempdir().unwrap();
    let p = prefix();
    let mut flags = vec![
        "--redis-url",
        "redis://127.0.0.1:6379",
        "--redis-prefix",
        p.as_str(),
        "--database-url",
        url.as_str(),
    ];
    flags.extend(NO_RATE_LIMIT);
    let a = block_in_place(|| Server::start(dir.path(), &flags));
    let b = block_in_place(|| Server::start(dir.path(), &flags));
    let users = Users::create(dir.path(), &url, &b.addr).await;
    println!("[postgres] cluster and nodes up at {:?}", started.elapsed());

    let (_to_a, route_a) = watch::channel((0, a.addr.clone()));
    let (_to_b, route_b) = watch::channel((0, b.addr.clone()));
    let mut traffic = Traffic::start(users.peers(&route_a, &route_b), true);
    traffic
        .until("acks before PostgreSQL stops", |p| p.acked >= FAULT_AT)
        .await;
    let acked = traffic.acked();
    block_in_place(|| pg.stop());
    println!(
        "[postgres] stopped after {acked} acks, at {:?}",
        started.elapsed()
    );
    // Every peer still sending gets a refusal, and then has nothing left in flight.
    let down = traffic
        .until("every peer refused while PostgreSQL is down", |p| {
            p.state.iter().all(|s| *s != State::Sending)
        })
        .await;
    for node in [&a, &b] {
        let (status, body) = common::http(&node.addr, "GET", "/readyz", None).await;
        assert_eq!(status, 503, "not ready while PostgreSQL is down: {body}");
        assert!(body.contains(r#""store":"down""#), "{body}");
    }
    block_in_place(|| pg.restart());
    println!(
        "[postgres] restarted at {:?}; {} refusals, {} acks while it was stopping or down",
        started.elapsed(),
        down.errors,
        down.acked - acked
    );
    traffic.recovered.send_modify(|g| *g += 1);
    let (reports, targets) = traffic.finish().await;

    let expect = Expect {
        cut: &[],
        close: None,
        store_errors: true,
    };
    verify(
        "postgres", &b.addr, &users, &reports, &targets, &expect, acked,
    )
    .await;
    across(&a.addr, &b.addr).await;
    println!("[postgres] took {:?}", started.elapsed());
}

/// Scenario 4: Redis stops in the middle of the traffic and starts again. Sends keep being
/// stored and acked meanwhile (acks never wait on Redis); what a node missed on Pub/Sub reaches
/// its clients from the store (gap filling), without anyone reconnecting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_under_traffic_loses_nothing() {
    let started = std::time::Instant::now();
    let mut redis = block_in_place(|| OwnRedis::start(0));
    let url = redis.url();
    let dir = tempfile::tempdir().unwrap();
    let db = postgres().await;
    let mut flags = vec!["--redis-url", url.as_str(), "--database-url", db.url()];
    flags.extend(NO_RATE_LIMIT);
    let a = block_in_place(|| Server::start(dir.path(), &flags));
    let b = block_in_place(|| Server::start(dir.path(), &flags));
    let users = Users::create(dir.path(), db.url(), &b.addr).await;

    let (_to_a, route_a) = watch::channel((0, a.addr.clone()));
    let (_to_b, route_b) = watch::channel((0, b.addr.clone()));
    let mut traffic = Traffic::start(users.peers(&route_a, &route_b), false);
    traffic
        .until("acks before Redis stops", |p| p.acked >= FAULT_AT)
        .await;
    let acked = traffic.acked();
    block_in_place(|| redis.stop());
    // Acks keep coming while Redis is down.
    let down = traffic
        .until("acks while Redis is down", |p| p.acked >= acked + 40)
        .await;
    let _redis = block_in_place(|| OwnRedis::start(redis.port));
    println!(
        "[redis] stopped after {acked} acks, restarted after {}",
        down.acked
    );
    let (reports, targets) = traffic.finish().await;

    let expect = Expect {
        cut: &[],
        close: None,
        store_errors: false,
    };
    verify("redis", &a.addr, &users, &reports, &targets, &expect, acked).await;
    // Pub/Sub is back both ways: a message from one node reaches a client of the other.
    across(&a.addr, &b.addr).await;
    across(&b.addr, &a.addr).await;
    println!("[redis] took {:?}", started.elapsed());
}
