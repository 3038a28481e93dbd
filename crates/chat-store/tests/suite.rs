//! The store suite: the `MessageStore` contract, each check a generic function of a store,
//! run on a real SQLite file and on the real PostgreSQL server (a throwaway database per
//! test; `CHAT_TEST_PG_URL` names another server than 127.0.0.1:5432).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::sync::Arc;

use chat_core::{
    AttachmentInfo, GuestId, HistoryPage, HistoryQuery, MessageStore, NewMessage, Sender,
    StoreError, Timestamp,
};
use chat_store::{Store, StoreConfig, StoredFile};

mod common;
use common::{msg, postgres, room, sqlite};

fn seqs(page: &HistoryPage) -> Vec<u64> {
    page.messages.iter().map(|m| m.seq).collect()
}

async fn seqs_start_at_one_per_room(store: impl MessageStore) {
    let a = store
        .append(msg("a", Sender::guest("x"), "1", None))
        .await
        .unwrap();
    let b = store
        .append(msg("b", Sender::guest("x"), "1", None))
        .await
        .unwrap();
    let a2 = store
        .append(msg(
            "a",
            Sender::user(3, "Ana", Some("tutor".into())),
            "2",
            None,
        ))
        .await
        .unwrap();
    assert_eq!((a.message.seq, b.message.seq, a2.message.seq), (1, 1, 2));
    assert!(!a.duplicate);
    assert_eq!(store.last_seq(&room("a")).await.unwrap(), 2);
    assert_eq!(store.last_seq(&room("never")).await.unwrap(), 0);
    let page = store
        .history(&room("a"), HistoryQuery::latest(10))
        .await
        .unwrap();
    assert_eq!(
        page.messages[1].sender,
        Sender::user(3, "Ana", Some("tutor".into()))
    );
    assert_eq!(
        page.messages[1], a2.message,
        "what append returns is what is stored"
    );
}

async fn concurrent_appends_are_gap_free(store: impl MessageStore) {
    const TASKS: u64 = 16;
    const EACH: u64 = 200;
    let store = Arc::new(store);
    let mut handles = Vec::new();
    for t in 0..TASKS {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for i in 0..EACH {
                let a = store
                    .append(msg(
                        "busy",
                        Sender::guest(format!("t{t}")),
                        &format!("{t}-{i}"),
                        None,
                    ))
                    .await
                    .unwrap();
                mine.push(a.message.seq);
            }
            mine
        }));
    }
    let mut all = HashSet::new();
    for h in handles {
        let mine = h.await.unwrap();
        assert!(
            mine.windows(2).all(|w| w[0] < w[1]),
            "a sender's seqs follow its commit order"
        );
        for s in mine {
            assert!(all.insert(s), "seq {s} given twice");
        }
    }
    let n = TASKS * EACH;
    assert_eq!(
        all,
        (1..=n).collect::<HashSet<_>>(),
        "seqs are exactly 1..={n}"
    );
    assert_eq!(store.last_seq(&room("busy")).await.unwrap(), n);
    // And the stored order agrees: reading forward walks 1, 2, 3, … with no hole.
    let mut after = 0;
    loop {
        let page = store
            .history(&room("busy"), HistoryQuery::after(after, 200))
            .await
            .unwrap();
        for m in &page.messages {
            assert_eq!(m.seq, after + 1);
            after = m.seq;
        }
        if !page.has_more {
            break;
        }
    }
    assert_eq!(after, n);
}

async fn client_id_is_idempotent(store: impl MessageStore) {
    let ana = || Sender::guest("ana");
    let first = store
        .append(msg("r", ana(), "hello", Some("c-1")))
        .await
        .unwrap();
    let again = store
        .append(msg("r", ana(), "changed", Some("c-1")))
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(
        again.message, first.message,
        "the first message is returned"
    );
    let other_sender = store
        .append(msg("r", Sender::guest("bruno"), "hello", Some("c-1")))
        .await
        .unwrap();
    assert!(!other_sender.duplicate, "client ids are per sender");
    let other_room = store
        .append(msg("r2", ana(), "hello", Some("c-1")))
        .await
        .unwrap();
    assert!(!other_room.duplicate, "client ids are per room");
    let user = store
        .append(msg("r", Sender::user(7, "ana", None), "hello", Some("c-1")))
        .await
        .unwrap();
    assert!(
        !user.duplicate,
        "a user named like a guest is another sender"
    );

    // Concurrent retries of one client id (they may land in the same batch): stored once.
    let store = Arc::new(store);
    let mut handles = Vec::new();
    for _ in 0..20 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            store
                .append(msg("r", ana(), "retry", Some("c-2")))
                .await
                .unwrap()
        }));
    }
    let mut fresh = 0;
    let mut seqs_seen = HashSet::new();
    for h in handles {
        let a = h.await.unwrap();
        fresh += usize::from(!a.duplicate);
        seqs_seen.insert(a.message.seq);
    }
    assert_eq!(fresh, 1, "exactly one retry stores the message");
    assert_eq!(seqs_seen.len(), 1, "every retry answers the same seq");
    assert_eq!(store.last_seq(&room("r")).await.unwrap(), 4);
}

/// Guests are keyed by their guest id (kept in the sender key), never by their name.
async fn guests_are_told_apart_by_their_ids(store: impl MessageStore) {
    let one = GuestId::from_bits(0x1111_2222_3333_4444);
    let two = GuestId::from_bits(0x5555_6666_7777_8888);
    let first = store
        .append(msg(
            "g",
            Sender::guest_with_id(one.clone(), "ana"),
            "1",
            Some("c-1"),
        ))
        .await
        .unwrap();
    let other = store
        .append(msg(
            "g",
            Sender::guest_with_id(two.clone(), "ana"),
            "2",
            Some("c-1"),
        ))
        .await
        .unwrap();
    assert!(
        !other.duplicate,
        "another guest of the same name is another sender"
    );
    assert_ne!(other.message.seq, first.message.seq);
    let renamed = store
        .append(msg(
            "g",
            Sender::guest_with_id(one.clone(), "ana-2"),
            "1",
            Some("c-1"),
        ))
        .await
        .unwrap();
    assert!(renamed.duplicate, "the same guest under a new name retries");
    assert_eq!(
        renamed.message, first.message,
        "read back with its guest id"
    );
    let page = store
        .history(&room("g"), HistoryQuery::latest(10))
        .await
        .unwrap();
    let senders: Vec<&Sender> = page.messages.iter().map(|m| &m.sender).collect();
    assert_eq!(
        senders,
        [
            &Sender::guest_with_id(one, "ana"),
            &Sender::guest_with_id(two, "ana")
        ]
    );
}

async fn history_pages_both_ways(store: impl MessageStore) {
    let r = room("h");
    assert_eq!(
        store.history(&r, HistoryQuery::latest(10)).await.unwrap(),
        HistoryPage::default(),
        "an unknown room has an empty history"
    );
    for i in 1..=250 {
        store
            .append(msg("h", Sender::guest("x"), &i.to_string(), None))
            .await
            .unwrap();
    }
    let p = store.history(&r, HistoryQuery::latest(3)).await.unwrap();
    assert_eq!((seqs(&p), p.has_more), (vec![248, 249, 250], true));
    assert_eq!(p.messages[0].body, "248");
    let p = store
        .history(&r, HistoryQuery::before(248, 3))
        .await
        .unwrap();
    assert_eq!((seqs(&p), p.has_more), (vec![245, 246, 247], true));
    let p = store
        .history(&r, HistoryQuery::before(3, 10))
        .await
        .unwrap();
    assert_eq!((seqs(&p), p.has_more), (vec![1, 2], false));
    let p = store.history(&r, HistoryQuery::after(0, 2)).await.unwrap();
    assert_eq!((seqs(&p), p.has_more), (vec![1, 2], true));
    let p = store
        .history(&r, HistoryQuery::after(247, 10))
        .await
        .unwrap();
    assert_eq!((seqs(&p), p.has_more), (vec![248, 249, 250], false));
    let both = HistoryQuery {
        after: Some(10),
        before: Some(14),
        limit: 10,
    };
    let p = store.history(&r, both).await.unwrap();
    assert_eq!((seqs(&p), p.has_more), (vec![11, 12, 13], false));
    let both = HistoryQuery {
        after: Some(10),
        before: Some(14),
        limit: 2,
    };
    let p = store.history(&r, both).await.unwrap();
    assert_eq!((seqs(&p), p.has_more), (vec![11, 12], true));
    let p = store
        .history(&r, HistoryQuery::latest(1_000))
        .await
        .unwrap();
    assert_eq!(p.messages.len(), 200, "limit is capped at 200");
    assert_eq!(p.messages[0].seq, 51);
    assert!(p.has_more);
    let p = store
        .history(&r, HistoryQuery::after(250, 10))
        .await
        .unwrap();
    assert_eq!((seqs(&p), p.has_more), (vec![], false));
}

fn attachment(id: char, name: &str, size: u64) -> AttachmentInfo {
    AttachmentInfo {
        id: id.to_string().repeat(32),
        name: name.into(),
        content_type: "image/png".into(),
        size,
    }
}

/// A message's attachment is stored with it and comes back from every read: the append's
/// answer, history, a repeated client id (the first message's, whatever the retry carries).
async fn attachments_are_stored_and_read_back(store: impl MessageStore) {
    // Quotes, non-ASCII and a size beyond i64: JSON in a text column must keep them all.
    let cat = attachment('a', "gato \"fofo\" \\ 🐈.png", u64::MAX);
    let with = |body: &str, client_id: Option<&str>, a: Option<AttachmentInfo>| NewMessage {
        attachment: a,
        ..msg("att", Sender::guest("ana"), body, client_id)
    };

    let sent = store
        .append(with("look", Some("c-1"), Some(cat.clone())))
        .await
        .unwrap();
    assert_eq!(
        sent.message.attachment.as_ref(),
        Some(&cat),
        "append answers it"
    );
    let plain = store
        .append(with("no file", Some("c-2"), None))
        .await
        .unwrap();
    assert_eq!(plain.message.attachment, None);
    let pdf = attachment('b', "notes.pdf", 1_234);
    let other = store
        .append(with("", None, Some(pdf.clone())))
        .await
        .unwrap();

    // A retry answers the first message, attachment and all, even if it carries another one
    // or none.
    for retry in [Some(pdf.clone()), None] {
        let again = store
            .append(with("look again", Some("c-1"), retry))
            .await
            .unwrap();
        assert!(again.duplicate);
        assert_eq!(again.message, sent.message);
    }
    let again = store
        .append(with("no file", Some("c-2"), Some(pdf.clone())))
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.message.attachment, None, "a retry adds no attachment");

    let page = store
        .history(&room("att"), HistoryQuery::latest(10))
        .await
        .unwrap();
    assert_eq!(
        page.messages,
        [sent.message, plain.message, other.message],
        "history has what append answered"
    );
    let page = store
        .history(&room("att"), HistoryQuery::after(2, 10))
        .await
        .unwrap();
    assert_eq!(page.messages[0].attachment.as_ref(), Some(&pdf));

    // Concurrent retries of one client id (they may land in one batch, where the writer
    // answers from the message it is about to insert): every answer has the attachment.
    let store = Arc::new(store);
    let mut handles = Vec::new();
    for i in 0..20 {
        let store = store.clone();
        let file = attachment('c', &format!("try-{i}.png"), i);
        handles.push(tokio::spawn(async move {
            store
                .append(with("burst", Some("c-3"), Some(file)))
                .await
                .unwrap()
        }));
    }
    let mut answers = Vec::new();
    for h in handles {
        answers.push(h.await.unwrap());
    }
    assert_eq!(answers.iter().filter(|a| !a.duplicate).count(), 1);
    let first = answers.iter().find(|a| !a.duplicate).unwrap();
    assert!(first.message.attachment.is_some());
    for a in &answers {
        assert_eq!(
            a.message, first.message,
            "every retry answers the stored one"
        );
    }
    let page = store
        .history(&room("att"), HistoryQuery::after(3, 10))
        .await
        .unwrap();
    assert_eq!(page.messages.len(), 1);
    assert_eq!(page.messages[0], first.message);
}

async fn read_state_never_moves_back(store: impl MessageStore) {
    let r = room("reads");
    assert_eq!(store.last_read(&r, 3).await.unwrap(), 0);
    store.mark_read(&r, 3, 5).await.unwrap();
    store.mark_read(&r, 3, 2).await.unwrap();
    store.mark_read(&r, 8, 1).await.unwrap();
    assert_eq!(store.last_read(&r, 3).await.unwrap(), 5);
    assert_eq!(store.last_read(&r, 8).await.unwrap(), 1);
    store.mark_read(&r, 3, 9).await.unwrap();
    assert_eq!(store.last_read(&r, 3).await.unwrap(), 9);
    store.ping().await.unwrap();
}

/// A file record for `data`, in room `room_name`.
fn stored_file(id: &str, room_name: &str, name: &str, data: &[u8]) -> StoredFile {
    StoredFile {
        id: id.into(),
        room: room(room_name),
        uploader: "g:0123456789abcdef".into(),
        name: name.into(),
        content_type: "application/octet-stream".into(),
        size: data.len() as u64,
        created_at: Timestamp::from_unix_millis(1_764_460_800_123),
    }
}

/// Bytes of every value, in an order no compression or text encoding keeps by accident.
fn blob(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// A file comes back as stored, record and bytes, from `file_with_data`; `file` answers the
/// record alone; an unknown id is `None`.
async fn files_are_stored_and_read_back(store: Store) {
    let id = "a".repeat(32);
    // A NUL, quotes and bytes that are not UTF-8: stored as given, nothing escaped away.
    let data = b"\x00 not text: \0\xff\xfe'\"".to_vec();
    let mut file = stored_file(&id, "lobby", "gato \"fofo\" 🐈.bin", &data);
    file.content_type = "image/png".into();
    store.put_file(&file, &data).await.unwrap();
    assert_eq!(store.file(&id).await.unwrap(), Some(file.clone()));
    assert_eq!(
        store.file_with_data(&id).await.unwrap(),
        Some((file.clone(), data))
    );

    // A pair room, and an empty file.
    let empty = stored_file(&"b".repeat(32), "dm_3_7", "empty", &[]);
    store.put_file(&empty, &[]).await.unwrap();
    assert_eq!(
        store.file_with_data(&empty.id).await.unwrap(),
        Some((empty.clone(), Vec::new()))
    );

    // 5 MiB, and then the largest upload the server takes (10 MiB).
    for (n, len) in [(1, 5 << 20), (2, 10 << 20)] {
        let data = blob(len);
        let big = stored_file(&format!("{n}").repeat(32), "lobby", "big.bin", &data);
        store.put_file(&big, &data).await.unwrap();
        assert_eq!(store.file(&big.id).await.unwrap(), Some(big.clone()));
        let (found, bytes) = store.file_with_data(&big.id).await.unwrap().unwrap();
        assert_eq!(found, big);
        assert!(bytes == data, "the {len} bytes come back as stored");
    }

    for unknown in ["c".repeat(32), String::new(), "a".into(), "'; --".into()] {
        assert_eq!(store.file(&unknown).await.unwrap(), None, "{unknown:?}");
        assert_eq!(
            store.file_with_data(&unknown).await.unwrap(),
            None,
            "{unknown:?}"
        );
    }
    // The first file is still there, untouched by the others.
    assert_eq!(store.file(&id).await.unwrap(), Some(file));
}

/// A second file under a taken id is refused, and the first one stays as it was.
async fn a_duplicate_file_id_is_an_error_and_keeps_the_first(store: Store) {
    let id = "d".repeat(32);
    let first_data = blob(1_000);
    let first = stored_file(&id, "lobby", "first.bin", &first_data);
    store.put_file(&first, &first_data).await.unwrap();

    let other_data = blob(3_000);
    let mut other = stored_file(&id, "other", "second.bin", &other_data);
    other.uploader = "u:9".into();
    let err = store.put_file(&other, &other_data).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    assert!(
        err.to_string().contains(&id),
        "the error names the id: {err}"
    );
    // The very same file again is refused too: ids are never overwritten.
    assert!(store.put_file(&first, &first_data).await.is_err());
    assert_eq!(
        store.file_with_data(&id).await.unwrap(),
        Some((first.clone(), first_data.clone()))
    );

    // Concurrent uploads under one new id: exactly one is stored, whole.
    let store = Arc::new(store);
    let id = "e".repeat(32);
    let mut handles = Vec::new();
    for i in 0..8_usize {
        let store = store.clone();
        let id = id.clone();
        handles.push(tokio::spawn(async move {
            let data = vec![i as u8; 10_000 + i];
            let file = stored_file(&id, "lobby", &format!("try-{i}"), &data);
            store.put_file(&file, &data).await.map(|()| (file, data))
        }));
    }
    let mut stored = Vec::new();
    for h in handles {
        match h.await.unwrap() {
            Ok(kept) => stored.push(kept),
            Err(e) => assert!(matches!(e, StoreError::Invalid(_)), "{e:?}"),
        }
    }
    assert_eq!(stored.len(), 1, "exactly one upload of the id is stored");
    assert_eq!(store.file_with_data(&id).await.unwrap(), stored.pop());
    // And the store still works for the rest.
    assert_eq!(
        store.file_with_data(&first.id).await.unwrap(),
        Some((first, first_data))
    );
}

/// A record whose size is not its bytes' length is refused before anything is stored.
async fn a_file_whose_size_is_wrong_is_refused(store: Store) {
    let data = blob(10);
    let mut file = stored_file(&"f".repeat(32), "lobby", "f.bin", &data);
    file.size = 11;
    let err = store.put_file(&file, &data).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    assert_eq!(store.file(&file.id).await.unwrap(), None, "nothing stored");
    file.size = 10;
    store.put_file(&file, &data).await.unwrap();
    assert_eq!(store.file(&file.id).await.unwrap(), Some(file));
}

suite!(
    sqlite_suite, sqlite;
    seqs_start_at_one_per_room,
    concurrent_appends_are_gap_free,
    client_id_is_idempotent,
    guests_are_told_apart_by_their_ids,
    history_pages_both_ways,
    attachments_are_stored_and_read_back,
    read_state_never_moves_back,
    files_are_stored_and_read_back,
    a_duplicate_file_id_is_an_error_and_keeps_the_first,
    a_file_whose_size_is_wrong_is_refused,
);

suite!(
    postgres_suite, postgres;
    seqs_start_at_one_per_room,
    concurrent_appends_are_gap_free,
    client_id_is_idempotent,
    guests_are_told_apart_by_their_ids,
    history_pages_both_ways,
    attachments_are_stored_and_read_back,
    read_state_never_moves_back,
    files_are_stored_and_read_back,
    a_duplicate_file_id_is_an_error_and_keeps_the_first,
    a_file_whose_size_is_wrong_is_refused,
);

#[tokio::test]
async fn data_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/nested/dir/chat.db", dir.path().display());
    {
        let store = Store::open(StoreConfig::new(&url)).await.unwrap();
        for i in 1..=3 {
            store
                .append(msg(
                    "keep",
                    Sender::guest("x"),
                    &i.to_string(),
                    Some(&format!("c{i}")),
                ))
                .await
                .unwrap();
        }
        store.mark_read(&room("keep"), 4, 2).await.unwrap();
    }
    let store = Store::open(StoreConfig::new(&url)).await.unwrap();
    let p = store
        .history(&room("keep"), HistoryQuery::latest(10))
        .await
        .unwrap();
    assert_eq!(seqs(&p), vec![1, 2, 3]);
    let next = store
        .append(msg("keep", Sender::guest("x"), "4", None))
        .await
        .unwrap();
    assert_eq!(next.message.seq, 4, "seqs continue after a restart");
    let retry = store
        .append(msg("keep", Sender::guest("x"), "again", Some("c2")))
        .await
        .unwrap();
    assert!(retry.duplicate, "idempotency survives a restart");
    assert_eq!(store.last_read(&room("keep"), 4).await.unwrap(), 2);
}

#[tokio::test]
async fn unusable_locations_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let url = format!("sqlite://{}/chat.db", file.display());
    let e = Store::open(StoreConfig::new(url)).await.unwrap_err();
    assert!(
        e.to_string().contains("a-file"),
        "the error names the path: {e}"
    );
    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![7u8; 4096]).unwrap();
    let e = Store::open(StoreConfig::new(garbage.display().to_string()))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("garbage.db") || e.to_string().contains("migration"),
        "{e}"
    );
}
