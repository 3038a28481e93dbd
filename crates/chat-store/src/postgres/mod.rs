//! The PostgreSQL backend, for many server processes sharing one database: diesel-async
//! connections, a deadpool pool for reads and account writes, and one writer task per process
//! doing group commit.
//!
//! Seqs stay gap-free across processes because each write batch locks the rows of the rooms it
//! appends to (`SELECT … FOR UPDATE`) before it reads their `last_seq`; another process's
//! batch for the same room waits for that commit. Every operation runs under
//! [`StoreConfig::busy_timeout`], so an unreachable server is an `Unavailable` answer rather
//! than a hang, and broken connections are replaced on the next use.

mod files;
mod queries;
mod writer;

use std::future::Future;
use std::time::Duration;

use chat_core::{
    Appended, HistoryPage, HistoryQuery, NewMessage, RoomName, Seq, StoreError, Timestamp, UserId,
};
use diesel::RunQueryDsl as _;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::AsyncDieselConnectionManager;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use tokio::sync::{mpsc, oneshot};

use crate::accounts::{AccountError, NewUser, User};
use crate::batch::WriteOp;
use crate::config::redact_url;
use crate::files::{FileRow, NewFileRow, StoredFile, duplicate_id};
use crate::{OpenError, StoreConfig, not_stored};

const PG_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/postgres");

/// The advisory lock held while migrating, so that processes starting together migrate one
/// at a time instead of racing to create the same tables.
const MIGRATION_LOCK: i64 = 0x0063_6861_7473_7472; // "chatstr"

/// Appends waiting for the writer, at most; beyond this callers wait (backpressure).
const WRITE_QUEUE: usize = 8_192;

/// The PostgreSQL store. Cheap to clone; the writer task stops when the last clone is dropped.
#[derive(Clone)]
pub(crate) struct PgStore {
    writes: mpsc::Sender<WriteOp>,
    pool: Pool<AsyncPgConnection>,
    timeout: Duration,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").finish_non_exhaustive()
    }
}

/// An error as callers see it: the database did not do it, for this reason.
fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// Connects one connection within `timeout`.
pub(crate) async fn connect(url: &str, timeout: Duration) -> Result<AsyncPgConnection, String> {
    match tokio::time::timeout(timeout, AsyncPgConnection::establish(url)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

/// Applies pending migrations under an advisory lock. Diesel's migration harness is
/// synchronous, so it runs on the blocking pool through diesel-async's wrapper.
async fn migrate(conn: AsyncPgConnection) -> Result<(), OpenError> {
    let mut conn: AsyncConnectionWrapper<AsyncPgConnection> = conn.into();
    tokio::task::spawn_blocking(move || {
        diesel::sql_query("SELECT pg_advisory_lock($1)")
            .bind::<diesel::sql_types::BigInt, _>(MIGRATION_LOCK)
            .execute(&mut conn)
            .map_err(|e| OpenError::Migration(e.to_string()))?;
        let migrated = conn
            .run_pending_migrations(PG_MIGRATIONS)
            .map(|_| ())
            .map_err(|e| OpenError::Migration(e.to_string()));
        // Closing the connection releases the lock too; unlocking is only politeness.
        let _ = diesel::sql_query("SELECT pg_advisory_unlock($1)")
            .bind::<diesel::sql_types::BigInt, _>(MIGRATION_LOCK)
            .execute(&mut conn);
        migrated
    })
    .await
    .map_err(|e| OpenError::Migration(e.to_string()))?
}

impl PgStore {
    /// Connects, applies pending migrations and starts the writer task.
    pub(crate) async fn open(url: String, config: StoreConfig) -> Result<Self, OpenError> {
        let timeout = config.busy_timeout;
        let conn = connect(&url, timeout)
            .await
            .map_err(|reason| OpenError::Postgres {
                url: redact_url(&url),
                reason,
            })?;
        migrate(conn).await?;
        let pool = Pool::builder(AsyncDieselConnectionManager::new(url.clone()))
            .max_size(config.read_connections.max(1))
            .build()
            .map_err(|e| OpenError::Postgres {
                url: redact_url(&url),
                reason: e.to_string(),
            })?;
        let (writes, rx) = mpsc::channel(WRITE_QUEUE);
        tokio::spawn(writer::run(
            writer::Writer::new(url, timeout),
            rx,
            config.max_batch.max(1),
        ));
        Ok(Self {
            writes,
            pool,
            timeout,
        })
    }

    /// A pooled connection, within the timeout.
    async fn conn(&self) -> Result<Object<AsyncPgConnection>, StoreError> {
        match tokio::time::timeout(self.timeout, self.pool.get()).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(unavailable(format!("cannot reach PostgreSQL: {e}"))),
            Err(_) => Err(unavailable(format!(
                "no PostgreSQL connection within {:?}",
                self.timeout
            ))),
        }
    }

    /// Runs one query within the timeout.
    async fn within<T>(
        &self,
        query: impl Future<Output = diesel::QueryResult<T>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, query).await {
            Ok(result) => result.map_err(unavailable),
            Err(_) => Err(unavailable(format!(
                "PostgreSQL did not answer within {:?}",
                self.timeout
            ))),
        }
    }

    async fn write<T>(
        &self,
        op: WriteOp,
        rx: oneshot::Receiver<Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        self.writes.send(op).await.map_err(|_| not_stored())?;
        rx.await.map_err(|_| not_stored())?
    }

    pub(crate) async fn append(&self, msg: NewMessage) -> Result<Appended, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.write(WriteOp::Append(msg, tx), rx).await
    }

    /// Queued to the writer in order before any answer is awaited, so the writer can take
    /// the burst in one batch.
    pub(crate) async fn append_many(
        &self,
        msgs: Vec<NewMessage>,
    ) -> Vec<Result<Appended, StoreError>> {
        let mut waiting = Vec::with_capacity(msgs.len());
        for msg in msgs {
            let (tx, rx) = oneshot::channel();
            let queued = self.writes.send(WriteOp::Append(msg, tx)).await.is_ok();
            waiting.push(queued.then_some(rx));
        }
        let mut answers = Vec::with_capacity(waiting.len());
        for rx in waiting {
            answers.push(match rx {
                Some(rx) => rx.await.map_err(|_| not_stored()).and_then(|r| r),
                None => Err(not_stored()),
            });
        }
        answers
    }

    pub(crate) async fn mark_read(
        &self,
        room: &RoomName,
        user: UserId,
        seq: Seq,
    ) -> Result<(), StoreError> {
        let (done, rx) = oneshot::channel();
        let op = WriteOp::MarkRead {
            room: room.clone(),
            user,
            seq,
            done,
        };
        self.write(op, rx).await
    }

    pub(crate) async fn history(
        &self,
        room: &RoomName,
        query: HistoryQuery,
    ) -> Result<HistoryPage, StoreError> {
        let mut c = self.conn().await?;
        self.within(queries::history(&mut c, room, query)).await
    }

    pub(crate) async fn last_seq(&self, room: &RoomName) -> Result<Seq, StoreError> {
        let mut c = self.conn().await?;
        self.within(queries::last_seq(&mut c, room)).await
    }

    pub(crate) async fn last_read(&self, room: &RoomName, user: UserId) -> Result<Seq, StoreError> {
        let mut c = self.conn().await?;
        self.within(queries::last_read(&mut c, room, user)).await
    }

    pub(crate) async fn ping(&self) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        self.within(queries::ping(&mut c)).await
    }

    pub(crate) async fn create_user(&self, user: NewUser) -> Result<User, AccountError> {
        let mut c = self.conn().await?;
        self.within(queries::create_user(&mut c, &user))
            .await?
            .ok_or(AccountError::UsernameTaken(user.username))
    }

    pub(crate) async fn user(&self, id: UserId) -> Result<Option<User>, StoreError> {
        let mut c = self.conn().await?;
        self.within(queries::user(&mut c, id)).await
    }

    pub(crate) async fn user_with_password_hash(
        &self,
        username: &str,
    ) -> Result<Option<(User, String)>, StoreError> {
        let mut c = self.conn().await?;
        self.within(queries::user_with_hash(&mut c, username)).await
    }

    pub(crate) async fn users(&self) -> Result<Vec<User>, StoreError> {
        let mut c = self.conn().await?;
        self.within(queries::all_users(&mut c)).await
    }

    pub(crate) async fn create_session(
        &self,
        id_hash: &str,
        user: UserId,
        expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        self.within(queries::create_session(&mut c, id_hash, user, expires_at))
            .await
    }

    pub(crate) async fn session_user(&self, id_hash: &str) -> Result<Option<User>, StoreError> {
        let mut c = self.conn().await?;
        self.within(queries::session_user(&mut c, id_hash, Timestamp::now()))
            .await
    }

    pub(crate) async fn delete_session(&self, id_hash: &str) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        self.within(queries::delete_session(&mut c, id_hash)).await
    }

    pub(crate) async fn unread(&self, user: UserId) -> Result<Vec<(RoomName, Seq)>, StoreError> {
        let mut c = self.conn().await?;
        self.within(queries::unread(&mut c, user)).await
    }

    /// Stores a file, record and bytes in one row; the caller checked that they agree.
    pub(crate) async fn put_file(&self, file: &StoredFile, data: &[u8]) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        let row = NewFileRow::new(file, data);
        if self.within(files::put(&mut c, &row)).await? {
            Ok(())
        } else {
            Err(duplicate_id(&file.id))
        }
    }

    /// A file's record, without its bytes.
    pub(crate) async fn file(&self, id: &str) -> Result<Option<StoredFile>, StoreError> {
        let mut c = self.conn().await?;
        self.within(files::record(&mut c, id))
            .await?
            .map(FileRow::into_stored)
            .transpose()
    }

    /// A file's record and its bytes.
    pub(crate) async fn file_with_data(
        &self,
        id: &str,
    ) -> Result<Option<(StoredFile, Vec<u8>)>, StoreError> {
        let mut c = self.conn().await?;
        self.within(files::with_data(&mut c, id))
            .await?
            .map(|(row, data)| row.with_data(data))
            .transpose()
    }
}
