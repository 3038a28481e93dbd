//! The HTTP API: room history and sending a message without a WebSocket.

use std::net::IpAddr;

use chat_core::{
    ErrorCode, FrameError, HistoryQuery, LayerMessage, NewMessage, RoomName, Sender, Seq,
    ServerFrame,
};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Limited};
use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::respond::{Resp, error, json};

/// The HTTP status that goes with a protocol error code.
pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidJson | ErrorCode::UnknownType | ErrorCode::InvalidRoom => {
            StatusCode::BAD_REQUEST
        }
        ErrorCode::EmptyMessage => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::NotJoined => StatusCode::CONFLICT,
        ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// An API error on its way to becoming a `{"error":{…}}` response.
pub struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// The response.
    pub fn into_response(self) -> Resp {
        error(self.status, self.code, self.message)
    }
}

impl From<FrameError> for ApiError {
    fn from(e: FrameError) -> Self {
        Self::new(status_of(e.code), e.code, e.message)
    }
}

fn respond(result: Result<Resp, ApiError>) -> Resp {
    result.unwrap_or_else(ApiError::into_response)
}

/// Parses a room name from the path, or answers 400 `invalid_room`. Pair rooms need an
/// account, which this server does not have yet: 401.
fn public_room(raw: &str) -> Result<RoomName, ApiError> {
    let room = RoomName::parse(raw).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidRoom,
            e.to_string(),
        )
    })?;
    if room.pair().is_some() {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden,
            "private rooms need an account; log in first",
        ));
    }
    Ok(room)
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

/// `GET /api/rooms/{room}/messages?after=&before=&limit=`.
pub async fn history<B>(app: &App, room: &str, req: &Request<B>) -> Resp {
    respond(read_history(app, room, req).await)
}

async fn read_history<B>(app: &App, room: &str, req: &Request<B>) -> Result<Resp, ApiError> {
    let room = public_room(room)?;
    let query = req
        .uri()
        .query()
        .map(chat_ws::form_decode)
        .unwrap_or_default();
    let limit = seq_param(&query, "limit")?.unwrap_or(50);
    let q = HistoryQuery {
        after: seq_param(&query, "after")?,
        before: seq_param(&query, "before")?,
        limit: u32::try_from(limit)
            .unwrap_or(u32::MAX)
            .min(app.config.limits.max_history),
    };
    let page = app.store.history(&room, q).await.map_err(|e| {
        tracing::warn!(room = %room, error = %e, "history failed");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::StoreUnavailable,
            "the message store is unavailable; try again",
        )
    })?;
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

/// `POST /api/rooms/{room}/messages` with `{"body","client_id","name"}`.
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
    let room = public_room(room)?;
    if !app.post_limiter.check(&peer) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RateLimited,
            "too many messages from this address; slow down",
        ));
    }
    let limits = &app.config.limits;
    let bytes = Limited::new(req.into_body(), limits.max_frame_bytes)
        .collect()
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::TooLarge,
                format!("the request body is over {} bytes", limits.max_frame_bytes),
            )
        })?
        .to_bytes();
    let body: PostBody = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidJson,
            format!(
                "expected {{\"body\": \"...\", \"client_id\": \"...\", \"name\": \"...\"}}: {e}"
            ),
        )
    })?;
    limits.check_message(&body.body, body.client_id.as_deref())?;
    if !app.config.settings.allow_guests {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden,
            "log in to post",
        ));
    }
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
    let appended = app
        .store
        .append(NewMessage {
            room: room.clone(),
            sender: Sender::guest(name),
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
