//! A lobby of `ChatConsumer`s on one in-memory layer and store, shared by the test files.

#![allow(dead_code, clippy::unwrap_used)] // each test file uses part of it

use std::sync::Arc;

use chat_core::{
    ChannelLayer, InMemoryChannelLayer, LayerConfig, LayerMessage, Limits, MemoryStore,
    MessageStore, NewMessage, RoomName, Sender, ServerFrame, SharedLayer, StoredMessage, Timestamp,
};
use chat_rooms::{CHAT_MESSAGE, ChatConsumer, RecentMessages};
use chat_ws::{Communicator, ConnectionConfig};

pub struct Room {
    pub layer: SharedLayer,
    pub store: MemoryStore,
    pub limits: Limits,
    pub recent: Option<Arc<RecentMessages>>,
}

impl Room {
    pub fn new() -> Self {
        Self::with_limits(Limits::default())
    }

    pub fn with_limits(limits: Limits) -> Self {
        Self {
            layer: Arc::new(InMemoryChannelLayer::default()),
            store: MemoryStore::new(),
            limits,
            recent: None,
        }
    }

    /// The same room, its sockets catching up from `recent` when it holds what they missed.
    pub fn with_recent(self, recent: &Arc<RecentMessages>) -> Self {
        Self {
            recent: Some(recent.clone()),
            ..self
        }
    }

    /// A room whose layer mailboxes hold `capacity` messages.
    pub fn with_mailboxes(capacity: usize) -> Self {
        Self {
            layer: Arc::new(InMemoryChannelLayer::new(LayerConfig {
                capacity,
                ..LayerConfig::default()
            })),
            ..Self::new()
        }
    }

    pub fn lobby() -> RoomName {
        RoomName::parse("lobby").unwrap()
    }

    pub fn client(&self, name: &str, path: &str) -> Communicator<ChatConsumer> {
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

    pub async fn join(&self, name: &str) -> Communicator<ChatConsumer> {
        let mut c = self.client(name, "/ws/chat/lobby/");
        assert!(c.connect().await.accepted());
        c
    }

    pub async fn store_direct(&self, body: &str) -> u64 {
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

/// A `chat.message` of the lobby as the layer carries it.
pub fn live_message(seq: u64, body: &str) -> LayerMessage {
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
pub async fn broadcast_only(room: &Room, seq: u64, body: &str) {
    room.layer
        .group_send(&Room::lobby().group(), live_message(seq, body))
        .await
        .unwrap();
}
