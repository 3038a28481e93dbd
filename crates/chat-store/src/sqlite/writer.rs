//! What one commit does: a batch of appends and read receipts in one transaction, seqs
//! assigned inside it (gap-free and in commit order), every caller answered only after the
//! commit. Who commits, and when, is [`super::group_commit`]'s business.

use std::collections::HashMap;

use chat_core::{Appended, NewMessage, RoomName, Seq, Timestamp};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer};

use crate::batch::{Done, Op, Reply, WriteOp, answer, record_commit, room_kind, split};
use crate::model::{MessageRow, attachment_json, db_seq};
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
        // `get_result`, not `first`: see the module docs of `super`.
        let found: Option<(i32, i64)> = rooms::table
            .filter(rooms::name.eq(room.as_str()))
            .select((rooms::id, rooms::last_seq))
            .get_result(conn)
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
    let attachment = attachment_json(msg.attachment.as_ref())?;
    let state = load_room(conn, cache, &msg.room, now)?;
    let room_id = state.id;
    let seq = state.last_seq + 1;
    // The unique (room, sender, client_id) index decides idempotency: a repeat inserts nothing
    // and only then is the first copy read back (looking every client id up first would cost
    // a query per message). The query builder's statement is prepared once and cached; a raw
    // SQL string would be parsed again at every commit.
    //
    // `INSERT OR IGNORE` rather than `ON CONFLICT DO NOTHING`: diesel finds a statement with
    // an `ON CONFLICT` clause in its cache by its SQL, which it writes out again for every
    // message (13 % of a busy server's malloc calls went to that), and any other statement
    // by its type. The two ignore the same conflicts here: the messages table has no CHECK,
    // and every NOT NULL column gets a value by type.
    let insert = diesel::insert_or_ignore_into(messages::table).values((
        messages::room_id.eq(room_id),
        messages::seq.eq(seq),
        messages::sender_id.eq(msg.sender.id),
        messages::sender_name.eq(&msg.sender.name),
        messages::sender_role.eq(msg.sender.role.as_deref()),
        messages::sender_key.eq(&key),
        messages::body.eq(&msg.body),
        messages::client_id.eq(msg.client_id.as_deref()),
        messages::created_at.eq(now),
        messages::attachment.eq(attachment.as_deref()),
    ));
    debug_assert!(
        cached_by_type(&insert),
        "the message insert is found in the statement cache without writing its SQL"
    );
    let inserted = insert.execute(conn)?;
    if inserted == 0 {
        let first: MessageRow = messages::table
            .filter(messages::room_id.eq(room_id))
            .filter(messages::sender_key.eq(&key))
            .filter(messages::client_id.eq(msg.client_id.as_deref()))
            .select(MessageRow::as_select())
            .get_result(conn)?;
        return Ok(Appended::duplicate(first.into_stored(msg.room)));
    }
    state.last_seq = seq;
    state.dirty = true;
    let row = MessageRow {
        seq,
        sender_id: msg.sender.id,
        sender_name: msg.sender.name,
        sender_role: msg.sender.role,
        sender_key: key,
        body: msg.body,
        client_id: msg.client_id,
        created_at: now,
        // The attachment as given, rather than parsed back from the JSON just written.
        attachment: None,
    };
    let mut message = row.into_stored(msg.room);
    message.attachment = msg.attachment;
    Ok(Appended::stored(message))
}

/// Whether diesel's statement cache finds `query` by its type (see `append`).
fn cached_by_type<Q: diesel::query_builder::QueryId>(_query: &Q) -> bool {
    Q::HAS_STATIC_QUERY_ID
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
pub(super) enum Attempt {
    /// The transaction ran (committed, or failed and rolled back): answer these callers.
    Ran(Vec<Reply>, Result<Vec<Done>, String>),
    /// Another connection holds the write lock: nothing ran, here is the batch back.
    Busy(Vec<WriteOp>, String),
}

/// Runs one batch in one transaction, unless the write lock cannot be taken.
pub(super) fn try_commit(conn: &mut SqliteConnection, batch: Vec<WriteOp>) -> Attempt {
    let started = std::time::Instant::now();
    let ops = batch.len();
    let attempt = try_commit_batch(conn, batch);
    if let Attempt::Ran(_, result) = &attempt {
        record_commit("sqlite", started, ops, result);
    }
    attempt
}

fn try_commit_batch(conn: &mut SqliteConnection, batch: Vec<WriteOp>) -> Attempt {
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
pub(super) fn process(conn: &mut SqliteConnection, batch: Vec<WriteOp>) {
    match try_commit(conn, batch) {
        Attempt::Ran(replies, result) => answer(replies, result),
        Attempt::Busy(batch, e) => {
            let replies = batch.into_iter().map(|op| split(op).1).collect();
            answer(replies, Err(e));
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use chat_core::{Sender, StoreError};
    use diesel::connection::SimpleConnection;
    use tokio::sync::oneshot;

    use super::*;
    use crate::StoreConfig;
    use crate::schema::read_state;
    use crate::sqlite::open_writer;

    pub(in crate::sqlite) type AppendRx = oneshot::Receiver<Result<Appended, StoreError>>;

    fn writer() -> (SqliteConnection, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chat.db");
        let conn = open_writer(&path, &StoreConfig::new("unused")).unwrap();
        (conn, dir)
    }

    /// An append of `body` to room `r`, and where its answer arrives.
    pub(in crate::sqlite) fn op(
        sender: Sender,
        body: &str,
        client_id: Option<&str>,
    ) -> (WriteOp, AppendRx) {
        let (tx, rx) = oneshot::channel();
        let msg = NewMessage {
            attachment: None,
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
    fn an_on_conflict_clause_would_make_diesel_write_the_sql_for_every_message() {
        // Why `append` inserts with `OR IGNORE` (its debug assertion checks the real query).
        let values = (messages::room_id.eq(1), messages::seq.eq(1_i64));
        let upsert = diesel::insert_into(messages::table)
            .values(values)
            .on_conflict_do_nothing();
        assert!(!cached_by_type(&upsert));
        assert!(cached_by_type(
            &diesel::insert_or_ignore_into(messages::table).values(values)
        ));
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
}
