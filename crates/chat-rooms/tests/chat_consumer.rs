//! ChatConsumer through the test communicator: the room protocol without sockets.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use chat_core::{
    ChannelLayer, InMemoryChannelLayer, LayerConfig, LayerMessage, Limits, MemoryStore,
    MessageStore, NewMessage, RoomName, Sender, ServerFrame, SharedLayer, StoredMessage, Timestamp,
};
use chat_rooms::{CHAT_MESSAGE, ChatConsumer, REORDER_WAIT, RecentMessages};
use chat_ws::{ClientEvent, Communicator, ConnectOutcome, ConnectionConfig};
use serde_json::{Value, json};

struct Room {
    layer: SharedLayer,
    store: MemoryStore,
    limits: Limits,
    recent: Option<Arc<RecentMessages>>,
}

impl Room {
    fn new() -> Self {
        Self::with_limits(Limits::default())
    }

    fn with_limits(limits: Limits) -> Self {
        Self {
            layer: Arc::new(InMemoryChannelLayer::default()),
            store: MemoryStore::new(),
            limits,
            recent: None,
        }
    }

    /// The same room, its sockets catching up from `recent` when it holds what they missed.
    fn with_recent(self, recent: &Arc<RecentMessages>) -> Self {
        Self {
            recent: Some(recent.clone()),
            ..self
        }
    }

    /// A room whose layer mailboxes hold `capacity` messages.
    fn with_mailboxes(capacity: usize) -> Self {
        Self {
            layer: Arc::new(InMemoryChannelLayer::new(LayerConfig {
                capacity,
                ..LayerConfig::default()
            })),
            ..Self::new()
        }
    }

    fn lobby() -> RoomName {
        RoomName::parse("lobby").unwrap()
    }

    fn client(&self, name: &str, path: &str) -> Communicator<ChatConsumer> {
        let consumer = ChatConsumer::new(
            Self::lobby(),
            Sender::guest(name),
            Arc::new(self.store.clone()),
            self.limits.clone(),
        );
        let consumer = match &self.recent {
            Some(recent) => consumer.with_recent(recent.clone()),
            None => consumer,
        };
        Communicator::with_shared_layer(consumer, self.layer.clone())
            .with_path(path)
            .with_config(ConnectionConfig {
                limits: self.limits.clone(),
                ..ConnectionConfig::default()
            })
    }

    async fn join(&self, name: &str) -> Communicator<ChatConsumer> {
        let mut c = self.client(name, "/ws/chat/lobby/");
        assert!(c.connect().await.accepted());
        c
    }

    async fn store_direct(&self, body: &str) -> u64 {
        self.store
            .append(NewMessage {
                attachment: None,
                room: Self::lobby(),
                sender: Sender::guest("ghost"),
                body: body.into(),
                client_id: None,
            })
            .await
            .unwrap()
            .message
            .seq
    }
}

async fn expect_error(c: &mut Communicator<ChatConsumer>, code: &str) -> Value {
    let v = c.receive_json().await;
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["code"], code, "{v}");
    assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    v
}

#[tokio::test]
async fn message_is_stored_broadcast_and_acked() {
    let room = Room::new();
    let mut ana = room.join("ana").await;
    let mut bruno = room.join("bruno").await;
    ana.send_json(json!({"type": "message", "body": "oi", "client_id": "c-1"}))
        .await;
    let ack = ana.receive_json().await;
    assert_eq!(
        ack,
        json!({"type": "ack", "room": "lobby", "client_id": "c-1", "seq": 1})
    );
    let own = ana.receive_json().await;
    let got = bruno.receive_json().await;
    assert_eq!(own, got);
    assert_eq!(got["type"], "message");
    assert_eq!(got["seq"], 1);
    assert_eq!(got["body"], "oi");
    assert_eq!(got["sender"], json!({"name": "ana"}));
    assert_eq!(got["client_id"], "c-1");
    assert!(got["sent_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(room.store.last_seq(&Room::lobby()).await.unwrap(), 1);
}

#[tokio::test]
async fn seed_tutorial_frames_are_messages() {
    let room = Room::new();
    let ana = room.join("ana").await;
    let mut bruno = room.join("bruno").await;
    ana.send_json(json!({"message": "hello"})).await;
    ana.send_json(json!({"mensagem": "olá"})).await;
    assert_eq!(bruno.receive_json().await["body"], "hello");
    assert_eq!(bruno.receive_json().await["body"], "olá");
}

#[tokio::test]
async fn repeated_client_id_is_stored_once() {
    let room = Room::new();
    let mut ana = room.join("ana").await;
    let mut bruno = room.join("bruno").await;
    for _ in 0..2 {
        ana.send_json(json!({"type": "message", "body": "once", "client_id": "same"}))
            .await;
    }
    // Two acks, both with the first seq, and one echo of the message (in any order).
    let mut frames = Vec::new();
    for _ in 0..3 {
        let v = ana.receive_json().await;
        frames.push((v["type"].as_str().unwrap().to_owned(), v["seq"].as_u64()));
    }
    frames.sort();
    assert_eq!(
        frames,
        vec![
            ("ack".into(), Some(1)),
            ("ack".into(), Some(1)),
            ("message".into(), Some(1))
        ]
    );
    assert!(ana.receive_nothing(Duration::from_millis(200)).await);
    assert_eq!(bruno.receive_json().await["seq"], 1);
    assert!(bruno.receive_nothing(Duration::from_millis(200)).await);
    assert_eq!(room.store.last_seq(&Room::lobby()).await.unwrap(), 1);
}

/// The node that stored a message died before it could broadcast it: the sender's retry
/// (same `client_id`) is acked with the stored seq and reaches the room at last.
#[tokio::test]
async fn a_retry_broadcasts_a_stored_message_the_room_never_heard() {
    let room = Room::new();
    let mut ana = room.join("ana").await;
    let mut bruno = room.join("bruno").await;
    room.store
        .append(NewMessage {
            attachment: None,
            room: Room::lobby(),
            sender: Sender::guest("ana"),
            body: "lost in transit".into(),
            client_id: Some("c-9".into()),
        })
        .await
        .unwrap();
    ana.send_json(json!({"type": "message", "body": "lost in transit", "client_id": "c-9"}))
        .await;
    let got = bruno.receive_json().await;
    assert_eq!(
        (got["seq"].as_u64(), got["body"].as_str()),
        (Some(1), Some("lost in transit"))
    );
    let mut frames = Vec::new();
    for _ in 0..2 {
        let v = ana.receive_json().await;
        frames.push((v["type"].as_str().unwrap().to_owned(), v["seq"].as_u64()));
    }
    frames.sort();
    assert_eq!(
        frames,
        vec![("ack".into(), Some(1)), ("message".into(), Some(1))]
    );
    assert_eq!(room.store.last_seq(&Room::lobby()).await.unwrap(), 1);
}

#[tokio::test]
async fn since_replays_exactly_the_missed_messages_then_live_ones() {
    let room = Room::new();
    for i in 1..=5 {
        room.store_direct(&format!("m{i}")).await;
    }
    let mut late = room.client("late", "/ws/chat/lobby/?since=2");
    assert!(late.connect().await.accepted());
    for seq in 3..=5 {
        assert_eq!(late.receive_json().await["seq"], seq);
    }
    let ana = room.join("ana").await;
    ana.send_json(json!({"type": "message", "body": "live"}))
        .await;
    let live = late.receive_json().await;
    assert_eq!(
        (live["seq"].as_u64(), live["body"].as_str()),
        (Some(6), Some("live"))
    );
    assert!(late.receive_nothing(Duration::from_millis(200)).await);
}

#[tokio::test]
async fn a_gap_in_live_delivery_is_filled_from_the_store() {
    let room = Room::new();
    let mut bruno = room.join("bruno").await;
    let ana = room.join("ana").await;
    // Stored but never broadcast (as if its group_send were lost).
    room.store_direct("lost").await;
    ana.send_json(json!({"type": "message", "body": "after"}))
        .await;
    let first = bruno.receive_json().await;
    let second = bruno.receive_json().await;
    assert_eq!(
        (first["seq"].as_u64(), first["body"].as_str()),
        (Some(1), Some("lost"))
    );
    assert_eq!(
        (second["seq"].as_u64(), second["body"].as_str()),
        (Some(2), Some("after"))
    );
}

/// A `chat.message` of the lobby as the layer carries it.
fn live_message(seq: u64, body: &str) -> LayerMessage {
    let frame = ServerFrame::Message(StoredMessage {
        attachment: None,
        room: Room::lobby(),
        seq,
        sender: Sender::guest("ghost"),
        body: body.into(),
        client_id: None,
        sent_at: Timestamp::now(),
    });
    LayerMessage::json(CHAT_MESSAGE, &frame).unwrap()
}

/// A live `chat.message` as another socket would broadcast it, without storing it.
async fn broadcast_only(room: &Room, seq: u64, body: &str) {
    room.layer
        .group_send(&Room::lobby().group(), live_message(seq, body))
        .await
        .unwrap();
}

#[tokio::test]
async fn an_overtaken_message_waits_for_the_one_it_overtook() {
    let room = Room::new();
    let mut bruno = room.join("bruno").await;
    // Seq 2 is broadcast before seq 1 (two senders racing). Neither is in the store, so a
    // store read at the gap would find nothing and seq 1 would then be dropped as late.
    broadcast_only(&room, 2, "second").await;
    broadcast_only(&room, 1, "first").await;
    let a = bruno.receive_json().await;
    let b = bruno.receive_json().await;
    assert_eq!(
        (a["seq"].as_u64(), b["seq"].as_u64()),
        (Some(1), Some(2)),
        "{a} {b}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_held_message_gives_up_waiting_and_reads_the_gap_from_the_store() {
    let room = Room::new();
    let mut bruno = room.join("bruno").await;
    // Seq 1 is stored, but its broadcast is lost; seq 2's broadcast arrives.
    room.store_direct("lost").await;
    broadcast_only(&room, 2, "arrived").await;
    assert!(
        bruno.receive_nothing(REORDER_WAIT / 2).await,
        "seq 2 is held while seq 1 may still come"
    );
    let a = bruno.receive_json().await;
    let b = bruno.receive_json().await;
    assert_eq!(
        (a["body"].as_str(), b["body"].as_str()),
        (Some("lost"), Some("arrived"))
    );
}

#[tokio::test]
async fn messages_a_full_mailbox_lost_are_read_from_the_store() {
    let room = Room::with_mailboxes(4);
    let mut bruno = room.join("bruno").await;
    // Ten messages stored and broadcast at once, before bruno's task gets to run: his mailbox
    // takes four, and the layer drops the other six. They are the tail of the burst, so no
    // later message would reveal the gap: only the layer's marker tells him.
    for i in 1..=10 {
        let body = format!("m{i}");
        let seq = room.store_direct(&body).await;
        broadcast_only(&room, seq, &body).await;
    }
    for i in 1..=10u64 {
        let m = bruno.receive_json().await;
        assert_eq!(
            (m["seq"].as_u64(), m["body"].as_str()),
            (Some(i), Some(format!("m{i}").as_str())),
            "{m}"
        );
    }
    assert!(
        bruno.receive_nothing(Duration::from_millis(200)).await,
        "each message once"
    );
}

/// Stores `count` messages with bodies `stored-N`, and publishes each as `recent-N`, kept in
/// `recent` unless its seq is in `unkept`: which body a socket gets says where it came from.
async fn store_and_publish(room: &Room, recent: &RecentMessages, count: u64, unkept: &[u64]) {
    for i in 1..=count {
        let seq = room.store_direct(&format!("stored-{i}")).await;
        let msg = live_message(seq, &format!("recent-{i}"));
        if !unkept.contains(&seq) {
            recent.record(&Room::lobby(), seq, &msg);
        }
        room.layer
            .group_send(&Room::lobby().group(), msg)
            .await
            .unwrap();
    }
}

async fn bodies(c: &mut Communicator<ChatConsumer>, count: usize) -> Vec<String> {
    let mut bodies = Vec::new();
    for seq in 1..=count as u64 {
        let m = c.receive_json().await;
        assert_eq!(m["seq"].as_u64(), Some(seq), "{m}");
        bodies.push(m["body"].as_str().unwrap().to_owned());
    }
    assert!(
        c.receive_nothing(Duration::from_millis(200)).await,
        "each message once"
    );
    bodies
}

#[tokio::test]
async fn what_a_full_mailbox_lost_comes_from_the_recent_messages_when_they_hold_it_all() {
    let recent = Arc::new(RecentMessages::default());
    let room = Room::with_mailboxes(4).with_recent(&recent);
    let mut bruno = room.join("bruno").await;
    // As in the test above: his mailbox takes four, the marker says six were lost.
    store_and_publish(&room, &recent, 10, &[]).await;
    let expected: Vec<String> = (1..=10).map(|i| format!("recent-{i}")).collect();
    assert_eq!(bodies(&mut bruno, 10).await, expected);
}

#[tokio::test]
async fn what_a_full_mailbox_lost_is_read_from_the_store_from_the_first_seq_not_kept() {
    let recent = Arc::new(RecentMessages::default());
    let room = Room::with_mailboxes(4).with_recent(&recent);
    let mut bruno = room.join("bruno").await;
    // Seq 7 was published by another node, say: this one never kept it.
    store_and_publish(&room, &recent, 10, &[7]).await;
    // Four live, two kept, and the store from seq 7 on.
    let live = (1..=6).map(|i| format!("recent-{i}"));
    let read = (7..=10).map(|i| format!("stored-{i}"));
    let expected: Vec<String> = live.chain(read).collect();
    assert_eq!(bodies(&mut bruno, 10).await, expected);
}

#[tokio::test(start_paused = true)]
async fn a_gap_waited_for_in_vain_comes_from_the_recent_messages() {
    let recent = Arc::new(RecentMessages::default());
    let room = Room::new().with_recent(&recent);
    let mut bruno = room.join("bruno").await;
    // Seq 1 is stored and kept, but its broadcast is lost; seq 2's arrives.
    let seq = room.store_direct("stored-1").await;
    recent.record(&Room::lobby(), seq, &live_message(seq, "recent-1"));
    broadcast_only(&room, 2, "recent-2").await;
    assert!(
        bruno.receive_nothing(REORDER_WAIT / 2).await,
        "seq 2 is held"
    );
    assert_eq!(bodies(&mut bruno, 2).await, ["recent-1", "recent-2"]);
}

#[tokio::test]
async fn bad_frames_get_error_codes_and_the_connection_stays_open() {
    let room = Room::new();
    let mut ana = room.join("ana").await;
    ana.send_text("{not json").await;
    expect_error(&mut ana, "invalid_json").await;
    ana.send_json(json!({"type": "dance"})).await;
    expect_error(&mut ana, "unknown_type").await;
    ana.send_json(json!({"type": "message", "body": "   \n ", "client_id": "c-9"}))
        .await;
    let e = ana.receive_json().await;
    assert_eq!(
        (e["code"].as_str(), e["client_id"].as_str()),
        (Some("empty_message"), Some("c-9")),
        "{e}"
    );
    ana.send_json(json!({"type": "message", "body": "x".repeat(4_001)}))
        .await;
    expect_error(&mut ana, "too_large").await;
    ana.send_json(json!({"type": "message", "body": "x", "client_id": "c".repeat(129)}))
        .await;
    expect_error(&mut ana, "too_large").await;
    ana.send_json(json!({"type": "message", "room": "elsewhere", "body": "x"}))
        .await;
    expect_error(&mut ana, "not_joined").await;
    ana.send_json(json!({"type": "message", "room": "bad room!", "body": "x"}))
        .await;
    expect_error(&mut ana, "invalid_room").await;
    ana.send_event(ClientEvent::Binary(bytes::Bytes::from_static(b"\x00")))
        .await;
    expect_error(&mut ana, "invalid_json").await;
    assert_eq!(
        room.store.last_seq(&Room::lobby()).await.unwrap(),
        0,
        "nothing stored"
    );
    // Still open and working.
    ana.send_json(json!({"type": "message", "body": "x".repeat(4_000)}))
        .await;
    assert_eq!(ana.receive_json().await["type"], "ack");
}

#[tokio::test(start_paused = true)]
async fn flood_is_rate_limited_and_nothing_over_the_limit_is_stored() {
    let room = Room::with_limits(Limits {
        messages_per_second: 2,
        message_burst: 3,
        ..Limits::default()
    });
    let mut ana = room.join("ana").await;
    for i in 0..5 {
        ana.send_json(
            json!({"type": "message", "body": format!("m{i}"), "client_id": format!("c{i}")}),
        )
        .await;
    }
    let mut acks = 0;
    let mut limited = Vec::new();
    while acks + limited.len() < 5 {
        let v = ana.receive_json().await;
        match (v["type"].as_str(), v["code"].as_str()) {
            (Some("ack"), _) => acks += 1,
            // The error names the refused send.
            (Some("error"), Some("rate_limited")) => limited.push(v["client_id"].clone()),
            (Some("message"), _) => {}
            _ => panic!("unexpected {v}"),
        }
    }
    assert_eq!(acks, 3);
    assert_eq!(limited, [json!("c3"), json!("c4")]);
    assert_eq!(room.store.last_seq(&Room::lobby()).await.unwrap(), 3);
    // The bucket refills with time.
    tokio::time::advance(Duration::from_secs(1)).await;
    ana.send_json(json!({"type": "message", "body": "later"}))
        .await;
    loop {
        let v = ana.receive_json().await;
        if v["type"] == "ack" {
            assert_eq!(v["seq"], 4);
            break;
        }
        assert_eq!(v["type"], "message", "{v}");
    }
}

#[tokio::test]
async fn repeated_abuse_closes_with_policy_violation() {
    let room = Room::new();
    let mut ana = room.join("ana").await;
    for _ in 0..60 {
        ana.send_text("garbage").await;
    }
    assert_eq!(ana.wait_closed().await, Some(1008));
}

#[tokio::test]
async fn store_outage_answers_store_unavailable_and_acks_nothing() {
    let room = Room::new();
    let mut ana = room.join("ana").await;
    room.store.set_unavailable(true);
    ana.send_json(json!({"type": "message", "body": "lost?", "client_id": "x"}))
        .await;
    expect_error(&mut ana, "store_unavailable").await;
    room.store.set_unavailable(false);
    ana.send_json(json!({"type": "message", "body": "lost?", "client_id": "x"}))
        .await;
    let ack = ana.receive_json().await;
    assert_eq!(
        (ack["type"].as_str(), ack["seq"].as_u64()),
        (Some("ack"), Some(1))
    );
}

#[tokio::test]
async fn oversized_frame_closes_with_1009() {
    let room = Room::new();
    let mut ana = room.join("ana").await;
    ana.send_event(ClientEvent::TooLarge).await;
    assert_eq!(ana.wait_closed().await, Some(1009));
}

#[tokio::test]
async fn a_client_that_cannot_keep_up_is_closed_with_1013() {
    let room = Room::with_limits(Limits {
        outbound_queue: 4,
        ..Limits::default()
    });
    let mut slow = room.join("slow").await;
    let mut ana = room.join("ana").await;
    for i in 0..10 {
        ana.send_json(json!({"type": "message", "body": format!("m{i}")}))
            .await;
        // ana reads her ack and echo so that only `slow` falls behind.
        assert_eq!(ana.receive_json().await["type"], "ack");
        assert_eq!(ana.receive_json().await["type"], "message");
    }
    assert_eq!(slow.wait_closed().await, Some(1013));
}

#[tokio::test]
async fn shutdown_closes_with_1001() {
    let room = Room::new();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let mut ana = room
        .client("ana", "/ws/chat/lobby/")
        .with_config(ConnectionConfig {
            shutdown: shutdown.clone(),
            ..ConnectionConfig::default()
        });
    assert!(ana.connect().await.accepted());
    shutdown.cancel();
    assert_eq!(ana.wait_closed().await, Some(1001));
}

#[tokio::test]
async fn invalid_since_is_refused_before_the_upgrade() {
    let room = Room::new();
    let mut c = room.client("ana", "/ws/chat/lobby/?since=abc");
    match c.connect().await {
        ConnectOutcome::Rejected(400, reason) => assert!(reason.contains("since")),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn history_typing_ping_and_read() {
    let room = Room::new();
    for i in 1..=3 {
        room.store_direct(&format!("m{i}")).await;
    }
    let mut ana = room.join("ana").await;
    let mut bruno = room.join("bruno").await;
    ana.send_json(json!({"type": "history", "before": 3, "limit": 1}))
        .await;
    let h = ana.receive_json().await;
    assert_eq!(h["type"], "history");
    assert_eq!(h["messages"].as_array().unwrap().len(), 1);
    assert_eq!(h["messages"][0]["seq"], 2);
    assert_eq!(h["has_more"], true);

    ana.send_json(json!({"type": "typing", "active": true}))
        .await;
    let t = bruno.receive_json().await;
    assert_eq!(
        t,
        json!({"type": "typing", "room": "lobby", "user": {"name": "ana"}, "active": true})
    );

    ana.send_json(json!({"type": "ping"})).await;
    // ana also receives her own typing event first.
    assert_eq!(ana.receive_json().await["type"], "typing");
    assert_eq!(ana.receive_json().await, json!({"type": "pong"}));

    ana.send_json(json!({"type": "read", "seq": 3})).await;
    expect_error(&mut ana, "forbidden").await;
}

#[tokio::test]
async fn users_read_receipts_are_stored_and_broadcast() {
    let room = Room::new();
    room.store_direct("m1").await;
    let consumer = ChatConsumer::new(
        Room::lobby(),
        Sender::user(3, "Ana", Some("tutor".into())),
        Arc::new(room.store.clone()),
        Limits::default(),
    );
    let mut ana = Communicator::with_shared_layer(consumer, room.layer.clone());
    assert!(ana.connect().await.accepted());
    let mut bruno = room.join("bruno").await;
    ana.send_json(json!({"type": "read", "seq": 1})).await;
    let r = bruno.receive_json().await;
    assert_eq!(
        r,
        json!({"type": "read", "room": "lobby", "user": {"id": 3, "name": "Ana", "role": "tutor"}, "seq": 1})
    );
    assert_eq!(room.store.last_read(&Room::lobby(), 3).await.unwrap(), 1);
}
