//! An existing axum service with its own login adds chat: rooms, pair chats, history and
//! long-poll under `/chat` in one line, and a consumer of its own in a three-line handler; its
//! login decides who is who in both.
//!
//! ```sh
//! cargo run -p chat-rooms --example embed_axum
//! curl -i -d name=ana http://127.0.0.1:3002/login        # the app's login: a cookie
//! websocat -H 'Cookie: app_session=…' ws://127.0.0.1:3002/chat/ws
//! #   {"type":"join","room":"lobby"}   {"type":"message","room":"lobby","body":"oi"}
//! websocat -H 'Cookie: app_session=…' ws://127.0.0.1:3002/echo   # the app's own consumer
//! ```

use std::collections::HashMap;
use std::error::Error;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Request, State};
use axum::routing::{get, post};
use chat_core::{InMemoryChannelLayer, MemoryPresence, UserId};
use chat_rooms::server::auth::{Authenticated, Credential};
use chat_rooms::server::{Chat, ChatConfig};
use chat_store::{NewUser, Store, StoreConfig};
use chat_ws::{
    AuthError, AuthFuture, Authenticator, Consumer, ConsumerError, Context, RequestHead, Sockets,
};

/// The app's sessions: cookie value → user id. (A real app has its own store for these.)
type Sessions = Arc<Mutex<HashMap<String, UserId>>>;

/// The app's login, as the chat sees it: the `app_session` cookie, looked up in the app's
/// sessions; its users are the chat store's users of the same username.
struct AppLogin {
    sessions: Sessions,
    store: Store,
}

impl Authenticator for AppLogin {
    type Identity = Authenticated;

    fn authenticate<'a>(&'a self, req: RequestHead<'a>) -> AuthFuture<'a, Authenticated> {
        let id = cookie(req.headers, "app_session").and_then(|token| {
            let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            sessions.get(token).copied()
        });
        Box::pin(async move {
            let Some(id) = id else { return Ok(None) };
            let user = self.store.user(id).await.map_err(AuthError::unavailable)?;
            Ok(user.map(|user| Authenticated {
                user,
                credential: Credential::None,
            }))
        })
    }
}

/// A cookie's value.
fn cookie<'h>(headers: &'h http::HeaderMap, name: &str) -> Option<&'h str> {
    let all = headers.get(http::header::COOKIE)?.to_str().ok()?;
    all.split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find_map(|(k, v)| (k == name).then_some(v))
}

/// The app's own consumer: echoes every text frame to a logged-in user, under their name.
struct Echo {
    who: Option<String>,
}

impl Consumer for Echo {
    async fn connect(&mut self, cx: &mut Context) -> Result<(), ConsumerError> {
        match self.who {
            Some(_) => cx.accept(),
            None => cx.reject(401, "log in first"),
        }
        Ok(())
    }

    async fn receive_text(&mut self, cx: &mut Context, text: &str) -> Result<(), ConsumerError> {
        let who = self.who.as_deref().unwrap_or_default();
        cx.send_text(format!("{who}: {text}"));
        Ok(())
    }
}

/// What the app's own handlers share: the chat's sockets (one shutdown for all) and its login.
#[derive(Clone)]
struct AppState {
    sockets: Sockets,
    login: Arc<AppLogin>,
}

/// The app: its login, its echo socket, and the chat under `/chat`.
async fn app(store: Store, sessions: Sessions) -> (Router, Chat) {
    let mut config = ChatConfig::new("app-secret-key-of-at-least-32-chars!");
    let app_login = Arc::new(AppLogin {
        sessions: sessions.clone(),
        store: store.clone(),
    });
    config.authenticator = Some(app_login.clone());
    let layer = Arc::new(InMemoryChannelLayer::default());
    let chat = Chat::new(
        store.clone(),
        layer,
        Arc::new(MemoryPresence::new()),
        config,
    );
    let login = post(async move |body: String| {
        let name = body.strip_prefix("name=").unwrap_or_default().to_owned();
        let Ok(users) = store.users().await else {
            return (
                http::StatusCode::SERVICE_UNAVAILABLE,
                [("set-cookie", String::new())],
            );
        };
        let Some(user) = users.into_iter().find(|u| u.username == name) else {
            return (
                http::StatusCode::UNAUTHORIZED,
                [("set-cookie", String::new())],
            );
        };
        let token = format!("{:032x}", rand::random::<u128>());
        sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token.clone(), user.id);
        let set = format!("app_session={token}; HttpOnly; SameSite=Lax; Path=/");
        (http::StatusCode::NO_CONTENT, [("set-cookie", set)])
    });
    let router = Router::new()
        .route("/login", login)
        // A consumer of the app's own behind the same login, sharing the chat's shutdown.
        .route(
            "/echo",
            get(async |State(app): State<AppState>, req: Request| {
                let who = app.login.authenticate((&req).into()).await.ok().flatten();
                let echo = Echo {
                    who: who.map(|a| a.user.display_name),
                };
                app.sockets.upgrade(req, echo).await
            }),
        )
        // The whole chat: rooms, pair rooms, /ws, history, long-poll, Socket.IO.
        .nest_service("/chat", chat.service())
        .with_state(AppState {
            sockets: chat.sockets().clone(),
            login: app_login,
        });
    (router, chat)
}

/// The app's users, also the chat's: Ana (id 1) and Bruno (id 2).
async fn users(store: &Store) -> Result<(), Box<dyn Error>> {
    if store.users().await?.is_empty() {
        for (username, name) in [("ana", "Ana"), ("bruno", "Bruno")] {
            let user = NewUser {
                username: username.into(),
                display_name: name.into(),
                role: String::new(),
                password_hash: String::new(),
            };
            store.create_user(user).await?;
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let store = Store::open(StoreConfig::new("sqlite://embed_axum.db")).await?;
    users(&store).await?;
    let (router, chat) = app(store, Sessions::default()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3002").await?;
    println!("http://{}", listener.local_addr()?);
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    chat.shutdown(std::time::Duration::from_secs(10)).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use futures_util::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::{Error as WsError, Message};

    use super::*;

    /// One HTTP/1.1 request, the whole answer as text.
    async fn http(addr: std::net::SocketAddr, head: &str, body: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "{head}\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    async fn next_json<S: StreamExt<Item = Result<Message, WsError>> + Unpin>(
        ws: &mut S,
        kind: &str,
    ) -> serde_json::Value {
        loop {
            let Some(Ok(Message::Text(t))) = ws.next().await else {
                panic!("no {kind}")
            };
            let v: serde_json::Value = serde_json::from_str(&t).unwrap();
            if v["type"] == kind {
                return v;
            }
        }
    }

    #[tokio::test]
    async fn the_apps_login_opens_the_chat_and_its_own_socket_works() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("chat.db").display());
        let store = Store::open(StoreConfig::new(url)).await.unwrap();
        users(&store).await.unwrap();
        let (router, _chat) = app(store, Sessions::default()).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });

        let answer = http(addr, "POST /login HTTP/1.1", "name=ana").await;
        let token = answer
            .split("app_session=")
            .nth(1)
            .unwrap()
            .split(';')
            .next()
            .unwrap();
        let mut req = format!("ws://{addr}/chat/ws/dm/2/")
            .into_client_request()
            .unwrap();
        req.headers_mut()
            .insert("cookie", format!("app_session={token}").parse().unwrap());
        let (mut ana, _) = tokio_tungstenite::connect_async(req).await.unwrap();
        ana.send(Message::text(
            r#"{"type":"message","body":"oi, Bruno","client_id":"a1"}"#,
        ))
        .await
        .unwrap();
        assert_eq!(next_json(&mut ana, "ack").await["seq"], 1);

        // Without the app's cookie, a pair room is closed to the visitor.
        match tokio_tungstenite::connect_async(format!("ws://{addr}/chat/ws/dm/2/")).await {
            Err(WsError::Http(res)) => assert_eq!(res.status(), 401),
            other => panic!("expected 401, got {other:?}"),
        }
        // The app's own socket: the same login, the same 401 without it.
        let mut req = format!("ws://{addr}/echo").into_client_request().unwrap();
        let cookie = format!("app_session={token}").parse().unwrap();
        req.headers_mut().insert("cookie", cookie);
        let (mut echo, _) = tokio_tungstenite::connect_async(req).await.unwrap();
        echo.send(Message::text("ping?")).await.unwrap();
        assert_eq!(
            echo.next().await.unwrap().unwrap(),
            Message::text("Ana: ping?")
        );
        match tokio_tungstenite::connect_async(format!("ws://{addr}/echo")).await {
            Err(WsError::Http(res)) => assert_eq!(res.status(), 401),
            other => panic!("expected 401, got {other:?}"),
        }
    }
}
