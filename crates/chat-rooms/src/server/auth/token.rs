//! Signed bearer tokens for services: `v1.<user id>.<expiry unix seconds>.<hex HMAC-SHA256>`.

use chat_core::UserId;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &str, payload: &str) -> HmacSha256 {
    // HMAC accepts keys of any length; this cannot fail.
    let mut m = HmacSha256::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    m.update(b"chat-token:");
    m.update(payload.as_bytes());
    m
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Pairs of hex digits only: `u8::from_str_radix` alone would also take a sign (`+f`), so a
/// signature would have more than one spelling.
fn from_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Issues a token for `user` valid until `expires` (Unix seconds).
pub fn issue(secret: &str, user: UserId, expires: i64) -> String {
    let payload = format!("v1.{user}.{expires}");
    let sig = mac(secret, &payload).finalize().into_bytes();
    format!("{payload}.{}", to_hex(&sig))
}

/// The user a token names and its expiry (Unix seconds), if its signature is valid and it has
/// not expired at `now`.
pub fn verify(secret: &str, token: &str, now: i64) -> Option<(UserId, i64)> {
    let (payload, sig) = token.rsplit_once('.')?;
    let mut parts = payload.split('.');
    let (Some("v1"), Some(user), Some(expires), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    // verify_slice compares in constant time.
    mac(secret, payload).verify_slice(&from_hex(sig)?).ok()?;
    let expires: i64 = expires.parse().ok()?;
    if now >= expires {
        return None;
    }
    Some((user.parse().ok()?, expires))
}

/// Why a token lifetime did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TtlError {
    /// No number where one was expected.
    #[error("{0:?} is not a duration like 90s, 30m, 1h or 7d")]
    NotADuration(String),
    /// A number with a unit other than s, m, h or d.
    #[error("unknown unit in {0:?}: use s, m, h or d")]
    UnknownUnit(String),
    /// Zero or less.
    #[error("a token lifetime must be positive")]
    NotPositive,
    /// More seconds than fit.
    #[error("that lifetime is too long")]
    TooLong,
}

/// Parses a duration like `90s`, `30m`, `1h`, `7d` into seconds.
pub fn parse_ttl(s: &str) -> Result<i64, TtlError> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: i64 = num
        .parse()
        .map_err(|_| TtlError::NotADuration(s.to_owned()))?;
    let unit = match unit {
        "s" | "" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(TtlError::UnknownUnit(s.to_owned())),
    };
    if n <= 0 {
        return Err(TtlError::NotPositive);
    }
    n.checked_mul(unit).ok_or(TtlError::TooLong)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn valid_until_expiry() {
        let t = issue(SECRET, 3, 1_000);
        assert_eq!(verify(SECRET, &t, 999), Some((3, 1_000)));
        assert_eq!(
            verify(SECRET, &t, 1_000),
            None,
            "expired at its expiry time"
        );
        assert_eq!(verify(SECRET, &t, 5_000), None);
    }

    #[test]
    fn tampering_and_other_secrets_fail() {
        let t = issue(SECRET, 3, 1_000);
        assert_eq!(verify("another-secret-another-secret-xx", &t, 0), None);
        let forged = t.replacen("v1.3.", "v1.4.", 1);
        assert_eq!(verify(SECRET, &forged, 0), None);
        let longer = t.replacen(".1000.", ".9999.", 1);
        assert_eq!(verify(SECRET, &longer, 0), None);
        for junk in [
            "",
            "v1",
            "v1.3.1000",
            "v1.3.1000.zz",
            "v2.3.1000.00",
            "a.b.c.d.e",
        ] {
            assert_eq!(verify(SECRET, junk, 0), None, "{junk}");
        }
    }

    #[test]
    fn signatures_have_one_spelling() {
        // Found by `hex_is_strict`: `from_str_radix` took `+f` for 0x0f.
        assert_eq!(from_hex("+f"), None);
        assert_eq!(from_hex("0f"), Some(vec![0x0f]));
        assert_eq!(from_hex("0F"), Some(vec![0x0f]));
    }

    #[test]
    fn ttls() {
        assert_eq!(parse_ttl("1h"), Ok(3_600));
        assert_eq!(parse_ttl("30m"), Ok(1_800));
        assert_eq!(parse_ttl("7d"), Ok(604_800));
        assert_eq!(parse_ttl("45"), Ok(45));
        assert_eq!(parse_ttl("0s"), Err(TtlError::NotPositive));
        assert_eq!(parse_ttl("1y"), Err(TtlError::UnknownUnit("1y".into())));
        assert_eq!(
            parse_ttl("soon"),
            Err(TtlError::NotADuration("soon".into()))
        );
    }

    mod props {
        use proptest::prelude::*;

        use super::*;

        proptest! {
            /// Any text is checked as a token without a panic, and refused.
            #[test]
            fn any_text_is_refused(
                text in any::<String>(),
                shaped in "v1\\.-?[0-9]{0,20}\\.-?[0-9]{0,20}\\.[0-9a-fA-F+-]{0,66}",
                now in any::<i64>(),
            ) {
                prop_assert_eq!(verify(SECRET, &text, now), None);
                prop_assert_eq!(verify(SECRET, &shaped, now), None);
            }

            /// A token verifies, giving back its user and expiry, exactly until it expires.
            #[test]
            fn issued_tokens_verify_until_expiry(user in any::<i64>(), expires in any::<i64>(), now in any::<i64>()) {
                let token = issue(SECRET, user, expires);
                let expected = (now < expires).then_some((user, expires));
                prop_assert_eq!(verify(SECRET, &token, now), expected);
                prop_assert_eq!(verify("another-secret-another-secret-xx", &token, now), None);
            }

            /// Hex decoding undoes hex encoding, and takes nothing but pairs of hex digits.
            #[test]
            fn hex_is_strict(bytes in prop::collection::vec(any::<u8>(), 0..40), text in "[0-9a-fA-F+ -]{0,8}") {
                prop_assert_eq!(from_hex(&to_hex(&bytes)), Some(bytes));
                let valid = text.len() % 2 == 0 && text.bytes().all(|b| b.is_ascii_hexdigit());
                prop_assert_eq!(from_hex(&text).is_some(), valid, "{:?}", text);
            }

            /// Lifetimes parse without a panic; `<n><unit>` gives `n` times the unit.
            #[test]
            fn ttls_parse(text in any::<String>(), n in 1..=i64::MAX, unit in prop::sample::select(vec![("", 1), ("s", 1), ("m", 60), ("h", 3_600), ("d", 86_400)])) {
                let _ = parse_ttl(&text);
                let (suffix, seconds) = unit;
                prop_assert_eq!(parse_ttl(&format!("{n}{suffix}")).ok(), n.checked_mul(seconds));
            }
        }
    }
}
