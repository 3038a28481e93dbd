//! Who a Socket.IO connection is, from its handshake: the same credentials as our sockets
//! (session cookie or key, bearer token), else a guest; and why it may be refused.

use chat_core::Sender;
use chat_ws::form_decode;
use http::{StatusCode, header};
use serde_json::Value;
use socketioxide::extract::SocketRef;

use crate::server::app::Chat;
use crate::server::auth::{Credential, Guest, Identity, authenticate_head, guest, sender_of};

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
    let parts = s.req_parts();
    let auth_str = |k: &str| auth.get(k).and_then(Value::as_str).map(str::to_owned);
    // A token in the query or the handshake's `auth` is what a header would carry: the
    // authenticator reads it there.
    let mut headers = parts.headers.clone();
    if let Some(token) = query(s, "token").or_else(|| auth_str("token"))
        && let Ok(value) = http::HeaderValue::from_str(&format!("Bearer {token}"))
    {
        headers.insert(header::AUTHORIZATION, value);
    }
    let head = chat_ws::RequestHead {
        method: &parts.method,
        uri: &parts.uri,
        headers: &headers,
        extensions: &parts.extensions,
    };
    let (identity, credential) = authenticate_head(app, head).await.map_err(|e| {
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
                .map_err(|e| Refused::new(StatusCode::BAD_REQUEST, format!("invalid name: {e}")))
        }
    }?;
    Ok((user, credential))
}
