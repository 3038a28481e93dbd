//! The node's one Pub/Sub connection: subscribes to the node's own topic and to every group
//! with local members, delivers what arrives to the local mailboxes, and reconnects with
//! backoff when Redis goes away, resubscribing to everything it should hear.

use std::collections::HashSet;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};

use super::envelope;
use crate::layer::{ChannelLayer, InMemoryChannelLayer};
use crate::names::{ChannelName, GroupName};

/// A request to the subscriber task.
pub(crate) enum Control {
    /// Subscribe; the reply comes once Redis confirmed (or at once while Redis is down: the
    /// subscription is made on reconnect).
    Subscribe(String, oneshot::Sender<()>),
    /// Unsubscribe.
    Unsubscribe(String),
}

/// What the task needs to route incoming messages.
pub(crate) struct Routing {
    pub node: String,
    pub node_topic: String,
    pub group_prefix: String,
    pub local: InMemoryChannelLayer,
    pub connected: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Routing {
    async fn deliver(&self, topic: &str, raw: &[u8]) {
        let env = match envelope::decode(raw) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(topic, error = %e, "ignoring a foreign message on a layer topic");
                return;
            }
        };
        if env.origin == self.node {
            // Delivered locally when it was sent.
            return;
        }
        let result = if topic == self.node_topic {
            match env.target.as_deref().map(ChannelName::parse) {
                Some(Ok(ch)) => self.local.send(&ch, env.message).await,
                _ => return,
            }
        } else if let Some(group) = topic.strip_prefix(&self.group_prefix) {
            match GroupName::parse(group) {
                Ok(g) => self.local.group_send(&g, env.message).await,
                Err(_) => return,
            }
        } else {
            return;
        };
        if let Err(e) = result {
            tracing::debug!(topic, error = %e, "a message from Redis could not be delivered locally");
        }
    }
}

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Runs until every sender of `control` is gone (the layer was closed or dropped).
pub(crate) async fn run(
    client: redis::Client,
    routing: Routing,
    mut control: mpsc::UnboundedReceiver<Control>,
) {
    let mut topics: HashSet<String> = HashSet::from([routing.node_topic.clone()]);
    let mut backoff = MIN_BACKOFF;
    let mut first = true;
    // Whether the outage in progress was logged: one warning when the connection goes down,
    // one info line when it is back, and only debug lines for the retries in between.
    let mut down = false;
    loop {
        // Connect and subscribe to everything this node should hear.
        let connected = async {
            let (mut sink, stream) = client.get_async_pubsub().await?.split();
            let all: Vec<&String> = topics.iter().collect();
            sink.subscribe(all).await?;
            Ok::<_, redis::RedisError>((sink, stream))
        };
        let (mut sink, mut stream) = match tokio::time::timeout(MAX_BACKOFF, connected).await {
            Ok(Ok(pair)) => {
                routing
                    .connected
                    .store(true, std::sync::atomic::Ordering::Release);
                metrics::gauge!(crate::metrics::REDIS_CONNECTED).set(1.0);
                if std::mem::take(&mut down) {
                    tracing::info!("redis channel layer reconnected");
                }
                if !first {
                    // Whatever was published while the feed was down never arrives.
                    routing.local.note_missed_everywhere();
                    metrics::counter!(crate::metrics::REDIS_RECONNECTS).increment(1);
                }
                first = false;
                backoff = MIN_BACKOFF;
                pair
            }
            failed => {
                let why = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "timed out".to_owned(),
                };
                metrics::gauge!(crate::metrics::REDIS_CONNECTED).set(0.0);
                if down {
                    tracing::debug!(error = %why, retry_in = ?backoff, "redis pub/sub still unavailable");
                } else {
                    tracing::warn!(error = %why, retry_in = ?backoff, "redis pub/sub unavailable; retrying");
                    down = true;
                }
                // Even before the first connection: what other nodes publish while this one
                // waits is lost to its channels, which must hear so once it connects.
                first = false;
                // Keep serving control requests while waiting, so nobody blocks on Redis.
                let wake = tokio::time::sleep(backoff);
                tokio::pin!(wake);
                loop {
                    tokio::select! {
                        () = &mut wake => break,
                        c = control.recv() => match c {
                            Some(Control::Subscribe(t, done)) => {
                                topics.insert(t);
                                let _ = done.send(());
                            }
                            Some(Control::Unsubscribe(t)) => {
                                topics.remove(&t);
                            }
                            None => return,
                        },
                    }
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        loop {
            tokio::select! {
                c = control.recv() => match c {
                    Some(Control::Subscribe(t, done)) => {
                        if let Err(e) = sink.subscribe(&t).await {
                            tracing::warn!(topic = %t, error = %e, "subscribe failed; will retry on reconnect");
                        }
                        topics.insert(t);
                        let _ = done.send(());
                    }
                    Some(Control::Unsubscribe(t)) => {
                        topics.remove(&t);
                        let _ = sink.unsubscribe(&t).await;
                    }
                    None => return,
                },
                msg = stream.next() => match msg {
                    Some(msg) => routing.deliver(msg.get_channel_name(), msg.get_payload_bytes()).await,
                    None => {
                        routing.connected.store(false, std::sync::atomic::Ordering::Release);
                        metrics::gauge!(crate::metrics::REDIS_CONNECTED).set(0.0);
                        tracing::warn!("redis pub/sub connection lost; reconnecting");
                        down = true;
                        break;
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use super::*;

    /// Redis is not there when the subscriber first tries (it went away right after the
    /// node's start-up check): once it connects, local channels are told they may have missed
    /// messages, as after any reconnect.
    #[tokio::test]
    async fn a_late_first_connection_tells_channels_they_missed_messages() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
        let local = InMemoryChannelLayer::default();
        let channel = local.new_channel().await.unwrap();
        let connected = Arc::new(AtomicBool::new(false));
        let routing = Routing {
            node: "n1".into(),
            node_topic: "t:n1".into(),
            group_prefix: "t:g:".into(),
            local: local.clone(),
            connected: connected.clone(),
        };
        let (_control, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(client, routing, rx));

        let mut redis = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is installed on this machine");
        let marker = tokio::time::timeout(Duration::from_secs(20), local.receive(&channel)).await;
        let _ = redis.kill();
        let _ = redis.wait();
        task.abort();
        assert!(
            connected.load(Ordering::Acquire),
            "the subscriber connected"
        );
        let marker = marker.expect("told within the back-off").unwrap();
        assert!(marker.is_missed());
    }
}
