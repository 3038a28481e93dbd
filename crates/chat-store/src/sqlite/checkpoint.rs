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
//!
//! Why the thread fsyncs the WAL between checkpoints: with `synchronous = NORMAL` a commit
//! reaches the disk only when a checkpoint fsyncs the WAL, so while commits were fewer than
//! [`MIN_COMMITS`] (a quiet server: forever) the last ones would survive a crash of the
//! process but not a power loss. An fsync of the WAL file alone makes them durable without
//! copying anything back, so the next commit does not rewind the WAL, and it runs here, off
//! the runtime. A commit is on disk about [`INTERVAL`] after it was made while commits keep
//! coming, and within about a second ([`IDLE_INTERVAL`], the longest the thread sleeps) on
//! a quiet server.

use std::path::{Path, PathBuf};
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

/// What the thread does when it wakes up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Copy the WAL back into the database file (which fsyncs the WAL first).
    Checkpoint,
    /// Only fsync the WAL: some commits are not on disk yet, too few to checkpoint for.
    Sync,
    /// Nothing was committed since the WAL was last synced.
    Rest,
}

/// The step to take: a checkpoint when asked to or when enough was committed since the
/// last one, an fsync when anything at all was committed since the last one.
fn step(nudged: bool, since_checkpoint: u64, since_sync: u64) -> Step {
    if nudged || since_checkpoint >= MIN_COMMITS {
        Step::Checkpoint
    } else if since_sync > 0 {
        Step::Sync
    } else {
        Step::Rest
    }
}

/// The WAL file of the database at `db`: SQLite names it by appending `-wal`.
fn wal_path(db: &Path) -> PathBuf {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    PathBuf::from(wal)
}

/// Flushes the WAL file to disk. An fsync of any descriptor of a file flushes the file, so
/// this one need not be SQLite's. No WAL file means nothing to flush.
fn sync_wal(wal: &Path) -> std::io::Result<()> {
    match std::fs::File::open(wal) {
        Ok(file) => file.sync_data(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
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
    /// The writer's commit count that is known to be on disk (the thread keeps its own).
    #[cfg(test)]
    synced: Arc<AtomicU64>,
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
        let synced = Arc::new(AtomicU64::new(0));
        let wal = Wal {
            path: wal_path(&path),
            commits,
            synced: Arc::clone(&synced),
        };
        std::thread::Builder::new()
            .name("chat-sqlite-checkpoint".into())
            .spawn(move || run(conn, &nudges, interval, &wal))
            .map_err(|e| OpenError::Sqlite {
                path: path.display().to_string(),
                reason: format!("cannot start the checkpoint thread: {e}"),
            })?;
        Ok(Self {
            nudge,
            #[cfg(test)]
            synced,
        })
    }

    /// How many of the writer's commits are known to be on disk (tests).
    #[cfg(test)]
    pub(crate) fn synced(&self) -> u64 {
        self.synced.load(Ordering::Acquire)
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

/// The WAL as the thread follows it.
struct Wal {
    path: PathBuf,
    /// The writer's commits so far.
    commits: Arc<AtomicU64>,
    /// Of those, how many are known to be on disk.
    synced: Arc<AtomicU64>,
}

/// The thread: a checkpoint or an fsync every `interval` while commits come, or a
/// checkpoint when nudged, until the handle is dropped.
fn run(mut conn: SqliteConnection, nudges: &Receiver<Nudge>, interval: Duration, wal: &Wal) {
    let mut wait = interval;
    let mut last: Option<Outcome> = None;
    let mut checkpointed_at = 0;
    loop {
        let reply = match nudges.recv_timeout(wait) {
            Ok(reply) => reply,
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        // Read before the step: a commit made meanwhile is left for the next one.
        let now = wal.commits.load(Ordering::Acquire);
        let synced = wal.synced.load(Ordering::Acquire);
        match step(
            reply.is_some(),
            now.wrapping_sub(checkpointed_at),
            now.wrapping_sub(synced),
        ) {
            Step::Rest => {
                wait = next_wait(wait, interval, false);
                continue;
            }
            Step::Sync => {
                match sync_wal(&wal.path) {
                    Ok(()) => wal.synced.store(now, Ordering::Release),
                    Err(e) => tracing::warn!(error = %e, "WAL fsync failed; retrying"),
                }
                wait = interval;
                continue;
            }
            Step::Checkpoint => {}
        }
        checkpointed_at = now;
        let outcome = checkpoint(&mut conn);
        match &outcome {
            Ok(o) => {
                // A checkpoint fsyncs the WAL before it copies, and copies nothing when
                // readers hold every new frame: only a complete one says all is on disk.
                if o.busy == 0 && o.checkpointed == o.log {
                    wal.synced.store(now, Ordering::Release);
                }
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
        assert_eq!(step(false, 0, 0), Step::Rest);
        assert_eq!(
            step(false, MIN_COMMITS - 1, 1),
            Step::Sync,
            "a checkpoint would make the next commit rewind the WAL; an fsync does not"
        );
        assert_eq!(
            step(false, MIN_COMMITS - 1, 0),
            Step::Rest,
            "already on disk"
        );
        assert_eq!(step(false, MIN_COMMITS, 0), Step::Checkpoint);
        assert_eq!(step(true, 0, 0), Step::Checkpoint, "asked for");
    }

    #[test]
    fn a_missing_wal_has_nothing_to_sync_and_an_unreadable_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("chat.db");
        sync_wal(&wal_path(&db)).expect("no WAL file: nothing to flush");
        // A path through a regular file cannot be opened: reported, for the thread to log.
        std::fs::write(&db, b"").unwrap();
        let inside = db.join("chat.db");
        assert!(sync_wal(&wal_path(&inside)).is_err());
    }

    #[test]
    fn a_few_commits_reach_the_disk_without_a_checkpoint() {
        let (_dir, path, mut writer) = written(0);
        let db_bytes = || std::fs::metadata(&path).unwrap().len();
        let before = db_bytes();
        let commits = Arc::new(AtomicU64::new(0));
        let checkpointer = Checkpointer::start(
            path.clone(),
            &StoreConfig::new("unused"),
            INTERVAL,
            commits.clone(),
        )
        .unwrap();
        commit_pages(&mut writer, 3);
        commits.store(3, Ordering::Release);
        // The thread publishes what it synced; wait for that signal, within a bound.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while checkpointer.synced() < 3 {
            assert!(
                std::time::Instant::now() < deadline,
                "three commits were never synced"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        // Synced, not checkpointed: nothing was copied into the database file, so the
        // writer's next commit appends to the WAL instead of rewinding it.
        assert_eq!(db_bytes(), before, "the database file was not written");
        assert_eq!(wal_path(&path), path.with_extension("db-wal"));
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
