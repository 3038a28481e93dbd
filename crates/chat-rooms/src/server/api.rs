//! The HTTP API for rooms: history and sending a message without a WebSocket.

use std::net::IpAddr;

use chat_core::{
    ChannelLayer, ErrorCode, HistoryQuery, LayerMessage, NewMessage, RoomName, Seq, ServerFrame,
};
use http::{Request, StatusCode};
use serde::{Deserialize, Serialize};

use crate::server::access::{Access, room_access};
use crate::server::app::Chat;
use crate::server::auth::{authenticate, sender_of};
use crate::server::respond::{ApiError, Resp, json, read_body, respond};

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
    app: &Chat,
    room: &str,
    req: &Request<B>,
) -> Result<(RoomName, Vec<(String, String)>), ApiError> {
    let room = parse_room(room)?;
    let identity = authenticate(app, req)
        .await
        .map_err(|e| ApiError::store(&e))?;
    room_access(app, &identity, &room).await?;
    if let Some(user) = identity.user() {
        // On a long-poll's connection span (a no-op on spans without a `user` field).
        crate::server::trace::record_user(user.id);
    }
    let query = req
        .uri()
        .query()
        .map(chat_ws::form_decode)
        .unwrap_or_default();
    Ok((room, query))
}

/// What every write over HTTP passes first: a page of this site (not a cross-site form or
/// script riding the visitor's cookies), and the address's post rate (`what` names the
/// writes in the answer: "messages", "uploads").
pub(crate) fn check_post(
    app: &Chat,
    headers: &http::HeaderMap,
    peer: IpAddr,
    what: &str,
) -> Result<(), ApiError> {
    if app.sockets.origins().check(headers).is_err() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "cross-site requests are not allowed",
        ));
    }
    if !app.post_limiter.check(&peer) {
        crate::observe::rate_limited("http_posts");
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RateLimited,
            format!("too many {what} from this address; slow down"),
        ));
    }
    Ok(())
}

/// `GET /api/rooms/{room}/messages?after=&before=&limit=`.
pub async fn history<B>(app: &Chat, room: &str, req: &Request<B>) -> Resp {
    respond(read_history(app, room, req).await)
}

async fn read_history<B>(app: &Chat, room: &str, req: &Request<B>) -> Result<Resp, ApiError> {
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
    #[serde(default)]
    body: String,
    client_id: Option<String>,
    attachment: Option<String>,
    name: Option<String>,
}

/// `POST /api/rooms/{room}/messages` with `{"body","client_id"}` (guests add `"name"`).
pub async fn post<B>(app: &Chat, room: &str, peer: IpAddr, req: Request<B>) -> Resp
where
    B: hyper::body::Body + Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    respond(post_message(app, room, peer, req).await)
}

async fn post_message<B>(
    app: &Chat,
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
    let guest = app.guests.guest(req.headers());
    check_post(app, req.headers(), peer, "messages")?;
    let limits = &app.config.limits;
    let bytes = read_body(req.into_body(), limits.max_frame_bytes).await?;
    let body: PostBody = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidJson,
            format!("expected {{\"body\": \"...\", \"client_id\": \"...\"}}: {e}"),
        )
    })?;
    limits.check_attached_message(
        &body.body,
        body.client_id.as_deref(),
        body.attachment.is_some(),
    )?;
    let sender = match &access {
        Access::User(u) => sender_of(u),
        Access::Guest => {
            let name = body.name.as_deref().ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::InvalidJson,
                    "a guest post needs a \"name\"",
                )
            })?;
            crate::server::auth::guest::sender(limits, &guest, Some(name)).map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::InvalidJson,
                    format!("invalid name: {e}"),
                )
            })?
        }
    };
    // A guest without the guest cookie is a new guest for this post; the cookie keeps a
    // client with a cookie jar that guest for its retries.
    let guest = matches!(access, Access::Guest).then_some(guest);
    let attachment = match &body.attachment {
        Some(id) => {
            let lookup = app.attachment_lookup.as_deref();
            Some(crate::attachment::authorize(lookup, id, &room, &sender).await?)
        }
        None => None,
    };
    let appended = app
        .messages
        .append(NewMessage {
            attachment,
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
    let answer = |status| {
        let mut res = json(status, &frame);
        if let Some(g) = &guest {
            crate::server::auth::guest::set_cookie(res.headers_mut(), g);
        }
        res
    };
    if appended.duplicate {
        return Ok(answer(StatusCode::OK));
    }
    match LayerMessage::json(crate::CHAT_MESSAGE, &frame) {
        Ok(lm) => {
            if let ServerFrame::Message(msg) = &frame {
                app.recent.record(&room, msg.seq, &lm);
            }
            if let Err(e) = app.layer.group_send(&room.group(), lm).await {
                tracing::warn!(room = %room, error = %e, "group_send failed");
            }
        }
        Err(e) => tracing::error!(error = %e, "could not encode a message"),
    }
    if let ServerFrame::Message(msg) = &frame {
        crate::inbox::notify_message(&app.layer, msg).await;
    }
    Ok(answer(StatusCode::CREATED))
}

/// Longest long-poll wait, in seconds.
pub const MAX_POLL_SECONDS: u64 = 30;

/// `GET /api/rooms/{room}/poll?after=SEQ&timeout=S`: the long-poll fallback. Answers at once
/// when messages after SEQ exist, else waits for the next one (through the channel layer, no
/// busy-waiting) or answers empty after S seconds (≤ 30). Held polls are released on shutdown.
pub async fn poll<B>(app: &Chat, room: &str, req: &Request<B>) -> Resp {
    respond(long_poll(app, room, req).await)
}

async fn long_poll<B>(app: &Chat, room: &str, req: &Request<B>) -> Result<Resp, ApiError> {
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
    // Counted as an open connection while it waits, however the poll ends.
    let _open = crate::observe::long_poll();
    let mailbox = PollMailbox {
        layer: layer.clone(),
        group: room.group(),
        channel,
        open: true,
    };
    let (group, channel) = (&mailbox.group, &mailbox.channel);
    let result = async {
        if let Err(e) = layer.group_add(group, channel).await {
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
                got = layer.receive(channel) => {
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
    mailbox.close().await;
    result
}

/// A long-poll's layer channel and its membership of the room's group, discarded when the
/// poll ends, however it ends. When the client goes away mid-poll, hyper drops the handler
/// where it waits, so cleanup at the end of the handler would never run and every abandoned
/// poll would leave a mailbox in the layer, collecting the room's messages.
struct PollMailbox {
    layer: chat_core::SharedLayer,
    group: chat_core::GroupName,
    channel: chat_core::ChannelName,
    /// Whether the channel still needs discarding.
    open: bool,
}

impl PollMailbox {
    /// Discards the channel before the poll answers (the normal end). Should this be dropped
    /// halfway, `Drop` discards again, which is harmless.
    async fn close(mut self) {
        discard_mailbox(&self.layer, &self.group, &self.channel).await;
        self.open = false;
    }
}

impl Drop for PollMailbox {
    fn drop(&mut self) {
        if !self.open {
            return;
        }
        // Drop cannot wait: the layer's calls are async (a Redis round trip), so they run on
        // a task of their own.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(channel = %self.channel, "poll dropped outside the runtime: mailbox kept");
            return;
        };
        let layer = self.layer.clone();
        let group = self.group.clone();
        let channel = self.channel.clone();
        runtime.spawn(async move { discard_mailbox(&layer, &group, &channel).await });
    }
}

/// Leaves the group, then discards the channel (errors are logged: nothing else to do).
async fn discard_mailbox(
    layer: &chat_core::SharedLayer,
    group: &chat_core::GroupName,
    channel: &chat_core::ChannelName,
) {
    if let Err(e) = layer.group_discard(group, channel).await {
        tracing::debug!(error = %e, "poll: group_discard failed");
    }
    if let Err(e) = layer.discard_channel(channel).await {
        tracing::debug!(error = %e, "poll: discard_channel failed");
    }
}

/// `GET /api/rooms/{room}/online`: who is online in the room, across nodes.
pub async fn online<B>(app: &Chat, room: &str, req: &Request<B>) -> Resp {
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

#[cfg(test)]
mod poll_tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::Arc;
    use std::time::Duration;

    use chat_core::{InMemoryChannelLayer, MemoryPresence};

    use super::*;

    /// The server's state on a SQLite store in `dir` and the in-memory `layer`.
    async fn app(dir: &std::path::Path, layer: &InMemoryChannelLayer) -> Chat {
        let config = crate::server::ChatConfig::new("0123456789abcdef0123456789abcdef");
        let url = format!("sqlite://{}", dir.join("chat.db").display());
        let store = chat_store::Store::open(chat_store::StoreConfig::new(&url))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        Chat::new(
            store,
            Arc::new(layer.clone()),
            Arc::new(MemoryPresence::new()),
            config,
        )
    }

    fn poll_request(timeout: u64) -> Request<()> {
        Request::get(format!("/api/rooms/quiet/poll?after=0&timeout={timeout}"))
            .body(())
            .unwrap()
    }

    /// Waits (at most 5 s) until the layer holds `channels` channels and `groups` groups.
    async fn until_layer_holds(layer: &InMemoryChannelLayer, channels: usize, groups: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while (layer.channel_count(), layer.group_count()) != (channels, groups) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the layer holds {} channels and {} groups, expected {channels} and {groups}",
                layer.channel_count(),
                layer.group_count()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_dropped_poll_leaves_no_mailbox_in_the_layer() {
        let dir = tempfile::tempdir().unwrap();
        let layer = InMemoryChannelLayer::default();
        let app = app(dir.path(), &layer).await;

        // A poll waiting for a message, dropped as hyper drops a handler whose client left.
        let held = tokio::spawn({
            let app = app.clone();
            async move { poll(&app, "quiet", &poll_request(30)).await }
        });
        until_layer_holds(&layer, 1, 1).await;
        held.abort();
        assert!(held.await.unwrap_err().is_cancelled());
        until_layer_holds(&layer, 0, 0).await;

        // A poll that ends normally cleans up before it answers.
        let res = poll(&app, "quiet", &poll_request(0)).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!((layer.channel_count(), layer.group_count()), (0, 0));
    }
}
