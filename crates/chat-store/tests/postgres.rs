//! What only PostgreSQL has to prove: seqs stay gap-free when several *processes* append to
//! one room, and the store answers `Unavailable` while the database is gone and recovers
//! when it is back. Runs against the real server (see `common::pg_admin_url`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use chat_core::{HistoryQuery, MessageStore, NewMessage, RoomName, Sender, StoreError};
use chat_store::testing::TestDatabase;
use chat_store::{Store, StoreConfig};

mod common;
use common::pg_admin_url;

const PROCESSES: usize = 4;
const PER_PROCESS: usize = 2_000;
/// Concurrent senders inside each process.
const TASKS: usize = 50;
const WORKER_URL: &str = "CHAT_STORE_TEST_WORKER_URL";
const WORKER_ID: &str = "CHAT_STORE_TEST_WORKER_ID";

fn room() -> RoomName {
    RoomName::parse("race").unwrap()
}

/// One of the appending processes: started by `four_processes_share_one_gap_free_room`,
/// which re-runs this test binary with `--ignored --exact append_worker`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a worker process of four_processes_share_one_gap_free_room, not a test alone"]
async fn append_worker() {
    let url = std::env::var(WORKER_URL).expect("run by four_processes_share_one_gap_free_room");
    let id = std::env::var(WORKER_ID).unwrap();
    let store = Arc::new(Store::open(StoreConfig::new(url)).await.unwrap());
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let store = store.clone();
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            for n in (t..PER_PROCESS).step_by(TASKS) {
                let sent = store
                    .append(NewMessage {
                        attachment: None,
                        room: room(),
                        sender: Sender::guest(format!("p{id}")),
                        body: format!("{id}/{n}"),
                        client_id: Some(format!("c{n}")),
                    })
                    .await
                    .unwrap();
                assert!(!sent.duplicate);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn four_processes_share_one_gap_free_room() {
    let db = TestDatabase::create(&pg_admin_url()).await.unwrap();
    // The workers open the fresh database together, so they also race to migrate it.
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..PROCESSES)
        .map(|i| {
            Command::new(&exe)
                .args([
                    "--ignored",
                    "--exact",
                    "append_worker",
                    "--test-threads",
                    "1",
                ])
                .env(WORKER_URL, db.url())
                .env(WORKER_ID, i.to_string())
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut child in children {
        let status = tokio::task::spawn_blocking(move || child.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success(), "a worker failed: {status}");
    }

    let store = Store::open(StoreConfig::new(db.url())).await.unwrap();
    let total = PROCESSES * PER_PROCESS;
    assert_eq!(store.last_seq(&room()).await.unwrap(), total as u64);
    let mut seqs = Vec::new();
    let mut bodies = HashSet::new();
    let mut after = 0;
    loop {
        let page = store
            .history(&room(), HistoryQuery::after(after, 500))
            .await
            .unwrap();
        for m in &page.messages {
            seqs.push(m.seq);
            assert!(bodies.insert(m.body.clone()), "stored twice: {}", m.body);
        }
        match page.messages.last() {
            Some(last) if page.has_more => after = last.seq,
            _ => break,
        }
    }
    assert_eq!(
        seqs,
        (1..=total as u64).collect::<Vec<_>>(),
        "gap-free, each once"
    );
    assert_eq!(
        bodies.len(),
        total,
        "every append of every process is stored"
    );
}

fn msg(body: &str, client_id: &str) -> NewMessage {
    NewMessage {
        attachment: None,
        room: room(),
        sender: Sender::guest("ana"),
        body: body.into(),
        client_id: Some(client_id.into()),
    }
}

#[tokio::test]
async fn an_outage_is_unavailable_and_the_store_recovers() {
    let db = TestDatabase::create(&pg_admin_url()).await.unwrap();
    let mut config = StoreConfig::new(db.url());
    config.busy_timeout = Duration::from_secs(3);
    let store = Store::open(config).await.unwrap();
    let first = store.append(msg("before", "c1")).await.unwrap();
    assert_eq!(first.message.seq, 1);
    store
        .history(&room(), HistoryQuery::latest(10))
        .await
        .unwrap();

    db.cut_off().await.unwrap();
    let lost = store.append(msg("during", "c2")).await;
    assert!(matches!(lost, Err(StoreError::Unavailable(_))), "{lost:?}");
    let read = store.history(&room(), HistoryQuery::latest(10)).await;
    assert!(matches!(read, Err(StoreError::Unavailable(_))), "{read:?}");
    assert!(store.ping().await.is_err());
    let mark = store.mark_read(&room(), 3, 1).await;
    assert!(matches!(mark, Err(StoreError::Unavailable(_))), "{mark:?}");

    db.restore().await.unwrap();
    // The client retries the unacknowledged send with its client id: stored once, and the
    // failed attempt took no seq.
    let retried = store.append(msg("during", "c2")).await.unwrap();
    assert_eq!((retried.message.seq, retried.duplicate), (2, false));
    let page = store
        .history(&room(), HistoryQuery::latest(10))
        .await
        .unwrap();
    let bodies: Vec<_> = page.messages.iter().map(|m| m.body.as_str()).collect();
    assert_eq!(bodies, ["before", "during"]);
    store.ping().await.unwrap();
}

/// A stored attachment that does not parse back (edited by hand, say) is dropped with a
/// warning: the message is still read, and nothing panics.
#[tokio::test]
async fn a_stored_attachment_that_does_not_parse_is_dropped() {
    use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
    let (store, db) = common::postgres().await;
    common::store_attachments_to_corrupt(&store).await;
    let mut other = AsyncPgConnection::establish(db.url()).await.unwrap();
    other
        .batch_execute(common::CORRUPT_ATTACHMENTS_SQL)
        .await
        .unwrap();
    common::check_corrupt_attachments_are_dropped(&store).await;
}

/// A stored file that cannot be read back (edited by hand, say) is an error, not a panic.
#[tokio::test]
async fn a_stored_file_that_makes_no_sense_is_an_error() {
    use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
    let (store, db) = common::postgres().await;
    common::store_files_to_corrupt(&store).await;
    let mut other = AsyncPgConnection::establish(db.url()).await.unwrap();
    other
        .batch_execute(common::CORRUPT_FILES_SQL)
        .await
        .unwrap();
    common::check_corrupt_files_are_errors(&store).await;
}
