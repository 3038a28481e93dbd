//! How the store fails: a database that refuses a write, and URLs it cannot open. Each
//! failure must be a clear, typed error, and must never acknowledge a message as stored.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chat_core::{HistoryQuery, MessageStore, NewMessage, RoomName, Sender, StoreError};
use chat_store::{OpenError, Store, StoreConfig};
use diesel::connection::SimpleConnection;
use diesel::{Connection, SqliteConnection};

mod common;

fn msg(body: &str, client_id: Option<&str>) -> NewMessage {
    NewMessage {
        attachment: None,
        room: RoomName::parse("r").unwrap(),
        sender: Sender::guest("ana"),
        body: body.into(),
        client_id: client_id.map(Into::into),
    }
}

#[tokio::test]
async fn a_refused_write_is_unavailable_and_takes_no_seq() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chat.db");
    let store = Store::open(StoreConfig::new(path.display().to_string()))
        .await
        .unwrap();
    store.append(msg("first", None)).await.unwrap();

    // Another connection to the same file makes SQLite refuse one particular insert.
    let mut other = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
    other
        .batch_execute(
            "PRAGMA busy_timeout = 5000;
             CREATE TRIGGER boom BEFORE INSERT ON messages WHEN NEW.body = 'boom'
             BEGIN SELECT RAISE(ABORT, 'boom refused'); END;",
        )
        .unwrap();

    match store.append(msg("boom", Some("c-1"))).await {
        Err(StoreError::Unavailable(reason)) => {
            assert!(reason.contains("boom refused"), "{reason}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    let room = RoomName::parse("r").unwrap();
    assert_eq!(
        store.last_seq(&room).await.unwrap(),
        1,
        "nothing was stored"
    );

    other.batch_execute("DROP TRIGGER boom;").unwrap();
    let next = store.append(msg("boom", Some("c-1"))).await.unwrap();
    assert_eq!(
        (next.message.seq, next.duplicate),
        (2, false),
        "the refused write consumed no seq and left no client id behind"
    );
    let page = store
        .history(&room, HistoryQuery::latest(10))
        .await
        .unwrap();
    let bodies: Vec<_> = page.messages.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["first", "boom"]);
}

/// A stored attachment that does not parse back (edited by hand, say) is dropped with a
/// warning: the message is still read, and nothing panics.
#[tokio::test]
async fn a_stored_attachment_that_does_not_parse_is_dropped() {
    let (store, dir) = common::sqlite().await;
    common::store_attachments_to_corrupt(&store).await;
    let path = dir.path().join("chat.db");
    let mut other = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
    other
        .batch_execute(&format!(
            "PRAGMA busy_timeout = 5000; {}",
            common::CORRUPT_ATTACHMENTS_SQL
        ))
        .unwrap();
    common::check_corrupt_attachments_are_dropped(&store).await;
}

/// A stored file that cannot be read back (edited by hand, say) is an error, not a panic.
#[tokio::test]
async fn a_stored_file_that_makes_no_sense_is_an_error() {
    let (store, dir) = common::sqlite().await;
    common::store_files_to_corrupt(&store).await;
    let path = dir.path().join("chat.db");
    let mut other = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
    other
        .batch_execute(&format!(
            "PRAGMA busy_timeout = 5000; {}",
            common::CORRUPT_FILES_SQL
        ))
        .unwrap();
    common::check_corrupt_files_are_errors(&store).await;
}

#[tokio::test]
async fn in_memory_urls_are_refused_clearly() {
    for url in ["sqlite::memory:", ":memory:"] {
        match Store::open(StoreConfig::new(url)).await {
            Err(e @ OpenError::Unsupported(_)) => {
                assert!(e.to_string().contains("in-memory"), "{url}: {e}");
            }
            other => panic!("{url}: expected Unsupported, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn an_unreachable_postgres_is_a_clear_error_without_the_password() {
    let url = "postgres://chat:s3cret@127.0.0.1:1/chat";
    match Store::open(StoreConfig::new(url)).await {
        Err(e @ OpenError::Postgres { .. }) => {
            let text = e.to_string();
            assert!(text.contains("127.0.0.1:1"), "names the server: {text}");
            assert!(!text.contains("s3cret"), "never shows the password: {text}");
        }
        other => panic!("expected OpenError::Postgres, got {other:?}"),
    }
}
