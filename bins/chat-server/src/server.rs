//! Running the chat on the listener, and graceful shutdown.
//!
//! Shutdown order matters: stop accepting, tell every WebSocket to close with 1001 and let
//! in-flight HTTP requests finish, wait (bounded) for connection tasks to run their
//! cleanup, then close the channel layer.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use chat_core::ChannelLayer;
use chat_rooms::server::{Chat, serve};
use chat_ws::PeerAddr;
use hyper::service::service_fn;
use tokio::net::TcpListener;

use crate::prometheus;

/// How long shutdown waits for connections to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves the chat on `listener` until `shutdown` (see [`shutdown_signal`]); `/metrics`
/// renders `metrics` to local peers (404 when `None`).
pub async fn run(
    chat: Chat,
    metrics: Option<prometheus::Exporter>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) {
    let service = {
        let chat = chat.clone();
        service_fn(move |req: http::Request<hyper::body::Incoming>| {
            let (chat, metrics) = (chat.clone(), metrics.clone());
            async move {
                if req.uri().path() == "/metrics" {
                    let peer = req.extensions().get::<PeerAddr>().map(|p| p.0);
                    return Ok::<_, Infallible>(prometheus::on_main_listener(
                        metrics.as_ref(),
                        peer,
                        &req,
                    ));
                }
                Ok(chat.handle(req).await)
            }
        })
    };
    let http = tokio::spawn(serve(listener, service, chat.shutdown_token()));
    shutdown.await;
    tracing::info!("shutting down: closing connections");
    // The chat's shutdown signal also stops the accept loop and tells every HTTP connection
    // to finish its request in flight: sockets and requests drain side by side.
    let sockets = chat.shutdown(DRAIN_TIMEOUT);
    let requests = async {
        match http.await {
            Ok(connections) => tokio::time::timeout(DRAIN_TIMEOUT, connections.wait())
                .await
                .is_ok(),
            Err(_) => false,
        }
    };
    let (sockets_done, requests_done) = tokio::join!(sockets, requests);
    if !requests_done {
        tracing::warn!("some HTTP connections did not finish in time");
    }
    if !sockets_done {
        tracing::warn!("some WebSocket or Socket.IO connections did not finish in time");
    }
    if let Err(e) = chat.layer().close().await {
        tracing::warn!(error = %e, "closing the channel layer failed");
    }
}

/// Resolves on Ctrl-C or SIGTERM. The handlers are installed when this is called, not when
/// the future is first polled: call it before announcing the listener, so that a signal sent
/// as soon as the server says it listens is a graceful shutdown, not the default death.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let handlers = signal(SignalKind::terminate())
            .and_then(|term| signal(SignalKind::interrupt()).map(|interrupt| (term, interrupt)));
        async move {
            match handlers {
                Ok((mut term, mut interrupt)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = interrupt.recv() => {}
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM or Ctrl-C");
                    std::future::pending::<()>().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            if let Err(e) = tokio::signal::ctrl_c().await {
                tracing::error!(error = %e, "cannot listen for Ctrl-C");
                std::future::pending::<()>().await;
            }
        }
    }
}
