//! An in-memory [`MessageStore`] for tests and examples.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;

use super::{Appended, HistoryPage, HistoryQuery, MessageStore, StoreError};
use crate::message::{NewMessage, Seq, StoredMessage, Timestamp};
use crate::names::RoomName;
use crate::pair::UserId;

#[derive(Default)]
struct Room {
    messages: Vec<StoredMessage>,
    by_client_id: HashMap<(String, String), usize>,
    read: HashMap<UserId, Seq>,
}

/// A [`MessageStore`] that keeps everything in memory; cloning shares the data.
///
/// It can be switched "down" to exercise `store_unavailable` paths in consumer tests.
#[derive(Clone, Default)]
pub struct MemoryStore {
    rooms: Arc<Mutex<HashMap<RoomName, Room>>>,
    down: Arc<std::sync::atomic::AtomicBool>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every call fail with [`StoreError::Unavailable`] (`true`) or work again (`false`).
    pub fn set_unavailable(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            Err(StoreError::Unavailable(
                "the memory store is switched off".into(),
            ))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl MessageStore for MemoryStore {
    async fn append(&self, msg: NewMessage) -> Result<Appended, StoreError> {
        self.check()?;
        let mut rooms = self.rooms.lock();
        let room = rooms.entry(msg.room.clone()).or_default();
        let key = msg
            .client_id
            .as_ref()
            .map(|c| (msg.sender.idempotency_key(), c.clone()));
        if let Some(key) = &key {
            if let Some(&i) = room.by_client_id.get(key) {
                return Ok(Appended::duplicate(room.messages[i].clone()));
            }
        }
        let stored = StoredMessage {
            room: msg.room,
            seq: room.messages.len() as Seq + 1,
            sender: msg.sender,
            body: msg.body,
            client_id: msg.client_id,
            sent_at: Timestamp::now(),
            attachment: msg.attachment,
        };
        if let Some(key) = key {
            room.by_client_id.insert(key, room.messages.len());
        }
        room.messages.push(stored.clone());
        Ok(Appended::stored(stored))
    }

    async fn history(
        &self,
        room: &RoomName,
        query: HistoryQuery,
    ) -> Result<HistoryPage, StoreError> {
        self.check()?;
        let rooms = self.rooms.lock();
        let Some(r) = rooms.get(room) else {
            return Ok(HistoryPage::default());
        };
        let limit = query.capped_limit() as usize;
        // seq n lives at index n - 1.
        let lo = query.after.map_or(0, |a| a as usize).min(r.messages.len());
        let hi = query
            .before
            .map_or(r.messages.len(), |b| (b.saturating_sub(1)) as usize)
            .min(r.messages.len())
            .max(lo);
        let (start, end, has_more) = if query.after.is_some() {
            let end = (lo + limit).min(hi);
            (lo, end, end < hi)
        } else {
            let start = hi.saturating_sub(limit).max(lo);
            (start, hi, start > lo)
        };
        Ok(HistoryPage {
            messages: r.messages[start..end].to_vec(),
            has_more,
        })
    }

    async fn last_seq(&self, room: &RoomName) -> Result<Seq, StoreError> {
        self.check()?;
        Ok(self
            .rooms
            .lock()
            .get(room)
            .map_or(0, |r| r.messages.len() as Seq))
    }

    async fn mark_read(&self, room: &RoomName, user: UserId, seq: Seq) -> Result<(), StoreError> {
        self.check()?;
        let mut rooms = self.rooms.lock();
        let r = rooms.entry(room.clone()).or_default();
        let e = r.read.entry(user).or_insert(0);
        *e = (*e).max(seq);
        Ok(())
    }

    async fn last_read(&self, room: &RoomName, user: UserId) -> Result<Seq, StoreError> {
        self.check()?;
        Ok(self
            .rooms
            .lock()
            .get(room)
            .and_then(|r| r.read.get(&user).copied())
            .unwrap_or(0))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.check()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Sender;

    fn msg(room: &str, body: &str, client_id: Option<&str>) -> NewMessage {
        NewMessage {
            attachment: None,
            room: RoomName::parse(room).unwrap(),
            sender: Sender::guest("ana"),
            body: body.into(),
            client_id: client_id.map(Into::into),
        }
    }

    #[tokio::test]
    async fn seqs_are_per_room_and_idempotent() {
        let s = MemoryStore::new();
        assert_eq!(
            s.append(msg("a", "1", Some("x")))
                .await
                .unwrap()
                .message
                .seq,
            1
        );
        assert_eq!(s.append(msg("b", "1", None)).await.unwrap().message.seq, 1);
        assert_eq!(s.append(msg("a", "2", None)).await.unwrap().message.seq, 2);
        let again = s.append(msg("a", "other", Some("x"))).await.unwrap();
        assert!(again.duplicate);
        assert_eq!((again.message.seq, again.message.body.as_str()), (1, "1"));
        assert_eq!(s.last_seq(&RoomName::parse("a").unwrap()).await.unwrap(), 2);
    }

    #[tokio::test]
    async fn history_pages() {
        let s = MemoryStore::new();
        for i in 1..=10 {
            s.append(msg("a", &i.to_string(), None)).await.unwrap();
        }
        let room = RoomName::parse("a").unwrap();
        let seqs = |p: HistoryPage| p.messages.iter().map(|m| m.seq).collect::<Vec<_>>();
        let p = s.history(&room, HistoryQuery::latest(3)).await.unwrap();
        assert!(p.has_more);
        assert_eq!(seqs(p), vec![8, 9, 10]);
        let p = s.history(&room, HistoryQuery::before(8, 3)).await.unwrap();
        assert_eq!(seqs(p), vec![5, 6, 7]);
        let p = s.history(&room, HistoryQuery::before(3, 5)).await.unwrap();
        assert!(!p.has_more);
        assert_eq!(seqs(p), vec![1, 2]);
        let p = s.history(&room, HistoryQuery::after(7, 2)).await.unwrap();
        assert!(p.has_more);
        assert_eq!(seqs(p), vec![8, 9]);
        let p = s.history(&room, HistoryQuery::after(8, 5)).await.unwrap();
        assert!(!p.has_more);
        assert_eq!(seqs(p), vec![9, 10]);
    }

    #[tokio::test]
    async fn read_state_never_moves_back_and_down_store_errors() {
        let s = MemoryStore::new();
        let room = RoomName::parse("a").unwrap();
        s.mark_read(&room, 3, 5).await.unwrap();
        s.mark_read(&room, 3, 2).await.unwrap();
        assert_eq!(s.last_read(&room, 3).await.unwrap(), 5);
        s.set_unavailable(true);
        assert!(matches!(s.ping().await, Err(StoreError::Unavailable(_))));
        assert!(s.append(msg("a", "x", None)).await.is_err());
    }
}
