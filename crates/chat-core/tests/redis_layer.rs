//! The Redis layer against the real Redis on 127.0.0.1:6379: the conformance suite, then what
//! only a many-node layer can get wrong. These tests fail (never skip) when Redis is down;
//! start it with `redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no`.

#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use chat_core::{
    ChannelLayer, GroupName, LayerConfig, LayerError, LayerMessage, RedisChannelLayer, RedisError,
    RedisLayerConfig,
};
use futures_util::StreamExt;
use serde_json::json;

const URL: &str = "redis://127.0.0.1:6379";

fn unique(prefix: &str) -> String {
    let r = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    format!("{prefix}-{r:x}")
}

async fn node(prefix: &str, layer: LayerConfig) -> RedisChannelLayer {
    RedisChannelLayer::connect(RedisLayerConfig {
        prefix: prefix.to_owned(),
        layer,
        ..RedisLayerConfig::new(URL)
    })
    .await
    .expect("Redis must be running on 127.0.0.1:6379 for these tests")
}

async fn make(config: LayerConfig) -> RedisChannelLayer {
    node(&unique("conf"), config).await
}

chat_core::conformance_tests!(make);

fn msg(n: u64) -> LayerMessage {
    LayerMessage::new("test.message", json!({ "n": n }))
}

async fn recv(layer: &RedisChannelLayer, ch: &chat_core::ChannelName) -> u64 {
    let m = tokio::time::timeout(Duration::from_secs(5), layer.receive(ch))
        .await
        .expect("a message within 5 s")
        .unwrap();
    m.decode::<serde_json::Value>().unwrap()["n"]
        .as_u64()
        .unwrap()
}

async fn silent(layer: &RedisChannelLayer, ch: &chat_core::ChannelName) -> bool {
    tokio::time::timeout(Duration::from_millis(300), layer.receive(ch))
        .await
        .is_err()
}

async fn numsub(topic: &str) -> i64 {
    let mut c = redis::Client::open(URL)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("Redis on 127.0.0.1:6379");
    let counts: Vec<(String, i64)> = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(topic)
        .query_async(&mut c)
        .await
        .unwrap();
    counts[0].1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_send_reaches_members_on_every_node_once() {
    let prefix = unique("multi");
    let a = node(&prefix, LayerConfig::default()).await;
    let b = node(&prefix, LayerConfig::default()).await;
    assert_ne!(a.node(), b.node());
    let g = GroupName::parse("room.lobby").unwrap();
    let a1 = a.new_channel().await.unwrap();
    let b1 = b.new_channel().await.unwrap();
    let b2 = b.new_channel().await.unwrap();
    for (layer, ch) in [(&a, &a1), (&b, &b1), (&b, &b2)] {
        layer.group_add(&g, ch).await.unwrap();
    }
    a.group_send(&g, msg(1)).await.unwrap();
    b.group_send(&g, msg(2)).await.unwrap();
    // Messages from different nodes have no order between them (a node's own members get
    // its message at once, the others through Redis); each arrives exactly once.
    for (layer, ch) in [(&a, &a1), (&b, &b1), (&b, &b2)] {
        let mut got = [recv(layer, ch).await, recv(layer, ch).await];
        got.sort_unstable();
        assert_eq!(got, [1, 2]);
        assert!(
            silent(layer, ch).await,
            "each member gets each message once"
        );
    }
    // Point to point across nodes.
    a.send(&b2, msg(3)).await.unwrap();
    assert_eq!(recv(&b, &b2).await, 3);
    assert!(silent(&b, &b1).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_publish_per_group_send_and_subscriptions_follow_local_members() {
    let prefix = unique("pub");
    let a = node(&prefix, LayerConfig::default()).await;
    let b = node(&prefix, LayerConfig::default()).await;
    let g = GroupName::parse("room.big").unwrap();
    let topic = format!("{prefix}:g:room.big");
    assert_eq!(
        numsub(&topic).await,
        0,
        "nobody listens before anyone joins"
    );
    let mut b_members = Vec::new();
    for _ in 0..50 {
        let c = a.new_channel().await.unwrap();
        a.group_add(&g, &c).await.unwrap();
        let c = b.new_channel().await.unwrap();
        b.group_add(&g, &c).await.unwrap();
        b_members.push(c);
    }
    assert_eq!(
        numsub(&topic).await,
        2,
        "one subscription per node, not per member"
    );

    // A bystander counts what crosses Redis.
    let (mut sink, mut stream) = redis::Client::open(URL)
        .unwrap()
        .get_async_pubsub()
        .await
        .unwrap()
        .split();
    sink.subscribe(&topic).await.unwrap();
    for n in 0..5 {
        a.group_send(&g, msg(n)).await.unwrap();
    }
    for _ in 0..5 {
        tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .unwrap()
            .unwrap();
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(300), stream.next())
            .await
            .is_err(),
        "exactly one PUBLISH per group_send, whatever the number of members"
    );
    for c in &b_members {
        for n in 0..5 {
            assert_eq!(recv(&b, c).await, n);
        }
    }

    // The last local member leaving unsubscribes the node (a + the bystander remain).
    for c in &b_members {
        b.group_discard(&g, c).await.unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while numsub(&topic).await != 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "node b did not unsubscribe"
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn an_unreachable_redis_is_a_clear_error() {
    let started = std::time::Instant::now();
    let err = RedisChannelLayer::connect(RedisLayerConfig {
        timeout: Duration::from_millis(500),
        ..RedisLayerConfig::new("redis://:hunter2@127.0.0.1:1")
    })
    .await
    .unwrap_err();
    // Clear, and without the URL's password: callers add the URL they may show (redacted).
    assert!(err.to_string().contains("cannot reach Redis"), "{err}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5), "fails fast");
    // Typed all the way down: a caller can tell why.
    let cause = |e: &LayerError| match e {
        LayerError::Backend(source) => source.downcast_ref::<RedisError>().map(|r| match r {
            RedisError::Connection(_) => "connection",
            RedisError::InvalidUrl(_) => "url",
            _ => "other",
        }),
        _ => None,
    };
    assert_eq!(cause(&err), Some("connection"), "{err:?}");
    let bad_url = RedisChannelLayer::connect(RedisLayerConfig::new("not a url"))
        .await
        .unwrap_err();
    assert_eq!(cause(&bad_url), Some("url"), "{bad_url:?}");
}
