//! The Consumer trait's lifecycle through the communicator, with a custom consumer.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use chat_core::{ChannelLayer, GroupName, InMemoryChannelLayer, LayerMessage};
use chat_ws::{
    Communicator, ConnectOutcome, Consumer, ConsumerError, Context, SessionBound, Utf8Bytes,
};
use serde_json::json;

/// Joins "lobby" and echoes JSON to the group; counts disconnects.
struct Lobby {
    disconnects: Arc<AtomicU32>,
}

impl Consumer for Lobby {
    async fn connect(&mut self, cx: &mut Context) -> Result<(), ConsumerError> {
        if cx.request().query("deny").is_some() {
            cx.reject(401, "login required");
            return Ok(());
        }
        if cx.request().query("silent").is_some() {
            return Ok(()); // never accepts
        }
        cx.group_add("lobby").await?;
        cx.accept();
        Ok(())
    }

    async fn receive_json(
        &mut self,
        cx: &mut Context,
        msg: serde_json::Value,
    ) -> Result<(), ConsumerError> {
        cx.group_send("lobby", LayerMessage::new("chat.message", msg))
            .await
    }

    async fn disconnect(
        &mut self,
        _cx: &mut Context,
        _code: Option<u16>,
    ) -> Result<(), ConsumerError> {
        self.disconnects.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

fn lobby(counter: &Arc<AtomicU32>) -> Lobby {
    Lobby {
        disconnects: counter.clone(),
    }
}

#[tokio::test]
async fn lobby_echoes_to_the_group() {
    let layer = InMemoryChannelLayer::default();
    let count = Arc::new(AtomicU32::new(0));
    let mut a = Communicator::new(lobby(&count), layer.clone());
    let mut b = Communicator::new(lobby(&count), layer);
    assert!(a.connect().await.accepted());
    assert!(b.connect().await.accepted());
    a.send_json(json!({"message": "oi"})).await;
    assert_eq!(b.receive_json().await["message"], "oi");
    assert_eq!(a.receive_json().await["message"], "oi");
}

#[tokio::test]
async fn rejection_carries_the_status_and_not_accepting_is_403() {
    let layer = InMemoryChannelLayer::default();
    let count = Arc::new(AtomicU32::new(0));
    let mut c = Communicator::new(lobby(&count), layer.clone()).with_path("/?deny=1");
    assert_eq!(
        c.connect().await,
        ConnectOutcome::Rejected(401, "login required".into())
    );
    let mut c = Communicator::new(lobby(&count), layer).with_path("/?silent=1");
    assert!(matches!(
        c.connect().await,
        ConnectOutcome::Rejected(403, _)
    ));
    assert_eq!(
        count.load(Ordering::SeqCst),
        0,
        "no disconnect without a connection"
    );
}

#[tokio::test]
async fn disconnect_runs_once_with_the_client_code() {
    let layer = InMemoryChannelLayer::default();
    let count = Arc::new(AtomicU32::new(0));
    let mut a = Communicator::new(lobby(&count), layer.clone());
    assert!(a.connect().await.accepted());
    let ending = a.disconnect(1000).await.unwrap();
    assert_eq!(ending.code, Some(1000));
    assert!(!ending.by_server);
    assert_eq!(count.load(Ordering::SeqCst), 1);
    // The layer keeps working for the group's other members.
    let probe = layer.new_channel().await.unwrap();
    let group = GroupName::parse("lobby").unwrap();
    layer.group_add(&group, &probe).await.unwrap();
    layer
        .group_send(&group, LayerMessage::new("x", json!(1)))
        .await
        .unwrap();
    assert_eq!(layer.receive(&probe).await.unwrap().payload_str(), "1");
}

/// Records what it saw of the handshake in `connect` and once open.
struct Inspector {
    seen: std::sync::Arc<std::sync::Mutex<Vec<(bool, bool)>>>,
}

impl Consumer for Inspector {
    async fn connect(&mut self, cx: &mut Context) -> Result<(), ConsumerError> {
        self.record(cx);
        cx.accept();
        Ok(())
    }
    async fn opened(&mut self, cx: &mut Context) -> Result<(), ConsumerError> {
        self.record(cx);
        cx.send_text("open");
        Ok(())
    }
}

impl Inspector {
    fn record(&self, cx: &Context) {
        let h = &cx.request().headers;
        let seen = (h.contains_key("cookie"), h.contains_key("origin"));
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(seen);
    }
}

#[tokio::test]
async fn credentials_are_read_in_connect_and_not_kept_by_the_open_socket() {
    let seen = std::sync::Arc::default();
    let inspector = Inspector {
        seen: std::sync::Arc::clone(&seen),
    };
    let mut c = Communicator::new(inspector, InMemoryChannelLayer::default())
        .with_header("cookie", "chat_session=secret")
        .with_header("origin", "http://127.0.0.1:8000");
    assert!(c.connect().await.accepted());
    assert_eq!(c.receive_text().await, "open");
    let seen = seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert_eq!(seen, [(true, true), (false, true)]);
}

/// Joins `lobby` and forwards what it gets.
struct Member;

impl Consumer for Member {
    async fn connect(&mut self, cx: &mut Context) -> Result<(), ConsumerError> {
        cx.group_add("lobby").await?;
        cx.accept();
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn an_open_socket_keeps_its_group_memberships_past_their_expiry() {
    let layer = InMemoryChannelLayer::new(chat_core::LayerConfig {
        group_expiry: std::time::Duration::from_secs(2),
        ..chat_core::LayerConfig::default()
    });
    let mut c = Communicator::new(Member, layer.clone());
    assert!(c.connect().await.accepted());
    // Three expiries later, the socket is still in the group.
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    let lobby = GroupName::parse("lobby").unwrap_or_else(|e| panic!("{e}"));
    layer
        .group_send(&lobby, LayerMessage::new("chat.message", json!({"n": 1})))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.receive_json().await["n"], 1);
}

/// Records the text frames it handles; closes on "bye".
struct Recorder {
    seen: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Consumer for Recorder {
    async fn receive_text(&mut self, cx: &mut Context, text: &str) -> Result<(), ConsumerError> {
        self.seen.lock().unwrap().push(text.to_owned());
        if text == "bye" {
            cx.close(4000, "asked to");
        }
        Ok(())
    }
}

/// Frames queued together are handled in order, and none after the one that closes.
#[tokio::test]
async fn frames_read_together_are_handled_in_order_up_to_a_close() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut c = Communicator::new(
        Recorder { seen: seen.clone() },
        InMemoryChannelLayer::default(),
    );
    assert!(c.connect().await.accepted());
    for text in ["a", "b", "bye", "after"] {
        c.send_text(text).await;
    }
    assert_eq!(c.wait_closed().await, Some(4000));
    assert_eq!(*seen.lock().unwrap(), ["a", "b", "bye"]);
}

/// Records how the frames came: one at a time, or as a burst.
struct Bursts {
    calls: Arc<std::sync::Mutex<Vec<Vec<String>>>>,
}

impl Consumer for Bursts {
    async fn receive_text(&mut self, cx: &mut Context, text: &str) -> Result<(), ConsumerError> {
        self.receive_texts(cx, vec![text.to_owned().into()]).await
    }

    async fn receive_texts(
        &mut self,
        cx: &mut Context,
        texts: Vec<Utf8Bytes>,
    ) -> Result<(), ConsumerError> {
        let texts: Vec<String> = texts.iter().map(|t| t.as_str().to_owned()).collect();
        if texts.iter().any(|t| t == "bye") {
            cx.close(4000, "asked to");
        }
        self.calls.lock().unwrap().push(texts);
        Ok(())
    }
}

/// A session-bound consumer (as every socket of the server is) still gets a burst as one:
/// the wrapper must not fall back to one frame at a time, which would cost a commit each.
#[tokio::test]
async fn a_session_bound_consumer_gets_frames_read_together_as_one_burst() {
    let calls = Arc::new(std::sync::Mutex::new(Vec::new()));
    let consumer = SessionBound::new(Bursts {
        calls: calls.clone(),
    });
    let mut c = Communicator::new(consumer, InMemoryChannelLayer::default());
    assert!(c.connect().await.accepted());
    // Queued before the connection's task runs again: it reads them together.
    for text in ["a", "b", "bye"] {
        c.send_text(text).await;
    }
    assert_eq!(c.wait_closed().await, Some(4000));
    assert_eq!(*calls.lock().unwrap(), [vec!["a", "b", "bye"]]);
}
