//! # chat-store
//!
//! The chat's persistence over diesel: a [`chat_core::MessageStore`] on SQLite (bundled, a
//! file in the data directory), with migrations embedded and applied on open.
//!
//! - **Gap-free per-room sequence numbers in commit order**: every write goes through one
//!   writer thread that assigns seqs inside the transaction that inserts the messages.
//! - **Group commit**: the writer commits every append waiting at that moment in one
//!   transaction, so persistence costs one fsync per batch, not per message.
//! - **Idempotent sends**: the same (room, sender, `client_id`) stored twice returns the first
//!   message.
//! - **Nothing is acknowledged before its commit**: when a batch fails it rolls back as a
//!   whole and every caller in it gets [`chat_core::StoreError::Unavailable`]; so does every
//!   call once the writer is gone.
//! - Reads use their own connections (SQLite's WAL mode lets them run beside the writer).
//!
//! [`StoreConfig::database_url`] takes a file path or `sqlite://PATH`; in-memory SQLite is
//! refused (the read connections need the same file), and `postgres://` says PostgreSQL is not
//! built yet.
//!
//! ```
//! use chat_core::{HistoryQuery, MessageStore, NewMessage, RoomName, Sender};
//! use chat_store::{Store, StoreConfig};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let store = Store::open(StoreConfig::new(format!("sqlite://{}/chat.db", dir.path().display()))).await?;
//! let lobby = RoomName::parse("lobby")?;
//! let sent = store
//!     .append(NewMessage {
//!         room: lobby.clone(),
//!         sender: Sender::guest("ana"),
//!         body: "oi".into(),
//!         client_id: Some("c-1".into()),
//!     })
//!     .await?;
//! assert_eq!(sent.message.seq, 1);
//! let page = store.history(&lobby, HistoryQuery::latest(50)).await?;
//! assert_eq!(page.messages[0].body, "oi");
//! # Ok(())
//! # }
//! ```

mod accounts;
mod config;
mod model;
mod reads;
mod schema;
mod writer;

pub use accounts::{AccountError, NewUser, User};
pub use config::{OpenError, StoreConfig};

use std::sync::Arc;

use async_trait::async_trait;
use chat_core::{
    Appended, HistoryPage, HistoryQuery, MessageStore, NewMessage, RoomName, Seq, StoreError,
    Timestamp, UserId,
};
use diesel::RunQueryDsl;
use tokio::sync::{mpsc, oneshot};

use crate::reads::Pool;
use crate::writer::WriteOp;

/// Appends waiting for the writer, at most; beyond this callers wait (backpressure).
const WRITE_QUEUE: usize = 8_192;

/// The message store. Cheap to clone; the writer thread stops when the last clone is dropped.
#[derive(Clone)]
pub struct Store {
    writes: mpsc::Sender<WriteOp>,
    readers: Arc<Pool>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

fn not_stored() -> StoreError {
    StoreError::Unavailable(
        "the write was not committed (the database failed or is closing)".into(),
    )
}

impl Store {
    /// Opens (creating if needed) the database, applies pending migrations and starts the
    /// writer.
    pub async fn open(config: StoreConfig) -> Result<Self, OpenError> {
        let cfg = config.clone();
        let (path, conn) = tokio::task::spawn_blocking(move || config::open_writer(&cfg))
            .await
            .map_err(|e| OpenError::Migration(e.to_string()))??;
        let (writes, rx) = mpsc::channel(WRITE_QUEUE);
        let max_batch = config.max_batch.max(1);
        std::thread::Builder::new()
            .name("chat-store-writer".into())
            .spawn(move || writer::run(conn, rx, max_batch))
            .map_err(|e| OpenError::Sqlite {
                path: path.display().to_string(),
                reason: format!("cannot start the writer thread: {e}"),
            })?;
        Ok(Self {
            writes,
            readers: Arc::new(Pool::new(path, config)),
        })
    }
}

/// Accounts: users, sessions (stored by the hash of their id) and unread counts.
impl Store {
    /// Creates a user. The password must already be hashed.
    pub async fn create_user(&self, user: NewUser) -> Result<User, AccountError> {
        let username = user.username.clone();
        self.readers
            .with(move |c| accounts::create_user(c, &user))
            .await?
            .ok_or(AccountError::UsernameTaken(username))
    }

    /// A user by id.
    pub async fn user(&self, id: UserId) -> Result<Option<User>, StoreError> {
        self.readers.with(move |c| accounts::user(c, id)).await
    }

    /// A user by username, with the password hash to verify a login against.
    pub async fn user_with_password_hash(
        &self,
        username: &str,
    ) -> Result<Option<(User, String)>, StoreError> {
        let username = username.to_owned();
        self.readers
            .with(move |c| accounts::user_with_hash(c, &username))
            .await
    }

    /// Every user, oldest first.
    pub async fn users(&self) -> Result<Vec<User>, StoreError> {
        self.readers.with(accounts::all_users).await
    }

    /// Records a session, identified by the hash of its id. Also sweeps expired sessions.
    pub async fn create_session(
        &self,
        id_hash: &str,
        user: UserId,
        expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        let id_hash = id_hash.to_owned();
        self.readers
            .with(move |c| accounts::create_session(c, &id_hash, user, expires_at))
            .await
    }

    /// The user of a live (unexpired) session.
    pub async fn session_user(&self, id_hash: &str) -> Result<Option<User>, StoreError> {
        let id_hash = id_hash.to_owned();
        self.readers
            .with(move |c| accounts::session_user(c, &id_hash, Timestamp::now()))
            .await
    }

    /// Ends a session.
    pub async fn delete_session(&self, id_hash: &str) -> Result<(), StoreError> {
        let id_hash = id_hash.to_owned();
        self.readers
            .with(move |c| accounts::delete_session(c, &id_hash))
            .await
    }

    /// Unread counts for `user`: every pair room they belong to and every room they have
    /// read state in; their own messages do not count.
    pub async fn unread(&self, user: UserId) -> Result<Vec<(RoomName, Seq)>, StoreError> {
        self.readers.with(move |c| accounts::unread(c, user)).await
    }
}

#[async_trait]
impl MessageStore for Store {
    async fn append(&self, msg: NewMessage) -> Result<Appended, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.writes
            .send(WriteOp::Append(msg, tx))
            .await
            .map_err(|_| not_stored())?;
        rx.await.map_err(|_| not_stored())?
    }

    async fn history(
        &self,
        room: &RoomName,
        query: HistoryQuery,
    ) -> Result<HistoryPage, StoreError> {
        let room = room.clone();
        self.readers
            .with(move |c| reads::history(c, &room, query))
            .await
    }

    async fn last_seq(&self, room: &RoomName) -> Result<Seq, StoreError> {
        let room = room.clone();
        self.readers.with(move |c| reads::last_seq(c, &room)).await
    }

    async fn mark_read(&self, room: &RoomName, user: UserId, seq: Seq) -> Result<(), StoreError> {
        let (done, rx) = oneshot::channel();
        self.writes
            .send(WriteOp::MarkRead {
                room: room.clone(),
                user,
                seq,
                done,
            })
            .await
            .map_err(|_| not_stored())?;
        rx.await.map_err(|_| not_stored())?
    }

    async fn last_read(&self, room: &RoomName, user: UserId) -> Result<Seq, StoreError> {
        let room = room.clone();
        self.readers
            .with(move |c| reads::last_read(c, &room, user))
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.readers
            .with(|c| diesel::sql_query("SELECT 1").execute(c).map(|_| ()))
            .await
    }
}

#[cfg(test)]
mod tests {
    use chat_core::Sender;

    use super::*;

    #[test]
    fn store_is_clone_send_sync() {
        fn check<T: Clone + Send + Sync + 'static>() {}
        check::<Store>();
    }

    #[tokio::test]
    async fn writes_after_the_writer_is_gone_are_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig::new(format!("{}/chat.db", dir.path().display()));
        let (writes, rx) = mpsc::channel(1);
        drop(rx);
        let store = Store {
            writes,
            readers: Arc::new(Pool::new(dir.path().join("chat.db"), config)),
        };
        let room = RoomName::parse("r").unwrap();
        let sent = store
            .append(NewMessage {
                room: room.clone(),
                sender: Sender::guest("ana"),
                body: "lost".into(),
                client_id: None,
            })
            .await;
        assert!(matches!(sent, Err(StoreError::Unavailable(_))), "{sent:?}");
        let read = store.mark_read(&room, 1, 1).await;
        assert!(matches!(read, Err(StoreError::Unavailable(_))), "{read:?}");
    }
}
