//! Who is connecting: Channels' `AuthMiddlewareStack` as a trait.
//!
//! An [`Authenticator`] reads a request's head (cookies, headers, query) and answers with the
//! caller's identity, or `None` for a visitor it does not recognise. Authenticators compose:
//! [`Authenticator::or`] tries a second one when the first does not recognise the caller, so
//! a service can accept its own session cookie, then a bearer token, then let guests in, in
//! that order, and each piece is tested on its own.
//!
//! The identity type is the service's own (a user row, a claims struct). Invalid credentials
//! are `Ok(None)`, as Channels gives `AnonymousUser`; only a failure to *check* them (the
//! session store is down) is an [`AuthError`], which a server answers with 503 rather than
//! treating the caller as a guest.
//!
//! ```
//! use chat_ws::{AuthError, AuthFuture, Authenticator, RequestHead};
//!
//! /// `Authorization: Bearer <name>`: a stand-in for a real token check.
//! struct Bearer;
//!
//! impl Authenticator for Bearer {
//!     type Identity = String;
//!     fn authenticate<'a>(&'a self, req: RequestHead<'a>) -> AuthFuture<'a, String> {
//!         let name = req.headers.get("authorization")
//!             .and_then(|v| v.to_str().ok())
//!             .and_then(|v| v.strip_prefix("Bearer "))
//!             .map(str::to_owned);
//!         Box::pin(async move { Ok(name) })
//!     }
//! }
//!
//! /// `?user=<name>`: only for the example.
//! struct Query;
//!
//! impl Authenticator for Query {
//!     type Identity = String;
//!     fn authenticate<'a>(&'a self, req: RequestHead<'a>) -> AuthFuture<'a, String> {
//!         let name = req.uri.query().and_then(|q| q.strip_prefix("user=")).map(str::to_owned);
//!         Box::pin(async move { Ok(name) })
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), AuthError> {
//! let stack = Bearer.or(Query);
//! let req = http::Request::get("/ws?user=ana").body(()).expect("a request");
//! assert_eq!(stack.authenticate((&req).into()).await?, Some("ana".to_owned()));
//! let req = http::Request::get("/ws").body(()).expect("a request");
//! assert_eq!(stack.authenticate((&req).into()).await?, None);
//! # Ok(())
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::request::Parts;
use http::{Extensions, HeaderMap, Method, Request, Uri};

/// What an [`Authenticator`] reads: a request's head, borrowed from an `http::Request` of any
/// body or from axum's `Parts`.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    /// The method.
    pub method: &'a Method,
    /// The URI (path and query).
    pub uri: &'a Uri,
    /// The headers (cookies, `Authorization`).
    pub headers: &'a HeaderMap,
    /// The extensions (a peer address, what an earlier middleware found).
    pub extensions: &'a Extensions,
}

impl<'a, B> From<&'a Request<B>> for RequestHead<'a> {
    fn from(req: &'a Request<B>) -> Self {
        Self {
            method: req.method(),
            uri: req.uri(),
            headers: req.headers(),
            extensions: req.extensions(),
        }
    }
}

impl<'a> From<&'a Parts> for RequestHead<'a> {
    fn from(parts: &'a Parts) -> Self {
        Self {
            method: &parts.method,
            uri: &parts.uri,
            headers: &parts.headers,
            extensions: &parts.extensions,
        }
    }
}

/// What [`Authenticator::authenticate`] returns: boxed, so that authenticators can be kept
/// as `Arc<dyn Authenticator<Identity = I>>` and composed at run time.
pub type AuthFuture<'a, I> =
    Pin<Box<dyn Future<Output = Result<Option<I>, AuthError>> + Send + 'a>>;

/// The credentials could not be checked (not: they were wrong).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// What stores sessions or users did not answer; the caller should get 503 and retry.
    #[error("cannot check credentials now: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl AuthError {
    /// An outage of what checks credentials, with its cause.
    pub fn unavailable(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Unavailable(e.into())
    }
}

/// Identifies the caller of a request from its head.
pub trait Authenticator: Send + Sync + 'static {
    /// Who a recognised caller is.
    type Identity: Send + 'static;

    /// The caller's identity; `Ok(None)` when the request carries no credentials this
    /// authenticator recognises, or invalid ones.
    fn authenticate<'a>(&'a self, req: RequestHead<'a>) -> AuthFuture<'a, Self::Identity>;

    /// This authenticator, then `next` for callers this one does not recognise.
    fn or<B>(self, next: B) -> Or<Self, B>
    where
        Self: Sized,
        B: Authenticator<Identity = Self::Identity>,
    {
        Or { first: self, next }
    }
}

/// Two authenticators in order: see [`Authenticator::or`].
#[derive(Debug, Clone)]
pub struct Or<A, B> {
    first: A,
    next: B,
}

impl<A, B> Authenticator for Or<A, B>
where
    A: Authenticator,
    B: Authenticator<Identity = A::Identity>,
{
    type Identity = A::Identity;

    fn authenticate<'a>(&'a self, req: RequestHead<'a>) -> AuthFuture<'a, Self::Identity> {
        Box::pin(async move {
            match self.first.authenticate(req).await? {
                Some(who) => Ok(Some(who)),
                None => self.next.authenticate(req).await,
            }
        })
    }
}

impl<T: Authenticator + ?Sized> Authenticator for Arc<T> {
    type Identity = T::Identity;

    fn authenticate<'a>(&'a self, req: RequestHead<'a>) -> AuthFuture<'a, Self::Identity> {
        (**self).authenticate(req)
    }
}

impl<T: Authenticator + ?Sized> Authenticator for Box<T> {
    type Identity = T::Identity;

    fn authenticate<'a>(&'a self, req: RequestHead<'a>) -> AuthFuture<'a, Self::Identity> {
        (**self).authenticate(req)
    }
}

/// Recognises nobody: every caller is anonymous. The end of a stack that lets guests in
/// needs nothing; this is for a service with no accounts at all.
#[derive(Debug, Clone, Copy, Default)]
pub struct Anonymous<I>(std::marker::PhantomData<fn() -> I>);

impl<I> Anonymous<I> {
    /// The authenticator.
    pub fn new() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<I: Send + 'static> Authenticator for Anonymous<I> {
    type Identity = I;

    fn authenticate<'a>(&'a self, _req: RequestHead<'a>) -> AuthFuture<'a, I> {
        Box::pin(async { Ok(None) })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Recognises `?as=<n>`, counts its calls, and fails when told to.
    struct Counting {
        calls: AtomicUsize,
        down: bool,
    }

    impl Counting {
        fn new(down: bool) -> Self {
            Self {
                calls: AtomicUsize::new(0),
                down,
            }
        }
    }

    impl Authenticator for Counting {
        type Identity = u32;
        fn authenticate<'a>(&'a self, req: RequestHead<'a>) -> AuthFuture<'a, u32> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            let id = req
                .uri
                .query()
                .and_then(|q| q.strip_prefix("as="))
                .and_then(|v| v.parse().ok());
            let down = self.down;
            Box::pin(async move {
                if down {
                    Err(AuthError::unavailable("the session store is down"))
                } else {
                    Ok(id)
                }
            })
        }
    }

    fn parts(uri: &str) -> Parts {
        http::Request::get(uri)
            .body(())
            .expect("a valid test request")
            .into_parts()
            .0
    }

    fn head(parts: &Parts) -> RequestHead<'_> {
        parts.into()
    }

    #[tokio::test]
    async fn the_first_that_recognises_the_caller_wins() {
        let stack = Arc::new(Counting::new(false)).or(Counting::new(false));
        assert_eq!(
            stack.authenticate(head(&parts("/?as=7"))).await.ok(),
            Some(Some(7))
        );
        assert_eq!(stack.next.calls.load(Ordering::Relaxed), 0, "not asked");
        assert_eq!(stack.authenticate(head(&parts("/"))).await.ok(), Some(None));
        assert_eq!(stack.next.calls.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn an_outage_is_an_error_not_a_guest() {
        let stack = Counting::new(true).or(Counting::new(false));
        let e = stack.authenticate(head(&parts("/?as=7"))).await;
        assert!(matches!(e, Err(AuthError::Unavailable(_))), "{e:?}");
        assert_eq!(stack.next.calls.load(Ordering::Relaxed), 0);
        let boxed: Box<dyn Authenticator<Identity = u32>> = Box::new(Anonymous::new());
        assert_eq!(
            boxed.authenticate(head(&parts("/?as=1"))).await.ok(),
            Some(None)
        );
    }
}
