//! Reads: a few connections of their own (SQLite in WAL mode reads alongside the writer),
//! each query run on tokio's blocking pool so the async runtime never waits on disk.

use std::path::PathBuf;
use std::sync::Arc;

use chat_core::{HistoryPage, HistoryQuery, RoomName, Seq, StoreError};
use diesel::prelude::*;
use parking_lot::Mutex;
use tokio::sync::Semaphore;

use super::connect;
use crate::StoreConfig;
use crate::model::{MessageRow, db_seq, page};
use crate::schema::{messages, read_state, rooms};

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// A small pool of connections, opened lazily: for reads, and for the rare account and file
/// writes (which wait on SQLite's busy timeout while the message writer commits).
pub(crate) struct Pool {
    path: PathBuf,
    config: StoreConfig,
    idle: Mutex<Vec<SqliteConnection>>,
    permits: Semaphore,
}

impl Pool {
    pub(crate) fn new(path: PathBuf, config: StoreConfig) -> Self {
        let permits = Semaphore::new(config.read_connections.max(1));
        Self {
            path,
            config,
            idle: Mutex::new(Vec::new()),
            permits,
        }
    }

    /// Runs `f` with a read connection on the blocking pool.
    pub(crate) async fn with<T, F>(self: &Arc<Self>, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut SqliteConnection) -> QueryResult<T> + Send + 'static,
    {
        let _permit = self.permits.acquire().await.map_err(unavailable)?;
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = this.idle.lock().pop();
            let mut conn = match conn {
                Some(c) => c,
                None => connect(&this.path, &this.config).map_err(unavailable)?,
            };
            let result = f(&mut conn).map_err(unavailable);
            // A connection that just failed may be broken: open a fresh one next time.
            if result.is_ok() {
                this.idle.lock().push(conn);
            }
            result
        })
        .await
        .map_err(unavailable)?
    }
}

/// One page of a room's history; see [`HistoryQuery`] for the directions.
pub(crate) fn history(
    conn: &mut SqliteConnection,
    room: &RoomName,
    query: HistoryQuery,
) -> QueryResult<HistoryPage> {
    let limit = query.capped_limit();
    let Some(room_id) = rooms::table
        .filter(rooms::name.eq(room.as_str()))
        .select(rooms::id)
        .get_result::<i32>(conn)
        .optional()?
    else {
        return Ok(HistoryPage::default());
    };
    let after = db_seq(query.after.unwrap_or(0));
    let before = db_seq(query.before.unwrap_or(Seq::MAX));
    let base = messages::table
        .filter(messages::room_id.eq(room_id))
        .filter(messages::seq.gt(after))
        .filter(messages::seq.lt(before))
        .select(MessageRow::as_select())
        .limit(i64::from(limit) + 1);
    let forward = query.after.is_some();
    let rows = if forward {
        base.order(messages::seq.asc()).load(conn)?
    } else {
        base.order(messages::seq.desc()).load(conn)?
    };
    Ok(page(room, rows, limit, forward))
}

/// The room's latest seq, 0 when it has none.
pub(crate) fn last_seq(conn: &mut SqliteConnection, room: &RoomName) -> QueryResult<Seq> {
    let seq: Option<i64> = rooms::table
        .filter(rooms::name.eq(room.as_str()))
        .select(rooms::last_seq)
        .get_result(conn)
        .optional()?;
    Ok(seq.and_then(|s| Seq::try_from(s).ok()).unwrap_or(0))
}

/// The last seq `user` read in `room`, 0 when never.
pub(crate) fn last_read(
    conn: &mut SqliteConnection,
    room: &RoomName,
    user: i64,
) -> QueryResult<Seq> {
    let seq: Option<i64> = read_state::table
        .inner_join(rooms::table)
        .filter(rooms::name.eq(room.as_str()))
        .filter(read_state::user_id.eq(user))
        .select(read_state::last_read_seq)
        .get_result(conn)
        .optional()?;
    Ok(seq.and_then(|s| Seq::try_from(s).ok()).unwrap_or(0))
}
