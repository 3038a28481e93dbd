//! In-order, exactly-once delivery to a ChatConsumer: overtaken messages, gaps, messages a
//! full mailbox lost, and catch-ups from the node's recent messages or the store.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use chat_core::ChannelLayer;
use chat_rooms::{ChatConsumer, REORDER_WAIT, RecentMessages};
use chat_ws::Communicator;
use serde_json::json;

mod common;
use common::{Room, broadcast_only, live_message};

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
