//! [`ChatConfig`]: everything the chat service decides by configuration, as plain values. The
//! bundled binary fills it from flags and environment variables; an embedder fills it in
//! code. Nothing here reads the environment.

use std::sync::Arc;
use std::time::Duration;

use chat_core::{AnyPair, Limits, PairPolicy};

use crate::server::attachments::{AttachmentStore, DEFAULT_MAX_ATTACHMENT_BYTES};
use crate::server::auth::ChatAuthenticator;

/// Which clients' frames the tutorials' WebSocket URLs speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Compat {
    /// `/ws/chat/…/` and `/ws/socket-server/` speak the Channels tutorials' frames to every
    /// client that does not ask for our subprotocol (`chat.v1`).
    Tutorials,
}

/// The chat service's configuration. Not `Debug`: it holds the secret key, which is never
/// logged.
#[derive(Clone)]
pub struct ChatConfig {
    /// Signs session cookies, guest cookies and bearer tokens: at least 32 characters, the
    /// same on every node, kept secret.
    pub secret_key: String,
    /// Protocol limits: body size, rates, queues, timeouts.
    pub limits: Limits,
    /// Whether visitors without an account may use public rooms (under a generated or chosen
    /// name).
    pub allow_guests: bool,
    /// Whether `POST /register` is open.
    pub allow_registration: bool,
    /// The role self-registered accounts get (`""`: none).
    pub register_role: String,
    /// Page origins that may open sockets and post with cookies; empty: the server's own host
    /// only; `*`: any.
    pub allowed_origins: Vec<String>,
    /// Whether cookies carry `Secure` (set behind HTTPS).
    pub secure_cookies: bool,
    /// Whether the last `X-Forwarded-For` address is the client's (behind a reverse proxy).
    pub trust_proxy: bool,
    /// The tutorials' frames on their URLs (`None`: our protocol everywhere).
    pub compat: Option<Compat>,
    /// Open sockets and held long-polls per client address; 0: no cap.
    pub max_sockets_per_ip: usize,
    /// The time zone of the tutorials' `HH:MM` times.
    pub utc_offset: time::UtcOffset,
    /// Who may open a pair room with whom.
    pub pair_policy: Arc<dyn PairPolicy>,
    /// How long a request's body may take to arrive once reading starts.
    pub body_timeout: Duration,
    /// Who callers are: `None` for our sessions and tokens
    /// ([`default_authenticator`](crate::server::auth::default_authenticator)); a service with
    /// its own login puts its [`Authenticator`](chat_ws::Authenticator) here.
    pub authenticator: Option<ChatAuthenticator>,
    /// Where attachments are kept; `None`: attachments are off (their routes answer 404).
    pub attachments: Option<Arc<dyn AttachmentStore>>,
    /// The largest attachment, in bytes.
    pub max_attachment_bytes: usize,
    /// How many of the messages this node published it keeps for catch-ups
    /// ([`RecentMessages`](crate::RecentMessages)); `per_room: 0` turns that off.
    pub recent: crate::RecentConfig,
}

impl ChatConfig {
    /// The defaults of the bundled server, signing with `secret_key`: guests allowed,
    /// registration open, same-host origins, any two users may pair, UTC.
    pub fn new(secret_key: impl Into<String>) -> Self {
        Self {
            secret_key: secret_key.into(),
            limits: Limits::default(),
            allow_guests: true,
            allow_registration: true,
            register_role: String::new(),
            allowed_origins: Vec::new(),
            secure_cookies: false,
            trust_proxy: false,
            compat: None,
            max_sockets_per_ip: 256,
            utc_offset: time::UtcOffset::UTC,
            pair_policy: Arc::new(AnyPair),
            body_timeout: Duration::from_secs(30),
            authenticator: None,
            attachments: None,
            max_attachment_bytes: DEFAULT_MAX_ATTACHMENT_BYTES,
            recent: crate::RecentConfig::default(),
        }
    }
}
