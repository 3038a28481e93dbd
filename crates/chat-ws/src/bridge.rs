//! Running a consumer over a transport this crate does not own (a Socket.IO socket, a test
//! harness, a long-poll session): the same connection state machine as a WebSocket, fed
//! through queues. The transport pushes [`ClientEvent`]s in and takes [`Outbound`] frames out.

use std::sync::Arc;

use chat_core::SharedLayer;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::connection::{
    Accepted, ClientEvent, ConnectionConfig, Decided, Ending, Started, connect, run, start,
};
use crate::consumer::{Consumer, ConsumerError};
use crate::context::{Context, Out, Outbound, OutboundSink, RequestInfo};
use crate::transport::EventsOnly;

/// Client events that may wait for the consumer, per connection. A transport that cannot
/// wait (it is called synchronously) refuses what does not fit instead of growing memory.
pub const BRIDGE_EVENTS: usize = 256;

/// A consumer running over a foreign transport.
pub struct Bridge {
    /// What the client does, in order. A `flume` channel, not tokio's: tokio's bounded
    /// channel allocates its first block of 32 slots (1.3 KB of `ClientEvent`s) with the
    /// channel, and a mostly idle Socket.IO socket kept it for life; flume's queue grows with
    /// what is queued.
    pub events: flume::Sender<ClientEvent>,
    /// What the consumer sends, in order; after the connection ends, a last
    /// [`Outbound::Close`] when the server ended it (and the client could still take it).
    /// `None` when the frames go to an [`OutboundSink`] ([`Bridge::start_direct`]).
    pub outbound: Option<flume::Receiver<Outbound>>,
    /// The connection; it ends when the client closes (or `events` is dropped), the consumer
    /// closes, the client falls too far behind or the server shuts down.
    pub task: JoinHandle<Ending>,
}

/// The outcome of [`Bridge::start`].
pub enum Bridged {
    /// The consumer accepted: the connection runs.
    Accepted(Bridge),
    /// The consumer refused, with an HTTP status and a reason.
    Rejected {
        /// The status (401, 403, …).
        status: u16,
        /// Why.
        reason: String,
    },
}

impl Bridge {
    /// Runs `connect`, and when the consumer accepts, the connection on a task spawned on
    /// `config.tracker` (so a server's shutdown waits for it like for its WebSockets). The
    /// task runs in the tracing span current when this is called, as with
    /// [`Sockets::upgrade`](crate::Sockets::upgrade).
    pub async fn start<C: Consumer>(
        consumer: C,
        layer: SharedLayer,
        request: RequestInfo,
        config: &ConnectionConfig,
    ) -> Result<Bridged, ConsumerError> {
        let (tx, rx) = flume::bounded(config.limits.outbound_queue.max(1));
        // The sender is kept to queue the server's close frame after the loop ends.
        let out = Out::Queue(tx.clone());
        match start(consumer, layer, Arc::new(request), out, (rx, tx)).await? {
            Started::Rejected { status, reason } => Ok(Bridged::Rejected { status, reason }),
            Started::Accepted(Accepted {
                consumer,
                cx,
                outbound: (outbound, closer),
            }) => {
                let (events, task) = spawn(consumer, cx, config, move |ending| {
                    if !ending.overflow {
                        let code = ending.code.unwrap_or(chat_core::close::NORMAL);
                        let _ = closer.try_send(Outbound::Close(code, ending.reason.clone()));
                    }
                });
                Ok(Bridged::Accepted(Bridge {
                    events,
                    outbound: Some(outbound),
                    task,
                }))
            }
        }
    }

    /// The same, with the consumer's frames handed to `sink` on the consumer's own task (no
    /// queue of ours): for a transport that queues and writes by itself. A
    /// frame the sink refuses closes the client as too slow; when the server ends the
    /// connection (too slow included), the sink gets a last [`Outbound::Close`].
    pub async fn start_direct<C: Consumer>(
        consumer: C,
        layer: SharedLayer,
        request: RequestInfo,
        config: &ConnectionConfig,
        sink: Arc<dyn OutboundSink>,
    ) -> Result<Bridged, ConsumerError> {
        let out = Out::Sink(sink.clone());
        match connect(consumer, layer, Arc::new(request), out).await? {
            Decided::Rejected { status, reason } => Ok(Bridged::Rejected { status, reason }),
            Decided::Accepted(consumer, cx) => {
                let (events, task) = spawn(consumer, cx, config, move |ending| {
                    let code = ending.code.unwrap_or(chat_core::close::NORMAL);
                    let _ = sink.send(Outbound::Close(code, ending.reason.clone()));
                });
                Ok(Bridged::Accepted(Bridge {
                    events,
                    outbound: None,
                    task,
                }))
            }
        }
    }
}

/// Runs the connection on `config.tracker`, fed by a new event queue; `closing` gets the
/// ending when the server ended it.
fn spawn<C: Consumer>(
    consumer: Box<C>,
    cx: Box<Context>,
    config: &ConnectionConfig,
    closing: impl FnOnce(&Ending) + Send + 'static,
) -> (flume::Sender<ClientEvent>, JoinHandle<Ending>) {
    let (events, rx) = flume::bounded(BRIDGE_EVENTS);
    let mut incoming = EventsOnly(Box::pin(rx.into_stream()));
    let config = config.clone();
    let task = config.tracker.clone().spawn(
        async move {
            tracing::debug!("connection opened");
            let ending = run(consumer, cx, &mut incoming, &config).await;
            tracing::debug!(code = ?ending.code, by_server = ending.by_server, "connection ended");
            if ending.by_server {
                closing(&ending);
            }
            ending
        }
        .in_current_span(),
    );
    (events, task)
}
