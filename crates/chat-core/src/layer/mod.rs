//! The channel layer: Channels' `send` / `group_add` / `group_send` model behind one trait.
//!
//! A *channel* is the mailbox of one consumer (one connection); a *group* is a named set of
//! channels (one room). `group_send` delivers one message to every member. Messages are
//! type-tagged ([`LayerMessage::kind`]) so a consumer can dispatch them to handlers, and their
//! payload is serialized once and shared by every recipient.

mod memory;
mod message;
#[cfg(feature = "redis")]
mod redis;

pub mod conformance;

#[cfg(feature = "redis")]
pub(crate) use self::redis::node_id;
#[cfg(feature = "redis")]
pub use self::redis::{RedisChannelLayer, RedisError, RedisLayerConfig};
pub use memory::InMemoryChannelLayer;
pub use message::LayerMessage;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::names::{ChannelName, GroupName, InvalidName};

/// Errors of a channel layer.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// The channel's queue is at capacity; the message was not queued.
    #[error("channel {0} is full")]
    ChannelFull(ChannelName),
    /// A name broke the naming rules.
    #[error(transparent)]
    InvalidName(#[from] InvalidName),
    /// The payload could not be serialized or decoded as JSON.
    #[error("layer message payload: {0}")]
    Payload(#[from] serde_json::Error),
    /// The payload is not UTF-8 where text was asked for.
    #[error("layer message payload is not UTF-8: {0}")]
    NotUtf8(#[from] std::str::Utf8Error),
    /// Bytes from another node were not a layer envelope (a different version or prefix).
    #[error("not a chat layer envelope")]
    NotAnEnvelope,
    /// The layer was closed.
    #[error("the channel layer is closed")]
    Closed,
    /// The backend (for example Redis) failed; the source says how.
    #[error("channel layer backend: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Settings shared by every layer; the defaults are Channels' defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerConfig {
    /// Messages a channel holds before `send` fails with [`LayerError::ChannelFull`].
    pub capacity: usize,
    /// A message not received within this time is dropped.
    pub expiry: Duration,
    /// A group membership older than this is dropped (re-add to refresh it).
    pub group_expiry: Duration,
}

impl Default for LayerConfig {
    fn default() -> Self {
        Self {
            capacity: 100,
            expiry: Duration::from_secs(60),
            group_expiry: Duration::from_secs(86_400),
        }
    }
}

/// The channel layer API (Channels' spec, in Rust).
///
/// Semantics every implementation keeps (see [`conformance`], which checks them):
/// - messages on one channel are received in the order they were sent;
/// - `send` to a full channel fails with [`LayerError::ChannelFull`];
/// - `group_send` delivers to every member exactly once and skips members whose channel is
///   full (as Channels does: a group send never fails because one member is slow);
/// - a channel that silently lost messages (skipped by `group_send`, or expired before they
///   were received) delivers one [`LayerMessage::MISSED`] marker where they would have been,
///   so a consumer that can recover them knows to (Channels has no such signal);
/// - messages and group memberships expire per [`LayerConfig`];
/// - `receive` is cancel-safe: dropping its future before it completes loses no message,
///   so it can sit in a `tokio::select!` loop.
#[async_trait]
pub trait ChannelLayer: Send + Sync + 'static {
    /// A new, unique channel name for a consumer to receive on.
    async fn new_channel(&self) -> Result<ChannelName, LayerError>;

    /// Queues a message on a channel.
    async fn send(&self, channel: &ChannelName, msg: LayerMessage) -> Result<(), LayerError>;

    /// Waits for the next message on a channel. Cancel-safe.
    async fn receive(&self, channel: &ChannelName) -> Result<LayerMessage, LayerError>;

    /// Waits for the next message on a channel, then takes up to `max` messages (at least
    /// one) that are waiting, in order. Cancel-safe.
    ///
    /// A busy consumer drains its mailbox in bursts: taking a burst at once costs one lookup,
    /// one lock and one wake-up instead of one of each per message. The default receives one
    /// message, then whatever further messages are ready without waiting.
    async fn receive_many(
        &self,
        channel: &ChannelName,
        max: usize,
    ) -> Result<Vec<LayerMessage>, LayerError> {
        let first = self.receive(channel).await?;
        let mut batch = vec![first];
        while batch.len() < max {
            match now_or_never(self.receive(channel)) {
                Some(Ok(msg)) => batch.push(msg),
                _ => break,
            }
        }
        Ok(batch)
    }

    /// Receives on `channel` for as long as the stream is kept: each item is what
    /// [`receive_many`](ChannelLayer::receive_many) with this `max` would return. Dropping
    /// the stream, or a `next()` on it, while it waits loses nothing.
    ///
    /// For a receiver that waits on one channel for its whole life, as a connection waits on
    /// its own: a layer can find the channel once instead of on every call, and keep its wait
    /// between bursts. The default calls `receive_many` for each burst.
    fn bursts(self: Arc<Self>, channel: ChannelName, max: usize) -> Bursts {
        Box::pin(futures_util::stream::unfold(
            (self, channel),
            move |(layer, channel)| async move {
                let burst = layer.receive_many(&channel, max).await;
                Some((burst, (layer, channel)))
            },
        ))
    }

    /// Adds a channel to a group (or refreshes its membership).
    async fn group_add(&self, group: &GroupName, channel: &ChannelName) -> Result<(), LayerError>;

    /// How long a membership lasts without a refresh (Channels' `group_expiry`), if it
    /// expires at all. A consumer that stays in a group for longer must renew it by adding
    /// itself again; the connection runtime does that for every open socket.
    fn membership_expiry(&self) -> Option<Duration> {
        None
    }

    /// Whether the layer's connection to its backend is up right now; `None` for a layer
    /// with no backend to lose (in memory). A load of a flag, cheap enough for every
    /// readiness probe.
    fn backend_connected(&self) -> Option<bool> {
        None
    }

    /// Gives back the memory a channel's mailbox kept from a burst, if it is empty now. Most
    /// connections are idle most of the time: the connection runtime calls this on each
    /// keep-alive tick, rather than after every burst, where a busy channel would give the
    /// memory back only to take it again.
    fn compact(&self, _channel: &ChannelName) {}

    /// Removes a channel from a group; a no-op when it is not a member.
    async fn group_discard(
        &self,
        group: &GroupName,
        channel: &ChannelName,
    ) -> Result<(), LayerError>;

    /// Sends a message to every channel in a group.
    async fn group_send(&self, group: &GroupName, msg: LayerMessage) -> Result<(), LayerError>;

    /// Sends several messages to every channel in a group, in order: the same as one
    /// [`group_send`](ChannelLayer::group_send) each, which is what the default does. A layer
    /// can do better with the batch (the in-memory one takes each member's lock once for all
    /// of them): a room's commit of many messages is published with one call.
    async fn group_send_many(
        &self,
        group: &GroupName,
        msgs: Vec<LayerMessage>,
    ) -> Result<(), LayerError> {
        for msg in msgs {
            self.group_send(group, msg).await?;
        }
        Ok(())
    }

    /// Forgets a channel: drops its queued messages and its group memberships. Called when a
    /// consumer goes away so a long-running process does not accumulate dead mailboxes
    /// (an addition to Channels' API, which relies on expiry alone).
    async fn discard_channel(&self, channel: &ChannelName) -> Result<(), LayerError>;

    /// Drops every message and every group.
    async fn flush(&self) -> Result<(), LayerError>;

    /// Closes the layer; later calls fail with [`LayerError::Closed`] and pending receives
    /// return it.
    async fn close(&self) -> Result<(), LayerError>;
}

/// Polls a future once: its output if it is ready without waiting.
fn now_or_never<F: std::future::Future>(future: F) -> Option<F::Output> {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let future = std::pin::pin!(future);
    match future.poll(&mut cx) {
        std::task::Poll::Ready(out) => Some(out),
        std::task::Poll::Pending => None,
    }
}

/// A layer shared by many consumers.
pub type SharedLayer = Arc<dyn ChannelLayer>;

/// A channel's messages as a stream of bursts, from [`ChannelLayer::bursts`].
pub type Bursts = futures_util::stream::BoxStream<'static, Result<Vec<LayerMessage>, LayerError>>;

/// A shared layer is a layer, so `Arc<dyn ChannelLayer>` can go wherever a layer is expected.
#[async_trait]
impl<T: ChannelLayer + ?Sized> ChannelLayer for Arc<T> {
    async fn new_channel(&self) -> Result<ChannelName, LayerError> {
        (**self).new_channel().await
    }
    async fn send(&self, channel: &ChannelName, msg: LayerMessage) -> Result<(), LayerError> {
        (**self).send(channel, msg).await
    }
    async fn receive(&self, channel: &ChannelName) -> Result<LayerMessage, LayerError> {
        (**self).receive(channel).await
    }
    async fn receive_many(
        &self,
        channel: &ChannelName,
        max: usize,
    ) -> Result<Vec<LayerMessage>, LayerError> {
        (**self).receive_many(channel, max).await
    }
    fn bursts(self: Arc<Self>, channel: ChannelName, max: usize) -> Bursts {
        Arc::clone(&*self).bursts(channel, max)
    }
    async fn group_add(&self, group: &GroupName, channel: &ChannelName) -> Result<(), LayerError> {
        (**self).group_add(group, channel).await
    }
    fn membership_expiry(&self) -> Option<Duration> {
        (**self).membership_expiry()
    }
    fn backend_connected(&self) -> Option<bool> {
        (**self).backend_connected()
    }
    fn compact(&self, channel: &ChannelName) {
        (**self).compact(channel)
    }
    async fn group_discard(
        &self,
        group: &GroupName,
        channel: &ChannelName,
    ) -> Result<(), LayerError> {
        (**self).group_discard(group, channel).await
    }
    async fn group_send(&self, group: &GroupName, msg: LayerMessage) -> Result<(), LayerError> {
        (**self).group_send(group, msg).await
    }
    async fn group_send_many(
        &self,
        group: &GroupName,
        msgs: Vec<LayerMessage>,
    ) -> Result<(), LayerError> {
        (**self).group_send_many(group, msgs).await
    }
    async fn discard_channel(&self, channel: &ChannelName) -> Result<(), LayerError> {
        (**self).discard_channel(channel).await
    }
    async fn flush(&self) -> Result<(), LayerError> {
        (**self).flush().await
    }
    async fn close(&self) -> Result<(), LayerError> {
        (**self).close().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A layer that keeps the trait's default `receive_many` (it forwards everything else).
    #[derive(Clone, Default)]
    struct DefaultBurst(InMemoryChannelLayer);

    #[async_trait]
    impl ChannelLayer for DefaultBurst {
        async fn new_channel(&self) -> Result<ChannelName, LayerError> {
            self.0.new_channel().await
        }
        async fn send(&self, channel: &ChannelName, msg: LayerMessage) -> Result<(), LayerError> {
            self.0.send(channel, msg).await
        }
        async fn receive(&self, channel: &ChannelName) -> Result<LayerMessage, LayerError> {
            self.0.receive(channel).await
        }
        async fn group_add(&self, g: &GroupName, c: &ChannelName) -> Result<(), LayerError> {
            self.0.group_add(g, c).await
        }
        async fn group_discard(&self, g: &GroupName, c: &ChannelName) -> Result<(), LayerError> {
            self.0.group_discard(g, c).await
        }
        async fn group_send(&self, g: &GroupName, msg: LayerMessage) -> Result<(), LayerError> {
            self.0.group_send(g, msg).await
        }
        async fn discard_channel(&self, channel: &ChannelName) -> Result<(), LayerError> {
            self.0.discard_channel(channel).await
        }
        async fn flush(&self) -> Result<(), LayerError> {
            self.0.flush().await
        }
        async fn close(&self) -> Result<(), LayerError> {
            self.0.close().await
        }
    }

    crate::conformance_tests!(
        |config| async move { DefaultBurst(InMemoryChannelLayer::new(config)) }
    );
}
