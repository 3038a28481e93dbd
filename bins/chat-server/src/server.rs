//! The accept loop and graceful shutdown.
//!
//! Shutdown order matters: stop accepting, tell every WebSocket to close with 1001 and let
//! in-flight HTTP requests finish, wait (bounded) for connection tasks to run their
//! cleanup, then close the channel layer.

use std::future::Future;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;

use crate::app::App;
use crate::routes;
use crate::sockets::{ConnectionSlot, SlotIo};

/// The largest request head (request line and headers) the server reads: 16 KiB.
const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// How long shutdown waits for connections to finish.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves HTTP and WebSockets on `listener` until `shutdown` resolves.
pub async fn serve(app: App, listener: TcpListener, shutdown: impl Future<Output = ()>) {
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
        let app_for_conn = app.clone();
        // The slot of the socket this connection may become lives in its I/O object, which
        // the socket's task owns after the upgrade: the slot goes when the socket goes.
        let slot = ConnectionSlot::default();
        let io = SlotIo::new(stream, slot.clone());
        let service =
            service_fn(move |req| routes::handle(app_for_conn.clone(), peer, slot.clone(), req));
        let conn = http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            // A request head over this is answered 431 (hyper's default takes ~400 KiB).
            .max_buf_size(MAX_REQUEST_HEAD)
            .header_read_timeout(Duration::from_secs(30))
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades();
        let stop = app.connections.shutdown.clone();
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
    app.connections.shutdown.cancel();
    if let Some(socketio) = &app.socketio {
        if tokio::time::timeout(DRAIN_TIMEOUT, socketio.close())
            .await
            .is_err()
        {
            tracing::warn!("some Socket.IO connections did not close in time");
        }
    }
    app.connections.tracker.close();
    http.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, http.wait())
        .await
        .is_err()
    {
        tracing::warn!("some HTTP connections did not finish in time");
    }
    if tokio::time::timeout(DRAIN_TIMEOUT, app.connections.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("some WebSocket connections did not finish in time");
    }
    if let Err(e) = app.layer.close().await {
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
