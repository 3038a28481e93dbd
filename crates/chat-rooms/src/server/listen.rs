//! [`serve`]: an HTTP/1.1 accept loop the way chat-server runs one, for any service that
//! answers with a full body (the chat's, a wrapper around it, a metrics endpoint).
//!
//! What it adds to a bare hyper loop, each for a reason:
//! - every request carries its connection's [`PeerAddr`] and [`ConnectionSlot`] (see
//!   [`sockets`](crate::server::sockets)), so per-address limits and the socket cap work;
//! - request heads over 16 KiB get 431 (hyper's default buffer would take ~400 KiB), and a
//!   head must arrive within 30 s: slow-header clients cannot pin connections;
//! - `TCP_NODELAY`, since chat frames are small and latency-bound;
//! - an accept error (usually out of file descriptors) backs off instead of spinning;
//! - on `stop`, the loop stops accepting and every connection finishes the request in flight,
//!   then closes; the returned tracker says when they are all gone.

use std::convert::Infallible;
use std::time::Duration;

use chat_ws::PeerAddr;
use http::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::Service;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::server::respond::Resp;
use crate::server::sockets::{ConnectionSlot, SlotIo};

/// The largest request head (request line and headers) read: 16 KiB.
pub const MAX_REQUEST_HEAD: usize = 16 * 1024;

/// How long a client may take to send a request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `service` on `listener` until `stop` is cancelled. Returns the (closed) tracker of
/// the connections still finishing: `tracker.wait()` resolves when they are all gone.
pub async fn serve<S>(listener: TcpListener, service: S, stop: CancellationToken) -> TaskTracker
where
    S: Service<Request<Incoming>, Response = Resp, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let connections = TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = stop.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        // The slot of the socket this connection may become lives in its I/O object, which
        // the socket's task owns after the upgrade: the slot goes when the socket goes.
        let slot = ConnectionSlot::default();
        let io = SlotIo::new(stream, slot.clone());
        let service = service.clone();
        let per_request = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(PeerAddr(peer));
            req.extensions_mut().insert(slot.clone());
            service.call(req)
        });
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .max_buf_size(MAX_REQUEST_HEAD)
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .serve_connection(TokioIo::new(io), per_request)
            .with_upgrades();
        let stop = stop.clone();
        connections.spawn(async move {
            let mut conn = std::pin::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                () = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "http connection ended with an error");
            }
        });
    }
    connections.close();
    connections
}
