//! `SocketIoConsumer` through the communicator: seed 001's events on our rooms, answered as
//! Socket.IO acks and events, in the order the client sent them, beside a native socket.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use chat_core::{
    ErrorCode, FrameError, InMemoryChannelLayer, Limits, MemoryPresence, MemoryStore, RoomName,
    Sender, SharedLayer, SharedPresence,
};
use chat_rooms::socketio::{Outgoing, incoming};
use chat_rooms::{AccessCheck, MuxConsumer, RoomAccess, SocketIoConsumer};
use chat_ws::Communicator;
use serde_json::{Value, json};

/// Public rooms for everyone, pair rooms for their members.
struct Rules;

impl RoomAccess for Rules {
    fn check<'a>(&'a self, user: &'a Sender, room: &'a RoomName) -> AccessCheck<'a> {
        Box::pin(std::future::ready(match (room.pair(), user.id) {
            (None, _) => Ok(()),
            (Some(p), Some(id)) if p.contains(id) => Ok(()),
            _ => Err(FrameError::new(ErrorCode::Forbidden, "not a member")),
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

    async fn sio(&self, user: Sender, limits: Limits) -> Sio {
        let consumer =
            SocketIoConsumer::new(user, Arc::new(Rules), Arc::new(self.store.clone()), limits)
                .with_presence(self.presence.clone());
        let mut c = Communicator::with_shared_layer(consumer, self.layer.clone());
        assert!(c.connect().await.accepted());
        Sio { c, next_ack: 0 }
    }
}

/// A Socket.IO client as the consumer sees it.
struct Sio {
    c: Communicator<SocketIoConsumer>,
    next_ack: i64,
}

/// What the consumer sent: `("#ack", id, data)` or `(event, 0, data)`.
fn read(text: &str) -> (String, i64, Value) {
    match Outgoing::parse(text).unwrap() {
        Outgoing::Event { name, data } => (name.into(), 0, serde_json::from_str(data).unwrap()),
        Outgoing::Ack { id, data } => ("#ack".into(), id, serde_json::from_str(data).unwrap()),
    }
}

impl Sio {
    async fn emit(&mut self, event: &str, data: Value) {
        self.c.send_text(incoming(event, None, &data)).await;
    }

    /// Emits with an ack and returns the ack's payload (events before it are skipped).
    async fn call(&mut self, event: &str, data: Value) -> Value {
        self.next_ack += 1;
        let id = self.next_ack;
        self.c.send_text(incoming(event, Some(id), &data)).await;
        loop {
            let (kind, got, data) = read(&self.c.receive_text().await);
            if kind == "#ack" {
                assert_eq!(got, id, "acks answer in order");
                return data;
            }
        }
    }

    /// The next event of a kind, skipping others.
    async fn event(&mut self, name: &str) -> Value {
        loop {
            let (kind, _, data) = read(&self.c.receive_text().await);
            if kind == name {
                return data;
            }
        }
    }
}

#[tokio::test]
async fn events_are_answered_with_acks_and_shared_with_native_sockets() {
    let w = World::new();
    let mut sio = w.sio(Sender::guest("ana"), Limits::default()).await;
    let joined = sio.call("join_chat", json!({"chat_id": "lobby"})).await;
    assert_eq!(joined["chat_id"], "lobby");
    assert_eq!(joined["last_seq"], 0);

    let native = MuxConsumer::new(
        Sender::guest("bia"),
        Arc::new(Rules),
        Arc::new(w.store.clone()),
        Limits::default(),
    )
    .with_presence(w.presence.clone());
    let mut bia = Communicator::with_shared_layer(native, w.layer.clone());
    assert!(bia.connect().await.accepted());
    bia.send_json(json!({"type": "join", "room": "lobby"}))
        .await;
    assert_eq!(bia.receive_json().await["type"], "joined");
    let arrived = sio.event("user_joined").await;
    assert_eq!(arrived["user"]["name"], "bia");

    let ack = sio
        .call(
            "send_message",
            json!({"chat_id": "lobby", "conteudo": "oi", "client_id": "c1"}),
        )
        .await;
    assert_eq!(
        ack,
        json!({"chat_id": "lobby", "seq": 1, "client_id": "c1"})
    );
    let m = sio.event("new_message").await;
    assert_eq!(
        (m["seq"].clone(), m["conteudo"].clone()),
        (json!(1), json!("oi"))
    );
    assert_eq!(
        m["remetente"],
        json!({"id": null, "nome": "ana", "tipo": null})
    );
    assert_eq!(m["body"], m["conteudo"]);
    let frame = bia.receive_json().await;
    assert_eq!(
        (frame["type"].clone(), frame["seq"].clone()),
        (json!("message"), json!(1))
    );

    // The same client_id again: the first seq, nothing new in the room.
    let again = sio
        .call(
            "send_message",
            json!({"chat_id": "lobby", "conteudo": "oi", "client_id": "c1"}),
        )
        .await;
    assert_eq!(again["seq"], 1);

    // The native side types and sends; Socket.IO hears both in its vocabulary.
    bia.send_json(json!({"type": "typing", "room": "lobby", "active": true}))
        .await;
    let typing = sio.event("user_typing").await;
    assert_eq!(
        (typing["typing"].clone(), typing["user"]["name"].clone()),
        (json!(true), json!("bia"))
    );
    bia.send_json(json!({"type": "message", "room": "lobby", "body": "olá"}))
        .await;
    assert_eq!(sio.event("new_message").await["seq"], 2);

    let history = sio
        .call("history", json!({"chat_id": "lobby", "limit": 10}))
        .await;
    let seqs: Vec<_> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].clone())
        .collect();
    assert_eq!(seqs, [json!(1), json!(2)]);
    let left = sio.call("leave_chat", json!({"chat_id": "lobby"})).await;
    assert_eq!(left["ok"], true);
}

#[tokio::test]
async fn sends_are_applied_in_the_order_the_client_sent_them() {
    let w = World::new();
    let mut sio = w.sio(Sender::guest("ana"), Limits::default()).await;
    sio.call("join_chat", json!({"chat_id": 7})).await;
    for i in 0..30 {
        sio.emit(
            "send_message",
            json!({"chat_id": 7, "conteudo": format!("m{i}")}),
        )
        .await;
    }
    for i in 0..30 {
        let m = sio.event("new_message").await;
        assert_eq!(
            (m["seq"].clone(), m["conteudo"].clone()),
            (json!(i + 1), json!(format!("m{i}")))
        );
        assert_eq!(
            m["chat_id"], "7",
            "a numeric chat_id is the room of that name"
        );
    }
}

#[tokio::test]
async fn join_with_since_replays_after_the_ack_and_pair_rooms_are_private() {
    let w = World::new();
    let mut ana = w
        .sio(
            Sender::user(3, "Ana", Some("tutor".into())),
            Limits::default(),
        )
        .await;
    ana.call("join_chat", json!({"chat_id": "dm_3_8"})).await;
    for i in 1..=4 {
        let ack = ana
            .call(
                "send_message",
                json!({"chat_id": "dm_3_8", "conteudo": format!("m{i}")}),
            )
            .await;
        assert_eq!(ack["seq"], i);
    }
    let mut bruno = w
        .sio(
            Sender::user(8, "Bruno", Some("vet".into())),
            Limits::default(),
        )
        .await;
    let joined = bruno
        .call("join_chat", json!({"chat_id": "dm_3_8", "since": 2}))
        .await;
    assert_eq!(joined["last_seq"], 4);
    for seq in [3, 4] {
        let m = bruno.event("new_message").await;
        assert_eq!(m["seq"], seq);
        assert_eq!(
            m["remetente"],
            json!({"id": 3, "nome": "Ana", "tipo": "tutor"})
        );
    }
    let read = bruno
        .call("mark_read", json!({"chat_id": "dm_3_8", "seq": 4}))
        .await;
    assert_eq!(read["ok"], true);
    let receipt = ana.event("message_read").await;
    assert_eq!(
        (receipt["seq"].clone(), receipt["user"]["id"].clone()),
        (json!(4), json!(8))
    );

    let mut eve = w.sio(Sender::user(9, "Eve", None), Limits::default()).await;
    let refused = eve.call("join_chat", json!({"chat_id": "dm_3_8"})).await;
    assert_eq!(refused["error"]["code"], "forbidden");
}

#[tokio::test]
async fn bad_input_gets_an_error_and_the_socket_keeps_working() {
    let w = World::new();
    let limits = Limits {
        messages_per_second: 1,
        message_burst: 2,
        ..Limits::default()
    };
    let mut sio = w.sio(Sender::guest("ana"), Limits::default()).await;
    let code = |v: Value| v["error"]["code"].as_str().unwrap_or_default().to_owned();
    assert_eq!(
        code(sio.call("join_chat", json!("lobby")).await),
        "invalid_json"
    );
    assert_eq!(
        code(sio.call("join_chat", json!({"chat_id": "a b"})).await),
        "invalid_room"
    );
    assert_eq!(code(sio.call("dance", json!({})).await), "unknown_type");
    assert_eq!(
        code(
            sio.call("send_message", json!({"chat_id": "x", "conteudo": "hi"}))
                .await
        ),
        "not_joined"
    );
    sio.call("join_chat", json!({"chat_id": "x"})).await;
    let blank = sio
        .call(
            "send_message",
            json!({"chat_id": "x", "conteudo": "  ", "client_id": "k1"}),
        )
        .await;
    assert_eq!(code(blank.clone()), "empty_message");
    assert_eq!(
        blank["error"]["client_id"], "k1",
        "the error names the refused send"
    );
    assert_eq!(
        code(
            sio.call(
                "send_message",
                json!({"chat_id": "x", "conteudo": "é".repeat(4_001)})
            )
            .await
        ),
        "too_large"
    );
    assert_eq!(
        code(
            sio.call("mark_read", json!({"chat_id": "x", "seq": 1}))
                .await
        ),
        "forbidden"
    );
    // Without an ack, the error is an event.
    sio.emit("send_message", json!({"chat_id": "x", "conteudo": 5}))
        .await;
    let e = sio.event("error").await;
    assert_eq!(e["code"], "invalid_json");
    // The burst, then rate_limited; the stored ones were acked.
    let mut sio = w.sio(Sender::guest("bia"), limits).await;
    sio.call("join_chat", json!({"chat_id": "x"})).await;
    let mut codes = Vec::new();
    for i in 0..4 {
        let ack = sio
            .call(
                "send_message",
                json!({"chat_id": "x", "conteudo": format!("{i}")}),
            )
            .await;
        codes.push(if ack.get("seq").is_some() {
            "ok".to_owned()
        } else {
            code(ack)
        });
    }
    assert_eq!(codes[..2], ["ok", "ok"]);
    assert!(codes[2..].iter().all(|c| c == "rate_limited"), "{codes:?}");
}
