//! Goodbyes for the users of a server node that died: it could not announce their departure
//! itself, so a live node does, from [`Presence::sweep`](chat_core::Presence::sweep), in the
//! same `presence` frame a leaving connection sends.

use std::time::Duration;

use chat_core::{
    LayerMessage, PresenceError, PresenceEvent, ServerFrame, SharedLayer, SharedPresence,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::room::CHAT_PRESENCE;

/// Sweeps once: announces a `leave` in each room a dead node's user was the last connection
/// of. Returns how many were announced.
pub async fn announce_departures(
    presence: &SharedPresence,
    layer: &SharedLayer,
) -> Result<usize, PresenceError> {
    let left = presence.sweep().await?;
    for (room, user) in &left {
        if room.is_everyone() {
            crate::inbox::announce_gone(layer, user).await;
            continue;
        }
        tracing::info!(%room, user = %user.name, "presence: left with a node that died");
        // Announced here, for a user another node announced online: the sum over nodes of
        // the users-online gauge stays right.
        crate::observe::users_online(-1.0);
        let frame = ServerFrame::Presence {
            room: room.clone(),
            user: user.clone(),
            event: PresenceEvent::Leave,
        };
        match LayerMessage::json(CHAT_PRESENCE, &frame) {
            Ok(msg) => {
                if let Err(e) = layer.group_send(&room.group(), msg).await {
                    tracing::warn!(%room, error = %e, "presence: could not announce a departure");
                }
            }
            Err(e) => tracing::error!(error = %e, "presence: could not encode a departure"),
        }
    }
    Ok(left.len())
}

/// Runs [`announce_departures`] every `every` (a third of the presence TTL) until `shutdown`.
pub fn spawn_presence_sweeper(
    presence: SharedPresence,
    layer: SharedLayer,
    every: Duration,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let every = every.max(Duration::from_millis(100));
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = announce_departures(&presence, &layer).await {
                tracing::warn!(error = %e, "presence sweep failed");
            }
        }
    })
}
