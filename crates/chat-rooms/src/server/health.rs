//! `/readyz`: whether this node should get traffic, and the state of each dependency.
//!
//! The body is JSON naming each dependency's state: `{"store":"ok","redis":"ok"}`. `store` is
//! `ok` or `down`; `redis` is `ok`, `down`, or `off` when the server runs without Redis (the
//! in-memory layer): the channel layer's [`backend_connected`](chat_core::ChannelLayer::backend_connected). Only the store decides the status: `503` while it does not answer,
//! `200` otherwise, whatever Redis's state. Every node shares Redis, so failing readiness on
//! it would take every node out of the load balancer at once, while a node without Redis
//! still stores, acks and serves its own clients (the others catch up from the store).

use std::time::Duration;

use http::StatusCode;
use serde::Serialize;

use crate::server::app::Chat;
use crate::server::respond::{Resp, json};

/// How long the store may take to answer a readiness probe before it counts as down.
const STORE_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The body of `/readyz`.
#[derive(Debug, Serialize)]
struct Readiness {
    store: &'static str,
    redis: &'static str,
}

/// `GET /readyz`.
pub async fn readyz(app: &Chat) -> Resp {
    let ping = tokio::time::timeout(
        STORE_PROBE_TIMEOUT,
        chat_core::MessageStore::ping(&app.store),
    )
    .await;
    let store_ok = match ping {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            // Not a warning: a probe every few seconds would repeat it for the whole outage.
            tracing::debug!(error = %e, "readiness: the store does not answer");
            false
        }
        Err(_) => {
            tracing::debug!("readiness: the store did not answer in time");
            false
        }
    };
    let redis = match app.layer.backend_connected() {
        None => "off",
        Some(true) => "ok",
        Some(false) => "down",
    };
    let body = Readiness {
        store: if store_ok { "ok" } else { "down" },
        redis,
    };
    let status = if store_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json(status, &body)
}
