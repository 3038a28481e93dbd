//! A tungstenite WebSocket on an async socket, for a connection whose one task both reads and
//! writes it.
//!
//! Why not tokio-tungstenite's `WebSocketStream`: it is made for a socket split between a
//! reading and a writing task, so every read, flush and readiness check registers the
//! caller's waker in two shared, separately allocated proxies (four `AtomicWaker` slots), and
//! the socket wakes the proxy, which wakes the task. On a busy server those two proxies were
//! the largest single cache miss of a delivery: each wake-up of each connection touched them
//! first, after a thousand other connections had run. Here the socket sees one waker of the
//! connection's own, which wakes the task directly.
//!
//! The socket's waker is the connection's own [`SocketWake`], made once: it notes that the
//! socket woke the task, so a turn that something else woke (a delivery, almost every turn
//! in a busy room) does not try to read the client again. A read that finds nothing costs
//! tungstenite's frame parser, a readiness check under the socket's waiter lock, and the
//! buffers' cold cache lines, all for nothing.
//!
//! The sink and stream semantics are tokio-tungstenite's (`WouldBlock` is `Pending`, a frame
//! that hit a full socket stays queued in tungstenite and the next `poll_ready` flushes it),
//! so its documentation describes this type too.

use std::io::{ErrorKind, Read, Write};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use parking_lot::Mutex;

use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, WebSocket};

/// The socket as tungstenite's blocking `Read` and `Write` see it: a poll with the
/// connection's [`SocketWake`], `Pending` reported as `WouldBlock`. It also counts the bytes the client took: any
/// of them is progress for the write timeout (see [`crate::socket`]).
pub(crate) struct TaskIo<S> {
    inner: S,
    /// The [`SocketWake`], for every read and write: it wakes whichever task last polled the
    /// [`WsStream`] (tungstenite calls `read` and `write` only from inside such a poll).
    waker: Waker,
    written: u64,
}

impl<S> TaskIo<S> {
    /// Bytes the other side has taken so far.
    pub(crate) fn written(&self) -> u64 {
        self.written
    }

    fn poll_with<R>(
        &mut self,
        f: impl FnOnce(Pin<&mut S>, &mut Context<'_>) -> Poll<std::io::Result<R>>,
    ) -> std::io::Result<R>
    where
        S: Unpin,
    {
        let mut cx = Context::from_waker(&self.waker);
        match f(Pin::new(&mut self.inner), &mut cx) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(ErrorKind::WouldBlock.into()),
        }
    }
}

impl<S: AsyncRead + Unpin> Read for TaskIo<S> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut buf = ReadBuf::new(buf);
        self.poll_with(|s, cx| s.poll_read(cx, &mut buf))?;
        Ok(buf.filled().len())
    }
}

impl<S: AsyncWrite + Unpin> Write for TaskIo<S> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.poll_with(|s, cx| s.poll_write(cx, buf))?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.poll_with(|s, cx| s.poll_flush(cx))
    }
}

/// What the socket wakes: the task that polls the [`WsStream`], after noting that the socket
/// woke it.
///
/// Why a flag and not only the task's waker: tokio wakes the task for a readable socket and
/// for a delivery alike, and only this says which. The task's waker lives under a lock that
/// only a wake and a changed task take; the task keeps its own copy to compare with.
struct SocketWake {
    /// The socket woke the task since the last read that found nothing: read again. Also set
    /// when the socket became writable again, which costs one read that finds nothing, and
    /// lets a read retry the flush of a reply to a ping that the client did not take in time.
    woken: AtomicBool,
    task: Mutex<Waker>,
}

impl Wake for SocketWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.lock().wake_by_ref();
    }
}

/// A server-side WebSocket polled by one task: a [`Stream`] of the client's messages and a
/// [`Sink`] for the server's.
pub(crate) struct WsStream<S> {
    ws: WebSocket<TaskIo<S>>,
    wake: Arc<SocketWake>,
    /// The waker of the task that polls this, as [`SocketWake`] holds it.
    task: Waker,
    /// The read side returned its end (or an error): it is fused.
    ended: bool,
    /// False after a frame was queued behind a full socket: `poll_ready` flushes first.
    ready: bool,
    /// The close frame is queued: closing only flushes.
    closing: bool,
}

/// `WouldBlock` is a poll that must wait; anything else is the result.
fn cvt<T>(r: Result<T, WsError>) -> Poll<Result<T, WsError>> {
    match r {
        Err(WsError::Io(e)) if e.kind() == ErrorKind::WouldBlock => Poll::Pending,
        other => Poll::Ready(other),
    }
}

impl<S> WsStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// The server's side of a socket whose upgrade was already answered.
    pub(crate) fn server(inner: S, config: WebSocketConfig) -> Self {
        let wake = Arc::new(SocketWake {
            // The first poll reads.
            woken: AtomicBool::new(true),
            task: Mutex::new(Waker::noop().clone()),
        });
        let io = TaskIo {
            inner,
            waker: Waker::from(wake.clone()),
            written: 0,
        };
        Self {
            ws: WebSocket::from_raw_socket(io, Role::Server, Some(config)),
            wake,
            task: Waker::noop().clone(),
            ended: false,
            ready: true,
            closing: false,
        }
    }

    /// The socket.
    pub(crate) fn get_ref(&self) -> &TaskIo<S> {
        self.ws.get_ref()
    }

    /// Runs `f` with the socket waking `cx`'s task. Cloning a waker only when the task's
    /// changed keeps a turn off the task's reference count and the lock.
    fn with_waker<R>(
        &mut self,
        cx: &Context<'_>,
        f: impl FnOnce(&mut WebSocket<TaskIo<S>>) -> R,
    ) -> R {
        self.register(cx);
        f(&mut self.ws)
    }

    fn register(&mut self, cx: &Context<'_>) {
        if !self.task.will_wake(cx.waker()) {
            self.task = cx.waker().clone();
            *self.wake.task.lock() = self.task.clone();
        }
    }
}

impl<S> Stream for WsStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    type Item = Result<Message, WsError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        self.register(cx);
        // A read that found nothing registered the socket's wake: until it fires, another read
        // would find nothing too (tungstenite keeps no whole frame back once a read blocks).
        if !self.wake.woken.load(Ordering::Acquire) {
            return Poll::Pending;
        }
        // Cleared before the read, by a read-modify-write: a wake from here on is never
        // overwritten, and it comes after the data the read may miss.
        self.wake.woken.swap(false, Ordering::AcqRel);
        let read = cvt(self.ws.read());
        if read.is_ready() {
            // More frames may wait in tungstenite's buffer, with no wake to come for them.
            self.wake.woken.store(true, Ordering::Release);
        }
        match std::task::ready!(read) {
            Ok(msg) => Poll::Ready(Some(Ok(msg))),
            Err(e) => {
                self.ended = true;
                if matches!(e, WsError::AlreadyClosed | WsError::ConnectionClosed) {
                    Poll::Ready(None)
                } else {
                    Poll::Ready(Some(Err(e)))
                }
            }
        }
    }
}

impl<S> Sink<Message> for WsStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    type Error = WsError;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        if self.ready {
            // The frame that follows may meet a full socket: it must wake this task.
            self.with_waker(cx, |_| ());
            return Poll::Ready(Ok(()));
        }
        let flushed = std::task::ready!(cvt(self.with_waker(cx, |ws| ws.flush())));
        self.ready = true;
        Poll::Ready(flushed)
    }

    fn start_send(mut self: Pin<&mut Self>, item: Message) -> Result<(), WsError> {
        // tungstenite writes to the socket only once its buffer is past the configured size,
        // from inside this call, with the waker `poll_ready` just set.
        match self.ws.write(item) {
            Ok(()) => Ok(()),
            // Queued, but the socket is full: `poll_ready` flushes before the next frame.
            Err(WsError::Io(e)) if e.kind() == ErrorKind::WouldBlock => {
                self.ready = false;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        let flushed = std::task::ready!(cvt(self.with_waker(cx, |ws| ws.flush())));
        self.ready = true;
        Poll::Ready(match flushed {
            // The close handshake just completed: everything was flushed.
            Err(WsError::ConnectionClosed) => Ok(()),
            other => other,
        })
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), WsError>> {
        self.ready = true;
        let closing = self.closing;
        let res = self.with_waker(cx, |ws| if closing { ws.flush() } else { ws.close(None) });
        match res {
            Ok(()) | Err(WsError::ConnectionClosed) => Poll::Ready(Ok(())),
            Err(WsError::Io(e)) if e.kind() == ErrorKind::WouldBlock => {
                self.closing = true;
                Poll::Pending
            }
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn server(io: tokio::io::DuplexStream) -> WsStream<tokio::io::DuplexStream> {
        WsStream::server(io, WebSocketConfig::default())
    }

    #[tokio::test]
    async fn reads_a_masked_client_frame_and_writes_an_unmasked_one() {
        let (server_io, mut client) = tokio::io::duplex(1024);
        let mut ws = server(server_io);
        // "hi", masked with key 1,2,3,4.
        let frame = [0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2];
        client.write_all(&frame).await.unwrap();
        let got = ws.next().await.unwrap().unwrap();
        assert_eq!(got, Message::text("hi"));
        ws.send(Message::text("yo")).await.unwrap();
        let mut out = [0u8; 4];
        client.read_exact(&mut out).await.unwrap();
        assert_eq!(out, [0x81, 2, b'y', b'o']);
        assert_eq!(ws.get_ref().written(), 4);
    }

    /// A frame queued behind a full socket is not lost: the next `poll_ready` waits for the
    /// client to read, then writes it.
    #[tokio::test]
    async fn a_frame_queued_behind_a_full_socket_is_written_once_the_client_reads() {
        let (server_io, mut client) = tokio::io::duplex(64);
        let mut ws = WsStream::server(server_io, WebSocketConfig::default().write_buffer_size(0));
        let body = "x".repeat(100);
        let writer = async {
            for _ in 0..3 {
                ws.send(Message::text(body.clone())).await.unwrap();
            }
            ws
        };
        let reader = async {
            let mut got = vec![0u8; 3 * (2 + 100)];
            client.read_exact(&mut got).await.unwrap();
            got
        };
        let (ws, got) = tokio::join!(writer, reader);
        assert_eq!(ws.get_ref().written(), got.len() as u64);
        assert!(
            got.chunks(102)
                .all(|f| f[..2] == [0x81, 100] && f[2..] == *body.as_bytes())
        );
    }

    /// A socket that counts the reads tried on it.
    struct CountedReads {
        inner: tokio::io::DuplexStream,
        reads: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl AsyncRead for CountedReads {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for CountedReads {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            Pin::new(&mut self.inner).poll_write(cx, buf)
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.inner).poll_flush(cx)
        }

        fn poll_shutdown(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<std::io::Result<()>> {
            Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    /// Polls made for other reasons (a delivery woke the task) do not read a socket that found
    /// nothing, until the socket wakes the task; then the frame is read, and nothing is lost.
    #[tokio::test]
    async fn the_socket_is_read_again_only_after_it_woke_the_task() {
        let (server_io, mut client) = tokio::io::duplex(1024);
        let reads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = CountedReads {
            inner: server_io,
            reads: reads.clone(),
        };
        let mut ws = WsStream::server(counted, WebSocketConfig::default());
        let mut cx = Context::from_waker(Waker::noop());
        assert!(Pin::new(&mut ws).poll_next(&mut cx).is_pending());
        let tried = reads.load(Ordering::SeqCst);
        assert!(tried >= 1, "the first poll reads");
        for _ in 0..10 {
            assert!(Pin::new(&mut ws).poll_next(&mut cx).is_pending());
        }
        assert_eq!(reads.load(Ordering::SeqCst), tried, "not woken: not read");
        // Two frames at once: the second is read from tungstenite's buffer, with no new wake.
        let frame = [0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2];
        client.write_all(&[frame, frame].concat()).await.unwrap();
        for _ in 0..2 {
            let got = tokio::time::timeout(std::time::Duration::from_secs(5), ws.next())
                .await
                .unwrap_or_else(|_| panic!("the socket's wake lets the frame be read"));
            assert_eq!(got.unwrap().unwrap(), Message::text("hi"));
        }
        assert!(reads.load(Ordering::SeqCst) > tried);
    }

    #[tokio::test]
    async fn the_read_side_ends_after_the_client_goes() {
        let (server_io, client) = tokio::io::duplex(64);
        let mut ws = server(server_io);
        drop(client);
        assert!(matches!(ws.next().await, Some(Err(_)) | None));
        assert!(ws.next().await.is_none(), "fused");
    }
}
