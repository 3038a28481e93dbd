//! Session cookies: a random session id, signed with the server secret (the `cookie` crate's
//! signed jar), stored server-side only as its SHA-256 so a database copy cannot log anyone in.

use cookie::{Cookie, CookieJar, Key, SameSite};
use sha2::{Digest, Sha256};

/// The cookie's name.
pub const COOKIE_NAME: &str = "chat_session";
/// How long a session lives.
pub const SESSION_TTL: time::Duration = time::Duration::days(14);

/// Signs and checks session cookies.
#[derive(Clone)]
pub struct SessionKeys {
    key: Key,
    secure: bool,
}

impl SessionKeys {
    /// Keys derived from the server secret: SHA-512 with a purpose label gives the 64 bytes
    /// the signed jar needs, and keeps this key distinct from the token key.
    pub fn new(secret: &str, secure: bool) -> Self {
        let mut h = sha2::Sha512::new();
        h.update(b"chat-session-cookie:");
        h.update(secret.as_bytes());
        Self {
            key: Key::from(&h.finalize()),
            secure,
        }
    }

    /// A fresh random session id.
    pub fn new_session_id() -> String {
        let bytes: [u8; 32] = rand::random();
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// What the database stores for a session id.
    pub fn id_hash(id: &str) -> String {
        Sha256::digest(id.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The `Set-Cookie` value that starts a session, and the signed value (what `?session=`
    /// carries for clients that cannot send cookies on a WebSocket handshake).
    pub fn start(&self, session_id: &str) -> (String, String) {
        let mut jar = CookieJar::new();
        jar.signed_mut(&self.key)
            .add(Cookie::new(COOKIE_NAME, session_id.to_owned()));
        let signed_value = jar
            .get(COOKIE_NAME)
            .map(|c| c.value().to_owned())
            .unwrap_or_default();
        let cookie = Cookie::build((COOKIE_NAME, signed_value.clone()))
            .path("/")
            .http_only(true)
            .same_site(SameSite::Lax)
            .secure(self.secure)
            .max_age(SESSION_TTL)
            .build();
        (cookie.to_string(), signed_value)
    }

    /// The `Set-Cookie` value that removes the cookie.
    pub fn end(&self) -> String {
        Cookie::build((COOKIE_NAME, ""))
            .path("/")
            .http_only(true)
            .same_site(SameSite::Lax)
            .secure(self.secure)
            .max_age(time::Duration::ZERO)
            .build()
            .to_string()
    }

    /// The session id inside a signed value, if the signature is valid.
    pub fn verify(&self, signed_value: &str) -> Option<String> {
        let mut jar = CookieJar::new();
        jar.add_original(Cookie::new(COOKIE_NAME, signed_value.to_owned()));
        jar.signed(&self.key)
            .get(COOKIE_NAME)
            .map(|c| c.value().to_owned())
    }

    /// The signed session value from a `Cookie` request header, if present.
    pub fn from_cookie_header(headers: &http::HeaderMap) -> Option<String> {
        request_cookie(headers, COOKIE_NAME)
    }
}

/// The value of the cookie `name` in a request's `Cookie` headers (however many there are, and
/// wherever in them it comes), if it has one.
pub(crate) fn request_cookie(headers: &http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| Cookie::parse(c.trim().to_owned()).ok())
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef0123";

    #[test]
    fn cookie_flags() {
        let keys = SessionKeys::new(SECRET, false);
        let (set_cookie, _) = keys.start("abc");
        assert!(set_cookie.starts_with("chat_session="));
        assert!(set_cookie.contains("HttpOnly"));
        assert!(set_cookie.contains("SameSite=Lax"));
        assert!(set_cookie.contains("Path=/"));
        assert!(!set_cookie.contains("Secure"));
        let (secure, _) = SessionKeys::new(SECRET, true).start("abc");
        assert!(secure.contains("Secure"));
        assert!(keys.end().contains("Max-Age=0"));
    }

    #[test]
    fn signed_values_round_trip_and_resist_tampering() {
        let keys = SessionKeys::new(SECRET, false);
        let id = SessionKeys::new_session_id();
        let (_, signed) = keys.start(&id);
        assert_ne!(signed, id, "the cookie value is signed, not the bare id");
        assert_eq!(keys.verify(&signed), Some(id.clone()));
        let other = SessionKeys::new("another-secret-another-secret-another", false);
        assert_eq!(other.verify(&signed), None);
        assert_eq!(keys.verify(&id), None, "an unsigned id is refused");
        // Change one character of the id part, then one of the signature part.
        let mut tampered = signed.clone();
        let last = tampered.pop().unwrap();
        tampered.push(if last == '0' { '1' } else { '0' });
        assert_eq!(keys.verify(&tampered), None);
        let first = signed.chars().next().unwrap();
        let swapped = if first == 'A' { 'B' } else { 'A' };
        let tampered = format!("{swapped}{}", &signed[first.len_utf8()..]);
        assert_eq!(keys.verify(&tampered), None);
    }

    #[test]
    fn ids_are_random_and_hashed() {
        let a = SessionKeys::new_session_id();
        assert_eq!(a.len(), 64);
        assert_ne!(a, SessionKeys::new_session_id());
        assert_eq!(SessionKeys::id_hash(&a).len(), 64);
        assert_ne!(SessionKeys::id_hash(&a), a);
    }

    #[test]
    fn reads_the_cookie_header() {
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::COOKIE,
            "a=1; chat_session=xyz; b=2".parse().unwrap(),
        );
        assert_eq!(SessionKeys::from_cookie_header(&h), Some("xyz".into()));
    }

    mod props {
        #![allow(clippy::unwrap_used, clippy::expect_used)]

        use proptest::prelude::*;

        use super::*;

        fn cookie_headers(values: &[Vec<u8>]) -> http::HeaderMap {
            let mut h = http::HeaderMap::new();
            for v in values {
                if let Ok(v) = http::HeaderValue::from_bytes(v) {
                    h.append(http::header::COOKIE, v);
                }
            }
            h
        }

        proptest! {
            /// Any `Cookie` headers a client sends are read without a panic, and any value is
            /// checked without one (and refused: it carries no valid signature).
            #[test]
            fn any_cookie_header_is_read(
                values in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..60), 0..3),
                text in "(chat_session|[a-z]{1,3}|[=; \"]|[ -~]{0,8}){0,8}",
                value in any::<String>(),
            ) {
                let keys = SessionKeys::new(SECRET, false);
                let mut values = values;
                values.push(text.into_bytes());
                let found = SessionKeys::from_cookie_header(&cookie_headers(&values));
                if let Some(found) = found {
                    prop_assert_eq!(keys.verify(&found), None);
                }
                prop_assert_eq!(keys.verify(&value), None);
            }

            /// Whatever the session id, its signed value gives it back.
            #[test]
            fn signed_ids_round_trip(id in any::<String>()) {
                let keys = SessionKeys::new(SECRET, false);
                let (_, signed) = keys.start(&id);
                prop_assert_eq!(keys.verify(&signed), Some(id));
            }

            /// The cookie `start` sets, sent back among other cookies in any order, is found
            /// and verified.
            #[test]
            fn the_set_cookie_comes_back(
                others in prop::collection::vec(("[a-z][a-z_]{0,8}", "[A-Za-z0-9+/=]{0,12}"), 0..5),
                at in any::<prop::sample::Index>(),
            ) {
                let keys = SessionKeys::new(SECRET, false);
                let id = SessionKeys::new_session_id();
                let (set_cookie, signed) = keys.start(&id);
                let ours = set_cookie.split(';').next().unwrap().to_owned();
                let mut cookies: Vec<String> = others
                    .iter()
                    .filter(|(name, _)| name != COOKIE_NAME)
                    .map(|(name, value)| format!("{name}={value}"))
                    .collect();
                cookies.insert(at.index(cookies.len() + 1), ours);
                let header = cookie_headers(&[cookies.join("; ").into_bytes()]);
                let found = SessionKeys::from_cookie_header(&header);
                prop_assert_eq!(found.as_deref(), Some(signed.as_str()));
                prop_assert_eq!(keys.verify(&signed), Some(id));
            }
        }
    }
}
