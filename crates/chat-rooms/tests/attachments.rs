//! Messages that carry files, through the room-bound consumer: a sender attaches a file they
//! uploaded to the room, and every member sees it on the message; any other file is refused
//! with its own code, and nothing is stored.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Arc;

use chat_core::{
    AttachmentInfo, HistoryQuery, InMemoryChannelLayer, Limits, MemoryStore, MessageStore,
    RoomName, Sender, SharedLayer,
};
use chat_rooms::ChatConsumer;
use chat_rooms::attachment::{Attachment, AttachmentFuture, AttachmentLookup};
use chat_ws::Communicator;
use serde_json::{Value, json};

const REX: &str = "0123456789abcdef0123456789abcdef";
const ELSEWHERE: &str = "11111111111111111111111111111111";
const BRUNOS: &str = "22222222222222222222222222222222";

/// Files by id, as an attachment store would hold their records.
struct Files(HashMap<&'static str, Attachment>);

impl AttachmentLookup for Files {
    fn find<'a>(&'a self, id: &'a str) -> AttachmentFuture<'a, Option<Attachment>> {
        let found = self.0.get(id).cloned();
        Box::pin(async move { Ok(found) })
    }
}

fn file(id: &str, room: &str, uploader: &Sender) -> Attachment {
    Attachment {
        info: AttachmentInfo {
            id: id.into(),
            name: "rex.png".into(),
            content_type: "image/png".into(),
            size: 48_213,
        },
        room: RoomName::parse(room).unwrap(),
        uploader: uploader.idempotency_key(),
    }
}

struct Clinic {
    layer: SharedLayer,
    store: MemoryStore,
    files: Option<Arc<dyn AttachmentLookup>>,
    ana: Sender,
    bruno: Sender,
}

impl Clinic {
    fn new(with_files: bool) -> Self {
        let ana = Sender::user(1, "Ana", Some("tutor".into()));
        let bruno = Sender::user(2, "Bruno", Some("vet".into()));
        let files = Files(HashMap::from([
            (REX, file(REX, "dm_1_2", &ana)),
            (ELSEWHERE, file(ELSEWHERE, "lobby", &ana)),
            (BRUNOS, file(BRUNOS, "dm_1_2", &bruno)),
        ]));
        Self {
            layer: Arc::new(InMemoryChannelLayer::default()),
            store: MemoryStore::new(),
            files: with_files.then(|| Arc::new(files) as Arc<dyn AttachmentLookup>),
            ana,
            bruno,
        }
    }

    async fn open(&self, who: &Sender) -> Communicator<ChatConsumer> {
        let room = RoomName::parse("dm_1_2").unwrap();
        let mut consumer = ChatConsumer::new(
            room,
            who.clone(),
            Arc::new(self.store.clone()),
            Limits::default(),
        );
        if let Some(files) = &self.files {
            consumer = consumer.with_attachments(files.clone());
        }
        let mut c =
            Communicator::with_shared_layer(consumer, self.layer.clone()).with_path("/ws/dm/2/");
        assert!(c.connect().await.accepted());
        c
    }
}

/// The next frame of `kind`, skipping presence and the like.
async fn next(c: &mut Communicator<ChatConsumer>, kind: &str) -> Value {
    loop {
        let v = c.receive_json().await;
        if v["type"] == kind {
            return v;
        }
    }
}

#[tokio::test]
async fn a_file_goes_with_its_message_to_every_member() {
    let clinic = Clinic::new(true);
    let mut ana = clinic.open(&clinic.ana).await;
    let mut bruno = clinic.open(&clinic.bruno).await;

    // The text may be left out when a file is sent.
    ana.send_json(json!({"type": "message", "body": "", "attachment": REX, "client_id": "a1"}))
        .await;
    assert_eq!(next(&mut ana, "ack").await["seq"], 1);
    let got = next(&mut bruno, "message").await;
    assert_eq!(
        got["attachment"],
        json!({"id": REX, "name": "rex.png", "content_type": "image/png", "size": 48213})
    );
    let room = RoomName::parse("dm_1_2").unwrap();
    let history = clinic
        .store
        .history(&room, HistoryQuery::latest(10))
        .await
        .unwrap();
    assert_eq!(
        history.messages[0]
            .attachment
            .as_ref()
            .map(|a| a.id.as_str()),
        Some(REX)
    );

    // A message without a file has no attachment field at all.
    ana.send_json(json!({"type": "message", "body": "oi"}))
        .await;
    assert!(
        next(&mut bruno, "message")
            .await
            .get("attachment")
            .is_none()
    );
}

#[tokio::test]
async fn only_ones_own_file_of_this_room_can_be_attached() {
    let clinic = Clinic::new(true);
    let mut ana = clinic.open(&clinic.ana).await;
    for (id, code) in [
        (ELSEWHERE, "forbidden"),
        (BRUNOS, "forbidden"),
        ("33333333333333333333333333333333", "not_found"),
        ("../../secret_key", "not_found"),
    ] {
        ana.send_json(
            json!({"type": "message", "body": "look", "attachment": id, "client_id": id}),
        )
        .await;
        let e = next(&mut ana, "error").await;
        assert_eq!(
            (e["code"].as_str(), e["client_id"].as_str()),
            (Some(code), Some(id)),
            "{e}"
        );
    }
    ana.send_json(json!({"type": "message", "body": " "})).await;
    assert_eq!(next(&mut ana, "error").await["code"], "empty_message");
    let room = RoomName::parse("dm_1_2").unwrap();
    let history = clinic
        .store
        .history(&room, HistoryQuery::latest(10))
        .await
        .unwrap();
    assert!(history.messages.is_empty(), "nothing refused was stored");

    // A server without attachments says so.
    let bare = Clinic::new(false);
    let mut ana = bare.open(&bare.ana).await;
    ana.send_json(json!({"type": "message", "body": "x", "attachment": REX}))
        .await;
    assert_eq!(next(&mut ana, "error").await["code"], "not_found");
}
