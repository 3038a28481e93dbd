//! The PostgreSQL writer: one task per process owns one connection and commits every write
//! waiting at that moment in one transaction (group commit), in a fixed number of round trips
//! whatever the batch size: lock the rooms, look up repeated client ids, insert the messages,
//! move the rooms' `last_seq`, upsert read state, commit.
//!
//! Why locking: other processes write the same rooms. `SELECT … FOR UPDATE` on the room rows
//! (in id order, so two writers never wait on each other in a cycle) makes every other
//! writer of those rooms wait until this batch commits, and then read the `last_seq` it left,
//! so seqs stay gap-free and unique across processes. A batch that fails rolls back whole and
//! leaves `last_seq` untouched, so it consumes no seq.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use chat_core::{Appended, NewMessage, RoomName, Timestamp};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Integer, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use tokio::sync::mpsc;

use super::connect;
use crate::batch::{Done, Op, Reply, WriteOp, answer, record_commit, room_kind, split};
use crate::model::{MessageRow, NewMessageRow, attachment_json, db_seq};
use crate::schema::{messages, rooms};

/// Most rows in one INSERT (PostgreSQL takes at most 65,535 bind parameters per statement;
/// a row has 10 columns).
const INSERT_CHUNK: usize = 4_096;

/// Room ids remembered, at most, before the cache starts over.
const ROOM_CACHE: usize = 100_000;

/// The writer's connection and what it remembers between batches.
pub(crate) struct Writer {
    url: String,
    timeout: Duration,
    conn: Option<AsyncPgConnection>,
    /// Ids of rooms known to exist. Rooms are never deleted by the chat, so an id stays right;
    /// the cache is dropped on any error anyway.
    room_ids: HashMap<RoomName, i32>,
    /// Whether a connection was ever made: the next one is a reconnect.
    connected_before: bool,
}

impl Writer {
    pub(crate) fn new(url: String, timeout: Duration) -> Self {
        Self {
            url,
            timeout,
            conn: None,
            room_ids: HashMap::new(),
            connected_before: false,
        }
    }

    /// Commits one batch within the timeout. On any failure the connection is dropped (its
    /// transaction state is unknown) and the next batch connects afresh.
    async fn commit(&mut self, ops: Vec<Op>) -> Result<Vec<Done>, String> {
        let started = std::time::Instant::now();
        let count = ops.len();
        let result = self.commit_batch(ops).await;
        record_commit("postgres", started, count, &result);
        result
    }

    async fn commit_batch(&mut self, ops: Vec<Op>) -> Result<Vec<Done>, String> {
        let timeout = self.timeout;
        let result = match tokio::time::timeout(timeout, self.try_commit(ops)).await {
            Ok(result) => result,
            Err(_) => Err(format!("PostgreSQL did not commit within {timeout:?}")),
        };
        if result.is_err() {
            self.conn = None;
            self.room_ids.clear();
        }
        result
    }

    async fn try_commit(&mut self, ops: Vec<Op>) -> Result<Vec<Done>, String> {
        let conn = match &mut self.conn {
            Some(conn) => conn,
            slot => {
                let conn = connect(&self.url, self.timeout)
                    .await
                    .map_err(|e| format!("cannot reach PostgreSQL: {e}"))?;
                if self.connected_before {
                    metrics::counter!(chat_core::metrics::POSTGRES_RECONNECTS).increment(1);
                }
                self.connected_before = true;
                slot.insert(conn)
            }
        };
        if self.room_ids.len() > ROOM_CACHE {
            self.room_ids.clear();
        }
        let now = Timestamp::now().unix_millis();
        create_rooms(conn, &mut self.room_ids, &ops, now)
            .await
            .map_err(|e| e.to_string())?;
        conn.batch_execute("BEGIN")
            .await
            .map_err(|e| e.to_string())?;
        let done = write_batch(conn, &self.room_ids, ops, now)
            .await
            .map_err(|e| e.to_string())?;
        conn.batch_execute("COMMIT")
            .await
            .map_err(|e| e.to_string())?;
        Ok(done)
    }
}

fn op_room(op: &Op) -> &RoomName {
    match op {
        Op::Append(msg) => &msg.room,
        Op::MarkRead { room, .. } => room,
    }
}

/// Makes sure every room of the batch has a row, and learns the ids of those not cached.
/// Runs outside the batch's transaction: a room row is harmless even if the batch then fails,
/// and creating it apart keeps new-room inserts from holding locks across the batch.
async fn create_rooms(
    conn: &mut AsyncPgConnection,
    room_ids: &mut HashMap<RoomName, i32>,
    ops: &[Op],
    now: i64,
) -> QueryResult<()> {
    let missing: BTreeMap<&str, &'static str> = ops
        .iter()
        .map(op_room)
        .filter(|room| !room_ids.contains_key(*room))
        .map(|room| (room.as_str(), room_kind(room)))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = missing.keys().copied().collect();
    let kinds: Vec<&str> = missing.values().copied().collect();
    diesel::sql_query(
        "INSERT INTO rooms (name, kind, last_seq, created_at)
         SELECT n, k, 0, $3 FROM unnest($1::text[], $2::text[]) AS t(n, k) ORDER BY n
         ON CONFLICT (name) DO NOTHING",
    )
    .bind::<Array<Text>, _>(&names)
    .bind::<Array<Text>, _>(&kinds)
    .bind::<BigInt, _>(now)
    .execute(conn)
    .await?;
    let found: Vec<(i32, String)> = rooms::table
        .filter(rooms::name.eq_any(&names))
        .select((rooms::id, rooms::name))
        .load(conn)
        .await?;
    for (id, name) in found {
        if let Ok(room) = RoomName::parse(&name) {
            room_ids.insert(room, id);
        }
    }
    Ok(())
}

/// A stored message found again by its client id (its sender key is the message's).
#[derive(QueryableByName)]
#[diesel(table_name = messages)]
struct KnownRow {
    room_id: i32,
    #[diesel(embed)]
    message: MessageRow,
}

/// (room id, sender key, client id): the scope of idempotency.
type ClientKey = (i32, String, String);

/// The messages already stored under the batch's client ids.
async fn known_client_ids(
    conn: &mut AsyncPgConnection,
    keys: &[ClientKey],
) -> QueryResult<HashMap<ClientKey, MessageRow>> {
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let rooms: Vec<i32> = keys.iter().map(|k| k.0).collect();
    let senders: Vec<&str> = keys.iter().map(|k| k.1.as_str()).collect();
    let clients: Vec<&str> = keys.iter().map(|k| k.2.as_str()).collect();
    let rows: Vec<KnownRow> = diesel::sql_query(
        "SELECT m.room_id, m.sender_key, m.seq, m.sender_id, m.sender_name, m.sender_role,
                m.body, m.client_id, m.created_at, m.attachment
           FROM messages m
           JOIN unnest($1::int4[], $2::text[], $3::text[]) AS k(room_id, sender_key, client_id)
             ON m.room_id = k.room_id AND m.sender_key = k.sender_key
            AND m.client_id = k.client_id",
    )
    .bind::<Array<Integer>, _>(&rooms)
    .bind::<Array<Text>, _>(&senders)
    .bind::<Array<Text>, _>(&clients)
    .load(conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let client_id = r.message.client_id.clone()?;
            Some((
                (r.room_id, r.message.sender_key.clone(), client_id),
                r.message,
            ))
        })
        .collect())
}

/// A message the batch stores: where, under which seq and sender key, and its attachment as
/// the `attachment` column holds it.
struct Pending {
    room_id: i32,
    seq: i64,
    sender_key: String,
    attachment: Option<String>,
    msg: NewMessage,
}

fn room_id(room_ids: &HashMap<RoomName, i32>, room: &RoomName) -> QueryResult<i32> {
    room_ids
        .get(room)
        .copied()
        .ok_or(diesel::result::Error::NotFound)
}

/// Everything a batch does inside its transaction; returns what each op did, in order.
async fn write_batch(
    conn: &mut AsyncPgConnection,
    room_ids: &HashMap<RoomName, i32>,
    ops: Vec<Op>,
    now: i64,
) -> QueryResult<Vec<Done>> {
    let mut append_rooms = Vec::new();
    let mut keys = Vec::new();
    for op in &ops {
        if let Op::Append(msg) = op {
            let id = room_id(room_ids, &msg.room)?;
            append_rooms.push(id);
            if let Some(client_id) = &msg.client_id {
                keys.push((id, msg.sender.idempotency_key(), client_id.clone()));
            }
        }
    }
    append_rooms.sort_unstable();
    append_rooms.dedup();
    let mut last_seq: HashMap<i32, i64> = if append_rooms.is_empty() {
        HashMap::new()
    } else {
        rooms::table
            .filter(rooms::id.eq_any(&append_rooms))
            .select((rooms::id, rooms::last_seq))
            .order(rooms::id.asc())
            .for_update()
            .load::<(i32, i64)>(conn)
            .await?
            .into_iter()
            .collect()
    };
    let known = known_client_ids(conn, &keys).await?;

    let mut done = Vec::with_capacity(ops.len());
    let mut pending: Vec<Pending> = Vec::new();
    let mut stored_now: HashMap<ClientKey, usize> = HashMap::new();
    let mut reads: BTreeMap<(i32, i64), i64> = BTreeMap::new();
    for op in ops {
        match op {
            Op::Append(msg) => {
                let id = room_id(room_ids, &msg.room)?;
                let sender_key = msg.sender.idempotency_key();
                let key = msg
                    .client_id
                    .as_ref()
                    .map(|c| (id, sender_key.clone(), c.clone()));
                if let Some(key) = &key {
                    if let Some(row) = known.get(key) {
                        done.push(duplicate(row.clone().into_stored(msg.room)));
                        continue;
                    }
                    if let Some(&i) = stored_now.get(key) {
                        done.push(duplicate(stored(&pending[i], now)));
                        continue;
                    }
                }
                let last = last_seq
                    .get_mut(&id)
                    .ok_or(diesel::result::Error::NotFound)?;
                *last += 1;
                let p = Pending {
                    room_id: id,
                    seq: *last,
                    sender_key,
                    attachment: attachment_json(msg.attachment.as_ref())?,
                    msg,
                };
                done.push(Done::Appended(Appended::stored(stored(&p, now))));
                if let Some(key) = key {
                    stored_now.insert(key, pending.len());
                }
                pending.push(p);
            }
            Op::MarkRead { room, user, seq } => {
                let id = room_id(room_ids, &room)?;
                let best = reads.entry((id, user)).or_insert(0);
                *best = (*best).max(db_seq(seq));
                done.push(Done::Read);
            }
        }
    }

    insert_messages(conn, &pending, now).await?;
    let moved: HashSet<i32> = pending.iter().map(|p| p.room_id).collect();
    if !moved.is_empty() {
        let (ids, seqs): (Vec<i32>, Vec<i64>) = moved.iter().map(|id| (*id, last_seq[id])).unzip();
        diesel::sql_query(
            "UPDATE rooms SET last_seq = v.seq
               FROM unnest($1::int4[], $2::int8[]) AS v(id, seq)
              WHERE rooms.id = v.id",
        )
        .bind::<Array<Integer>, _>(&ids)
        .bind::<Array<BigInt>, _>(&seqs)
        .execute(conn)
        .await?;
    }
    upsert_reads(conn, &reads).await?;
    Ok(done)
}

fn duplicate(message: chat_core::StoredMessage) -> Done {
    Done::Appended(Appended::duplicate(message))
}

fn stored(p: &Pending, now: i64) -> chat_core::StoredMessage {
    let mut message = MessageRow {
        seq: p.seq,
        sender_id: p.msg.sender.id,
        sender_name: p.msg.sender.name.clone(),
        sender_role: p.msg.sender.role.clone(),
        sender_key: p.sender_key.clone(),
        body: p.msg.body.clone(),
        client_id: p.msg.client_id.clone(),
        created_at: now,
        // The attachment as given, rather than parsed back from its JSON.
        attachment: None,
    }
    .into_stored(p.msg.room.clone());
    message.attachment = p.msg.attachment.clone();
    message
}

async fn insert_messages(
    conn: &mut AsyncPgConnection,
    pending: &[Pending],
    now: i64,
) -> QueryResult<()> {
    let rows: Vec<NewMessageRow<'_>> = pending
        .iter()
        .map(|p| NewMessageRow {
            room_id: p.room_id,
            seq: p.seq,
            sender_id: p.msg.sender.id,
            sender_name: &p.msg.sender.name,
            sender_role: p.msg.sender.role.as_deref(),
            sender_key: &p.sender_key,
            body: &p.msg.body,
            client_id: p.msg.client_id.as_deref(),
            created_at: now,
            attachment: p.attachment.as_deref(),
        })
        .collect();
    for chunk in rows.chunks(INSERT_CHUNK) {
        diesel::insert_into(messages::table)
            .values(chunk)
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// Read state only moves forward; one row per (room, user), in key order so that two writers
/// lock rows in the same order.
async fn upsert_reads(
    conn: &mut AsyncPgConnection,
    reads: &BTreeMap<(i32, i64), i64>,
) -> QueryResult<()> {
    if reads.is_empty() {
        return Ok(());
    }
    let rooms: Vec<i32> = reads.keys().map(|k| k.0).collect();
    let users: Vec<i64> = reads.keys().map(|k| k.1).collect();
    let seqs: Vec<i64> = reads.values().copied().collect();
    diesel::sql_query(
        "INSERT INTO read_state (room_id, user_id, last_read_seq)
         SELECT * FROM unnest($1::int4[], $2::int8[], $3::int8[])
         ON CONFLICT (room_id, user_id)
         DO UPDATE SET last_read_seq = GREATEST(read_state.last_read_seq, excluded.last_read_seq)",
    )
    .bind::<Array<Integer>, _>(&rooms)
    .bind::<Array<BigInt>, _>(&users)
    .bind::<Array<BigInt>, _>(&seqs)
    .execute(conn)
    .await?;
    Ok(())
}

/// The writer task's loop: take what is waiting (up to `max_batch`), commit it at once,
/// answer everyone. Ends when every [`crate::Store`] clone is gone.
pub(crate) async fn run(mut writer: Writer, mut rx: mpsc::Receiver<WriteOp>, max_batch: usize) {
    let mut batch = Vec::with_capacity(max_batch);
    while rx.recv_many(&mut batch, max_batch).await > 0 {
        let (ops, replies): (Vec<Op>, Vec<Reply>) = batch.drain(..).map(split).unzip();
        let result = writer.commit(ops).await;
        answer(replies, result);
    }
}
