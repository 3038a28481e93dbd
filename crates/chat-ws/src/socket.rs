//! The tokio-tungstenite driver: runs the state machine on a real WebSocket.
//!
//! One task reads client frames, runs the consumer and writes what it queued: a burst of
//! deliveries is handled, encoded and flushed in one turn of that task, with one socket write
//! for all its frames.

use std::time::Duration;

use std::sync::Arc;

use chat_core::{Limits, SharedLayer};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::{Sink, SinkExt, Stream};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::connection::{Accepted, ClientEvent, ConnectionConfig, Ending, Started, run, start};
use crate::consumer::{Consumer, ConsumerError};
use crate::context::{Out, Outbound, RequestInfo};
use crate::outbox::Outbox;
use crate::stream::WsStream;
use crate::transport::Transport;

/// How long the server waits for a close handshake or a final flush before dropping the socket.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The tungstenite settings for the protocol's limits. The read buffer is kept small (see
/// `READ_BUFFER`). Writes are buffered until the connection flushes what one turn queued (or
/// 64 KiB gather), so a burst of frames costs one socket write instead of one per frame: on a busy
/// room, socket writes are most of the server's CPU. A socket holds a write buffer only while
/// it has something to send: with `vendor/tungstenite`'s patch the buffer is lent from a
/// per-thread pool and goes back to it once written.
pub fn websocket_config(limits: &Limits) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(limits.max_frame_bytes))
        .max_frame_size(Some(limits.max_frame_bytes))
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(WRITE_BUFFER + limits.max_frame_bytes * 4)
}

/// Bytes read from the socket at a time. Chat frames are small and most sockets are idle, so
/// every idle connection keeping 4 KiB (or tungstenite's default 128 KiB) would dominate the
/// server's memory; a larger frame is simply read in several steps. 512 like the Socket.IO
/// endpoint's: a client's `message` frame with a short body fits in one read.
const READ_BUFFER: usize = 512;

/// Bytes gathered before tungstenite writes to the socket without waiting for a flush.
const WRITE_BUFFER: usize = 64 * 1024;

fn to_event(item: Result<Message, WsError>) -> ClientEvent {
    match item {
        Ok(Message::Text(t)) => ClientEvent::Text(t),
        Ok(Message::Binary(b)) => ClientEvent::Binary(b),
        Ok(Message::Close(frame)) => ClientEvent::Closed(frame.map(|f| u16::from(f.code))),
        Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => ClientEvent::Activity,
        Err(WsError::Capacity(_)) => ClientEvent::TooLarge,
        Err(WsError::Utf8(_)) => ClientEvent::InvalidUtf8,
        Err(e) => ClientEvent::Failed(e.to_string()),
    }
}

/// Whether the read side ends with this event.
fn ends_reading(event: &ClientEvent) -> bool {
    matches!(
        event,
        ClientEvent::Closed(_)
            | ClientEvent::TooLarge
            | ClientEvent::InvalidUtf8
            | ClientEvent::Failed(_)
    )
}

/// A WebSocket that the connection's own task both reads and writes: no split lock, no writer
/// task, and no wake-up of a second task per burst of deliveries.
struct WsTransport<S> {
    ws: WsStream<S>,
    /// The consumer's frames. Closed once writing failed, so that a consumer waiting for room
    /// in the queue sees a gone client instead of waiting forever.
    outbound: Arc<Outbox>,
    write_timeout: Duration,
    /// Frames handed to tungstenite that are not flushed yet.
    unflushed: bool,
    /// Armed while something waits for the client; re-armed whenever it takes a byte.
    stall: Option<Pin<Box<Sleep>>>,
    /// Why writing stopped (the client stopped reading, or the socket broke): the connection's
    /// next event.
    failed: Option<ClientEvent>,
    /// The read side ended.
    read_done: bool,
}

impl<S> WsTransport<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    fn new(ws: WsStream<S>, outbound: Arc<Outbox>, limits: &Limits) -> Self {
        Self {
            ws,
            outbound,
            write_timeout: limits.write_timeout,
            unflushed: false,
            stall: None,
            failed: None,
            read_done: false,
        }
    }

    fn fail(&mut self, why: ClientEvent) {
        self.failed = Some(why);
        self.outbound.close();
        self.stall = None;
    }

    /// Whether everything queued has reached the socket (or writing failed).
    fn drained(&self) -> bool {
        self.failed.is_some() || (!self.unflushed && self.outbound.is_empty())
    }

    /// Writes the server's close frame after what is queued (unless the client is too slow
    /// to take it), waiting at most [`CLOSE_TIMEOUT`] for each; a client that closed first
    /// gets tungstenite's reply flushed. A failed socket is simply dropped.
    async fn finish(mut self, ending: &Ending) {
        if !ending.by_server {
            // Whatever was still queued could not be sent after the client's close (writing it
            // may have failed for that very reason); tungstenite's reply to the close can. The
            // sink's close flushes that reply; `WebSocketStream::close` would try to send a
            // second close frame and fail before flushing.
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, SinkExt::close(&mut self.ws)).await;
            return;
        }
        if self.failed.is_some() {
            return;
        }
        if !ending.overflow {
            let drained = std::future::poll_fn(|cx| {
                self.poll_write(cx);
                if self.drained() {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            });
            if tokio::time::timeout(CLOSE_TIMEOUT, drained).await.is_err() || self.failed.is_some()
            {
                return;
            }
        }
        let frame = CloseFrame {
            code: CloseCode::from(ending.code.unwrap_or(chat_core::close::NORMAL)),
            reason: ending.reason.clone().into(),
        };
        let _ =
            tokio::time::timeout(CLOSE_TIMEOUT, self.ws.send(Message::Close(Some(frame)))).await;
    }
}

impl<S> Transport for WsTransport<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<ClientEvent>> {
        self.poll_write(cx);
        if let Some(why) = &self.failed {
            self.read_done = true;
            return Poll::Ready(Some(why.clone()));
        }
        if self.read_done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.ws).poll_next(cx) {
            Poll::Ready(Some(item)) => {
                let event = to_event(item);
                self.read_done = ends_reading(&event);
                Poll::Ready(Some(event))
            }
            // The read side ending is a client that left.
            Poll::Ready(None) => {
                self.read_done = true;
                Poll::Ready(Some(ClientEvent::Closed(None)))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn poll_write(&mut self, cx: &mut Context<'_>) {
        if self.failed.is_some() {
            return;
        }
        let taken_before = self.ws.get_ref().written();
        let mut blocked = false;
        let mut error = None;
        let mut queue = self.outbound.take();
        loop {
            // A frame leaves the queue only once tungstenite can take it, so a client that
            // does not read fills our bounded queue (and is closed as too slow) instead of an
            // unbounded buffer.
            match Pin::new(&mut self.ws).poll_ready(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => {
                    error = Some(e);
                    break;
                }
                Poll::Pending => {
                    blocked = true;
                    break;
                }
            }
            let Some(frame) = queue.next_frame() else {
                break;
            };
            let msg = match frame {
                Outbound::Text(t) => Message::Text(t),
                Outbound::Ping => Message::Ping(Default::default()),
                Outbound::Close(code, reason) => Message::Close(Some(CloseFrame {
                    code: CloseCode::from(code),
                    reason: reason.into(),
                })),
            };
            if let Err(e) = Pin::new(&mut self.ws).start_send(msg) {
                error = Some(e);
                break;
            }
            self.unflushed = true;
        }
        drop(queue);
        if let Some(e) = error {
            return self.fail(ClientEvent::Failed(e.to_string()));
        }
        if self.unflushed {
            match Pin::new(&mut self.ws).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.unflushed = false,
                Poll::Ready(Err(e)) => return self.fail(ClientEvent::Failed(e.to_string())),
                Poll::Pending => blocked = true,
            }
        }
        if !blocked {
            self.stall = None;
            return;
        }
        let progressed = self.ws.get_ref().written() != taken_before;
        let deadline = Instant::now() + self.write_timeout;
        let stall = match &mut self.stall {
            Some(stall) => {
                if progressed {
                    stall.as_mut().reset(deadline);
                }
                stall
            }
            None => self
                .stall
                .insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        if stall.as_mut().poll(cx).is_ready() {
            self.fail(ClientEvent::Stalled);
        }
    }
}

/// Runs `connect` for a WebSocket, whose frames go to its own [`Outbox`] (the close frame is
/// written by `finish`, not queued).
pub(crate) async fn start_socket<C: Consumer>(
    consumer: C,
    layer: SharedLayer,
    request: Arc<RequestInfo>,
    limits: &Limits,
) -> Result<Started<C, Arc<Outbox>>, ConsumerError> {
    let outbox = Arc::new(Outbox::new(limits.outbound_queue));
    start(
        consumer,
        layer,
        request,
        Out::Outbox(outbox.clone()),
        outbox,
    )
    .await
}

/// Runs an accepted connection on an already-upgraded stream until it ends.
pub(crate) async fn serve<C, S>(
    accepted: Accepted<C, Arc<Outbox>>,
    stream: S,
    config: ConnectionConfig,
) where
    C: Consumer,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ws = WsStream::server(stream, websocket_config(&config.limits));
    let Accepted {
        consumer,
        cx,
        outbound,
    } = accepted;
    let mut transport = WsTransport::new(ws, outbound, &config.limits);
    // In the caller's connection span (see `upgrade`): one client's story, start to end.
    tracing::debug!("connection opened");
    let ending: Ending = run(consumer, cx, &mut transport, &config).await;
    tracing::debug!(code = ?ending.code, by_server = ending.by_server, "connection ended");
    transport.finish(&ending).await;
}

#[cfg(test)]
mod tests;
