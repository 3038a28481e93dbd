//! The single writer: one connection commits every append that is waiting in one
//! transaction (group commit), assigning seqs inside that transaction.
//!
//! Why one writer: SQLite allows one writer at a time anyway, and funnelling appends through
//! one owner turns N commits into one per batch while making seq assignment trivially
//! gap-free and in commit order.
//!
//! Why no writer thread: the caller that finds the connection free commits what is waiting
//! itself, on its own task (a commit in WAL mode without fsync takes tens of microseconds).
//! A writer thread has to wake the caller afterwards, and a wake from outside the runtime
//! queues behind every task already waiting: in a busy room that is behind every member's
//! delivery, tens of milliseconds per message, and the room's throughput drops with it.
//! Callers that find the connection busy queue their op for the committing caller and wait
//! for its answer. Waiting for another process's write lock is never done on the runtime:
//! the fast path does not wait at all (`busy_timeout` 0) and hands the batch to a blocking
//! thread that waits with the configured timeout.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chat_core::{Appended, NewMessage, RoomName, Seq, Timestamp};
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer};
use parking_lot::Mutex;

use crate::batch::{Done, Op, Reply, WriteOp, answer, room_kind, split};
use crate::model::{MessageRow, db_seq};
use crate::schema::{messages, rooms};

/// A room's id and latest seq as the current batch sees them.
struct RoomState {
    id: i32,
    last_seq: i64,
    dirty: bool,
}

fn load_room<'a>(
    conn: &mut SqliteConnection,
    cache: &'a mut HashMap<RoomName, RoomState>,
    room: &RoomName,
    now: i64,
) -> QueryResult<&'a mut RoomState> {
    if !cache.contains_key(room) {
        let found: Option<(i32, i64)> = rooms::table
            .filter(rooms::name.eq(room.as_str()))
            .select((rooms::id, rooms::last_seq))
            .first(conn)
            .optional()?;
        let (id, last_seq) = match found {
            Some(f) => f,
            None => {
                let id = diesel::insert_into(rooms::table)
                    .values((
                        rooms::name.eq(room.as_str()),
                        rooms::kind.eq(room_kind(room)),
                        rooms::last_seq.eq(0_i64),
                        rooms::created_at.eq(now),
                    ))
                    .returning(rooms::id)
                    .get_result(conn)?;
                (id, 0)
            }
        };
        cache.insert(
            room.clone(),
            RoomState {
                id,
                last_seq,
                dirty: false,
            },
        );
    }
    cache.get_mut(room).ok_or(diesel::result::Error::NotFound)
}

fn append(
    conn: &mut SqliteConnection,
    cache: &mut HashMap<RoomName, RoomState>,
    msg: NewMessage,
    now: i64,
) -> QueryResult<Appended> {
    let key = msg.sender.idempotency_key();
    let state = load_room(conn, cache, &msg.room, now)?;
    let room_id = state.id;
    let seq = state.last_seq + 1;
    // The unique (room, sender, client_id) index decides idempotency: a repeat inserts nothing
    // and only then is the first copy read back (looking every client id up first would cost
    // a query per message). The query builder's statement is prepared once and cached; a raw
    // SQL string would be parsed again at every commit.
    let inserted = diesel::insert_into(messages::table)
        .values((
            messages::room_id.eq(room_id),
            messages::seq.eq(seq),
            messages::sender_id.eq(msg.sender.id),
            messages::sender_name.eq(&msg.sender.name),
            messages::sender_role.eq(msg.sender.role.as_deref()),
            messages::sender_key.eq(&key),
            messages::body.eq(&msg.body),
            messages::client_id.eq(msg.client_id.as_deref()),
            messages::created_at.eq(now),
        ))
        .on_conflict_do_nothing()
        .execute(conn)?;
    if inserted == 0 {
        let first: MessageRow = messages::table
            .filter(messages::room_id.eq(room_id))
            .filter(messages::sender_key.eq(&key))
            .filter(messages::client_id.eq(msg.client_id.as_deref()))
            .select(MessageRow::as_select())
            .first(conn)?;
        return Ok(Appended {
            message: first.into_stored(msg.room),
            duplicate: true,
        });
    }
    state.last_seq = seq;
    state.dirty = true;
    let row = MessageRow {
        seq,
        sender_id: msg.sender.id,
        sender_name: msg.sender.name,
        sender_role: msg.sender.role,
        body: msg.body,
        client_id: msg.client_id,
        created_at: now,
    };
    Ok(Appended {
        message: row.into_stored(msg.room),
        duplicate: false,
    })
}

fn mark_read(
    conn: &mut SqliteConnection,
    cache: &mut HashMap<RoomName, RoomState>,
    room: &RoomName,
    user: i64,
    seq: Seq,
    now: i64,
) -> QueryResult<()> {
    let room_id = load_room(conn, cache, room, now)?.id;
    diesel::sql_query(
        "INSERT INTO read_state (room_id, user_id, last_read_seq) VALUES (?, ?, ?)
         ON CONFLICT (room_id, user_id)
         DO UPDATE SET last_read_seq = MAX(last_read_seq, excluded.last_read_seq)",
    )
    .bind::<Integer, _>(room_id)
    .bind::<BigInt, _>(user)
    .bind::<BigInt, _>(db_seq(seq))
    .execute(conn)?;
    Ok(())
}

/// What became of a batch.
enum Attempt {
    /// The transaction ran (committed, or failed and rolled back): answer these callers.
    Ran(Vec<Reply>, Result<Vec<Done>, String>),
    /// Another connection holds the write lock: nothing ran, here is the batch back.
    Busy(Vec<WriteOp>, String),
}

/// Runs one batch in one transaction, unless the write lock cannot be taken.
fn try_commit(conn: &mut SqliteConnection, batch: Vec<WriteOp>) -> Attempt {
    let now = Timestamp::now().unix_millis();
    // Taken inside the transaction: still here afterwards only if BEGIN itself failed.
    let mut batch = Some(batch);
    let mut replies = Vec::new();
    let result = conn.immediate_transaction(|conn| {
        let (ops, taken): (Vec<Op>, Vec<Reply>) = batch
            .take()
            .unwrap_or_default()
            .into_iter()
            .map(split)
            .unzip();
        replies = taken;
        let mut cache = HashMap::new();
        let mut done = Vec::with_capacity(ops.len());
        for op in ops {
            done.push(match op {
                Op::Append(msg) => Done::Appended(append(conn, &mut cache, msg, now)?),
                Op::MarkRead { room, user, seq } => {
                    mark_read(conn, &mut cache, &room, user, seq, now)?;
                    Done::Read
                }
            });
        }
        for state in cache.values().filter(|s| s.dirty) {
            diesel::update(rooms::table.filter(rooms::id.eq(state.id)))
                .set(rooms::last_seq.eq(state.last_seq))
                .execute(conn)?;
        }
        Ok(done)
    });
    let result = result.map_err(|e: diesel::result::Error| (is_busy(&e), e.to_string()));
    match (result, batch) {
        (Err((true, e)), Some(batch)) => Attempt::Busy(batch, e),
        (result, Some(batch)) => {
            // BEGIN failed for another reason: nobody's op ran.
            let replies = batch.into_iter().map(|op| split(op).1).collect();
            Attempt::Ran(replies, result.map_err(|(_, e)| e))
        }
        (result, None) => Attempt::Ran(replies, result.map_err(|(_, e)| e)),
    }
}

/// SQLITE_BUSY: another connection (a login on the read pool, another process) writes.
fn is_busy(e: &diesel::result::Error) -> bool {
    matches!(e, diesel::result::Error::DatabaseError(_, info) if info.message().contains("database is locked"))
}

/// Commits one batch and answers every caller (see [`answer`]), waiting for the write lock
/// as long as the connection's busy timeout allows.
fn process(conn: &mut SqliteConnection, batch: Vec<WriteOp>) {
    match try_commit(conn, batch) {
        Attempt::Ran(replies, result) => answer(replies, result),
        Attempt::Busy(batch, e) => {
            let replies = batch.into_iter().map(|op| split(op).1).collect();
            answer(replies, Err(e));
        }
    }
}

/// Batches one caller commits in a row, at most, before it hands the rest to a blocking
/// thread: a caller is also a connection whose own frames wait meanwhile.
const MAX_ROUNDS: usize = 4;

/// The write side of the store: the write connection and the ops waiting for it.
pub(crate) struct Writer {
    conn: Mutex<SqliteConnection>,
    pending: Mutex<VecDeque<WriteOp>>,
    max_batch: usize,
    busy_timeout: Duration,
    #[cfg(test)]
    handoffs: std::sync::atomic::AtomicUsize,
}

impl Writer {
    /// A writer on `conn`, which must be the store's only writing connection for messages.
    pub(crate) fn new(
        mut conn: SqliteConnection,
        max_batch: usize,
        busy_timeout: Duration,
    ) -> QueryResult<Self> {
        set_busy_timeout(&mut conn, Duration::ZERO)?;
        Ok(Self {
            conn: Mutex::new(conn),
            pending: Mutex::new(VecDeque::new()),
            max_batch: max_batch.max(1),
            busy_timeout,
            #[cfg(test)]
            handoffs: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// Queues `op` and, unless another caller is committing (which then commits `op` too),
    /// commits everything waiting. Never waits; the answer arrives on the op's reply channel.
    pub(crate) fn submit(self: &Arc<Self>, op: WriteOp) {
        self.pending.lock().push_back(op);
        self.commit_waiting();
    }

    fn take_batch(&self) -> Vec<WriteOp> {
        let mut pending = self.pending.lock();
        let n = pending.len().min(self.max_batch);
        pending.drain(..n).collect()
    }

    /// Puts a batch back at the front, in its order.
    fn put_back(&self, batch: Vec<WriteOp>) {
        let mut pending = self.pending.lock();
        for op in batch.into_iter().rev() {
            pending.push_front(op);
        }
    }

    fn commit_waiting(self: &Arc<Self>) {
        let mut rounds = 0;
        loop {
            // Whoever holds the connection re-checks `pending` after releasing it, so an op
            // queued meanwhile is never stranded.
            let Some(mut conn) = self.conn.try_lock() else {
                return;
            };
            loop {
                if rounds == MAX_ROUNDS {
                    drop(conn);
                    self.hand_off();
                    return;
                }
                let batch = self.take_batch();
                if batch.is_empty() {
                    break;
                }
                rounds += 1;
                match try_commit(&mut conn, batch) {
                    Attempt::Ran(replies, result) => answer(replies, result),
                    Attempt::Busy(batch, _) => {
                        self.put_back(batch);
                        drop(conn);
                        self.hand_off();
                        return;
                    }
                }
            }
            drop(conn);
            if self.pending.lock().is_empty() {
                return;
            }
        }
    }

    /// Commits what is waiting on a blocking thread, which may wait for the write lock.
    fn hand_off(self: &Arc<Self>) {
        #[cfg(test)]
        self.handoffs
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.commit_blocking());
    }

    fn commit_blocking(&self) {
        loop {
            let mut conn = self.conn.lock();
            let waits = set_busy_timeout(&mut conn, self.busy_timeout);
            loop {
                let batch = self.take_batch();
                if batch.is_empty() {
                    break;
                }
                match &waits {
                    Ok(()) => process(&mut conn, batch),
                    Err(e) => {
                        let replies = batch.into_iter().map(|op| split(op).1).collect();
                        answer(replies, Err(format!("could not set the busy timeout: {e}")));
                    }
                }
            }
            if let Err(e) = set_busy_timeout(&mut conn, Duration::ZERO) {
                tracing::warn!(error = %e, "could not reset the writer's busy timeout");
            }
            drop(conn);
            if self.pending.lock().is_empty() {
                return;
            }
        }
    }
}

fn set_busy_timeout(conn: &mut SqliteConnection, timeout: Duration) -> QueryResult<()> {
    conn.batch_execute(&format!("PRAGMA busy_timeout = {}", timeout.as_millis()))
}

#[cfg(test)]
mod tests {
    use chat_core::{Sender, StoreError};
    use diesel::connection::SimpleConnection;
    use tokio::sync::oneshot;

    use super::*;
    use crate::StoreConfig;
    use crate::schema::read_state;
    use crate::sqlite::open_writer;

    type AppendRx = oneshot::Receiver<Result<Appended, StoreError>>;

    fn writer() -> (SqliteConnection, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chat.db");
        let conn = open_writer(&path, &StoreConfig::new("unused")).unwrap();
        (conn, dir)
    }

    fn op(sender: Sender, body: &str, client_id: Option<&str>) -> (WriteOp, AppendRx) {
        let (tx, rx) = oneshot::channel();
        let msg = NewMessage {
            room: RoomName::parse("r").unwrap(),
            sender,
            body: body.into(),
            client_id: client_id.map(Into::into),
        };
        (WriteOp::Append(msg, tx), rx)
    }

    fn count(conn: &mut SqliteConnection) -> (i64, i64, i64) {
        (
            messages::table.count().get_result(conn).unwrap(),
            rooms::table.count().get_result(conn).unwrap(),
            read_state::table.count().get_result(conn).unwrap(),
        )
    }

    #[test]
    fn a_client_id_repeated_within_one_batch_is_stored_once() {
        let (mut conn, _dir) = writer();
        let (ops, rxs): (Vec<_>, Vec<_>) = [
            op(Sender::guest("ana"), "first", Some("c-1")),
            op(Sender::guest("ana"), "retry", Some("c-1")),
            op(Sender::guest("bruno"), "other sender", Some("c-1")),
            op(Sender::guest("ana"), "no client id", None),
            op(Sender::guest("ana"), "retry again", Some("c-1")),
        ]
        .into_iter()
        .unzip();
        process(&mut conn, ops);
        let got: Vec<Appended> = rxs
            .into_iter()
            .map(|rx| rx.blocking_recv().unwrap().unwrap())
            .collect();
        let summary: Vec<(u64, bool, &str)> = got
            .iter()
            .map(|a| (a.message.seq, a.duplicate, a.message.body.as_str()))
            .collect();
        assert_eq!(
            summary,
            vec![
                (1, false, "first"),
                (1, true, "first"),
                (2, false, "other sender"),
                (3, false, "no client id"),
                (1, true, "first"),
            ]
        );
        assert_eq!(count(&mut conn), (3, 1, 0));
        let last: i64 = rooms::table
            .select(rooms::last_seq)
            .first(&mut conn)
            .unwrap();
        assert_eq!(last, 3);
    }

    #[test]
    fn a_failed_batch_answers_everyone_unavailable_and_stores_nothing() {
        let (mut conn, _dir) = writer();
        conn.batch_execute(
            "CREATE TRIGGER boom BEFORE INSERT ON messages WHEN NEW.body = 'boom'
             BEGIN SELECT RAISE(ABORT, 'boom refused'); END;",
        )
        .unwrap();
        let (ok1, rx1) = op(Sender::guest("ana"), "fine", Some("c-1"));
        let (bad, rx2) = op(Sender::guest("ana"), "boom", None);
        let (ok2, rx3) = op(Sender::guest("bruno"), "fine too", None);
        let (read_tx, read_rx) = oneshot::channel();
        let read = WriteOp::MarkRead {
            room: RoomName::parse("r").unwrap(),
            user: 4,
            seq: 1,
            done: read_tx,
        };
        process(&mut conn, vec![ok1, read, bad, ok2]);
        for rx in [rx1, rx2, rx3] {
            match rx.blocking_recv().unwrap() {
                Err(StoreError::Unavailable(reason)) => {
                    assert!(reason.contains("boom refused"), "{reason}");
                }
                other => panic!("expected Unavailable, got {other:?}"),
            }
        }
        assert!(matches!(
            read_rx.blocking_recv().unwrap(),
            Err(StoreError::Unavailable(_))
        ));
        assert_eq!(count(&mut conn), (0, 0, 0), "the whole batch rolled back");

        // The failed batch consumed no seq: the next message is still the room's first.
        let (again, rx) = op(Sender::guest("ana"), "fine", Some("c-1"));
        process(&mut conn, vec![again]);
        let a = rx.blocking_recv().unwrap().unwrap();
        assert_eq!((a.message.seq, a.duplicate), (1, false));
    }

    #[test]
    fn a_write_lock_held_elsewhere_is_waited_for_off_the_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chat.db");
        let config = StoreConfig::new("unused");
        let conn = open_writer(&path, &config).unwrap();
        let writer = Arc::new(Writer::new(conn, 64, Duration::from_secs(30)).unwrap());
        // Another connection (a login on the read pool, another process) holds the lock
        // until told to let go, or for 5 s at most.
        let (held_tx, held) = std::sync::mpsc::channel();
        let (release, release_rx) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            let mut other = crate::sqlite::connect(&path, &StoreConfig::new("unused")).unwrap();
            other.batch_execute("BEGIN IMMEDIATE").unwrap();
            held_tx.send(()).unwrap();
            let told = release_rx.recv_timeout(Duration::from_secs(5)).is_ok();
            other.batch_execute("COMMIT").unwrap();
            told
        });
        held.recv().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (first, rx) = op(Sender::guest("ana"), "waits for the lock", Some("c-1"));
            // Returns at once: waiting for the lock here would stall every task of this
            // runtime thread (until the holder gives up).
            writer.submit(first);
            assert_eq!(
                writer.handoffs.load(std::sync::atomic::Ordering::SeqCst),
                1,
                "the batch went to a blocking thread"
            );
            // Queued behind it, and committed by the same blocking thread, in order.
            let (second, rx2) = op(Sender::guest("bruno"), "queued behind", None);
            writer.submit(second);
            release.send(()).unwrap();
            let a = rx.await.unwrap().unwrap();
            let b = rx2.await.unwrap().unwrap();
            assert_eq!((a.message.seq, b.message.seq), (1, 2));
        });
        assert!(
            holder.join().unwrap(),
            "submit returned only after the holder gave up the lock"
        );
    }
}
