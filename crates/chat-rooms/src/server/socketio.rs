//! The Socket.IO endpoint (`/socket.io/`, namespaces `/chat` and `/`): socketioxide speaks
//! Engine.IO and Socket.IO (WebSocket and long-polling with upgrade); each socket is a
//! [`SocketIoConsumer`] on our rooms, store and channel layer, run through a [`Bridge`].
//!
//! Three things socketioxide does not do for us:
//! - **Order.** It spawns a task per incoming event, so two sends of one client could be
//!   stored out of order. Our extractor runs synchronously in socketioxide's receive loop and
//!   queues each event to the socket's one consumer task, in the order the client sent them.
//! - **Backpressure.** `emit` refuses when a socket's queue is full. A socket that falls that
//!   far behind is disconnected, as our own sockets are closed with 1013: a reconnect with
//!   `since` then loses nothing, where a dropped event would be lost silently.
//! - **Scale-out.** Rooms live in our channel layer, not in socketioxide's adapter, so two
//!   nodes with Redis share rooms between Socket.IO and native clients.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use crate::SocketIoConsumer;
use crate::socketio::{Outgoing, incoming};
use bytes::Bytes;
use chat_core::ErrorCode;
use chat_ws::{
    Bridge, Bridged, ClientEvent, Outbound, OutboundSink, RequestInfo, SinkError, form_decode,
};
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::service::Service;
use serde_json::Value;
use socketioxide::extract::{AckSender, Event, SocketRef, TryData};
use socketioxide::handler::{ConnectHandler, FromMessage, FromMessageParts};
use socketioxide::service::SocketIoService;
use socketioxide::socket::Socket;
use socketioxide::{SendError, SocketError, SocketIo};
use tracing::Instrument;

mod caller;
mod encoded;

use self::caller::{Refused, caller};
use crate::server::access::ServerAccess;
use crate::server::app::Chat;
use crate::server::auth::{bind, guest};
use crate::server::respond::{Resp, text};
use crate::server::service::ChatBody;

/// The Socket.IO endpoint: the service mounted at `/socket.io/`, and the handle that closes
/// every socket's transport at shutdown.
#[derive(Clone)]
pub struct Endpoint {
    service: SocketIoService<NoRoute>,
    io: SocketIo,
}

impl Endpoint {
    /// Closes every Socket.IO connection's transport (not with a Socket.IO disconnect, after
    /// which clients would not reconnect): clients reconnect, to another node or to this one
    /// once it is back, and resume with `since`.
    pub async fn close(&self) {
        self.io.close().await;
    }
}

/// What socketioxide calls for a request that is not Engine.IO (our router only sends it
/// `/socket.io/…`): 404.
#[derive(Clone, Copy, Debug)]
pub struct NoRoute;

impl<B> Service<Request<B>> for NoRoute {
    type Response = Resp;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Resp, Infallible>>;

    fn call(&self, _req: Request<B>) -> Self::Future {
        std::future::ready(Ok(text(StatusCode::NOT_FOUND, "not a Socket.IO request")))
    }
}

/// The request headers socketioxide gets (and keeps with each socket): what Engine.IO reads
/// (the WebSocket key and version, a polling POST's content type) and what identifies the
/// client when it connects to a namespace (its cookie, bearer token, origin, address and
/// agent). The rest of a client's handshake, up to the 16 KiB head limit, is dropped.
const KEPT_HEADERS: [header::HeaderName; 11] = [
    header::COOKIE,
    header::AUTHORIZATION,
    header::ORIGIN,
    header::HOST,
    header::USER_AGENT,
    header::HeaderName::from_static("x-forwarded-for"),
    header::CONTENT_TYPE,
    header::CONNECTION,
    header::UPGRADE,
    header::SEC_WEBSOCKET_KEY,
    header::SEC_WEBSOCKET_VERSION,
];

/// Acks the client asked for and the consumer has not answered yet.
type Acks = Arc<Mutex<HashMap<i64, AckSender>>>;

/// A socket's way into its consumer task (kept in the socket's extensions).
#[derive(Clone)]
struct Inbox {
    events: flume::Sender<ClientEvent>,
    acks: Acks,
}

/// How long Engine.IO waits for a pong: what is left of `idle_timeout` after a ping interval
/// (at least a second), so a silent Socket.IO client is closed when a silent native one is.
fn sio_ping_timeout(limits: &chat_core::Limits) -> std::time::Duration {
    limits
        .idle_timeout
        .saturating_sub(limits.ping_interval)
        .max(std::time::Duration::from_secs(1))
}

/// Builds the endpoint. Its handlers use `app` (auth, store, layer, limits).
pub fn endpoint(app: &Chat) -> Endpoint {
    let limits = &app.config.limits;
    let (svc, io) = SocketIo::builder()
        .req_path("/socket.io")
        // As deep as our own outbound queue: beyond it the client is too slow.
        .max_buffer_size(limits.outbound_queue)
        .max_payload(limits.max_frame_bytes as u64)
        .ws_max_message_size(limits.max_frame_bytes)
        // Read 512 bytes at a time: a chat event fits (a longer frame takes more reads), most
        // sockets are idle, and each keeps this buffer for life (Engine.IO's default, 4 KiB,
        // would be a fifth of an idle socket's memory).
        .ws_read_buffer_size(512)
        // The heartbeat of our own sockets: a ping every `ping_interval`, and a client that
        // has not answered by `idle_timeout` is closed.
        .ping_interval(limits.ping_interval)
        .ping_timeout(sio_ping_timeout(limits))
        .build_with_inner_svc(NoRoute);
    let endpoint = Endpoint {
        service: svc,
        io: io.clone(),
    };
    for ns in ["/chat", "/"] {
        let app = app.clone();
        let connect = async move |s: SocketRef, TryData(auth): TryData<Value>| {
            let started = start(app, s, auth.unwrap_or(Value::Null)).await;
            if let Err(refused) = &started {
                crate::observe::handshake_refused(refused.status);
            }
            started
        };
        io.ns(ns, (async |_: SocketRef| {}).with(connect));
    }
    endpoint
}

/// The connect middleware: authenticates, starts the socket's consumer and registers the
/// handlers, all before socketioxide answers the connect, so no event can arrive first.
async fn start(app: Chat, s: SocketRef, auth: Value) -> Result<(), Refused> {
    let (user, credential) = caller(&app, &s, &auth).await?;
    let span = crate::server::trace::connection_span(
        crate::server::trace::Kind::SocketIo,
        None,
        Some(&user),
    );
    let access = Arc::new(ServerAccess::new(&app));
    let consumer = SocketIoConsumer::new(
        user,
        access,
        app.messages.clone(),
        app.config.limits.clone(),
    )
    .with_presence(app.presence.clone())
    .with_recent(app.recent.clone());
    let consumer = match app.attachment_lookup.clone() {
        Some(files) => consumer.with_attachments(files),
        None => consumer,
    };
    let consumer = bind(consumer, &credential);
    let request = RequestInfo {
        path: s.req_parts().uri.path().to_owned(),
        ..RequestInfo::default()
    };
    // The consumer's task needs the socket's inbox (to hand back acks) before it runs, and
    // the inbox needs the task's event queue: the sink learns it once the bridge starts.
    let sink = Arc::new(SocketSink {
        socket: s.clone(),
        inbox: std::sync::OnceLock::new(),
    });
    let bridged = Bridge::start_direct(
        consumer,
        app.layer.clone(),
        request,
        &app.connections,
        sink.clone(),
    )
    .instrument(span)
    .await;
    let bridge = match bridged {
        Ok(Bridged::Accepted(b)) => b,
        Ok(Bridged::Rejected { status, reason }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
            return Err(Refused::new(status, reason));
        }
        Err(e) => {
            return Err(Refused::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("could not start the connection: {e}"),
            ));
        }
    };
    let inbox = Inbox {
        events: bridge.events,
        acks: Arc::default(),
    };
    let _ = sink.inbox.set(inbox.clone());
    s.extensions.insert(inbox);
    s.on_fallback(async |_: Queued| {});
    s.on_disconnect(async |s: SocketRef| {
        if let Some(inbox) = s.extensions.remove::<Inbox>() {
            let _ = inbox.events.try_send(ClientEvent::Closed(None));
            if let Ok(mut acks) = inbox.acks.lock() {
                // They hold the socket: dropping them breaks the cycle.
                acks.clear();
            }
        }
    });
    Ok(())
}

/// An event queued to the socket's consumer. Extracted synchronously, in the order the
/// events arrive; the handler that receives it does nothing.
struct Queued;

impl FromMessage<socketioxide::adapter::LocalAdapter> for Queued {
    type Error = Infallible;

    fn from_message(
        s: Arc<Socket>,
        mut v: socketioxide::handler::Value,
        ack_id: Option<i64>,
    ) -> Result<Self, Infallible> {
        let Some(inbox) = s.extensions.get::<Inbox>() else {
            return Ok(Queued);
        };
        let event = Event::from_message_parts(&s, &mut v, &ack_id)
            .map(|e| e.0)
            .unwrap_or_default();
        let Ok(ack) = AckSender::from_message_parts(&s, &mut v, &ack_id);
        let Ok(refusal) = AckSender::from_message_parts(&s, &mut v, &ack_id);
        let Ok(TryData(data)) = TryData::<Value>::from_message_parts(&s, &mut v, &ack_id);
        // Undecodable data reaches the consumer as null, which it refuses with invalid_json.
        let text = incoming(&event, ack_id, &data.unwrap_or(Value::Null));
        if let (Some(id), Ok(mut acks)) = (ack_id, inbox.acks.lock()) {
            acks.insert(id, ack);
        }
        if let Err(flume::TrySendError::Full(_)) =
            inbox.events.try_send(ClientEvent::Text(text.into()))
        {
            // A flood faster than the consumer applies it: refused, not lost silently.
            let error = serde_json::json!({
                "code": ErrorCode::RateLimited,
                "message": "too many events at once; this one was not applied",
            });
            if let Some(id) = ack_id {
                if let Ok(mut acks) = inbox.acks.lock() {
                    acks.remove(&id);
                }
                let _ = refusal.send(&serde_json::json!({ "error": error }));
            } else {
                let _ = s.emit("error", &error);
            }
        }
        Ok(Queued)
    }
}

/// How long a socket whose queue is full may take to make room for a Socket.IO disconnect.
const DISCONNECT_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Hands what the consumer sends to the socket, on the consumer's own task: socketioxide
/// queues and writes by itself, so a task of ours in between would be one more hop per event.
struct SocketSink {
    socket: SocketRef,
    inbox: std::sync::OnceLock<Inbox>,
}

impl SocketSink {
    fn acks(&self) -> Option<std::sync::MutexGuard<'_, HashMap<i64, AckSender>>> {
        self.inbox.get()?.acks.lock().ok()
    }
}

impl OutboundSink for SocketSink {
    fn send(&self, frame: Outbound) -> Result<(), SinkError> {
        let sent = match frame {
            Outbound::Text(t) => match Outgoing::parse(&t) {
                Some(Outgoing::Event { name, data }) => encoded::emit(&self.socket, &t, name, data),
                Some(Outgoing::Ack { id, data }) => {
                    let ack = self.acks().and_then(|mut a| a.remove(&id));
                    match (ack, encoded::raw(data)) {
                        (Some(ack), Some(data)) => ack.send(&*data),
                        _ => Ok(()),
                    }
                }
                None => Ok(()),
            },
            Outbound::Ping => {
                // Engine.IO keeps the connection alive; our idle timeout follows it.
                let event = if self.socket.connected() {
                    ClientEvent::Activity
                } else {
                    ClientEvent::Closed(None)
                };
                if let Some(inbox) = self.inbox.get() {
                    let _ = inbox.events.try_send(event);
                }
                Ok(())
            }
            Outbound::Close(code, _) => {
                if let Some(mut acks) = self.acks() {
                    // They hold the socket: dropping them breaks the cycle.
                    acks.clear();
                }
                // Shutting down: the endpoint closes the transports, so clients reconnect.
                // Otherwise the Socket.IO disconnect is queued now, before the connection
                // ends (a spawned task could run after the transport went, and the client
                // would see a transport close and reconnect); only a full queue waits.
                if code != chat_core::close::GOING_AWAY {
                    let socket = self.socket.clone();
                    if let Err(SocketError::InternalChannelFull) = socket.clone().disconnect() {
                        tokio::spawn(async move { disconnect_when_room(&socket).await });
                    }
                }
                Ok(())
            }
        };
        sent.map_err(|e| match e {
            // Its queue is full: too slow to be served without losses.
            SendError::Socket(SocketError::InternalChannelFull) => SinkError::Full,
            _ => SinkError::Closed,
        })
    }
}

/// Disconnects the socket; a full queue has no room for the disconnect packet, so this waits
/// for the client to take some (a client that takes nothing is closed by Engine.IO's
/// heartbeat meanwhile).
async fn disconnect_when_room(s: &SocketRef) {
    let deadline = tokio::time::Instant::now() + DISCONNECT_WAIT;
    while s.connected() && tokio::time::Instant::now() < deadline {
        match s.clone().disconnect() {
            Err(socketioxide::SocketError::InternalChannelFull) => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            _ => return,
        }
    }
}

/// `/socket.io/…`: the Origin rule of our WebSockets applies to both transports (a
/// cross-site page gets 403); allowed cross-origin pages get CORS headers for polling.
///
/// An Engine.IO handshake (a request without `sid`) carries its guest, from the
/// `chat_guest` cookie or new, in its extensions, which socketioxide keeps with the socket
/// for [`caller`]; a new guest's cookie is set on the handshake's answer, so a browser that
/// reconnects is the same guest.
pub async fn handle<B: ChatBody>(app: &Chat, mut req: Request<B>) -> Resp {
    let Some(Endpoint { service, .. }) = app.socketio.clone() else {
        return text(StatusCode::NOT_FOUND, "Socket.IO is not mounted");
    };
    if app.sockets.origins().check(req.headers()).is_err() {
        return text(
            StatusCode::FORBIDDEN,
            "this origin may not connect here (see --allowed-origins)",
        );
    }
    let origin = req.headers().get(header::ORIGIN).cloned();
    let handshake = req.method() == Method::GET
        && !form_decode(req.uri().query().unwrap_or_default())
            .iter()
            .any(|(k, _)| k == "sid");
    let guest = handshake.then(|| app.guests.guest(req.headers()));
    if let Some(g) = &guest {
        req.extensions_mut().insert(g.clone());
    }
    let mut res = if req.method() == Method::OPTIONS {
        let mut r = Response::new(Full::new(Bytes::new()));
        *r.status_mut() = StatusCode::NO_CONTENT;
        r.headers_mut().insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST"),
        );
        r.headers_mut().insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("content-type"),
        );
        r
    } else {
        // socketioxide keeps the handshake request of every socket for its lifetime.
        match service.call(chat_ws::detach_head(req, &KEPT_HEADERS)).await {
            Ok(res) => {
                let (parts, body) = res.into_parts();
                let bytes = match body.collect().await {
                    Ok(b) => b.to_bytes(),
                    Err(_) => Bytes::new(),
                };
                Response::from_parts(parts, Full::new(bytes))
            }
            Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "socket.io failed"),
        }
    };
    if let Some(g) = &guest {
        if res.status().is_success() || res.status() == StatusCode::SWITCHING_PROTOCOLS {
            guest::set_cookie(res.headers_mut(), g);
        }
    }
    if let Some(origin) = origin {
        res.headers_mut()
            .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        res.headers_mut().insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
        res.headers_mut()
            .append(header::VARY, HeaderValue::from_static("Origin"));
    }
    res
}
