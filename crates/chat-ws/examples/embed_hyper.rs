//! Mounting a consumer in your own hyper service: `/ws` speaks WebSocket through chat-ws,
//! every other path stays yours.
//!
//! ```sh
//! cargo run -p chat-ws --example embed_hyper
//! # then, with any WebSocket client:  websocat ws://127.0.0.1:3000/ws
//! ```

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use chat_core::{InMemoryChannelLayer, LayerMessage};
use chat_ws::{Consumer, ConsumerError, Context, Sockets};
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

/// Everyone who connects joins one group; every JSON frame goes to all of them.
struct Lobby;

impl Consumer for Lobby {
    async fn connect(&mut self, cx: &mut Context) -> Result<(), ConsumerError> {
        cx.group_add("lobby").await?;
        cx.accept();
        Ok(())
    }

    async fn receive_json(
        &mut self,
        cx: &mut Context,
        msg: serde_json::Value,
    ) -> Result<(), ConsumerError> {
        cx.group_send("lobby", LayerMessage::new("chat.message", msg))
            .await
    }
}

async fn route(
    req: Request<Incoming>,
    sockets: Sockets,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() == "/ws" {
        // The one call: origin check, handshake, connect, and the connection task.
        return Ok(sockets.upgrade(req, Lobby).await);
    }
    Ok(Response::new(Full::new(Bytes::from_static(
        b"your own routes live here; WebSocket at /ws\n",
    ))))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    // Built once: every socket hears the same shutdown.
    let sockets = Sockets::new(InMemoryChannelLayer::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://{}", listener.local_addr()?);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = tokio::signal::ctrl_c() => break,
        };
        let sockets = sockets.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| route(req, sockets.clone()));
            let conn = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            if let Err(e) = conn.await {
                eprintln!("connection error: {e}");
            }
        });
    }
    // Every socket closes with 1001 and runs its `disconnect`.
    if !sockets.shutdown(Duration::from_secs(10)).await {
        eprintln!("some sockets did not close in time");
    }
    Ok(())
}
