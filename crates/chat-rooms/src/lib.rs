//! # chat-rooms
//!
//! Our chat application, built on the [`chat_ws`] framework: what `chat-server` serves, for a
//! service that wants the same rooms in its own process.
//!
//! - [`ChatConsumer`]: a socket bound to one room (`/ws/chat/{room}/`, a pair room
//!   `/ws/dm/{id}/`); [`MuxConsumer`]: one socket, any number of rooms (`/ws`);
//! - every room keeps its messages in a [`chat_core::MessageStore`] with gap-free seqs and
//!   delivers them exactly once and in order, with presence, typing and read receipts;
//! - the dialects of the clients our users already have, on the same rooms:
//!   [`TutorialConsumer`] (the Channels tutorials' frames) and [`SocketIoConsumer`] (seed
//!   001's Socket.IO events, run over any Socket.IO library through a [`chat_ws::Bridge`]);
//! - [`RoomAccess`]: the hook where a service decides who may open which room;
//! - [`RecentMessages`]: what this process published lately, so a socket that fell behind
//!   catches up from memory (give the same one to every consumer with `with_recent`);
//! - [`spawn_presence_sweeper`]: announce the users of a node that died (Redis presence).
//!
//! ```
//! use std::sync::Arc;
//!
//! use chat_core::{InMemoryChannelLayer, Limits, MemoryStore, RoomName, Sender};
//! use chat_rooms::ChatConsumer;
//! use chat_ws::Communicator;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let layer = Arc::new(InMemoryChannelLayer::default());
//! let store = Arc::new(MemoryStore::new());
//! let lobby = RoomName::parse("lobby").expect("a valid room name");
//! let open = |name: &str| {
//!     let consumer = ChatConsumer::new(lobby.clone(), Sender::guest(name), store.clone(), Limits::default());
//!     Communicator::with_shared_layer(consumer, layer.clone()).with_path("/ws/chat/lobby/")
//! };
//! let (mut ana, mut bruno) = (open("ana"), open("bruno"));
//! assert!(ana.connect().await.accepted());
//! assert!(bruno.connect().await.accepted());
//!
//! ana.send_json(serde_json::json!({"type": "message", "body": "oi"})).await;
//! // Bruno sees the stored message, with its seq, once.
//! loop {
//!     let frame = bruno.receive_json().await;
//!     if frame["type"] == "message" {
//!         assert_eq!((frame["body"].as_str(), frame["seq"].as_u64()), (Some("oi"), Some(1)));
//!         break;
//!     }
//! }
//! # }
//! ```

pub mod attachment;
mod chat;
mod dialect;
pub mod inbox;
mod mux;
mod observe;
mod recent;
mod room;
mod rooms;
pub mod socketio;
mod sweeper;
mod tutorial;

#[cfg(feature = "server")]
pub mod server;

pub use chat::ChatConsumer;
pub use dialect::{MESSAGE2_SEPARATOR, Tutorial};
pub use inbox::InboxConsumer;
pub use mux::MuxConsumer;
pub use recent::{RecentConfig, RecentMessages};
pub use room::{CHAT_MESSAGE, CHAT_PRESENCE, CHAT_READ, CHAT_TYPING, REORDER_WAIT, TYPING_EXPIRY};
pub use rooms::{AccessCheck, MAX_ROOMS_PER_SOCKET, RoomAccess};
pub use socketio::SocketIoConsumer;
pub use sweeper::{announce_departures, spawn_presence_sweeper};
pub use tutorial::TutorialConsumer;
