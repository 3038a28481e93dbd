//! The SQLite backend: one write connection doing group commit (see [`group_commit`]), and a few
//! read connections.
//!
//! Why a lookup of one row by a unique key runs `get_result` rather than diesel's `first`:
//! `first` adds `LIMIT ?`, and since SQLite 3.53 the planner reads a bound LIMIT's value, so
//! binding it again (diesel binds every parameter on every run) expires the prepared statement
//! and SQLite parses and plans it anew. For the room lookup that starts every commit that was
//! 4 % of a busy server's CPU. A unique key returns one row at most, and diesel steps only to
//! the first, so the LIMIT bought nothing.

mod accounts;
mod checkpoint;
mod files;
mod group_commit;
mod reads;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use chat_core::{
    Appended, HistoryPage, HistoryQuery, MessageStore, NewMessage, RoomName, Seq, StoreError,
    Timestamp, UserId,
};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use tokio::sync::oneshot;

use self::reads::Pool;
use crate::accounts::{AccountError, NewUser, User};
use crate::batch::WriteOp;
use crate::files::{FileRow, NewFileRow, StoredFile, duplicate_id};
use crate::{OpenError, StoreConfig, not_stored};

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/sqlite");

/// Opens one connection with the settings every connection needs.
pub(crate) fn connect(path: &Path, config: &StoreConfig) -> Result<SqliteConnection, OpenError> {
    let err = |reason: String| OpenError::Sqlite {
        path: path.display().to_string(),
        reason,
    };
    let path_str = path
        .to_str()
        .ok_or_else(|| err("the path is not valid UTF-8".into()))?;
    let mut conn = SqliteConnection::establish(path_str).map_err(|e| err(e.to_string()))?;
    conn.batch_execute(&format!(
        "PRAGMA busy_timeout = {};
         PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = ON;",
        config.busy_timeout.as_millis()
    ))
    .map_err(|e| err(e.to_string()))?;
    Ok(conn)
}

/// Creates the file's directory, opens the writer connection and applies migrations.
pub(crate) fn open_writer(
    path: &Path,
    config: &StoreConfig,
) -> Result<SqliteConnection, OpenError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| OpenError::Sqlite {
            path: path.display().to_string(),
            reason: format!("cannot create its directory: {e}"),
        })?;
    }
    let mut conn = connect(path, config)?;
    conn.run_pending_migrations(SQLITE_MIGRATIONS)
        .map_err(|e| OpenError::Migration(e.to_string()))?;
    Ok(conn)
}

/// The SQLite store. Cheap to clone; the connections close when the last clone is dropped.
#[derive(Clone)]
pub(crate) struct SqliteStore {
    writer: Arc<group_commit::Writer>,
    readers: Arc<Pool>,
    /// Kept for its thread, which ends with the last clone.
    _checkpointer: Arc<checkpoint::Checkpointer>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database, applies pending migrations and starts the
    /// writer.
    pub(crate) async fn open(path: PathBuf, config: StoreConfig) -> Result<Self, OpenError> {
        let writer_path = path.clone();
        let cfg = config.clone();
        let conn = tokio::task::spawn_blocking(move || open_writer(&writer_path, &cfg))
            .await
            .map_err(|e| OpenError::Migration(e.to_string()))??;
        let writer = group_commit::Writer::new(
            conn,
            config.max_batch,
            config.busy_timeout,
            config.commit_interval,
        )
        .map_err(|e| OpenError::Sqlite {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let checkpointer = checkpoint::Checkpointer::start(
            path.clone(),
            &config,
            checkpoint::INTERVAL,
            writer.commits(),
        )?;
        Ok(Self {
            writer: Arc::new(writer),
            readers: Arc::new(Pool::new(path, config)),
            _checkpointer: Arc::new(checkpointer),
        })
    }
}

/// Accounts: users, sessions (stored by the hash of their id) and unread counts.
impl SqliteStore {
    /// Creates a user. The password must already be hashed.
    pub(crate) async fn create_user(&self, user: NewUser) -> Result<User, AccountError> {
        let username = user.username.clone();
        self.readers
            .with(move |c| accounts::create_user(c, &user))
            .await?
            .ok_or(AccountError::UsernameTaken(username))
    }

    /// A user by id.
    pub(crate) async fn user(&self, id: UserId) -> Result<Option<User>, StoreError> {
        self.readers.with(move |c| accounts::user(c, id)).await
    }

    /// A user by username, with the password hash to verify a login against.
    pub(crate) async fn user_with_password_hash(
        &self,
        username: &str,
    ) -> Result<Option<(User, String)>, StoreError> {
        let username = username.to_owned();
        self.readers
            .with(move |c| accounts::user_with_hash(c, &username))
            .await
    }

    /// Every user, oldest first.
    pub(crate) async fn users(&self) -> Result<Vec<User>, StoreError> {
        self.readers.with(accounts::all_users).await
    }

    /// Records a session, identified by the hash of its id. Also sweeps expired sessions.
    pub(crate) async fn create_session(
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
    pub(crate) async fn session_user(&self, id_hash: &str) -> Result<Option<User>, StoreError> {
        let id_hash = id_hash.to_owned();
        self.readers
            .with(move |c| accounts::session_user(c, &id_hash, Timestamp::now()))
            .await
    }

    /// Ends a session.
    pub(crate) async fn delete_session(&self, id_hash: &str) -> Result<(), StoreError> {
        let id_hash = id_hash.to_owned();
        self.readers
            .with(move |c| accounts::delete_session(c, &id_hash))
            .await
    }

    /// Unread counts for `user`: every pair room they belong to and every room they have
    /// read state in; their own messages do not count.
    pub(crate) async fn unread(&self, user: UserId) -> Result<Vec<(RoomName, Seq)>, StoreError> {
        self.readers.with(move |c| accounts::unread(c, user)).await
    }
}

/// Uploaded files: written on the read pool like accounts (each insert waits on SQLite's busy
/// timeout while the message writer commits, off the runtime), read there too.
impl SqliteStore {
    /// Stores a file, record and bytes in one row; the caller checked that they agree.
    pub(crate) async fn put_file(&self, file: &StoredFile, data: &[u8]) -> Result<(), StoreError> {
        let id = file.id.clone();
        // Copied: the insert runs on a blocking thread, which cannot borrow the caller's.
        let (file, data) = (file.clone(), data.to_vec());
        let inserted = self
            .readers
            .with(move |c| files::put(c, &NewFileRow::new(&file, &data)))
            .await?;
        if inserted {
            Ok(())
        } else {
            Err(duplicate_id(&id))
        }
    }

    /// A file's record, without its bytes.
    pub(crate) async fn file(&self, id: &str) -> Result<Option<StoredFile>, StoreError> {
        let id = id.to_owned();
        self.readers
            .with(move |c| files::record(c, &id))
            .await?
            .map(FileRow::into_stored)
            .transpose()
    }

    /// A file's record and its bytes.
    pub(crate) async fn file_with_data(
        &self,
        id: &str,
    ) -> Result<Option<(StoredFile, Vec<u8>)>, StoreError> {
        let id = id.to_owned();
        self.readers
            .with(move |c| files::with_data(c, &id))
            .await?
            .map(|(row, data)| row.with_data(data))
            .transpose()
    }
}

#[async_trait]
impl MessageStore for SqliteStore {
    async fn append(&self, msg: NewMessage) -> Result<Appended, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.writer.submit(WriteOp::Append(msg, tx));
        rx.await.map_err(|_| not_stored())?
    }

    /// Queued together: the group commit takes them in order, in one commit when they fit in
    /// one batch.
    async fn append_many(&self, msgs: Vec<NewMessage>) -> Vec<Result<Appended, StoreError>> {
        let mut waiting = Vec::with_capacity(msgs.len());
        let ops: Vec<_> = msgs
            .into_iter()
            .map(|msg| {
                let (tx, rx) = oneshot::channel();
                waiting.push(rx);
                WriteOp::Append(msg, tx)
            })
            .collect();
        self.writer.submit_many(ops);
        let mut answers = Vec::with_capacity(waiting.len());
        for rx in waiting {
            answers.push(rx.await.map_err(|_| not_stored()).and_then(|r| r));
        }
        answers
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
        self.writer.submit(WriteOp::MarkRead {
            room: room.clone(),
            user,
            seq,
            done,
        });
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
    use super::*;

    #[test]
    fn store_is_clone_send_sync() {
        fn check<T: Clone + Send + Sync + 'static>() {}
        check::<SqliteStore>();
    }

    /// The latest migration reverts and applies again (its down.sql drops what up.sql adds).
    #[test]
    fn the_latest_migration_reverts_and_reapplies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chat.db");
        let mut conn = open_writer(&path, &StoreConfig::new("unused")).unwrap();
        let tables = |conn: &mut SqliteConnection| -> i64 {
            diesel::dsl::sql::<diesel::sql_types::BigInt>(
                "SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table' AND name = 'files'",
            )
            .get_result(conn)
            .unwrap()
        };
        assert_eq!(tables(&mut conn), 1);
        conn.revert_last_migration(SQLITE_MIGRATIONS).unwrap();
        assert_eq!(tables(&mut conn), 0);
        conn.run_pending_migrations(SQLITE_MIGRATIONS).unwrap();
        assert_eq!(tables(&mut conn), 1);
    }
}
