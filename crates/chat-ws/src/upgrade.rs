//! The WebSocket handshake: checks the request, runs the consumer's `connect`, answers 101
//! and runs the connection. Mounted through [`Sockets::upgrade`](crate::Sockets::upgrade).

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tracing::Instrument;

use crate::connection::{ConnectionConfig, Started};
use crate::consumer::Consumer;
use crate::context::RequestInfo;
use crate::socket::{serve, start_socket};

pub(crate) fn plain(status: StatusCode, body: impl Into<String>) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from(body.into())));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

fn header_has(req_headers: &http::HeaderMap, name: header::HeaderName, token: &str) -> bool {
    req_headers.get_all(name).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',')
                .any(|part| part.trim().eq_ignore_ascii_case(token))
        })
    })
}

/// The request's headers, copied out of hyper's read buffer, without the handshake's own.
///
/// hyper parses header values as slices of the connection's 8 KiB read buffer, so a
/// connection that kept the request's `HeaderMap` for its lifetime would keep that whole
/// buffer alive: the largest part of an idle connection's memory. The handshake headers mean
/// nothing once the socket is open.
fn detached_headers(headers: &http::HeaderMap) -> http::HeaderMap {
    const HANDSHAKE: [header::HeaderName; 5] = [
        header::CONNECTION,
        header::UPGRADE,
        header::SEC_WEBSOCKET_KEY,
        header::SEC_WEBSOCKET_VERSION,
        header::SEC_WEBSOCKET_EXTENSIONS,
    ];
    copy_headers(headers, |name| !HANDSHAKE.contains(name))
}

/// Owned copies of the `headers` that `include` names.
fn copy_headers(
    headers: &http::HeaderMap,
    include: impl Fn(&header::HeaderName) -> bool,
) -> http::HeaderMap {
    let mut copy = http::HeaderMap::new();
    for (name, value) in headers {
        if !include(name) {
            continue;
        }
        let Ok(name) = header::HeaderName::from_bytes(name.as_str().as_bytes()) else {
            continue;
        };
        let Ok(mut owned) = HeaderValue::from_bytes(value.as_bytes()) else {
            continue;
        };
        owned.set_sensitive(value.is_sensitive());
        copy.append(name, owned);
    }
    copy
}

/// The request with its URI and the headers named in `keep` copied out of hyper's read
/// buffer, and no other header. For a transport that keeps the handshake request for a
/// connection's lifetime (socketioxide keeps it for every Socket.IO socket): as slices of
/// hyper's 8 KiB read buffer they would keep that buffer alive, per connection, and a socket
/// should keep only what it needs of its handshake (credentials, origin, a few named
/// headers), not whatever a client chose to send.
pub fn detach_head<B>(req: Request<B>, keep: &[header::HeaderName]) -> Request<B> {
    let (mut parts, body) = req.into_parts();
    parts.headers = copy_headers(&parts.headers, |name| keep.contains(name));
    if let Ok(uri) = parts.uri.to_string().parse::<http::Uri>() {
        parts.uri = uri;
    }
    Request::from_parts(parts, body)
}

/// Whether a request asks for a WebSocket upgrade.
pub fn is_websocket_request<B>(req: &Request<B>) -> bool {
    header_has(req.headers(), header::CONNECTION, "upgrade")
        && header_has(req.headers(), header::UPGRADE, "websocket")
}

/// Answers a WebSocket handshake with `consumer`.
///
/// The consumer's `connect` runs *before* the upgrade: if it rejects (or never accepts) the
/// client gets that HTTP status (403 by default) and no socket. If it accepts, the response is
/// `101 Switching Protocols` and the connection runs on a task spawned on
/// `config.tracker`.
///
/// The connection's task runs in the tracing span current when this is called (as does
/// `connect`): call it inside a span naming the connection (an id, the room, the user) and
/// every line the connection logs, until it ends, carries those fields.
pub(crate) async fn upgrade<C, B>(
    mut req: Request<B>,
    consumer: C,
    layer: chat_core::SharedLayer,
    config: ConnectionConfig,
) -> Response<Full<Bytes>>
where
    C: Consumer,
    B: Send + 'static,
{
    if req.method() != http::Method::GET || !is_websocket_request(&req) {
        let mut res = plain(
            StatusCode::UPGRADE_REQUIRED,
            "this endpoint speaks WebSocket only",
        );
        res.headers_mut()
            .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        return res;
    }
    if req
        .headers()
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return plain(StatusCode::BAD_REQUEST, "Sec-WebSocket-Version must be 13");
    }
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY) else {
        return plain(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key");
    };
    let accept_key = derive_accept_key(key.as_bytes());
    let mut info = RequestInfo::from_uri(req.uri(), detached_headers(req.headers()));
    info.peer = req
        .extensions()
        .get::<crate::sockets::PeerAddr>()
        .map(|p| p.0);
    let info = Arc::new(info);
    let accepted = match start_socket(consumer, layer, info, &config.limits).await {
        Ok(Started::Accepted(a)) => a,
        Ok(Started::Rejected { status, reason }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
            return plain(status, reason);
        }
        Err(e) => {
            tracing::error!(error = %e, "consumer connect failed");
            return plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
        }
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let tracker = config.tracker.clone();
    tracker.spawn(
        async move {
            match on_upgrade.await {
                Ok(upgraded) => serve(accepted, TokioIo::new(upgraded), config).await,
                Err(e) => {
                    tracing::debug!(error = %e, "websocket upgrade failed");
                    accepted.abandon().await;
                }
            }
        }
        .in_current_span(),
    );
    let mut res = Response::new(Full::new(Bytes::new()));
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = res.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&accept_key) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_headers_are_copies_and_the_handshake_ones_are_dropped() {
        let buffer = Bytes::from_static(b"session=abc; theme=darkhttps://chat.example");
        let mut headers = http::HeaderMap::new();
        let cookie = HeaderValue::from_maybe_shared(buffer.slice(0..23)).unwrap();
        headers.insert(header::COOKIE, cookie);
        let origin = HeaderValue::from_maybe_shared(buffer.slice(23..)).unwrap();
        headers.insert(header::ORIGIN, origin);
        headers.insert("x-custom", HeaderValue::from_static("1"));
        headers.insert(header::SEC_WEBSOCKET_KEY, HeaderValue::from_static("k"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));

        let copy = detached_headers(&headers);

        assert_eq!(copy.len(), 3);
        assert_eq!(copy[header::COOKIE], "session=abc; theme=dark");
        assert_eq!(copy[header::ORIGIN], "https://chat.example");
        assert_eq!(copy["x-custom"], "1");
        assert!(!copy.contains_key(header::SEC_WEBSOCKET_KEY));
        // A copy, not a slice of the buffer the request was read into.
        let inside = buffer.as_ptr_range();
        assert!(!inside.contains(&copy[header::COOKIE].as_bytes().as_ptr()));
        assert!(!inside.contains(&copy[header::ORIGIN].as_bytes().as_ptr()));
    }

    #[test]
    fn a_detached_head_keeps_only_the_named_headers_as_copies() {
        let buffer = Bytes::from_static(b"session=abc/socket.io/?EIO=4&transport=polling");
        let mut req = Request::new(());
        *req.uri_mut() = http::Uri::from_maybe_shared(buffer.slice(11..)).unwrap();
        let cookie = HeaderValue::from_maybe_shared(buffer.slice(0..11)).unwrap();
        req.headers_mut().insert(header::COOKIE, cookie);
        req.headers_mut()
            .insert("x-huge", HeaderValue::from_static("lots of bytes"));
        req.headers_mut()
            .insert(header::ACCEPT_LANGUAGE, HeaderValue::from_static("pt-BR"));

        let req = detach_head(req, &[header::COOKIE, header::AUTHORIZATION]);

        assert_eq!(req.headers().len(), 1);
        assert_eq!(req.headers()[header::COOKIE], "session=abc");
        assert_eq!(req.uri(), "/socket.io/?EIO=4&transport=polling");
        let inside = buffer.as_ptr_range();
        assert!(!inside.contains(&req.headers()[header::COOKIE].as_bytes().as_ptr()));
    }
}
