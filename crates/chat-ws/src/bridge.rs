//! Running a consumer over a transport this crate does not own (a Socket.IO socket, a test
//! harness, a long-poll session): the same connection state machine as a WebSocket, fed
//! through queues. The transport pushes [`ClientEvent`]s in and takes [`Outbound`] frames out.

use std::sync::Arc;

use chat_core::SharedLayer;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::connection::{Accepted, ClientEvent, ConnectionConfig, Ending, Started, run, start};
use crate::consumer::{Consumer, ConsumerError};
use crate::context::{Outbound, RequestInfo};

/// Client events that may wait for the consumer, per connection. A transport that cannot
/// wait (it is called synchronously) refuses what does not fit instead of growing memory.
pub const BRIDGE_EVENTS: usize = 256;

/// A consumer running over a foreign transport.
pub struct Bridge {
    /// What the client does, in order.
    pub events: mpsc::Sender<ClientEvent>,
    /// What the consumer sends, in order; after the connection ends, a last
    /// [`Outbound::Close`] when the server ended it (and the client could still take it).
    pub outbound: mpsc::Receiver<Outbound>,
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
    /// `config.tracker` (so a server's shutdown waits for it like for its WebSockets).
    pub async fn start<C: Consumer>(
        consumer: C,
        layer: SharedLayer,
        request: RequestInfo,
        config: &ConnectionConfig,
    ) -> Result<Bridged, ConsumerError> {
        match start(consumer, layer, Arc::new(request), &config.limits).await? {
            Started::Rejected { status, reason } => Ok(Bridged::Rejected { status, reason }),
            Started::Accepted(Accepted {
                consumer,
                cx,
                outbound,
                closer,
            }) => {
                let (events, rx) = mpsc::channel(BRIDGE_EVENTS);
                let incoming = Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
                    rx.recv().await.map(|e| (e, rx))
                }));
                let config = config.clone();
                let task = config.tracker.clone().spawn(async move {
                    let ending = run(consumer, cx, incoming, &config).await;
                    if ending.by_server && !ending.overflow {
                        let code = ending.code.unwrap_or(chat_core::close::NORMAL);
                        let _ = closer.try_send(Outbound::Close(code, ending.reason.clone()));
                    }
                    ending
                });
                Ok(Bridged::Accepted(Bridge {
                    events,
                    outbound,
                    task,
                }))
            }
        }
    }
}
