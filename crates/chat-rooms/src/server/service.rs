//! [`ChatService`]: the chat as a `tower::Service` and a `hyper::service::Service`.

use std::convert::Infallible;
use std::fmt::Debug;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use chat_ws::PeerAddr;
use http::Request;
use hyper::body::Body;

use crate::server::app::Chat;
use crate::server::respond::Resp;
use crate::server::sockets::ConnectionSlot;

/// What a body type needs to be served: any `http_body::Body` of bytes (hyper's `Incoming`,
/// axum's `Body`, …).
pub trait ChatBody:
    Body<Data = Bytes, Error: Into<BoxError> + Debug> + Send + Unpin + Debug + 'static
{
}

impl<B> ChatBody for B where
    B: Body<Data = Bytes, Error: Into<BoxError> + Debug> + Send + Unpin + Debug + 'static
{
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The chat's every route as one service; cheap to clone. From [`Chat::service`].
///
/// It reads two optional request extensions:
/// - [`PeerAddr`]: the client's address, for per-address limits (logins, posts, sockets).
///   Without it every client counts as one address, so a server should insert it;
/// - [`ConnectionSlot`]: where the per-address socket cap keeps a socket's slot for the
///   connection's lifetime (see [`sockets`](crate::server::sockets)). Without it, sockets are
///   not counted against `max_sockets_per_ip`.
///
/// Mounted under a prefix (axum's `nest_service("/chat", …)`), every socket and API route
/// works relative to it; the bundled web client's pages still link from the root, so serve
/// them at `/` if you use them.
#[derive(Clone)]
pub struct ChatService {
    chat: Chat,
}

impl Chat {
    /// The service answering every route of the chat.
    pub fn service(&self) -> ChatService {
        ChatService { chat: self.clone() }
    }

    /// Answers one request (what [`ChatService`] calls).
    pub async fn handle<B: ChatBody>(&self, mut req: Request<B>) -> Resp {
        let peer = req
            .extensions()
            .get::<PeerAddr>()
            .map_or(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)), |p| p.0);
        let slot = req
            .extensions_mut()
            .remove::<ConnectionSlot>()
            .unwrap_or_default();
        let Ok(res) = crate::server::routes::handle(self.clone(), peer, slot, req).await;
        res
    }

    /// The signal every connection and long-poll of this chat stops on.
    pub fn shutdown_token(&self) -> tokio_util::sync::CancellationToken {
        self.connections.shutdown.clone()
    }

    /// Closes every socket (1001; Socket.IO transports close so clients reconnect elsewhere)
    /// and held long-poll, and waits up to `grace` for their cleanup. `true` when everything
    /// finished in time. In-flight HTTP requests are the server's to drain.
    pub async fn shutdown(&self, grace: Duration) -> bool {
        self.connections.shutdown.cancel();
        let socketio_closed = match &self.socketio {
            Some(endpoint) => tokio::time::timeout(grace, endpoint.close()).await.is_ok(),
            None => true,
        };
        self.sockets.shutdown(grace).await && socketio_closed
    }
}

type Answer = Pin<Box<dyn Future<Output = Result<Resp, Infallible>> + Send>>;

impl<B: ChatBody> tower_service::Service<Request<B>> for ChatService {
    type Response = Resp;
    type Error = Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Answer {
        let chat = self.chat.clone();
        Box::pin(async move { Ok(chat.handle(req).await) })
    }
}

impl<B: ChatBody> hyper::service::Service<Request<B>> for ChatService {
    type Response = Resp;
    type Error = Infallible;
    type Future = Answer;

    fn call(&self, req: Request<B>) -> Answer {
        let chat = self.chat.clone();
        Box::pin(async move { Ok(chat.handle(req).await) })
    }
}
