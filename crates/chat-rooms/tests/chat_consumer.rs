//! ChatConsumer through the test communicator: the room protocol without sockets.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use chat_core::{Limits, MessageStore, NewMessage, Sender};
use chat_rooms::ChatConsumer;
use chat_ws::{ClientEvent, Communicator, ConnectOutcome, ConnectionConfig};
use serde_json::{Value, json};

mod common;
use common::Room;

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
