//! The tokio-tungstenite driver: runs the state machine on a real WebSocket.
//!
//! One task reads client frames and runs the consumer; a second task owns the write half
//! and drains the bounded outbound queue, feeding every frame that is ready before one
//! flush, so a burst costs one syscall rather than one per frame.

use std::time::Duration;

use chat_core::Limits;
use futures_util::{SinkExt, Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::connection::{Accepted, ClientEvent, ConnectionConfig, Ending, run};
use crate::consumer::Consumer;
use crate::context::Outbound;

/// How long the server waits for a close handshake or a final flush before dropping the socket.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Frames written before one flush, at most.
const WRITE_BATCH: usize = 64;

/// The tungstenite settings for the protocol's limits. The read buffer is kept small (see
/// `READ_BUFFER`). Writes are buffered until the writer flushes its batch (or 64 KiB
/// gather), so a burst of frames costs one socket write instead of one per frame: on a busy
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

/// Turns the read half into events, ending after the first close or error.
fn events<S>(stream: S) -> impl Stream<Item = ClientEvent> + Unpin + Send
where
    S: Stream<Item = Result<Message, WsError>> + Unpin + Send,
{
    let mut done = false;
    stream.map(to_event).take_while(move |e| {
        let go = !done;
        done = matches!(
            e,
            ClientEvent::Closed(_)
                | ClientEvent::TooLarge
                | ClientEvent::InvalidUtf8
                | ClientEvent::Failed(_)
        );
        std::future::ready(go)
    })
}

/// Feeds `first` and the frames already queued behind it (up to [`WRITE_BATCH`] in all), then
/// flushes: one socket write for the batch. The frames go from the queue straight to the
/// socket's buffer, with no batch of our own kept between bursts. `Ok(true)` when the batch
/// ended with a close frame (the writer is done).
async fn write_batch<S>(
    sink: &mut futures_util::stream::SplitSink<WebSocketStream<S>, Message>,
    first: Outbound,
    outbound: &mut flume::Receiver<Outbound>,
) -> Result<bool, WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut next = Some(first);
    let mut fed = 0;
    while let Some(frame) = next.take() {
        let msg = match frame {
            Outbound::Text(t) => Message::Text(t),
            Outbound::Ping => Message::Ping(Default::default()),
            Outbound::Close(code, reason) => {
                let frame = CloseFrame {
                    code: CloseCode::from(code),
                    reason: reason.into(),
                };
                sink.send(Message::Close(Some(frame))).await?;
                return Ok(true);
            }
        };
        sink.feed(msg).await?;
        fed += 1;
        if fed < WRITE_BATCH {
            next = outbound.try_recv().ok();
        }
    }
    sink.flush().await?;
    Ok(false)
}

/// Drains the outbound queue into the socket. A write that does not finish within the write
/// timeout (the client stopped reading and its TCP window is full) or a kill (the queue
/// overflowed) ends it at once: `stalled` then tells the reader side, so the connection ends,
/// and the task, socket and queue are freed whether or not the client ever reads again.
async fn write_loop<S>(
    mut sink: futures_util::stream::SplitSink<WebSocketStream<S>, Message>,
    mut outbound: flume::Receiver<Outbound>,
    kill: CancellationToken,
    stalled: CancellationToken,
    write_timeout: Duration,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // Made once: a new `cancelled()` per turn would lock the token and register again.
    let killed = kill.cancelled();
    tokio::pin!(killed);
    loop {
        let first = tokio::select! {
            () = &mut killed => {
                // The queue is full of frames the client is not reading: skip them and
                // try to say why, without waiting long.
                let frame = CloseFrame { code: CloseCode::from(chat_core::close::TRY_AGAIN_LATER), reason: "client too slow".into() };
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.send(Message::Close(Some(frame)))).await;
                return;
            }
            next = outbound.recv_async() => next.ok(),
        };
        let Some(frame) = first else {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.close()).await;
            return;
        };
        let written = tokio::select! {
            () = &mut killed => None,
            r = tokio::time::timeout(write_timeout, write_batch(&mut sink, frame, &mut outbound)) => r.ok(),
        };
        match written {
            Some(Ok(false)) => {}
            // Closed as asked, or the transport failed: the reader sees the end.
            Some(Ok(true) | Err(_)) => return,
            None => {
                stalled.cancel();
                return;
            }
        }
    }
}

/// Runs an accepted connection on an already-upgraded stream until it ends.
pub(crate) async fn serve<C, S>(accepted: Accepted<C>, stream: S, config: ConnectionConfig)
where
    C: Consumer,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ws = WebSocketStream::from_raw_socket(
        stream,
        Role::Server,
        Some(websocket_config(&config.limits)),
    )
    .await;
    let (sink, read) = ws.split();
    let Accepted {
        consumer,
        cx,
        outbound,
        closer,
    } = accepted;
    let kill = CancellationToken::new();
    let stalled = CancellationToken::new();
    let writer = tokio::spawn(
        write_loop(
            sink,
            outbound,
            kill.clone(),
            stalled.clone(),
            config.limits.write_timeout,
        )
        .in_current_span(),
    );
    // A writer that gave up on a client that does not read ends the connection too.
    let stall = stalled.clone();
    let stall = Box::pin(
        futures_util::stream::once(async move { stall.cancelled().await })
            .map(|()| ClientEvent::Stalled),
    );
    // The read half ending is a client that left: say so, as `select` would otherwise go on
    // waiting for the other stream.
    let read = events(read).chain(futures_util::stream::once(std::future::ready(
        ClientEvent::Closed(None),
    )));
    let incoming = futures_util::stream::select(read, stall);
    // In the caller's connection span (see `upgrade`): one client's story, start to end.
    tracing::debug!("connection opened");
    let ending: Ending = run(consumer, cx, incoming, &config).await;
    tracing::debug!(code = ?ending.code, by_server = ending.by_server, "connection ended");
    if ending.by_server {
        let code = ending.code.unwrap_or(chat_core::close::NORMAL);
        if ending.overflow
            || closer
                .try_send(Outbound::Close(code, ending.reason))
                .is_err()
        {
            kill.cancel();
        }
    }
    drop(closer);
    let abort = writer.abort_handle();
    if tokio::time::timeout(CLOSE_TIMEOUT * 2, writer)
        .await
        .is_err()
    {
        tracing::debug!("writer did not finish in time; dropping the socket");
        abort.abort();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use chat_core::InMemoryChannelLayer;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::connection::{Started, start};
    use crate::consumer::ConsumerError;
    use crate::context::{Context, RequestInfo};

    /// Sends `burst` frames of 1 KiB as soon as the socket opens; records its disconnect.
    struct Talker {
        burst: usize,
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
            _cx: &mut Context,
            _code: Option<u16>,
        ) -> Result<(), ConsumerError> {
            self.gone.store(true, Ordering::SeqCst);
            Ok(())
        }
    }

    async fn accepted(consumer: Talker, config: &ConnectionConfig) -> Accepted<Talker> {
        let layer = Arc::new(InMemoryChannelLayer::default());
        match start(
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

    #[tokio::test(start_paused = true)]
    async fn a_client_that_stops_reading_is_dropped_after_the_write_timeout() {
        let config = ConnectionConfig {
            limits: Limits {
                write_timeout: Duration::from_secs(10),
                ..Limits::default()
            },
            ..ConnectionConfig::default()
        };
        let gone = Arc::new(AtomicBool::new(false));
        let talker = Talker {
            burst: 200,
            gone: gone.clone(),
        };
        // 4 KiB between the server and a client that never reads: the writer blocks.
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

    #[tokio::test]
    async fn an_invalid_utf8_text_frame_is_closed_with_1007() {
        let config = ConnectionConfig::default();
        let talker = Talker {
            burst: 0,
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
