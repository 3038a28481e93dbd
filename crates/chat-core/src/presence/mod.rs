//! Presence: who is online in a room, counting a user once however many tabs (connections)
//! they have open, across every server node.
//!
//! Each connection registers itself with its id (its channel name). `join` says whether it is
//! the user's first connection in the room (announce "join"), `leave` whether it was the last
//! (announce "leave"). The Redis implementation keeps registrations with an expiry that live
//! nodes refresh, so the users of a node that dies stop counting as online within the TTL.

mod memory;
#[cfg(feature = "redis")]
mod redis;

#[cfg(feature = "redis")]
pub use self::redis::RedisPresence;
pub use memory::MemoryPresence;

use std::sync::Arc;

use async_trait::async_trait;

use crate::message::Sender;
use crate::names::RoomName;

/// Why presence could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PresenceError {
    /// The backend (for example Redis) failed; the source says how.
    #[error("presence backend: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Who is online where.
#[async_trait]
pub trait Presence: Send + Sync + 'static {
    /// Registers connection `conn` of `user` in `room`. True when the user was not online in
    /// the room before (announce a join).
    async fn join(&self, room: &RoomName, user: &Sender, conn: &str)
    -> Result<bool, PresenceError>;

    /// Unregisters a connection. True when it was the user's last one in the room (announce a
    /// leave).
    async fn leave(
        &self,
        room: &RoomName,
        user: &Sender,
        conn: &str,
    ) -> Result<bool, PresenceError>;

    /// The users online in `room`, each once.
    async fn online(&self, room: &RoomName) -> Result<Vec<Sender>, PresenceError>;

    /// At most `limit` of the users online in `room` (all of them, by name, when there are
    /// no more) and how many are online. Joins read this rather than [`Presence::online`]:
    /// listing ten thousand members to each of ten thousand joiners costs the square of the
    /// room. The default reads the whole list; implementations do better.
    async fn online_upto(
        &self,
        room: &RoomName,
        limit: usize,
    ) -> Result<OnlineUsers, PresenceError> {
        let mut users = self.online(room).await?;
        let total = users.len();
        users.truncate(limit);
        Ok(OnlineUsers { users, total })
    }

    /// How many users are online in `room`.
    async fn count(&self, room: &RoomName) -> Result<usize, PresenceError> {
        Ok(self.online_upto(room, 0).await?.total)
    }

    /// Forgets the connections of server nodes that died (they could not leave by themselves)
    /// and returns who thereby left which room, for the caller to announce. Each departure is
    /// returned once, to one caller, across every node. Call it periodically (every third of
    /// the presence TTL); a presence that lives in one process has nothing to sweep.
    async fn sweep(&self) -> Result<Vec<(RoomName, Sender)>, PresenceError> {
        Ok(Vec::new())
    }
}

/// Some of a room's users online ([`Presence::online_upto`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OnlineUsers {
    /// Up to the limit asked for, sorted by name.
    pub users: Vec<Sender>,
    /// How many users are online in the room.
    pub total: usize,
}

/// Presence shared by many connections.
pub type SharedPresence = Arc<dyn Presence>;

/// The key that identifies a user for presence: the same as for idempotency (`u:<id>` for
/// users, `g:<guest id>` for guests, `n:<name>` for a guest known by name only).
pub(crate) fn user_key(user: &Sender) -> String {
    user.idempotency_key()
}
