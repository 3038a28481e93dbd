//! Who may open a private room with whom: the embedding service decides.

use std::sync::Arc;

use crate::pair::UserId;

/// A user as a [`PairPolicy`] sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member<'a> {
    /// The user's id.
    pub id: UserId,
    /// The user's role (`tutor`, `vet`, …; may be empty).
    pub role: &'a str,
}

/// Decides whether two users may have a pair room. Checked when a user opens a conversation
/// and when the contact list is built; membership of an existing room is never re-decided by
/// the policy (only the two members can use a pair room, whatever the policy says).
pub trait PairPolicy: Send + Sync + 'static {
    /// Whether `a` may talk with `b`. Should be symmetric.
    fn may_pair(&self, a: Member<'_>, b: Member<'_>) -> bool;
}

/// Anyone may talk with anyone else (the default).
#[derive(Debug, Clone, Copy, Default)]
pub struct AnyPair;

impl PairPolicy for AnyPair {
    fn may_pair(&self, a: Member<'_>, b: Member<'_>) -> bool {
        a.id != b.id
    }
}

/// Users may only talk across roles in a set of allowed role pairs, e.g. `tutor` ↔ `vet`.
#[derive(Debug, Clone, Default)]
pub struct RolePairs {
    pairs: Vec<(String, String)>,
}

impl RolePairs {
    /// No pair allowed yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Allows users with role `a` to talk with users with role `b` (and back).
    pub fn allow(mut self, a: impl Into<String>, b: impl Into<String>) -> Self {
        self.pairs.push((a.into(), b.into()));
        self
    }
}

impl PairPolicy for RolePairs {
    fn may_pair(&self, a: Member<'_>, b: Member<'_>) -> bool {
        a.id != b.id
            && self
                .pairs
                .iter()
                .any(|(x, y)| (x == a.role && y == b.role) || (x == b.role && y == a.role))
    }
}

/// A pair policy written as text, as a configuration carries it: `any`, or
/// `roles:tutor=vet,vet=vet` (pairs of roles that may talk, separated by commas).
pub fn parse_pair_policy(text: &str) -> Result<Arc<dyn PairPolicy>, InvalidPolicy> {
    let text = text.trim();
    if text.is_empty() || text.eq_ignore_ascii_case("any") {
        return Ok(Arc::new(AnyPair));
    }
    let bad = || InvalidPolicy(text.to_owned());
    let pairs = text.strip_prefix("roles:").ok_or_else(bad)?;
    let mut policy = RolePairs::new();
    for pair in pairs.split(',') {
        let (a, b) = pair.split_once('=').ok_or_else(bad)?;
        let (a, b) = (a.trim(), b.trim());
        if a.is_empty() || b.is_empty() {
            return Err(bad());
        }
        policy = policy.allow(a, b);
    }
    Ok(Arc::new(policy))
}

/// A pair policy text that is neither `any` nor `roles:a=b,…`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pair policy {0:?}: use `any` or `roles:tutor=vet` (pairs of roles separated by commas)")]
pub struct InvalidPolicy(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: UserId, role: &str) -> Member<'_> {
        Member { id, role }
    }

    #[test]
    fn any_pair_but_oneself() {
        assert!(AnyPair.may_pair(m(1, "a"), m(2, "a")));
        assert!(!AnyPair.may_pair(m(1, "a"), m(1, "a")));
    }

    #[test]
    fn role_pairs_are_symmetric() {
        let p = RolePairs::new().allow("tutor", "vet");
        assert!(p.may_pair(m(1, "tutor"), m(2, "vet")));
        assert!(p.may_pair(m(2, "vet"), m(1, "tutor")));
        assert!(!p.may_pair(m(1, "tutor"), m(3, "tutor")));
        assert!(!p.may_pair(m(2, "vet"), m(4, "admin")));
    }

    #[test]
    fn policies_parse_from_text() {
        let any = parse_pair_policy("any").unwrap_or_else(|e| panic!("{e}"));
        assert!(any.may_pair(m(1, "tutor"), m(2, "tutor")));
        let clinic = parse_pair_policy("roles:tutor=vet").unwrap_or_else(|e| panic!("{e}"));
        assert!(clinic.may_pair(m(1, "tutor"), m(2, "vet")));
        assert!(clinic.may_pair(m(2, "vet"), m(1, "tutor")));
        assert!(!clinic.may_pair(m(1, "tutor"), m(3, "tutor")));
        let two = parse_pair_policy("roles: tutor=vet , vet=vet").unwrap_or_else(|e| panic!("{e}"));
        assert!(two.may_pair(m(2, "vet"), m(4, "vet")));
        for bad in ["roles", "roles:", "roles:tutor", "roles:=vet", "everyone"] {
            assert_eq!(
                parse_pair_policy(bad).err(),
                Some(InvalidPolicy(bad.to_owned())),
                "{bad}"
            );
        }
    }
}
