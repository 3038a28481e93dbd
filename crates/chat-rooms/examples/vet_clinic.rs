//! The seed apps' domain built on our crates: pet owners ("tutors") and veterinarians talk in
//! private pair rooms, every message says who sent it and in which role, and **tutors may only
//! open conversations with vets and vice versa**.
//!
//! ```sh
//! cargo run -p chat-rooms --example vet_clinic
//! # Ana (tutor, id 1) talks to Bruno (vet, id 2):
//! websocat 'ws://127.0.0.1:3001/ws/dm/2/?as=1'
//! websocat 'ws://127.0.0.1:3001/ws/dm/1/?as=2'
//! # Ana and Carla (both tutors) are refused with 403 before any socket opens.
//! cargo test -p chat-rooms --example vet_clinic
//! ```
//!
//! Identity here is a `?as=` parameter to keep the example short; a real service puts its
//! own authentication where `identify` is.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use chat_core::{
    InMemoryChannelLayer, Limits, Member, MemoryStore, MessageStore, PairPolicy, PairRoom,
    RolePairs, Sender, UserId,
};
use chat_rooms::ChatConsumer;
use chat_ws::{Sockets, form_decode};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

/// The clinic's people.
struct Directory {
    users: HashMap<UserId, (&'static str, &'static str)>,
}

impl Directory {
    fn clinic() -> Self {
        let users = HashMap::from([
            (1, ("Ana", "tutor")),
            (2, ("Dr. Bruno", "vet")),
            (3, ("Carla", "tutor")),
            (4, ("Dr. Dora", "vet")),
        ]);
        Self { users }
    }

    fn sender(&self, id: UserId) -> Option<Sender> {
        let (name, role) = self.users.get(&id)?;
        Some(Sender::user(id, *name, Some((*role).to_owned())))
    }

    fn member(&self, id: UserId) -> Option<Member<'static>> {
        let (_, role) = self.users.get(&id)?;
        Some(Member { id, role })
    }
}

/// Tutors talk with vets, never tutor with tutor or vet with vet.
fn clinic_policy() -> RolePairs {
    RolePairs::new().allow("tutor", "vet")
}

struct Clinic {
    directory: Directory,
    policy: RolePairs,
    store: Arc<dyn MessageStore>,
    sockets: Sockets,
}

/// Who may open which pair room: both users exist and the policy allows them.
fn authorize(clinic: &Clinic, me: UserId, other: UserId) -> Result<(PairRoom, Sender), StatusCode> {
    let (Some(a), Some(b)) = (clinic.directory.member(me), clinic.directory.member(other)) else {
        return Err(StatusCode::NOT_FOUND);
    };
    if !clinic.policy.may_pair(a, b) {
        return Err(StatusCode::FORBIDDEN);
    }
    let pair = PairRoom::new(me, other).map_err(|_| StatusCode::BAD_REQUEST)?;
    let sender = clinic.directory.sender(me).ok_or(StatusCode::NOT_FOUND)?;
    Ok((pair, sender))
}

/// Demo identity: `?as=<user id>`.
fn identify(req: &Request<Incoming>) -> Option<UserId> {
    let query = form_decode(req.uri().query().unwrap_or(""));
    query.iter().find(|(k, _)| k == "as")?.1.parse().ok()
}

async fn route(
    req: Request<Incoming>,
    clinic: Arc<Clinic>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let refuse = |status: StatusCode| {
        let mut res = Response::new(Full::new(Bytes::from(status.to_string())));
        *res.status_mut() = status;
        Ok(res)
    };
    let Some(other) = req
        .uri()
        .path()
        .strip_prefix("/ws/dm/")
        .and_then(|rest| rest.trim_end_matches('/').parse::<UserId>().ok())
    else {
        return refuse(StatusCode::NOT_FOUND);
    };
    let Some(me) = identify(&req) else {
        return refuse(StatusCode::UNAUTHORIZED);
    };
    let (pair, sender) = match authorize(&clinic, me, other) {
        Ok(ok) => ok,
        Err(status) => return refuse(status),
    };
    let consumer = ChatConsumer::new(pair.name(), sender, clinic.store.clone(), Limits::default());
    Ok(clinic.sockets.upgrade(req, consumer).await)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let clinic = Arc::new(Clinic {
        directory: Directory::clinic(),
        policy: clinic_policy(),
        store: Arc::new(MemoryStore::new()),
        sockets: Sockets::new(InMemoryChannelLayer::default()),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3001").await?;
    println!(
        "vet clinic chat on ws://{}/ws/dm/{{other}}/?as={{me}}",
        listener.local_addr()?
    );
    loop {
        let (stream, _) = listener.accept().await?;
        let clinic = clinic.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| route(req, clinic.clone()));
            let conn = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            if let Err(e) = conn.await {
                eprintln!("connection error: {e}");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_ws::Communicator;
    use serde_json::json;

    fn clinic() -> Clinic {
        Clinic {
            directory: Directory::clinic(),
            policy: clinic_policy(),
            store: Arc::new(MemoryStore::new()),
            sockets: Sockets::new(InMemoryChannelLayer::default()),
        }
    }

    #[test]
    fn tutors_talk_with_vets_only() {
        let c = clinic();
        assert!(authorize(&c, 1, 2).is_ok(), "tutor → vet");
        assert!(authorize(&c, 2, 3).is_ok(), "vet → tutor");
        assert_eq!(
            authorize(&c, 1, 3).err(),
            Some(StatusCode::FORBIDDEN),
            "tutor → tutor"
        );
        assert_eq!(
            authorize(&c, 2, 4).err(),
            Some(StatusCode::FORBIDDEN),
            "vet → vet"
        );
        assert_eq!(authorize(&c, 1, 9).err(), Some(StatusCode::NOT_FOUND));
        assert_eq!(
            authorize(&c, 1, 1).err(),
            Some(StatusCode::FORBIDDEN),
            "no self-chat"
        );
    }

    #[test]
    fn both_sides_land_in_the_same_room() {
        let c = clinic();
        let (from_ana, _) = authorize(&c, 1, 2).unwrap();
        let (from_bruno, _) = authorize(&c, 2, 1).unwrap();
        assert_eq!(from_ana.name(), from_bruno.name());
        assert_eq!(from_ana.name().as_str(), "dm_1_2");
    }

    #[tokio::test]
    async fn messages_carry_the_senders_role() {
        let c = clinic();
        let open = |me, other| {
            let (pair, sender) = authorize(&c, me, other).unwrap();
            let consumer =
                ChatConsumer::new(pair.name(), sender, c.store.clone(), Limits::default());
            Communicator::with_shared_layer(consumer, c.sockets.layer().clone())
        };
        let mut ana = open(1, 2);
        let mut bruno = open(2, 1);
        assert!(ana.connect().await.accepted());
        assert!(bruno.connect().await.accepted());
        ana.send_json(json!({"type": "message", "body": "Rex is limping"}))
            .await;
        let got = bruno.receive_json().await;
        assert_eq!(got["room"], "dm_1_2");
        assert_eq!(
            got["sender"],
            json!({"id": 1, "name": "Ana", "role": "tutor"})
        );
        bruno
            .send_json(json!({"type": "message", "body": "Bring him at 3pm"}))
            .await;
        assert_eq!(bruno.receive_json().await["type"], "ack");
        let reply = loop {
            let m = ana.receive_json().await;
            if m["type"] == "message" && m["sender"]["id"] == 2 {
                break m;
            }
        };
        assert_eq!(reply["sender"]["role"], "vet");
    }
}
