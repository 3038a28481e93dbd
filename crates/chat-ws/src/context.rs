//! What a consumer can do: accept or reject, send frames, join and leave groups, close.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chat_core::{ChannelName, GroupName, InvalidName, LayerMessage, SharedLayer};
use serde::Serialize;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::consumer::ConsumerError;
use crate::form::form_decode;
use crate::outbox::Outbox;

/// A frame on its way to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    /// A text frame.
    Text(Utf8Bytes),
    /// A ping (the runtime's keep-alive).
    Ping,
    /// Close the connection with this code and reason.
    Close(u16, String),
}

/// Why an [`OutboundSink`] did not take a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkError {
    /// The client cannot take more now: it is too slow.
    Full,
    /// The client is gone.
    Closed,
}

/// A transport that takes a connection's frames as the consumer sends them, on the
/// consumer's own task, instead of through a queue: for transports that queue and write by
/// themselves (a Socket.IO socket), where a queue of ours would be one more hop per frame. See [`Bridge::start_direct`](crate::Bridge::start_direct).
pub trait OutboundSink: Send + Sync + 'static {
    /// Takes a frame without waiting. A refused frame closes the client as too slow (1013),
    /// as a full queue would.
    fn send(&self, frame: Outbound) -> Result<(), SinkError>;
}

/// Where a connection's frames go.
#[derive(Clone)]
pub(crate) enum Out {
    /// A bounded queue: a WebSocket's connection task writes it out between callbacks (and
    /// while they wait); a bridged transport drains it from its own task.
    Queue(flume::Sender<Outbound>),
    /// A WebSocket's own queue, written out by its connection task (see [`Outbox`]).
    Outbox(Arc<Outbox>),
    /// A transport that takes them directly.
    Sink(Arc<dyn OutboundSink>),
}

impl Out {
    fn try_send(&self, frame: Outbound) -> Result<(), SinkError> {
        match self {
            Self::Queue(q) => q.try_send(frame).map_err(|e| match e {
                flume::TrySendError::Full(_) => SinkError::Full,
                flume::TrySendError::Disconnected(_) => SinkError::Closed,
            }),
            Self::Outbox(o) => o.push(frame),
            Self::Sink(s) => s.send(frame),
        }
    }
}

/// How often a paced send looks again at a sink that was full.
const SINK_RETRY: std::time::Duration = std::time::Duration::from_millis(10);

/// The handshake request as a consumer sees it: path, query parameters and headers.
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    /// The request path (`/ws/chat/lobby/`).
    pub path: String,
    /// Decoded query parameters (the last value wins for repeated keys).
    pub query: HashMap<String, String>,
    /// Request headers.
    pub headers: http::HeaderMap,
    /// The client's address, when the server provides it (a
    /// [`PeerAddr`](crate::PeerAddr) request extension; a proxy's address behind one).
    pub peer: Option<std::net::SocketAddr>,
}

impl RequestInfo {
    /// Builds the info from a path-and-query string such as `/ws/chat/lobby/?since=4`.
    pub fn from_uri(uri: &http::Uri, headers: http::HeaderMap) -> Self {
        let query = uri
            .query()
            .map(|q| {
                form_decode(q)
                    .into_iter()
                    .collect::<HashMap<String, String>>()
            })
            .unwrap_or_default();
        Self {
            path: uri.path().to_owned(),
            query,
            headers,
            peer: None,
        }
    }

    /// A query parameter.
    pub fn query(&self, key: &str) -> Option<&str> {
        self.query.get(key).map(String::as_str)
    }

    /// What an open connection keeps of its handshake: the path, the query and the headers
    /// in [`KEPT_HEADERS`]. Credentials (cookies, `Authorization`) and everything else are
    /// read in `connect` and dropped: a socket keeps no more than it needs for its lifetime,
    /// whatever size of head the client sent.
    pub fn after_connect(&self) -> Self {
        // Sized to what is kept: a map grown by appends reserves 6 entries (624 bytes), a
        // twentieth of what an idle connection holds.
        let kept = KEPT_HEADERS
            .iter()
            .map(|name| self.headers.get_all(name).iter().count())
            .sum();
        let mut headers = http::HeaderMap::with_capacity(kept);
        for name in KEPT_HEADERS {
            for value in self.headers.get_all(&name) {
                headers.append(name.clone(), value.clone());
            }
        }
        Self {
            path: self.path.clone(),
            query: self.query.clone(),
            headers,
            peer: self.peer,
        }
    }
}

/// The handshake headers an open connection keeps (see [`RequestInfo::after_connect`]).
pub const KEPT_HEADERS: [http::HeaderName; 4] = [
    http::header::ORIGIN,
    http::header::HOST,
    http::header::USER_AGENT,
    http::header::HeaderName::from_static("x-forwarded-for"),
];

/// Where the connection stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum State {
    /// `connect` has not decided yet.
    Pending,
    /// Accepted: the socket is (or will be) open.
    Accepted,
    /// Refused before the upgrade with this HTTP status.
    Rejected(u16, String),
    /// The consumer asked to close with this code.
    Closing(u16, String),
}

/// Converts the things a consumer names groups with into a [`GroupName`].
pub trait IntoGroupName {
    /// The validated group name.
    fn into_group_name(self) -> Result<GroupName, InvalidName>;
}

impl IntoGroupName for GroupName {
    fn into_group_name(self) -> Result<GroupName, InvalidName> {
        Ok(self)
    }
}

impl IntoGroupName for &GroupName {
    fn into_group_name(self) -> Result<GroupName, InvalidName> {
        Ok(self.clone())
    }
}

impl IntoGroupName for &str {
    fn into_group_name(self) -> Result<GroupName, InvalidName> {
        GroupName::parse(self)
    }
}

/// A consumer's handle on its connection.
pub struct Context {
    layer: SharedLayer,
    channel: ChannelName,
    groups: HashSet<GroupName>,
    out: Out,
    /// Frames held while a burst of layer messages is handled (see [`Context::hold_frames`]).
    held: Vec<Outbound>,
    holding: bool,
    pub(crate) state: State,
    pub(crate) overflowed: bool,
    request: Arc<RequestInfo>,
}

impl Context {
    pub(crate) fn new(
        layer: SharedLayer,
        channel: ChannelName,
        out: Out,
        request: Arc<RequestInfo>,
    ) -> Self {
        Self {
            layer,
            channel,
            groups: HashSet::new(),
            out,
            held: Vec::new(),
            holding: false,
            state: State::Pending,
            overflowed: false,
            request,
        }
    }

    /// Accepts the connection (in `connect`).
    pub fn accept(&mut self) {
        if self.state == State::Pending {
            self.state = State::Accepted;
        }
    }

    /// Refuses the connection before the upgrade with an HTTP status (401, 403, 503…) and a
    /// reason for the response body.
    pub fn reject(&mut self, status: u16, reason: impl Into<String>) {
        self.state = State::Rejected(status, reason.into());
    }

    /// Closes the connection with a WebSocket close code once the current callback returns.
    pub fn close(&mut self, code: u16, reason: impl Into<String>) {
        if matches!(self.state, State::Pending) {
            self.state = State::Rejected(403, reason.into());
        } else if self.state == State::Accepted {
            self.state = State::Closing(code, reason.into());
        }
    }

    /// Whether the consumer has accepted and not asked to close.
    pub fn is_open(&self) -> bool {
        self.state == State::Accepted
    }

    /// Whether the connection ends after the current callback: the consumer asked to close,
    /// or the client fell too far behind its frames.
    pub fn is_ending(&self) -> bool {
        self.overflowed || !matches!(self.state, State::Accepted | State::Pending)
    }

    /// The handshake request. In `connect`, all of it; once accepted, what
    /// [`RequestInfo::after_connect`] keeps.
    pub fn request(&self) -> &RequestInfo {
        &self.request
    }

    /// Keeps only what an open connection needs of the handshake.
    pub(crate) fn trim_request(&mut self) {
        self.request = Arc::new(self.request.after_connect());
    }

    /// This consumer's channel in the layer.
    pub fn channel_name(&self) -> &ChannelName {
        &self.channel
    }

    /// The channel layer.
    pub fn layer(&self) -> &SharedLayer {
        &self.layer
    }

    /// Queues a text frame. Never waits: when the client's outbound queue is full the
    /// connection is closed with 1013 (too slow) after the current callback.
    pub fn send_text(&mut self, text: impl Into<Utf8Bytes>) {
        self.push(Outbound::Text(text.into()));
    }

    /// Queues a text frame, waiting for room in the outbound queue instead of closing a slow
    /// client. For long replays in [`Consumer::opened`](crate::Consumer::opened).
    pub async fn send_text_wait(&mut self, text: impl Into<Utf8Bytes>) {
        let text: Utf8Bytes = text.into();
        // What is held goes first, and the wait is for room behind it.
        self.release_held();
        match &self.out {
            Out::Queue(q) => {
                if q.send_async(Outbound::Text(text)).await.is_err() {
                    self.overflowed = true;
                }
            }
            Out::Outbox(o) => {
                if o.push_wait(Outbound::Text(text)).await.is_err() {
                    self.overflowed = true;
                }
            }
            Out::Sink(sink) => loop {
                match sink.send(Outbound::Text(text.clone())) {
                    Ok(()) => return,
                    Err(SinkError::Full) => tokio::time::sleep(SINK_RETRY).await,
                    Err(SinkError::Closed) => {
                        self.overflowed = true;
                        return;
                    }
                }
            },
        }
    }

    /// Queues any serializable value as a JSON text frame.
    pub fn send_json<T: Serialize + ?Sized>(&mut self, value: &T) {
        match serde_json::to_string(value) {
            Ok(s) => self.send_text(s),
            Err(e) => tracing::error!(error = %e, "could not serialize an outbound frame"),
        }
    }

    /// Forwards a layer message's payload as a text frame without re-serializing it.
    pub fn forward(&mut self, msg: LayerMessage) {
        self.send_text(Utf8Bytes::from(msg.into_text()));
    }

    pub(crate) fn push(&mut self, frame: Outbound) {
        if self.overflowed {
            return;
        }
        if self.holding {
            self.held.push(frame);
        } else if self.out.try_send(frame).is_err() {
            self.overflowed = true;
        }
    }

    /// Holds the frames sent from here on, to queue them together at [`Context::release_held`]:
    /// for a burst of about `expected` deliveries, on a WebSocket's own queue.
    ///
    /// Why: each frame queued on its own took the queue's lock, and releasing a lock waits
    /// for the stores before it, here the frame's slot in a buffer not touched since this
    /// socket's last turn, a cache miss paid in full once per frame. Held frames go into a
    /// vector without a lock, their misses overlap, and the queue's lock is taken once. A
    /// delivery that waits meanwhile (a gap read from the store) keeps the burst's frames until
    /// the burst is handled; [`Context::send_text_wait`] queues them before it waits for room.
    ///
    /// A burst of one delivery is not held: its frame takes the lock once either way, and
    /// holding it would cost the vector's allocation.
    pub(crate) fn hold_frames(&mut self, expected: usize) {
        if expected > 1 && matches!(self.out, Out::Outbox(_)) {
            self.holding = true;
            self.held.reserve_exact(expected);
        }
    }

    /// Queues what was held, in order; a client without room for all of it is too slow.
    pub(crate) fn release_held(&mut self) {
        self.holding = false;
        if self.held.is_empty() {
            return;
        }
        // Taken, not drained: an idle socket keeps no buffer of a burst.
        let held = std::mem::take(&mut self.held);
        let queued = match &self.out {
            Out::Outbox(o) => o.push_many(held),
            // Only a WebSocket's queue holds frames (see `hold_frames`).
            Out::Queue(_) | Out::Sink(_) => Ok(()),
        };
        if queued.is_err() {
            self.overflowed = true;
        }
    }

    /// Joins a group; the runtime leaves it automatically on disconnect.
    pub async fn group_add(&mut self, group: impl IntoGroupName) -> Result<(), ConsumerError> {
        let group = group.into_group_name()?;
        self.layer.group_add(&group, &self.channel).await?;
        self.groups.insert(group);
        Ok(())
    }

    /// Leaves a group.
    pub async fn group_discard(&mut self, group: impl IntoGroupName) -> Result<(), ConsumerError> {
        let group = group.into_group_name()?;
        self.groups.remove(&group);
        self.layer.group_discard(&group, &self.channel).await?;
        Ok(())
    }

    /// Sends a layer message to every member of a group (this consumer included, if a member).
    pub async fn group_send(
        &self,
        group: impl IntoGroupName,
        msg: LayerMessage,
    ) -> Result<(), ConsumerError> {
        let group = group.into_group_name()?;
        self.layer.group_send(&group, msg).await?;
        Ok(())
    }

    /// Sends several messages to a group, in order, in one go (see
    /// [`ChannelLayer::group_send_many`](chat_core::ChannelLayer::group_send_many)).
    pub async fn group_send_many(
        &self,
        group: impl IntoGroupName,
        msgs: Vec<LayerMessage>,
    ) -> Result<(), ConsumerError> {
        let group = group.into_group_name()?;
        self.layer.group_send_many(&group, msgs).await?;
        Ok(())
    }

    /// Adds this channel to its groups again, before their memberships expire.
    pub(crate) async fn renew_groups(&mut self) {
        for group in &self.groups {
            if let Err(e) = self.layer.group_add(group, &self.channel).await {
                tracing::warn!(group = %group, error = %e, "could not renew a group membership");
            }
        }
    }

    /// The groups this consumer is in.
    pub fn groups(&self) -> impl Iterator<Item = &GroupName> {
        self.groups.iter()
    }

    /// Leaves every group and forgets the channel. Errors are logged: cleanup must finish.
    pub(crate) async fn cleanup(&mut self) {
        for group in std::mem::take(&mut self.groups) {
            if let Err(e) = self.layer.group_discard(&group, &self.channel).await {
                tracing::warn!(group = %group, error = %e, "group_discard failed during cleanup");
            }
        }
        if let Err(e) = self.layer.discard_channel(&self.channel).await {
            tracing::warn!(channel = %self.channel, error = %e, "discard_channel failed");
        }
    }
}
