//! WebSocket routes: authorization and validation happen here, before the upgrade, so a
//! refused handshake is an HTTP status and never a socket.

use chat_core::{RoomName, Sender};
use chat_ws::{ChatConsumer, form_decode, is_websocket_request};
use http::{Request, StatusCode};

use crate::app::App;
use crate::respond::{Resp, text};

/// `GET /ws/chat/{room}/`: a socket bound to one public room.
pub async fn chat_room<B: Send + 'static>(app: &App, room: &str, req: Request<B>) -> Resp {
    if !is_websocket_request(&req) {
        return text(
            StatusCode::UPGRADE_REQUIRED,
            "this is a WebSocket endpoint; the room page is /chat/{room}/",
        );
    }
    let room = match RoomName::parse(room) {
        Ok(r) => r,
        Err(e) => return text(StatusCode::BAD_REQUEST, e.to_string()),
    };
    if room.pair().is_some() {
        return text(
            StatusCode::FORBIDDEN,
            "private rooms are opened with /ws/dm/{user_id}/",
        );
    }
    if !crate::origin::allowed(req.headers(), &app.config.settings.allowed_origins) {
        return text(
            StatusCode::FORBIDDEN,
            "this origin may not open WebSockets here (see --allowed-origins)",
        );
    }
    if !app.config.settings.allow_guests {
        return text(StatusCode::UNAUTHORIZED, "log in to join rooms");
    }
    let query = req.uri().query().map(form_decode).unwrap_or_default();
    let name = query
        .iter()
        .rev()
        .find(|(k, _)| k == "name")
        .map(|(_, v)| v.as_str());
    let name = match name {
        Some(n) => match app.config.limits.check_guest_name(n) {
            Ok(n) => n,
            Err(e) => return text(StatusCode::BAD_REQUEST, format!("invalid name: {e}")),
        },
        None => format!("guest-{:04}", rand::random::<u16>() % 10_000),
    };
    let consumer = ChatConsumer::new(
        room,
        Sender::guest(name),
        app.store.clone(),
        app.config.limits.clone(),
    );
    chat_ws::upgrade(req, consumer, app.layer.clone(), app.connections.clone()).await
}

/// `GET /ws/dm/{user_id}/`: pair rooms need accounts, which this server does not have yet.
pub fn pair_room() -> Resp {
    text(
        StatusCode::UNAUTHORIZED,
        "private rooms need an account; log in first",
    )
}
