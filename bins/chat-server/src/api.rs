//! The HTTP API for rooms: history and sending a message without a WebSocket.

use std::net::IpAddr;

use chat_core::{
    ChannelLayer, ErrorCode, HistoryQuery, LayerMessage, NewMessage, RoomName, Sender, Seq,
    ServerFrame,
};
use http::{Request, StatusCode};
use serde::{Deserialize, Serialize};

use crate::access::{Access, room_access};
use crate::app::App;
use crate::auth::{authenticate, sender_of};
use crate::respond::{ApiError, Resp, json, read_body, respond};

fn parse_room(raw: &str) -> Result<RoomName, ApiError> {
    RoomName::parse(raw).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidRoom,
            e.to_string(),
        )
    })
}

#[derive(Serialize)]
struct HistoryBody {
    messages: Vec<ServerFrame>,
    has_more: bool,
}

fn seq_param(query: &[(String, String)], key: &str) -> Result<Option<Seq>, ApiError> {
    match query.iter().rev().find(|(k, _)| k == key) {
        None => Ok(None),
        Some((_, v)) if v.is_empty() => Ok(None),
        Some((_, v)) => v.parse().map(Some).map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidJson,
                format!("{key} must be a whole number, got {v:?}"),
            )
        }),
    }
}

/// A room the caller may read, and the request's query parameters.
async fn readable_room<B>(
    app: &App,
    room: &str,
    req: &Request<B>,
) -> Result<(RoomName, Vec<(String, String)>), ApiError> {
    let room = parse_room(room)?;
    let identity = authenticate(app, req)
        .await
        .map_err(|e| ApiError::store(&e))?;
    room_access(app, &identity, &room).await?;
    let query = req
        .uri()
        .query()
        .map(chat_ws::form_decode)
        .unwrap_or_default();
    Ok((room, query))
}

/// `GET /api/rooms/{room}/messages?after=&before=&limit=`.
pub async fn history<B>(app: &App, room: &str, req: &Request<B>) -> Resp {
    respond(read_history(app, room, req).await)
}

async fn read_history<B>(app: &App, room: &str, req: &Request<B>) -> Result<Resp, ApiError> {
    let (room, query) = readable_room(app, room, req).await?;
    let limit = seq_param(&query, "limit")?.unwrap_or(50);
    let q = HistoryQuery {
        after: seq_param(&query, "after")?,
        before: seq_param(&query, "before")?,
        limit: u32::try_from(limit)
            .unwrap_or(u32::MAX)
            .min(app.config.limits.max_history),
    };
    let page = app
        .messages
        .history(&room, q)
        .await
        .map_err(|e| ApiError::store(&e))?;
    Ok(json(
        StatusCode::OK,
        &HistoryBody {
            messages: page
                .messages
                .into_iter()
                .map(ServerFrame::Message)
                .collect(),
            has_more: page.has_more,
        },
    ))
}

#[derive(Deserialize)]
struct PostBody {
    body: String,
    client_id: Option<String>,
    name: Option<String>,
}

/// `POST /api/rooms/{room}/messages` with `{"body","client_id"}` (guests add `"name"`).
pub async fn post<B>(app: &App, room: &str, peer: IpAddr, req: Request<B>) -> Resp
where
    B: hyper::body::Body + Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    respond(post_message(app, room, peer, req).await)
}

async fn post_message<B>(
    app: &App,
    room: &str,
    peer: IpAddr,
    req: Request<B>,
) -> Result<Resp, ApiError>
where
    B: hyper::body::Body + Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let room = parse_room(room)?;
    let identity = authenticate(app, &req)
        .await
        .map_err(|e| ApiError::store(&e))?;
    let access = room_access(app, &identity, &room).await?;
    if !crate::origin::allowed(req.headers(), &app.config.settings.allowed_origins) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "cross-site requests are not allowed",
        ));
    }
    if !app.post_limiter.check(&peer) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RateLimited,
            "too many messages from this address; slow down",
        ));
    }
    let limits = &app.config.limits;
    let bytes = read_body(req.into_body(), limits.max_frame_bytes).await?;
    let body: PostBody = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidJson,
            format!("expected {{\"body\": \"...\", \"client_id\": \"...\"}}: {e}"),
        )
    })?;
    limits.check_message(&body.body, body.client_id.as_deref())?;
    let sender = match access {
        Access::User(u) => sender_of(&u),
        Access::Guest => {
            let name = body.name.as_deref().ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::InvalidJson,
                    "a guest post needs a \"name\"",
                )
            })?;
            let name = limits.check_guest_name(name).map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::InvalidJson,
                    format!("invalid name: {e}"),
                )
            })?;
            Sender::guest(name)
        }
    };
    let appended = app
        .messages
        .append(NewMessage {
            room: room.clone(),
            sender,
            body: body.body,
            client_id: body.client_id,
        })
        .await
        .map_err(|e| {
            tracing::warn!(room = %room, error = %e, "append failed");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::StoreUnavailable,
                "the message could not be stored; it was not sent, try again",
            )
        })?;
    let frame = ServerFrame::Message(appended.message);
    if appended.duplicate {
        return Ok(json(StatusCode::OK, &frame));
    }
    match LayerMessage::json(chat_ws::CHAT_MESSAGE, &frame) {
        Ok(lm) => {
            if let Err(e) = app.layer.group_send(&room.group(), lm).await {
                tracing::warn!(room = %room, error = %e, "group_send failed");
            }
        }
        Err(e) => tracing::error!(error = %e, "could not encode a message"),
    }
    Ok(json(StatusCode::CREATED, &frame))
}

/// Longest long-poll wait, in seconds.
pub const MAX_POLL_SECONDS: u64 = 30;

/// `GET /api/rooms/{room}/poll?after=SEQ&timeout=S`: the long-poll fallback. Answers at once
/// when messages after SEQ exist, else waits for the next one (through the channel layer, no
/// busy-waiting) or answers empty after S seconds (≤ 30). Held polls are released on shutdown.
pub async fn poll<B>(app: &App, room: &str, req: &Request<B>) -> Resp {
    respond(long_poll(app, room, req).await)
}

async fn long_poll<B>(app: &App, room: &str, req: &Request<B>) -> Result<Resp, ApiError> {
    let (room, query) = readable_room(app, room, req).await?;
    let after = seq_param(&query, "after")?.unwrap_or(0);
    let timeout = seq_param(&query, "timeout")?.unwrap_or(25);
    if timeout > MAX_POLL_SECONDS {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidJson,
            format!("timeout is at most {MAX_POLL_SECONDS} seconds"),
        ));
    }
    let page = |messages: Vec<chat_core::StoredMessage>, has_more| {
        json(
            StatusCode::OK,
            &HistoryBody {
                messages: messages.into_iter().map(ServerFrame::Message).collect(),
                has_more,
            },
        )
    };
    // Listen before reading, so a message stored between the read and the wait wakes us.
    let layer = &app.layer;
    let channel = layer.new_channel().await.map_err(|e| {
        tracing::warn!(error = %e, "poll: no layer channel");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal,
            "try again",
        )
    })?;
    let group = room.group();
    let result = async {
        if let Err(e) = layer.group_add(&group, &channel).await {
            tracing::warn!(error = %e, "poll: group_add failed; answering after the timeout");
        }
        let read = || async {
            app.messages
                .history(
                    &room,
                    HistoryQuery::after(after, app.config.limits.max_history),
                )
                .await
                .map_err(|e| ApiError::store(&e))
        };
        let first = read().await?;
        if !first.messages.is_empty() {
            return Ok(page(first.messages, first.has_more));
        }
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(timeout);
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => return Ok(page(Vec::new(), false)),
                () = app.connections.shutdown.cancelled() => return Ok(page(Vec::new(), false)),
                got = layer.receive(&channel) => {
                    if got.is_err() {
                        return Ok(page(Vec::new(), false));
                    }
                    let next = read().await?;
                    if !next.messages.is_empty() {
                        return Ok(page(next.messages, next.has_more));
                    }
                }
            }
        }
    }
    .await;
    let _ = layer.group_discard(&group, &channel).await;
    let _ = layer.discard_channel(&channel).await;
    result
}

/// `GET /api/rooms/{room}/online`: who is online in the room, across nodes.
pub async fn online<B>(app: &App, room: &str, req: &Request<B>) -> Resp {
    respond(
        async {
            let (room, _) = readable_room(app, room, req).await?;
            let online = app.presence.online(&room).await.map_err(|e| {
                tracing::warn!(room = %room, error = %e, "presence unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::Internal,
                    "presence is unavailable; try again",
                )
            })?;
            Ok(json(
                StatusCode::OK,
                &serde_json::json!({"room": room, "online": online}),
            ))
        }
        .await,
    )
}
