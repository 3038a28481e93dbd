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
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

/// What the gated futures of one task share: which of them woke, and the task to wake.
///
/// Why shared: a turn polls every gated future, and each check touches this. One word and one
/// waker slot for all of a connection's gates is one cache line per turn where a gate each
/// was three, and in a busy room a turn's cost is mostly the cold lines it touches.
#[derive(Default)]
struct Shared {
    woken: AtomicU32,
    task: AtomicWaker,
}

/// The waker one gated future's inner future sees: it sets that future's bit, then wakes the
/// task.
struct Bit {
    shared: Arc<Shared>,
    mask: u32,
}

impl Wake for Bit {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.shared.woken.fetch_or(self.mask, Ordering::Release);
        self.shared.task.wake();
    }
}

/// Makes the gated futures of one task (up to 32).
#[derive(Default)]
pub(crate) struct Gates {
    shared: Arc<Shared>,
    used: u32,
}

impl Gates {
    /// Wraps `inner`; its first poll polls it.
    ///
    /// # Panics
    /// Past 32 gated futures on one `Gates`: a programming error, not an input.
    pub(crate) fn gate<F: Future + Unpin>(&mut self, inner: F) -> Gated<F> {
        assert!(
            self.used < u32::BITS,
            "at most 32 gated futures share their gates"
        );
        let mask = 1 << self.used;
        self.used += 1;
        self.shared.woken.fetch_or(mask, Ordering::Release);
        Gated {
            inner,
            waker: Waker::from(Arc::new(Bit {
                shared: self.shared.clone(),
                mask,
            })),
            shared: self.shared.clone(),
            mask,
        }
    }
}

/// A future polled only on its first poll and after it woke the task.
///
/// Sound for futures that keep their registration until they fire (tokio's timers,
/// cancellation tokens) and that are only ever polled through this wrapper, so the waker
/// they hold is always the gate's. Not for a future that shares its waker slot with other
/// code (a socket also written elsewhere). The gated futures of one [`Gates`] belong to one
/// task: they share its waker slot.
pub(crate) struct Gated<F> {
    inner: F,
    shared: Arc<Shared>,
    mask: u32,
    waker: Waker,
}

impl<F: Future + Unpin> Future for Gated<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        // Registered before the flag is read: a wake in between is seen now or wakes the
        // task again.
        this.shared.task.register(cx.waker());
        if this.shared.woken.load(Ordering::Acquire) & this.mask == 0 {
            return Poll::Pending;
        }
        this.shared.woken.fetch_and(!this.mask, Ordering::AcqRel);
        let polled = Pin::new(&mut this.inner).poll(&mut Context::from_waker(&this.waker));
        if polled.is_ready() {
            // A repeating future (the next tick) starts again with a poll.
            this.shared.woken.fetch_or(this.mask, Ordering::Release);
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
        let mut gates = Gates::default();
        let mut gated = gates.gate(Probe(polls.clone()));
        let mut other = gates.gate(Probe(Arc::new(AtomicUsize::new(0))));
        assert!(poll_once(&mut other).is_pending());
        assert!(poll_once(&mut gated).is_pending());
        assert_eq!(polls.load(Ordering::SeqCst), 1, "the first poll polls it");
        for _ in 0..10 {
            assert!(poll_once(&mut gated).is_pending());
        }
        assert_eq!(polls.load(Ordering::SeqCst), 1, "not woken: not polled");
        other.waker.wake_by_ref();
        assert!(poll_once(&mut gated).is_pending());
        assert_eq!(
            polls.load(Ordering::SeqCst),
            1,
            "another gate woke: not polled"
        );
        gated.waker.wake_by_ref();
        assert!(poll_once(&mut gated).is_pending());
        assert_eq!(polls.load(Ordering::SeqCst), 2, "woken: polled again");
    }

    #[tokio::test(start_paused = true)]
    async fn gated_ticks_keep_waking_the_task_on_time() {
        let started = Instant::now();
        let every = Duration::from_secs(5);
        let mut ticks =
            Gates::default().gate(Ticks(tokio::time::interval_at(started + every, every)));
        for n in 1..=3 {
            let at = (&mut ticks).await;
            assert_eq!(at, started + every * n);
            assert_eq!(Instant::now(), started + every * n);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_gated_cancellation_wakes_its_task() {
        let token = tokio_util::sync::CancellationToken::new();
        let mut cancelled = Gates::default().gate(Box::pin(token.clone().cancelled_owned()));
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
