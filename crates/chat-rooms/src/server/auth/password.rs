//! Password hashing with argon2id. Hashing is deliberately slow, so it runs on the blocking
//! pool, never on the async runtime's threads.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

/// Shortest accepted password.
pub const MIN_PASSWORD_CHARS: usize = 8;

/// A hash of a password nobody has, verified against when the username is unknown so that a
/// failed login takes as long whether or not the user exists.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$2K+HM6zbkvYzSnUXZ8n/yrlVwSIqYJ4ArGn9dUxHZ6A";

/// Why a password could not be hashed.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// argon2 refused (a parameter or salt out of its bounds).
    #[error("could not hash the password: {0}")]
    Argon2(argon2::password_hash::Error),
    /// The blocking task that hashes was cancelled or panicked (the runtime is shutting
    /// down).
    #[error("the password hashing task did not finish: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Hashes a password into a PHC string (`$argon2id$…`).
pub async fn hash(password: String) -> Result<String, HashError> {
    tokio::task::spawn_blocking(move || {
        let salt =
            SaltString::encode_b64(&rand::random::<[u8; 16]>()).map_err(HashError::Argon2)?;
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(HashError::Argon2)
    })
    .await?
}

/// Checks a password against a stored hash (or against a dummy when there is no user, to
/// keep timing the same). Comparison is constant-time inside argon2.
pub async fn verify(password: String, stored: Option<String>) -> bool {
    let known = stored.is_some();
    let ok = tokio::task::spawn_blocking(move || {
        let stored = stored.unwrap_or_else(|| DUMMY_HASH.to_owned());
        PasswordHash::new(&stored).is_ok_and(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
    })
    .await
    .unwrap_or(false);
    known && ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_and_verify() {
        let h = hash("correct horse".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(!h.contains("correct horse"));
        assert!(verify("correct horse".into(), Some(h.clone())).await);
        assert!(!verify("wrong".into(), Some(h)).await);
        assert!(!verify("anything".into(), None).await);
        assert!(
            PasswordHash::new(DUMMY_HASH).is_ok(),
            "the dummy hash parses"
        );
    }
}
