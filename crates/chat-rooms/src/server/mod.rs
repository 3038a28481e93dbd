//! The whole chat as one HTTP service (feature `server`): what `chat-server` serves, for a
//! Rust service to mount next to its own routes.
//!
//! [`Chat`] holds the state (store, channel layer, presence, configuration, shutdown);
//! [`Chat::service`] is a `tower::Service` and a `hyper::service::Service` answering every
//! route of [docs/protocol.md](https://example.invalid/chat/docs/protocol.md): the room
//! sockets, `/ws`, long-poll, the HTTP API, accounts, Socket.IO, `/readyz` and the web
//! client.

mod access;
mod accounts;
mod api;
mod app;
pub mod attachments;
pub mod auth;
mod body;
mod config;
mod health;
mod listen;
mod pages;
mod ratelimit;
mod respond;
mod routes;
mod service;
mod socketio;
pub mod sockets;
mod trace;
mod tutorials;
mod ws;

pub use accounts::{InvalidCredentials, check_password, check_username};
pub use app::Chat;
pub use config::{ChatConfig, Compat};
pub use listen::{MAX_REQUEST_HEAD, serve};
pub use respond::Resp;
pub use service::ChatService;
