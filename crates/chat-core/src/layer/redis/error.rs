//! What can go wrong talking to Redis, for the layer and for presence alike. A typed error
//! keeps the Redis client's own error as the source, so an operator's log shows the cause and
//! a caller can tell a timeout from a refused connection.

use std::time::Duration;

/// A Redis operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// The configured URL is not a Redis URL. The message never includes the URL itself: it
    /// may hold a password.
    #[error("invalid Redis URL: {0}")]
    InvalidUrl(#[source] redis::RedisError),
    /// The connection pool could not be built from the configuration.
    #[error("Redis connection pool: {0}")]
    Pool(#[from] deadpool_redis::CreatePoolError),
    /// No connection could be taken from the pool (Redis down, or every connection busy for
    /// the whole timeout).
    #[error("cannot reach Redis: {0}")]
    Connection(#[from] deadpool_redis::PoolError),
    /// A command failed.
    #[error("Redis command failed: {0}")]
    Command(#[from] redis::RedisError),
    /// A command did not answer within the configured timeout.
    #[error("Redis {command} timed out after {after:?}")]
    Timeout {
        /// The command that timed out.
        command: &'static str,
        /// The timeout it had.
        after: Duration,
    },
    /// Redis answered something other than what the command returns.
    #[error("unexpected answer to {command}: {answer:?}")]
    UnexpectedAnswer {
        /// The command.
        command: &'static str,
        /// What came back.
        answer: String,
    },
    /// The Pub/Sub connection is down and reconnecting: a publish now would be lost.
    #[error("Redis is unavailable; reconnecting")]
    Reconnecting,
    /// A value could not be encoded for Redis.
    #[error("could not encode a value for Redis: {0}")]
    Encode(#[from] serde_json::Error),
}

impl From<RedisError> for crate::LayerError {
    fn from(e: RedisError) -> Self {
        Self::Backend(Box::new(e))
    }
}

impl From<RedisError> for crate::PresenceError {
    fn from(e: RedisError) -> Self {
        Self::Backend(Box::new(e))
    }
}
