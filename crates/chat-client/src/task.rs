//! The client's connection task: one socket at a time, rejoin and resend after reconnects.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hasher};

use chat_core::{ErrorCode, RoomName, Seq, ServerFrame, StoredMessage};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::{Auth, ClientConfig, ClientError, Command};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What the client hands to its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A chat message: every seq of every joined room exactly once, in order.
    Message(StoredMessage),
    /// Any other frame: `joined`, `presence`, `typing`, `read`, `error`, …
    Other(ServerFrame),
    /// The connection dropped; the client is reconnecting.
    Disconnected,
    /// The connection is back, rooms rejoined and unacknowledged sends resent.
    Reconnected,
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The cookies the server set on this client's handshakes (`name=value`, attributes
/// dropped), sent back on every later one, as a browser would. This is how a guest stays the
/// same guest across reconnects: the server knows guests by a cookie it sets, not by their
/// name, so without it a message resent after a reconnect would come from a new guest and be
/// stored twice.
#[derive(Debug, Default)]
pub(super) struct Cookies(Vec<(String, String)>);

impl Cookies {
    /// The `Cookie` header to send, if any cookie was set.
    fn header(&self) -> Option<String> {
        (!self.0.is_empty()).then(|| {
            self.0
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    /// Keeps the cookies of a handshake's `Set-Cookie` headers; an empty value removes one.
    fn take_from(&mut self, headers: &tungstenite::http::HeaderMap) {
        let set = headers
            .get_all(tungstenite::http::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok());
        for line in set {
            let pair = line.split(';').next().unwrap_or_default();
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            let (name, value) = (name.trim(), value.trim());
            if name.is_empty() {
                continue;
            }
            self.0.retain(|(k, _)| k != name);
            if !value.is_empty() {
                self.0.push((name.to_owned(), value.to_owned()));
            }
        }
    }
}

/// Opens one connection with the configured credentials and the cookies the server set.
pub(super) async fn open(
    config: &ClientConfig,
    cookies: &mut Cookies,
) -> Result<Socket, tungstenite::Error> {
    let sep = if config.url.contains('?') { '&' } else { '?' };
    let url = match &config.auth {
        Auth::Guest(name) => format!("{}{sep}name={}", config.url, encode(name)),
        Auth::Session(s) => format!("{}{sep}session={}", config.url, encode(s)),
        Auth::Bearer(_) => config.url.clone(),
    };
    let mut req = url.into_client_request()?;
    if let Auth::Bearer(token) = &config.auth {
        if let Ok(v) = format!("Bearer {token}").parse() {
            req.headers_mut().insert("authorization", v);
        }
    }
    if let Some(v) = cookies.header().and_then(|c| c.parse().ok()) {
        req.headers_mut().insert("cookie", v);
    }
    let (socket, res) = tokio_tungstenite::connect_async(req).await?;
    cookies.take_from(res.headers());
    Ok(socket)
}

struct PendingSend {
    room: RoomName,
    body: String,
    reply: oneshot::Sender<Result<Seq, ClientError>>,
}

struct State {
    /// Joined rooms and the last seq seen in each (`None`: not known yet).
    rooms: HashMap<RoomName, Option<Seq>>,
    joins: HashMap<RoomName, oneshot::Sender<Result<(), ClientError>>>,
    /// Unacknowledged sends by client id, in send order (ids sort by a counter).
    sends: BTreeMap<String, PendingSend>,
    prefix: String,
    next: u64,
    events: mpsc::UnboundedSender<Event>,
}

impl State {
    fn client_id(&mut self) -> String {
        self.next += 1;
        format!("{}-{:012}", self.prefix, self.next)
    }

    fn emit(&self, e: Event) {
        let _ = self.events.send(e);
    }

    fn on_frame(&mut self, frame: ServerFrame) {
        match frame {
            ServerFrame::Message(m) => {
                let Some(last) = self.rooms.get_mut(&m.room) else {
                    return;
                };
                if last.is_some_and(|l| m.seq <= l) {
                    return; // already seen (a replay after a reconnect)
                }
                *last = Some(m.seq);
                self.emit(Event::Message(m));
            }
            ServerFrame::Joined {
                ref room, last_seq, ..
            } => {
                if let Some(last @ None) = self.rooms.get_mut(room) {
                    *last = Some(last_seq);
                }
                if let Some(reply) = self.joins.remove(room) {
                    let _ = reply.send(Ok(()));
                }
                self.emit(Event::Other(frame));
            }
            ServerFrame::Ack {
                ref client_id, seq, ..
            } => {
                if let Some(p) = client_id.as_ref().and_then(|id| self.sends.remove(id)) {
                    let _ = p.reply.send(Ok(seq));
                }
            }
            ServerFrame::Error {
                code,
                ref message,
                ref room,
                ref client_id,
            } => {
                let refused = |m: &str| ClientError::Refused {
                    code,
                    message: m.to_owned(),
                };
                if let Some(room) = room {
                    if let Some(reply) = self.joins.remove(room) {
                        self.rooms.remove(room);
                        let _ = reply.send(Err(refused(message)));
                    } else if matches!(
                        code,
                        ErrorCode::RateLimited
                            | ErrorCode::StoreUnavailable
                            | ErrorCode::EmptyMessage
                            | ErrorCode::TooLarge
                            | ErrorCode::NotJoined
                    ) {
                        // The error names the refused send; without a client_id (an older
                        // server) the oldest unacknowledged send to that room is the one: the
                        // server answers frames in order.
                        let refused_id = client_id.clone().or_else(|| {
                            self.sends
                                .iter()
                                .find(|(_, p)| &p.room == room)
                                .map(|(id, _)| id.clone())
                        });
                        if let Some(p) = refused_id.and_then(|id| self.sends.remove(&id)) {
                            let _ = p.reply.send(Err(refused(message)));
                        }
                    }
                }
                self.emit(Event::Other(frame));
            }
            ServerFrame::Pong => {}
            other => self.emit(Event::Other(other)),
        }
    }
}

fn join_frame(room: &RoomName, since: Option<Seq>) -> Message {
    let v = match since {
        Some(s) => json!({"type": "join", "room": room, "since": s}),
        None => json!({"type": "join", "room": room}),
    };
    Message::Text(v.to_string().into())
}

fn message_frame(room: &RoomName, body: &str, client_id: &str) -> Message {
    let v = json!({"type": "message", "room": room, "body": body, "client_id": client_id});
    Message::Text(v.to_string().into())
}

/// Runs until the client is closed or dropped.
pub(super) async fn run(
    config: ClientConfig,
    mut cookies: Cookies,
    mut socket: Socket,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<Event>,
) {
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let mut state = State {
        rooms: HashMap::new(),
        joins: HashMap::new(),
        sends: BTreeMap::new(),
        prefix: format!("rc{random:x}"),
        next: 0,
        events,
    };
    loop {
        // Connected: serve commands and frames until the socket drops.
        loop {
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    None | Some(Command::Close) => {
                        let _ = socket.close(None).await;
                        return;
                    }
                    Some(Command::Join(room, since, reply)) => {
                        state.rooms.insert(room.clone(), since);
                        state.joins.insert(room.clone(), reply);
                        if socket.send(join_frame(&room, since)).await.is_err() {
                            break;
                        }
                    }
                    Some(Command::Send(room, body, reply)) => {
                        let id = state.client_id();
                        let frame = message_frame(&room, &body, &id);
                        state.sends.insert(id, PendingSend { room, body, reply });
                        if socket.send(frame).await.is_err() {
                            break;
                        }
                    }
                },
                frame = socket.next() => match frame {
                    Some(Ok(Message::Text(t))) => match serde_json::from_str::<ServerFrame>(&t) {
                        Ok(f) => state.on_frame(f),
                        Err(e) => tracing::warn!(error = %e, "unreadable frame from the server"),
                    },
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {}
                },
            }
        }
        state.emit(Event::Disconnected);
        // Reconnect with backoff; commands wait in the queue meanwhile.
        let mut backoff = config.min_backoff;
        socket = loop {
            if state.events.is_closed() {
                return;
            }
            match open(&config, &mut cookies).await {
                Ok(s) => break s,
                Err(e) => {
                    tracing::debug!(error = %e, retry_in = ?backoff, "reconnect failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(config.max_backoff);
                }
            }
        };
        // Rejoin from the last seq seen, then resend what was never acknowledged.
        let mut ok = true;
        for (room, last) in &state.rooms {
            ok &= socket.send(join_frame(room, *last)).await.is_ok();
        }
        for (id, p) in &state.sends {
            ok &= socket
                .send(message_frame(&p.room, &p.body, id))
                .await
                .is_ok();
        }
        if ok {
            state.emit(Event::Reconnected);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use tokio_tungstenite::tungstenite::http::{HeaderMap, HeaderValue, header};

    use super::Cookies;

    fn set(lines: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for l in lines {
            h.append(header::SET_COOKIE, HeaderValue::from_str(l).unwrap());
        }
        h
    }

    #[test]
    fn set_cookies_come_back_without_their_attributes() {
        let mut jar = Cookies::default();
        assert_eq!(jar.header(), None);
        jar.take_from(&set(&[
            "chat_guest=abc; Path=/; HttpOnly; SameSite=Lax; Max-Age=31536000",
            "other=1",
            "broken",
        ]));
        assert_eq!(jar.header().as_deref(), Some("chat_guest=abc; other=1"));
        jar.take_from(&set(&["chat_guest=def; Path=/", "other=; Max-Age=0"]));
        assert_eq!(jar.header().as_deref(), Some("chat_guest=def"));
        jar.take_from(&HeaderMap::new());
        assert_eq!(jar.header().as_deref(), Some("chat_guest=def"), "kept");
    }
}
