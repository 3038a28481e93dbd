//! Group commit: one connection commits every append that is waiting in one transaction
//! (what a commit does is in [`super::writer`]).
//!
//! Why one writer: SQLite allows one writer at a time anyway, and funnelling appends through
//! one owner turns N commits into one per batch while making seq assignment trivially
//! gap-free and in commit order.
//!
//! Why no writer thread: the caller that finds the connection free commits what is waiting
//! itself, on its own task (a commit in WAL mode without fsync takes tens of microseconds).
//! A writer thread has to wake the caller afterwards, and a wake from outside the runtime
//! queues behind every task already waiting: in a busy room that is behind every member's
//! delivery, tens of milliseconds per message, and the room's throughput drops with it.
//! Callers that find the connection busy queue their op for the committing caller and wait
//! for its answer. Waiting for another process's write lock is never done on the runtime:
//! the fast path does not wait at all (`busy_timeout` 0) and hands the batch to a blocking
//! thread that waits with the configured timeout.
//!
//! Why commits are paced under load (`commit_interval`, 1 ms by default): a commit costs
//! about 100 µs of CPU whatever it holds (each touches a few pages, written whole to the
//! WAL), and at a few thousand sends a second spread over a few connections each would
//! otherwise go alone: a third of a busy server's CPU went to commits of one message. When
//! the previous commit started less than `commit_interval` ago, an op waits for that
//! interval to pass, and what gathered meanwhile goes in one commit. At a quieter rate
//! nothing waits. What it was worth is on [`crate::StoreConfig::commit_interval`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use parking_lot::Mutex;

use super::writer::{Attempt, process, try_commit};
use crate::batch::{WriteOp, answer, split};

/// Batches one caller commits in a row, at most, before it hands the rest to a blocking
/// thread: a caller is also a connection whose own frames wait meanwhile.
const MAX_ROUNDS: usize = 4;

/// The write side of the store: the write connection and the ops waiting for it.
pub(crate) struct Writer {
    conn: Mutex<SqliteConnection>,
    pending: Mutex<VecDeque<WriteOp>>,
    max_batch: usize,
    busy_timeout: Duration,
    /// Shortest time between the starts of two commits while ops keep coming (zero: none).
    commit_interval: Duration,
    /// When the latest commit started.
    last_commit: Mutex<Option<tokio::time::Instant>>,
    /// A paced commit is scheduled: ops queued now go in it.
    paced: AtomicBool,
    /// Commits run so far, for the checkpoint thread.
    written: Arc<AtomicU64>,
    #[cfg(test)]
    handoffs: std::sync::atomic::AtomicUsize,
    #[cfg(test)]
    commits: std::sync::atomic::AtomicUsize,
}

impl Writer {
    /// A writer on `conn`, which must be the store's only writing connection for messages.
    pub(crate) fn new(
        mut conn: SqliteConnection,
        max_batch: usize,
        busy_timeout: Duration,
        commit_interval: Duration,
    ) -> QueryResult<Self> {
        set_busy_timeout(&mut conn, Duration::ZERO)?;
        super::checkpoint::set_writer_threshold(&mut conn)?;
        Ok(Self {
            conn: Mutex::new(conn),
            pending: Mutex::new(VecDeque::new()),
            max_batch: max_batch.max(1),
            busy_timeout,
            commit_interval,
            last_commit: Mutex::new(None),
            paced: AtomicBool::new(false),
            written: Arc::default(),
            #[cfg(test)]
            handoffs: std::sync::atomic::AtomicUsize::new(0),
            #[cfg(test)]
            commits: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// The count of commits run so far, shared with whoever wants to follow it.
    pub(crate) fn commits(&self) -> Arc<AtomicU64> {
        self.written.clone()
    }

    /// Queues `op` and, unless another caller is committing (which then commits `op` too),
    /// commits everything waiting. Never waits; the answer arrives on the op's reply channel.
    pub(crate) fn submit(self: &Arc<Self>, op: WriteOp) {
        self.pending.lock().push_back(op);
        self.commit_soon();
    }

    /// Queues `ops` together, in order, then commits as [`Writer::submit`] does: a burst
    /// goes in one commit (up to the batch size) instead of one commit each.
    pub(crate) fn submit_many(self: &Arc<Self>, ops: impl IntoIterator<Item = WriteOp>) {
        self.pending.lock().extend(ops);
        self.commit_soon();
    }

    /// Commits what is waiting now, or, when the latest commit started less than
    /// `commit_interval` ago, once the interval has passed (a task waits for it, so an op
    /// is never left behind by a caller that went away).
    fn commit_soon(self: &Arc<Self>) {
        let last = *self.last_commit.lock();
        let due = match last {
            Some(last) if !self.commit_interval.is_zero() => last + self.commit_interval,
            _ => return self.commit_waiting(),
        };
        if due <= tokio::time::Instant::now() {
            return self.commit_waiting();
        }
        if self.paced.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(due).await;
            // Cleared before committing: an op queued after the commit took its batch
            // schedules a commit of its own.
            me.paced.store(false, Ordering::Release);
            me.commit_waiting();
        });
    }

    fn take_batch(&self) -> Vec<WriteOp> {
        let mut pending = self.pending.lock();
        let n = pending.len().min(self.max_batch);
        pending.drain(..n).collect()
    }

    /// Puts a batch back at the front, in its order.
    fn put_back(&self, batch: Vec<WriteOp>) {
        let mut pending = self.pending.lock();
        for op in batch.into_iter().rev() {
            pending.push_front(op);
        }
    }

    fn commit_waiting(self: &Arc<Self>) {
        let mut rounds = 0;
        loop {
            // Whoever holds the connection re-checks `pending` after releasing it, so an op
            // queued meanwhile is never stranded.
            let Some(mut conn) = self.conn.try_lock() else {
                return;
            };
            loop {
                if rounds == MAX_ROUNDS {
                    drop(conn);
                    self.hand_off();
                    return;
                }
                let batch = self.take_batch();
                if batch.is_empty() {
                    break;
                }
                rounds += 1;
                *self.last_commit.lock() = Some(tokio::time::Instant::now());
                #[cfg(test)]
                self.commits.fetch_add(1, Ordering::SeqCst);
                match try_commit(&mut conn, batch) {
                    Attempt::Ran(replies, result) => {
                        self.written.fetch_add(1, Ordering::Release);
                        answer(replies, result);
                    }
                    Attempt::Busy(batch, _) => {
                        self.put_back(batch);
                        drop(conn);
                        self.hand_off();
                        return;
                    }
                }
            }
            drop(conn);
            if self.pending.lock().is_empty() {
                return;
            }
        }
    }

    /// Commits what is waiting on a blocking thread, which may wait for the write lock.
    fn hand_off(self: &Arc<Self>) {
        #[cfg(test)]
        self.handoffs
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.commit_blocking());
    }

    fn commit_blocking(&self) {
        loop {
            let mut conn = self.conn.lock();
            let waits = set_busy_timeout(&mut conn, self.busy_timeout);
            loop {
                let batch = self.take_batch();
                if batch.is_empty() {
                    break;
                }
                match &waits {
                    Ok(()) => {
                        process(&mut conn, batch);
                        self.written.fetch_add(1, Ordering::Release);
                    }
                    Err(e) => {
                        let replies = batch.into_iter().map(|op| split(op).1).collect();
                        answer(replies, Err(format!("could not set the busy timeout: {e}")));
                    }
                }
            }
            if let Err(e) = set_busy_timeout(&mut conn, Duration::ZERO) {
                tracing::warn!(error = %e, "could not reset the writer's busy timeout");
            }
            drop(conn);
            if self.pending.lock().is_empty() {
                return;
            }
        }
    }
}

fn set_busy_timeout(conn: &mut SqliteConnection, timeout: Duration) -> QueryResult<()> {
    conn.batch_execute(&format!("PRAGMA busy_timeout = {}", timeout.as_millis()))
}

#[cfg(test)]
mod tests {
    use chat_core::Sender;

    use super::*;
    use crate::StoreConfig;
    use crate::sqlite::open_writer;
    use crate::sqlite::writer::tests::op;

    #[test]
    fn a_write_lock_held_elsewhere_is_waited_for_off_the_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chat.db");
        let config = StoreConfig::new("unused");
        let conn = open_writer(&path, &config).unwrap();
        let writer =
            Arc::new(Writer::new(conn, 64, Duration::from_secs(30), Duration::ZERO).unwrap());
        // Another connection (a login on the read pool, another process) holds the lock
        // until told to let go, or for 5 s at most.
        let (held_tx, held) = std::sync::mpsc::channel();
        let (release, release_rx) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            let mut other = crate::sqlite::connect(&path, &StoreConfig::new("unused")).unwrap();
            other.batch_execute("BEGIN IMMEDIATE").unwrap();
            held_tx.send(()).unwrap();
            let told = release_rx.recv_timeout(Duration::from_secs(5)).is_ok();
            other.batch_execute("COMMIT").unwrap();
            told
        });
        held.recv().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (first, rx) = op(Sender::guest("ana"), "waits for the lock", Some("c-1"));
            // Returns at once: waiting for the lock here would stall every task of this
            // runtime thread (until the holder gives up).
            writer.submit(first);
            assert_eq!(
                writer.handoffs.load(std::sync::atomic::Ordering::SeqCst),
                1,
                "the batch went to a blocking thread"
            );
            // Queued behind it, and committed by the same blocking thread, in order.
            let (second, rx2) = op(Sender::guest("bruno"), "queued behind", None);
            writer.submit(second);
            release.send(()).unwrap();
            let a = rx.await.unwrap().unwrap();
            let b = rx2.await.unwrap().unwrap();
            assert_eq!((a.message.seq, b.message.seq), (1, 2));
        });
        assert!(
            holder.join().unwrap(),
            "submit returned only after the holder gave up the lock"
        );
    }

    #[test]
    fn a_long_backlog_is_finished_on_a_blocking_thread_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open_writer(&dir.path().join("chat.db"), &StoreConfig::new("unused")).unwrap();
        // Two ops per batch: ten waiting ops are more than one caller commits (MAX_ROUNDS).
        let writer =
            Arc::new(Writer::new(conn, 2, Duration::from_secs(5), Duration::ZERO).unwrap());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let mut answers = Vec::new();
            for i in 0..10 {
                let (op, rx) = op(Sender::guest("ana"), &format!("m{i}"), None);
                writer.pending.lock().push_back(op);
                answers.push(rx);
            }
            writer.commit_waiting();
            assert_eq!(
                writer.handoffs.load(std::sync::atomic::Ordering::SeqCst),
                1,
                "the caller committed {MAX_ROUNDS} batches and handed off the rest"
            );
            let mut seqs = Vec::new();
            for rx in answers {
                seqs.push(rx.await.unwrap().unwrap().message.seq);
            }
            assert_eq!(seqs, (1..=10).collect::<Vec<u64>>());
        });
    }

    fn paced_writer(dir: &tempfile::TempDir, interval: Duration) -> Arc<Writer> {
        let conn = open_writer(&dir.path().join("chat.db"), &StoreConfig::new("unused")).unwrap();
        Arc::new(Writer::new(conn, 64, Duration::from_secs(5), interval).unwrap())
    }

    #[tokio::test(start_paused = true)]
    async fn sends_soon_after_a_commit_wait_for_the_interval_and_share_one_commit() {
        let dir = tempfile::tempdir().unwrap();
        let writer = paced_writer(&dir, Duration::from_millis(50));
        let (first, rx) = op(Sender::guest("ana"), "m1", None);
        writer.submit(first);
        // Nothing committed lately: committed at once, inside submit.
        assert_eq!(writer.commits.load(Ordering::SeqCst), 1);
        assert_eq!(rx.await.unwrap().unwrap().message.seq, 1);
        let (second, rx2) = op(Sender::guest("bruno"), "m2", None);
        let (third, rx3) = op(Sender::guest("carla"), "m3", None);
        writer.submit(second);
        writer.submit(third);
        assert_eq!(
            writer.commits.load(Ordering::SeqCst),
            1,
            "within the interval, nothing is committed yet"
        );
        let started = tokio::time::Instant::now();
        let (b, c) = (rx2.await.unwrap().unwrap(), rx3.await.unwrap().unwrap());
        assert_eq!((b.message.seq, c.message.seq), (2, 3));
        assert_eq!(
            writer.commits.load(Ordering::SeqCst),
            2,
            "one commit for both"
        );
        assert!(started.elapsed() <= Duration::from_millis(50));
        // Each answer tells what else the commit stored, so one sender publishes it all.
        let shared = b.committed.expect("the commit is shared");
        let bodies: Vec<_> = shared.messages().iter().map(|m| m.body.as_str()).collect();
        assert_eq!(bodies, ["m2", "m3"]);
        assert_eq!(c.committed.as_deref(), Some(&*shared));
        assert!(shared.claim() && !shared.claim(), "claimed exactly once");
    }

    #[tokio::test(start_paused = true)]
    async fn a_send_after_a_quiet_interval_commits_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let writer = paced_writer(&dir, Duration::from_millis(50));
        let (first, rx) = op(Sender::guest("ana"), "m1", None);
        writer.submit(first);
        rx.await.unwrap().unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
        let (second, mut rx2) = op(Sender::guest("bruno"), "m2", None);
        writer.submit(second);
        assert_eq!(writer.commits.load(Ordering::SeqCst), 2);
        assert_eq!(rx2.try_recv().unwrap().unwrap().message.seq, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn without_an_interval_every_send_commits_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let writer = paced_writer(&dir, Duration::ZERO);
        for i in 1..=3 {
            let (next, mut rx) = op(Sender::guest("ana"), &format!("m{i}"), None);
            writer.submit(next);
            let appended = rx.try_recv().unwrap().unwrap();
            assert_eq!(appended.message.seq, i);
            assert_eq!(appended.committed, None, "a commit of one is not shared");
        }
        assert_eq!(writer.commits.load(Ordering::SeqCst), 3);
    }
}
