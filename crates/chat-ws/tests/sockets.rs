//! `Sockets` over real TCP (origin checks before the consumer, shutdown with 1001 that waits
//! for `disconnect`), and the handshake details a `Communicator` can fake (cookies, query,
//! peer address) as a consumer sees them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chat_core::InMemoryChannelLayer;
use chat_ws::{
    Communicator, ConnectOutcome, Consumer, ConsumerError, Context, OriginPolicy, PeerAddr, Sockets,
};
use futures_util::StreamExt;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};

/// Counts its `connect`s and `disconnect`s; says who it sees when it opens.
#[derive(Clone, Default)]
struct Counted {
    connects: Arc<AtomicUsize>,
    disconnects: Arc<AtomicUsize>,
}

impl Consumer for Counted {
    async fn connect(&mut self, cx: &mut Context) -> Result<(), ConsumerError> {
        self.connects.fetch_add(1, Ordering::SeqCst);
        cx.accept();
        let peer = cx.request().peer.map(|p| p.ip().to_string());
        cx.send_text(format!("peer {}", peer.unwrap_or_default()));
        Ok(())
    }

    async fn disconnect(
        &mut self,
        _cx: &mut Context,
        _code: Option<u16>,
    ) -> Result<(), ConsumerError> {
        self.disconnects.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// Serves `sockets` with `consumer` on a local port, inserting each connection's peer
/// address as a [`PeerAddr`].
async fn serve(sockets: Sockets, consumer: Counted) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                return;
            };
            let (sockets, consumer) = (sockets.clone(), consumer.clone());
            tokio::spawn(async move {
                let service = service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                    let (sockets, consumer) = (sockets.clone(), consumer.clone());
                    req.extensions_mut().insert(PeerAddr(peer));
                    async move { Ok::<_, Infallible>(sockets.upgrade(req, consumer).await) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

fn request(addr: SocketAddr, origin: Option<&str>) -> http::Request<()> {
    let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
    if let Some(o) = origin {
        req.headers_mut().insert("origin", o.parse().unwrap());
    }
    req
}

#[tokio::test]
async fn a_foreign_origin_is_refused_before_the_consumer_runs() {
    let consumer = Counted::default();
    let sockets = Sockets::new(InMemoryChannelLayer::default());
    let addr = serve(sockets, consumer.clone()).await;

    let refused =
        tokio_tungstenite::connect_async(request(addr, Some("http://evil.example"))).await;
    match refused {
        Err(tungstenite::Error::Http(res)) => {
            assert_eq!(res.status(), 403);
            let body = String::from_utf8(res.body().clone().unwrap_or_default()).unwrap();
            assert!(body.contains("evil.example"), "{body}");
        }
        other => panic!("expected a 403, got {other:?}"),
    }
    assert_eq!(consumer.connects.load(Ordering::SeqCst), 0);

    // The server's own page, and a client without an Origin (a service), get in.
    for origin in [Some(format!("http://{addr}")), None] {
        let (mut ws, _) = tokio_tungstenite::connect_async(request(addr, origin.as_deref()))
            .await
            .unwrap();
        let first = ws.next().await.unwrap().unwrap();
        assert_eq!(first, Message::text("peer 127.0.0.1"), "the peer address");
    }
    assert_eq!(consumer.connects.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_configured_origin_list_replaces_same_host() {
    let consumer = Counted::default();
    let sockets = Sockets::new(InMemoryChannelLayer::default())
        .with_origins(OriginPolicy::origins(["https://chat.example.com"]));
    let addr = serve(sockets, consumer.clone()).await;
    let same_host = format!("http://{addr}");
    assert!(
        tokio_tungstenite::connect_async(request(addr, Some(&same_host)))
            .await
            .is_err()
    );
    let (mut ws, _) =
        tokio_tungstenite::connect_async(request(addr, Some("https://chat.example.com")))
            .await
            .unwrap();
    assert!(ws.next().await.unwrap().is_ok());
}

#[tokio::test]
async fn shutdown_closes_every_socket_with_1001_and_waits_for_disconnect() {
    let consumer = Counted::default();
    let sockets = Sockets::new(InMemoryChannelLayer::default());
    let addr = serve(sockets.clone(), consumer.clone()).await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        let (mut ws, _) = tokio_tungstenite::connect_async(request(addr, None))
            .await
            .unwrap();
        ws.next().await.unwrap().unwrap();
        clients.push(ws);
    }

    assert!(sockets.shutdown(Duration::from_secs(5)).await, "in time");
    assert_eq!(consumer.disconnects.load(Ordering::SeqCst), 3);
    for mut ws in clients {
        match ws.next().await {
            Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Away),
            other => panic!("expected a 1001 close, got {other:?}"),
        }
    }
}

/// Lets in only the caller with the `sid=ok` cookie, and tells them what it saw.
struct CookieGate;

impl Consumer for CookieGate {
    async fn connect(&mut self, cx: &mut Context) -> Result<(), ConsumerError> {
        let req = cx.request();
        let cookie = req
            .headers
            .get("cookie")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        if !cookie.split("; ").any(|c| c == "sid=ok") {
            cx.reject(401, "log in first");
            return Ok(());
        }
        let seen = format!(
            "{cookie} | room={} | {} | {:?}",
            req.query("room").unwrap_or_default(),
            req.headers
                .get("x-client")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default(),
            req.peer,
        );
        cx.accept();
        cx.send_text(seen);
        Ok(())
    }
}

#[tokio::test]
async fn a_communicator_fakes_cookies_query_headers_and_peer() {
    let layer = InMemoryChannelLayer::default();
    let peer: SocketAddr = "10.0.0.7:5555".parse().unwrap();
    let mut c = Communicator::new(CookieGate, layer.clone())
        .with_path("/ws/?room=lobby")
        .with_peer(peer)
        .with_cookie("theme", "dark")
        .with_cookie("sid", "ok")
        .with_query("since", "3")
        .with_header("X-Client", "tests/1");
    assert!(c.connect().await.accepted());
    assert_eq!(
        c.receive_text().await,
        "theme=dark; sid=ok | room=lobby | tests/1 | Some(10.0.0.7:5555)"
    );

    let mut anonymous = Communicator::new(CookieGate, layer).with_cookie("sid", "forged");
    assert_eq!(
        anonymous.connect().await,
        ConnectOutcome::Rejected(401, "log in first".into())
    );
}
