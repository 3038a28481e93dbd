//! WAL checkpoints mostly off the commit path, on a thread of their own.
//!
//! Why: SQLite copies the WAL back into the database file (a checkpoint) from whichever
//! connection commits past `wal_autocheckpoint` pages (1,000, about 4 MiB), and that
//! checkpoint first fsyncs everything written to the WAL since the last one, then the
//! database file. Our commits run on the runtime's own threads (see [`super::group_commit`]),
//! so at a few thousand sends a second several times a second one worker stood still for
//! megabytes of writeback, and every member of every room on it waited: about 10 ms of the
//! p99 at 2,000 messages a second into a room of 100 (docs/benchmarks.md).
//!
//! This thread runs a `PASSIVE` checkpoint every [`INTERVAL`] while the WAL is being written
//! (at least [`MIN_COMMITS`] commits since the last; it looks less and less often, up to a
//! second apart, while the writes are fewer), on a connection of its own:
//! it waits for nobody and blocks nobody, and it does the bulk of the writeback while the
//! writer goes on committing. The writer keeps SQLite's own checkpoint, which then finds
//! most of the WAL already synced and copied and has only the last few milliseconds'
//! pages left.
//!
//! Why the writer keeps it: SQLite rewinds the WAL only when a write begins with all of it
//! copied, and under steady writes a checkpoint on another connection never quite catches
//! the WAL's end (the writer commits while it runs), so the file would grow for as long as
//! the writes go on. The writer's checkpoint right after its own commit does catch it.
//! (Turning the writer's off and emptying the WAL from here with `TRUNCATE` past a limit
//! was tried: every truncation held commits for long enough to cost more p99 than it saved.)
//!
//! Why the writer's threshold is [`WRITER_THRESHOLD`] pages rather than SQLite's 1,000: the
//! writer's checkpoint runs inside a commit, on a runtime worker, and even with little left
//! to copy it fsyncs the WAL and the database file, so the worker sleeps on the disk
//! (1–10 ms each here) with every connection it runs. Once the WAL is past the threshold,
//! every commit checkpoints until one catches the end, and at 8,000 messages a second into a
//! room of 100 that was 45 fsyncs on the workers in 8 s; at 10,000 pages it was one. The
//! price is a WAL file of up to about 40 MiB, which SQLite keeps (rewound, not shrunk).
//!
//! Why the thread waits for [`MIN_COMMITS`] commits before it checkpoints: once it has
//! copied the whole WAL, the next commit rewinds it, and a rewound WAL's new header is
//! fsynced before any frame goes over the old ones (SQLite does this even with `synchronous
//! = NORMAL`). Checkpointing every [`INTERVAL`] at a quiet rate made nearly every commit a
//! rewind, with an fsync inside the commit: 1–10 ms on an idle disk, and 20–200 ms per
//! message at 10 msg/s while another process's writes filled the disk queue. Waiting for
//! some commits makes that one commit in [`MIN_COMMITS`], and leaves the WAL to grow only a
//! few hundred pages between checkpoints.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::Integer;

use crate::{OpenError, StoreConfig};

/// How often the WAL is copied back into the database file while it is being written.
pub(crate) const INTERVAL: Duration = Duration::from_millis(50);

/// Commits since the last checkpoint, at least, before the next (see the module docs).
pub(crate) const MIN_COMMITS: u64 = 100;

/// Whether to checkpoint now: when asked to, or when enough was committed since the last.
fn due(nudged: bool, commits_since: u64) -> bool {
    nudged || commits_since >= MIN_COMMITS
}

/// WAL pages past which the writer checkpoints after its commit (SQLite's default is 1,000).
pub(crate) const WRITER_THRESHOLD: u32 = 10_000;

/// Sets the writer connection's own checkpoint threshold (see the module docs).
pub(crate) fn set_writer_threshold(conn: &mut SqliteConnection) -> QueryResult<()> {
    conn.batch_execute(&format!("PRAGMA wal_autocheckpoint = {WRITER_THRESHOLD}"))
}

/// The longest wait between checkpoints while the WAL stays as it is: an idle server wakes
/// this thread about once a second instead of twenty times.
const IDLE_INTERVAL: Duration = Duration::from_secs(1);

/// The wait before the next checkpoint: `interval` as soon as the WAL changed, doubling
/// from `wait` up to [`IDLE_INTERVAL`] while it does not.
fn next_wait(wait: Duration, interval: Duration, changed: bool) -> Duration {
    if changed {
        interval
    } else {
        (wait * 2).min(IDLE_INTERVAL.max(interval))
    }
}

/// What one checkpoint found and did, as SQLite reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, QueryableByName)]
pub(crate) struct Outcome {
    /// 1 when the checkpoint could not run (another checkpoint was running).
    #[diesel(sql_type = Integer)]
    pub(crate) busy: i32,
    /// Pages in the WAL.
    #[diesel(sql_type = Integer)]
    pub(crate) log: i32,
    /// Pages of it now copied into the database file.
    #[diesel(sql_type = Integer)]
    pub(crate) checkpointed: i32,
}

/// Copies what it can of the WAL into the database file, without waiting for anyone.
pub(crate) fn checkpoint(conn: &mut SqliteConnection) -> QueryResult<Outcome> {
    diesel::sql_query("PRAGMA wal_checkpoint(PASSIVE)").get_result(conn)
}

/// A request to checkpoint now; the outcome goes back on the channel when there is one.
type Nudge = Option<SyncSender<QueryResult<Outcome>>>;

/// The checkpoint thread's handle. The thread ends once the handle is dropped.
pub(crate) struct Checkpointer {
    /// Held for its drop, which ends the thread; only tests send on it.
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "held so that dropping it ends the thread")
    )]
    nudge: SyncSender<Nudge>,
}

impl std::fmt::Debug for Checkpointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpointer").finish_non_exhaustive()
    }
}

impl Checkpointer {
    /// Opens a connection of its own to `path` and starts the thread. `commits` counts the
    /// writer's commits.
    pub(crate) fn start(
        path: PathBuf,
        config: &StoreConfig,
        interval: Duration,
        commits: Arc<AtomicU64>,
    ) -> Result<Self, OpenError> {
        let conn = super::connect(&path, config)?;
        let (nudge, nudges) = sync_channel(1);
        std::thread::Builder::new()
            .name("chat-sqlite-checkpoint".into())
            .spawn(move || run(conn, &nudges, interval, &commits))
            .map_err(|e| OpenError::Sqlite {
                path: path.display().to_string(),
                reason: format!("cannot start the checkpoint thread: {e}"),
            })?;
        Ok(Self { nudge })
    }

    /// Checkpoints now and returns what it did (tests; the thread does it on its own).
    #[cfg(test)]
    pub(crate) fn now(&self) -> QueryResult<Outcome> {
        let (tx, rx) = sync_channel(1);
        self.nudge
            .send(Some(tx))
            .expect("the checkpoint thread runs while its handle lives");
        rx.recv()
            .expect("the checkpoint thread answers every nudge")
    }
}

/// The thread: a checkpoint every `interval`, or when nudged, until the handle is dropped.
fn run(
    mut conn: SqliteConnection,
    nudges: &Receiver<Nudge>,
    interval: Duration,
    commits: &AtomicU64,
) {
    let mut wait = interval;
    let mut last: Option<Outcome> = None;
    let mut checkpointed_at = 0;
    loop {
        let reply = match nudges.recv_timeout(wait) {
            Ok(reply) => reply,
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let now = commits.load(Ordering::Acquire);
        if !due(reply.is_some(), now.wrapping_sub(checkpointed_at)) {
            wait = next_wait(wait, interval, false);
            continue;
        }
        checkpointed_at = now;
        let outcome = checkpoint(&mut conn);
        match &outcome {
            Ok(o) => {
                wait = next_wait(wait, interval, last != Some(*o));
                last = Some(*o);
            }
            Err(e) => {
                wait = interval;
                tracing::warn!(error = %e, "WAL checkpoint failed; retrying");
            }
        }
        if let Some(reply) = reply {
            let _ = reply.send(outcome);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database with `commits` one-row commits, written by a store connection.
    fn written(commits: usize) -> (tempfile::TempDir, PathBuf, SqliteConnection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chat.db");
        let mut conn = super::super::connect(&path, &StoreConfig::new("unused")).unwrap();
        conn.batch_execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
            .unwrap();
        for i in 0..commits {
            conn.batch_execute(&format!("INSERT INTO t (body) VALUES ('row {i}')"))
                .unwrap();
        }
        (dir, path, conn)
    }

    fn rows(conn: &mut SqliteConnection) -> i64 {
        diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
            "(SELECT count(*) FROM t)",
        ))
        .get_result(conn)
        .unwrap()
    }

    #[test]
    fn the_thread_copies_the_wal_while_the_writer_goes_on() {
        let (_dir, path, mut writer) = written(50);
        let checkpointer =
            Checkpointer::start(path, &StoreConfig::new("unused"), INTERVAL, Arc::default())
                .unwrap();
        let outcome = checkpointer.now().unwrap();
        assert_eq!(outcome.busy, 0);
        assert!(outcome.log > 0, "there was something to copy: {outcome:?}");
        assert_eq!(outcome.checkpointed, outcome.log, "all of it was copied");
        // The writer was never held: it commits with a zero busy timeout, as the store's does.
        writer.batch_execute("PRAGMA busy_timeout = 0").unwrap();
        writer
            .batch_execute("INSERT INTO t (body) VALUES ('after')")
            .unwrap();
        assert_eq!(rows(&mut writer), 51);
    }

    #[test]
    fn a_few_commits_wait_for_more_before_a_checkpoint() {
        assert!(!due(false, 0));
        assert!(
            !due(false, MIN_COMMITS - 1),
            "the next commit would rewind the WAL"
        );
        assert!(due(false, MIN_COMMITS));
        assert!(due(true, 0), "asked for");
    }

    #[test]
    fn an_idle_wal_is_looked_at_less_and_less_often() {
        let i = INTERVAL;
        let mut wait = i;
        let mut waits = Vec::new();
        for _ in 0..7 {
            wait = next_wait(wait, i, false);
            waits.push(wait.as_millis());
        }
        assert_eq!(waits, [100, 200, 400, 800, 1_000, 1_000, 1_000]);
        assert_eq!(
            next_wait(IDLE_INTERVAL, i, true),
            i,
            "a write brings it back at once"
        );
    }

    /// Pages the WAL file has room for: its size only grows, so this is the most it held.
    fn wal_pages(path: &std::path::Path) -> u64 {
        let wal = path.with_extension("db-wal");
        // A 32-byte header, then frames of a 24-byte header and a 4 KiB page.
        std::fs::metadata(wal).map_or(0, |m| m.len().saturating_sub(32) / (24 + 4_096))
    }

    /// Commits `n` rows on `writer`, each over half a page, so each commit writes a new page.
    fn commit_pages(writer: &mut SqliteConnection, n: u32) {
        let body = "x".repeat(2_100);
        for _ in 0..n {
            writer
                .batch_execute(&format!("INSERT INTO t (body) VALUES ('{body}')"))
                .unwrap();
        }
    }

    #[test]
    fn the_writer_lets_the_wal_grow_past_sqlites_default_threshold() {
        let (_dir, path, mut writer) = written(0);
        set_writer_threshold(&mut writer).unwrap();
        commit_pages(&mut writer, 3_000);
        // At SQLite's 1,000 pages the writer would have rewound the WAL and reused it.
        assert!(wal_pages(&path) >= 3_000, "{} pages", wal_pages(&path));
    }

    #[test]
    fn the_writer_still_rewinds_the_wal() {
        let (_dir, path, mut writer) = written(0);
        set_writer_threshold(&mut writer).unwrap();
        commit_pages(&mut writer, WRITER_THRESHOLD + 3_000);
        // Past the threshold the writer's own checkpoint copies the WAL back and the next
        // commit starts it over, so the file never grows with the writes.
        let most = u64::from(WRITER_THRESHOLD) + 100;
        assert!(wal_pages(&path) <= most, "{} pages", wal_pages(&path));
        assert_eq!(rows(&mut writer), i64::from(WRITER_THRESHOLD + 3_000));
    }
}
