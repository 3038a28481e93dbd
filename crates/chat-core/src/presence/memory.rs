//! Presence for one process.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use parking_lot::Mutex;

use super::{OnlineUsers, Presence, PresenceError, user_key};
use crate::message::Sender;
use crate::names::RoomName;

#[derive(Default)]
struct Room {
    /// user key → (the user, their connections)
    users: HashMap<String, (Sender, HashSet<String>)>,
}

/// In-process presence (the server without Redis, and tests).
#[derive(Default)]
pub struct MemoryPresence {
    rooms: Mutex<HashMap<RoomName, Room>>,
}

impl MemoryPresence {
    /// Nobody online.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Presence for MemoryPresence {
    async fn join(
        &self,
        room: &RoomName,
        user: &Sender,
        conn: &str,
    ) -> Result<bool, PresenceError> {
        let mut rooms = self.rooms.lock();
        let entry = rooms
            .entry(room.clone())
            .or_default()
            .users
            .entry(user_key(user))
            .or_insert_with(|| (user.clone(), HashSet::new()));
        let first = entry.1.is_empty();
        entry.1.insert(conn.to_owned());
        Ok(first)
    }

    async fn leave(
        &self,
        room: &RoomName,
        user: &Sender,
        conn: &str,
    ) -> Result<bool, PresenceError> {
        let mut rooms = self.rooms.lock();
        let Some(r) = rooms.get_mut(room) else {
            return Ok(false);
        };
        let key = user_key(user);
        let last = match r.users.get_mut(&key) {
            Some((_, conns)) => conns.remove(conn) && conns.is_empty(),
            None => false,
        };
        if last {
            r.users.remove(&key);
        }
        if r.users.is_empty() {
            rooms.remove(room);
        }
        Ok(last)
    }

    async fn online(&self, room: &RoomName) -> Result<Vec<Sender>, PresenceError> {
        let rooms = self.rooms.lock();
        let mut users: Vec<Sender> = rooms
            .get(room)
            .map(|r| r.users.values().map(|(u, _)| u.clone()).collect())
            .unwrap_or_default();
        users.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(users)
    }

    async fn online_upto(
        &self,
        room: &RoomName,
        limit: usize,
    ) -> Result<OnlineUsers, PresenceError> {
        let rooms = self.rooms.lock();
        let Some(r) = rooms.get(room) else {
            return Ok(OnlineUsers::default());
        };
        // Any `limit` of them, not the first by name: choosing those would read them all.
        let mut users: Vec<Sender> = r
            .users
            .values()
            .take(limit)
            .map(|(u, _)| u.clone())
            .collect();
        users.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(OnlineUsers {
            users,
            total: r.users.len(),
        })
    }

    async fn count(&self, room: &RoomName) -> Result<usize, PresenceError> {
        Ok(self.rooms.lock().get(room).map_or(0, |r| r.users.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn two_tabs_count_once() {
        let p = MemoryPresence::new();
        let room = RoomName::parse("lobby").unwrap();
        let ana = Sender::user(3, "Ana", None);
        assert!(p.join(&room, &ana, "c1").await.unwrap(), "first tab joins");
        assert!(
            !p.join(&room, &ana, "c2").await.unwrap(),
            "second tab is silent"
        );
        assert!(p.join(&room, &Sender::guest("bo"), "c3").await.unwrap());
        assert_eq!(p.online(&room).await.unwrap().len(), 2);
        assert!(
            !p.leave(&room, &ana, "c1").await.unwrap(),
            "one tab left, still online"
        );
        assert!(p.leave(&room, &ana, "c2").await.unwrap(), "last tab leaves");
        assert!(
            !p.leave(&room, &ana, "c2").await.unwrap(),
            "leaving twice is a no-op"
        );
        assert_eq!(p.online(&room).await.unwrap(), vec![Sender::guest("bo")]);
    }

    #[tokio::test]
    async fn a_crowd_is_counted_not_listed() {
        let p = MemoryPresence::new();
        let room = RoomName::parse("hall").unwrap();
        for i in 0..10 {
            let guest = Sender::guest(format!("g{i}"));
            p.join(&room, &guest, &format!("c{i}")).await.unwrap();
        }
        let some = p.online_upto(&room, 3).await.unwrap();
        assert_eq!((some.users.len(), some.total), (3, 10));
        assert!(some.users.is_sorted_by(|a, b| a.name <= b.name));
        let all = p.online_upto(&room, 100).await.unwrap();
        assert_eq!(all.users, p.online(&room).await.unwrap());
        assert_eq!(p.count(&room).await.unwrap(), 10);
        let empty = RoomName::parse("empty").unwrap();
        assert_eq!(p.count(&empty).await.unwrap(), 0);
    }
}
