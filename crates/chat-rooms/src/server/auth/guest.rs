//! Guest identity: a guest is known by a guest id, never by the display name they type (two
//! guests may both be "ana", and a name is no secret).
//!
//! A browser keeps a random secret in the `chat_guest` cookie, set by the web client's pages,
//! by a guest's socket handshake and by a guest's HTTP post when the request has none. The
//! guest id is an HMAC of that secret under a key derived from the server secret, cut to 64
//! bits: the id is public (clients see it as `sender.guest`), and it can neither be turned
//! back into the cookie nor be reached with a forged one, so knowing a guest's id does not let
//! anyone speak as them. A client without the cookie (a service, or a browser on its first
//! contact over a socket) is a new guest for that connection or request; a browser that takes
//! the cookie keeps the id from then on.

use chat_core::{GuestId, InvalidDisplayName, Limits, Sender};
use cookie::{Cookie, SameSite};
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderValue, header};
use sha2::{Digest, Sha256};

/// The cookie's name.
pub const COOKIE_NAME: &str = "chat_guest";
/// How long a browser keeps its guest id without coming back.
pub const COOKIE_TTL: time::Duration = time::Duration::days(365);
/// Hex digits of a cookie secret (256 random bits).
const SECRET_HEX: usize = 64;

type HmacSha256 = Hmac<Sha256>;

/// Derives guest ids from cookie secrets and builds the cookie.
#[derive(Clone)]
pub struct GuestKeys {
    key: [u8; 32],
    secure: bool,
}

/// The guest a request comes from.
#[derive(Debug, Clone)]
pub struct Guest {
    /// Their public id.
    pub id: GuestId,
    /// The `Set-Cookie` to answer with when the request had no (valid) guest cookie: it holds
    /// the secret `id` was derived from, so a browser that keeps it stays this guest.
    pub set_cookie: Option<HeaderValue>,
}

impl GuestKeys {
    /// Keys derived from the server secret, with a purpose label of their own (distinct from
    /// the session and token keys). `secure` marks the cookie `Secure`, as the session cookie.
    pub fn new(secret: &str, secure: bool) -> Self {
        let mut h = Sha256::new();
        h.update(b"chat-guest-id:");
        h.update(secret.as_bytes());
        Self {
            key: h.finalize().into(),
            secure,
        }
    }

    /// The public id of a cookie secret.
    pub fn id_of(&self, secret: &str) -> GuestId {
        // HMAC accepts keys of any length; this cannot fail.
        let mut m = HmacSha256::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        m.update(secret.as_bytes());
        let digest = m.finalize().into_bytes();
        let mut bits = [0u8; 8];
        bits.copy_from_slice(&digest[..8]);
        GuestId::from_bits(u64::from_be_bytes(bits))
    }

    /// The guest of a request: the one its `chat_guest` cookie names, else a new guest with the
    /// cookie to set.
    pub fn guest(&self, headers: &HeaderMap) -> Guest {
        match cookie_secret(headers) {
            Some(secret) => Guest {
                id: self.id_of(&secret),
                set_cookie: None,
            },
            None => {
                let secret = new_secret();
                Guest {
                    id: self.id_of(&secret),
                    set_cookie: HeaderValue::from_str(&self.cookie(&secret)).ok(),
                }
            }
        }
    }

    /// The `Set-Cookie` value that gives a browser its guest secret: HttpOnly (no script
    /// needs it), SameSite=Lax and Secure like the session cookie, for a year.
    fn cookie(&self, secret: &str) -> String {
        Cookie::build((COOKIE_NAME, secret.to_owned()))
            .path("/")
            .http_only(true)
            .same_site(SameSite::Lax)
            .secure(self.secure)
            .max_age(COOKIE_TTL)
            .build()
            .to_string()
    }
}

/// A fresh secret: 256 bits from the OS-seeded CSPRNG, in hex.
fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The guest secret of a `Cookie` header, if it has one of the form the server issues
/// (64 lowercase hex digits). Anything else is no cookie: the request gets a new guest and a
/// cookie that replaces it, so a hand-made short value cannot become a guessable identity.
fn cookie_secret(headers: &HeaderMap) -> Option<String> {
    super::session::request_cookie(headers, COOKIE_NAME).filter(|v| {
        v.len() == SECRET_HEX && v.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// A guest as the protocol shows them: their id and the name they asked for (checked; the
/// error says what to fix), or without one the name generated from their id. Every path that
/// names a guest goes through here, so they all name a guest alike.
pub fn sender(
    limits: &Limits,
    guest: &Guest,
    name: Option<&str>,
) -> Result<Sender, InvalidDisplayName> {
    let name = match name {
        Some(n) => limits.check_guest_name(n)?,
        None => guest.id.default_name(),
    };
    Ok(Sender::guest_with_id(guest.id.clone(), name))
}

/// Adds a guest's `Set-Cookie`, if there is one, to a response's headers.
pub fn set_cookie(headers: &mut HeaderMap, guest: &Guest) {
    if let Some(v) = &guest.set_cookie {
        headers.append(header::SET_COOKIE, v.clone());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef0123";

    fn with_cookie(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, value.parse().unwrap());
        h
    }

    /// The `name=value` part of a `Set-Cookie`.
    fn pair(set_cookie: &HeaderValue) -> String {
        let s = set_cookie.to_str().unwrap();
        s.split(';').next().unwrap().to_owned()
    }

    #[test]
    fn the_cookie_has_the_session_cookies_flags() {
        let new = GuestKeys::new(SECRET, false).guest(&HeaderMap::new());
        let c = new.set_cookie.unwrap();
        let c = c.to_str().unwrap();
        assert!(c.starts_with("chat_guest="), "{c}");
        for attr in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=31536000"] {
            assert!(c.contains(attr), "{attr} in {c}");
        }
        assert!(!c.contains("Secure"));
        let secure = GuestKeys::new(SECRET, true).guest(&HeaderMap::new());
        assert!(
            secure
                .set_cookie
                .unwrap()
                .to_str()
                .unwrap()
                .contains("Secure")
        );
    }

    #[test]
    fn a_browser_keeps_its_id_and_others_get_their_own() {
        let keys = GuestKeys::new(SECRET, false);
        let new = keys.guest(&HeaderMap::new());
        let cookie = pair(new.set_cookie.as_ref().unwrap());
        let back = keys.guest(&with_cookie(&format!("a=1; {cookie}; b=2")));
        assert_eq!(back.id, new.id, "the cookie gives the id back");
        assert!(back.set_cookie.is_none(), "and is not set again");
        let other = keys.guest(&HeaderMap::new());
        assert_ne!(other.id, new.id, "no cookie: a new guest");
        let secret = cookie.trim_start_matches("chat_guest=");
        assert!(
            !secret.contains(new.id.as_str()),
            "the id does not reveal the secret"
        );
        let elsewhere = GuestKeys::new("another-secret-another-secret-another", false);
        assert_ne!(
            elsewhere.id_of(secret),
            new.id,
            "ids are keyed by the server secret"
        );
    }

    #[test]
    fn malformed_cookies_are_no_cookie() {
        let keys = GuestKeys::new(SECRET, false);
        for bad in [
            "chat_guest=",
            "chat_guest=ana",
            "chat_guest=0123",
            &format!("chat_guest={}", "A".repeat(64)),
            &format!("chat_guest={}", "a".repeat(65)),
        ] {
            let g = keys.guest(&with_cookie(bad));
            assert!(g.set_cookie.is_some(), "{bad}: a new cookie replaces it");
        }
    }
}
