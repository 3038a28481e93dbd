//! Seed 000's clinic on our crates: tutors (pet owners) talk to vets in private pair rooms,
//! and the seed's own page works unchanged (`/ws/chat/<contact_id>/`, frames `mensagem`,
//! `enviado_por`, `data_envio`). Two hooks make it the clinic's: a pair policy (a tutor talks
//! only to vets, and a vet only to tutors) and an authenticator (the clinic's own login; here
//! `?as=<user id>`, to keep the example short).
//!
//! ```sh
//! cargo run -p chat-rooms --example vet_clinic
//! websocat 'ws://127.0.0.1:3001/ws/chat/2/?as=1'   # Ana (tutor) to Dr. Bruno
//! websocat 'ws://127.0.0.1:3001/ws/chat/1/?as=2'   # Dr. Bruno to Ana
//! # then type {"mensagem": "Oi, doutor"}. Ana to Carla (another tutor) is refused with 403.
//! ```

use std::error::Error;
use std::path::Path;
use std::sync::Arc;

use chat_core::{InMemoryChannelLayer, MemoryPresence, RolePairs, UserId};
use chat_rooms::server::auth::{Authenticated, Credential};
use chat_rooms::server::{Chat, ChatConfig, Compat};
use chat_store::{NewUser, Store, StoreConfig};
use chat_ws::{AuthError, AuthFuture, Authenticator, RequestHead};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;

/// The clinic's people: username, name, role. Their ids are 1 to 4, in this order.
const PEOPLE: [(&str, &str, &str); 4] = [
    ("ana", "Ana", "tutor"),
    ("bruno", "Dr. Bruno", "vet"),
    ("carla", "Carla", "tutor"),
    ("dora", "Dr. Dora", "vet"),
];

/// The clinic's login, standing in for its session cookie: `?as=<user id>`.
struct ClinicLogin {
    store: Store,
}

impl Authenticator for ClinicLogin {
    type Identity = Authenticated;

    fn authenticate<'a>(&'a self, req: RequestHead<'a>) -> AuthFuture<'a, Authenticated> {
        let id: Option<UserId> = req
            .uri
            .query()
            .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("as=")))
            .and_then(|v| v.parse().ok());
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

/// The clinic's chat, its database in `dir`.
async fn clinic(dir: &Path) -> Result<Chat, Box<dyn Error>> {
    let url = format!("sqlite://{}", dir.join("clinic.db").display());
    let store = Store::open(StoreConfig::new(url)).await?;
    if store.users().await?.is_empty() {
        for (username, name, role) in PEOPLE {
            let user = NewUser {
                username: username.into(),
                display_name: name.into(),
                role: role.into(),
                // They log in through the clinic, never with a password of ours.
                password_hash: String::new(),
            };
            store.create_user(user).await?;
        }
    }
    let mut config = ChatConfig::new("clinic-secret-key-of-at-least-32-chars");
    config.pair_policy = Arc::new(RolePairs::new().allow("tutor", "vet"));
    config.authenticator = Some(Arc::new(ClinicLogin {
        store: store.clone(),
    }));
    config.compat = Some(Compat::Tutorials);
    config.allow_guests = false;
    let layer = Arc::new(InMemoryChannelLayer::default());
    Ok(Chat::new(
        store,
        layer,
        Arc::new(MemoryPresence::new()),
        config,
    ))
}

/// Serves `chat` on `listener`, one hyper connection per client.
async fn serve(chat: Chat, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let service = chat.service();
        tokio::spawn(async move {
            let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            let _ = conn.with_upgrades().await;
        });
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let chat = clinic(Path::new(".")).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3001").await?;
    println!("the clinic's chat on ws://{}", listener.local_addr()?);
    Ok(serve(chat, listener).await?)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{Error as WsError, Message};

    use super::*;

    #[tokio::test]
    async fn a_tutor_and_a_vet_chat_and_two_tutors_cannot() {
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(clinic(dir.path()).await.unwrap(), listener));
        let open = |path: &str| tokio_tungstenite::connect_async(format!("ws://{addr}{path}"));

        let (mut ana, _) = open("/ws/chat/2/?as=1").await.unwrap();
        let (mut bruno, _) = open("/ws/chat/1/?as=2").await.unwrap();
        ana.send(Message::text(r#"{"mensagem": "Oi, doutor"}"#))
            .await
            .unwrap();
        let Some(Ok(Message::Text(frame))) = bruno.next().await else {
            panic!("no frame")
        };
        let frame: serde_json::Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(frame["mensagem"], "Oi, doutor");
        assert_eq!(frame["enviado_por"], "TUTOR");

        for (path, status) in [("/ws/chat/3/?as=1", 403), ("/ws/chat/2/", 403)] {
            match open(path).await {
                Err(WsError::Http(res)) => assert_eq!(res.status(), status, "{path}"),
                other => panic!("{path}: expected {status}, got {other:?}"),
            }
        }
    }
}
