//! The attachment endpoints.

use std::net::IpAddr;

use bytes::Bytes;
use chat_core::{ErrorCode, RoomName};
use http::{HeaderValue, Request, StatusCode, header};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};

use super::{ALLOWED_TYPES, Attachment, AttachmentInfo, is_attachment_id, new_id, sniff};
use crate::server::access::{Access, room_access};
use crate::server::app::Chat;
use crate::server::auth::authenticate;
use crate::server::respond::{ApiError, Resp, json, read_body, respond, with_body};

/// Longest file name kept (characters); longer ones are cut.
const MAX_NAME_CHARS: usize = 200;

/// What a served file may do in a browser: show itself, nothing else. `sandbox` makes even
/// an HTML file opened directly a page without scripts or our origin.
const FILE_CSP: &str = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox";

fn not_enabled() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        "attachments are not enabled on this server",
    )
}

/// `POST /api/rooms/{room}/attachments?name=<file name>` with the file as the body.
pub(crate) async fn upload<B>(app: &Chat, room: &str, peer: IpAddr, req: Request<B>) -> Resp
where
    B: hyper::body::Body + Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    respond(try_upload(app, room, peer, req).await)
}

async fn try_upload<B>(
    app: &Chat,
    room: &str,
    peer: IpAddr,
    req: Request<B>,
) -> Result<Resp, ApiError>
where
    B: hyper::body::Body + Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let store = app.attachments.as_ref().ok_or_else(not_enabled)?;
    let room = RoomName::parse(room).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidRoom,
            e.to_string(),
        )
    })?;
    let identity = authenticate(app, &req)
        .await
        .map_err(|e| ApiError::store(&e))?;
    let access = room_access(app, &identity, &room).await?;
    crate::server::api::check_post(app, req.headers(), peer, "uploads")?;
    let max = app.config.max_attachment_bytes;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::TooLarge,
            format!("an attachment has at most {max} bytes"),
        )
    };
    // Refused before a byte is read when the client says how much it sends.
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let name = file_name(&req);
    let uploader = match &access {
        Access::User(u) => format!("u:{}", u.id),
        Access::Guest => format!("g:{}", app.guests.guest(req.headers()).id),
    };
    let data: Bytes = read_body(req.into_body(), max).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large()
        } else {
            e
        }
    })?;
    if data.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::EmptyMessage,
            "the file is empty",
        ));
    }
    let content_type = sniff(&data).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnsupportedType,
            format!(
                "this kind of file cannot be attached; allowed: {}",
                ALLOWED_TYPES.join(", ")
            ),
        )
    })?;
    let attachment = Attachment {
        info: AttachmentInfo {
            id: new_id(),
            name,
            content_type: content_type.to_owned(),
            size: data.len() as u64,
        },
        room,
        uploader,
    };
    store.put(&attachment, data).await.map_err(|e| {
        tracing::warn!(error = %e, "an attachment could not be stored");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::StoreUnavailable,
            "the file could not be stored; try again",
        )
    })?;
    Ok(json(StatusCode::CREATED, &attachment.info))
}

/// The upload's file name: `?name=`, trimmed, without path or control characters, at most
/// [`MAX_NAME_CHARS`]; `file` when there is none.
fn file_name<B>(req: &Request<B>) -> String {
    let given = req
        .uri()
        .query()
        .map(chat_ws::form_decode)
        .and_then(|q| {
            q.into_iter()
                .rev()
                .find(|(k, _)| k == "name")
                .map(|(_, v)| v)
        })
        .unwrap_or_default();
    let base = given.rsplit(['/', '\\']).next().unwrap_or_default();
    let clean: String = base
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME_CHARS)
        .collect();
    let clean = clean.trim();
    if clean.is_empty() || clean == "." || clean == ".." {
        "file".to_owned()
    } else {
        clean.to_owned()
    }
}

/// `GET /api/attachments/{id}`: the file, to members of its room.
pub(crate) async fn download<B>(app: &Chat, id: &str, req: &Request<B>) -> Resp {
    respond(try_download(app, id, req).await)
}

async fn try_download<B>(app: &Chat, id: &str, req: &Request<B>) -> Result<Resp, ApiError> {
    let store = app.attachments.as_ref().ok_or_else(not_enabled)?;
    let unknown = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "no such attachment",
        )
    };
    if !is_attachment_id(id) {
        return Err(unknown());
    }
    let identity = authenticate(app, req)
        .await
        .map_err(|e| ApiError::store(&e))?;
    let (attachment, data) = store
        .get(id)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "an attachment could not be read");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::StoreUnavailable,
                "the file could not be read; try again",
            )
        })?
        .ok_or_else(unknown)?;
    room_access(app, &identity, &attachment.room).await?;
    let info = &attachment.info;
    let content_type = ALLOWED_TYPES
        .iter()
        .copied()
        .find(|t| *t == info.content_type)
        .unwrap_or("application/octet-stream");
    let mut res = with_body(StatusCode::OK, content_type, data);
    let disposition = if content_type.starts_with("image/") {
        "inline"
    } else {
        "attachment"
    };
    let encoded = utf8_percent_encode(&info.name, NON_ALPHANUMERIC);
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("{disposition}; filename*=UTF-8''{encoded}")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(FILE_CSP),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
    Ok(res)
}
