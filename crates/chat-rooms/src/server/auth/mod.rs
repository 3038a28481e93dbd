//! Who is asking: a session cookie, a `?session=` parameter carrying the cookie's value, or
//! an `Authorization: Bearer` token, in that order. Anything else is anonymous (a guest, where
//! guests are allowed).

pub mod guest;
pub mod password;
pub mod session;
pub mod token;

use chat_core::{Sender, StoreError};
use chat_store::User;
use http::header;

use crate::server::app::Chat;
pub use guest::{Guest, GuestKeys};
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

/// The token of an `Authorization: Bearer <token>` header, if the request has one (a header
/// that is not visible ASCII is no token).
pub fn bearer_token(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// Identifies the caller. A store outage is an error (the caller answers 503), never a
/// silent downgrade to anonymous.
pub async fn authenticate<B>(app: &Chat, req: &http::Request<B>) -> Result<Identity, StoreError> {
    let bearer = bearer_token(req.headers());
    identify(app, session_value(req).as_deref(), bearer).await
}

/// [`authenticate`], with the credential that identified the caller.
pub async fn authenticate_with<B>(
    app: &Chat,
    req: &http::Request<B>,
) -> Result<(Identity, Credential), StoreError> {
    let bearer = bearer_token(req.headers());
    identify_with(app, session_value(req).as_deref(), bearer).await
}

/// Identifies the caller from a session value (a cookie's) and a bearer token, in that order;
/// invalid or unknown credentials are anonymous.
pub async fn identify(
    app: &Chat,
    session: Option<&str>,
    bearer: Option<&str>,
) -> Result<Identity, StoreError> {
    Ok(identify_with(app, session, bearer).await?.0)
}

/// What a caller was identified by: what ends a socket they open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A session (its id's hash): a logout ends it.
    Session(String),
    /// A bearer token valid until this Unix second.
    Token(i64),
    /// Nothing (a guest).
    None,
}

/// The session group that hears a session's end, on every node.
pub fn session_group(id_hash: &str) -> Option<chat_core::GroupName> {
    chat_core::GroupName::parse(&format!("session.{id_hash}")).ok()
}

/// [`identify`], with the credential that identified the caller.
pub async fn identify_with(
    app: &Chat,
    session: Option<&str>,
    bearer: Option<&str>,
) -> Result<(Identity, Credential), StoreError> {
    if let Some(value) = session {
        if let Some(id) = app.sessions.verify(value) {
            let hash = SessionKeys::id_hash(&id);
            if let Some(user) = app.store.session_user(&hash).await? {
                return Ok((Identity::User(user), Credential::Session(hash)));
            }
        }
    }
    if let Some(t) = bearer {
        let now = chat_core::Timestamp::now().unix_millis() / 1_000;
        if let Some((id, expires)) = token::verify(&app.config.secret_key, t.trim(), now) {
            if let Some(user) = app.store.user(id).await? {
                return Ok((Identity::User(user), Credential::Token(expires)));
            }
        }
    }
    Ok((Identity::Anonymous, Credential::None))
}

/// Binds a socket's consumer to the credential it was opened with: a logout of its session
/// (on any node) or its token's expiry closes it (`chat_ws::SESSION_ENDED_CODE`).
pub fn bind<C: chat_ws::Consumer>(
    consumer: C,
    credential: &Credential,
) -> chat_ws::SessionBound<C> {
    let bound = chat_ws::SessionBound::new(consumer);
    match credential {
        Credential::Session(hash) => match session_group(hash) {
            Some(group) => bound.ended_by(group),
            None => bound,
        },
        Credential::Token(expires) => {
            let now = chat_core::Timestamp::now().unix_millis() / 1_000;
            let left = u64::try_from(expires.saturating_sub(now)).unwrap_or(0);
            bound.expires_at(tokio::time::Instant::now() + std::time::Duration::from_secs(left))
        }
        Credential::None => bound,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use proptest::prelude::*;

    use super::*;

    fn request(headers: &[(http::HeaderName, http::HeaderValue)], uri: &str) -> http::Request<()> {
        let mut req = http::Request::builder().uri(uri).body(()).unwrap();
        for (k, v) in headers {
            req.headers_mut().append(k.clone(), v.clone());
        }
        req
    }

    proptest! {
        /// Any bytes a client can put in an `Authorization` or `Cookie` header, and any query,
        /// are read without a panic.
        #[test]
        fn any_credentials_are_read(
            auth in prop::collection::vec(any::<u8>(), 0..80),
            cookie in prop::collection::vec(any::<u8>(), 0..80),
            query in "[A-Za-z0-9%&=+;._~!$'()*,:@/?-]{0,60}",
        ) {
            let mut headers = Vec::new();
            for (name, bytes) in [(header::AUTHORIZATION, auth), (header::COOKIE, cookie)] {
                if let Ok(v) = http::HeaderValue::from_bytes(&bytes) {
                    headers.push((name, v));
                }
            }
            let req = request(&headers, &format!("/?{query}"));
            let _ = bearer_token(req.headers());
            let _ = session_value(&req);
        }

        /// The token after `Bearer ` is taken as it is.
        #[test]
        fn bearer_tokens_are_read_back(token in "[!-~]{0,80}") {
            let v = http::HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
            let req = request(&[(header::AUTHORIZATION, v)], "/");
            prop_assert_eq!(bearer_token(req.headers()), Some(token.as_str()));
        }

        /// A signed session value travels in the `session` query parameter, encoded as a
        /// form would, and comes back out as it went in.
        #[test]
        fn the_session_query_parameter_round_trips(value in "[ -~]{1,80}", other in "[a-z]{1,8}") {
            let query = form_urlencoded::Serializer::new(String::new())
                .append_pair(&format!("k_{other}"), "x")
                .append_pair("session", &value)
                .finish();
            let req = request(&[], &format!("/ws/?{query}"));
            prop_assert_eq!(session_value(&req), Some(value));
        }
    }
}
