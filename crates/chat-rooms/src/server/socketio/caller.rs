//! Who a Socket.IO connection is, from its handshake: the same credentials as our sockets
//! (session cookie or key, bearer token), else a guest; and why it may be refused.

use chat_core::Sender;
use chat_ws::form_decode;
use http::{StatusCode, header};
use serde_json::Value;
use socketioxide::extract::SocketRef;

use crate::server::app::Chat;
use crate::server::auth::{
    Credential, Guest, Identity, SessionKeys, guest, identify_with, sender_of,
};

/// Why a Socket.IO connection was refused (the client's `connect_error` message), and the
/// HTTP status a WebSocket handshake would have got for it (for the refused-handshakes
/// metric: a Socket.IO refusal comes after its HTTP handshake succeeded).
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub(super) struct Refused {
    pub(super) status: StatusCode,
    reason: String,
}

impl Refused {
    pub(super) fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.into(),
        }
    }
}

/// A query parameter of the handshake.
fn query(s: &SocketRef, key: &str) -> Option<String> {
    let q = s.req_parts().uri.query()?;
    form_decode(q)
        .into_iter()
        .rev()
        .find(|(k, v)| k == key && !v.is_empty())
        .map(|(_, v)| v)
}

/// Who connects: the session cookie, `query.session_key` (or `session`), then a bearer
/// token (`query.token`, `auth.token`, or the `Authorization` header); otherwise the guest of
/// the handshake's `chat_guest` cookie (or a new one), named by `query.name` or `auth.name`.
pub(super) async fn caller(
    app: &Chat,
    s: &SocketRef,
    auth: &Value,
) -> Result<(Sender, Credential), Refused> {
    let headers = &s.req_parts().headers;
    let session = SessionKeys::from_cookie_header(headers)
        .or_else(|| query(s, "session_key"))
        .or_else(|| query(s, "session"));
    let auth_str = |k: &str| auth.get(k).and_then(Value::as_str).map(str::to_owned);
    let bearer = query(s, "token").or_else(|| auth_str("token")).or_else(|| {
        let h = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        h.strip_prefix("Bearer ").map(str::to_owned)
    });
    let (identity, credential) = identify_with(app, session.as_deref(), bearer.as_deref())
        .await
        .map_err(|e| {
            Refused::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the store is unavailable: {e}"),
            )
        })?;
    let user = match identity {
        Identity::User(u) => Ok(sender_of(&u)),
        Identity::Anonymous if !app.config.allow_guests => {
            Err(Refused::new(StatusCode::UNAUTHORIZED, "log in to chat"))
        }
        Identity::Anonymous => {
            // `handle` put the handshake's guest there; without it, a guest of one connection.
            let guest = s
                .req_parts()
                .extensions
                .get::<Guest>()
                .cloned()
                .unwrap_or_else(|| app.guests.guest(&http::HeaderMap::new()));
            let name = query(s, "name").or_else(|| auth_str("name"));
            guest::sender(&app.config.limits, &guest, name.as_deref())
                .map_err(|e| Refused::new(StatusCode::BAD_REQUEST, e))
        }
    }?;
    Ok((user, credential))
}
