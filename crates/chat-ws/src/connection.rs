//! The connection state machine, independent of the transport: connect (accept or reject),
//! then a loop over client frames, layer messages and a keep-alive timer, then a disconnect
//! and cleanup that always run. The socket driver and the test communicator both run it.

use std::sync::Arc;
use std::task::Poll;

use bytes::Bytes;
use chat_core::{ChannelLayer, LayerError, Limits, SharedLayer, close};
use futures_util::StreamExt;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::consumer::{Consumer, ConsumerError};
use crate::context::{Context, Out, Outbound, RequestInfo, State};
use crate::gate::{Gated, Gates, Ticks};
use crate::transport::{Texts, Transport, next_event_or_held, read_ahead, writing_while};

/// Settings of a connection.
#[derive(Debug, Clone, Default)]
pub struct ConnectionConfig {
    /// Frame size, outbound queue, ping interval and idle timeout come from here.
    pub limits: Limits,
    /// Cancelled when the server shuts down: every connection closes with 1001.
    pub shutdown: CancellationToken,
    /// Connection tasks are spawned on this tracker so a server can wait for them to finish.
    pub tracker: TaskTracker,
}

/// What the client did, as the state machine sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// A text frame.
    Text(Utf8Bytes),
    /// A binary frame.
    Binary(Bytes),
    /// A ping, pong or other control frame: the client is alive.
    Activity,
    /// The client closed, with this code if it gave one.
    Closed(Option<u16>),
    /// The client sent a frame over the size limit.
    TooLarge,
    /// The client sent a text frame that is not UTF-8.
    InvalidUtf8,
    /// The transport could not write to the client for the write timeout: it stopped
    /// reading.
    Stalled,
    /// The transport failed.
    Failed(String),
}

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    /// The close code (the client's, or the one the server sends).
    pub code: Option<u16>,
    /// The close reason the server gives.
    pub reason: String,
    /// Whether the server initiated the close (and must send the close frame).
    pub by_server: bool,
    /// Whether the client was too slow: its outbound queue is full, so the close frame cannot
    /// be queued behind the backlog.
    pub overflow: bool,
}

impl Ending {
    fn server(code: u16, reason: impl Into<String>) -> Self {
        Self {
            code: Some(code),
            reason: reason.into(),
            by_server: true,
            overflow: false,
        }
    }

    fn client(code: Option<u16>) -> Self {
        Self {
            code,
            reason: String::new(),
            by_server: false,
            overflow: false,
        }
    }
}

/// The outcome of the connect phase.
pub(crate) enum Started<C, Q> {
    /// The consumer accepted; run the loop once the transport is up.
    Accepted(Accepted<C, Q>),
    /// The consumer refused: answer the HTTP request with this status.
    Rejected { status: u16, reason: String },
}

/// An accepted connection waiting for its transport. Boxed parts: see [`run`].
pub(crate) struct Accepted<C, Q> {
    pub consumer: Box<C>,
    pub cx: Box<Context>,
    /// The transport's end of the queue the consumer's frames go to.
    pub outbound: Q,
}

impl<C: Consumer, Q> Accepted<C, Q> {
    /// The transport never came up (the upgrade failed): still run disconnect and cleanup.
    pub async fn abandon(mut self) {
        if let Err(e) = self.consumer.disconnect(&mut self.cx, None).await {
            tracing::warn!(error = %e, "disconnect failed");
        }
        self.cx.cleanup().await;
    }
}

/// Runs `connect` with frames going to `out`, a bounded queue (drained by the connection
/// task itself, or by a bridged transport) whose other end is `outbound`, and reports
/// whether the consumer accepted.
pub(crate) async fn start<C: Consumer, Q>(
    consumer: C,
    layer: SharedLayer,
    request: Arc<RequestInfo>,
    out: Out,
    outbound: Q,
) -> Result<Started<C, Q>, ConsumerError> {
    Ok(match connect(consumer, layer, request, out).await? {
        Decided::Accepted(consumer, cx) => Started::Accepted(Accepted {
            consumer,
            cx,
            outbound,
        }),
        Decided::Rejected { status, reason } => Started::Rejected { status, reason },
    })
}

/// What `connect` decided.
pub(crate) enum Decided<C> {
    /// Accepted: the consumer and its context, ready to run.
    Accepted(Box<C>, Box<Context>),
    /// Refused with an HTTP status.
    Rejected { status: u16, reason: String },
}

/// Runs `connect` with frames going to `out`.
pub(crate) async fn connect<C: Consumer>(
    mut consumer: C,
    layer: SharedLayer,
    request: Arc<RequestInfo>,
    out: Out,
) -> Result<Decided<C>, ConsumerError> {
    let channel = layer.new_channel().await?;
    let mut cx = Context::new(layer, channel, out, request);
    if let Err(e) = consumer.connect(&mut cx).await {
        cx.cleanup().await;
        return Err(e);
    }
    match cx.state.clone() {
        State::Accepted => {
            cx.trim_request();
            Ok(Decided::Accepted(Box::new(consumer), Box::new(cx)))
        }
        State::Rejected(status, reason) => {
            cx.cleanup().await;
            Ok(Decided::Rejected { status, reason })
        }
        State::Pending | State::Closing(..) => {
            cx.cleanup().await;
            Ok(Decided::Rejected {
                status: 403,
                reason: "the connection was not accepted".into(),
            })
        }
    }
}

/// What the consumer's last callback asked for, if it ends the connection.
fn requested_ending(cx: &Context) -> Option<Ending> {
    if cx.overflowed {
        return Some(Ending {
            overflow: true,
            ..Ending::server(close::TRY_AGAIN_LATER, "client too slow")
        });
    }
    match &cx.state {
        State::Closing(code, reason) => Some(Ending::server(*code, reason.clone())),
        _ => None,
    }
}

/// Layer messages handled in one turn of the connection loop, at most (so a flooded room
/// cannot starve the socket's reads, timers and shutdown).
const LAYER_BATCH: usize = 64;

/// The main loop: runs until the client leaves, the consumer closes, the server shuts down or
/// the client falls too far behind. Then `disconnect` and group cleanup always run.
///
/// The consumer and its context come boxed: an async fn keeps its own copy of every argument
/// beside the caller's, and an idle connection would pay for each copy.
pub(crate) async fn run<C, T>(
    mut consumer: Box<C>,
    mut cx: Box<Context>,
    transport: &mut T,
    config: &ConnectionConfig,
) -> Ending
where
    C: Consumer,
    T: Transport + ?Sized,
{
    let limits = &config.limits;
    let _open = crate::observe::connection(consumer.kind());
    let shared_layer = cx.layer().clone();
    // Called on the trait object itself: through the `Arc` impl every call would box twice.
    let layer: &dyn ChannelLayer = shared_layer.as_ref();
    let channel = cx.channel_name().clone();
    // Every consumer callback is awaited through a `Box`: their futures would otherwise live
    // inline in this one, and the largest of them (a join reading the store) would set the
    // size of every idle connection's task. One allocation per event or burst is cheap beside
    // that.
    let mut ending = match writing_while(transport, Box::pin(consumer.opened(&mut cx))).await {
        Ok(()) => requested_ending(&cx),
        Err(e) => Some(internal(e)),
    };
    // The timers and the shutdown signal are gated (see `crate::gate`): a turn that does not
    // concern them (almost all: a delivery) does not poll them again, and they share one flag
    // word, so such a turn touches one cache line for the three.
    let mut gates = Gates::default();
    let mut ping = gates.gate(Ticks(tokio::time::interval_at(
        Instant::now() + limits.ping_interval,
        limits.ping_interval,
    )));
    let mut last_seen = Instant::now();
    // Memberships expire (Channels' group_expiry): an open socket renews its own at half the
    // expiry, so a socket open for days keeps receiving.
    let mut renewal = layer.membership_expiry().map(|expiry| {
        let every = (expiry / 2).max(std::time::Duration::from_millis(100));
        gates.gate(Ticks(tokio::time::interval_at(
            Instant::now() + every,
            every,
        )))
    });
    let mut layer_failures = 0u32;
    // A child token, waited on by one future made once: polling the server's own token (or
    // making a new `cancelled()` each turn) takes a lock that every connection shares.
    let mut shutdown = gates.gate(Box::pin(config.shutdown.child_token().cancelled_owned()));
    // The gated futures keep what they share; the maker need not live across the loop's waits.
    drop(gates);
    // One standing receive for the connection's life: the layer finds the channel once, and
    // a wait interrupted by another branch carries on next turn (dropping `next()` loses
    // nothing).
    let mut mailbox = shared_layer.clone().bursts(channel.clone(), LAYER_BATCH);
    // A client event read behind a burst of text frames, handled next turn.
    let mut held: Option<ClientEvent> = None;

    while ending.is_none() {
        if held.is_some() {
            // What the last turn queued outside a callback (a ping) leaves now; otherwise
            // polling the client for its next event writes it.
            std::future::poll_fn(|task| {
                transport.poll_write(task);
                Poll::Ready(())
            })
            .await;
        }
        let timer = consumer.next_timer();
        // In a fixed order, not a random one: the gated branches first (a flag check each
        // unless they woke us, and they cannot be starved by a busy room), then the client
        // before the mailbox, so a flood of deliveries never holds back what the client says.
        let result = tokio::select! {
            biased;
            () = &mut shutdown => {
                ending = Some(Ending::server(close::GOING_AWAY, "server shutting down"));
                continue;
            }
            () = tick_some(&mut renewal) => {
                writing_while(transport, Box::pin(cx.renew_groups())).await;
                Ok(())
            }
            _ = &mut ping => {
                if last_seen.elapsed() >= limits.idle_timeout {
                    ending = Some(Ending::server(close::NORMAL, "idle timeout"));
                    continue;
                }
                cx.push(Outbound::Ping);
                layer.compact(&channel);
                Ok(())
            }
            () = sleep_until_some(timer) => writing_while(transport, Box::pin(consumer.on_timer(&mut cx))).await,
            event = next_event_or_held(&mut held, transport) => {
                last_seen = Instant::now();
                match event {
                    Some(ClientEvent::Text(text)) => match read_ahead(transport, &mut held, text).await {
                        Texts::One(text) => writing_while(transport, Box::pin(consumer.receive_text(&mut cx, &text))).await,
                        Texts::Many(texts) => writing_while(transport, Box::pin(consumer.receive_texts(&mut cx, texts))).await,
                    },
                    Some(ClientEvent::Binary(data)) => writing_while(transport, Box::pin(consumer.receive_binary(&mut cx, data))).await,
                    Some(ClientEvent::Activity) => Ok(()),
                    Some(ClientEvent::Closed(code)) => {
                        ending = Some(Ending::client(code));
                        continue;
                    }
                    Some(ClientEvent::TooLarge) => {
                        ending = Some(Ending::server(close::TOO_LARGE, "frame too large"));
                        continue;
                    }
                    Some(ClientEvent::Stalled) => {
                        ending = Some(Ending {
                            overflow: true,
                            ..Ending::server(close::TRY_AGAIN_LATER, "client too slow")
                        });
                        continue;
                    }
                    Some(ClientEvent::InvalidUtf8) => {
                        ending = Some(Ending::server(close::INVALID_DATA, "text frames are UTF-8"));
                        continue;
                    }
                    Some(ClientEvent::Failed(e)) => {
                        tracing::debug!(error = %e, "transport failed");
                        ending = Some(Ending::client(None));
                        continue;
                    }
                    None => {
                        ending = Some(Ending::client(None));
                        continue;
                    }
                }
            }
            burst = mailbox.next() => {
                // The stream ends only with the layer.
                match burst.unwrap_or(Err(LayerError::Closed)) {
                    Ok(burst) => {
                        layer_failures = 0;
                        // A burst at once: one wake-up per burst instead of per message, and its
                        // frames leave together (fewer, larger socket writes).
                        writing_while(transport, Box::pin(handle_burst(&mut *consumer, &mut cx, burst))).await
                    }
                    Err(LayerError::Closed) => {
                        ending = Some(Ending::server(close::GOING_AWAY, "server shutting down"));
                        continue;
                    }
                    Err(e) => {
                        // A layer outage must not kill the socket at once (the store still
                        // works and clients resume with `since`), but a layer that keeps failing
                        // without waiting would spin this loop.
                        layer_failures += 1;
                        tracing::warn!(error = %e, "channel layer receive failed");
                        if layer_failures > 50 {
                            Err(ConsumerError::Layer(e))
                        } else {
                            tokio::time::sleep(std::time::Duration::from_millis(20 * u64::from(layer_failures))).await;
                            Ok(())
                        }
                    }
                }
            }
        };
        ending = match result {
            Ok(()) => requested_ending(&cx),
            Err(e) => Some(internal(e)),
        };
    }
    drop(mailbox);
    let ending = ending.unwrap_or_else(|| Ending::client(None));
    crate::observe::closed(ending.code, ending.by_server);
    writing_while(
        transport,
        Box::pin(async {
            if let Err(e) = consumer.disconnect(&mut cx, ending.code).await {
                tracing::warn!(error = %e, "disconnect failed");
            }
            cx.cleanup().await;
        }),
    )
    .await;
    ending
}

/// Hands a burst of layer messages to the consumer, stopping at the first error or once the
/// consumer ends the connection. The frames it sends are queued together at the end (see
/// [`Context::hold_frames`]).
async fn handle_burst<C: Consumer>(
    consumer: &mut C,
    cx: &mut Context,
    burst: Vec<chat_core::LayerMessage>,
) -> Result<(), ConsumerError> {
    cx.hold_frames(burst.len());
    let mut handled = Ok(());
    for msg in burst {
        if requested_ending(cx).is_some() {
            break;
        }
        handled = consumer.handle(cx, msg).await;
        if handled.is_err() {
            break;
        }
    }
    cx.release_held();
    handled
}

/// The interval's next tick, or never when there is none.
async fn tick_some(interval: &mut Option<Gated<Ticks>>) {
    match interval {
        Some(i) => {
            i.await;
        }
        None => std::future::pending().await,
    }
}

/// Sleeps until `at`, or forever when there is no timer.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn internal(e: ConsumerError) -> Ending {
    tracing::error!(error = %e, "consumer failed; closing the connection");
    Ending::server(close::INTERNAL, "internal error")
}

#[cfg(test)]
mod tests {
    use chat_core::InMemoryChannelLayer;

    use super::*;

    /// A consumer with 1,000 bytes of state whose callbacks hold 16 KiB across an await, as
    /// a join holding a store read would.
    struct Heavy {
        _state: [u8; 1000],
    }

    async fn heavy_work() -> Result<(), ConsumerError> {
        let buf = [7u8; 16 * 1024];
        tokio::task::yield_now().await;
        std::hint::black_box(&buf);
        Ok(())
    }

    impl Consumer for Heavy {
        async fn opened(&mut self, _cx: &mut Context) -> Result<(), ConsumerError> {
            heavy_work().await
        }
        async fn receive_text(&mut self, _cx: &mut Context, _t: &str) -> Result<(), ConsumerError> {
            heavy_work().await
        }
        async fn receive_binary(
            &mut self,
            _cx: &mut Context,
            _d: Bytes,
        ) -> Result<(), ConsumerError> {
            heavy_work().await
        }
        async fn handle(
            &mut self,
            _cx: &mut Context,
            _m: chat_core::LayerMessage,
        ) -> Result<(), ConsumerError> {
            heavy_work().await
        }
        async fn on_timer(&mut self, _cx: &mut Context) -> Result<(), ConsumerError> {
            heavy_work().await
        }
        async fn disconnect(
            &mut self,
            _cx: &mut Context,
            _code: Option<u16>,
        ) -> Result<(), ConsumerError> {
            heavy_work().await
        }
    }

    /// Every idle connection keeps its loop's future: neither what a consumer does while
    /// handling an event nor copies of its state may be part of it (see `docs/benchmarks.md`,
    /// idle memory).
    #[tokio::test]
    async fn an_idle_connection_does_not_keep_room_for_its_callbacks() {
        let layer: SharedLayer = Arc::new(InMemoryChannelLayer::default());
        let channel = layer.new_channel().await.unwrap();
        let (tx, _rx) = flume::bounded(4);
        let cx = Context::new(
            layer,
            channel,
            Out::Queue(tx),
            Arc::new(RequestInfo::default()),
        );
        let config = ConnectionConfig::default();
        let mut transport = crate::transport::EventsOnly(futures_util::stream::pending());
        let fut = run(
            Box::new(Heavy { _state: [0; 1000] }),
            Box::new(cx),
            &mut transport,
            &config,
        );
        let size = std::mem::size_of_val(&fut);
        assert!(size < 1024, "the connection loop future is {size} bytes");
    }
}
