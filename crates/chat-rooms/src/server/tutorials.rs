//! `--compat tutorials`: the Channels tutorials' URLs, speaking exactly their pages' frames
//! (see `chat_ws::TutorialConsumer`). The same rooms, store, authorization and limits as
//! every other socket; only the frames differ.

use crate::{Tutorial, TutorialConsumer};
use chat_core::{RoomName, Sender};
use http::{Request, StatusCode};
use tracing::Instrument;

use crate::server::access::{Access, pair_with, room_access};
use crate::server::app::Chat;
use crate::server::auth::{Credential, bind, sender_of};
use crate::server::respond::{Resp, text};
use crate::server::trace::{Kind, connection_span};
use crate::server::ws::{guest_sender, handshake, refuse, with_guest_cookie};

async fn run<B: Send + 'static>(
    app: &Chat,
    tutorial: Tutorial,
    (room, user, credential): (RoomName, Sender, Credential),
    req: Request<B>,
) -> Resp {
    let span = connection_span(Kind::Tutorial, Some(room.as_str()), Some(&user));
    let consumer = TutorialConsumer::new(
        tutorial,
        room,
        user,
        app.messages.clone(),
        app.config.limits.clone(),
    )
    .with_utc_offset(app.config.utc_offset)
    .with_presence(app.presence.clone())
    .with_recent(app.recent.clone());
    let consumer = bind(consumer, &credential);
    app.sockets.upgrade(req, consumer).instrument(span).await
}

/// `GET /ws/chat/{user_id}/` (seed 000): the logged-in user's pair room with `user_id`, the
/// same room as `/ws/dm/{user_id}/`. A visitor who is not logged in is refused, as the
/// tutorial's consumer closes before accepting.
pub async fn pair_chat<B: Send + 'static>(app: &Chat, other: &str, req: Request<B>) -> Resp {
    let (identity, credential) = match handshake(app, &req).await {
        Ok(i) => i,
        Err(res) => return res,
    };
    let Some(me) = identity.user() else {
        return text(
            StatusCode::FORBIDDEN,
            "log in first: this conversation is private",
        );
    };
    let (pair, _other) = match pair_with(app, me, other).await {
        Ok(p) => p,
        Err(e) => return refuse(e),
    };
    let who = (pair.name(), sender_of(me), credential);
    run(app, Tutorial::PairChat, who, req).await
}

/// `GET /ws/chat/{room}` and `/ws/chat/{room}/` (seeds 002 and 004), or `/ws/socket-server/`
/// (seed 003, the room `test`): a public room for users and guests. The tutorials' `?user=`
/// identifies nobody: identity comes from the session, and a guest is their `chat_guest`
/// cookie's guest (or a new one) with a name (`?name=`, or one generated from their id).
pub async fn public_room<B: Send + 'static>(
    app: &Chat,
    tutorial: Tutorial,
    room: &str,
    req: Request<B>,
) -> Resp {
    let room = match RoomName::parse(room) {
        Ok(r) if r.pair().is_none() => r,
        Ok(_) => {
            return text(
                StatusCode::FORBIDDEN,
                "private rooms are opened with /ws/chat/{user_id}/",
            );
        }
        Err(e) => return text(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let (identity, credential) = match handshake(app, &req).await {
        Ok(i) => i,
        Err(res) => return res,
    };
    let (user, guest) = match room_access(app, &identity, &room).await {
        Ok(Access::User(u)) => (sender_of(&u), None),
        Ok(Access::Guest) => match guest_sender(app, &req) {
            Ok((s, g)) => (s, Some(g)),
            Err(e) => return text(StatusCode::BAD_REQUEST, e),
        },
        Err(e) => return refuse(e),
    };
    let res = run(app, tutorial, (room, user, credential), req).await;
    with_guest_cookie(res, guest.as_ref())
}
