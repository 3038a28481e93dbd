//! The socket driver on in-memory streams: write timeouts, closes, limits.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chat_core::InMemoryChannelLayer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::consumer::ConsumerError;
use crate::context::Context;

/// Sends `burst` frames of 1 KiB as soon as the socket opens; records its disconnect,
/// saying goodbye there when `farewell`.
struct Talker {
    burst: usize,
    farewell: bool,
    gone: Arc<AtomicBool>,
}

impl Consumer for Talker {
    async fn opened(&mut self, cx: &mut Context) -> Result<(), ConsumerError> {
        for _ in 0..self.burst {
            cx.send_text("x".repeat(1024));
        }
        Ok(())
    }
    async fn disconnect(
        &mut self,
        cx: &mut Context,
        _code: Option<u16>,
    ) -> Result<(), ConsumerError> {
        if self.farewell {
            cx.send_text("bye");
        }
        self.gone.store(true, Ordering::SeqCst);
        Ok(())
    }
}

async fn accepted(consumer: Talker, config: &ConnectionConfig) -> Accepted<Talker, Arc<Outbox>> {
    let layer = Arc::new(InMemoryChannelLayer::default());
    match start_socket(
        consumer,
        layer,
        Arc::new(RequestInfo::default()),
        &config.limits,
    )
    .await
    {
        Ok(Started::Accepted(a)) => a,
        _ => panic!("the consumer accepts"),
    }
}

/// A connection with a 10 s write timeout whose consumer sends 200 frames of 1 KiB at
/// once, and the flag its disconnect sets.
fn talking(limits: Limits) -> (ConnectionConfig, Talker, Arc<AtomicBool>) {
    let config = ConnectionConfig {
        limits: Limits {
            write_timeout: Duration::from_secs(10),
            ..limits
        },
        ..ConnectionConfig::default()
    };
    let gone = Arc::new(AtomicBool::new(false));
    let talker = Talker {
        burst: 200,
        farewell: false,
        gone: gone.clone(),
    };
    (config, talker, gone)
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stops_reading_is_dropped_after_the_write_timeout() {
    let (config, talker, gone) = talking(Limits::default());
    // 4 KiB between the server and a client that never reads: writing blocks.
    let (server_io, _client_io) = tokio::io::duplex(4 * 1024);
    let accepted = accepted(talker, &config).await;
    let started = tokio::time::Instant::now();
    let served =
        tokio::time::timeout(Duration::from_secs(60), serve(accepted, server_io, config)).await;
    assert!(served.is_ok(), "the connection ended by itself");
    assert!(gone.load(Ordering::SeqCst), "disconnect ran");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(10) && took < Duration::from_secs(30),
        "ended after the write timeout, not before: {took:?}"
    );
}

/// The write timeout is about a client that takes nothing: one that reads slowly, but
/// keeps reading, gets everything however long it takes.
#[tokio::test(start_paused = true)]
async fn a_slow_client_that_keeps_reading_is_not_dropped() {
    // This client sends nothing: not the idle timeout's business here.
    let (config, talker, gone) = talking(Limits {
        idle_timeout: Duration::from_secs(3600),
        ping_interval: Duration::from_secs(3600),
        ..Limits::default()
    });
    let (server_io, mut client) = tokio::io::duplex(4 * 1024);
    let accepted = accepted(talker, &config).await;
    let server = tokio::spawn(serve(accepted, server_io, config));
    // 200 text frames of 1 KiB: a 4-byte header each. Read 1 KiB every 2 s: 400 s in
    // all, forty times the write timeout.
    let expected = 200 * (4 + 1024);
    let mut got = 0;
    let mut buf = [0u8; 1024];
    let started = tokio::time::Instant::now();
    while got < expected {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let n = client
            .read(&mut buf)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(n > 0, "the server closed after {got} bytes");
        got += n;
    }
    assert!(started.elapsed() > Duration::from_secs(300));
    assert!(!gone.load(Ordering::SeqCst), "still connected");
    drop(client);
    let _ = tokio::time::timeout(Duration::from_secs(60), server).await;
    assert!(
        gone.load(Ordering::SeqCst),
        "disconnect ran once the client left"
    );
}

/// A client that closes gets the reply to its close frame, though the consumer's
/// `disconnect` still sends (which cannot be written after the client's close).
#[tokio::test(start_paused = true)]
async fn a_client_close_is_answered_though_disconnect_sends() {
    let (config, mut talker, gone) = talking(Limits::default());
    talker.burst = 0;
    talker.farewell = true;
    let (server_io, mut client) = tokio::io::duplex(4 * 1024);
    let accepted = accepted(talker, &config).await;
    let server = tokio::spawn(serve(accepted, server_io, config));
    // A masked close frame with code 1000.
    client
        .write_all(&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut got = Vec::new();
    client
        .read_to_end(&mut got)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        got.get(got.len().saturating_sub(4)..),
        Some(&[0x88, 0x02, 0x03, 0xe8][..]),
        "the stream ends with the reply to the close: {got:?}"
    );
    let _ = tokio::time::timeout(Duration::from_secs(60), server).await;
    assert!(gone.load(Ordering::SeqCst), "disconnect ran");
}

/// Joins group `g` and forwards what the layer sends it (the default `handle`).
struct Member;

impl Consumer for Member {
    async fn connect(&mut self, cx: &mut Context) -> Result<(), ConsumerError> {
        cx.group_add("g").await?;
        cx.accept();
        Ok(())
    }
}

/// A burst of deliveries larger than the outbound queue is gathered and queued at once
/// (`Context::hold_frames`): what does not fit closes the client as too slow, 1013.
#[tokio::test]
async fn a_burst_past_the_outbound_queue_closes_with_1013() {
    let config = ConnectionConfig {
        limits: Limits {
            outbound_queue: 4,
            ..Limits::default()
        },
        ..ConnectionConfig::default()
    };
    let layer: SharedLayer = Arc::new(InMemoryChannelLayer::default());
    let accepted = match start_socket(
        Member,
        layer.clone(),
        Arc::new(RequestInfo::default()),
        &config.limits,
    )
    .await
    {
        Ok(Started::Accepted(a)) => a,
        _ => panic!("the consumer accepts"),
    };
    // Ten messages in one group send: one burst in the member's mailbox.
    let burst = (0..10)
        .map(|i| chat_core::LayerMessage::new("t", serde_json::json!(i)))
        .collect();
    let g = chat_core::GroupName::parse("g").unwrap_or_else(|e| panic!("{e}"));
    layer
        .group_send_many(&g, burst)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (server_io, mut client) = tokio::io::duplex(64 * 1024);
    let server = tokio::spawn(serve(accepted, server_io, config));
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut got))
        .await
        .unwrap_or_else(|e| panic!("the server did not close: {e}"))
        .unwrap_or_else(|e| panic!("{e}"));
    let reason = b"client too slow";
    let mut close = vec![0x88, 2 + reason.len() as u8, 0x03, 0xf5];
    close.extend_from_slice(reason);
    assert!(
        got.ends_with(&close),
        "the stream ends with a 1013 close: {got:?}"
    );
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
}

#[tokio::test]
async fn an_invalid_utf8_text_frame_is_closed_with_1007() {
    let config = ConnectionConfig::default();
    let talker = Talker {
        burst: 0,
        farewell: false,
        gone: Arc::default(),
    };
    let (server_io, mut client) = tokio::io::duplex(64 * 1024);
    let accepted = accepted(talker, &config).await;
    let server = tokio::spawn(serve(accepted, server_io, config));
    // A masked text frame (mask 0) whose payload is not UTF-8.
    client
        .write_all(&[0x81, 0x82, 0, 0, 0, 0, 0xff, 0xfe])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut head = [0u8; 4];
    client
        .read_exact(&mut head)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(head[0], 0x88, "a close frame");
    assert_eq!(u16::from_be_bytes([head[2], head[3]]), 1007);
    drop(client);
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
}
