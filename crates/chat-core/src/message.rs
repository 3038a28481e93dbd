//! Chat messages as stored and delivered: who sent them, when, and their place in the room.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

use crate::names::RoomName;
use crate::pair::UserId;

/// A per-room sequence number: 1 for a room's first message, gap-free, in commit order.
pub type Seq = u64;

/// A point in time with millisecond precision, written on the wire as RFC 3339 in UTC
/// (`2026-11-24T12:00:00.123Z`). Kept as Unix milliseconds so every store can hold it as an
/// integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        let now = OffsetDateTime::now_utc();
        Self((now.unix_timestamp_nanos() / 1_000_000) as i64)
    }

    /// From Unix milliseconds.
    pub fn from_unix_millis(ms: i64) -> Self {
        Self(ms)
    }

    /// As Unix milliseconds.
    pub fn unix_millis(self) -> i64 {
        self.0
    }

    /// RFC 3339 text with milliseconds, in UTC.
    pub fn to_rfc3339(self) -> String {
        let fmt = format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        );
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000_000)
            .ok()
            .and_then(|t| t.format(&fmt).ok())
            .unwrap_or_else(|| "1970-01-01T00:00:00.000Z".to_owned())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let t = OffsetDateTime::parse(&s, &Rfc3339).map_err(serde::de::Error::custom)?;
        Ok(Self((t.unix_timestamp_nanos() / 1_000_000) as i64))
    }
}

/// Who sent a message, typed or read: a user (with id and role) or a guest (a name only).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Sender {
    /// The user's id; `None` for a guest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<UserId>,
    /// The display name.
    pub name: String,
    /// The user's role (`tutor`, `vet`, …); `None` for guests and users without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

impl Sender {
    /// A guest, known only by the name they gave.
    pub fn guest(name: impl Into<String>) -> Self {
        Self {
            id: None,
            name: name.into(),
            role: None,
        }
    }

    /// A registered user.
    pub fn user(id: UserId, name: impl Into<String>, role: Option<String>) -> Self {
        Self {
            id: Some(id),
            name: name.into(),
            role,
        }
    }

    /// The key that makes `client_id` idempotency per sender: `u:<id>` for users, `g:<name>`
    /// for guests.
    pub fn idempotency_key(&self) -> String {
        match self.id {
            Some(id) => format!("u:{id}"),
            None => format!("g:{}", self.name),
        }
    }
}

/// A message to store: what the consumer hands to [`crate::MessageStore::append`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// The room it is sent to.
    pub room: RoomName,
    /// Who sent it.
    pub sender: Sender,
    /// The text, already validated (not blank, within the length limit).
    pub body: String,
    /// The sender's id for this message, for idempotent retries.
    pub client_id: Option<String>,
}

/// A message as stored: with its room sequence number and the time the store accepted it.
/// Serializes exactly as the `message` frame of the protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMessage {
    /// The room it belongs to.
    pub room: RoomName,
    /// Its gap-free sequence number in the room.
    pub seq: Seq,
    /// Who sent it.
    pub sender: Sender,
    /// The text.
    pub body: String,
    /// The sender's id for it, if one was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// When the store accepted it.
    pub sent_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_round_trip() {
        let t = Timestamp::from_unix_millis(1_795_003_200_123);
        let s = t.to_rfc3339();
        assert_eq!(s, "2026-11-18T12:00:00.123Z");
        let back: Timestamp = serde_json::from_str(&format!("\"{s}\"")).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn guest_sender_has_no_id_on_the_wire() {
        let v = serde_json::to_value(Sender::guest("ana")).unwrap();
        assert_eq!(v, serde_json::json!({"name": "ana"}));
        let v = serde_json::to_value(Sender::user(3, "Ana", Some("tutor".into()))).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"id": 3, "name": "Ana", "role": "tutor"})
        );
    }
}
