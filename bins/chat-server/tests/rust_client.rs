//! The Rust client against the real server: across a server restart it loses nothing and
//! duplicates nothing, in what it receives and in what it sends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use chat_client::{Auth, ChatClient, ClientConfig, Event};
use chat_core::RoomName;
use common::Server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_reconnect_loses_and_duplicates_nothing_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bind = format!("127.0.0.1:{port}");
    let server = Server::start_at(dir.path(), &bind, &[]);
    let url = format!("ws://{bind}/ws");
    let room: RoomName = "restart".parse().unwrap();

    let mut reader = ChatClient::connect(ClientConfig::new(&url, Auth::Guest("reader".into())))
        .await
        .unwrap();
    reader.join(&room, Some(0)).await.unwrap();
    let writer = ChatClient::connect(ClientConfig::new(&url, Auth::Guest("writer".into())))
        .await
        .unwrap();
    writer.join(&room, None).await.unwrap();
    for i in 0..10 {
        assert_eq!(
            writer.send(&room, format!("before {i}")).await.unwrap(),
            i + 1
        );
    }

    // The server restarts; sends made while it is down complete once it is back.
    assert!(
        tokio::task::spawn_blocking(move || server.stop())
            .await
            .unwrap()
    );
    let during = tokio::spawn({
        let room = room.clone();
        async move {
            let mut seqs = Vec::new();
            for i in 0..5 {
                seqs.push(writer.send(&room, format!("during {i}")).await.unwrap());
            }
            (writer, seqs)
        }
    });
    let _server = Server::start_at(dir.path(), &bind, &[]);
    let (writer, seqs) = tokio::time::timeout(Duration::from_secs(30), during)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        seqs,
        (11..=15).collect::<Vec<_>>(),
        "each send stored exactly once"
    );
    for i in 0..5 {
        writer.send(&room, format!("after {i}")).await.unwrap();
    }

    let mut got = Vec::new();
    let mut writers = std::collections::HashSet::new();
    let mut reconnected = false;
    while got.len() < 20 {
        match tokio::time::timeout(Duration::from_secs(10), reader.next_event())
            .await
            .unwrap()
            .unwrap()
        {
            Event::Message(m) => {
                got.push(m.seq);
                writers.insert(m.sender.guest);
            }
            Event::Reconnected => reconnected = true,
            _ => {}
        }
    }
    assert!(reconnected, "the reader went through a reconnect");
    assert_eq!(
        got,
        (1..=20).collect::<Vec<_>>(),
        "every message once, in order"
    );
    // The guest cookie the server set on the writer's first handshake went back with every
    // reconnect: one guest throughout, so a resend is recognised as that guest's retry.
    assert_eq!(writers.len(), 1, "one guest id: {writers:?}");
    assert!(writers.iter().all(Option::is_some), "{writers:?}");
    let extra = tokio::time::timeout(Duration::from_millis(300), reader.next_message()).await;
    assert!(extra.is_err(), "nothing duplicated: {extra:?}");
}
