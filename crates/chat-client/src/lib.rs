//! A Rust client for the multiplexed socket (`GET /ws`), for services and for our benchmark.
//!
//! It joins rooms, sends messages with client ids and waits for their acks, and hands out
//! typed events. When the connection drops it reconnects with backoff, rejoins every room with
//! `since` = the last seq it saw and resends unacknowledged messages with their original client
//! ids (which the server deduplicates), so a caller sees every message exactly once and in
//! order, and every send is stored exactly once, across disconnects and server restarts.
//!
//! ```
//! use chat_client::{Auth, ChatClient, ClientConfig, Event};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # // A chat server in this process, for the example to talk to.
//! # let dir = tempfile::tempdir()?;
//! # let url = format!("sqlite://{}/chat.db", dir.path().display());
//! # let store = chat_store::Store::open(chat_store::StoreConfig::new(url)).await?;
//! # let chat = chat_rooms::server::Chat::new(
//! #     store,
//! #     std::sync::Arc::new(chat_core::InMemoryChannelLayer::default()),
//! #     std::sync::Arc::new(chat_core::MemoryPresence::new()),
//! #     chat_rooms::server::ChatConfig::new("an example secret key of 32+ chars"),
//! # );
//! # let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! # let addr = listener.local_addr()?;
//! # tokio::spawn(chat_rooms::server::serve(listener, chat.service(), chat.shutdown_token()));
//! let mut client = ChatClient::connect(ClientConfig::new(
//!     format!("ws://{addr}/ws"),
//!     Auth::Guest("a service".into()),
//! ))
//! .await?;
//! let lobby = "lobby".parse()?;
//! client.join(&lobby, None).await?;
//! let seq = client.send(&lobby, "hello from a service").await?;
//! while let Some(event) = client.next_event().await {
//!     if let Event::Message(m) = event {
//!         println!("{} #{}: {}", m.room, m.seq, m.body);
//!         assert_eq!(m.seq, seq);
//!         break;
//!     }
//! }
//! # Ok(())
//! # }
//! ```

mod task;

use std::time::Duration;

use chat_core::{RoomName, Seq, StoredMessage};
use tokio::sync::{mpsc, oneshot};

pub use task::Event;

/// How the client authenticates.
#[derive(Debug, Clone)]
pub enum Auth {
    /// A guest with a display name (public rooms only).
    Guest(String),
    /// A session value from `POST /login` (JSON answer's `session`).
    Session(String),
    /// A token from `chat-server token issue`.
    Bearer(String),
}

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The multiplexed socket's URL, `ws://host:port/ws`.
    pub url: String,
    /// Credentials.
    pub auth: Auth,
    /// First reconnect delay; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    /// Longest reconnect delay.
    pub max_backoff: Duration,
}

impl ClientConfig {
    /// Defaults: reconnect after 100 ms, backing off to 5 s.
    pub fn new(url: impl Into<String>, auth: Auth) -> Self {
        Self {
            url: url.into(),
            auth,
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The first connection failed (later ones are retried).
    #[error("cannot connect: {0}")]
    Connect(#[source] tokio_tungstenite::tungstenite::Error),
    /// The server refused a frame (`forbidden`, `rate_limited`, …).
    #[error("{}: {message}", code.as_str())]
    Refused {
        /// The error code.
        code: chat_core::ErrorCode,
        /// The server's message.
        message: String,
    },
    /// The client was closed.
    #[error("the client is closed")]
    Closed,
}

pub(crate) enum Command {
    Join(
        RoomName,
        Option<Seq>,
        oneshot::Sender<Result<(), ClientError>>,
    ),
    Send(RoomName, String, oneshot::Sender<Result<Seq, ClientError>>),
    Close,
}

/// A connection to the multiplexed socket that survives disconnects.
pub struct ChatClient {
    commands: mpsc::UnboundedSender<Command>,
    events: mpsc::UnboundedReceiver<Event>,
}

impl ChatClient {
    /// Connects (the first attempt must succeed; later drops are retried forever).
    pub async fn connect(config: ClientConfig) -> Result<Self, ClientError> {
        let mut cookies = task::Cookies::default();
        let socket = task::open(&config, &mut cookies)
            .await
            .map_err(ClientError::Connect)?;
        let (commands, rx) = mpsc::unbounded_channel();
        let (tx, events) = mpsc::unbounded_channel();
        tokio::spawn(task::run(config, cookies, socket, rx, tx));
        Ok(Self { commands, events })
    }

    /// Joins a room; with `since`, the messages stored after it come first. Rejoined
    /// automatically after a reconnect, from the last seq seen.
    pub async fn join(&self, room: &RoomName, since: Option<Seq>) -> Result<(), ClientError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Join(room.clone(), since, tx))
            .map_err(|_| ClientError::Closed)?;
        rx.await.map_err(|_| ClientError::Closed)?
    }

    /// Sends a message and waits until the server stored it; returns its seq. Survives
    /// reconnects (the message is resent with the same client id, stored once).
    pub async fn send(&self, room: &RoomName, body: impl Into<String>) -> Result<Seq, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Send(room.clone(), body.into(), tx))
            .map_err(|_| ClientError::Closed)?;
        rx.await.map_err(|_| ClientError::Closed)?
    }

    /// The next event; `None` once the client is closed.
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// The next chat message, skipping other events.
    pub async fn next_message(&mut self) -> Option<StoredMessage> {
        loop {
            if let Event::Message(m) = self.next_event().await? {
                return Some(m);
            }
        }
    }

    /// Closes the connection.
    pub fn close(&self) {
        let _ = self.commands.send(Command::Close);
    }
}
