//! Redis presence against the real Redis on 127.0.0.1:6379, with several nodes in one process:
//! a node that dies without saying goodbye has its users' departures announced by the others,
//! exactly once. These tests fail (never skip) when Redis is down; start it with
//! `redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no`.

#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use chat_core::{Presence, RedisPresence, RoomName, Sender};
use tokio::time::Instant;

const URL: &str = "redis://127.0.0.1:6379";
/// Short, so that a dead node is noticed quickly: it is dead after two thirds of this.
const TTL: Duration = Duration::from_millis(900);

fn unique() -> String {
    let r = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    format!("presence-test-{r:x}")
}

fn node(prefix: &str) -> RedisPresence {
    RedisPresence::connect(URL, prefix, TTL).expect("a Redis URL")
}

async fn redis() -> redis::aio::MultiplexedConnection {
    redis::Client::open(URL)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("Redis must be running on 127.0.0.1:6379 for these tests")
}

/// Sweeps from every live node until `want` departures came out in all, or the deadline;
/// then sweeps once more everywhere to show that nothing comes out twice.
async fn sweep_until(live: &[&RedisPresence], want: usize) -> Vec<(RoomName, Sender)> {
    let deadline = Instant::now() + TTL * 4;
    let mut left = Vec::new();
    while left.len() < want {
        assert!(
            Instant::now() < deadline,
            "only {left:?} announced within {:?}",
            TTL * 4
        );
        for p in live {
            left.extend(p.sweep().await.unwrap());
        }
        tokio::time::sleep(TTL / 10).await;
    }
    for p in live {
        left.extend(p.sweep().await.unwrap());
    }
    left
}

#[tokio::test]
async fn a_dead_nodes_users_leave_once_across_nodes() {
    let prefix = unique();
    let lobby = RoomName::parse("lobby").unwrap();
    let games = RoomName::parse("games").unwrap();
    let ana = Sender::user(1, "Ana", None);
    let bruno = Sender::user(2, "Bruno", None);
    let carla = Sender::user(3, "Carla", None);
    let (a, b, c) = (node(&prefix), node(&prefix), node(&prefix));
    assert!(a.join(&lobby, &ana, "a1").await.unwrap());
    assert!(a.join(&games, &ana, "a2").await.unwrap());
    assert!(b.join(&lobby, &bruno, "b1").await.unwrap());
    // Carla has a tab on the node that dies and one on a node that lives.
    assert!(a.join(&lobby, &carla, "a3").await.unwrap());
    assert!(!c.join(&lobby, &carla, "c1").await.unwrap());
    assert_eq!(b.online(&lobby).await.unwrap().len(), 3);

    // Node A dies: no leave, its beats stop.
    drop(a);
    let mut left = sweep_until(&[&b, &c], 2).await;
    left.sort_by(|x, y| x.0.as_str().cmp(y.0.as_str()));
    assert_eq!(
        left,
        vec![(games.clone(), ana.clone()), (lobby.clone(), ana.clone())],
        "Ana left both rooms, once each; Carla is still here through node C"
    );
    let online = b.online(&lobby).await.unwrap();
    assert_eq!(online, vec![bruno.clone(), carla.clone()]);
    assert!(b.online(&games).await.unwrap().is_empty());
}

#[tokio::test]
async fn live_nodes_are_never_swept() {
    let prefix = unique();
    let lobby = RoomName::parse("lobby").unwrap();
    let ana = Sender::user(1, "Ana", None);
    let (a, b) = (node(&prefix), node(&prefix));
    assert!(a.join(&lobby, &ana, "a1").await.unwrap());
    // Three TTLs of sweeping while A lives and beats.
    let until = Instant::now() + TTL * 3;
    while Instant::now() < until {
        assert_eq!(b.sweep().await.unwrap(), vec![]);
        tokio::time::sleep(TTL / 10).await;
    }
    assert_eq!(b.online(&lobby).await.unwrap(), vec![ana.clone()]);
    assert!(a.leave(&lobby, &ana, "a1").await.unwrap());
}

#[tokio::test]
async fn user_details_go_with_the_last_connection_and_expire() {
    let prefix = unique();
    let lobby = RoomName::parse("lobby").unwrap();
    let ana = Sender::user(1, "Ana", None);
    let a = node(&prefix);
    let mut r = redis().await;
    let details = format!("{prefix}:pi:lobby");
    assert!(a.join(&lobby, &ana, "a1").await.unwrap());
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&details)
        .query_async(&mut r)
        .await
        .unwrap();
    assert!(
        ttl > 0 && ttl <= TTL.as_millis() as i64,
        "details expire with the room's presence (PTTL {ttl})"
    );
    assert!(a.leave(&lobby, &ana, "a1").await.unwrap());
    let n: i64 = redis::cmd("HLEN")
        .arg(&details)
        .query_async(&mut r)
        .await
        .unwrap();
    assert_eq!(n, 0, "the last leave removes the user's details");
}

#[tokio::test]
async fn a_crowd_is_counted_across_nodes_and_listed_up_to_a_limit() {
    let prefix = unique();
    let hall = RoomName::parse("hall").unwrap();
    let (a, b) = (node(&prefix), node(&prefix));
    for i in 0..6 {
        let user = Sender::user(i, format!("u{i}"), None);
        let on = if i % 2 == 0 { &a } else { &b };
        on.join(&hall, &user, &format!("c{i}")).await.unwrap();
    }
    // A second tab counts once.
    a.join(&hall, &Sender::user(0, "u0", None), "c0b")
        .await
        .unwrap();
    let some = b.online_upto(&hall, 4).await.unwrap();
    assert_eq!((some.users.len(), some.total), (4, 6));
    assert!(some.users.is_sorted_by(|x, y| x.name <= y.name));
    let all = a.online_upto(&hall, 100).await.unwrap();
    assert_eq!(all.users, a.online(&hall).await.unwrap());
    assert_eq!(all.total, 6);
    assert!(
        b.leave(&hall, &Sender::user(1, "u1", None), "c1")
            .await
            .unwrap()
    );
    assert_eq!(a.count(&hall).await.unwrap(), 5);
    let empty = RoomName::parse("empty").unwrap();
    assert_eq!(b.count(&empty).await.unwrap(), 0);
    assert_eq!(b.online_upto(&empty, 3).await.unwrap().total, 0);
}
