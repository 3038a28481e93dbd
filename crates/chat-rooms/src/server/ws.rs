//! WebSocket routes: authentication, authorization and validation happen here, before the
//! upgrade, so a refused handshake is an HTTP status and never a socket.

use std::sync::Arc;

use crate::{ChatConsumer, InboxConsumer, MuxConsumer};
use chat_core::{Member, RoomName, Sender};
use chat_ws::{form_decode, is_websocket_request};
use http::{HeaderValue, Request, StatusCode, header};
use tracing::Instrument;

use crate::server::access::{Access, ServerAccess, pair_with, room_access};
use crate::server::app::Chat;
use crate::server::auth::{Credential, Guest, Identity, authenticate_with, bind, guest, sender_of};
use crate::server::respond::{ApiError, Resp, text};
use crate::server::trace::{Kind, connection_span};
use chat_store::User;

/// The WebSocket subprotocol of our own protocol. Our clients ask for it, so that with
/// `--compat tutorials` the tutorials' URLs still speak our frames to them.
pub const NATIVE_SUBPROTOCOL: &str = "chat.v1";

/// Whether the handshake offers [`NATIVE_SUBPROTOCOL`].
pub fn offers_native<B>(req: &Request<B>) -> bool {
    req.headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == NATIVE_SUBPROTOCOL)
}

/// Answers an upgrade with our subprotocol when the client offered it: a browser that
/// offers a subprotocol fails the connection unless the server picks one.
async fn upgrade_native<B, C>(req: Request<B>, consumer: C, app: &Chat) -> Resp
where
    B: Send + 'static,
    C: chat_ws::Consumer,
{
    let native = offers_native(&req);
    let mut res = app.sockets.upgrade(req, consumer).await;
    if native && res.status() == StatusCode::SWITCHING_PROTOCOLS {
        res.headers_mut().insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(NATIVE_SUBPROTOCOL),
        );
    }
    res
}

pub fn refuse(e: ApiError) -> Resp {
    text(e.status(), e.message().to_owned())
}

/// Checks shared by every handshake; returns the caller and what identified them.
pub async fn handshake<B>(app: &Chat, req: &Request<B>) -> Result<(Identity, Credential), Resp> {
    if !is_websocket_request(req) {
        return Err(text(
            StatusCode::UPGRADE_REQUIRED,
            "this is a WebSocket endpoint; the pages are /chat/{room}/ and /dm/{user_id}/",
        ));
    }
    if app.sockets.origins().check(req.headers()).is_err() {
        return Err(text(
            StatusCode::FORBIDDEN,
            "this origin may not open WebSockets here (see --allowed-origins)",
        ));
    }
    authenticate_with(app, req)
        .await
        .map_err(|e| refuse(ApiError::store(&e)))
}

/// The guest of a handshake: their id from the `chat_guest` cookie (a new one, with the
/// cookie to set, without it) and their `?name=`, checked (the error says what to fix), or the
/// name generated from their id.
pub fn guest_sender<B>(app: &Chat, req: &Request<B>) -> Result<(Sender, Guest), String> {
    let guest = app.guests.guest(req.headers());
    let query = req.uri().query().map(form_decode).unwrap_or_default();
    let name = query
        .iter()
        .rev()
        .find(|(k, _)| k == "name")
        .map(|(_, n)| n.as_str());
    let sender = guest::sender(&app.config.limits, &guest, name)
        .map_err(|e| format!("invalid name: {e}"))?;
    Ok((sender, guest))
}

/// Gives a guest who came without the guest cookie the one their id was derived from, on the
/// answer that opened their socket, so a browser that keeps it stays the same guest when it
/// reconnects.
pub fn with_guest_cookie(mut res: Resp, guest: Option<&Guest>) -> Resp {
    if let Some(g) = guest {
        if res.status() == StatusCode::SWITCHING_PROTOCOLS {
            guest::set_cookie(res.headers_mut(), g);
        }
    }
    res
}

/// `GET /ws/chat/{room}/`: a socket bound to one public room, for users and (when allowed)
/// guests.
pub async fn chat_room<B: Send + 'static>(app: &Chat, room: &str, req: Request<B>) -> Resp {
    let room = match RoomName::parse(room) {
        Ok(r) if r.pair().is_none() => r,
        Ok(_) => {
            return text(
                StatusCode::FORBIDDEN,
                "private rooms are opened with /ws/dm/{user_id}/",
            );
        }
        Err(e) => return text(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let (identity, credential) = match handshake(app, &req).await {
        Ok(i) => i,
        Err(res) => return res,
    };
    let (sender, guest) = match room_access(app, &identity, &room).await {
        Ok(Access::User(u)) => (sender_of(&u), None),
        Ok(Access::Guest) => match guest_sender(app, &req) {
            Ok((s, g)) => (s, Some(g)),
            Err(e) => return text(StatusCode::BAD_REQUEST, e),
        },
        Err(e) => return refuse(e),
    };
    let span = connection_span(Kind::Room, Some(room.as_str()), Some(&sender));
    let consumer = room_consumer(app, room, sender);
    let res = upgrade_native(req, bind(consumer, &credential), app)
        .instrument(span)
        .await;
    with_guest_cookie(res, guest.as_ref())
}

/// The handshake of a socket for logged-in users only: a visitor gets 401 with `refusal`.
async fn user_handshake<B>(
    app: &Chat,
    req: &Request<B>,
    refusal: &'static str,
) -> Result<(User, Credential), Resp> {
    match handshake(app, req).await? {
        (Identity::User(user), credential) => Ok((user, credential)),
        (Identity::Anonymous, _) => Err(text(StatusCode::UNAUTHORIZED, refusal)),
    }
}

/// `GET /ws/dm/{user_id}/`: the pair room of the logged-in user and `user_id`.
pub async fn pair_room<B: Send + 'static>(app: &Chat, other: &str, req: Request<B>) -> Resp {
    let refusal = "private rooms need an account; log in first";
    let (me, credential) = match user_handshake(app, &req, refusal).await {
        Ok(u) => u,
        Err(res) => return res,
    };
    let me = &me;
    let (pair, _other) = match pair_with(app, me, other).await {
        Ok(p) => p,
        Err(e) => return refuse(e),
    };
    let (room, sender) = (pair.name(), sender_of(me));
    let span = connection_span(Kind::Room, Some(room.as_str()), Some(&sender));
    let consumer = room_consumer(app, room, sender);
    upgrade_native(req, bind(consumer, &credential), app)
        .instrument(span)
        .await
}

/// `GET /ws`: the multiplexed socket; rooms are joined with `join` frames.
pub async fn multiplexed<B: Send + 'static>(app: &Chat, req: Request<B>) -> Resp {
    let (identity, credential) = match handshake(app, &req).await {
        Ok(i) => i,
        Err(res) => return res,
    };
    let (user, guest) = match identity.user() {
        Some(u) => (sender_of(u), None),
        None if app.config.allow_guests => match guest_sender(app, &req) {
            Ok((s, g)) => (s, Some(g)),
            Err(e) => return text(StatusCode::BAD_REQUEST, e),
        },
        None => return text(StatusCode::UNAUTHORIZED, "log in to chat"),
    };
    let access = Arc::new(ServerAccess::new(app));
    let span = connection_span(Kind::Ws, None, Some(&user));
    let consumer = MuxConsumer::new(
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
    let res = upgrade_native(req, bind(consumer, &credential), app)
        .instrument(span)
        .await;
    with_guest_cookie(res, guest.as_ref())
}

/// `GET /ws/inbox/`: the logged-in user's inbox (see [`crate::inbox`]): who of their contacts
/// is online, and when their conversations change.
pub async fn inbox<B: Send + 'static>(app: &Chat, req: Request<B>) -> Resp {
    let refusal = "the inbox needs an account; log in first";
    let (me, credential) = match user_handshake(app, &req, refusal).await {
        Ok(u) => u,
        Err(res) => return res,
    };
    let sender = sender_of(&me);
    let (policy, my_id, my_role) = (app.policy.clone(), me.id, me.role.clone());
    let visible: crate::inbox::Visibility = Arc::new(move |u: &Sender| {
        let me = Member {
            id: my_id,
            role: &my_role,
        };
        u.id.is_some_and(|id| {
            let role = u.role.as_deref().unwrap_or("");
            policy.may_pair(me, Member { id, role })
        })
    });
    let span = connection_span(Kind::Inbox, None, Some(&sender));
    let consumer = InboxConsumer::new(sender, Some(app.presence.clone()), visible);
    upgrade_native(req, bind(consumer, &credential), app)
        .instrument(span)
        .await
}

/// A room-bound consumer for `sender`, with the server's presence and attachments.
fn room_consumer(app: &Chat, room: RoomName, sender: Sender) -> ChatConsumer {
    let consumer = ChatConsumer::new(
        room,
        sender,
        app.messages.clone(),
        app.config.limits.clone(),
    )
    .with_presence(app.presence.clone())
    .with_recent(app.recent.clone());
    match app.attachment_lookup.clone() {
        Some(files) => consumer.with_attachments(files),
        None => consumer,
    }
}
