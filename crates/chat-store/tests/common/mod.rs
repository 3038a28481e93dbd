//! What the store's test files share: a fresh store on each backend, and `suite!`.

#![allow(dead_code)]

use chat_core::{NewMessage, RoomName, Sender};
use chat_store::testing::{DEFAULT_ADMIN_URL, TestDatabase};
use chat_store::{Store, StoreConfig};
use tempfile::TempDir;

/// A room name the tests know to be valid.
pub fn room(name: &str) -> RoomName {
    RoomName::parse(name).unwrap()
}

/// A message of `sender` into `room_name`, without an attachment.
pub fn msg(room_name: &str, sender: Sender, body: &str, client_id: Option<&str>) -> NewMessage {
    NewMessage {
        attachment: None,
        room: room(room_name),
        sender,
        body: body.into(),
        client_id: client_id.map(Into::into),
    }
}

/// A store on a new SQLite file, and the directory that holds it.
pub async fn sqlite() -> (Store, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig::new(format!(
        "sqlite://{}/chat.db",
        dir.path().display()
    )))
    .await
    .expect("open store");
    (store, dir)
}

/// A store on a new PostgreSQL database, and the guard that drops the database.
/// `CHAT_TEST_PG_URL` names another server than 127.0.0.1:5432.
pub async fn postgres() -> (Store, TestDatabase) {
    let db = TestDatabase::create(&pg_admin_url())
        .await
        .expect("PostgreSQL for tests");
    let store = Store::open(StoreConfig::new(db.url()))
        .await
        .expect("open the PostgreSQL store");
    assert_eq!(store.backend_name(), "postgres");
    (store, db)
}

/// The admin URL tests create databases through.
pub fn pg_admin_url() -> String {
    std::env::var("CHAT_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.into())
}

/// Runs every check against a backend: `suite!(module_name, opener; check, …)`, where
/// `opener().await` yields a fresh store plus a guard that keeps its database alive.
#[macro_export]
macro_rules! suite {
    ($module:ident, $open:path; $($name:ident),* $(,)?) => {
        mod $module {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (store, _guard) = $open().await;
                    super::$name(store).await;
                }
            )*
        }
    };
}

/// The room of [`store_attachments_to_corrupt`].
pub const CORRUPT_ROOM: &str = "corrupt";

/// What [`check_corrupt_attachments_are_dropped`] expects the test to run on the database
/// between the two halves: stored attachments that do not parse back.
pub const CORRUPT_ATTACHMENTS_SQL: &str = "
    UPDATE messages SET attachment = 'not json' WHERE body = 'one';
    UPDATE messages SET attachment = '{\"id\": 7}' WHERE body = 'two';";

/// First half of the check that a stored attachment which does not parse back is no panic
/// and no error: stores the messages whose attachments the test then corrupts.
pub async fn store_attachments_to_corrupt(store: &Store) {
    use chat_core::{AttachmentInfo, MessageStore, NewMessage, RoomName, Sender};
    for (body, client_id) in [("one", "c-1"), ("two", "c-2"), ("fine", "c-3")] {
        store
            .append(NewMessage {
                room: RoomName::parse(CORRUPT_ROOM).unwrap(),
                sender: Sender::guest("ana"),
                body: body.into(),
                client_id: Some(client_id.into()),
                attachment: Some(AttachmentInfo {
                    id: "d".repeat(32),
                    name: format!("{body}.png"),
                    content_type: "image/png".into(),
                    size: 10,
                }),
            })
            .await
            .unwrap();
    }
}

/// Second half: the messages are still read (history, a retry of their client id), only
/// without their attachments; the intact one keeps its own.
pub async fn check_corrupt_attachments_are_dropped(store: &Store) {
    use chat_core::{HistoryQuery, MessageStore, NewMessage, RoomName, Sender};
    let room = RoomName::parse(CORRUPT_ROOM).unwrap();
    let page = store
        .history(&room, HistoryQuery::latest(10))
        .await
        .unwrap();
    let got: Vec<_> = page
        .messages
        .iter()
        .map(|m| {
            (
                m.body.as_str(),
                m.attachment.as_ref().map(|a| a.name.as_str()),
            )
        })
        .collect();
    assert_eq!(
        got,
        [("one", None), ("two", None), ("fine", Some("fine.png"))]
    );
    let retry = store
        .append(NewMessage {
            room,
            sender: Sender::guest("ana"),
            body: "one".into(),
            client_id: Some("c-1".into()),
            attachment: None,
        })
        .await
        .unwrap();
    assert!(retry.duplicate);
    assert_eq!((retry.message.seq, retry.message.attachment), (1, None));
}

/// What [`check_corrupt_files_are_errors`] expects the test to run on the database between
/// the two halves: file rows this crate would never write.
pub const CORRUPT_FILES_SQL: &str = "
    UPDATE files SET room = 'not a room!' WHERE name = 'room';
    UPDATE files SET size = -1 WHERE name = 'negative';
    UPDATE files SET size = 99 WHERE name = 'length';";

/// First half of the check that a stored file which cannot be read back is an error, never
/// a panic: stores the files the test then corrupts, and one it leaves alone.
pub async fn store_files_to_corrupt(store: &Store) {
    for (n, name) in ["room", "negative", "length", "fine"]
        .into_iter()
        .enumerate()
    {
        store
            .put_file(&corrupt_file(n, name), b"abc")
            .await
            .unwrap();
    }
}

fn corrupt_file(n: usize, name: &str) -> chat_store::StoredFile {
    chat_store::StoredFile {
        id: n.to_string().repeat(32),
        room: chat_core::RoomName::parse("lobby").unwrap(),
        uploader: "u:1".into(),
        name: name.into(),
        content_type: "text/plain".into(),
        size: 3,
        created_at: chat_core::Timestamp::from_unix_millis(1),
    }
}

/// Second half: each damaged file is an error (`file` too, unless only its bytes disagree
/// with its record); the intact one still reads back.
pub async fn check_corrupt_files_are_errors(store: &Store) {
    for (n, name) in ["room", "negative"].into_iter().enumerate() {
        let id = corrupt_file(n, name).id;
        let e = store.file(&id).await.unwrap_err();
        assert!(e.to_string().contains(&id), "names the file: {e}");
        assert!(store.file_with_data(&id).await.is_err(), "{name}");
    }
    let length = corrupt_file(2, "length");
    assert_eq!(
        store.file(&length.id).await.unwrap().map(|f| f.size),
        Some(99),
        "the record alone is sensible"
    );
    assert!(store.file_with_data(&length.id).await.is_err());
    let fine = corrupt_file(3, "fine");
    assert_eq!(
        store.file_with_data(&fine.id).await.unwrap(),
        Some((fine, b"abc".to_vec()))
    );
}
