//! The route table: maps a request to its handler.

use std::convert::Infallible;
use std::net::SocketAddr;

use chat_core::ErrorCode;
use http::{Method, Request, StatusCode};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use tracing::Instrument;

use crate::server::Compat;
use crate::server::app::Chat;
use crate::server::auth::authenticate;
use crate::server::body::TimedBody;
use crate::server::respond::{Resp, error, redirect, text};
use crate::server::service::ChatBody;
use crate::server::sockets::ConnectionSlot;
use crate::server::{accounts, api, attachments, pages, socketio, trace, tutorials, ws};

/// Decodes `%XX` escapes in one path segment (no `+` rule in paths), with the
/// `percent-encoding` crate: a `%` not followed by two hex digits stays as it is, and bytes
/// that are not UTF-8 once decoded become U+FFFD, so no path can fail the routing.
fn decode_segment(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// The client's address: the peer, or behind a trusted proxy the last address the proxy
/// appended to `X-Forwarded-For` (earlier entries come from the client and can be forged).
fn client_ip<B>(app: &Chat, peer: SocketAddr, req: &Request<B>) -> std::net::IpAddr {
    if !app.config.trust_proxy {
        return peer.ip();
    }
    req.headers()
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|part| part.trim().parse().ok())
        .next_back()
        .unwrap_or(peer.ip())
}

fn method_not_allowed() -> Resp {
    text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
}

/// The answer to a socket or long-poll over its address's cap (`--max-sockets-per-ip`).
fn too_many_sockets(max: usize, api: bool) -> Resp {
    let message = format!(
        "too many sockets from this address (at most {max} at once); close one and try again"
    );
    if api {
        error(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RateLimited,
            message,
        )
    } else {
        text(StatusCode::TOO_MANY_REQUESTS, message)
    }
}

/// Handles one request of the connection whose socket slot is `conn` (see `crate::server::sockets`),
/// in a span with the request's id (see `crate::server::trace`), which the answer echoes in
/// `X-Request-Id`.
pub async fn handle<B: ChatBody>(
    app: Chat,
    peer: SocketAddr,
    conn: ConnectionSlot,
    req: Request<B>,
) -> Result<Resp, Infallible> {
    let request_id = trace::request_id(req.headers());
    let span = trace::request_span(&request_id, req.method(), req.uri().path());
    let Ok(mut res) = handle_request(app, peer, conn, req).instrument(span).await;
    if let Ok(v) = http::HeaderValue::from_str(&request_id) {
        res.headers_mut().insert(trace::REQUEST_ID, v);
    }
    Ok(res)
}

async fn handle_request<B: ChatBody>(
    app: Chat,
    peer: SocketAddr,
    conn: ConnectionSlot,
    mut req: Request<B>,
) -> Result<Resp, Infallible> {
    let path = req.uri().path().to_owned();
    let segments: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(decode_segment)
        .collect();
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    let get = req.method() == Method::GET || req.method() == Method::HEAD;
    let ip = client_ip(&app, peer, &req);
    // Consumers see the client's address (the proxy's forwarded one, when trusted).
    req.extensions_mut()
        .insert(chat_ws::PeerAddr(SocketAddr::new(ip, peer.port())));
    // Sockets (any WebSocket handshake, Socket.IO's included) and held long-polls (ours and
    // Socket.IO's polling GET) count against the address's cap, before anything else runs.
    let upgrade = chat_ws::is_websocket_request(&req);
    let our_poll = get && matches!(segs.as_slice(), ["api", "rooms", _, "poll"]);
    let socketio_poll = get && !upgrade && segs.first() == Some(&"socket.io");
    let slot = if upgrade || our_poll || socketio_poll {
        match app.socket_slots.acquire(ip) {
            Some(slot) => Some(slot),
            None => {
                crate::observe::rate_limited("sockets_per_ip");
                if upgrade {
                    crate::observe::handshake_refused(StatusCode::TOO_MANY_REQUESTS);
                }
                return Ok(too_many_sockets(app.socket_slots.max(), our_poll));
            }
        }
    } else {
        None
    };
    let res = route(&app, &path, &segs, ip, req).await;
    if upgrade && res.status() != StatusCode::SWITCHING_PROTOCOLS {
        crate::observe::handshake_refused(res.status());
    }
    if let Some(slot) = slot
        && upgrade
        && res.status() == StatusCode::SWITCHING_PROTOCOLS
    {
        // Kept by the connection until the socket ends. A refused handshake or an answered
        // poll gives its slot back here, as `slot` goes out of scope.
        let _ = conn.set(slot);
    }
    Ok(res)
}

/// Routes one request to its handler.
async fn route<B: ChatBody>(
    app: &Chat,
    path: &str,
    segs: &[&str],
    ip: std::net::IpAddr,
    req: Request<B>,
) -> Resp {
    if let ["socket.io", ..] = segs {
        let timeout = app.config.body_timeout;
        if req.method() != Method::POST {
            return socketio::handle(app, req).await;
        }
        // socketioxide reads polling POST bodies itself, without a deadline, and does
        // nothing else before it answers: bounding the whole POST bounds its body.
        return tokio::time::timeout(timeout, socketio::handle(app, req))
            .await
            .unwrap_or_else(|_| {
                text(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "the request body did not arrive within {} s",
                        timeout.as_secs()
                    ),
                )
            });
    }
    let get = req.method() == Method::GET || req.method() == Method::HEAD;
    // With `--compat tutorials`, the tutorials' URLs speak their frames to every client but
    // ours (which asks for our subprotocol).
    let tutorial = app.config.compat == Some(Compat::Tutorials) && !ws::offers_native(&req);
    // Every body a handler reads must arrive within `--body-timeout` (see `crate::server::body`).
    let req = req.map(|body| TimedBody::new(body, app.config.body_timeout));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match segs {
        [""] if get => guest_page(app, &req, pages::index()),
        ["chat", room, ""] if get => guest_page(app, &req, pages::room(room)),
        ["chat", _room] if get => redirect(StatusCode::MOVED_PERMANENTLY, &format!("{path}/")),
        ["static", file] if get => {
            pages::asset(file).unwrap_or_else(|| text(StatusCode::NOT_FOUND, "not found"))
        }
        ["login"] if get => pages::login(),
        ["login"] if req.method() == Method::POST => accounts::login(app, ip, req).await,
        ["logout"] if req.method() == Method::POST => accounts::logout(app, req).await,
        ["register"] if req.method() == Method::POST => accounts::register(app, ip, req).await,
        ["dm", user, ""] if get => pair_page(app, user, &req).await,
        ["dm", _user] if get => redirect(StatusCode::MOVED_PERMANENTLY, &format!("{path}/")),
        ["ws"] | ["ws", ""] => ws::multiplexed(app, req).await,
        ["ws", "chat", user, ""] if tutorial && digits(user) => {
            tutorials::pair_chat(app, user, req).await
        }
        ["ws", "chat", room, ""] | ["ws", "chat", room] if tutorial => {
            tutorials::public_room(app, crate::Tutorial::NamedRoom, room, req).await
        }
        ["ws", "socket-server", ""] | ["ws", "socket-server"] if tutorial => {
            tutorials::public_room(app, crate::Tutorial::SocketServer, "test", req).await
        }
        ["ws", "chat", room, ""] | ["ws", "chat", room] => ws::chat_room(app, room, req).await,
        ["ws", "dm", user, ""] | ["ws", "dm", user] => ws::pair_room(app, user, req).await,
        ["ws", "inbox", ""] | ["ws", "inbox"] => ws::inbox(app, req).await,
        ["api", "rooms", room, "online"] if get => api::online(app, room, &req).await,
        ["api", "rooms", room, "poll"] if get => {
            let span = trace::connection_span(trace::Kind::LongPoll, Some(room), None);
            api::poll(app, room, &req).instrument(span).await
        }
        ["api", "me"] if get => accounts::me(app, &req).await,
        ["api", "contacts"] if get => accounts::contacts(app, &req).await,
        ["api", "unread"] if get => accounts::unread(app, &req).await,
        ["api", "config"] if get => accounts::config(app),
        ["api", "rooms", room, "attachments"] if req.method() == Method::POST => {
            attachments::upload(app, room, ip, req).await
        }
        ["api", "attachments", id] if get => attachments::download(app, id, &req).await,
        ["api", "rooms", room, "messages"] => match *req.method() {
            Method::GET => api::history(app, room, &req).await,
            Method::POST => api::post(app, room, ip, req).await,
            _ => method_not_allowed(),
        },
        ["healthz"] => text(StatusCode::OK, "ok"),
        ["readyz"] => crate::server::health::readyz(app).await,
        ["api", ..] => error(
            StatusCode::NOT_FOUND,
            ErrorCode::UnknownType,
            "no such API endpoint",
        ),
        _ if !get => method_not_allowed(),
        _ => pages::error_page(StatusCode::NOT_FOUND, "There is no page here."),
    }
}

/// A page where guests chat: a browser without the guest cookie gets one here, before it
/// opens any socket, so all its sockets and posts are one guest.
fn guest_page<B>(app: &Chat, req: &Request<B>, mut page: Resp) -> Resp {
    let guest = app.guests.guest(req.headers());
    crate::server::auth::guest::set_cookie(page.headers_mut(), &guest);
    page
}

/// `GET /dm/{user_id}/`: log in first, then the pair must be allowed.
async fn pair_page<B>(app: &Chat, other: &str, req: &Request<B>) -> Resp {
    let me = match authenticate(app, req).await {
        Ok(crate::server::auth::Identity::User(u)) => u,
        Ok(crate::server::auth::Identity::Anonymous) => {
            // `other` is a decoded path segment: encoded once for the query, never decoded
            // twice.
            let next = format!("/dm/{other}/");
            return redirect(
                StatusCode::SEE_OTHER,
                &format!("/login?next={}", utf8_percent_encode(&next, NEXT_PARAM)),
            );
        }
        Err(e) => {
            return pages::error_page(StatusCode::SERVICE_UNAVAILABLE, &format!("store: {e}"));
        }
    };
    match crate::server::access::pair_with(app, &me, other).await {
        Ok(_) => pages::pair_room(),
        Err(e) => pages::error_page(e.status(), e.message()),
    }
}

/// What the `next` parameter of the login redirect escapes: everything but the unreserved
/// characters and `/`, so the path stays readable in the address bar.
const NEXT_PARAM: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_percent_decoded() {
        assert_eq!(decode_segment("lob%20by"), "lob by");
        assert_eq!(decode_segment("a%2"), "a%2");
        assert_eq!(decode_segment("%E2%9C%93"), "✓");
        assert_eq!(decode_segment("a+b%+1%zz"), "a+b%+1%zz");
        assert_eq!(decode_segment("%FF"), "\u{FFFD}");
    }

    #[test]
    fn the_login_redirect_escapes_its_next_path() {
        let next = |p: &str| utf8_percent_encode(p, NEXT_PARAM).to_string();
        assert_eq!(next("/dm/3/"), "/dm/3/");
        assert_eq!(next("/dm/a b&c=d/"), "/dm/a%20b%26c%3Dd/");
        assert_eq!(next("/dm/ç/"), "/dm/%C3%A7/");
    }

    mod props {
        use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
        use proptest::prelude::*;

        use super::super::decode_segment;

        proptest! {
            /// Any segment decodes, broken escapes included.
            #[test]
            fn any_segment_decodes(s in any::<String>(), escapes in "(%[0-9a-fA-F+]{0,2}|[a-z+])*") {
                let _ = decode_segment(&s);
                let _ = decode_segment(&escapes);
            }

            /// An encoded segment decodes to what was encoded.
            #[test]
            fn encoded_segments_round_trip(s in any::<String>()) {
                let encoded = utf8_percent_encode(&s, NON_ALPHANUMERIC).to_string();
                prop_assert_eq!(decode_segment(&encoded), s);
            }
        }
    }
}
