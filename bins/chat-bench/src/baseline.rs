//! `chat-bench baseline-server`: the "physical limit" of this stack. tokio-tungstenite with
//! one tokio broadcast channel per room, and nothing else: no channel layer, no store, no
//! auth, no rate limit. It speaks enough of our protocol (`message` in, `ack` and `message`
//! out, a `joined` on connect) for every scenario to run against it unchanged, and it uses the
//! same levers as the real server (each frame serialized once and shared, writes batched per
//! connection), so the ratio between the two is what our layers cost.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// tungstenite's buffers as chat-server sets them (512 bytes read at a time, writes gathered up
/// to 64 KiB): tungstenite's default 128 KiB read buffer would make the baseline's idle
/// connections ten times the size of ours, and the memory comparison meaningless.
fn config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(512)
        .write_buffer_size(64 * 1024)
}

/// Frames a room keeps for slow readers before they lag (as the real server's queue).
const ROOM_BUFFER: usize = 1_024;

struct Room {
    tx: broadcast::Sender<Utf8Bytes>,
    seq: AtomicU64,
}

/// The rooms by name. The lock is held only to look a room up when a client connects.
#[derive(Default)]
struct Rooms(Mutex<HashMap<String, Arc<Room>>>);

impl Rooms {
    fn get(&self, name: &str) -> Arc<Room> {
        let mut rooms = self.0.lock().unwrap_or_else(|p| p.into_inner());
        rooms
            .entry(name.to_owned())
            .or_insert_with(|| {
                Arc::new(Room {
                    tx: broadcast::channel(ROOM_BUFFER).0,
                    seq: AtomicU64::new(0),
                })
            })
            .clone()
    }
}

#[derive(Deserialize)]
struct Incoming<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(borrow)]
    body: Option<std::borrow::Cow<'a, str>>,
    client_id: Option<std::borrow::Cow<'a, str>>,
}

/// Serves until the process is killed.
pub async fn run(bind: SocketAddr) -> std::io::Result<()> {
    let listener = crate::net::listen(bind)?;
    println!("listening on http://{}", listener.local_addr()?);
    let rooms = Arc::new(Rooms::default());
    serve(listener, rooms).await
}

async fn serve(listener: TcpListener, rooms: Arc<Rooms>) -> std::io::Result<()> {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            // Out of file descriptors and the like: keep serving the others.
            Err(_) => continue,
        };
        let rooms = rooms.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let _ = connection(stream, rooms).await;
        });
    }
}

/// The room of `/ws/chat/<room>/…`.
fn room_of(path: &str) -> String {
    path.trim_start_matches("/ws/chat/")
        .split(['/', '?'])
        .next()
        .unwrap_or("lobby")
        .to_owned()
}

async fn connection(
    stream: TcpStream,
    rooms: Arc<Rooms>,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    let mut path = String::new();
    // The callback's error type is tungstenite's; this one never refuses.
    #[allow(clippy::result_large_err)]
    let remember_path = |req: &Request, res: Response| {
        path = req.uri().path().to_owned();
        Ok(res)
    };
    let ws = tokio_tungstenite::accept_hdr_async_with_config(stream, remember_path, Some(config()))
        .await?;
    let name = room_of(&path);
    let room = rooms.get(&name);
    let mut rx = room.tx.subscribe();
    let (mut sink, mut stream) = ws.split();
    let joined = format!(
        r#"{{"type":"joined","room":{},"last_seq":{},"online":[]}}"#,
        serde_json::to_string(&name).unwrap_or_default(),
        room.seq.load(Ordering::Relaxed)
    );
    sink.send(Message::text(joined)).await?;
    loop {
        tokio::select! {
            frame = stream.next() => {
                let Some(frame) = frame else { return Ok(()) };
                let Message::Text(text) = frame? else { continue };
                let Ok(msg) = serde_json::from_str::<Incoming<'_>>(&text) else { continue };
                if msg.kind != "message" {
                    continue;
                }
                let seq = room.seq.fetch_add(1, Ordering::Relaxed) + 1;
                let body = serde_json::to_string(msg.body.as_deref().unwrap_or("")).unwrap_or_default();
                let client_id = msg
                    .client_id
                    .as_deref()
                    .map(|c| serde_json::to_string(c).unwrap_or_default())
                    .unwrap_or_else(|| "null".into());
                let out = format!(
                    r#"{{"type":"message","room":"{name}","seq":{seq},"sender":{{"name":"guest"}},"body":{body},"client_id":{client_id}}}"#
                );
                let _ = room.tx.send(Utf8Bytes::from(out));
                let ack = format!(r#"{{"type":"ack","room":"{name}","client_id":{client_id},"seq":{seq}}}"#);
                sink.send(Message::text(ack)).await?;
            }
            frame = rx.recv() => {
                match frame {
                    Ok(text) => {
                        sink.feed(Message::Text(text)).await?;
                        // Batch what else is waiting into the same flush.
                        while let Ok(more) = rx.try_recv() {
                            sink.feed(Message::Text(more)).await?;
                        }
                        sink.flush().await?;
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                }
            }
        }
    }
}
