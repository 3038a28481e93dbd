//! Rows as diesel reads and writes them, and their conversion to chat-core types.

use chat_core::{GuestId, HistoryPage, RoomName, Sender, Seq, StoredMessage, Timestamp};
use diesel::prelude::*;

use crate::schema::messages;

/// A message row.
#[derive(Debug, Clone, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = messages)]
#[diesel(check_for_backend(diesel::sqlite::Sqlite))]
#[cfg_attr(feature = "postgres", diesel(check_for_backend(diesel::pg::Pg)))]
pub(crate) struct MessageRow {
    pub seq: i64,
    pub sender_id: Option<i64>,
    pub sender_name: String,
    pub sender_role: Option<String>,
    /// The sender's idempotency key: a guest's id is kept only here (`g:<guest id>`), so the
    /// schema needs no column of its own for it.
    pub sender_key: String,
    pub body: String,
    pub client_id: Option<String>,
    pub created_at: i64,
}

impl MessageRow {
    pub(crate) fn into_stored(self, room: RoomName) -> StoredMessage {
        StoredMessage {
            attachment: None,
            room,
            // Seqs are written by this crate from 1 upwards; a negative one cannot exist.
            seq: Seq::try_from(self.seq).unwrap_or_default(),
            sender: Sender {
                guest: match self.sender_id {
                    Some(_) => None,
                    None => GuestId::from_idempotency_key(&self.sender_key),
                },
                id: self.sender_id,
                name: self.sender_name,
                role: self.sender_role,
            },
            body: self.body,
            client_id: self.client_id,
            sent_at: Timestamp::from_unix_millis(self.created_at),
        }
    }
}

/// A message row to insert.
#[derive(Debug, Insertable)]
#[diesel(table_name = messages)]
pub(crate) struct NewMessageRow<'a> {
    pub room_id: i32,
    pub seq: i64,
    pub sender_id: Option<i64>,
    pub sender_name: &'a str,
    pub sender_role: Option<&'a str>,
    pub sender_key: &'a str,
    pub body: &'a str,
    pub client_id: Option<&'a str>,
    pub created_at: i64,
}

/// A seq as the database stores it.
pub(crate) fn db_seq(seq: Seq) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

/// A history page from rows read with one row more than `limit` (to learn whether there is
/// more), in the order they were read: ascending when `forward`, else descending.
pub(crate) fn page(
    room: &RoomName,
    mut rows: Vec<MessageRow>,
    limit: u32,
    forward: bool,
) -> HistoryPage {
    let has_more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    if !forward {
        rows.reverse();
    }
    HistoryPage {
        messages: rows
            .into_iter()
            .map(|r| r.into_stored(room.clone()))
            .collect(),
        has_more,
    }
}
