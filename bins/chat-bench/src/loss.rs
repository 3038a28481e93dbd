//! Where deliveries went missing. Every message carries its sender's number for it (0, 1, …),
//! so each receiver knows, per sender of its room, the next number it expects: a number
//! beyond it skips messages (received later, or never), one below it came late (or twice).
//! At the end, what a sender sent beyond what a receiver saw is the missing tail. The totals
//! alone (expected − delivered) say how much; this says where: at a sender's start, in the
//! middle, or at the end of the run.

use serde::Serialize;

/// Examples kept per receiver and per run.
const EXAMPLES: usize = 8;

/// Which senders each connection's messages are counted against: for every connection, its
/// index among the senders of its room (`u32::MAX` if it does not send).
#[derive(Debug, Default)]
pub struct Slots {
    /// Per connection: its slot in its room, or `u32::MAX`.
    pub slot_of: Vec<u32>,
    /// Per room: the connection index of each sender, by slot.
    pub senders_of: Vec<Vec<usize>>,
}

impl Slots {
    /// Slots for `n` connections, where `sender(i)` gives the room of connection `i` when it
    /// sends; `rooms`: how many rooms.
    pub fn new(n: usize, rooms: usize, sender: impl Fn(usize) -> Option<usize>) -> Self {
        let mut slots = Slots {
            slot_of: vec![u32::MAX; n],
            senders_of: vec![Vec::new(); rooms],
        };
        for i in 0..n {
            if let Some(room) = sender(i) {
                let of_room = &mut slots.senders_of[room];
                slots.slot_of[i] = u32::try_from(of_room.len()).unwrap_or(u32::MAX);
                of_room.push(i);
            }
        }
        slots
    }

    /// Records in `seen` (a receiver in `room`) message number `n` from `sender`.
    pub fn record(&self, seen: &mut Seen, room: usize, sender: usize, n: u64) {
        let slot = self.slot_of.get(sender).copied().unwrap_or(u32::MAX);
        let of_room = self.senders_of.get(room).map_or(0, Vec::len);
        seen.record(sender, slot, of_room, n);
    }
}

/// What one receiver saw from the senders of its room.
#[derive(Debug, Default)]
pub struct Seen {
    /// Per sender slot: the next number expected.
    next: Vec<u64>,
    /// Numbers skipped over (received later, or never).
    skipped: u64,
    /// Messages below the next expected number: late, or repeated.
    behind: u64,
    /// The first skips: (sender, first number skipped, how many).
    examples: Vec<(usize, u64, u64)>,
}

impl Seen {
    /// Records message number `n` from `sender`, whose slot in the room is `slot` of `slots`.
    fn record(&mut self, sender: usize, slot: u32, slots: usize, n: u64) {
        let Ok(slot) = usize::try_from(slot) else {
            return;
        };
        if slot >= slots {
            return;
        }
        if self.next.len() < slots {
            self.next.resize(slots, 0);
        }
        let next = &mut self.next[slot];
        if n > *next {
            self.skipped += n - *next;
            if self.examples.len() < EXAMPLES {
                self.examples.push((sender, *next, n - *next));
            }
        } else if n < *next {
            self.behind += 1;
            return;
        }
        *next = n + 1;
    }
}

/// The losses of a run, located.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LossDetail {
    /// Numbers a receiver skipped (it saw later ones from the same sender).
    pub skipped: u64,
    /// Messages that came after a later one of the same sender (late or repeated).
    pub late: u64,
    /// Never received at the end of a sender's stream: sent after the last one seen.
    pub tail: u64,
    /// Receivers that skipped or missed something.
    pub receivers: usize,
    /// A few of them: `receiver R, sender S: #first (+count)`.
    pub examples: Vec<String>,
}

impl LossDetail {
    /// Adds the view of receiver `me` in `room`; `sent[i]` is what connection `i` sent.
    pub fn add(&mut self, me: usize, seen: &Seen, slots: &Slots, room: usize, sent: &[u64]) {
        let senders = slots.senders_of.get(room).map_or(&[][..], Vec::as_slice);
        let mut missed = seen.skipped > seen.behind;
        self.skipped += seen.skipped;
        self.late += seen.behind;
        for (slot, &sender) in senders.iter().enumerate() {
            let got = seen.next.get(slot).copied().unwrap_or(0);
            let total = sent.get(sender).copied().unwrap_or(0);
            if total > got {
                missed = true;
                self.tail += total - got;
                if self.examples.len() < EXAMPLES {
                    self.examples.push(format!(
                        "receiver {me}, sender {sender}: tail #{got}.. (+{})",
                        total - got
                    ));
                }
            }
        }
        for &(sender, first, count) in &seen.examples {
            if self.examples.len() < EXAMPLES {
                self.examples.push(format!(
                    "receiver {me}, sender {sender}: skipped #{first} (+{count})"
                ));
            }
        }
        self.receivers += usize::from(missed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_late_messages_and_tails_are_told_apart() {
        let slots = Slots::new(4, 1, |i| (i < 2).then_some(0));
        assert_eq!(slots.slot_of, vec![0, 1, u32::MAX, u32::MAX]);
        let mut seen = Seen::default();
        // Sender 0: 0, 2, 1 (1 late), 3. Sender 1: 0 only, of 3 sent.
        for n in [0, 2, 1, 3] {
            slots.record(&mut seen, 0, 0, n);
        }
        slots.record(&mut seen, 0, 1, 0);
        // Not a sender: ignored.
        slots.record(&mut seen, 0, 2, 5);
        let mut detail = LossDetail::default();
        detail.add(3, &seen, &slots, 0, &[4, 3, 0, 0]);
        assert_eq!((detail.skipped, detail.late, detail.tail), (1, 1, 2));
        assert_eq!(detail.receivers, 1);
        assert_eq!(detail.examples.len(), 2, "{:?}", detail.examples);
        // A receiver that saw everything counts for nothing.
        let mut all = Seen::default();
        for n in 0..4 {
            slots.record(&mut all, 0, 0, n);
        }
        let mut clean = LossDetail::default();
        clean.add(1, &all, &Slots::new(1, 1, |_| Some(0)), 0, &[4]);
        assert_eq!(clean.receivers, 0);
        assert!(clean.examples.is_empty());
    }
}
