//! `MessageStore::append_many`: a client's burst of messages, stored in order with an answer
//! each, on a real SQLite file and on the real PostgreSQL (see `suite.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chat_core::{HistoryQuery, MessageStore, Sender};

mod common;
use common::{msg, postgres, room, sqlite};

/// A burst keeps its order, and each message gets its own answer: a repeated client id is a
/// duplicate (of a message stored before or earlier in the same burst), another room counts
/// on its own.
async fn a_burst_is_stored_in_order_each_with_its_own_answer(store: impl MessageStore) {
    let ana = || Sender::guest("ana");
    let first = store
        .append(msg("r", ana(), "first", Some("c-0")))
        .await
        .unwrap();
    assert!(store.append_many(Vec::new()).await.is_empty());
    let answers = store
        .append_many(vec![
            msg("r", ana(), "b1", Some("c-1")),
            msg("r", ana(), "again", Some("c-0")),
            msg("o", ana(), "elsewhere", None),
            msg("r", ana(), "b1 again", Some("c-1")),
            msg("r", ana(), "b2", None),
        ])
        .await;
    let answers: Vec<_> = answers.into_iter().map(Result::unwrap).collect();
    let got: Vec<_> = answers
        .iter()
        .map(|a| {
            (
                a.message.room.as_str().to_owned(),
                a.message.seq,
                a.duplicate,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("r".to_owned(), 2, false),
            ("r".to_owned(), 1, true),
            ("o".to_owned(), 1, false),
            ("r".to_owned(), 2, true),
            ("r".to_owned(), 3, false),
        ]
    );
    assert_eq!(answers[1].message, first.message);

    let burst: Vec<_> = (0..100)
        .map(|i| msg("r", ana(), &format!("m{i}"), None))
        .collect();
    let answers = store.append_many(burst).await;
    let seqs: Vec<_> = answers
        .into_iter()
        .map(|a| a.unwrap().message.seq)
        .collect();
    assert_eq!(seqs, (4..104).collect::<Vec<_>>(), "in the order given");
    let page = store
        .history(&room("r"), HistoryQuery::latest(100))
        .await
        .unwrap();
    let bodies: Vec<_> = page.messages.iter().map(|m| m.body.clone()).collect();
    let expected: Vec<_> = (0..100).map(|i| format!("m{i}")).collect();
    assert_eq!(bodies, expected);
}

suite!(
    sqlite_bursts, sqlite;
    a_burst_is_stored_in_order_each_with_its_own_answer,
);

suite!(
    postgres_bursts, postgres;
    a_burst_is_stored_in_order_each_with_its_own_answer,
);
