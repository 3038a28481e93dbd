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
/// room, socket writes are most of the server's CPU. The write buffer grows only when a
/// socket has something to send, and (with `vendor/tungstenite`'s patch) shrinks back once it
/// is written.
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
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use chat_core::InMemoryChannelLayer;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::context::Context;

    /// Sends `burst` frames of 1 KiB as soon as the socket opens; records its disconnect,
    /// saying goodbye there when `farewell`.
    struct Talker {
        burst: usize,
        farewell: bool,
        gone: Arc<AtomicBool>,
    }

    impl Consumer for Talker {
        async fn opened(&mut self, cx: &mut Context) -> Result<(), ConsumerError> {
            for _ in 0..self.burst {
                cx.send_text("x".repeat(1024));
            }
            Ok(())
        }
        async fn disconnect(
            &mut self,
            cx: &mut Context,
            _code: Option<u16>,
        ) -> Result<(), ConsumerError> {
            if self.farewell {
                cx.send_text("bye");
            }
            self.gone.store(true, Ordering::SeqCst);
            Ok(())
        }
    }

    async fn accepted(
        consumer: Talker,
        config: &ConnectionConfig,
    ) -> Accepted<Talker, Arc<Outbox>> {
        let layer = Arc::new(InMemoryChannelLayer::default());
        match start_socket(
            consumer,
            layer,
            Arc::new(RequestInfo::default()),
            &config.limits,
        )
        .await
        {
            Ok(Started::Accepted(a)) => a,
            _ => panic!("the consumer accepts"),
        }
    }

    /// A connection with a 10 s write timeout whose consumer sends 200 frames of 1 KiB at
    /// once, and the flag its disconnect sets.
    fn talking(limits: Limits) -> (ConnectionConfig, Talker, Arc<AtomicBool>) {
        let config = ConnectionConfig {
            limits: Limits {
                write_timeout: Duration::from_secs(10),
                ..limits
            },
            ..ConnectionConfig::default()
        };
        let gone = Arc::new(AtomicBool::new(false));
        let talker = Talker {
            burst: 200,
            farewell: false,
            gone: gone.clone(),
        };
        (config, talker, gone)
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_stops_reading_is_dropped_after_the_write_timeout() {
        let (config, talker, gone) = talking(Limits::default());
        // 4 KiB between the server and a client that never reads: writing blocks.
        let (server_io, _client_io) = tokio::io::duplex(4 * 1024);
        let accepted = accepted(talker, &config).await;
        let started = tokio::time::Instant::now();
        let served =
            tokio::time::timeout(Duration::from_secs(60), serve(accepted, server_io, config)).await;
        assert!(served.is_ok(), "the connection ended by itself");
        assert!(gone.load(Ordering::SeqCst), "disconnect ran");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(10) && took < Duration::from_secs(30),
            "ended after the write timeout, not before: {took:?}"
        );
    }

    /// The write timeout is about a client that takes nothing: one that reads slowly, but
    /// keeps reading, gets everything however long it takes.
    #[tokio::test(start_paused = true)]
    async fn a_slow_client_that_keeps_reading_is_not_dropped() {
        // This client sends nothing: not the idle timeout's business here.
        let (config, talker, gone) = talking(Limits {
            idle_timeout: Duration::from_secs(3600),
            ping_interval: Duration::from_secs(3600),
            ..Limits::default()
        });
        let (server_io, mut client) = tokio::io::duplex(4 * 1024);
        let accepted = accepted(talker, &config).await;
        let server = tokio::spawn(serve(accepted, server_io, config));
        // 200 text frames of 1 KiB: a 4-byte header each. Read 1 KiB every 2 s: 400 s in
        // all, forty times the write timeout.
        let expected = 200 * (4 + 1024);
        let mut got = 0;
        let mut buf = [0u8; 1024];
        let started = tokio::time::Instant::now();
        while got < expected {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let n = client
                .read(&mut buf)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(n > 0, "the server closed after {got} bytes");
            got += n;
        }
        assert!(started.elapsed() > Duration::from_secs(300));
        assert!(!gone.load(Ordering::SeqCst), "still connected");
        drop(client);
        let _ = tokio::time::timeout(Duration::from_secs(60), server).await;
        assert!(
            gone.load(Ordering::SeqCst),
            "disconnect ran once the client left"
        );
    }

    /// A client that closes gets the reply to its close frame, though the consumer's
    /// `disconnect` still sends (which cannot be written after the client's close).
    #[tokio::test(start_paused = true)]
    async fn a_client_close_is_answered_though_disconnect_sends() {
        let (config, mut talker, gone) = talking(Limits::default());
        talker.burst = 0;
        talker.farewell = true;
        let (server_io, mut client) = tokio::io::duplex(4 * 1024);
        let accepted = accepted(talker, &config).await;
        let server = tokio::spawn(serve(accepted, server_io, config));
        // A masked close frame with code 1000.
        client
            .write_all(&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut got = Vec::new();
        client
            .read_to_end(&mut got)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            got.get(got.len().saturating_sub(4)..),
            Some(&[0x88, 0x02, 0x03, 0xe8][..]),
            "the stream ends with the reply to the close: {got:?}"
        );
        let _ = tokio::time::timeout(Duration::from_secs(60), server).await;
        assert!(gone.load(Ordering::SeqCst), "disconnect ran");
    }

    #[tokio::test]
    async fn an_invalid_utf8_text_frame_is_closed_with_1007() {
        let config = ConnectionConfig::default();
        let talker = Talker {
            burst: 0,
            farewell: false,
            gone: Arc::default(),
        };
        let (server_io, mut client) = tokio::io::duplex(64 * 1024);
        let accepted = accepted(talker, &config).await;
        let server = tokio::spawn(serve(accepted, server_io, config));
        // A masked text frame (mask 0) whose payload is not UTF-8.
        client
            .write_all(&[0x81, 0x82, 0, 0, 0, 0, 0xff, 0xfe])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut head = [0u8; 4];
        client
            .read_exact(&mut head)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(head[0], 0x88, "a close frame");
        assert_eq!(u16::from_be_bytes([head[2], head[3]]), 1007);
        drop(client);
        let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
    }
}
