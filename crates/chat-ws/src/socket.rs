//! The tokio-tungstenite driver: runs the state machine on a real WebSocket.
//!
//! One task reads client frames and runs the consumer; a second task owns the write half
//! and drains the bounded outbound queue, feeding every frame that is ready before one
//! flush, so a burst costs one syscall rather than one per frame.

use std::time::Duration;

use chat_core::Limits;
use futures_util::{SinkExt, Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::sync::CancellationToken;

use crate::connection::{Accepted, ClientEvent, ConnectionConfig, Ending, run};
use crate::consumer::Consumer;
use crate::context::Outbound;

/// How long the server waits for a close handshake or a final flush before dropping the socket.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Frames written before one flush, at most.
const WRITE_BATCH: usize = 64;

/// The tungstenite settings for the protocol's limits. The read buffer is kept small (see
/// [`READ_BUFFER`]). Writes are buffered until the writer flushes its batch (or 64 KiB gather), so a burst of frames
/// costs one socket write instead of one per frame: on a busy room, socket writes are most
/// of the server's CPU. The write buffer grows only when a socket has something to send.
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
/// server's memory; a larger frame is simply read in several steps.
const READ_BUFFER: usize = 1024;

/// Bytes gathered before tungstenite writes to the socket without waiting for a flush.
const WRITE_BUFFER: usize = 64 * 1024;

fn to_event(item: Result<Message, WsError>) -> ClientEvent {
    match item {
        Ok(Message::Text(t)) => ClientEvent::Text(t),
        Ok(Message::Binary(b)) => ClientEvent::Binary(b),
        Ok(Message::Close(frame)) => ClientEvent::Closed(frame.map(|f| u16::from(f.code))),
        Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => ClientEvent::Activity,
        Err(WsError::Capacity(_)) => ClientEvent::TooLarge,
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
            ClientEvent::Closed(_) | ClientEvent::TooLarge | ClientEvent::Failed(_)
        );
        std::future::ready(go)
    })
}

async fn write_loop<S>(
    mut sink: futures_util::stream::SplitSink<WebSocketStream<S>, Message>,
    mut outbound: mpsc::Receiver<Outbound>,
    kill: CancellationToken,
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
            next = outbound.recv() => next,
        };
        let Some(mut frame) = first else {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.close()).await;
            return;
        };
        let mut batch = 0;
        loop {
            match frame {
                Outbound::Text(t) => {
                    if sink.feed(Message::Text(t)).await.is_err() {
                        return;
                    }
                }
                Outbound::Ping => {
                    if sink.feed(Message::Ping(Default::default())).await.is_err() {
                        return;
                    }
                }
                Outbound::Close(code, reason) => {
                    let frame = CloseFrame {
                        code: CloseCode::from(code),
                        reason: reason.into(),
                    };
                    let _ =
                        tokio::time::timeout(CLOSE_TIMEOUT, sink.send(Message::Close(Some(frame))))
                            .await;
                    return;
                }
            }
            batch += 1;
            if batch >= WRITE_BATCH {
                break;
            }
            match outbound.try_recv() {
                Ok(f) => frame = f,
                Err(_) => break,
            }
        }
        if sink.flush().await.is_err() {
            return;
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
    let writer = tokio::spawn(write_loop(sink, outbound, kill.clone()));
    let ending: Ending = run(consumer, cx, events(read), &config).await;
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
    if tokio::time::timeout(CLOSE_TIMEOUT * 2, writer)
        .await
        .is_err()
    {
        tracing::debug!("writer did not finish in time; dropping the socket");
    }
}
