//! The single writer: one thread owns the write connection and commits every append that is
//! waiting in one transaction (group commit), assigning seqs inside that transaction.
//!
//! Why one writer: SQLite allows one writer at a time anyway, and funnelling appends through
//! one owner turns N fsyncs into one per batch while making seq assignment trivially gap-free
//! and in commit order.

use std::collections::HashMap;

use chat_core::{Appended, NewMessage, RoomKind, RoomName, Seq, StoreError, Timestamp};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer};
use tokio::sync::{mpsc, oneshot};

use crate::model::{MessageRow, NewMessageRow, db_seq};
use crate::schema::{messages, rooms};

/// A write the writer thread performs.
pub(crate) enum WriteOp {
    Append(NewMessage, oneshot::Sender<Result<Appended, StoreError>>),
    MarkRead {
        room: RoomName,
        user: i64,
        seq: Seq,
        done: oneshot::Sender<Result<(), StoreError>>,
    },
}

/// The outcome of one op inside a batch, delivered after the commit.
enum Outcome {
    Appended(oneshot::Sender<Result<Appended, StoreError>>, Appended),
    Read(oneshot::Sender<Result<(), StoreError>>),
}

/// A room's id and latest seq as the current batch sees them.
struct RoomState {
    id: i32,
    last_seq: i64,
    dirty: bool,
}

fn room_kind(room: &RoomName) -> &'static str {
    match room.kind() {
        RoomKind::Public => "public",
        RoomKind::Pair(_) => "pair",
    }
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
    if let Some(client_id) = &msg.client_id {
        let first: Option<MessageRow> = messages::table
            .filter(messages::room_id.eq(room_id))
            .filter(messages::sender_key.eq(&key))
            .filter(messages::client_id.eq(client_id))
            .select(MessageRow::as_select())
            .first(conn)
            .optional()?;
        if let Some(row) = first {
            return Ok(Appended {
                message: row.into_stored(msg.room),
                duplicate: true,
            });
        }
    }
    let seq = state.last_seq + 1;
    diesel::insert_into(messages::table)
        .values(NewMessageRow {
            room_id,
            seq,
            sender_id: msg.sender.id,
            sender_name: &msg.sender.name,
            sender_role: msg.sender.role.as_deref(),
            sender_key: &key,
            body: &msg.body,
            client_id: msg.client_id.as_deref(),
            created_at: now,
        })
        .execute(conn)?;
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

/// Runs one batch in one transaction and returns the answers to send once it committed.
///
/// On any failure the whole batch rolls back and its reply channels are dropped unanswered,
/// which every caller reads as "not stored" ([`StoreError::Unavailable`]): nothing is ever
/// acknowledged before its commit.
fn commit_batch(conn: &mut SqliteConnection, batch: Vec<WriteOp>) -> QueryResult<Vec<Outcome>> {
    let now = Timestamp::now().unix_millis();
    conn.immediate_transaction(|conn| {
        let mut cache = HashMap::new();
        let mut outcomes = Vec::with_capacity(batch.len());
        for op in batch {
            match op {
                WriteOp::Append(msg, tx) => {
                    let appended = append(conn, &mut cache, msg, now)?;
                    outcomes.push(Outcome::Appended(tx, appended));
                }
                WriteOp::MarkRead {
                    room,
                    user,
                    seq,
                    done,
                } => {
                    mark_read(conn, &mut cache, &room, user, seq, now)?;
                    outcomes.push(Outcome::Read(done));
                }
            }
        }
        for state in cache.values().filter(|s| s.dirty) {
            diesel::update(rooms::table.filter(rooms::id.eq(state.id)))
                .set(rooms::last_seq.eq(state.last_seq))
                .execute(conn)?;
        }
        Ok(outcomes)
    })
}

/// The writer thread's loop: take what is waiting, commit it at once, answer everyone.
pub(crate) fn run(mut conn: SqliteConnection, mut rx: mpsc::Receiver<WriteOp>, max_batch: usize) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        match commit_batch(&mut conn, batch) {
            Ok(outcomes) => {
                for o in outcomes {
                    match o {
                        Outcome::Appended(tx, a) => {
                            let _ = tx.send(Ok(a));
                        }
                        Outcome::Read(done) => {
                            let _ = done.send(Ok(()));
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "a write batch failed and was rolled back"),
        }
    }
}
