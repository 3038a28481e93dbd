//! The in-memory channel layer: one process, lock-light, bounded.
//!
//! Why it is shaped this way:
//! - every channel has its own small mutex-protected queue, so senders to different channels
//!   never contend;
//! - a group keeps a cached snapshot (`Arc<[Target]>`) of its members, rebuilt only when
//!   membership changes, so `group_send` to 10,000 members takes a read lock just long enough
//!   to clone one `Arc`, then fans out with no lock held on the group;
//! - payloads are `Bytes`, so every recipient shares one serialized buffer.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_trait::async_trait;
use dashmap::DashMap;
use parking_lot::RwLock;
use tokio::time::Instant;

use super::{Bursts, ChannelLayer, LayerConfig, LayerError, LayerMessage};
use crate::metrics as m;
use crate::names::{ChannelName, GroupName};

mod mailbox;

use mailbox::{IDLE_CAPACITY, Queue};

/// The layer's hot-path series, resolved once (see [`crate::metrics`]).
fn fan_out() -> &'static metrics::Histogram {
    static H: OnceLock<metrics::Histogram> = OnceLock::new();
    H.get_or_init(|| metrics::histogram!(m::GROUP_SEND_MEMBERS))
}

/// A group member as seen by `group_send`.
#[derive(Clone)]
struct Target {
    added: Instant,
    queue: Arc<Queue>,
}

#[derive(Default)]
struct Group {
    members: HashMap<ChannelName, Target>,
    snapshot: Option<Arc<[Target]>>,
}

struct Inner {
    config: LayerConfig,
    channels: DashMap<ChannelName, Arc<Queue>>,
    groups: DashMap<GroupName, Arc<RwLock<Group>>>,
    next_id: AtomicU64,
    instance: String,
    /// Set once by `close`; every receive checks it before it waits (see `wait_for_push`).
    closed: AtomicBool,
}

/// A [`ChannelLayer`] for one process. Cloning shares the layer.
#[derive(Clone)]
pub struct InMemoryChannelLayer {
    inner: Arc<Inner>,
}

impl Default for InMemoryChannelLayer {
    fn default() -> Self {
        Self::new(LayerConfig::default())
    }
}

impl std::fmt::Debug for InMemoryChannelLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InMemoryChannelLayer")
            .field("config", &self.inner.config)
            .field("channels", &self.inner.channels.len())
            .field("groups", &self.inner.groups.len())
            .finish()
    }
}

impl InMemoryChannelLayer {
    /// A layer with the given settings.
    pub fn new(config: LayerConfig) -> Self {
        // A per-instance tag keeps channel names unique across layers in one process, which
        // matters in tests that build many layers.
        static INSTANCES: AtomicU64 = AtomicU64::new(0);
        let instance = format!("m{}", INSTANCES.fetch_add(1, Ordering::Relaxed));
        Self {
            inner: Arc::new(Inner {
                config,
                channels: DashMap::new(),
                groups: DashMap::new(),
                next_id: AtomicU64::new(1),
                instance,
                closed: AtomicBool::new(false),
            }),
        }
    }

    /// The layer's settings.
    pub fn config(&self) -> &LayerConfig {
        &self.inner.config
    }

    /// How many channels exist (not yet discarded). A channel nobody discards is a leak:
    /// tests of code that owns channels check this comes back to zero.
    pub fn channel_count(&self) -> usize {
        self.inner.channels.len()
    }

    /// How many groups have at least one member (an emptied group is forgotten).
    pub fn group_count(&self) -> usize {
        self.inner.groups.len()
    }

    /// Tells every channel that messages may have been lost from here on (a layer built on
    /// this one lost its feed, for example Redis pub/sub while it reconnected): each receives
    /// a [`LayerMessage::MISSED`] marker after what it holds.
    #[cfg(feature = "redis")]
    pub(crate) fn note_missed_everywhere(&self) {
        for q in self.inner.channels.iter() {
            q.note_missed_after_queued();
        }
    }

    fn check_open(&self) -> Result<(), LayerError> {
        if self.inner.closed.load(Ordering::SeqCst) {
            Err(LayerError::Closed)
        } else {
            Ok(())
        }
    }

    fn queue(&self, channel: &ChannelName) -> Arc<Queue> {
        if let Some(q) = self.inner.channels.get(channel) {
            return q.clone();
        }
        self.inner
            .channels
            .entry(channel.clone())
            .or_insert_with(|| Arc::new(Queue::new()))
            .clone()
    }

    fn group(&self, group: &GroupName) -> Option<Arc<RwLock<Group>>> {
        self.inner.groups.get(group).map(|g| g.clone())
    }

    /// The current members of `group`, rebuilding the cached snapshot if membership changed.
    fn snapshot(&self, group: &RwLock<Group>) -> Arc<[Target]> {
        if let Some(s) = &group.read().snapshot {
            return s.clone();
        }
        let mut g = group.write();
        if let Some(s) = &g.snapshot {
            return s.clone();
        }
        let s: Arc<[Target]> = g.members.values().cloned().collect();
        g.snapshot = Some(s.clone());
        s
    }

    /// Waits for a push to `queue` (or for `close`, which wakes every queue), then fails if
    /// the layer closed.
    ///
    /// Why not also wait on one layer-wide close signal: every receiver registering with it
    /// and leaving it again on each wake-up made its waiter list a lock shared by every
    /// socket of the process, taken twice per delivery by both workers. A close already in
    /// progress cannot be missed: `close` sets the flag before it wakes the queues, and its
    /// wake leaves a permit when the receiver is not waiting yet.
    async fn wait_for_push(&self, queue: &Queue) -> Result<(), LayerError> {
        queue.notify.notified().await;
        self.check_open()
    }

    /// Takes up to `max` (at least one) of what `queue` holds, waiting for the first.
    async fn next_burst(&self, queue: &Queue, max: usize) -> Result<Vec<LayerMessage>, LayerError> {
        loop {
            self.check_open()?;
            let batch = queue.pop_many(&self.inner.config, max.max(1));
            if !batch.is_empty() {
                return Ok(batch);
            }
            self.wait_for_push(queue).await?;
        }
    }

    /// Queues `msgs` for every live member of `group`: each member's lock is taken once for
    /// the batch, which is what a busy room's commit costs most (the lock's cache line is the
    /// receiving worker's).
    fn fan_out(&self, group: &GroupName, msgs: &[LayerMessage]) {
        let Some(g) = self.group(group) else {
            return;
        };
        let targets = self.snapshot(&g);
        fan_out().record_many(targets.len() as f64, msgs.len());
        let now = Instant::now();
        let config = &self.inner.config;
        let mut stale = false;
        for t in targets.iter() {
            // A full member misses these messages rather than failing the whole send
            // (Channels' group_send semantics); it receives a `layer.missed` marker instead.
            if now.duration_since(t.added) >= config.group_expiry
                || !t.queue.push_many(msgs, config, now)
            {
                stale = true;
            }
        }
        if stale {
            self.prune(group, &g, now);
        }
    }

    /// Drops expired and discarded members after a fan-out noticed some.
    fn prune(&self, name: &GroupName, group: &RwLock<Group>, now: Instant) {
        let expiry = self.inner.config.group_expiry;
        let mut g = group.write();
        g.members
            .retain(|_, t| now.duration_since(t.added) < expiry && !t.queue.is_discarded());
        g.snapshot = None;
        let empty = g.members.is_empty();
        drop(g);
        if empty {
            self.inner
                .groups
                .remove_if(name, |_, g| g.read().members.is_empty());
        }
    }
}

#[async_trait]
impl ChannelLayer for InMemoryChannelLayer {
    async fn new_channel(&self) -> Result<ChannelName, LayerError> {
        self.check_open()?;
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let name = ChannelName::parse(&format!("specific.{}!{id}", self.inner.instance))?;
        self.inner
            .channels
            .insert(name.clone(), Arc::new(Queue::new()));
        Ok(name)
    }

    async fn send(&self, channel: &ChannelName, msg: LayerMessage) -> Result<(), LayerError> {
        self.check_open()?;
        if self
            .queue(channel)
            .push(msg, &self.inner.config, Instant::now())
        {
            Ok(())
        } else {
            Err(LayerError::ChannelFull(channel.clone()))
        }
    }

    async fn receive(&self, channel: &ChannelName) -> Result<LayerMessage, LayerError> {
        let queue = self.queue(channel);
        loop {
            self.check_open()?;
            if let Some(msg) = queue.pop(&self.inner.config) {
                return Ok(msg);
            }
            self.wait_for_push(&queue).await?;
        }
    }

    async fn receive_many(
        &self,
        channel: &ChannelName,
        max: usize,
    ) -> Result<Vec<LayerMessage>, LayerError> {
        self.next_burst(&self.queue(channel), max).await
    }

    /// Keeps the channel's queue: a receive on it no longer looks the channel up (a lock on a
    /// shard of the channel map shared by every socket, and hashing and comparing its name),
    /// which was a twentieth of a delivery's CPU at one message per wake-up. A channel
    /// discarded meanwhile receives nothing more here.
    fn bursts(self: Arc<Self>, channel: ChannelName, max: usize) -> Bursts {
        let queue = self.queue(&channel);
        Box::pin(futures_util::stream::unfold(
            (self, queue),
            move |(layer, queue)| async move {
                let burst = layer.next_burst(&queue, max).await;
                Some((burst, (layer, queue)))
            },
        ))
    }

    fn membership_expiry(&self) -> Option<std::time::Duration> {
        Some(self.inner.config.group_expiry)
    }

    fn compact(&self, channel: &ChannelName) {
        if let Some(queue) = self.inner.channels.get(channel) {
            let mut mailbox = queue.mailbox.lock();
            // A burst (a room's presence at join, a flood) grew the queue; an idle channel
            // keeps room for a few messages.
            if mailbox.items.is_empty() && mailbox.items.capacity() > IDLE_CAPACITY {
                mailbox.items.shrink_to(IDLE_CAPACITY);
            }
        }
    }

    async fn group_add(&self, group: &GroupName, channel: &ChannelName) -> Result<(), LayerError> {
        self.check_open()?;
        let queue = self.queue(channel);
        let g = self.inner.groups.entry(group.clone()).or_default().clone();
        let mut g = g.write();
        g.members.insert(
            channel.clone(),
            Target {
                added: Instant::now(),
                queue,
            },
        );
        g.snapshot = None;
        Ok(())
    }

    async fn group_discard(
        &self,
        group: &GroupName,
        channel: &ChannelName,
    ) -> Result<(), LayerError> {
        self.check_open()?;
        let Some(g) = self.group(group) else {
            return Ok(());
        };
        let mut w = g.write();
        if w.members.remove(channel).is_some() {
            w.snapshot = None;
        }
        let empty = w.members.is_empty();
        drop(w);
        if empty {
            self.inner
                .groups
                .remove_if(group, |_, g| g.read().members.is_empty());
        }
        Ok(())
    }

    async fn group_send(&self, group: &GroupName, msg: LayerMessage) -> Result<(), LayerError> {
        self.check_open()?;
        self.fan_out(group, std::slice::from_ref(&msg));
        Ok(())
    }

    async fn group_send_many(
        &self,
        group: &GroupName,
        msgs: Vec<LayerMessage>,
    ) -> Result<(), LayerError> {
        self.check_open()?;
        if !msgs.is_empty() {
            self.fan_out(group, &msgs);
        }
        Ok(())
    }

    async fn discard_channel(&self, channel: &ChannelName) -> Result<(), LayerError> {
        if let Some((_, q)) = self.inner.channels.remove(channel) {
            let mut mailbox = q.mailbox.lock();
            mailbox.discarded = true;
            mailbox.clear();
        }
        Ok(())
    }

    async fn flush(&self) -> Result<(), LayerError> {
        for q in self.inner.channels.iter() {
            q.mailbox.lock().clear();
        }
        self.inner.groups.clear();
        Ok(())
    }

    async fn close(&self) -> Result<(), LayerError> {
        self.inner.closed.store(true, Ordering::SeqCst);
        // Every waiting receiver wakes, and one that is about to wait finds a permit.
        for queue in self.inner.channels.iter() {
            queue.notify.notify_waiters();
            queue.notify.notify_one();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    crate::conformance_tests!(|config| async move { super::InMemoryChannelLayer::new(config) });

    use super::*;

    #[tokio::test]
    async fn empty_groups_and_discarded_channels_are_forgotten() {
        let layer = InMemoryChannelLayer::default();
        let g = GroupName::parse("g").unwrap();
        let a = layer.new_channel().await.unwrap();
        layer.group_add(&g, &a).await.unwrap();
        assert_eq!(layer.inner.groups.len(), 1);
        layer.group_discard(&g, &a).await.unwrap();
        assert_eq!(layer.inner.groups.len(), 0);
        layer.discard_channel(&a).await.unwrap();
        assert_eq!(layer.inner.channels.len(), 0);
    }

    #[tokio::test]
    async fn a_channel_gives_back_its_first_bursts_then_waits_to_be_compacted() {
        let layer = InMemoryChannelLayer::default();
        let a = layer.new_channel().await.unwrap();
        for i in 0..40 {
            let m = LayerMessage::new("t", serde_json::json!(i));
            layer.send(&a, m).await.unwrap();
        }
        let capacity = || layer.queue(&a).mailbox.lock().items.capacity();
        let burst = async |n: usize| {
            for i in 0..n {
                let m = LayerMessage::new("t", serde_json::json!(i));
                layer.send(&a, m).await.unwrap();
            }
            assert_eq!(layer.receive_many(&a, 64).await.unwrap().len(), n);
        };
        // The first bursts are given back at once (they are the join's, on an idle socket).
        assert!(capacity() >= 40);
        assert_eq!(layer.receive_many(&a, 64).await.unwrap().len(), 40);
        assert!(capacity() <= IDLE_CAPACITY);
        burst(40).await;
        assert!(capacity() <= IDLE_CAPACITY);
        // Then a busy channel keeps its room between bursts, until it is compacted.
        burst(40).await;
        assert!(capacity() >= 40);
        layer.compact(&a);
        assert!(capacity() <= IDLE_CAPACITY);
    }

    #[tokio::test]
    async fn a_discarded_channel_left_in_a_group_gets_nothing_and_is_pruned() {
        let layer = InMemoryChannelLayer::default();
        let g = GroupName::parse("g").unwrap();
        let a = layer.new_channel().await.unwrap();
        let b = layer.new_channel().await.unwrap();
        layer.group_add(&g, &a).await.unwrap();
        layer.group_add(&g, &b).await.unwrap();
        let a_queue = layer.queue(&a);
        layer.discard_channel(&a).await.unwrap();
        let m = LayerMessage::new("t", serde_json::json!(1));
        layer.group_send(&g, m).await.unwrap();
        assert!(
            a_queue.mailbox.lock().items.is_empty(),
            "nothing queued for it"
        );
        assert_eq!(layer.receive(&b).await.unwrap().kind(), "t");
        let group = layer.group(&g).unwrap();
        let members: Vec<_> = group.read().members.keys().cloned().collect();
        assert_eq!(members, vec![b], "the discarded member is pruned");
    }

    #[tokio::test(start_paused = true)]
    async fn expired_memberships_are_pruned() {
        let layer = InMemoryChannelLayer::new(LayerConfig {
            group_expiry: std::time::Duration::from_secs(10),
            ..LayerConfig::default()
        });
        let g = GroupName::parse("g").unwrap();
        let a = layer.new_channel().await.unwrap();
        layer.group_add(&g, &a).await.unwrap();
        tokio::time::advance(std::time::Duration::from_secs(11)).await;
        layer
            .group_send(&g, LayerMessage::new("t", serde_json::json!(1)))
            .await
            .unwrap();
        assert_eq!(layer.inner.groups.len(), 0);
    }
}
