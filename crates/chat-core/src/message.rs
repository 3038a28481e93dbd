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

/// A guest's public id: 16 lowercase hex digits (64 random bits), on the wire as `guest`.
///
/// Guests have no account, and their display name is theirs to choose, so two guests may both
/// be "ana": the id is what tells them apart for presence and `client_id` de-duplication. The
/// server derives it from a per-browser secret (a cookie) or draws it at random per
/// connection; it is public (clients see it in `sender`, `user` and `online`), so it must
/// never be the secret itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String")]
pub struct GuestId(String);

impl GuestId {
    /// Hex digits in an id.
    pub const LEN: usize = 16;

    /// Hex digits of the id in a generated display name (`guest-` and these).
    const NAME_DIGITS: usize = 6;

    /// The id of 64 bits (random ones: from a CSPRNG, or a keyed hash of a random secret).
    pub fn from_bits(bits: u64) -> Self {
        Self(format!("{bits:016x}"))
    }

    /// An id written as the protocol writes it (16 lowercase hex digits); anything else is
    /// none, so an id has one spelling and one idempotency key.
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == Self::LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| Self(s.to_owned()))
    }

    /// The guest id inside a [`Sender::idempotency_key`] (`g:<id>`), for stores that keep
    /// only the key; none for users, for guests known by name only, and for the name keys
    /// (`g:<name>`) written before guests had ids.
    pub fn from_idempotency_key(key: &str) -> Option<Self> {
        key.strip_prefix("g:").and_then(Self::parse)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The display name of a guest who did not choose one: `guest-` and the id's first six
    /// hex digits (16.7 million names, where `guest-NNNN` had 10,000). It follows the id, so
    /// a browser keeps its generated name across connections; it only helps people tell
    /// guests apart and identifies nobody (the id does).
    pub fn default_name(&self) -> String {
        format!("guest-{}", &self.0[..Self::NAME_DIGITS])
    }
}

impl TryFrom<String> for GuestId {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s).ok_or_else(|| format!("a guest id is 16 lowercase hex digits, got {s:?}"))
    }
}

impl std::fmt::Display for GuestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who sent a message, typed or read: a user (with id and role) or a guest (a guest id and a
/// name).
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
    /// The guest's id, which tells two guests of the same name apart; `None` for users and
    /// for guests known by name only ([`Sender::guest`]). Additive on the wire: clients that
    /// do not know it ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest: Option<GuestId>,
}

impl Sender {
    /// A guest known only by the name they gave: every such guest of that name is the same
    /// sender for presence and `client_id` de-duplication. For tests and for embedders that
    /// vouch for names themselves; a server open to anyone gives each guest an id
    /// ([`Sender::guest_with_id`]), since names are neither unique nor secret.
    pub fn guest(name: impl Into<String>) -> Self {
        Self {
            id: None,
            name: name.into(),
            role: None,
            guest: None,
        }
    }

    /// A guest identified by their guest id, whatever name they give.
    pub fn guest_with_id(guest: GuestId, name: impl Into<String>) -> Self {
        Self {
            id: None,
            name: name.into(),
            role: None,
            guest: Some(guest),
        }
    }

    /// A registered user.
    pub fn user(id: UserId, name: impl Into<String>, role: Option<String>) -> Self {
        Self {
            id: Some(id),
            name: name.into(),
            role,
            guest: None,
        }
    }

    /// The key that identifies the sender for `client_id` idempotency and presence: `u:<id>`
    /// for users, `g:<guest id>` for guests, and `n:<name>` for guests known by name only (a
    /// prefix of its own, so no name can pose as a guest id).
    pub fn idempotency_key(&self) -> String {
        match (self.id, &self.guest) {
            (Some(id), _) => format!("u:{id}"),
            (None, Some(guest)) => format!("g:{guest}"),
            (None, None) => format!("n:{}", self.name),
        }
    }
}

/// A file attached to a message, as every frame and answer shows it. The bytes are the
/// server's attachment store's (`GET /api/attachments/{id}`); the message keeps only this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentInfo {
    /// Its id: 32 lowercase hex digits.
    pub id: String,
    /// The file name the uploader gave (shown, never used as a path).
    pub name: String,
    /// The sniffed type (`image/png`, `application/pdf`, …).
    pub content_type: String,
    /// Its size in bytes.
    pub size: u64,
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
    /// The file it carries, already checked (it exists, in this room, from this sender).
    pub attachment: Option<AttachmentInfo>,
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
    /// The file it carries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<AttachmentInfo>,
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
        let g = GuestId::from_bits(0x0123_4567_89ab_cdef);
        let v = serde_json::to_value(Sender::guest_with_id(g.clone(), "ana")).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"name": "ana", "guest": "0123456789abcdef"})
        );
        let back: Sender = serde_json::from_value(v).unwrap();
        assert_eq!(back.guest, Some(g));
        let v = serde_json::to_value(Sender::user(3, "Ana", Some("tutor".into()))).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"id": 3, "name": "Ana", "role": "tutor"})
        );
    }

    #[test]
    fn guests_of_one_name_are_told_apart_by_their_ids() {
        let one = Sender::guest_with_id(GuestId::from_bits(1), "ana");
        let two = Sender::guest_with_id(GuestId::from_bits(2), "ana");
        assert_ne!(one.idempotency_key(), two.idempotency_key());
        assert_eq!(one.idempotency_key(), "g:0000000000000001");
        let renamed = Sender::guest_with_id(GuestId::from_bits(1), "ana-2");
        assert_eq!(one.idempotency_key(), renamed.idempotency_key());
        assert_eq!(Sender::user(7, "ana", None).idempotency_key(), "u:7");
        // A name that looks like a guest id is not that guest.
        let named = Sender::guest("0000000000000001");
        assert_ne!(named.idempotency_key(), one.idempotency_key());
        assert_eq!(
            GuestId::from_idempotency_key(&one.idempotency_key()),
            one.guest
        );
        assert_eq!(GuestId::from_idempotency_key("g:ana"), None);
        assert_eq!(GuestId::from_idempotency_key("u:7"), None);
    }

    #[test]
    fn guest_ids_have_one_spelling() {
        assert!(GuestId::parse("0123456789abcdef").is_some());
        for bad in [
            "",
            "0123456789ABCDEF",
            "0123456789abcde",
            "0123456789abcdef0",
            "+123456789abcdef",
        ] {
            assert_eq!(GuestId::parse(bad), None, "{bad:?}");
        }
        assert!(serde_json::from_str::<GuestId>("\"xyz\"").is_err());
    }

    #[test]
    fn generated_guest_names_are_not_limited_to_ten_thousand() {
        // Ids spread over the whole 64-bit space, as random ones do.
        let names: std::collections::HashSet<String> = (0..50_000u64)
            .map(|i| GuestId::from_bits(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)).default_name())
            .collect();
        assert!(
            names.len() > 49_000,
            "{} distinct names for 50,000 guests",
            names.len()
        );
        for n in &names {
            assert!(n.starts_with("guest-"), "{n}");
        }
        let g = GuestId::from_bits(0xabcd_ef01_2345_6789);
        assert_eq!(g.default_name(), "guest-abcdef");
        assert_eq!(
            g.default_name(),
            g.clone().default_name(),
            "it follows the id"
        );
    }
}
