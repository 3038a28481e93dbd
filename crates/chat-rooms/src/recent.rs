//! [`RecentMessages`]: the messages this process published lately, per room, so a socket that
//! fell behind catches up from memory instead of from the store.
//!
//! Why: a busy room under a spike is where sockets fall behind. A socket whose layer mailbox
//! overflowed reads everything after its delivered seq back from the store, and renders each
//! message again, on its own. At 1 room × 100 members that cost about three times a live
//! delivery, so one hiccup at the edge of capacity turned into more load than the spike
//! itself: throughput halved and p99 went to seconds (see `docs/benchmarks.md`, 2026-12-02,
//! later). The messages are still in this process, already encoded, for a few seconds after
//! they were published: a catch-up that finds every one of them here sends those instead.
//!
//! Never a source of truth. A catch-up first asks the store for the room's last seq (one
//! indexed read) and uses this copy only when it holds every seq up to that one; anything
//! else (a message another node published, one evicted, a node restarted) reads the store as
//! before. So it is safe with any layer and any number of nodes; it only helps for what this
//! node published itself.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chat_core::{LayerMessage, RoomName, Seq};

/// How much [`RecentMessages`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecentConfig {
    /// Messages kept per room, the newest. A socket's layer mailbox holds 1,024 by default,
    /// and a socket that overflowed misses what came while it drained them; past capacity a
    /// socket can be a second or more behind, which in a room taking 10,000 messages a
    /// second is as many. The memory is bounded by the node's publish rate × `keep_for`
    /// (about 30 MB at 20,000 messages a second of 300 bytes).
    pub per_room: usize,
    /// Messages are kept this long after they were published. A socket that falls further
    /// behind than this reads the store.
    pub keep_for: Duration,
}

impl Default for RecentConfig {
    fn default() -> Self {
        Self {
            per_room: 16_384,
            keep_for: Duration::from_secs(5),
        }
    }
}

/// Every this many publications, rooms whose messages all expired are dropped, so a room that
/// went quiet does not hold its last messages for good.
const PRUNE_EVERY: u64 = 1_024;

/// The messages this process published in the last few seconds, per room, as the layer
/// carried them. Shared by every socket of the process (see the module docs for why and
/// when it is used).
#[derive(Debug, Default)]
pub struct RecentMessages {
    config: RecentConfig,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Per room, in seq order.
    rooms: HashMap<RoomName, VecDeque<Entry>>,
    recorded: u64,
}

#[derive(Debug)]
struct Entry {
    seq: Seq,
    at: Instant,
    msg: LayerMessage,
}

impl RecentMessages {
    /// An empty copy keeping what `config` says.
    pub fn new(config: RecentConfig) -> Self {
        Self {
            config,
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Nothing here can leave the map half-updated: a panic elsewhere does not spoil it.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `msg`, the `chat.message` of `room` with `seq`, as it is about to be published.
    pub fn record(&self, room: &RoomName, seq: Seq, msg: &LayerMessage) {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.recorded += 1;
        if inner.recorded % PRUNE_EVERY == 0 {
            let keep_for = self.config.keep_for;
            inner.rooms.retain(|_, entries| {
                expire(entries, now, keep_for);
                !entries.is_empty()
            });
        }
        let entries = match inner.rooms.get_mut(room) {
            Some(entries) => entries,
            None => inner.rooms.entry(room.clone()).or_default(),
        };
        expire(entries, now, self.config.keep_for);
        // Commits are published by their senders' tasks, so a later seq can come first: find
        // its place from the back, where it almost always is.
        let at = entries
            .iter()
            .rposition(|e| e.seq <= seq)
            .map_or(0, |i| i + 1);
        if at > 0 && entries[at - 1].seq == seq {
            return; // a retry published again
        }
        entries.insert(
            at,
            Entry {
                seq,
                at: now,
                msg: msg.clone(),
            },
        );
        while entries.len() > self.config.per_room {
            entries.pop_front();
        }
    }

    /// The messages of `room` from seq `after + 1` on, in order and with no seq missing,
    /// up to `through` at most: as far as this copy holds every one (empty when it does not
    /// hold `after + 1`).
    pub fn run(&self, room: &RoomName, after: Seq, through: Seq) -> Vec<LayerMessage> {
        let now = Instant::now();
        let inner = self.lock();
        let Some(entries) = inner.rooms.get(room) else {
            return Vec::new();
        };
        let start = entries.partition_point(|e| e.seq <= after);
        entries
            .range(start..)
            .zip(after + 1..=through)
            .take_while(|(e, seq)| e.seq == *seq && now.duration_since(e.at) < self.config.keep_for)
            .map(|(e, _)| e.msg.clone())
            .collect()
    }

    /// How many messages are kept, over all rooms.
    pub fn len(&self) -> usize {
        self.lock().rooms.values().map(VecDeque::len).sum()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn expire(entries: &mut VecDeque<Entry>, now: Instant, keep_for: Duration) {
    // Entries are in seq order, which is publication order but for a few overtakes: an
    // expired one behind a live one waits for the next call.
    while entries
        .front()
        .is_some_and(|e| now.duration_since(e.at) >= keep_for)
    {
        entries.pop_front();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn room(name: &str) -> RoomName {
        RoomName::parse(name).unwrap()
    }

    fn msg(seq: Seq) -> LayerMessage {
        LayerMessage::new(
            crate::CHAT_MESSAGE,
            serde_json::json!({"type": "message", "room": "lobby", "seq": seq}),
        )
    }

    fn seqs(msgs: &[LayerMessage]) -> Vec<Seq> {
        msgs.iter()
            .map(|m| {
                m.decode::<serde_json::Value>().unwrap()["seq"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn a_complete_run_comes_back_in_seq_order_even_when_published_out_of_order() {
        let recent = RecentMessages::default();
        let lobby = room("lobby");
        for seq in [1, 2, 4, 3, 5] {
            recent.record(&lobby, seq, &msg(seq));
        }
        recent.record(&lobby, 4, &msg(4)); // a retry published again
        assert_eq!(seqs(&recent.run(&lobby, 1, 5)), [2, 3, 4, 5]);
        assert_eq!(seqs(&recent.run(&lobby, 1, 3)), [2, 3]);
        assert_eq!(recent.run(&lobby, 5, 5), []);
        assert_eq!(recent.len(), 5);
    }

    #[test]
    fn a_run_stops_at_the_first_missing_seq() {
        let recent = RecentMessages::default();
        let lobby = room("lobby");
        for seq in [3, 4, 6] {
            recent.record(&lobby, seq, &msg(seq));
        }
        assert_eq!(recent.run(&lobby, 1, 4), [], "seq 2 was never here");
        assert_eq!(seqs(&recent.run(&lobby, 2, 6)), [3, 4], "seq 5 is missing");
        assert_eq!(recent.run(&lobby, 4, 7), [], "seq 5 is missing");
        assert_eq!(recent.run(&room("other"), 2, 4), []);
    }

    #[test]
    fn only_the_newest_per_room_are_kept() {
        let recent = RecentMessages::new(RecentConfig {
            per_room: 3,
            ..RecentConfig::default()
        });
        let lobby = room("lobby");
        for seq in 1..=5 {
            recent.record(&lobby, seq, &msg(seq));
        }
        assert_eq!(recent.run(&lobby, 1, 5), [], "seq 2 was evicted");
        assert_eq!(seqs(&recent.run(&lobby, 2, 5)), [3, 4, 5]);
    }

    #[test]
    fn messages_older_than_keep_for_are_refused_and_dropped() {
        let recent = RecentMessages::new(RecentConfig {
            keep_for: Duration::ZERO,
            ..RecentConfig::default()
        });
        let lobby = room("lobby");
        recent.record(&lobby, 1, &msg(1));
        assert_eq!(recent.run(&lobby, 0, 1), []);
        recent.record(&lobby, 2, &msg(2));
        assert_eq!(recent.len(), 1, "seq 1 expired when seq 2 came");
    }

    #[test]
    fn rooms_gone_quiet_are_pruned() {
        let recent = RecentMessages::new(RecentConfig {
            keep_for: Duration::ZERO,
            ..RecentConfig::default()
        });
        recent.record(&room("quiet"), 1, &msg(1));
        let busy = room("busy");
        for seq in 1..PRUNE_EVERY {
            recent.record(&busy, seq, &msg(seq));
        }
        assert_eq!(recent.lock().rooms.len(), 1, "only the busy room is left");
    }
}
