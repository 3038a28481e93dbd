//! Presence and typing on room sockets, through the communicator.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use chat_core::{
    InMemoryChannelLayer, Limits, MemoryPresence, MemoryStore, RoomName, Sender, SharedLayer,
    SharedPresence,
};
use chat_rooms::ChatConsumer;
use chat_ws::Communicator;
use serde_json::{Value, json};

struct Room {
    layer: SharedLayer,
    store: MemoryStore,
    presence: SharedPresence,
    limits: Limits,
}

impl Room {
    fn new() -> Self {
        Self {
            layer: Arc::new(InMemoryChannelLayer::default()),
            store: MemoryStore::new(),
            presence: Arc::new(MemoryPresence::new()),
            limits: Limits::default(),
        }
    }

    async fn open(&self, user: Sender) -> (Communicator<ChatConsumer>, Value) {
        let consumer = ChatConsumer::new(
            RoomName::parse("lobby").unwrap(),
            user,
            Arc::new(self.store.clone()),
            self.limits.clone(),
        )
        .with_presence(self.presence.clone());
        let mut c = Communicator::with_shared_layer(consumer, self.layer.clone());
        assert!(c.connect().await.accepted());
        let joined = next_of(&mut c, "joined").await;
        (c, joined)
    }
}

async fn next_of(c: &mut Communicator<ChatConsumer>, kind: &str) -> Value {
    loop {
        let v = c.receive_json().await;
        if v["type"] == kind {
            return v;
        }
    }
}

fn names(v: &Value) -> Vec<String> {
    v["online"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn joined_lists_who_is_online_and_tabs_count_once() {
    let room = Room::new();
    let ana = Sender::user(1, "Ana", Some("tutor".into()));
    let (mut watcher, joined) = room.open(Sender::guest("watcher")).await;
    assert_eq!(names(&joined), vec!["watcher"]);
    assert_eq!(joined["last_seq"], 0);

    let (tab1, joined) = room.open(ana.clone()).await;
    assert_eq!(names(&joined), vec!["Ana", "watcher"]);
    let p = next_of(&mut watcher, "presence").await;
    assert_eq!(
        p,
        json!({"type": "presence", "room": "lobby", "user": {"id": 1, "name": "Ana", "role": "tutor"}, "event": "join"})
    );

    let (tab2, _) = room.open(ana.clone()).await;
    tab1.disconnect(1000).await;
    assert!(
        watcher.receive_nothing(Duration::from_millis(200)).await,
        "a second tab neither joins nor leaves"
    );
    tab2.disconnect(1000).await;
    let p = next_of(&mut watcher, "presence").await;
    assert_eq!(
        (p["event"].as_str(), p["user"]["name"].as_str()),
        (Some("leave"), Some("Ana"))
    );
}

/// The next frame that is not a ping: `kind`, or the test fails (a marker message sent after
/// an event that must stay silent proves, by arriving first, that nothing was sent).
async fn next_is(c: &mut Communicator<ChatConsumer>, kind: &str) -> Value {
    loop {
        let v = c.receive_json().await;
        if v["type"] != "ping" {
            assert_eq!(v["type"], kind, "{v}");
            return v;
        }
    }
}

#[tokio::test]
async fn a_crowded_room_counts_its_users_instead_of_announcing_each() {
    let room = Room {
        limits: Limits {
            presence_limit: 2,
            ..Limits::default()
        },
        ..Room::new()
    };
    let (mut watcher, _) = room.open(Sender::guest("watcher")).await;
    let (mut ana, joined) = room.open(Sender::guest("ana")).await;
    assert_eq!(joined["online_count"], 2);
    assert_eq!(next_is(&mut watcher, "presence").await["event"], "join");

    // The third user makes the room crowded: not announced, and listed as a count.
    let (bo, joined) = room.open(Sender::guest("bo")).await;
    assert_eq!(names(&joined).len(), 2, "{joined}");
    assert_eq!(joined["online_count"], 3);
    ana.send_json(json!({"type": "message", "body": "one"}))
        .await;
    assert_eq!(next_is(&mut watcher, "message").await["body"], "one");

    // Leaving a crowded room is as silent; below the limit, leaves are announced again.
    bo.disconnect(1000).await;
    ana.send_json(json!({"type": "message", "body": "two"}))
        .await;
    assert_eq!(next_is(&mut watcher, "message").await["body"], "two");
    next_of(&mut ana, "message").await;
    ana.disconnect(1000).await;
    let p = next_is(&mut watcher, "presence").await;
    assert_eq!(
        (p["event"].as_str(), p["user"]["name"].as_str()),
        (Some("leave"), Some("ana"))
    );
}

#[tokio::test]
async fn typing_stops_on_send_and_on_disconnect() {
    let room = Room::new();
    let (mut watcher, _) = room.open(Sender::guest("watcher")).await;
    let (ana, _) = room.open(Sender::guest("ana")).await;
    next_of(&mut watcher, "presence").await;
    ana.send_json(json!({"type": "typing", "active": true}))
        .await;
    let t = next_of(&mut watcher, "typing").await;
    assert_eq!(
        (t["active"].as_bool(), t["user"]["name"].as_str()),
        (Some(true), Some("ana"))
    );
    ana.send_json(json!({"type": "message", "body": "done typing"}))
        .await;
    let t = next_of(&mut watcher, "typing").await;
    assert_eq!(t["active"], false, "sending a message ends the indicator");
    assert_eq!(
        next_of(&mut watcher, "message").await["body"],
        "done typing"
    );

    ana.send_json(json!({"type": "typing", "active": true}))
        .await;
    assert_eq!(next_of(&mut watcher, "typing").await["active"], true);
    ana.disconnect(1000).await;
    let t = next_of(&mut watcher, "typing").await;
    assert_eq!(t["active"], false, "leaving ends the indicator");
}

#[tokio::test(start_paused = true)]
async fn typing_expires_after_five_seconds_and_refreshes_are_rate_limited() {
    let room = Room::new();
    let (mut watcher, _) = room.open(Sender::guest("watcher")).await;
    let (ana, _) = room.open(Sender::guest("ana")).await;
    next_of(&mut watcher, "presence").await;
    ana.send_json(json!({"type": "typing", "active": true}))
        .await;
    assert_eq!(next_of(&mut watcher, "typing").await["active"], true);
    // Refreshes within 3 s are not repeated to the room.
    tokio::time::advance(Duration::from_secs(1)).await;
    ana.send_json(json!({"type": "typing", "active": true}))
        .await;
    assert!(watcher.receive_nothing(Duration::from_millis(100)).await);
    // After 3 s a refresh is repeated (so late joiners see it), and it keeps the indicator on.
    tokio::time::advance(Duration::from_secs(3)).await;
    ana.send_json(json!({"type": "typing", "active": true}))
        .await;
    assert_eq!(next_of(&mut watcher, "typing").await["active"], true);
    // 5 s without a refresh: the server ends it by itself.
    tokio::time::advance(Duration::from_secs(6)).await;
    let t = next_of(&mut watcher, "typing").await;
    assert_eq!(
        (t["active"].as_bool(), t["user"]["name"].as_str()),
        (Some(false), Some("ana"))
    );
}
