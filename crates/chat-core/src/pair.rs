//! Pair rooms: the private room of two users, the same whoever opens it.

use crate::names::RoomName;

/// A user's id, as assigned by the store.
pub type UserId = i64;

/// Why two users cannot have a pair room.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PairError {
    /// A user cannot open a private room with themself.
    #[error("a private room needs two different users (got {0} twice)")]
    SameUser(UserId),
    /// User ids are positive.
    #[error("user ids are positive numbers (got {0})")]
    InvalidId(UserId),
}

/// The private room of two distinct users. `PairRoom::new(3, 8)` and `PairRoom::new(8, 3)` are
/// the same room, named `dm_3_8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PairRoom {
    low: UserId,
    high: UserId,
}

impl PairRoom {
    /// The pair room of `a` and `b`, in either order.
    pub fn new(a: UserId, b: UserId) -> Result<Self, PairError> {
        for id in [a, b] {
            if id <= 0 {
                return Err(PairError::InvalidId(id));
            }
        }
        if a == b {
            return Err(PairError::SameUser(a));
        }
        Ok(Self {
            low: a.min(b),
            high: a.max(b),
        })
    }

    /// Parses `3_8` (the part after `dm_`); only canonical decimal ids are accepted.
    pub(crate) fn parse_suffix(s: &str) -> Option<Self> {
        let (a, b) = s.split_once('_')?;
        let parse = |t: &str| -> Option<UserId> {
            if t.is_empty() || t.starts_with('0') || !t.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            t.parse().ok()
        };
        Self::new(parse(a)?, parse(b)?).ok()
    }

    /// The lower user id.
    pub fn low(&self) -> UserId {
        self.low
    }

    /// The higher user id.
    pub fn high(&self) -> UserId {
        self.high
    }

    /// The room's canonical name, `dm_<low>_<high>`.
    pub fn name(&self) -> RoomName {
        RoomName::from_pair(self)
    }

    /// Whether `user` is one of the two members.
    pub fn contains(&self, user: UserId) -> bool {
        user == self.low || user == self.high
    }

    /// The other member, if `user` is a member.
    pub fn other(&self, user: UserId) -> Option<UserId> {
        if user == self.low {
            Some(self.high)
        } else if user == self.high {
            Some(self.low)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_room_in_either_order() {
        let a = PairRoom::new(3, 8).unwrap();
        let b = PairRoom::new(8, 3).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.name().as_str(), "dm_3_8");
    }

    #[test]
    fn self_pair_and_bad_ids_rejected() {
        assert_eq!(PairRoom::new(5, 5), Err(PairError::SameUser(5)));
        assert_eq!(PairRoom::new(0, 5), Err(PairError::InvalidId(0)));
        assert_eq!(PairRoom::new(-1, 5), Err(PairError::InvalidId(-1)));
    }

    #[test]
    fn membership() {
        let p = PairRoom::new(3, 8).unwrap();
        assert!(p.contains(3) && p.contains(8) && !p.contains(4));
        assert_eq!(p.other(3), Some(8));
        assert_eq!(p.other(8), Some(3));
        assert_eq!(p.other(4), None);
    }

    #[test]
    fn suffix_parsing_is_strict() {
        assert!(PairRoom::parse_suffix("3_8").is_some());
        assert!(PairRoom::parse_suffix("3_08").is_none());
        assert!(PairRoom::parse_suffix("3_").is_none());
        assert!(PairRoom::parse_suffix("3_8_9").is_none());
        assert!(PairRoom::parse_suffix("99999999999999999999_1").is_none());
    }

    mod props {
        use proptest::prelude::*;

        use super::*;

        /// Ids near the edges as well as anywhere.
        fn ids() -> impl Strategy<Value = UserId> {
            prop_oneof![
                any::<UserId>(),
                -2..1000 as UserId,
                Just(UserId::MAX),
                Just(UserId::MIN)
            ]
        }

        proptest! {
            /// Two valid ids make one room whoever opens it; its name parses back to it.
            #[test]
            fn pairs_round_trip_through_their_name(a in ids(), b in ids()) {
                let pair = PairRoom::new(a, b);
                prop_assert_eq!(pair.clone().ok(), PairRoom::new(b, a).ok());
                match pair {
                    Ok(pair) => {
                        prop_assert!(a > 0 && b > 0 && a != b);
                        prop_assert_eq!((pair.low(), pair.high()), (a.min(b), a.max(b)));
                        let name = RoomName::parse(pair.name().as_str()).unwrap();
                        prop_assert_eq!(name.pair(), Some(pair));
                        prop_assert_eq!(pair.other(a), Some(b));
                        prop_assert_eq!(pair.other(b), Some(a));
                    }
                    Err(PairError::SameUser(id)) => prop_assert!(a == b && a == id && id > 0),
                    Err(PairError::InvalidId(id)) => prop_assert!(id <= 0 && (id == a || id == b)),
                }
            }

            /// Any text parses without a panic, and only canonical decimal ids (in either
            /// order: `RoomName::parse` is the one that insists on `<low>_<high>`).
            #[test]
            fn suffixes_are_canonical(s in prop_oneof![any::<String>(), "[+-]?[0-9]{0,21}_[+-]?[0-9]{0,21}"]) {
                if let Some(pair) = PairRoom::parse_suffix(&s) {
                    let (low, high) = (pair.low(), pair.high());
                    let canonical = s == format!("{low}_{high}") || s == format!("{high}_{low}");
                    prop_assert!(canonical, "{:?} read as {:?}", s, pair);
                }
            }
        }
    }
}
