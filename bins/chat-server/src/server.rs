//! The accept loop and graceful shutdown.
//!
//! Shutdown order matters: stop accepting, tell every WebSocket to close with 1001 and let
//! in-flight HTTP requests finish, wait (bounded) for connection tasks to run their
//! cleanup, then close the channel layer.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;

use chat_core::ChannelLayer;
use chat_rooms::server::Chat;
use chat_rooms::server::sockets::{ConnectionSlot, SlotIo};
use chat_ws::PeerAddr;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::prometheus;

/// The largest request head (request line and headers) the server reads: 16 KiB.
const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// How long shutdown waits for connections to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves HTTP and WebSockets on `listener` until `shutdown` resolves; `/metrics` renders
/// `metrics` to local peers (404 when `None`).
pub async fn serve(
    app: Chat,
    metrics: Option<PrometheusHandle>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) {
    let http = TaskTracker::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Usually EMFILE: back off instead of spinning on the error.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (chat, metrics) = (app.clone(), metrics.clone());
        // The slot of the socket this connection may become lives in its I/O object, which
        // the socket's task owns after the upgrade: the slot goes when the socket goes.
        let slot = ConnectionSlot::default();
        let io = SlotIo::new(stream, slot.clone());
        let service = service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
            let (chat, metrics) = (chat.clone(), metrics.clone());
            req.extensions_mut().insert(PeerAddr(peer));
            req.extensions_mut().insert(slot.clone());
            async move {
                if req.uri().path() == "/metrics" {
                    return Ok::<_, Infallible>(prometheus::on_main_listener(
                        metrics.as_ref(),
                        peer,
                        &req,
                    ));
                }
                Ok(chat.handle(req).await)
            }
        });
        let conn = http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            // A request head over this is answered 431 (hyper's default takes ~400 KiB).
            .max_buf_size(MAX_REQUEST_HEAD)
            .header_read_timeout(Duration::from_secs(30))
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades();
        let stop = app.shutdown_token();
        http.spawn(async move {
            let mut conn = std::pin::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                () = stop.cancelled() => {
                    // Finish the request in flight, then close.
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "http connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!("shutting down: closing connections");
    // Sockets and HTTP requests drain side by side: the chat's shutdown signal also tells
    // every HTTP connection to finish its request in flight and close.
    let sockets = app.shutdown(DRAIN_TIMEOUT);
    http.close();
    let http_done = async {
        tokio::time::timeout(DRAIN_TIMEOUT, http.wait())
            .await
            .is_ok()
    };
    let (sockets_done, http_done) = tokio::join!(sockets, http_done);
    if !http_done {
        tracing::warn!("some HTTP connections did not finish in time");
    }
    if !sockets_done {
        tracing::warn!("some WebSocket or Socket.IO connections did not finish in time");
    }
    if let Err(e) = app.layer().close().await {
        tracing::warn!(error = %e, "closing the channel layer failed");
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
