//! Users, sessions and unread counts, on a real SQLite file and on the real PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chat_core::{MessageStore, NewMessage, PairRoom, RoomName, Sender, Timestamp};
use chat_store::{AccountError, NewUser, Store};

mod common;
use common::{postgres, sqlite};

fn new_user(username: &str, role: &str) -> NewUser {
    NewUser {
        username: username.into(),
        display_name: username.to_uppercase(),
        role: role.into(),
        password_hash: format!("$argon2id$fake-hash-of-{username}"),
    }
}

async fn users_are_unique_and_found_by_id_and_name(s: Store) {
    let ana = s.create_user(new_user("ana", "tutor")).await.unwrap();
    let bruno = s.create_user(new_user("bruno", "vet")).await.unwrap();
    assert!(ana.id > 0 && bruno.id > ana.id);
    assert!(matches!(
        s.create_user(new_user("ana", "vet")).await,
        Err(AccountError::UsernameTaken(n)) if n == "ana"
    ));
    assert_eq!(s.user(ana.id).await.unwrap(), Some(ana.clone()));
    assert_eq!(s.user(999).await.unwrap(), None);
    let (found, hash) = s.user_with_password_hash("bruno").await.unwrap().unwrap();
    assert_eq!(
        (found, hash.as_str()),
        (bruno.clone(), "$argon2id$fake-hash-of-bruno")
    );
    assert!(s.user_with_password_hash("nobody").await.unwrap().is_none());
    assert_eq!(s.users().await.unwrap(), vec![ana, bruno]);
}

async fn sessions_expire_and_end(s: Store) {
    let ana = s.create_user(new_user("ana", "")).await.unwrap();
    let later = Timestamp::from_unix_millis(Timestamp::now().unix_millis() + 60_000);
    s.create_session("h1", ana.id, later).await.unwrap();
    assert_eq!(
        s.session_user("h1").await.unwrap().map(|u| u.id),
        Some(ana.id)
    );
    assert_eq!(s.session_user("unknown").await.unwrap(), None);
    let past = Timestamp::from_unix_millis(Timestamp::now().unix_millis() - 1);
    s.create_session("h2", ana.id, past).await.unwrap();
    assert_eq!(
        s.session_user("h2").await.unwrap(),
        None,
        "expired sessions are dead"
    );
    s.delete_session("h1").await.unwrap();
    assert_eq!(s.session_user("h1").await.unwrap(), None);
}

async fn unread_counts_follow_read_receipts_and_skip_own_messages(s: Store) {
    let ana = s.create_user(new_user("ana", "tutor")).await.unwrap();
    let bruno = s.create_user(new_user("bruno", "vet")).await.unwrap();
    let carol = s.create_user(new_user("carol", "vet")).await.unwrap();
    let dm = PairRoom::new(ana.id, bruno.id).unwrap().name();
    let send = |room: RoomName, from: &chat_store::User, body: &str| NewMessage {
        attachment: None,
        room,
        sender: Sender::user(from.id, from.display_name.clone(), Some(from.role.clone())),
        body: body.into(),
        client_id: None,
    };
    for i in 0..3 {
        s.append(send(dm.clone(), &bruno, &format!("b{i}")))
            .await
            .unwrap();
    }
    s.append(send(dm.clone(), &ana, "mine")).await.unwrap();
    let lobby = RoomName::parse("lobby").unwrap();
    s.append(send(lobby.clone(), &bruno, "hi all"))
        .await
        .unwrap();

    assert_eq!(
        s.unread(ana.id).await.unwrap(),
        vec![(dm.clone(), 3)],
        "lobby is not followed yet"
    );
    s.mark_read(&dm, ana.id, 2).await.unwrap();
    s.mark_read(&lobby, ana.id, 0).await.unwrap();
    assert_eq!(
        s.unread(ana.id).await.unwrap(),
        vec![(dm.clone(), 1), (lobby.clone(), 1)]
    );
    assert_eq!(s.unread(bruno.id).await.unwrap(), vec![(dm.clone(), 1)]);
    assert_eq!(
        s.unread(carol.id).await.unwrap(),
        vec![],
        "not a member of dm"
    );
}

suite!(
    sqlite_accounts, sqlite;
    users_are_unique_and_found_by_id_and_name,
    sessions_expire_and_end,
    unread_counts_follow_read_receipts_and_skip_own_messages,
);

suite!(
    postgres_accounts, postgres;
    users_are_unique_and_found_by_id_and_name,
    sessions_expire_and_end,
    unread_counts_follow_read_receipts_and_skip_own_messages,
);
