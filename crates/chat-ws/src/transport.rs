//! What the connection loop needs from a transport: the client's next event, and a chance to
//! move the consumer's queued frames to the client while the loop waits on anything else.
//!
//! A WebSocket writes from the connection's own task ([`crate::socket`]): every frame a burst
//! queues is written in the same turn that queued it, with no second task to wake per
//! delivery. A bridged transport (Socket.IO, long-poll, the test communicator) writes
//! elsewhere and only feeds events.

use std::future::Future;
use std::task::{Context, Poll};

use futures_util::{Stream, StreamExt};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::connection::ClientEvent;

/// A connection's transport, as the connection loop drives it.
pub(crate) trait Transport: Send {
    /// The client's next event; `None` once it is gone. Also writes what is queued.
    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<ClientEvent>>;

    /// Writes what the consumer has queued, as far as the client takes it, registering for a
    /// wake-up when it cannot take more. A failure (the client stopped reading for the write
    /// timeout, the socket broke) is kept and reported by the next [`Transport::poll_event`].
    fn poll_write(&mut self, cx: &mut Context<'_>);
}

/// Runs `work` (a consumer callback) while writing what it queues as it goes: a callback that
/// waits (on the store, or for room in a full outbound queue) does not hold back the frames it
/// has already queued, and a burst's frames leave in the poll that queued them.
pub(crate) async fn writing_while<T, F>(transport: &mut T, work: F) -> F::Output
where
    T: Transport + ?Sized,
    F: Future,
{
    let mut work = std::pin::pin!(work);
    std::future::poll_fn(move |cx| {
        let done = work.as_mut().poll(cx);
        transport.poll_write(cx);
        done
    })
    .await
}

/// A transport that only feeds events: its frames leave through a queue or sink that
/// something else drains.
pub(crate) struct EventsOnly<S>(pub S);

impl<S> Transport for EventsOnly<S>
where
    S: Stream<Item = ClientEvent> + Unpin + Send,
{
    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<ClientEvent>> {
        self.0.poll_next_unpin(cx)
    }

    fn poll_write(&mut self, _cx: &mut Context<'_>) {}
}

/// Text frames read at once, at most: a client sending faster than its frames are handled
/// gets them handled together (a burst of messages stored in one commit), and the rest of its
/// socket waits for the next turn.
const READ_AHEAD: usize = 32;

/// The client frames to hand to the consumer in one callback.
pub(crate) enum Texts {
    One(Utf8Bytes),
    Many(Vec<Utf8Bytes>),
}

/// `first`, with the text frames already read behind it (up to [`READ_AHEAD`]), without
/// waiting for any: a client sending one frame at a time gets them one at a time. The first
/// other event met is held for the next turn.
pub(crate) async fn read_ahead<T: Transport + ?Sized>(
    transport: &mut T,
    held: &mut Option<ClientEvent>,
    first: Utf8Bytes,
) -> Texts {
    let mut first = Some(first);
    let mut many: Vec<Utf8Bytes> = Vec::new();
    std::future::poll_fn(|task| {
        while many.len() < READ_AHEAD {
            match transport.poll_event(task) {
                Poll::Ready(Some(ClientEvent::Text(text))) => {
                    if let Some(first) = first.take() {
                        many.push(first);
                    }
                    many.push(text);
                }
                Poll::Ready(other) => {
                    *held = Some(other.unwrap_or(ClientEvent::Closed(None)));
                    break;
                }
                Poll::Pending => break,
            }
        }
        Poll::Ready(())
    })
    .await;
    match first {
        Some(first) => Texts::One(first),
        None => Texts::Many(many),
    }
}

/// The held event, or else the transport's next.
pub(crate) fn next_event_or_held<'a, T: Transport + ?Sized>(
    held: &'a mut Option<ClientEvent>,
    transport: &'a mut T,
) -> impl Future<Output = Option<ClientEvent>> + 'a {
    std::future::poll_fn(move |task| match held.take() {
        Some(event) => Poll::Ready(Some(event)),
        None => transport.poll_event(task),
    })
}
