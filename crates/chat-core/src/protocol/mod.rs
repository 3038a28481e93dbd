//! The wire protocol: client frames (parsed with precise errors), server frames, error and
//! close codes, and the default limits. See `docs/protocol.md` for the contract in prose.

use std::time::Duration;

mod client;
mod server;

pub use client::{ClientFrame, FrameError};
pub use server::{PresenceEvent, ReadMark, ServerFrame};

use serde::{Deserialize, Serialize};

/// The error codes of error frames and HTTP error bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame was not a JSON object, or a field had the wrong type.
    InvalidJson,
    /// The frame's `type` is not one the server knows.
    UnknownType,
    /// The room name is not valid.
    InvalidRoom,
    /// The caller may not use this room.
    Forbidden,
    /// A multiplexed socket sent a frame for a room it has not joined.
    NotJoined,
    /// The frame or the body is over the limit.
    TooLarge,
    /// The body is empty or blank.
    EmptyMessage,
    /// The sender is over the rate limit; the message was not stored.
    RateLimited,
    /// The store could not take the message; it was not stored and not acked.
    StoreUnavailable,
    /// Something failed on the server.
    Internal,
    /// What was asked for does not exist (an attachment id).
    NotFound,
    /// A file of a kind the server does not accept.
    UnsupportedType,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidJson => "invalid_json",
            Self::UnknownType => "unknown_type",
            Self::InvalidRoom => "invalid_room",
            Self::Forbidden => "forbidden",
            Self::NotJoined => "not_joined",
            Self::TooLarge => "too_large",
            Self::EmptyMessage => "empty_message",
            Self::RateLimited => "rate_limited",
            Self::StoreUnavailable => "store_unavailable",
            Self::Internal => "internal",
            Self::NotFound => "not_found",
            Self::UnsupportedType => "unsupported_type",
        }
    }
}

/// WebSocket close codes used by the server.
pub mod close {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// The server is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// A text frame was not valid UTF-8.
    pub const INVALID_DATA: u16 = 1007;
    /// Policy violation (repeated abuse, idle timeout).
    pub const POLICY: u16 = 1008;
    /// A frame was larger than the limit.
    pub const TOO_LARGE: u16 = 1009;
    /// The server failed.
    pub const INTERNAL: u16 = 1011;
    /// The client did not keep up with its outbound queue.
    pub const TRY_AGAIN_LATER: u16 = 1013;
}

/// The protocol's limits. The defaults are the contract's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted WebSocket frame/message, in bytes.
    pub max_frame_bytes: usize,
    /// Longest message body, in characters.
    pub max_body_chars: usize,
    /// Sustained messages per second per connection.
    pub messages_per_second: u32,
    /// Burst of messages allowed above the sustained rate.
    pub message_burst: u32,
    /// Frames that may wait for a slow client before it is closed with 1013.
    pub outbound_queue: usize,
    /// How often the server pings.
    pub ping_interval: Duration,
    /// A client silent for this long is closed.
    pub idle_timeout: Duration,
    /// A client that takes nothing of what waits for it for this long (its TCP window is full:
    /// it stopped reading) is closed, so a stuck client's task, socket and queue are freed.
    pub write_timeout: Duration,
    /// Largest `limit` of a history request.
    pub max_history: u32,
    /// Longest `client_id`, in bytes.
    pub max_client_id_bytes: usize,
    /// Longest guest name, in characters.
    pub max_name_chars: usize,
    /// Most users a room announces one by one. Above it, a user's join and leave are not
    /// broadcast (each would go to every member, so a room filling up would cost the square
    /// of its size) and `joined` lists this many of the users online, with their total in
    /// `online_count`.
    pub presence_limit: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_bytes: 64 * 1024,
            max_body_chars: 4_000,
            messages_per_second: 20,
            message_burst: 40,
            outbound_queue: 1_024,
            ping_interval: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(10),
            max_history: 200,
            max_client_id_bytes: 128,
            max_name_chars: 64,
            presence_limit: 500,
        }
    }
}

impl Limits {
    /// Checks a message body and client id against the limits: not blank (`empty_message`),
    /// at most `max_body_chars` characters and a client id of 1 to `max_client_id_bytes`
    /// bytes (`too_large`).
    pub fn check_message(&self, body: &str, client_id: Option<&str>) -> Result<(), FrameError> {
        self.check_attached_message(body, client_id, false)
    }

    /// [`Limits::check_message`] for a message that may carry a file: with one
    /// (`attached`), the text may be empty.
    pub fn check_attached_message(
        &self,
        body: &str,
        client_id: Option<&str>,
        attached: bool,
    ) -> Result<(), FrameError> {
        if body.trim().is_empty() && !attached {
            return Err(FrameError::new(
                ErrorCode::EmptyMessage,
                "the message is empty",
            ));
        }
        let chars = body.chars().count();
        if chars > self.max_body_chars {
            return Err(FrameError::new(
                ErrorCode::TooLarge,
                format!(
                    "the message has {chars} characters; the limit is {}",
                    self.max_body_chars
                ),
            ));
        }
        if client_id.is_some_and(|c| c.is_empty() || c.len() > self.max_client_id_bytes) {
            return Err(FrameError::new(
                ErrorCode::TooLarge,
                format!("client_id must be 1 to {} bytes", self.max_client_id_bytes),
            ));
        }
        Ok(())
    }

    /// Checks and normalizes a guest's display name: trimmed, 1 to `max_name_chars`
    /// characters, no control characters. The error says what to fix.
    pub fn check_guest_name(&self, name: &str) -> Result<String, InvalidDisplayName> {
        let name = name.trim();
        if name.is_empty() {
            return Err(InvalidDisplayName::Empty);
        }
        if name.chars().count() > self.max_name_chars {
            return Err(InvalidDisplayName::TooLong(self.max_name_chars));
        }
        if name.chars().any(char::is_control) {
            return Err(InvalidDisplayName::ControlCharacters);
        }
        Ok(name.to_owned())
    }
}

/// Why a display name was refused ([`Limits::check_guest_name`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidDisplayName {
    /// Nothing but spaces.
    #[error("the name is empty")]
    Empty,
    /// More characters than this.
    #[error("a name has at most {0} characters")]
    TooLong(usize),
    /// A control character (a newline, a bell).
    #[error("a name cannot contain control characters")]
    ControlCharacters,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_and_name_limits() {
        let l = Limits::default();
        assert!(l.check_message("hi", Some("c-1")).is_ok());
        assert_eq!(
            l.check_message(" \n\t", None).unwrap_err().code,
            ErrorCode::EmptyMessage
        );
        assert!(l.check_message(&"é".repeat(4_000), None).is_ok());
        assert_eq!(
            l.check_message(&"é".repeat(4_001), None).unwrap_err().code,
            ErrorCode::TooLarge
        );
        assert_eq!(
            l.check_message("x", Some("")).unwrap_err().code,
            ErrorCode::TooLarge
        );
        assert_eq!(
            l.check_message("x", Some(&"c".repeat(129)))
                .unwrap_err()
                .code,
            ErrorCode::TooLarge
        );
        assert_eq!(l.check_guest_name("  ana ").unwrap(), "ana");
        assert_eq!(l.check_guest_name(" "), Err(InvalidDisplayName::Empty));
        assert_eq!(
            l.check_guest_name("a\u{7}b"),
            Err(InvalidDisplayName::ControlCharacters)
        );
        assert_eq!(
            l.check_guest_name(&"n".repeat(65)),
            Err(InvalidDisplayName::TooLong(64))
        );
    }
}
