//! [`Sockets`]: the handle a server builds once and mounts consumers with.
//!
//! Everything a connection needs from its server lives here: the channel layer, the limits,
//! the origin rule, the shutdown signal and the tracker that shutdown waits on. Building it
//! once is what makes shutdown work: every socket it upgraded hears the same signal and
//! closes with 1001, and [`Sockets::shutdown`] waits for their `disconnect`s. (A handle made
//! per request would leave its sockets deaf to shutdown, which is why there is no free
//! `upgrade` function to make that mistake with.)

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chat_core::{ChannelLayer, Limits, SharedLayer};
use http::{Request, Response, StatusCode};
use http_body_util::Full;

use crate::connection::ConnectionConfig;
use crate::consumer::Consumer;
use crate::security::OriginPolicy;

/// The peer's address, as a request extension: a server that inserts it on each request
/// (hyper does not) lets consumers see it in [`RequestInfo::peer`](crate::RequestInfo::peer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// A server's WebSocket side: build it once, clone it into every request handler.
///
/// ```
/// use chat_core::InMemoryChannelLayer;
/// use chat_ws::{OriginPolicy, Sockets};
///
/// let sockets = Sockets::new(InMemoryChannelLayer::default())
///     .with_origins(OriginPolicy::origins(["https://chat.example.com"]));
/// // In a handler:   sockets.upgrade(request, MyConsumer::new(..)).await
/// // At shutdown:    sockets.shutdown(Duration::from_secs(10)).await
/// # let _ = sockets;
/// ```
#[derive(Clone)]
pub struct Sockets {
    layer: SharedLayer,
    config: ConnectionConfig,
    origins: Arc<OriginPolicy>,
}

impl std::fmt::Debug for Sockets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sockets")
            .field("origins", &self.origins)
            .field("limits", &self.config.limits)
            .finish_non_exhaustive()
    }
}

impl Sockets {
    /// Sockets on `layer`, with the default limits, only same-host origins, and a shutdown
    /// signal of their own.
    pub fn new<L: ChannelLayer>(layer: L) -> Self {
        Self::with_shared_layer(Arc::new(layer))
    }

    /// The same, for a layer that is already shared.
    pub fn with_shared_layer(layer: SharedLayer) -> Self {
        Self {
            layer,
            config: ConnectionConfig::default(),
            origins: Arc::new(OriginPolicy::default()),
        }
    }

    /// Frame size, queue depth, keep-alive and rate limits of every connection.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.config.limits = limits;
        self
    }

    /// Which page origins may open sockets (same host only by default).
    pub fn with_origins(mut self, origins: OriginPolicy) -> Self {
        self.origins = Arc::new(origins);
        self
    }

    /// Uses a server's own shutdown signal and task tracker (and limits), for a server that
    /// shuts down other things with the same token.
    pub fn with_config(mut self, config: ConnectionConfig) -> Self {
        self.config = config;
        self
    }

    /// The channel layer.
    pub fn layer(&self) -> &SharedLayer {
        &self.layer
    }

    /// The connection settings: limits, shutdown signal, tracker.
    pub fn config(&self) -> &ConnectionConfig {
        &self.config
    }

    /// The origin rule.
    pub fn origins(&self) -> &OriginPolicy {
        &self.origins
    }

    /// Answers a WebSocket handshake with `consumer`: a page from an origin the policy
    /// refuses gets 403 before the consumer runs; then the consumer's `connect` decides (see
    /// [`Consumer::connect`]), and an accepted connection runs on a task this handle's
    /// shutdown waits for.
    ///
    /// The connection's task runs in the tracing span current when this is called: call it
    /// inside a span naming the connection and every line it logs carries those fields.
    pub async fn upgrade<C, B>(&self, req: Request<B>, consumer: C) -> Response<Full<Bytes>>
    where
        C: Consumer,
        B: Send + 'static,
    {
        if let Err(refused) = self.origins.check(req.headers()) {
            return crate::upgrade::plain(StatusCode::FORBIDDEN, refused.to_string());
        }
        crate::upgrade::upgrade(req, consumer, self.layer.clone(), self.config.clone()).await
    }

    /// Closes every socket (1001, going away) and waits up to `grace` for their
    /// `disconnect`s and group cleanup. `true` when they all finished in time.
    pub async fn shutdown(&self, grace: Duration) -> bool {
        self.config.shutdown.cancel();
        self.config.tracker.close();
        tokio::time::timeout(grace, self.config.tracker.wait())
            .await
            .is_ok()
    }
}
