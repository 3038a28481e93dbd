//! Redis stops in the middle of traffic and comes back: the servers survive, every message is
//! stored and acked, and clients get every stored message exactly once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Client, OwnRedis, Server, postgres};
use serde_json::json;

#[tokio::test]
async fn a_redis_restart_loses_nothing() {
    let mut redis = OwnRedis::start(0);
    let dir = tempfile::tempdir().unwrap();
    let url = redis.url();
    let db = postgres().await;
    let flags = ["--redis-url", url.as_str(), "--database-url", db.url()];
    let a = Server::start(dir.path(), &flags);
    let b = Server::start(dir.path(), &flags);
    let mut sender = Client::connect(&a.ws_url("/ws/chat/lobby/?name=sender")).await;
    let mut watcher = Client::connect(&b.ws_url("/ws/chat/lobby/?name=watcher")).await;

    let mut acked = BTreeSet::new();
    // Stays under the burst of 40 messages per connection: this test is about Redis.
    let send = async |sender: &mut Client, i: u32| {
        sender
            .send(json!({"type": "message", "body": format!("m{i}"), "client_id": format!("c{i}")}))
            .await;
        loop {
            let v = sender.recv().await;
            match v["type"].as_str() {
                Some("ack") => return v["seq"].as_u64().unwrap(),
                Some("error") => panic!("send {i} refused: {v}"),
                _ => {}
            }
        }
    };
    for i in 0..15 {
        acked.insert(send(&mut sender, i).await);
    }
    redis.stop();
    for i in 15..30 {
        acked.insert(send(&mut sender, i).await); // stored and acked while Redis is down
    }
    let _redis = OwnRedis::start(redis.port);
    // Node A republishes nothing that was missed; the watcher's gap filling and `since`
    // recover it from the store. Keep sending until live delivery is back.
    let mut i = 30;
    let mut seen = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    'outer: loop {
        acked.insert(send(&mut sender, i).await);
        i += 1;
        while let Ok(v) = tokio::time::timeout(Duration::from_millis(200), watcher.recv()).await {
            if v["type"] == "message" {
                assert!(
                    seen.insert(v["seq"].as_u64().unwrap()),
                    "duplicate seq {}",
                    v["seq"]
                );
                if seen.len() == acked.len() && seen == acked {
                    break 'outer;
                }
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "live delivery did not resume: saw {} of {}",
            seen.len(),
            acked.len()
        );
    }
    assert_eq!(
        seen, acked,
        "the watcher got every stored message exactly once"
    );
    assert_eq!(
        acked,
        (1..=u64::from(i)).collect(),
        "every send was stored and acked"
    );

    // A client resuming from the start gets exactly the stored messages, in order.
    let mut late = Client::connect(&b.ws_url("/ws/chat/lobby/?name=late&since=0")).await;
    for seq in 1..=u64::from(i) {
        assert_eq!(late.recv().await["seq"].as_u64(), Some(seq));
    }
}
