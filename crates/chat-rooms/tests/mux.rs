//! The multiplexed socket through the communicator: many rooms on one connection.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use chat_core::{
    ChannelLayer, ErrorCode, FrameError, InMemoryChannelLayer, LayerConfig, LayerMessage, Limits,
    MemoryPresence, MemoryStore, MessageStore, NewMessage, RoomName, Sender, ServerFrame,
    SharedLayer, SharedPresence,
};
use chat_rooms::{AccessCheck, CHAT_MESSAGE, MuxConsumer, RoomAccess};
use chat_ws::Communicator;
use serde_json::{Value, json};

/// Guests may use public rooms; users also their own pair rooms.
struct Rules;

impl RoomAccess for Rules {
    fn check<'a>(&'a self, user: &'a Sender, room: &'a RoomName) -> AccessCheck<'a> {
        Box::pin(std::future::ready(match (room.pair(), user.id) {
            (None, _) => Ok(()),
            (Some(p), Some(id)) if p.contains(id) => Ok(()),
            _ => Err(FrameError::new(
                ErrorCode::Forbidden,
                format!("you are not a member of {room}"),
            )),
        }))
    }
}

struct World {
    layer: SharedLayer,
    store: MemoryStore,
    presence: SharedPresence,
}

impl World {
    fn new() -> Self {
        Self {
            layer: Arc::new(InMemoryChannelLayer::default()),
            store: MemoryStore::new(),
            presence: Arc::new(MemoryPresence::new()),
        }
    }

    async fn socket(&self, user: Sender) -> Communicator<MuxConsumer> {
        let consumer = MuxConsumer::new(
            user,
            Arc::new(Rules),
            Arc::new(self.store.clone()),
            Limits::default(),
        )
        .with_presence(self.presence.clone());
        let mut c = Communicator::with_shared_layer(consumer, self.layer.clone());
        assert!(c.connect().await.accepted());
        c
    }
}

async fn next_of(c: &mut Communicator<MuxConsumer>, kind: &str) -> Value {
    loop {
        let v = c.receive_json().await;
        if v["type"] == kind {
            return v;
        }
    }
}

async fn join(c: &mut Communicator<MuxConsumer>, room: &str) -> Value {
    c.send_json(json!({"type": "join", "room": room})).await;
    next_of(c, "joined").await
}

#[tokio::test]
async fn three_rooms_on_one_socket_route_messages_to_their_room() {
    let w = World::new();
    let mut ana = w.socket(Sender::guest("ana")).await;
    let mut bruno = w.socket(Sender::guest("bruno")).await;
    for room in ["a", "b", "c"] {
        assert_eq!(join(&mut ana, room).await["room"], room);
    }
    join(&mut bruno, "b").await;
    for (room, body) in [("a", "to a"), ("b", "to b"), ("c", "to c")] {
        ana.send_json(json!({"type": "message", "room": room, "body": body}))
            .await;
        let ack = next_of(&mut ana, "ack").await;
        assert_eq!(
            (ack["room"].as_str(), ack["seq"].as_u64()),
            (Some(room), Some(1))
        );
    }
    let got = next_of(&mut bruno, "message").await;
    assert_eq!(
        (got["room"].as_str(), got["body"].as_str()),
        (Some("b"), Some("to b"))
    );
    assert!(
        bruno.receive_nothing(Duration::from_millis(200)).await,
        "bruno only hears room b"
    );
}

#[tokio::test]
async fn a_forbidden_room_is_refused_and_the_others_keep_working() {
    let w = World::new();
    let mut guest = w.socket(Sender::guest("ana")).await;
    join(&mut guest, "lobby").await;
    guest
        .send_json(json!({"type": "join", "room": "dm_1_2"}))
        .await;
    let e = next_of(&mut guest, "error").await;
    assert_eq!(
        (e["code"].as_str(), e["room"].as_str()),
        (Some("forbidden"), Some("dm_1_2"))
    );
    guest
        .send_json(json!({"type": "message", "room": "lobby", "body": "still here"}))
        .await;
    assert_eq!(next_of(&mut guest, "ack").await["room"], "lobby");

    let mut member = w.socket(Sender::user(2, "Bruno", None)).await;
    assert_eq!(join(&mut member, "dm_1_2").await["room"], "dm_1_2");
}

#[tokio::test]
async fn frames_for_rooms_not_joined_get_not_joined() {
    let w = World::new();
    let mut ana = w.socket(Sender::guest("ana")).await;
    for frame in [
        json!({"type": "message", "room": "x", "body": "hi"}),
        json!({"type": "typing", "room": "x", "active": true}),
        json!({"type": "history", "room": "x"}),
        json!({"type": "leave", "room": "x"}),
    ] {
        ana.send_json(frame.clone()).await;
        let e = next_of(&mut ana, "error").await;
        assert_eq!(
            (e["code"].as_str(), e["room"].as_str()),
            (Some("not_joined"), Some("x")),
            "{frame}"
        );
    }
    ana.send_json(json!({"type": "message", "body": "no room"}))
        .await;
    assert_eq!(next_of(&mut ana, "error").await["code"], "invalid_room");
    assert_eq!(
        w.store
            .last_seq(&RoomName::parse("x").unwrap())
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn leaving_stops_delivery_and_announces_the_leave() {
    let w = World::new();
    let mut ana = w.socket(Sender::guest("ana")).await;
    let mut bruno = w.socket(Sender::guest("bruno")).await;
    join(&mut ana, "r").await;
    let joined = join(&mut bruno, "r").await;
    assert_eq!(joined["online"].as_array().unwrap().len(), 2);
    assert_eq!(next_of(&mut ana, "presence").await["event"], "join");
    bruno.send_json(json!({"type": "leave", "room": "r"})).await;
    let p = next_of(&mut ana, "presence").await;
    assert_eq!(
        (p["event"].as_str(), p["user"]["name"].as_str()),
        (Some("leave"), Some("bruno"))
    );
    ana.send_json(json!({"type": "message", "room": "r", "body": "gone?"}))
        .await;
    next_of(&mut ana, "ack").await;
    assert!(bruno.receive_nothing(Duration::from_millis(200)).await);
}

#[tokio::test]
async fn join_with_since_replays_exactly_the_missed_then_live_even_while_messages_arrive() {
    let w = World::new();
    let room = RoomName::parse("resume").unwrap();
    for i in 1..=100 {
        w.store
            .append(NewMessage {
                attachment: None,
                room: room.clone(),
                sender: Sender::guest("x"),
                body: format!("m{i}"),
                client_id: None,
            })
            .await
            .unwrap();
    }
    let mut writer = w.socket(Sender::guest("writer")).await;
    join(&mut writer, "resume").await;
    let mut reader = w.socket(Sender::guest("reader")).await;
    reader
        .send_json(json!({"type": "join", "room": "resume", "since": 0}))
        .await;
    // New messages keep arriving while the replay runs.
    for i in 0..20 {
        writer
            .send_json(json!({"type": "message", "room": "resume", "body": format!("live{i}")}))
            .await;
    }
    let mut seqs = Vec::new();
    while seqs.len() < 120 {
        let v = reader.receive_json().await;
        if v["type"] == "message" {
            seqs.push(v["seq"].as_u64().unwrap());
        }
    }
    assert_eq!(
        seqs,
        (1..=120).collect::<Vec<_>>(),
        "every message once, in order"
    );
    assert!(reader.receive_nothing(Duration::from_millis(200)).await);
}

#[tokio::test]
async fn a_user_with_two_sockets_counts_once() {
    let w = World::new();
    let mut watcher = w.socket(Sender::guest("watcher")).await;
    join(&mut watcher, "r").await;
    let ana = Sender::user(7, "Ana", None);
    let mut tab1 = w.socket(ana.clone()).await;
    let mut tab2 = w.socket(ana.clone()).await;
    join(&mut tab1, "r").await;
    assert_eq!(next_of(&mut watcher, "presence").await["event"], "join");
    join(&mut tab2, "r").await;
    tab1.disconnect(1000).await;
    assert!(
        watcher.receive_nothing(Duration::from_millis(200)).await,
        "one tab left: still online"
    );
    tab2.disconnect(1000).await;
    assert_eq!(next_of(&mut watcher, "presence").await["event"], "leave");
}

#[tokio::test]
async fn messages_a_full_mailbox_lost_are_read_from_the_store_for_every_room() {
    let w = World {
        layer: Arc::new(InMemoryChannelLayer::new(LayerConfig {
            capacity: 4,
            ..LayerConfig::default()
        })),
        ..World::new()
    };
    let mut ana = w.socket(Sender::guest("ana")).await;
    join(&mut ana, "a").await;
    join(&mut ana, "b").await;
    // Five messages into each room, stored and broadcast before ana's task gets to run: her
    // one mailbox takes four and loses the rest of the burst.
    for i in 1..=5 {
        for room in ["a", "b"] {
            let stored = w
                .store
                .append(NewMessage {
                    attachment: None,
                    room: RoomName::parse(room).unwrap(),
                    sender: Sender::guest("ghost"),
                    body: format!("{room}{i}"),
                    client_id: None,
                })
                .await
                .unwrap()
                .message;
            let group = stored.room.group();
            let msg = LayerMessage::json(CHAT_MESSAGE, &ServerFrame::Message(stored)).unwrap();
            w.layer.group_send(&group, msg).await.unwrap();
        }
    }
    let mut got: Vec<(String, u64)> = Vec::new();
    while got.len() < 10 {
        let m = next_of(&mut ana, "message").await;
        got.push((
            m["room"].as_str().unwrap().into(),
            m["seq"].as_u64().unwrap(),
        ));
    }
    for room in ["a", "b"] {
        let seqs: Vec<u64> = got
            .iter()
            .filter(|(r, _)| r == room)
            .map(|(_, s)| *s)
            .collect();
        assert_eq!(seqs, vec![1, 2, 3, 4, 5], "room {room}: {got:?}");
    }
    assert!(
        ana.receive_nothing(Duration::from_millis(200)).await,
        "each once"
    );
}
