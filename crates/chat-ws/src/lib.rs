//! # chat-ws
//!
//! Channels-style WebSocket consumers on tokio-tungstenite.
//!
//! - [`Consumer`]: `connect` / `receive` / `handle` / `disconnect`, with a [`Context`] to
//!   accept or reject, send frames and use groups;
//! - the connection state machine: accept or reject *before* the upgrade, a loop over client
//!   frames, layer messages and a keep-alive ping, a bounded outbound queue (a client that
//!   cannot keep up is closed with 1013), and cleanup that always runs;
//! - [`Sockets`]: the handle a server builds once; `sockets.upgrade(request, consumer)`
//!   mounts a consumer in any hyper (or axum) handler, and `sockets.shutdown(grace)` closes
//!   every socket with 1001 and waits for their cleanup;
//! - [`security`]: Origin checks against Cross-Site WebSocket Hijacking ([`OriginPolicy`],
//!   [`AllowedHosts`]), applied by every [`Sockets`] before a consumer runs;
//! - [`Authenticator`]: request head → identity, composable with [`Authenticator::or`]
//!   (Channels' `AuthMiddlewareStack`);
//! - [`Bridge`]: run a consumer over a transport that is not our WebSocket (a Socket.IO
//!   library, a long-poll);
//! - [`SessionBound`]: a socket lives no longer than the credentials it was opened with;
//! - [`Communicator`]: unit-test a consumer without sockets.
//!
//! This crate is the framework only. The chat application built on it (rooms, pair chats,
//! the tutorial and Socket.IO dialects) is the `chat-rooms` crate.
//!
//! ```
//! use chat_core::{InMemoryChannelLayer, LayerMessage};
//! use chat_ws::{Communicator, Consumer, ConsumerError, Context};
//!
//! /// The seed tutorials' whole chat consumer.
//! struct Lobby;
//!
//! impl Consumer for Lobby {
//!     async fn connect(&mut self, cx: &mut Context) -> Result<(), ConsumerError> {
//!         cx.group_add("lobby").await?;
//!         cx.accept();
//!         Ok(())
//!     }
//!     async fn receive_json(&mut self, cx: &mut Context, msg: serde_json::Value) -> Result<(), ConsumerError> {
//!         cx.group_send("lobby", LayerMessage::new("chat.message", msg)).await
//!     }
//!     // `handle` forwards layer messages to the client by default, serialized once.
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let layer = InMemoryChannelLayer::default();
//! let mut a = Communicator::new(Lobby, layer.clone());
//! let mut b = Communicator::new(Lobby, layer);
//! assert!(a.connect().await.accepted());
//! assert!(b.connect().await.accepted());
//! a.send_json(serde_json::json!({"message": "oi"})).await;
//! assert_eq!(b.receive_json().await["message"], "oi");
//! # }
//! ```

mod auth;
mod bridge;
mod communicator;
mod connection;
mod consumer;
mod context;
mod form;
mod gate;
mod observe;
mod outbox;
pub mod security;
mod session;
mod socket;
mod sockets;
mod stream;
mod transport;
mod upgrade;

pub use auth::{Anonymous, AuthError, AuthFuture, Authenticator, Or, RequestHead};
pub use bridge::{BRIDGE_EVENTS, Bridge, Bridged};
pub use communicator::{Communicator, ConnectOutcome};
pub use connection::{ClientEvent, ConnectionConfig, Ending};
pub use consumer::{Consumer, ConsumerError};
pub use context::{
    Context, IntoGroupName, KEPT_HEADERS, Outbound, OutboundSink, RequestInfo, SinkError,
};
pub use form::form_decode;
pub use security::{AllowedHosts, OriginPolicy, OriginRefused};
pub use session::{SESSION_ENDED, SESSION_ENDED_CODE, SessionBound};
pub use socket::websocket_config;
pub use sockets::{PeerAddr, Sockets};
pub use tokio_tungstenite::tungstenite::Utf8Bytes;
pub use upgrade::{detach_head, is_websocket_request};
