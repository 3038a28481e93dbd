//! The Redis channel layer: many processes on many machines, like channels_redis.
//!
//! How it works:
//! - every node keeps its consumers' mailboxes in memory (an [`InMemoryChannelLayer`]), so
//!   receiving never touches Redis;
//! - a channel's name says which node owns it (`specific.<node>!<n>`): a send to another
//!   node's channel is one PUBLISH on that node's topic;
//! - a node subscribes to a group's topic while it has local members and unsubscribes when the
//!   last one leaves; `group_send` delivers to local members at once and makes one PUBLISH,
//!   never one Redis write per member;
//! - the Pub/Sub connection reconnects with backoff and resubscribes. Messages published while
//!   a node was cut off are lost to it, which is why chat messages are stored first and
//!   consumers fill gaps from the store by sequence number.

mod envelope;
mod error;
mod subscriber;

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};

use super::{ChannelLayer, InMemoryChannelLayer, LayerConfig, LayerError, LayerMessage};
use crate::names::{ChannelName, GroupName};
pub use error::RedisError;
use subscriber::{Control, Routing};

/// Settings of the Redis layer.
#[derive(Debug, Clone)]
pub struct RedisLayerConfig {
    /// `redis://[:password@]host:port[/db]`.
    pub url: String,
    /// Prefix of every Redis topic this layer uses, so several deployments can share a server.
    pub prefix: String,
    /// Capacity and expiry of the local mailboxes and memberships.
    pub layer: LayerConfig,
    /// How long a Redis command may take before the call fails.
    pub timeout: Duration,
}

impl RedisLayerConfig {
    /// Defaults for a Redis URL: prefix `chat`, Channels' capacities.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: "chat".into(),
            layer: LayerConfig::default(),
            timeout: Duration::from_secs(2),
        }
    }
}

struct Inner {
    node: String,
    prefix: String,
    local: InMemoryChannelLayer,
    pool: deadpool_redis::Pool,
    control: mpsc::UnboundedSender<Control>,
    /// Local members of each group, to know when to (un)subscribe.
    members: Mutex<HashMap<GroupName, HashSet<ChannelName>>>,
    next_id: AtomicU64,
    closed: AtomicBool,
    timeout: Duration,
    /// Whether the Pub/Sub connection is up (kept by the subscriber task). While it is down,
    /// publishes fail at once instead of each waiting for a timeout: a Redis outage must not
    /// slow down acks, which only depend on the store.
    connected: Arc<AtomicBool>,
}

/// A [`ChannelLayer`] shared by many processes through Redis. Cloning shares the layer.
#[derive(Clone)]
pub struct RedisChannelLayer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RedisChannelLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisChannelLayer")
            .field("node", &self.inner.node)
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

/// A random id for this node (process), hex.
pub(crate) fn node_id() -> String {
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    format!("n{:x}{:x}", std::process::id(), random & 0xffff_ffff_ffff)
}

impl RedisChannelLayer {
    /// Connects: checks that Redis answers, then starts the Pub/Sub task. Fails with a clear
    /// error when Redis cannot be reached.
    pub async fn connect(config: RedisLayerConfig) -> Result<Self, LayerError> {
        let client = redis::Client::open(config.url.as_str())
            // Never the URL itself: it may hold a password. The caller names the server.
            .map_err(RedisError::InvalidUrl)?;
        let mut pool_cfg = deadpool_redis::Config::from_url(config.url.clone());
        let mut pc = deadpool_redis::PoolConfig::new(16);
        pc.timeouts.wait = Some(config.timeout);
        pc.timeouts.create = Some(config.timeout);
        pc.timeouts.recycle = Some(config.timeout);
        pool_cfg.pool = Some(pc);
        let pool = pool_cfg
            .create_pool(Some(deadpool_redis::Runtime::Tokio1))
            .map_err(RedisError::from)?;
        let node = node_id();
        let layer_prefix = config.prefix.clone();
        let (tx, rx) = mpsc::unbounded_channel();
        let connected = Arc::new(AtomicBool::new(false));
        let this = Self {
            inner: Arc::new(Inner {
                node: node.clone(),
                prefix: layer_prefix.clone(),
                local: InMemoryChannelLayer::new(config.layer.clone()),
                pool,
                control: tx,
                members: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
                closed: AtomicBool::new(false),
                timeout: config.timeout,
                connected: connected.clone(),
            }),
        };
        this.ping().await?;
        let routing = Routing {
            node_topic: this.node_topic(&node),
            group_prefix: format!("{layer_prefix}:g:"),
            node,
            local: this.inner.local.clone(),
            connected,
        };
        tokio::spawn(subscriber::run(client, routing, rx));
        // Hear point-to-point sends before handing out channel names.
        let (done, wait) = oneshot::channel();
        let _ = this
            .inner
            .control
            .send(Control::Subscribe(this.node_topic(&this.inner.node), done));
        let _ = tokio::time::timeout(config.timeout, wait).await;
        Ok(this)
    }

    /// This node's id (the part of channel names before `!`).
    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// Whether this node's Pub/Sub connection to Redis is up: what other nodes publish
    /// reaches this node's channels, and its own publishes are attempted. `false` from the
    /// moment the connection is lost until the layer has reconnected and resubscribed (it
    /// retries with backoff by itself). A load of one atomic: cheap enough for every
    /// readiness probe. The layer logs a warning when the connection goes down and an info
    /// line when it is back, once per change.
    pub fn is_connected(&self) -> bool {
        self.inner.connected.load(Ordering::Acquire)
    }

    /// A PING round trip (for readiness probes and `doctor`).
    pub async fn ping(&self) -> Result<(), LayerError> {
        let timeout = self.inner.timeout;
        let mut conn = self.inner.pool.get().await.map_err(RedisError::from)?;
        let pong: String =
            tokio::time::timeout(timeout, redis::cmd("PING").query_async(&mut *conn))
                .await
                .map_err(|_| RedisError::Timeout {
                    command: "PING",
                    after: timeout,
                })?
                .map_err(RedisError::from)?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(RedisError::UnexpectedAnswer {
                command: "PING",
                answer: pong,
            }
            .into())
        }
    }

    fn node_topic(&self, node: &str) -> String {
        format!("{}:n:{node}", self.inner.prefix)
    }

    fn group_topic(&self, group: &GroupName) -> String {
        format!("{}:g:{group}", self.inner.prefix)
    }

    /// The node that owns a channel, when it is not this one.
    fn remote_node<'a>(&self, channel: &'a ChannelName) -> Option<&'a str> {
        let (head, _) = channel.as_str().split_once('!')?;
        let node = head.strip_prefix("specific.")?;
        (node != self.inner.node).then_some(node)
    }

    async fn publish(&self, topic: String, raw: Vec<u8>) -> Result<(), LayerError> {
        if !self.inner.connected.load(Ordering::Acquire) {
            return Err(RedisError::Reconnecting.into());
        }
        let publish = async {
            let mut conn = self.inner.pool.get().await?;
            redis::cmd("PUBLISH")
                .arg(topic)
                .arg(raw)
                .query_async::<i64>(&mut *conn)
                .await
                .map_err(RedisError::from)
        };
        let timeout = self.inner.timeout;
        tokio::time::timeout(timeout, publish)
            .await
            .map_err(|_| RedisError::Timeout {
                command: "PUBLISH",
                after: timeout,
            })??;
        Ok(())
    }

    fn check_open(&self) -> Result<(), LayerError> {
        if self.inner.closed.load(Ordering::Acquire) {
            Err(LayerError::Closed)
        } else {
            Ok(())
        }
    }

    async fn subscribe(&self, topic: String) {
        let (done, wait) = oneshot::channel();
        if self
            .inner
            .control
            .send(Control::Subscribe(topic, done))
            .is_ok()
        {
            let _ = tokio::time::timeout(self.inner.timeout, wait).await;
        }
    }

    fn unsubscribe(&self, topic: String) {
        let _ = self.inner.control.send(Control::Unsubscribe(topic));
    }
}

#[async_trait]
impl ChannelLayer for RedisChannelLayer {
    async fn new_channel(&self) -> Result<ChannelName, LayerError> {
        self.check_open()?;
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        Ok(ChannelName::parse(&format!(
            "specific.{}!{id}",
            self.inner.node
        ))?)
    }

    async fn send(&self, channel: &ChannelName, msg: LayerMessage) -> Result<(), LayerError> {
        self.check_open()?;
        match self.remote_node(channel) {
            None => self.inner.local.send(channel, msg).await,
            Some(node) => {
                let raw = envelope::encode(&self.inner.node, Some(channel.as_str()), &msg);
                self.publish(self.node_topic(node), raw).await
            }
        }
    }

    async fn receive(&self, channel: &ChannelName) -> Result<LayerMessage, LayerError> {
        self.check_open()?;
        self.inner.local.receive(channel).await
    }

    async fn receive_many(
        &self,
        channel: &ChannelName,
        max: usize,
    ) -> Result<Vec<LayerMessage>, LayerError> {
        self.check_open()?;
        self.inner.local.receive_many(channel, max).await
    }

    fn membership_expiry(&self) -> Option<std::time::Duration> {
        self.inner.local.membership_expiry()
    }

    fn compact(&self, channel: &ChannelName) {
        self.inner.local.compact(channel);
    }

    fn backend_connected(&self) -> Option<bool> {
        Some(self.is_connected())
    }

    async fn group_add(&self, group: &GroupName, channel: &ChannelName) -> Result<(), LayerError> {
        self.check_open()?;
        self.inner.local.group_add(group, channel).await?;
        let first = {
            let mut members = self.inner.members.lock();
            let set = members.entry(group.clone()).or_default();
            let was_empty = set.is_empty();
            set.insert(channel.clone());
            was_empty
        };
        if first {
            // Wait for Redis to confirm, so nothing published after this call returns is
            // missed (consumers join before they read the store).
            self.subscribe(self.group_topic(group)).await;
        }
        Ok(())
    }

    async fn group_discard(
        &self,
        group: &GroupName,
        channel: &ChannelName,
    ) -> Result<(), LayerError> {
        self.check_open()?;
        self.inner.local.group_discard(group, channel).await?;
        let last = {
            let mut members = self.inner.members.lock();
            let emptied = members
                .get_mut(group)
                .is_some_and(|set| set.remove(channel) && set.is_empty());
            if emptied {
                members.remove(group);
            }
            emptied
        };
        if last {
            self.unsubscribe(self.group_topic(group));
        }
        Ok(())
    }

    async fn group_send(&self, group: &GroupName, msg: LayerMessage) -> Result<(), LayerError> {
        self.check_open()?;
        let raw = envelope::encode(&self.inner.node, None, &msg);
        self.inner.local.group_send(group, msg).await?;
        self.publish(self.group_topic(group), raw).await
    }

    async fn discard_channel(&self, channel: &ChannelName) -> Result<(), LayerError> {
        let emptied: Vec<GroupName> = {
            let mut members = self.inner.members.lock();
            let mut emptied = Vec::new();
            members.retain(|group, set| {
                if set.remove(channel) && set.is_empty() {
                    emptied.push(group.clone());
                    return false;
                }
                true
            });
            emptied
        };
        for group in emptied {
            self.unsubscribe(self.group_topic(&group));
        }
        self.inner.local.discard_channel(channel).await
    }

    async fn flush(&self) -> Result<(), LayerError> {
        let groups: Vec<GroupName> = self.inner.members.lock().drain().map(|(g, _)| g).collect();
        for group in groups {
            self.unsubscribe(self.group_topic(&group));
        }
        self.inner.local.flush().await
    }

    async fn close(&self) -> Result<(), LayerError> {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.local.close().await
    }
}
