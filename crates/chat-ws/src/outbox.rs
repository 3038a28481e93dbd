//! A WebSocket connection's outbound queue: the frames its consumer sent that its own task
//! has not written yet.
//!
//! Why not a channel (flume, as the bridged transports still use): the consumer and the
//! writer are the same task here, so nothing needs waking when a frame is queued, and a
//! channel's ring walks its whole bounded buffer, so on a busy server every frame queued was
//! a store into a cache line no one had touched since the ring last came round (`perf` put
//! most of `flume::Sender::try_send` on the lock release waiting for that store). This queue
//! starts its ring over whenever the writer empties it, so a socket that is written out every
//! turn reuses the same few lines, and the writer takes a turn's frames under one lock.

use std::collections::VecDeque;
use std::task::{Poll, Waker};

use parking_lot::{Mutex, MutexGuard};

use crate::context::{Outbound, SinkError};

/// A bounded queue of frames from a consumer to the task that writes them.
pub(crate) struct Outbox {
    frames: Mutex<Frames>,
    capacity: usize,
}

struct Frames {
    queue: VecDeque<Outbound>,
    /// The writer is gone (the client stopped reading, or the socket broke): nothing more is
    /// taken, and a consumer waiting for room learns it.
    closed: bool,
    /// A consumer waiting for room ([`Outbox::push_wait`]).
    room: Option<Waker>,
}

impl Outbox {
    /// An empty queue holding at most `capacity` frames (at least one).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            frames: Mutex::new(Frames {
                queue: VecDeque::new(),
                closed: false,
                room: None,
            }),
            capacity: capacity.max(1),
        }
    }

    /// Queues `frame` unless the queue is full or its writer is gone. Wakes no one: the writer
    /// is the consumer's own task, which writes after every callback and while one waits.
    pub(crate) fn push(&self, frame: Outbound) -> Result<(), SinkError> {
        let mut frames = self.frames.lock();
        if frames.closed {
            return Err(SinkError::Closed);
        }
        if frames.queue.len() >= self.capacity {
            return Err(SinkError::Full);
        }
        frames.queue.push_back(frame);
        Ok(())
    }

    /// Queues `frames` in order under one lock, as many as there is room for: the rest are
    /// dropped, and the error says the client is too slow.
    pub(crate) fn push_many(&self, frames: Vec<Outbound>) -> Result<(), SinkError> {
        let mut queued = self.frames.lock();
        if queued.closed {
            return Err(SinkError::Closed);
        }
        let room = self.capacity.saturating_sub(queued.queue.len());
        let all_fit = frames.len() <= room;
        queued.queue.extend(frames.into_iter().take(room));
        if all_fit {
            Ok(())
        } else {
            Err(SinkError::Full)
        }
    }

    /// Queues `frame`, waiting for room; fails only once the writer is gone.
    pub(crate) async fn push_wait(&self, frame: Outbound) -> Result<(), SinkError> {
        let mut frame = Some(frame);
        std::future::poll_fn(|cx| {
            let mut frames = self.frames.lock();
            if frames.closed {
                return Poll::Ready(Err(SinkError::Closed));
            }
            if frames.queue.len() >= self.capacity {
                frames.room = Some(cx.waker().clone());
                return Poll::Pending;
            }
            if let Some(frame) = frame.take() {
                frames.queue.push_back(frame);
            }
            Poll::Ready(Ok(()))
        })
        .await
    }

    /// The queued frames, for the writer to take from the front while the socket takes them.
    pub(crate) fn take(&self) -> Taken<'_> {
        Taken {
            frames: self.frames.lock(),
            took: false,
        }
    }

    /// Whether nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.frames.lock().queue.is_empty()
    }

    /// The writer is gone: refuses every frame from now on, and wakes a consumer waiting for
    /// room so it learns it.
    pub(crate) fn close(&self) {
        let mut frames = self.frames.lock();
        frames.closed = true;
        frames.queue.clear();
        if let Some(waker) = frames.room.take() {
            drop(frames);
            waker.wake();
        }
    }
}

/// The writer's hold on the queue: frames leave from the front. Dropping it starts an emptied
/// ring over at its first slot and wakes a consumer waiting for room.
pub(crate) struct Taken<'a> {
    frames: MutexGuard<'a, Frames>,
    took: bool,
}

impl Taken<'_> {
    /// The next frame, if any.
    pub(crate) fn next_frame(&mut self) -> Option<Outbound> {
        let frame = self.frames.queue.pop_front();
        self.took |= frame.is_some();
        frame
    }
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        if self.frames.queue.is_empty() {
            // On an empty ring this only moves its head back to the first slot.
            self.frames.queue.clear();
        }
        if self.took
            && let Some(waker) = self.frames.room.take()
        {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;

    use super::*;

    fn text(s: &str) -> Outbound {
        Outbound::Text(s.into())
    }

    #[test]
    fn refuses_past_capacity_and_after_close() {
        let outbox = Outbox::new(2);
        assert_eq!(outbox.push(text("a")), Ok(()));
        assert_eq!(outbox.push(text("b")), Ok(()));
        assert_eq!(outbox.push(text("c")), Err(SinkError::Full));
        assert_eq!(outbox.take().next_frame(), Some(text("a")));
        assert_eq!(outbox.push(text("c")), Ok(()));
        outbox.close();
        assert!(outbox.is_empty());
        assert_eq!(outbox.push(text("d")), Err(SinkError::Closed));
    }

    #[test]
    fn a_batch_is_queued_as_far_as_it_fits() {
        let outbox = Outbox::new(3);
        outbox.push(text("a")).unwrap();
        assert_eq!(outbox.push_many(vec![text("b"), text("c")]), Ok(()));
        assert_eq!(
            outbox.push_many(vec![text("d")]),
            Err(SinkError::Full),
            "a batch that does not fit says so"
        );
        let mut taken = outbox.take();
        let got: Vec<_> = std::iter::from_fn(|| taken.next_frame()).collect();
        assert_eq!(got, vec![text("a"), text("b"), text("c")]);
        drop(taken);
        assert_eq!(
            outbox.push_many(vec![text("e"), text("f"), text("g"), text("h")]),
            Err(SinkError::Full)
        );
        let mut taken = outbox.take();
        let got: Vec<_> = std::iter::from_fn(|| taken.next_frame()).collect();
        assert_eq!(
            got,
            vec![text("e"), text("f"), text("g")],
            "what fits, in order"
        );
        drop(taken);
        outbox.close();
        assert_eq!(outbox.push_many(vec![text("i")]), Err(SinkError::Closed));
    }

    #[test]
    fn frames_leave_in_order_and_an_emptied_ring_starts_over() {
        let outbox = Outbox::new(8);
        let first_slot = || outbox.frames.lock().queue.as_slices().0.as_ptr();
        outbox.push(text("a")).unwrap();
        let start = first_slot();
        outbox.push(text("b")).unwrap();
        let mut taken = outbox.take();
        assert_eq!(taken.next_frame(), Some(text("a")));
        assert_eq!(taken.next_frame(), Some(text("b")));
        assert_eq!(taken.next_frame(), None);
        drop(taken);
        outbox.push(text("c")).unwrap();
        assert_eq!(
            first_slot(),
            start,
            "the next frame goes to the first slot again"
        );
    }

    /// Counts its wakes.
    #[derive(Default)]
    struct Woken(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Woken {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    fn woken(w: &std::sync::Arc<Woken>) -> usize {
        w.0.load(std::sync::atomic::Ordering::SeqCst)
    }

    #[test]
    fn a_wait_for_room_ends_when_the_writer_takes_a_frame_or_is_gone() {
        let outbox = Outbox::new(1);
        let flag = std::sync::Arc::new(Woken::default());
        let waker = Waker::from(flag.clone());
        let mut cx = std::task::Context::from_waker(&waker);

        outbox.push(text("a")).unwrap();
        let mut wait = Box::pin(outbox.push_wait(text("b")));
        assert!(wait.as_mut().poll(&mut cx).is_pending(), "full: it waits");
        assert_eq!(outbox.take().next_frame(), Some(text("a")));
        assert_eq!(woken(&flag), 1, "taking a frame wakes it");
        assert_eq!(wait.as_mut().poll(&mut cx), Poll::Ready(Ok(())));
        drop(wait);
        assert_eq!(outbox.take().next_frame(), Some(text("b")));

        outbox.push(text("c")).unwrap();
        let mut wait = Box::pin(outbox.push_wait(text("d")));
        assert!(wait.as_mut().poll(&mut cx).is_pending());
        outbox.close();
        assert_eq!(woken(&flag), 2, "closing wakes it");
        assert_eq!(
            wait.as_mut().poll(&mut cx),
            Poll::Ready(Err(SinkError::Closed))
        );
    }
}
