//! A client that sends faster than its frames are handled: the frames already read are handled
//! as a burst, its messages stored together, and the client sees exactly what it would one
//! frame at a time: every message acked or refused in order, other frames in their place.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chat_core::{
    Appended, HistoryPage, HistoryQuery, InMemoryChannelLayer, Limits, MemoryStore, MessageStore,
    NewMessage, RoomName, Sender, Seq, SharedLayer, StoreError, UserId,
};
use chat_rooms::socketio::{Outgoing, incoming};
use chat_rooms::{AccessCheck, ChatConsumer, MuxConsumer, RoomAccess, SocketIoConsumer};
use chat_ws::{Communicator, ConnectionConfig, Consumer};
use serde_json::{Value, json};

/// A memory store that records the largest burst it was handed.
#[derive(Clone, Default)]
struct Recording {
    inner: MemoryStore,
    largest_burst: Arc<AtomicUsize>,
}

#[async_trait]
impl MessageStore for Recording {
    async fn append(&self, msg: NewMessage) -> Result<Appended, StoreError> {
        self.inner.append(msg).await
    }

    async fn append_many(&self, msgs: Vec<NewMessage>) -> Vec<Result<Appended, StoreError>> {
        self.largest_burst.fetch_max(msgs.len(), Ordering::SeqCst);
        self.inner.append_many(msgs).await
    }

    async fn history(
        &self,
        room: &RoomName,
        query: HistoryQuery,
    ) -> Result<HistoryPage, StoreError> {
        self.inner.history(room, query).await
    }

    async fn last_seq(&self, room: &RoomName) -> Result<Seq, StoreError> {
        self.inner.last_seq(room).await
    }

    async fn mark_read(&self, room: &RoomName, user: UserId, seq: Seq) -> Result<(), StoreError> {
        self.inner.mark_read(room, user, seq).await
    }

    async fn last_read(&self, room: &RoomName, user: UserId) -> Result<Seq, StoreError> {
        self.inner.last_read(room, user).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}

fn lobby() -> RoomName {
    RoomName::parse("lobby").unwrap()
}

async fn join(layer: &SharedLayer, store: &Recording, name: &str) -> Communicator<ChatConsumer> {
    let limits = Limits::default();
    let consumer = ChatConsumer::new(
        lobby(),
        Sender::guest(name),
        Arc::new(store.clone()),
        limits.clone(),
    );
    let mut c = Communicator::with_shared_layer(consumer, layer.clone())
        .with_path("/ws/chat/lobby/")
        .with_config(ConnectionConfig {
            limits,
            ..ConnectionConfig::default()
        });
    assert!(c.connect().await.accepted());
    c
}

/// The answers (acks and errors) a client gets, in order, until `n` of them came.
async fn answers(c: &mut Communicator<ChatConsumer>, n: usize) -> Vec<Value> {
    let mut got = Vec::new();
    while got.len() < n {
        let v = c.receive_json().await;
        match v["type"].as_str() {
            Some("ack") => got.push(json!({"ack": v["client_id"], "seq": v["seq"]})),
            Some("error") => got.push(json!({"error": v["code"], "client_id": v["client_id"]})),
            _ => {}
        }
    }
    got
}

#[tokio::test]
async fn a_burst_is_answered_in_order_as_frames_one_at_a_time_would_be() {
    let layer: SharedLayer = Arc::new(InMemoryChannelLayer::default());
    let store = Recording::default();
    let ana = join(&layer, &store, "ana").await;
    let mut bruno = join(&layer, &store, "bruno").await;
    let mut ana = ana;
    // Queued before the connection's task runs again, so it reads them all at once.
    for frame in [
        json!({"type": "message", "body": "m1", "client_id": "c-1"}),
        json!({"type": "message", "body": "m2", "client_id": "c-2"}),
        json!({"type": "typing", "active": true}),
        json!({"type": "message", "body": "m3", "client_id": "c-3"}),
    ] {
        ana.send_json(frame).await;
    }
    ana.send_text("{not json").await;
    for frame in [
        json!({"type": "message", "body": "m1 again", "client_id": "c-1"}),
        json!({"type": "message", "body": "  ", "client_id": "c-5"}),
        json!({"type": "message", "body": "m6", "client_id": "c-6"}),
        json!({"type": "message", "body": "m7", "client_id": "c-7"}),
    ] {
        ana.send_json(frame).await;
    }
    assert_eq!(
        answers(&mut ana, 8).await,
        [
            json!({"ack": "c-1", "seq": 1}),
            json!({"ack": "c-2", "seq": 2}),
            json!({"ack": "c-3", "seq": 3}),
            json!({"error": "invalid_json", "client_id": null}),
            json!({"ack": "c-1", "seq": 1}),
            json!({"error": "empty_message", "client_id": "c-5"}),
            json!({"ack": "c-6", "seq": 4}),
            json!({"ack": "c-7", "seq": 5}),
        ]
    );
    // The room sees each stored message once, in seq order, with the typing in its place.
    let mut seen = Vec::new();
    while seen.len() < 6 {
        let v = bruno.receive_json().await;
        match v["type"].as_str() {
            Some("message") => seen.push(format!("{} {}", v["seq"], v["body"])),
            Some("typing") => seen.push(format!("typing {}", v["active"])),
            _ => {}
        }
    }
    assert_eq!(
        seen,
        [
            "1 \"m1\"",
            "2 \"m2\"",
            "typing true",
            "typing false",
            "3 \"m3\"",
            "4 \"m6\"",
        ]
    );
    let v = bruno.receive_json().await;
    assert_eq!(
        (v["seq"].as_u64(), v["body"].as_str()),
        (Some(5), Some("m7"))
    );
    assert!(bruno.receive_nothing(Duration::from_millis(100)).await);
    assert!(
        store.largest_burst.load(Ordering::SeqCst) >= 2,
        "the messages were stored as bursts"
    );
    assert_eq!(store.last_seq(&lobby()).await.unwrap(), 5);
}

/// Every room is open to everyone.
struct Open;

impl RoomAccess for Open {
    fn check<'a>(&'a self, _: &'a Sender, _: &'a RoomName) -> AccessCheck<'a> {
        Box::pin(std::future::ready(Ok(())))
    }
}

async fn open<C: Consumer>(layer: &SharedLayer, consumer: C) -> Communicator<C> {
    let mut c = Communicator::with_shared_layer(consumer, layer.clone());
    assert!(c.connect().await.accepted());
    c
}

/// The bodies a room's member sees, in order, until `n` came.
async fn bodies(c: &mut Communicator<ChatConsumer>, n: usize) -> Vec<String> {
    let mut seen = Vec::new();
    while seen.len() < n {
        let v = c.receive_json().await;
        if v["type"] == "message" {
            seen.push(format!("{} {}", v["seq"], v["body"].as_str().unwrap()));
        }
    }
    seen
}

#[tokio::test]
async fn a_multiplexed_socket_stores_a_burst_per_room_and_answers_in_order() {
    let layer: SharedLayer = Arc::new(InMemoryChannelLayer::default());
    let store = Recording::default();
    let mux = MuxConsumer::new(
        Sender::guest("ana"),
        Arc::new(Open),
        Arc::new(store.clone()),
        Limits::default(),
    );
    let mut ana = open(&layer, mux).await;
    for room in ["lobby", "side"] {
        ana.send_json(json!({"type": "join", "room": room})).await;
        assert_eq!(ana.receive_json().await["type"], "joined");
    }
    let mut bruno = join(&layer, &store, "bruno").await;
    let message = |room: &str, body: &str, id: &str| json!({"type": "message", "room": room, "body": body, "client_id": id});
    // Queued before the connection's task runs again, so it reads them all at once.
    for frame in [
        message("lobby", "m1", "c-1"),
        message("lobby", "m2", "c-2"),
        message("side", "s1", "c-3"),
        message("lobby", "m3", "c-4"),
        json!({"type": "typing", "room": "lobby", "active": true}),
        message("nowhere", "lost", "c-5"),
        message("lobby", "m4", "c-6"),
        message("lobby", "m1 again", "c-1"),
        message("lobby", "", "c-7"),
        message("lobby", "m5", "c-8"),
    ] {
        ana.send_json(frame).await;
    }
    let mut got = Vec::new();
    while got.len() < 9 {
        let v = ana.receive_json().await;
        match v["type"].as_str() {
            Some("ack") => got.push(format!("ack {} {} {}", v["room"], v["client_id"], v["seq"])),
            Some("error") => got.push(format!("error {} {}", v["code"], v["client_id"])),
            _ => {}
        }
    }
    assert_eq!(
        got,
        [
            r#"ack "lobby" "c-1" 1"#,
            r#"ack "lobby" "c-2" 2"#,
            r#"ack "side" "c-3" 1"#,
            r#"ack "lobby" "c-4" 3"#,
            r#"error "not_joined" "c-5""#,
            r#"ack "lobby" "c-6" 4"#,
            r#"ack "lobby" "c-1" 1"#,
            r#"error "empty_message" "c-7""#,
            r#"ack "lobby" "c-8" 5"#,
        ]
    );
    assert_eq!(
        bodies(&mut bruno, 5).await,
        ["1 m1", "2 m2", "3 m3", "4 m4", "5 m5"]
    );
    assert!(bruno.receive_nothing(Duration::from_millis(100)).await);
    assert!(
        store.largest_burst.load(Ordering::SeqCst) >= 2,
        "the messages were stored as bursts"
    );
}

#[tokio::test]
async fn a_socketio_burst_is_stored_together_and_acked_in_order() {
    let layer: SharedLayer = Arc::new(InMemoryChannelLayer::default());
    let store = Recording::default();
    let sio = SocketIoConsumer::new(
        Sender::guest("ana"),
        Arc::new(Open),
        Arc::new(store.clone()),
        Limits::default(),
    );
    let mut ana = open(&layer, sio).await;
    ana.send_text(incoming("join_chat", Some(1), &json!({"chat_id": "lobby"})))
        .await;
    assert!(ana.receive_text().await.starts_with("#1\n"));
    let mut bruno = join(&layer, &store, "bruno").await;
    let send = |body: &str| json!({"chat_id": "lobby", "conteudo": body});
    for (ack, event, data) in [
        (Some(2), "send_message", send("m1")),
        (None, "send_message", send("m2")),
        (Some(3), "send_message", send("m3")),
        (
            Some(4),
            "send_message",
            json!({"chat_id": "lobby", "conteudo": 5}),
        ),
        (Some(5), "typing_start", json!({"chat_id": "lobby"})),
        (Some(6), "send_message", send("m4")),
        (Some(7), "send_message", send("m5")),
    ] {
        ana.send_text(incoming(event, ack, &data)).await;
    }
    let mut acks = Vec::new();
    while acks.len() < 6 {
        let text = ana.receive_text().await;
        if let Some(Outgoing::Ack { id, data }) = Outgoing::parse(&text) {
            let v: Value = serde_json::from_str(data).unwrap();
            acks.push(match v["error"]["code"].as_str() {
                Some(code) => format!("{id} {code}"),
                None => format!("{id} {}", v["seq"]),
            });
        }
    }
    assert_eq!(
        acks,
        ["2 1", "3 3", "4 invalid_json", "5 null", "6 4", "7 5"]
    );
    assert_eq!(
        bodies(&mut bruno, 5).await,
        ["1 m1", "2 m2", "3 m3", "4 m4", "5 m5"]
    );
    assert!(
        store.largest_burst.load(Ordering::SeqCst) >= 2,
        "the events were stored as bursts"
    );
}
