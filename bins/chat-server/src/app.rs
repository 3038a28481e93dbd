//! The server's shared state: store, channel layer, configuration, connection settings.

use std::net::IpAddr;
use std::sync::Arc;

use chat_core::{MessageStore, PairPolicy, SharedLayer, SharedPresence};
use chat_store::Store;
use chat_ws::{ConnectionConfig, OriginPolicy, Sockets};

use crate::auth::{GuestKeys, SessionKeys};
use crate::config::ServerConfig;
use crate::ratelimit::KeyedLimiter;
use crate::sockets::SocketLimiter;

/// Everything a request handler needs. Cheap to clone.
#[derive(Clone)]
pub struct App {
    /// The database: messages, users, sessions.
    pub store: Store,
    /// The same store as consumers see it.
    pub messages: Arc<dyn MessageStore>,
    /// Live delivery between connections.
    pub layer: SharedLayer,
    /// Who is online where.
    pub presence: SharedPresence,
    /// Resolved configuration.
    pub config: Arc<ServerConfig>,
    /// The WebSocket side: limits, origin rule, shutdown signal of every connection.
    pub sockets: Sockets,
    /// The same connections' settings (the shutdown signal long-polls hear too).
    pub connections: ConnectionConfig,
    /// Who may open a pair room with whom.
    pub policy: Arc<dyn PairPolicy>,
    /// Session cookie signing.
    pub sessions: SessionKeys,
    /// Guest ids from guest cookies.
    pub guests: GuestKeys,
    /// Per-client-IP rate limit of HTTP message posts.
    pub post_limiter: Arc<KeyedLimiter>,
    /// Failed logins per client IP.
    pub login_by_ip: Arc<KeyedLimiter>,
    /// Failed logins per username.
    pub login_by_user: Arc<KeyedLimiter<String>>,
    /// Open sockets and held long-polls per client IP (`--max-sockets-per-ip`).
    pub socket_slots: Arc<SocketLimiter>,
    /// The Socket.IO endpoint (mounted once the state exists: its handlers use it).
    pub socketio: Option<crate::socketio::Endpoint>,
    /// What `GET /metrics` renders on the main listener; `None` there (404) when no recorder
    /// is installed or `--metrics-bind` serves it on its own listener.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// The Redis channel layer (the same as `layer`) when the server runs with Redis, for
    /// `/readyz` to report its connection; `None` with the in-memory layer.
    pub redis: Option<chat_core::RedisChannelLayer>,
}

impl App {
    /// Builds the state for a store, a layer, presence and a configuration, with the
    /// Socket.IO endpoint mounted.
    pub fn with_socketio(mut self) -> Self {
        self.socketio = Some(crate::socketio::endpoint(&self));
        self
    }

    /// Builds the state for a store, a layer, presence and a configuration.
    pub fn new(
        store: Store,
        layer: SharedLayer,
        presence: SharedPresence,
        config: ServerConfig,
    ) -> Self {
        let limits = config.limits.clone();
        let connections = ConnectionConfig {
            limits: limits.clone(),
            ..ConnectionConfig::default()
        };
        let sockets = Sockets::with_shared_layer(layer.clone())
            .with_config(connections.clone())
            .with_origins(OriginPolicy::origins(
                config.settings.allowed_origins.iter().cloned(),
            ));
        Self {
            messages: Arc::new(store.clone()),
            store,
            layer,
            presence,
            sockets,
            connections,
            policy: config.pair_policy.clone(),
            sessions: SessionKeys::new(&config.secret_key, config.settings.secure_cookies),
            guests: GuestKeys::new(&config.secret_key, config.settings.secure_cookies),
            post_limiter: Arc::new(KeyedLimiter::new(
                f64::from(limits.messages_per_second),
                limits.message_burst,
            )),
            // Ten failures in a row, then one more every 6 s (per address) …
            login_by_ip: Arc::new(KeyedLimiter::<IpAddr>::new(1.0 / 6.0, 10)),
            // … and five per username, then one a minute, whoever tries.
            login_by_user: Arc::new(KeyedLimiter::new(1.0 / 60.0, 5)),
            socket_slots: SocketLimiter::new(config.settings.max_sockets_per_ip),
            socketio: None,
            metrics: None,
            redis: None,
            config: Arc::new(config),
        }
    }
}
