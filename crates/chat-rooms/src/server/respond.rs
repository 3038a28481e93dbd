//! Response helpers: JSON bodies, protocol error bodies, plain pages.

use bytes::Bytes;
use chat_core::{ErrorCode, FrameError};
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use serde::Serialize;

/// Every response the server sends has this type.
/// What the chat's handlers answer: a whole body (pages, JSON, a 101 for a socket).
pub type Resp = Response<Full<Bytes>>;

/// A response with a body and a content type.
pub fn with_body(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut res = Response::new(Full::new(body.into()));
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    res
}

/// A JSON response. Never cached: API answers are per user and change with every message.
pub fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Resp {
    match serde_json::to_vec(value) {
        Ok(body) => {
            let mut res = with_body(status, "application/json", body);
            res.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            res
        }
        Err(e) => {
            tracing::error!(error = %e, "could not serialize a response");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::Internal,
                "internal error",
            )
        }
    }
}

/// A protocol error: `{"error":{"code":"…","message":"…"}}`.
pub fn error(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Resp {
    let body = serde_json::json!({"error": {"code": code, "message": message.into()}});
    with_body(status, "application/json", body.to_string())
}

/// A plain-text response.
pub fn text(status: StatusCode, body: impl Into<String>) -> Resp {
    with_body(status, "text/plain; charset=utf-8", body.into())
}

/// A redirect.
pub fn redirect(status: StatusCode, location: &str) -> Resp {
    let mut res = text(status, format!("see {location}"));
    if let Ok(v) = HeaderValue::from_str(location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res
}

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
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::UnsupportedType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
    }
}

/// An API error on its way to becoming a `{"error":{…}}` response.
pub struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    message: String,
}

impl ApiError {
    /// A new error.
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// The store is down: 503 `store_unavailable`.
    pub fn store(e: &chat_core::StoreError) -> Self {
        tracing::warn!(error = %e, "store unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::StoreUnavailable,
            "the message store is unavailable; try again",
        )
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The error code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
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

pub fn respond(result: Result<Resp, ApiError>) -> Resp {
    result.unwrap_or_else(ApiError::into_response)
}

/// Reads a request body of at most `limit` bytes: over it, 413; when it does not arrive
/// within `--body-timeout` (a [`crate::server::body::TimedBody`]), 408; when the connection fails,
/// 400.
pub async fn read_body<B>(body: B, limit: usize) -> Result<Bytes, ApiError>
where
    B: hyper::body::Body + Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    use http_body_util::BodyExt;
    http_body_util::Limited::new(body, limit)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                return ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    ErrorCode::TooLarge,
                    format!("the request body is over {limit} bytes"),
                );
            }
            let status = match e.downcast_ref::<crate::server::body::BodyError>() {
                Some(crate::server::body::BodyError::TimedOut(_)) => StatusCode::REQUEST_TIMEOUT,
                _ => StatusCode::BAD_REQUEST,
            };
            // The body is incomplete, so it is not the JSON (or form) that was expected.
            ApiError::new(status, ErrorCode::InvalidJson, e.to_string())
        })
}
