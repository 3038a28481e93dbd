//! [`Chat`]: the chat service's state, built once, cloned into every request.

use std::net::IpAddr;
use std::sync::Arc;

use chat_core::{MessageStore, PairPolicy, SharedLayer, SharedPresence};
use chat_store::Store;
use chat_ws::{ConnectionConfig, OriginPolicy, Sockets};

use crate::attachment::AttachmentLookup;
use crate::server::ChatConfig;
use crate::server::attachments::AttachmentStore;
use crate::server::auth::{ChatAuthenticator, GuestKeys, SessionKeys, default_authenticator};
use crate::server::ratelimit::KeyedLimiter;
use crate::server::sockets::SocketLimiter;

/// The whole chat service: rooms, pair rooms, the multiplexed socket, long-poll, the HTTP
/// API, accounts, Socket.IO and the web client, on one store, one channel layer and one
/// presence. Build it once; clone it (cheaply) into every request handler; call
/// [`Chat::shutdown`] at the end.
#[derive(Clone)]
pub struct Chat {
    /// The database: messages, users, sessions.
    pub(crate) store: Store,
    /// The same store as consumers see it.
    pub(crate) messages: Arc<dyn MessageStore>,
    /// Live delivery between connections.
    pub(crate) layer: SharedLayer,
    /// Who is online where.
    pub(crate) presence: SharedPresence,
    /// Resolved configuration.
    pub(crate) config: Arc<ChatConfig>,
    /// The WebSocket side: limits, origin rule, shutdown signal of every connection.
    pub(crate) sockets: Sockets,
    /// The same connections' settings (the shutdown signal long-polls hear too).
    pub(crate) connections: ConnectionConfig,
    /// Who may open a pair room with whom.
    pub(crate) policy: Arc<dyn PairPolicy>,
    /// Who callers are.
    pub(crate) authenticator: ChatAuthenticator,
    /// Where attachments are kept (`None`: off).
    pub(crate) attachments: Option<Arc<dyn AttachmentStore>>,
    /// The same store, as the room sessions look files up.
    pub(crate) attachment_lookup: Option<Arc<dyn AttachmentLookup>>,
    /// Session cookie signing.
    pub(crate) sessions: SessionKeys,
    /// Guest ids from guest cookies.
    pub(crate) guests: GuestKeys,
    /// Per-client-IP rate limit of HTTP message posts.
    pub(crate) post_limiter: Arc<KeyedLimiter>,
    /// Failed logins per client IP.
    pub(crate) login_by_ip: Arc<KeyedLimiter>,
    /// Failed logins per username.
    pub(crate) login_by_user: Arc<KeyedLimiter<String>>,
    /// Open sockets and held long-polls per client IP (`--max-sockets-per-ip`).
    pub(crate) socket_slots: Arc<SocketLimiter>,
    /// The messages this node published lately, shared by its sockets' catch-ups.
    pub(crate) recent: Arc<crate::RecentMessages>,
    /// The Socket.IO endpoint (mounted once the state exists: its handlers use it).
    pub(crate) socketio: Option<crate::server::socketio::Endpoint>,
}

impl Chat {
    /// The chat on `store`, delivering through `layer`, with `presence`, configured by
    /// `config`.
    pub fn new(
        store: Store,
        layer: SharedLayer,
        presence: SharedPresence,
        config: ChatConfig,
    ) -> Self {
        let mut chat = Self::without_socketio(store, layer, presence, config);
        chat.socketio = Some(crate::server::socketio::endpoint(&chat));
        chat
    }

    /// The state without the Socket.IO endpoint (whose handlers need the rest of it).
    fn without_socketio(
        store: Store,
        layer: SharedLayer,
        presence: SharedPresence,
        config: ChatConfig,
    ) -> Self {
        let limits = config.limits.clone();
        let connections = ConnectionConfig {
            limits: limits.clone(),
            ..ConnectionConfig::default()
        };
        let sockets = Sockets::with_shared_layer(layer.clone())
            .with_config(connections.clone())
            .with_origins(OriginPolicy::origins(
                config.allowed_origins.iter().cloned(),
            ));
        let authenticator = config.authenticator.clone().unwrap_or_else(|| {
            default_authenticator(&config.secret_key, config.secure_cookies, &store)
        });
        Self {
            messages: Arc::new(store.clone()),
            store,
            layer,
            presence,
            sockets,
            connections,
            policy: config.pair_policy.clone(),
            authenticator,
            attachments: config.attachments.clone(),
            attachment_lookup: config.attachments.clone().map(|store| {
                Arc::new(crate::server::attachments::Lookup(store)) as Arc<dyn AttachmentLookup>
            }),
            sessions: SessionKeys::new(&config.secret_key, config.secure_cookies),
            guests: GuestKeys::new(&config.secret_key, config.secure_cookies),
            post_limiter: Arc::new(KeyedLimiter::new(
                f64::from(limits.messages_per_second),
                limits.message_burst,
            )),
            // Ten failures in a row, then one more every 6 s (per address) …
            login_by_ip: Arc::new(KeyedLimiter::<IpAddr>::new(1.0 / 6.0, 10)),
            // … and five per username, then one a minute, whoever tries.
            login_by_user: Arc::new(KeyedLimiter::new(1.0 / 60.0, 5)),
            socket_slots: SocketLimiter::new(config.max_sockets_per_ip),
            socketio: None,
            recent: Arc::new(crate::RecentMessages::new(config.recent)),
            config: Arc::new(config),
        }
    }
}

/// What a service built on the chat may read of it.
impl Chat {
    /// The store: messages, users, sessions.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The channel layer every connection delivers through.
    pub fn layer(&self) -> &SharedLayer {
        &self.layer
    }

    /// Who is online where.
    pub fn presence(&self) -> &SharedPresence {
        &self.presence
    }

    /// The configuration.
    pub fn config(&self) -> &ChatConfig {
        &self.config
    }

    /// The WebSocket side (origin rule, limits, shutdown), for mounting consumers of one's
    /// own beside the chat's.
    pub fn sockets(&self) -> &Sockets {
        &self.sockets
    }
}
