//! Response helpers: JSON bodies, protocol error bodies, plain pages.

use bytes::Bytes;
use chat_core::ErrorCode;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use serde::Serialize;

/// Every response the server sends has this type.
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

/// A JSON response.
pub fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Resp {
    match serde_json::to_vec(value) {
        Ok(body) => with_body(status, "application/json", body),
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
