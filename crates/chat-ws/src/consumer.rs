//! The `Consumer` trait: Channels' `connect` / `receive` / `disconnect` model in Rust.

use std::future::Future;

use bytes::Bytes;
use chat_core::{LayerError, LayerMessage, StoreError};

use crate::context::Context;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// What can go wrong inside a consumer callback. Returning an error from a callback closes
/// the connection with 1011 (internal error) after `disconnect` runs.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    /// The channel layer failed.
    #[error(transparent)]
    Layer(#[from] LayerError),
    /// The message store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A group or room name was invalid.
    #[error(transparent)]
    InvalidName(#[from] chat_core::InvalidName),
    /// The consumer's own error (its database, its service, …), kept as the source so the
    /// log shows the cause. Build it with [`ConsumerError::custom`].
    #[error("{0}")]
    Custom(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ConsumerError {
    /// Wraps an error of the consumer's own: any error type, or a message.
    ///
    /// ```
    /// # use chat_ws::ConsumerError;
    /// let e = ConsumerError::custom(std::io::Error::other("the billing service is down"));
    /// assert_eq!(e.to_string(), "the billing service is down");
    /// let e = ConsumerError::custom("no such clinic");
    /// assert_eq!(e.to_string(), "no such clinic");
    /// ```
    pub fn custom(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Custom(e.into())
    }
}

/// A WebSocket consumer: one instance per connection, driven by the connection state machine
/// (or by a [`Communicator`](crate::Communicator) in tests).
///
/// Every method has a default, so a consumer implements only what it needs. Callbacks run one
/// at a time for a connection, so `&mut self` needs no locking.
///
/// Lifecycle: `connect` (before the HTTP upgrade: call [`Context::accept`] or
/// [`Context::reject`]; not accepting rejects with 403) → `opened` (the socket is live) →
/// `receive_text` / `receive_binary` / `handle` as frames and layer messages arrive →
/// `disconnect` (always runs; the runtime then leaves every group the consumer joined).
pub trait Consumer: Send + 'static {
    /// Decides whether to accept the connection. Runs before the HTTP upgrade, so a rejection
    /// is an HTTP status, not a WebSocket close.
    fn connect(
        &mut self,
        cx: &mut Context,
    ) -> impl Future<Output = Result<(), ConsumerError>> + Send {
        cx.accept();
        async { Ok(()) }
    }

    /// Called once the socket is open and frames can flow; the place for long replays, which
    /// can use [`Context::send_text_wait`] to respect the client's pace.
    fn opened(
        &mut self,
        _cx: &mut Context,
    ) -> impl Future<Output = Result<(), ConsumerError>> + Send {
        async { Ok(()) }
    }

    /// A text frame from the client. The default parses JSON and calls `receive_json`; invalid
    /// JSON is answered with `{"type": "error", "code": "invalid_json", "message": …}` and the
    /// socket stays open.
    fn receive_text(
        &mut self,
        cx: &mut Context,
        text: &str,
    ) -> impl Future<Output = Result<(), ConsumerError>> + Send {
        let parsed = serde_json::from_str::<serde_json::Value>(text);
        async move {
            match parsed {
                Ok(v) => self.receive_json(cx, v).await,
                Err(e) => {
                    cx.send_json(&serde_json::json!({
                        "type": "error",
                        "code": "invalid_json",
                        "message": format!("frames are JSON: {e}"),
                    }));
                    Ok(())
                }
            }
        }
    }

    /// Text frames the client sent faster than they were handled, in order: already read
    /// when the first one is handled, so they can be worked on together. The default hands
    /// them to [`Consumer::receive_text`] one at a time, stopping once one ends the
    /// connection. A consumer overrides it to share the work of a burst, such as storing its
    /// messages in one commit ([`MessageStore::append_many`](chat_core::MessageStore::append_many)).
    fn receive_texts(
        &mut self,
        cx: &mut Context,
        texts: Vec<Utf8Bytes>,
    ) -> impl Future<Output = Result<(), ConsumerError>> + Send {
        async move {
            for text in texts {
                if cx.is_ending() {
                    break;
                }
                self.receive_text(cx, &text).await?;
            }
            Ok(())
        }
    }

    /// A JSON text frame from the client (when `receive_text` is not overridden).
    fn receive_json(
        &mut self,
        _cx: &mut Context,
        _value: serde_json::Value,
    ) -> impl Future<Output = Result<(), ConsumerError>> + Send {
        async { Ok(()) }
    }

    /// A binary frame from the client. Ignored by default.
    fn receive_binary(
        &mut self,
        _cx: &mut Context,
        _data: Bytes,
    ) -> impl Future<Output = Result<(), ConsumerError>> + Send {
        async { Ok(()) }
    }

    /// A message from the channel layer (a group send or a direct send to this consumer's
    /// channel). Dispatch on [`LayerMessage::kind`]. The default forwards the payload to the
    /// client as a text frame, serialized once for every recipient, and ignores the layer's
    /// [`LayerMessage::MISSED`] marker (a consumer that can recover lost messages handles it).
    fn handle(
        &mut self,
        cx: &mut Context,
        msg: LayerMessage,
    ) -> impl Future<Output = Result<(), ConsumerError>> + Send {
        if !msg.is_missed() {
            cx.forward(msg);
        }
        async { Ok(()) }
    }

    /// What kind of connection this is, for the open-connections gauge
    /// ([`chat_core::metrics::CONNECTIONS`]'s `kind` label): one of a few fixed words, such
    /// as `room`, `mux`, `tutorial` or `socketio`. Default: `custom`.
    fn kind(&self) -> &'static str {
        "custom"
    }

    /// When the consumer next wants [`Consumer::on_timer`] called, if ever (for example to
    /// expire a typing indicator). Asked again after every callback.
    fn next_timer(&self) -> Option<tokio::time::Instant> {
        None
    }

    /// The instant [`Consumer::next_timer`] gave has passed.
    fn on_timer(
        &mut self,
        _cx: &mut Context,
    ) -> impl Future<Output = Result<(), ConsumerError>> + Send {
        async { Ok(()) }
    }

    /// The connection is over (`code` is the close code, when there was one). Always runs
    /// once after a successful `connect`, whatever ended the connection.
    fn disconnect(
        &mut self,
        _cx: &mut Context,
        _code: Option<u16>,
    ) -> impl Future<Output = Result<(), ConsumerError>> + Send {
        async { Ok(()) }
    }
}
