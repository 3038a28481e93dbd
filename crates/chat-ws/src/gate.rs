//! Polling a rarely-ready future only when it has woken the task.
//!
//! The connection loop waits on several things at once (the client, the layer mailbox, the
//! shutdown signal, the keep-alive and renewal timers) and `select!` polls every one of them
//! on every turn. In a busy room almost every turn is a delivery, and polling the others
//! again (a timer registration each, a lock in the cancellation token) cost a fifth of the
//! server's CPU per delivery at one message per wake-up. A [`Gated`] future registers its
//! own waker with what it waits on; until that waker fires, polling it is one flag check.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

/// The waker a [`Gated`] future's inner future sees: it notes the wake, then wakes the task.
struct Gate {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Gate {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

/// A future polled only on its first poll and after it woke the task.
///
/// Sound for futures that keep their registration until they fire (tokio's timers,
/// cancellation tokens) and that are only ever polled through this wrapper, so the waker
/// they hold is always the gate's. Not for a future that shares its waker slot with other
/// code (a socket also written elsewhere).
pub(crate) struct Gated<F> {
    inner: F,
    gate: Arc<Gate>,
    waker: Waker,
}

impl<F: Future + Unpin> Gated<F> {
    /// Wraps `inner`; its first poll polls it.
    pub(crate) fn new(inner: F) -> Self {
        let gate = Arc::new(Gate {
            woken: AtomicBool::new(true),
            task: AtomicWaker::new(),
        });
        Self {
            inner,
            waker: Waker::from(gate.clone()),
            gate,
        }
    }
}

impl<F: Future + Unpin> Future for Gated<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        // Registered before the flag is read: a wake in between is seen now or wakes the
        // task again.
        this.gate.task.register(cx.waker());
        if !this.gate.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let polled = Pin::new(&mut this.inner).poll(&mut Context::from_waker(&this.waker));
        if polled.is_ready() {
            // A repeating future (the next tick) starts again with a poll.
            this.gate.woken.store(true, Ordering::Release);
        }
        polled
    }
}

/// An interval's ticks as a repeating future, for [`Gated`].
pub(crate) struct Ticks(pub tokio::time::Interval);

impl Future for Ticks {
    type Output = tokio::time::Instant;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<tokio::time::Instant> {
        self.get_mut().0.poll_tick(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use tokio::time::Instant;

    use super::*;

    /// Never ready; counts its polls.
    struct Probe(Arc<AtomicUsize>);

    impl Future for Probe {
        type Output = ();
        fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Poll::Pending
        }
    }

    fn poll_once<F: Future + Unpin>(f: &mut F) -> Poll<F::Output> {
        Pin::new(f).poll(&mut Context::from_waker(Waker::noop()))
    }

    #[test]
    fn the_inner_future_is_polled_first_and_then_only_after_it_woke() {
        let polls = Arc::new(AtomicUsize::new(0));
        let mut gated = Gated::new(Probe(polls.clone()));
        assert!(poll_once(&mut gated).is_pending());
        assert_eq!(polls.load(Ordering::SeqCst), 1, "the first poll polls it");
        for _ in 0..10 {
            assert!(poll_once(&mut gated).is_pending());
        }
        assert_eq!(polls.load(Ordering::SeqCst), 1, "not woken: not polled");
        gated.waker.wake_by_ref();
        assert!(poll_once(&mut gated).is_pending());
        assert_eq!(polls.load(Ordering::SeqCst), 2, "woken: polled again");
    }

    #[tokio::test(start_paused = true)]
    async fn gated_ticks_keep_waking_the_task_on_time() {
        let started = Instant::now();
        let every = Duration::from_secs(5);
        let mut ticks = Gated::new(Ticks(tokio::time::interval_at(started + every, every)));
        for n in 1..=3 {
            let at = (&mut ticks).await;
            assert_eq!(at, started + every * n);
            assert_eq!(Instant::now(), started + every * n);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_gated_cancellation_wakes_its_task() {
        let token = tokio_util::sync::CancellationToken::new();
        let mut cancelled = Gated::new(Box::pin(token.clone().cancelled_owned()));
        assert!(poll_once(&mut cancelled).is_pending());
        let waiter = tokio::spawn(cancelled);
        tokio::task::yield_now().await;
        token.cancel();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap_or_else(|_| panic!("the cancellation woke the waiting task"))
            .unwrap_or_else(|e| panic!("{e}"));
    }
}
