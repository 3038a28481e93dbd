//! # chat-store
//!
//! The chat's persistence over diesel: one [`Store`] type, a [`chat_core::MessageStore`] on
//! SQLite (bundled, a file in the data directory: the embedded default) or on PostgreSQL
//! (diesel-async with a connection pool: for many server processes sharing one database).
//! The URL picks the backend; migrations are embedded and applied on open.
//!
//! - **Gap-free per-room sequence numbers in commit order**: seqs are assigned inside the
//!   transaction that inserts the messages. On PostgreSQL the room's row is locked
//!   (`SELECT … FOR UPDATE`) for that transaction, so this holds across processes too.
//! - **Group commit**: one writer per process commits every append waiting at that moment in
//!   one transaction, so persistence costs one commit per batch, not per message. On SQLite
//!   the writer is whichever caller finds the write connection free (no thread to wake the
//!   others afterwards); on PostgreSQL it is one task per process.
//! - **Idempotent sends**: the same (room, sender, `client_id`) stored twice returns the first
//!   message.
//! - **Nothing is acknowledged before its commit**: when a batch fails it rolls back as a
//!   whole and every caller in it gets [`chat_core::StoreError::Unavailable`]; so does every
//!   call once the writer is gone.
//! - **The async runtime never waits on a lock**: SQLite's write lock, when another connection
//!   holds it, is waited for on a blocking thread; reads run on the blocking pool.
//! - Reads use their own connections (SQLite's WAL mode lets them run beside the writer; on
//!   PostgreSQL, a deadpool pool).
//! - **Uploaded files live in the database** ([`Store::put_file`]): one row holds a file's
//!   record and its bytes, so a file is stored whole or not at all, and every server process
//!   sharing a PostgreSQL database serves every file.
//! - **Outages are answers, not hangs**: while PostgreSQL is unreachable every call fails
//!   within [`StoreConfig::busy_timeout`] with `Unavailable`, and the store reconnects by
//!   itself once the server is back.
//!
//! [`StoreConfig::database_url`] takes a file path, `sqlite://PATH` or `postgres://…`;
//! in-memory SQLite is refused (the read connections need the same file).
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
//!         attachment: None,
//!     })
//!     .await?;
//! assert_eq!(sent.message.seq, 1);
//! let page = store.history(&lobby, HistoryQuery::latest(50)).await?;
//! assert_eq!(page.messages[0].body, "oi");
//! # Ok(())
//! # }
//! ```

mod accounts;
mod batch;
mod config;
mod files;
mod model;
#[cfg(feature = "postgres")]
mod postgres;
mod schema;
mod sqlite;
#[cfg(feature = "test-util")]
pub mod testing;

pub use accounts::{AccountError, NewUser, User};
pub use config::{OpenError, StoreConfig, redact_url};
pub use files::StoredFile;

use async_trait::async_trait;
use chat_core::{
    Appended, HistoryPage, HistoryQuery, MessageStore, NewMessage, RoomName, Seq, StoreError,
    Timestamp, UserId,
};

use crate::config::Location;

/// The answer to a write whose commit is not known to have happened.
pub(crate) fn not_stored() -> StoreError {
    StoreError::Unavailable(
        "the write was not committed (the database failed or is closing)".into(),
    )
}

/// The message store: SQLite or PostgreSQL, chosen by the URL. Cheap to clone; the writer
/// stops when the last clone is dropped.
#[derive(Clone, Debug)]
pub struct Store {
    backend: Backend,
}

#[derive(Clone, Debug)]
enum Backend {
    Sqlite(sqlite::SqliteStore),
    #[cfg(feature = "postgres")]
    Postgres(postgres::PgStore),
}

/// Runs the same call on whichever backend the store has.
macro_rules! dispatch {
    ($self:ident, $s:ident => $call:expr) => {
        match &$self.backend {
            Backend::Sqlite($s) => $call,
            #[cfg(feature = "postgres")]
            Backend::Postgres($s) => $call,
        }
    };
}

impl Store {
    /// Opens the database named by [`StoreConfig::database_url`] (creating a SQLite file and
    /// its directory when missing), applies pending migrations and starts the writer.
    pub async fn open(config: StoreConfig) -> Result<Self, OpenError> {
        let backend = match config::locate(&config.database_url)? {
            Location::Sqlite(path) => {
                Backend::Sqlite(sqlite::SqliteStore::open(path, config).await?)
            }
            #[cfg(feature = "postgres")]
            Location::Postgres(url) => {
                Backend::Postgres(postgres::PgStore::open(url, config).await?)
            }
            #[cfg(not(feature = "postgres"))]
            Location::Postgres(_) => {
                return Err(OpenError::Unsupported(
                    "this build has no PostgreSQL support: enable the `postgres` feature of \
                     chat-store"
                        .into(),
                ));
            }
        };
        Ok(Self { backend })
    }

    /// Which database this store talks to: `"sqlite"` or `"postgres"`.
    pub fn backend_name(&self) -> &'static str {
        match &self.backend {
            Backend::Sqlite(_) => "sqlite",
            #[cfg(feature = "postgres")]
            Backend::Postgres(_) => "postgres",
        }
    }
}

/// Accounts: users, sessions (stored by the hash of their id) and unread counts.
impl Store {
    /// Creates a user. The password must already be hashed.
    pub async fn create_user(&self, user: NewUser) -> Result<User, AccountError> {
        dispatch!(self, s => s.create_user(user).await)
    }

    /// A user by id.
    pub async fn user(&self, id: UserId) -> Result<Option<User>, StoreError> {
        dispatch!(self, s => s.user(id).await)
    }

    /// A user by username, with the password hash to verify a login against.
    pub async fn user_with_password_hash(
        &self,
        username: &str,
    ) -> Result<Option<(User, String)>, StoreError> {
        dispatch!(self, s => s.user_with_password_hash(username).await)
    }

    /// Every user, oldest first.
    pub async fn users(&self) -> Result<Vec<User>, StoreError> {
        dispatch!(self, s => s.users().await)
    }

    /// Records a session, identified by the hash of its id. Also sweeps expired sessions.
    pub async fn create_session(
        &self,
        id_hash: &str,
        user: UserId,
        expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        dispatch!(self, s => s.create_session(id_hash, user, expires_at).await)
    }

    /// The user of a live (unexpired) session.
    pub async fn session_user(&self, id_hash: &str) -> Result<Option<User>, StoreError> {
        dispatch!(self, s => s.session_user(id_hash).await)
    }

    /// Ends a session.
    pub async fn delete_session(&self, id_hash: &str) -> Result<(), StoreError> {
        dispatch!(self, s => s.delete_session(id_hash).await)
    }

    /// Unread counts for `user`: every pair room they belong to and every room they have
    /// read state in; their own messages do not count.
    pub async fn unread(&self, user: UserId) -> Result<Vec<(RoomName, Seq)>, StoreError> {
        dispatch!(self, s => s.unread(user).await)
    }
}

/// Uploaded files (attachments): each one a row holding its record and its bytes, on either
/// backend, so every server process sharing the database serves every file.
///
/// ```
/// use chat_core::{RoomName, Timestamp};
/// use chat_store::{Store, StoreConfig, StoredFile};
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let store = Store::open(StoreConfig::new(format!("sqlite://{}/chat.db", dir.path().display()))).await?;
/// let bytes = b"hello".to_vec();
/// let file = StoredFile {
///     id: "0123456789abcdef0123456789abcdef".into(),
///     room: RoomName::parse("lobby")?,
///     uploader: "u:1".into(),
///     name: "hello.txt".into(),
///     content_type: "text/plain".into(),
///     size: bytes.len() as u64,
///     created_at: Timestamp::now(),
/// };
/// store.put_file(&file, &bytes).await?;
/// assert_eq!(store.file(&file.id).await?, Some(file.clone()));
/// assert_eq!(store.file_with_data(&file.id).await?, Some((file.clone(), bytes)));
/// assert!(store.put_file(&file, b"hello").await.is_err(), "ids are unique");
/// assert_eq!(store.file("unknown").await?, None);
/// # Ok(())
/// # }
/// ```
impl Store {
    /// Stores a file: its record and `data` in one row, in one statement, so a failure
    /// leaves nothing behind. `file.size` must be `data.len()`, and `file.id` must be new:
    /// otherwise [`StoreError::Invalid`] and nothing changes (a file once stored is never
    /// overwritten). [`StoreError::Unavailable`] when the database failed.
    pub async fn put_file(&self, file: &StoredFile, data: &[u8]) -> Result<(), StoreError> {
        files::check_new_file(file, data)?;
        dispatch!(self, s => s.put_file(file, data).await)
    }

    /// A file's record, without reading its bytes; `None` for an id the store does not
    /// hold. A stored row that cannot be read back (edited by hand, say) is an error.
    pub async fn file(&self, id: &str) -> Result<Option<StoredFile>, StoreError> {
        dispatch!(self, s => s.file(id).await)
    }

    /// A file's record and its bytes; `None` for an id the store does not hold. A stored
    /// row that cannot be read back (bytes not as long as the record says, say) is an error.
    pub async fn file_with_data(
        &self,
        id: &str,
    ) -> Result<Option<(StoredFile, Vec<u8>)>, StoreError> {
        dispatch!(self, s => s.file_with_data(id).await)
    }
}

#[async_trait]
impl MessageStore for Store {
    async fn append(&self, msg: NewMessage) -> Result<Appended, StoreError> {
        dispatch!(self, s => s.append(msg).await)
    }

    async fn append_many(&self, msgs: Vec<NewMessage>) -> Vec<Result<Appended, StoreError>> {
        dispatch!(self, s => s.append_many(msgs).await)
    }

    async fn history(
        &self,
        room: &RoomName,
        query: HistoryQuery,
    ) -> Result<HistoryPage, StoreError> {
        dispatch!(self, s => s.history(room, query).await)
    }

    async fn last_seq(&self, room: &RoomName) -> Result<Seq, StoreError> {
        dispatch!(self, s => s.last_seq(room).await)
    }

    async fn mark_read(&self, room: &RoomName, user: UserId, seq: Seq) -> Result<(), StoreError> {
        dispatch!(self, s => s.mark_read(room, user, seq).await)
    }

    async fn last_read(&self, room: &RoomName, user: UserId) -> Result<Seq, StoreError> {
        dispatch!(self, s => s.last_read(room, user).await)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        dispatch!(self, s => s.ping().await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_is_clone_send_sync() {
        fn check<T: Clone + Send + Sync + 'static>() {}
        check::<Store>();
    }
}
