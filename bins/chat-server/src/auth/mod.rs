//! Who is asking: a session cookie, a `?session=` parameter carrying the cookie's value, or
//! an `Authorization: Bearer` token, in that order. Anything else is anonymous (a guest, where
//! guests are allowed).

pub mod password;
pub mod session;
pub mod token;

use chat_core::{Sender, StoreError};
use chat_store::User;
use http::header;

use crate::app::App;
pub use session::SessionKeys;

/// The caller of a request.
#[derive(Debug, Clone)]
pub enum Identity {
    /// A logged-in user.
    User(User),
    /// No valid credentials.
    Anonymous,
}

impl Identity {
    /// The user, if any.
    pub fn user(&self) -> Option<&User> {
        match self {
            Self::User(u) => Some(u),
            Self::Anonymous => None,
        }
    }
}

/// A user as the protocol shows them (`sender`, `user` fields).
pub fn sender_of(user: &User) -> Sender {
    let role = (!user.role.is_empty()).then(|| user.role.clone());
    Sender::user(user.id, user.display_name.clone(), role)
}

/// The session value a request carries: the cookie, else the `session` query parameter.
pub fn session_value<B>(req: &http::Request<B>) -> Option<String> {
    SessionKeys::from_cookie_header(req.headers()).or_else(|| {
        req.uri()
            .query()
            .map(chat_ws::form_decode)
            .and_then(|q| q.into_iter().find(|(k, _)| k == "session").map(|(_, v)| v))
    })
}

/// Identifies the caller. A store outage is an error (the caller answers 503), never a
/// silent downgrade to anonymous.
pub async fn authenticate<B>(app: &App, req: &http::Request<B>) -> Result<Identity, StoreError> {
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    identify(app, session_value(req).as_deref(), bearer).await
}

/// Identifies the caller from a session value (a cookie's) and a bearer token, in that order;
/// invalid or unknown credentials are anonymous.
pub async fn identify(
    app: &App,
    session: Option<&str>,
    bearer: Option<&str>,
) -> Result<Identity, StoreError> {
    if let Some(value) = session {
        if let Some(id) = app.sessions.verify(value) {
            if let Some(user) = app.store.session_user(&SessionKeys::id_hash(&id)).await? {
                return Ok(Identity::User(user));
            }
        }
    }
    if let Some(t) = bearer {
        let now = chat_core::Timestamp::now().unix_millis() / 1_000;
        if let Some(id) = token::verify(&app.config.secret_key, t.trim(), now) {
            if let Some(user) = app.store.user(id).await? {
                return Ok(Identity::User(user));
            }
        }
    }
    Ok(Identity::Anonymous)
}
