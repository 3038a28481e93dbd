//! The server's shared state: store, channel layer, configuration, connection settings.

use std::sync::Arc;

use chat_core::{MessageStore, SharedLayer};
use chat_ws::ConnectionConfig;

use crate::config::ServerConfig;
use crate::ratelimit::KeyedLimiter;

/// Everything a request handler needs. Cheap to clone.
#[derive(Clone)]
pub struct App {
    /// Message persistence.
    pub store: Arc<dyn MessageStore>,
    /// Live delivery between connections.
    pub layer: SharedLayer,
    /// Resolved configuration.
    pub config: Arc<ServerConfig>,
    /// Settings and shutdown signal of WebSocket connections.
    pub connections: ConnectionConfig,
    /// Per-client-IP rate limit of HTTP message posts.
    pub post_limiter: Arc<KeyedLimiter>,
}
