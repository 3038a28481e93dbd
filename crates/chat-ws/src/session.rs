//! `SessionBound`: a socket lives no longer than the credentials it was opened with. A logout
//! (on any node: the channel layer carries it) or a token's expiry closes it, with
//! [`SESSION_ENDED_CODE`], whatever consumer it runs.

use bytes::Bytes;
use chat_core::{GroupName, LayerMessage};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::consumer::{Consumer, ConsumerError};
use crate::context::Context;

/// Layer message type that ends every socket of a session: send it to the session's group.
pub const SESSION_ENDED: &str = "session.ended";

/// The close code of a socket whose session ended (logout, revocation or expiry). A client
/// should log in again rather than reconnect with the same credentials.
pub const SESSION_ENDED_CODE: u16 = 4001;

/// Wraps a consumer so that its socket closes when its session ends.
pub struct SessionBound<C> {
    inner: C,
    group: Option<GroupName>,
    expires: Option<Instant>,
}

impl<C: Consumer> SessionBound<C> {
    /// `inner`, bound to nothing yet.
    pub fn new(inner: C) -> Self {
        Self {
            inner,
            group: None,
            expires: None,
        }
    }

    /// Closes the socket when a [`SESSION_ENDED`] message reaches `group` (the session's).
    pub fn ended_by(mut self, group: GroupName) -> Self {
        self.group = Some(group);
        self
    }

    /// Closes the socket at `at` (the expiry of the token it was opened with).
    pub fn expires_at(mut self, at: Instant) -> Self {
        self.expires = Some(at);
        self
    }

    fn expired(&self) -> bool {
        self.expires.is_some_and(|at| at <= Instant::now())
    }
}

impl<C: Consumer> Consumer for SessionBound<C> {
    async fn connect(&mut self, cx: &mut Context) -> Result<(), ConsumerError> {
        if let Some(group) = &self.group {
            cx.group_add(group).await?;
        }
        self.inner.connect(cx).await
    }

    async fn opened(&mut self, cx: &mut Context) -> Result<(), ConsumerError> {
        self.inner.opened(cx).await
    }

    async fn receive_text(&mut self, cx: &mut Context, text: &str) -> Result<(), ConsumerError> {
        self.inner.receive_text(cx, text).await
    }

    async fn receive_texts(
        &mut self,
        cx: &mut Context,
        texts: Vec<Utf8Bytes>,
    ) -> Result<(), ConsumerError> {
        self.inner.receive_texts(cx, texts).await
    }

    async fn receive_binary(&mut self, cx: &mut Context, data: Bytes) -> Result<(), ConsumerError> {
        self.inner.receive_binary(cx, data).await
    }

    async fn handle(&mut self, cx: &mut Context, msg: LayerMessage) -> Result<(), ConsumerError> {
        if msg.kind() == SESSION_ENDED {
            cx.close(SESSION_ENDED_CODE, "logged out");
            return Ok(());
        }
        self.inner.handle(cx, msg).await
    }

    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn next_timer(&self) -> Option<Instant> {
        match (self.inner.next_timer(), self.expires) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    async fn on_timer(&mut self, cx: &mut Context) -> Result<(), ConsumerError> {
        if self.expired() {
            cx.close(SESSION_ENDED_CODE, "credentials expired");
            return Ok(());
        }
        self.inner.on_timer(cx).await
    }

    async fn disconnect(
        &mut self,
        cx: &mut Context,
        code: Option<u16>,
    ) -> Result<(), ConsumerError> {
        self.inner.disconnect(cx, code).await
    }
}
