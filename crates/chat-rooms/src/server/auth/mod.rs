//! Who is asking. By default: a session cookie, a `?session=` parameter carrying the cookie's
//! value, or an `Authorization: Bearer` token, in that order ([`SessionAuth`], then
//! [`TokenAuth`]). Anything else is anonymous (a guest, where guests are allowed).
//!
//! A service with its own login replaces the stack with its own
//! [`chat_ws::Authenticator`] returning [`Authenticated`] (in
//! [`ChatConfig::authenticator`](crate::server::ChatConfig::authenticator)); the users it
//! names must exist in the store for pair rooms and contacts to find them.

pub mod guest;
pub mod password;
pub mod session;
pub mod token;

use std::sync::Arc;

use chat_core::{Sender, StoreError};
use chat_store::{Store, User};
use chat_ws::{AuthError, AuthFuture, Authenticator, RequestHead};
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

/// The session value a request carries: the cookie, else the `session` query parameter
/// (Socket.IO clients: `session_key`, as seed 001 passes it).
pub fn session_value(req: RequestHead<'_>) -> Option<String> {
    SessionKeys::from_cookie_header(req.headers).or_else(|| {
        let query = req.uri.query().map(chat_ws::form_decode)?;
        ["session", "session_key"].iter().find_map(|key| {
            query
                .iter()
                .rev()
                .find(|(k, v)| k == key && !v.is_empty())
                .map(|(_, v)| v.clone())
        })
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

/// Identifies the caller. An outage of what checks credentials is an error (the caller
/// answers 503), never a silent downgrade to anonymous.
pub async fn authenticate<B>(app: &Chat, req: &http::Request<B>) -> Result<Identity, StoreError> {
    Ok(authenticate_with(app, req).await?.0)
}

/// [`authenticate`], with the credential that identified the caller.
pub async fn authenticate_with<B>(
    app: &Chat,
    req: &http::Request<B>,
) -> Result<(Identity, Credential), StoreError> {
    authenticate_head(app, req.into()).await
}

/// [`authenticate_with`] for a request head.
pub async fn authenticate_head(
    app: &Chat,
    head: RequestHead<'_>,
) -> Result<(Identity, Credential), StoreError> {
    match app.authenticator.authenticate(head).await {
        Ok(Some(a)) => Ok((Identity::User(a.user), a.credential)),
        Ok(None) => Ok((Identity::Anonymous, Credential::None)),
        Err(e) => Err(StoreError::Unavailable(e.to_string())),
    }
}

/// A caller an authenticator recognised: a user of the store, and what identified them
/// (which decides what ends their sockets).
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// The user.
    pub user: User,
    /// What identified them: a session (a logout ends its sockets), a token (its expiry
    /// does), or [`Credential::None`] for an embedder's own login.
    pub credential: Credential,
}

/// What the chat authenticates callers with.
pub type ChatAuthenticator = Arc<dyn Authenticator<Identity = Authenticated>>;

/// Our session: the signed `chat_session` cookie, or its value in `?session=` (or
/// `?session_key=`), of a session the store knows.
#[derive(Clone)]
pub struct SessionAuth {
    keys: SessionKeys,
    store: Store,
}

impl SessionAuth {
    /// Sessions signed with `secret_key` (cookies `Secure` when `secure_cookies`) in `store`.
    pub fn new(secret_key: &str, secure_cookies: bool, store: Store) -> Self {
        Self {
            keys: SessionKeys::new(secret_key, secure_cookies),
            store,
        }
    }
}

impl Authenticator for SessionAuth {
    type Identity = Authenticated;

    fn authenticate<'a>(&'a self, req: RequestHead<'a>) -> AuthFuture<'a, Authenticated> {
        let id = session_value(req).and_then(|value| self.keys.verify(&value));
        Box::pin(async move {
            let Some(id) = id else { return Ok(None) };
            let hash = SessionKeys::id_hash(&id);
            let user = self
                .store
                .session_user(&hash)
                .await
                .map_err(AuthError::unavailable)?;
            Ok(user.map(|user| Authenticated {
                user,
                credential: Credential::Session(hash),
            }))
        })
    }
}

/// Our bearer tokens (`chat-server token issue`) in `Authorization: Bearer <token>`. (Not in
/// the query of our own routes, where proxies would log them; Socket.IO's handshake passes
/// `query.token` or `auth.token` here as the header.)
#[derive(Clone)]
pub struct TokenAuth {
    secret_key: Arc<str>,
    store: Store,
}

impl TokenAuth {
    /// Tokens signed with `secret_key`, for users of `store`.
    pub fn new(secret_key: &str, store: Store) -> Self {
        Self {
            secret_key: secret_key.into(),
            store,
        }
    }
}

impl Authenticator for TokenAuth {
    type Identity = Authenticated;

    fn authenticate<'a>(&'a self, req: RequestHead<'a>) -> AuthFuture<'a, Authenticated> {
        let now = chat_core::Timestamp::now().unix_millis() / 1_000;
        let verified =
            bearer_token(req.headers).and_then(|t| token::verify(&self.secret_key, t.trim(), now));
        Box::pin(async move {
            let Some((id, expires)) = verified else {
                return Ok(None);
            };
            let user = self.store.user(id).await.map_err(AuthError::unavailable)?;
            Ok(user.map(|user| Authenticated {
                user,
                credential: Credential::Token(expires),
            }))
        })
    }
}

/// The default stack: [`SessionAuth`], then [`TokenAuth`].
pub fn default_authenticator(
    secret_key: &str,
    secure_cookies: bool,
    store: &Store,
) -> ChatAuthenticator {
    Arc::new(
        SessionAuth::new(secret_key, secure_cookies, store.clone())
            .or(TokenAuth::new(secret_key, store.clone())),
    )
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
            let _ = session_value((&req).into());
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
            prop_assert_eq!(session_value((&req).into()), Some(value));
        }
    }
}
