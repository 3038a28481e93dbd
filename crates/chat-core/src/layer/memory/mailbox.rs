//! A channel's mailbox: a bounded queue under its own small lock, with the marker that tells
//! the receiver where messages were lost.

use std::collections::VecDeque;
use std::sync::OnceLock;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::layer::{LayerConfig, LayerMessage};
use crate::metrics::{self as m, cached_counter};

/// The layer's hot-path series, resolved once (see [`crate::metrics`]).
fn dropped_full() -> &'static metrics::Counter {
    static C: OnceLock<metrics::Counter> = OnceLock::new();
    C.get_or_init(|| metrics::counter!(m::LAYER_DROPPED, "reason" => "full"))
}

fn dropped_expired() -> &'static metrics::Counter {
    static C: OnceLock<metrics::Counter> = OnceLock::new();
    C.get_or_init(|| metrics::counter!(m::LAYER_DROPPED, "reason" => "expired"))
}

fn missed_markers() -> &'static metrics::Counter {
    static C: OnceLock<metrics::Counter> = OnceLock::new();
    cached_counter(&C, m::MISSED_MARKERS)
}

/// Messages a drained channel keeps room for.
pub(super) const IDLE_CAPACITY: usize = 4;

/// How many times a channel gives back a burst's memory as soon as it drained it. The first
/// bursts (a room's presence when the socket joins) are what an idle socket would otherwise
/// keep for good; a busy channel that kept shrinking would only grow again, once per burst,
/// so after these it is left to [`ChannelLayer::compact`](crate::layer::ChannelLayer::compact) on the keep-alive tick.
const EAGER_SHRINKS: u8 = 2;

/// One channel's mailbox, and how its receiver is woken.
pub(super) struct Queue {
    pub(super) mailbox: Mutex<Mailbox>,
    pub(super) notify: Notify,
}

/// What a queue holds, under its lock.
#[derive(Default)]
pub(super) struct Mailbox {
    pub(super) items: VecDeque<(Instant, LayerMessage)>,
    /// Messages taken out so far: the position of `items`' front in the channel's stream.
    taken: u64,
    /// Where messages were silently lost, if since the last marker: the receiver gets a
    /// [`LayerMessage::missed`] marker there, so it can recover them (from a store).
    missed_at: Option<u64>,
    /// Bursts given back as soon as they were drained, so far (see [`EAGER_SHRINKS`]).
    pub(super) eager_shrinks: u8,
    /// The channel was discarded: group members that still point here get nothing. Under the
    /// lock rather than beside it: a fan-out takes the lock anyway, and reading a flag on its
    /// own first cost each member one more trip for a cache line its receiver's worker owns.
    pub(super) discarded: bool,
}

impl Mailbox {
    fn note_missed(&mut self, at: u64) {
        self.missed_at = Some(self.missed_at.map_or(at, |m| m.min(at)));
    }

    /// Drops expired messages from the front, noting the loss.
    fn expire(&mut self, config: &LayerConfig, now: Instant) {
        while self
            .items
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) >= config.expiry)
        {
            self.items.pop_front();
            self.taken += 1;
            self.note_missed(self.taken);
            dropped_expired().increment(1);
        }
    }

    /// [`Mailbox::expire`] at the time of a receive, reading the clock only when there is
    /// something to expire: a receiver that finds its mailbox empty (every wait starts so)
    /// does not pay for a clock read.
    fn expire_at_receive(&mut self, config: &LayerConfig) {
        if !self.items.is_empty() {
            self.expire(config, Instant::now());
        }
    }

    /// The next message, the marker first when the loss happened right here.
    fn next(&mut self) -> Option<LayerMessage> {
        if self.missed_at.is_some_and(|at| at <= self.taken) {
            self.missed_at = None;
            missed_markers().increment(1);
            return Some(LayerMessage::missed());
        }
        let (_, msg) = self.items.pop_front()?;
        self.taken += 1;
        Some(msg)
    }

    pub(super) fn clear(&mut self) {
        self.taken += self.items.len() as u64;
        self.items.clear();
        self.missed_at = None;
    }
}

impl Queue {
    pub(super) fn new() -> Self {
        Self {
            mailbox: Mutex::new(Mailbox::default()),
            notify: Notify::new(),
        }
    }

    /// Queues `msg` unless the queue is at capacity (after dropping expired messages); a
    /// refusal is the sender's to know about (`send` fails with `ChannelFull`). A group
    /// member's refusal is its own: see [`Queue::push_many`].
    pub(super) fn push(&self, msg: LayerMessage, config: &LayerConfig, now: Instant) -> bool {
        let mut mailbox = self.mailbox.lock();
        // Expired messages only matter here when they take room: the receiver drops them too.
        if mailbox.items.len() >= config.capacity {
            mailbox.expire(config, now);
        }
        if mailbox.items.len() >= config.capacity {
            return false;
        }
        let was_empty = mailbox.items.is_empty();
        mailbox.items.push_back((now, msg));
        drop(mailbox);
        if was_empty {
            self.wake();
        }
        true
    }

    /// Wakes the receiver after a push into an empty mailbox.
    ///
    /// Why only then: a receiver waits only once it found the mailbox empty, under its lock,
    /// so the push that ended that emptiness is the one it needs to hear of; every later push
    /// finds the messages before it still there and the receiver already woken (or about to
    /// take them before it waits again). In a busy room a socket's task often runs behind a
    /// few commits, and waking it once per commit cost a lock on its waiter list each time.
    /// `notify_one` stores a permit when nobody waits, so a push between a receiver's empty
    /// check and its wait is never lost.
    fn wake(&self) {
        self.notify.notify_one();
    }

    /// Queues as many of `msgs` as there is room for, in order, under one lock and with at
    /// most one wake-up (see [`Queue::wake`]); the receiver misses the rest and gets a marker
    /// where they would have been. False when the channel was discarded (nothing queued).
    pub(super) fn push_many(
        &self,
        msgs: &[LayerMessage],
        config: &LayerConfig,
        now: Instant,
    ) -> bool {
        let mut mailbox = self.mailbox.lock();
        if mailbox.discarded {
            return false;
        }
        if mailbox.items.len() + msgs.len() > config.capacity {
            mailbox.expire(config, now);
        }
        let was_empty = mailbox.items.is_empty();
        let fits = msgs
            .len()
            .min(config.capacity.saturating_sub(mailbox.items.len()));
        mailbox
            .items
            .extend(msgs[..fits].iter().map(|msg| (now, msg.clone())));
        let lost = msgs.len() - fits;
        if lost > 0 {
            let at = mailbox.taken + mailbox.items.len() as u64;
            mailbox.note_missed(at);
        }
        drop(mailbox);
        if lost > 0 {
            dropped_full().increment(lost as u64);
        }
        if fits > 0 && was_empty {
            self.wake();
        }
        true
    }

    /// Whether the channel was discarded.
    pub(super) fn is_discarded(&self) -> bool {
        self.mailbox.lock().discarded
    }

    /// Notes a loss after what the mailbox holds now, and wakes the receiver to hear of it.
    #[cfg(feature = "redis")]
    pub(super) fn note_missed_after_queued(&self) {
        {
            let mut mailbox = self.mailbox.lock();
            let at = mailbox.taken + mailbox.items.len() as u64;
            mailbox.note_missed(at);
        }
        self.notify.notify_one();
    }

    pub(super) fn pop(&self, config: &LayerConfig) -> Option<LayerMessage> {
        let mut mailbox = self.mailbox.lock();
        mailbox.expire_at_receive(config);
        let msg = mailbox.next();
        let left = !mailbox.items.is_empty();
        drop(mailbox);
        self.pass_on(left);
        msg
    }

    /// Wakes another receiver of the channel when this one left messages behind: the pushes
    /// that queued them did not wake anyone (see [`Queue::wake`]), and a channel may have
    /// several receivers (a worker pool on one named channel). A lone receiver takes them
    /// before it waits anyway; the permit this leaves costs it one empty turn, and only when
    /// it took less than everything.
    fn pass_on(&self, left: bool) {
        if left {
            self.notify.notify_one();
        }
    }

    /// Takes up to `max` messages (a marker counts as one), under one lock and one clock read.
    pub(super) fn pop_many(&self, config: &LayerConfig, max: usize) -> Vec<LayerMessage> {
        let mut mailbox = self.mailbox.lock();
        mailbox.expire_at_receive(config);
        // Nothing allocated for an empty mailbox: its caller waits holding the empty batch,
        // and most mailboxes are idle.
        let waiting = mailbox.items.len().min(max);
        let mut batch = if waiting == 0 {
            Vec::new()
        } else {
            Vec::with_capacity(waiting + 1)
        };
        while batch.len() < max {
            match mailbox.next() {
                Some(msg) => batch.push(msg),
                None => break,
            }
        }
        if mailbox.items.is_empty()
            && mailbox.items.capacity() > IDLE_CAPACITY
            && mailbox.eager_shrinks < EAGER_SHRINKS
        {
            mailbox.eager_shrinks += 1;
            mailbox.items.shrink_to(IDLE_CAPACITY);
        }
        let left = !mailbox.items.is_empty();
        drop(mailbox);
        self.pass_on(left);
        batch
    }
}
