//! A test communicator, like Channels' `WebsocketCommunicator`: drives a consumer through the
//! real state machine with in-memory queues instead of a socket.

use std::sync::Arc;
use std::time::Duration;

use chat_core::{ChannelLayer, SharedLayer};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::bridge::{Bridge, Bridged};
use crate::connection::{ClientEvent, ConnectionConfig, Ending};
use crate::consumer::Consumer;
use crate::context::{Outbound, RequestInfo};

/// How long `receive_*` waits before failing the test.
const RECEIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// The result of [`Communicator::connect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectOutcome {
    /// The consumer accepted.
    Accepted,
    /// The consumer refused with this HTTP status and reason.
    Rejected(u16, String),
}

impl ConnectOutcome {
    /// Whether the consumer accepted.
    pub fn accepted(&self) -> bool {
        matches!(self, Self::Accepted)
    }
}

/// Drives one consumer in a unit test: no socket, no server, the real connection state
/// machine. Its `receive_*` methods panic with a clear message when nothing arrives within
/// 5 seconds, which is what a test wants.
pub struct Communicator<C> {
    consumer: Option<C>,
    layer: SharedLayer,
    request: RequestInfo,
    config: ConnectionConfig,
    events: Option<flume::Sender<ClientEvent>>,
    outbound: Option<flume::Receiver<Outbound>>,
    task: Option<JoinHandle<Ending>>,
}

impl<C: Consumer> Communicator<C> {
    /// A communicator for `consumer` on `layer`, with the request path `/`.
    pub fn new<L: ChannelLayer>(consumer: C, layer: L) -> Self {
        Self::with_shared_layer(consumer, Arc::new(layer))
    }

    /// The same, for a layer that is already shared.
    pub fn with_shared_layer(consumer: C, layer: SharedLayer) -> Self {
        Self {
            consumer: Some(consumer),
            layer,
            request: RequestInfo {
                path: "/".into(),
                ..RequestInfo::default()
            },
            config: ConnectionConfig::default(),
            events: None,
            outbound: None,
            task: None,
        }
    }

    /// Sets the handshake's path and query (`/ws/chat/lobby/?since=3`).
    pub fn with_path(mut self, path_and_query: &str) -> Self {
        let headers = std::mem::take(&mut self.request.headers);
        let peer = self.request.peer;
        match path_and_query.parse::<http::Uri>() {
            Ok(uri) => self.request = RequestInfo::from_uri(&uri, headers),
            Err(e) => panic!("invalid test path {path_and_query:?}: {e}"),
        }
        self.request.peer = peer;
        self
    }

    /// Adds a handshake header (a token, an origin, a user agent), as a client would send
    /// it. Panics on a name or value no client could send.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        let name = http::HeaderName::from_bytes(name.as_bytes())
            .unwrap_or_else(|e| panic!("invalid test header name {name:?}: {e}"));
        let value = http::HeaderValue::from_str(value)
            .unwrap_or_else(|e| panic!("invalid test header {name}: {e}"));
        self.request.headers.append(name, value);
        self
    }

    /// Adds a cookie to the handshake's `Cookie` header, as a browser joins them (`a=1; b=2`).
    pub fn with_cookie(mut self, name: &str, value: &str) -> Self {
        let joined = match self.request.headers.get(http::header::COOKIE) {
            Some(v) => format!("{}; {name}={value}", v.to_str().unwrap_or_default()),
            None => format!("{name}={value}"),
        };
        let value = http::HeaderValue::from_str(&joined)
            .unwrap_or_else(|e| panic!("invalid test cookie {name}: {e}"));
        self.request.headers.insert(http::header::COOKIE, value);
        self
    }

    /// Adds a query parameter (`?since=3`), decoded as the consumer will see it.
    pub fn with_query(mut self, key: &str, value: &str) -> Self {
        self.request.query.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Sets the client's address ([`RequestInfo::peer`]).
    pub fn with_peer(mut self, peer: std::net::SocketAddr) -> Self {
        self.request.peer = Some(peer);
        self
    }

    /// Sets the connection settings (limits, shutdown token).
    pub fn with_config(mut self, config: ConnectionConfig) -> Self {
        self.config = config;
        self
    }

    /// Runs `connect` and, when accepted, starts the connection loop.
    pub async fn connect(&mut self) -> ConnectOutcome {
        let consumer = self
            .consumer
            .take()
            .expect("connect() is called once per communicator");
        let bridged = Bridge::start(
            consumer,
            self.layer.clone(),
            self.request.clone(),
            &self.config,
        )
        .await
        .expect("consumer connect failed");
        match bridged {
            Bridged::Rejected { status, reason } => ConnectOutcome::Rejected(status, reason),
            Bridged::Accepted(bridge) => {
                self.events = Some(bridge.events);
                self.outbound = bridge.outbound;
                self.task = Some(bridge.task);
                ConnectOutcome::Accepted
            }
        }
    }

    fn events(&self) -> &flume::Sender<ClientEvent> {
        self.events
            .as_ref()
            .expect("connect() must be accepted before sending")
    }

    /// Sends a text frame as the client.
    pub async fn send_text(&self, text: impl Into<Utf8Bytes>) {
        let _ = self
            .events()
            .send_async(ClientEvent::Text(text.into()))
            .await;
    }

    /// Sends a JSON value as a text frame.
    pub async fn send_json(&self, value: serde_json::Value) {
        self.send_text(value.to_string()).await;
    }

    /// Sends any client event (binary frames, oversized frames, a close).
    pub async fn send_event(&self, event: ClientEvent) {
        let _ = self.events().send_async(event).await;
    }

    /// The next frame the consumer sent, pings included.
    pub async fn receive_frame(&mut self) -> Outbound {
        let rx = self
            .outbound
            .as_mut()
            .expect("connect() must be accepted before receiving");
        match tokio::time::timeout(RECEIVE_TIMEOUT, rx.recv_async()).await {
            Ok(Ok(f)) => f,
            Ok(Err(_)) => panic!("the connection ended with nothing more to receive"),
            Err(_) => panic!("nothing received within {RECEIVE_TIMEOUT:?}"),
        }
    }

    /// The next text frame (pings are skipped; a close fails the test).
    pub async fn receive_text(&mut self) -> String {
        loop {
            match self.receive_frame().await {
                Outbound::Text(t) => return t.to_string(),
                Outbound::Ping => continue,
                Outbound::Close(code, reason) => {
                    panic!("expected a text frame, the server closed: {code} {reason}")
                }
            }
        }
    }

    /// The next text frame, parsed as JSON.
    pub async fn receive_json(&mut self) -> serde_json::Value {
        let text = self.receive_text().await;
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    /// Waits `within` and returns whether nothing (other than pings) was sent meanwhile.
    pub async fn receive_nothing(&mut self, within: Duration) -> bool {
        let Some(rx) = self.outbound.as_mut() else {
            return true;
        };
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, rx.recv_async()).await {
                Err(_) => return true,
                Ok(Ok(Outbound::Ping)) => continue,
                Ok(_) => return false,
            }
        }
    }

    /// Waits for the connection to end and returns the close code the server sent (or the
    /// code it ended with when the client was too slow to receive a close frame). Frames still
    /// queued are skipped.
    pub async fn wait_closed(&mut self) -> Option<u16> {
        if let Some(rx) = self.outbound.as_mut() {
            loop {
                match tokio::time::timeout(RECEIVE_TIMEOUT, rx.recv_async()).await {
                    Ok(Ok(Outbound::Close(code, _))) => return Some(code),
                    Ok(Ok(_)) => continue,
                    Ok(Err(_)) => break,
                    Err(_) => panic!("the connection did not close within {RECEIVE_TIMEOUT:?}"),
                }
            }
        }
        self.finish().await.and_then(|e| e.code)
    }

    /// Closes as the client and waits for `disconnect` and cleanup to finish.
    pub async fn disconnect(mut self, code: u16) -> Option<Ending> {
        if let Some(events) = &self.events {
            let _ = events.send_async(ClientEvent::Closed(Some(code))).await;
        }
        self.finish().await
    }

    async fn finish(&mut self) -> Option<Ending> {
        let task = self.task.take()?;
        self.events = None;
        match tokio::time::timeout(RECEIVE_TIMEOUT, task).await {
            Ok(Ok(ending)) => Some(ending),
            Ok(Err(e)) => panic!("the connection task failed: {e}"),
            Err(_) => panic!("the connection did not end within {RECEIVE_TIMEOUT:?}"),
        }
    }
}
