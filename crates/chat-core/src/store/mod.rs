//! The `MessageStore` trait: how consumers persist messages without knowing the database.
//!
//! `chat-ws` persists only through this trait, so it builds and tests without diesel, and an
//! embedder can bring its own store. `chat-store` implements it over diesel (SQLite,
//! PostgreSQL); [`MemoryStore`] implements it in memory for tests.

mod memory;

pub use memory::MemoryStore;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;

use crate::message::{NewMessage, Seq, StoredMessage};
use crate::names::RoomName;
use crate::pair::UserId;

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or refused the operation; nothing was stored.
    #[error("the message store is unavailable: {0}")]
    Unavailable(String),
    /// The request itself is invalid (for example a limit of 0).
    #[error("invalid store request: {0}")]
    Invalid(String),
}

/// The result of an append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The stored message (the first one, when this was a repeated `client_id`).
    pub message: StoredMessage,
    /// True when the same sender had already sent this `client_id`: nothing new was stored.
    pub duplicate: bool,
    /// Every message stored by the commit that stored this one, when it stored more than
    /// one (stores that commit appends together set it; `None` is always correct).
    pub committed: Option<Arc<Committed>>,
}

impl Appended {
    /// A message stored now, alone or without telling what was stored with it.
    pub fn stored(message: StoredMessage) -> Self {
        Self {
            message,
            duplicate: false,
            committed: None,
        }
    }

    /// A repeated `client_id`: `message` is the one stored the first time.
    pub fn duplicate(message: StoredMessage) -> Self {
        Self {
            message,
            duplicate: true,
            committed: None,
        }
    }
}

/// The new messages of one commit, in commit order (so in seq order within each room),
/// shared by the answers of every append the commit held.
///
/// Why: each sender's task broadcasts its own message once the commit answers it, and tasks
/// woken together run in no set order (tokio runs the last one woken first, and the other
/// worker steals), so the messages of a commit shared by several senders reached their room
/// out of seq order, and every member held the early arrivals until the rest came. With
/// this, whichever caller runs first [claims](Committed::claim) the commit and broadcasts all
/// of it in order; the others only answer their client.
#[derive(Debug)]
pub struct Committed {
    messages: Vec<StoredMessage>,
    claimed: AtomicBool,
}

impl Committed {
    /// The new messages of a commit, in commit order.
    pub fn new(messages: Vec<StoredMessage>) -> Self {
        Self {
            messages,
            claimed: AtomicBool::new(false),
        }
    }

    /// The messages, in commit order.
    pub fn messages(&self) -> &[StoredMessage] {
        &self.messages
    }

    /// True for exactly one caller: the one that publishes every message of the commit.
    pub fn claim(&self) -> bool {
        !self.claimed.swap(true, Ordering::AcqRel)
    }
}

/// Two commits are equal when they stored the same messages (who claimed them is not part
/// of what was stored).
impl PartialEq for Committed {
    fn eq(&self, other: &Self) -> bool {
        self.messages == other.messages
    }
}

impl Eq for Committed {}

/// Which page of a room's history to read. Pages are always returned oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HistoryQuery {
    /// Only messages with seq greater than this; the page starts right after it.
    pub after: Option<Seq>,
    /// Only messages with seq lower than this; without `after` the page ends right before it.
    pub before: Option<Seq>,
    /// Page size; stores cap it at [`HistoryQuery::MAX_LIMIT`].
    pub limit: u32,
}

impl HistoryQuery {
    /// The largest page a store returns.
    pub const MAX_LIMIT: u32 = 200;

    /// The newest `limit` messages.
    pub fn latest(limit: u32) -> Self {
        Self {
            after: None,
            before: None,
            limit,
        }
    }

    /// The oldest `limit` messages after `seq`.
    pub fn after(seq: Seq, limit: u32) -> Self {
        Self {
            after: Some(seq),
            before: None,
            limit,
        }
    }

    /// The newest `limit` messages before `seq`.
    pub fn before(seq: Seq, limit: u32) -> Self {
        Self {
            after: None,
            before: Some(seq),
            limit,
        }
    }

    /// The effective page size: at least 1, at most [`Self::MAX_LIMIT`].
    pub fn capped_limit(&self) -> u32 {
        self.limit.clamp(1, Self::MAX_LIMIT)
    }
}

/// A page of history.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HistoryPage {
    /// Messages, oldest first.
    pub messages: Vec<StoredMessage>,
    /// Whether more messages exist in the direction the page was read (newer for `after`
    /// queries, older otherwise).
    pub has_more: bool,
}

/// Persistence for chat messages and read state.
///
/// Contract every implementation keeps (tested by `chat-store`'s suite and by
/// [`MemoryStore`]'s tests):
/// - `append` assigns the room's next seq, gap-free and in commit order, and returns only after
///   the message is durable;
/// - the same (room, sender, `client_id`) appended twice returns the first message with
///   `duplicate: true`;
/// - history pages are oldest first and never skip a seq.
#[async_trait]
pub trait MessageStore: Send + Sync + 'static {
    /// Stores a message and returns it with its seq.
    async fn append(&self, msg: NewMessage) -> Result<Appended, StoreError>;

    /// Stores several messages, in order: each gets its seq after the one before it in the
    /// same room, and its own answer (one refused message does not refuse the others). For a
    /// client that sent a burst faster than one commit each: a store that commits in groups
    /// overrides it to put the whole burst in one commit. The default appends them one after
    /// the other.
    async fn append_many(&self, msgs: Vec<NewMessage>) -> Vec<Result<Appended, StoreError>> {
        let mut answers = Vec::with_capacity(msgs.len());
        for msg in msgs {
            answers.push(self.append(msg).await);
        }
        answers
    }

    /// Reads a page of a room's history.
    async fn history(
        &self,
        room: &RoomName,
        query: HistoryQuery,
    ) -> Result<HistoryPage, StoreError>;

    /// The room's latest seq (0 when it has no messages).
    async fn last_seq(&self, room: &RoomName) -> Result<Seq, StoreError>;

    /// Records that `user` has read `room` up to `seq`. Never moves backwards.
    async fn mark_read(&self, room: &RoomName, user: UserId, seq: Seq) -> Result<(), StoreError>;

    /// The last seq `user` has read in `room` (0 when never).
    async fn last_read(&self, room: &RoomName, user: UserId) -> Result<Seq, StoreError>;

    /// Checks that the store is reachable (for readiness probes).
    async fn ping(&self) -> Result<(), StoreError>;
}
