//! Rows as diesel reads and writes them, and their conversion to chat-core types.

use chat_core::{
    AttachmentInfo, GuestId, HistoryPage, RoomName, Sender, Seq, StoredMessage, Timestamp,
};
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
    /// The attachment as JSON (see [`attachment_json`]); `None` for a message without one.
    pub attachment: Option<String>,
}

impl MessageRow {
    /// The message as chat-core has it, its attachment read back from the JSON column.
    pub(crate) fn into_stored(self, room: RoomName) -> StoredMessage {
        // Seqs are written by this crate from 1 upwards; a negative one cannot exist.
        let seq = Seq::try_from(self.seq).unwrap_or_default();
        let attachment = self
            .attachment
            .as_deref()
            .and_then(|json| parse_attachment(json, &room, seq));
        StoredMessage {
            attachment,
            room,
            seq,
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
    /// The attachment as JSON (see [`attachment_json`]).
    pub attachment: Option<&'a str>,
}

/// The `attachment` column of a message: [`AttachmentInfo`] as JSON (its serde form, the same
/// fields as on the wire), or NULL for none.
///
/// Serializing a struct of strings and an integer cannot fail; were it to, the error is the
/// batch's (diesel's `SerializationError`), never a panic.
pub(crate) fn attachment_json(attachment: Option<&AttachmentInfo>) -> QueryResult<Option<String>> {
    attachment
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))
}

/// An `attachment` column read back. A value that does not parse (written by hand, or by a
/// later version with another format) is logged and the message is returned without its
/// attachment, rather than failing the read: the error would be permanent, not the passing
/// outage `StoreError::Unavailable` stands for, and it would take down with it every history
/// page holding that message (the room's history would stop loading for everyone) and, in the
/// writers, the whole commit batch of any retry of its client id (other senders' messages
/// included). The message itself, its text and its place in the room are intact; only the
/// link to the file is lost, and the log says which message it was.
fn parse_attachment(json: &str, room: &RoomName, seq: Seq) -> Option<AttachmentInfo> {
    match serde_json::from_str(json) {
        Ok(attachment) => Some(attachment),
        Err(error) => {
            tracing::warn!(
                room = room.as_str(),
                seq,
                %error,
                "a stored message's attachment does not parse; returning the message without it"
            );
            None
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The column's format is `AttachmentInfo`'s serde form: were chat-core to change it,
    /// stored attachments would no longer parse, so a change must show up here first (and
    /// come with a migration of the stored values).
    #[test]
    fn the_attachment_column_holds_attachment_info_as_json() {
        let a = AttachmentInfo {
            id: "0".repeat(32),
            name: "a \"b\".png".into(),
            content_type: "image/png".into(),
            size: u64::MAX,
        };
        let json = attachment_json(Some(&a)).unwrap().unwrap();
        assert_eq!(
            json,
            r#"{"id":"00000000000000000000000000000000","name":"a \"b\".png","content_type":"image/png","size":18446744073709551615}"#
        );
        let room = RoomName::parse("r").unwrap();
        assert_eq!(parse_attachment(&json, &room, 1), Some(a));
        assert_eq!(attachment_json(None).unwrap(), None);
    }

    #[test]
    fn an_attachment_that_does_not_parse_is_none() {
        let room = RoomName::parse("r").unwrap();
        for bad in [
            "",
            "null",
            "not json",
            r#"{"id":"x"}"#,
            r#"{"id":"x","name":"n","content_type":"t","size":-1}"#,
        ] {
            assert_eq!(parse_attachment(bad, &room, 1), None, "{bad:?}");
        }
    }
}
