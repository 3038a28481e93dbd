//! The Redis layer survives its Redis going away and coming back. Runs its own
//! `redis-server` on a spare port (never the shared one on 6379).

#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chat_core::{
    ChannelLayer, GroupName, LayerConfig, LayerMessage, RedisChannelLayer, RedisLayerConfig,
};
use serde_json::json;

struct OwnRedis {
    child: Child,
    port: u16,
}

impl OwnRedis {
    fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (it runs the shared Redis on this machine)");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, port }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spare_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn msg(n: u64) -> LayerMessage {
    LayerMessage::new("test.message", json!({ "n": n }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_layer_keeps_working_through_a_redis_restart() {
    let mut redis = OwnRedis::start(spare_port());
    let config = RedisLayerConfig {
        timeout: Duration::from_millis(500),
        ..RedisLayerConfig::new(format!("redis://127.0.0.1:{}", redis.port))
    };
    let a = RedisChannelLayer::connect(RedisLayerConfig {
        layer: LayerConfig::default(),
        ..config.clone()
    })
    .await
    .unwrap();
    let b = RedisChannelLayer::connect(config.clone()).await.unwrap();
    let g = GroupName::parse("room.restart").unwrap();
    let on_a = a.new_channel().await.unwrap();
    let on_b = b.new_channel().await.unwrap();
    a.group_add(&g, &on_a).await.unwrap();
    b.group_add(&g, &on_b).await.unwrap();
    a.group_send(&g, msg(1)).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), b.receive(&on_b))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.decode::<serde_json::Value>().unwrap()["n"], 1);
    assert_eq!(
        a.receive(&on_a)
            .await
            .unwrap()
            .decode::<serde_json::Value>()
            .unwrap()["n"],
        1
    );

    // Redis goes away: local delivery goes on, remote sends fail cleanly (no hang, no panic).
    redis.stop();
    let r = tokio::time::timeout(Duration::from_secs(5), a.group_send(&g, msg(2)))
        .await
        .expect("no hang");
    assert!(r.is_err(), "the publish fails while Redis is down");
    let local = tokio::time::timeout(Duration::from_secs(5), a.receive(&on_a))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        local.decode::<serde_json::Value>().unwrap()["n"],
        2,
        "local members still get it"
    );
    let joiner = a.new_channel().await.unwrap();
    tokio::time::timeout(
        Duration::from_secs(5),
        a.group_add(&GroupName::parse("room.new").unwrap(), &joiner),
    )
    .await
    .expect("group_add does not wait for Redis")
    .unwrap();

    // Redis comes back on the same port: the nodes reconnect and resubscribe by themselves.
    let _redis = OwnRedis::start(redis.port);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut n = 100;
    let mut told = false;
    'resumed: loop {
        n += 1;
        if a.group_send(&g, msg(n)).await.is_ok() {
            // Drain a's own copy (or the marker before it).
            let _ = a.receive(&on_a).await;
            while let Ok(Ok(m)) =
                tokio::time::timeout(Duration::from_millis(200), b.receive(&on_b)).await
            {
                if m.is_missed() {
                    told = true;
                    continue;
                }
                assert!(
                    m.decode::<serde_json::Value>().unwrap()["n"]
                        .as_u64()
                        .unwrap()
                        >= 101
                );
                break 'resumed;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "live delivery did not resume after the restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        told,
        "b's node lost its feed while message 2 was published: b is told it missed messages"
    );
}
