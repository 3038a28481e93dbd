//! Validated names: rooms, groups and channels.
//!
//! Each name type can only be built by parsing, so an invalid name cannot exist past the edge
//! of the system: a handler that holds a [`RoomName`] never has to check it again.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::pair::PairRoom;

/// Longest public room name, in characters.
pub const MAX_ROOM_NAME_LEN: usize = 64;
/// Group and channel names must be shorter than this (the Channels rule).
pub const MAX_LAYER_NAME_LEN: usize = 100;

/// Why a name was refused. The message is written for the person who typed the name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} name {name:?}: {reason}")]
pub struct InvalidName {
    /// What kind of name it was ("room", "group", "channel").
    pub kind: &'static str,
    /// The refused input (truncated to a sensible length).
    pub name: String,
    /// What rule it broke, in plain words.
    pub reason: &'static str,
}

impl InvalidName {
    fn new(kind: &'static str, name: &str, reason: &'static str) -> Self {
        let name: String = name.chars().take(80).collect();
        Self { kind, name, reason }
    }
}

/// What a room is: a public room anyone may join, or the private room of two users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RoomKind {
    /// A room by name (`lobby`): anyone with the link joins.
    Public,
    /// The private room of two users (`dm_3_8`).
    Pair(PairRoom),
}

/// The name of a room: either a public name (1–64 of `A-Z a-z 0-9 _ -`) or the canonical
/// name of a pair room (`dm_3_8`).
///
/// The `dm_` prefix is reserved for pair rooms, so a public room can never shadow a private
/// conversation: `dm_8_3` (not canonical), `dm_3_3` and `dm_x` are all refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomName(Box<str>);

/// The text of [`RoomName::everyone`]: `~` is outside the room alphabet.
const EVERYONE: &str = "~everyone";

/// Lets maps keyed by room be searched with the name's text (the hash is the same).
impl std::borrow::Borrow<str> for RoomName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl RoomName {
    /// Parses and validates a room name.
    pub fn parse(s: &str) -> Result<Self, InvalidName> {
        const KIND: &str = "room";
        if s.is_empty() {
            return Err(InvalidName::new(KIND, s, "a room name cannot be empty"));
        }
        if s.chars().count() > MAX_ROOM_NAME_LEN {
            return Err(InvalidName::new(
                KIND,
                s,
                "a room name has at most 64 characters",
            ));
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(InvalidName::new(
                KIND,
                s,
                "use only letters A-Z and a-z, digits, '_' and '-'",
            ));
        }
        if let Some(rest) = s.strip_prefix("dm_") {
            let pair = PairRoom::parse_suffix(rest).ok_or_else(|| {
                InvalidName::new(
                    KIND,
                    s,
                    "names starting with 'dm_' are reserved for private rooms (dm_<low id>_<high id>)",
                )
            })?;
            if pair.name().as_str() != s {
                return Err(InvalidName::new(
                    KIND,
                    s,
                    "a private room is named dm_<lower id>_<higher id>",
                ));
            }
        }
        Ok(Self(s.into()))
    }

    /// The presence set of the users connected at all, whichever page or room they have open
    /// (their inbox socket): the online dots of a contact list come from it. No client can
    /// join it as a room: [`RoomName::parse`] refuses its name.
    pub fn everyone() -> Self {
        Self(EVERYONE.into())
    }

    /// Whether this is [`RoomName::everyone`].
    pub fn is_everyone(&self) -> bool {
        &*self.0 == EVERYONE
    }

    /// Parses a name read back from a presence backend: a room, or [`RoomName::everyone`].
    #[cfg(any(test, feature = "redis"))]
    pub(crate) fn parse_stored(s: &str) -> Result<Self, InvalidName> {
        if s == EVERYONE {
            Ok(Self::everyone())
        } else {
            Self::parse(s)
        }
    }

    /// Builds the name of a pair room; always valid.
    pub(crate) fn from_pair(pair: &PairRoom) -> Self {
        Self(format!("dm_{}_{}", pair.low(), pair.high()).into())
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is a public room or a pair room (and which pair).
    pub fn kind(&self) -> RoomKind {
        match self.0.strip_prefix("dm_").and_then(PairRoom::parse_suffix) {
            Some(pair) => RoomKind::Pair(pair),
            None => RoomKind::Public,
        }
    }

    /// The pair room this name denotes, if it is one.
    pub fn pair(&self) -> Option<PairRoom> {
        match self.kind() {
            RoomKind::Pair(p) => Some(p),
            RoomKind::Public => None,
        }
    }

    /// The channel-layer group that carries this room's live traffic (`room.<name>`).
    pub fn group(&self) -> GroupName {
        // Room names use a subset of the group alphabet and are at most 64 chars long, so
        // "room." + name always satisfies the group rules.
        GroupName(format!("room.{}", self.0).into())
    }
}

/// Validates a Channels-style layer name: ASCII alphanumerics, `-`, `_`, `.` (channels may
/// also contain one `!`, which separates a process-local prefix), shorter than 100 chars.
fn check_layer_name(kind: &'static str, s: &str, allow_bang: bool) -> Result<(), InvalidName> {
    if s.is_empty() {
        return Err(InvalidName::new(kind, s, "a name cannot be empty"));
    }
    if s.len() >= MAX_LAYER_NAME_LEN {
        return Err(InvalidName::new(
            kind,
            s,
            "a name must be shorter than 100 characters",
        ));
    }
    let mut bangs = 0;
    for b in s.bytes() {
        match b {
            b'!' if allow_bang => bangs += 1,
            b if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.' => {}
            _ => {
                return Err(InvalidName::new(
                    kind,
                    s,
                    "use only ASCII letters, digits, '-', '_' and '.'",
                ));
            }
        }
    }
    if bangs > 1 {
        return Err(InvalidName::new(kind, s, "at most one '!' is allowed"));
    }
    Ok(())
}

/// The name of a channel-layer group (Channels' rules).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupName(Box<str>);

impl GroupName {
    /// Parses and validates a group name.
    pub fn parse(s: &str) -> Result<Self, InvalidName> {
        check_layer_name("group", s, false)?;
        Ok(Self(s.into()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The name of a channel: the address of one consumer in the channel layer (Channels' rules,
/// including one optional `!` for process-local names).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelName(Box<str>);

impl ChannelName {
    /// Parses and validates a channel name.
    pub fn parse(s: &str) -> Result<Self, InvalidName> {
        check_layer_name("channel", s, true)?;
        Ok(Self(s.into()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! name_impls {
    ($t:ty) => {
        impl FromStr for $t {
            type Err = InvalidName;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }
        impl TryFrom<&str> for $t {
            type Error = InvalidName;
            fn try_from(s: &str) -> Result<Self, Self::Error> {
                Self::parse(s)
            }
        }
        impl TryFrom<String> for $t {
            type Error = InvalidName;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::parse(&s)
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

name_impls!(RoomName);
name_impls!(GroupName);
name_impls!(ChannelName);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_room_names() {
        for ok in ["lobby", "a", "Room-1_b", &"x".repeat(64)] {
            let r = RoomName::parse(ok).expect(ok);
            assert_eq!(r.as_str(), ok);
            assert_eq!(r.kind(), RoomKind::Public);
        }
        for bad in [
            "",
            "has space",
            "ção",
            "a/b",
            "<script>",
            &"x".repeat(65),
            "dm_x",
            "dm_",
        ] {
            assert!(RoomName::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn pair_names_are_canonical() {
        let r = RoomName::parse("dm_3_8").unwrap();
        assert_eq!(r.pair(), Some(PairRoom::new(8, 3).unwrap()));
        assert!(RoomName::parse("dm_8_3").is_err());
        assert!(RoomName::parse("dm_3_3").is_err());
        assert!(RoomName::parse("dm_03_8").is_err());
    }

    #[test]
    fn everyone_is_no_room_a_client_can_name() {
        let everyone = RoomName::everyone();
        assert!(everyone.is_everyone());
        assert!(RoomName::parse(everyone.as_str()).is_err());
        assert_eq!(RoomName::parse_stored(everyone.as_str()).unwrap(), everyone);
        assert!(!RoomName::parse_stored("lobby").unwrap().is_everyone());
        assert!(RoomName::parse_stored("a b").is_err());
    }

    #[test]
    fn errors_explain_the_rule() {
        let e = RoomName::parse("a b").unwrap_err();
        assert!(e.to_string().contains("letters"), "{e}");
    }

    #[test]
    fn layer_names() {
        assert!(GroupName::parse("room.lobby-1_x").is_ok());
        assert!(GroupName::parse("a!b").is_err());
        assert!(GroupName::parse(&"g".repeat(100)).is_err());
        assert!(GroupName::parse(&"g".repeat(99)).is_ok());
        assert!(ChannelName::parse("specific.abc!def").is_ok());
        assert!(ChannelName::parse("a!b!c").is_err());
        assert!(ChannelName::parse("bad name").is_err());
    }

    #[test]
    fn room_group_is_valid() {
        let r = RoomName::parse(&"z".repeat(64)).unwrap();
        assert!(GroupName::parse(r.group().as_str()).is_ok());
    }

    #[test]
    fn serde_validates() {
        let r: RoomName = serde_json::from_str("\"lobby\"").unwrap();
        assert_eq!(r.as_str(), "lobby");
        assert!(serde_json::from_str::<RoomName>("\"no way\"").is_err());
    }

    mod props {
        use proptest::prelude::*;

        use super::*;

        /// Text near the rules: the room alphabet, other characters, `dm_` prefixes and ids.
        fn near_names() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<String>(),
                "[A-Za-z0-9_.!-]{0,110}",
                "(dm_)?[A-Za-z0-9_-]{0,66}",
                "dm_-?[0-9]{0,21}_-?[0-9]{0,21}(_[0-9]{1,3})?",
            ]
        }

        proptest! {
            /// No text makes a parser panic; what a parser accepts, it accepts again as the
            /// same name, and it prints and serializes as it was given.
            #[test]
            fn accepted_names_revalidate(s in near_names()) {
                if let Ok(room) = RoomName::parse(&s) {
                    prop_assert_eq!(room.as_str(), s.as_str());
                    prop_assert_eq!(&RoomName::parse(room.as_str()).unwrap(), &room);
                    prop_assert_eq!(room.to_string(), s.clone());
                    let json = serde_json::to_string(&room).unwrap();
                    prop_assert_eq!(&serde_json::from_str::<RoomName>(&json).unwrap(), &room);
                    prop_assert!(GroupName::parse(room.group().as_str()).is_ok());
                    match room.kind() {
                        RoomKind::Pair(pair) => prop_assert_eq!(pair.name(), room),
                        RoomKind::Public => prop_assert!(!s.starts_with("dm_")),
                    }
                }
                if let Ok(group) = GroupName::parse(&s) {
                    prop_assert_eq!(&GroupName::parse(group.as_str()).unwrap(), &group);
                }
                if let Ok(channel) = ChannelName::parse(&s) {
                    prop_assert_eq!(&ChannelName::parse(channel.as_str()).unwrap(), &channel);
                }
            }

            /// Deserializing checks the same rules as parsing.
            #[test]
            fn serde_agrees_with_parse(s in near_names()) {
                let json = serde_json::to_string(&s).unwrap();
                prop_assert_eq!(
                    serde_json::from_str::<RoomName>(&json).ok(),
                    RoomName::parse(&s).ok()
                );
            }
        }
    }
}
