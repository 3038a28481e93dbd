//! Request bodies with a read deadline (`--body-timeout`).
//!
//! hyper bounds the time a client takes to send a request head (`header_read_timeout`) but
//! not its body: a client that announces `Content-Length: 1000` and then sends nothing, or a
//! byte now and then, would hold its connection and the handler's task for as long as it
//! likes. Every body our handlers read is a [`TimedBody`], which fails once the deadline has
//! passed; the handler answers 408, and hyper closes the connection since the body was not
//! read to its end.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

/// Why a [`TimedBody`] could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The whole body did not arrive within the timeout.
    #[error("the request body did not arrive within {} s", .0.as_secs())]
    TimedOut(Duration),
    /// The connection failed (the client went away, or sent a malformed body).
    #[error("the request body could not be read: {0}")]
    Read(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// A request body that must arrive whole within a timeout of the first read.
pub struct TimedBody<B> {
    /// In a mutex only to make the body `Sync` (handlers hold `&Request` across awaits, and
    /// axum's body is not `Sync`): reads go through `get_mut`, which never locks.
    inner: std::sync::Mutex<B>,
    timeout: Duration,
    /// Armed by the first read, not when the request arrives: the time a handler spends
    /// before it reads (authentication, a database query) is not the client's to lose.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<B> TimedBody<B> {
    /// `body`, which must arrive within `timeout` once reading starts.
    pub fn new(body: B, timeout: Duration) -> Self {
        Self {
            inner: std::sync::Mutex::new(body),
            timeout,
            deadline: None,
        }
    }
}

impl<B> Body for TimedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        let timeout = this.timeout;
        let deadline = this
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        let inner = this.inner.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Poll::Ready(frame) = Pin::new(inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(|e| BodyError::Read(e.into()))));
        }
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(BodyError::TimedOut(timeout)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.lock().is_ok_and(|inner| inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .lock()
            .map_or_else(|_| SizeHint::default(), |inner| inner.size_hint())
    }
}
