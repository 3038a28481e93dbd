//! Where the database is and how to open a connection to it.

use std::path::PathBuf;
use std::time::Duration;

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The URL names a backend this build does not support.
    #[error("{0}")]
    Unsupported(String),
    /// The database file or its directory is not usable.
    #[error("cannot open the SQLite database {path}: {reason}")]
    Sqlite {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// PostgreSQL could not be reached or refused the connection.
    #[error("cannot connect to PostgreSQL at {url}: {reason}")]
    Postgres {
        /// The URL, with any password replaced by `***`.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// A migration failed.
    #[error("database migration failed: {0}")]
    Migration(String),
}

/// How to open the store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Where the database is:
    ///
    /// - `sqlite://PATH`, `sqlite:PATH` or a plain file path: a SQLite file, created with its
    ///   directory when missing (`sqlite:///abs/chat.db` is absolute, `sqlite://data/chat.db`
    ///   relative to the working directory);
    /// - `postgres://…` / `postgresql://…`: PostgreSQL (with the `postgres` feature, on by
    ///   default), in libpq's URL form: `postgres://user:password@host:5432/dbname`.
    ///
    /// In-memory SQLite (`sqlite::memory:`, `:memory:`, `file:` URIs) is refused: the writer
    /// and the read connections would each see their own empty database. Tests use a file in
    /// a temporary directory instead, which also exercises the real WAL setup.
    pub database_url: String,
    /// Read connections kept open (SQLite in WAL mode reads concurrently with the writer; on
    /// PostgreSQL, the size of the pool that serves reads and account writes).
    pub read_connections: usize,
    /// How long one operation may wait before it fails with
    /// [`chat_core::StoreError::Unavailable`]: SQLite's busy timeout on a locked file; on
    /// PostgreSQL the limit for connecting, waiting for a pooled connection, and each write
    /// batch, so an unreachable server answers "unavailable" instead of hanging senders.
    pub busy_timeout: Duration,
    /// Most appends committed in one transaction.
    pub max_batch: usize,
    /// SQLite: the shortest time between the starts of two commits while sends keep coming
    /// (default 1 ms; zero commits every send as soon as the connection is free).
    ///
    /// A send that arrives sooner after the latest commit waits for the rest of the interval
    /// and shares the next commit with whatever else arrived. Commits cost about the same
    /// whatever they hold, so under load this turns thousands of one-message commits a
    /// second into one per interval, and a commit's messages reach each member of the room
    /// as one batch; at a quieter rate no send waits, and a busy one waits at most this long.
    /// With 1 ms the highest clean open-loop rate was one step higher in six of seven paired
    /// runs (1 room × 1,000 with 200 senders, and 1 × 100 with 5) and never lower
    /// (docs/benchmarks.md, 2026-12-03). It was off by default while a commit's messages were
    /// broadcast by their senders' tasks in whatever order those ran: members then held many
    /// messages for the seqs they overtook, and near saturation that tipped into store reads;
    /// a commit is now published by one task in commit order.
    /// PostgreSQL batches by its round trip and ignores this.
    pub commit_interval: Duration,
}

impl StoreConfig {
    /// Defaults for a database URL.
    pub fn new(database_url: impl Into<String>) -> Self {
        Self {
            database_url: database_url.into(),
            read_connections: 4,
            busy_timeout: Duration::from_secs(5),
            max_batch: 512,
            commit_interval: Duration::from_millis(1),
        }
    }
}

/// Which database a URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Location {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL URL, as given.
    Postgres(String),
}

/// Where a URL points.
pub(crate) fn locate(url: &str) -> Result<Location, OpenError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Location::Postgres(url.to_owned()));
    }
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    if path == ":memory:" || path.starts_with("file:") {
        return Err(OpenError::Unsupported(format!(
            "in-memory or URI SQLite databases ({url:?}) are not supported: the store reads on \
             connections of its own, which need a file; use a file path (for tests, one in a \
             temporary directory)"
        )));
    }
    if path.is_empty() || path.contains("://") {
        return Err(OpenError::Unsupported(format!(
            "unsupported database URL {url:?}: expected sqlite://PATH, a file path or \
             postgres://user@host/dbname"
        )));
    }
    Ok(Location::Sqlite(PathBuf::from(path)))
}

/// A database URL fit for logs and errors: any password is replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = redact_userinfo(base);
    if let Some(query) = query {
        // libpq and redis-rs also take the password as a query parameter.
        let params: Vec<String> = query
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => p.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

/// `scheme://user:password@host…` with the password hidden.
fn redact_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite(url: &str) -> PathBuf {
        match locate(url).unwrap() {
            Location::Sqlite(p) => p,
            other => panic!("{url}: {other:?}"),
        }
    }

    #[test]
    fn urls() {
        assert_eq!(
            sqlite("sqlite://data/chat.db"),
            PathBuf::from("data/chat.db")
        );
        assert_eq!(
            sqlite("sqlite:///abs/chat.db"),
            PathBuf::from("/abs/chat.db")
        );
        assert_eq!(sqlite("chat.db"), PathBuf::from("chat.db"));
        assert_eq!(
            locate("postgres://u@localhost/chat").unwrap(),
            Location::Postgres("postgres://u@localhost/chat".into())
        );
        assert!(matches!(
            locate("postgresql://localhost/chat").unwrap(),
            Location::Postgres(_)
        ));
        assert!(locate("mysql://x").is_err());
        assert!(locate("").is_err());
        for memory in ["sqlite::memory:", ":memory:", "file::memory:?cache=shared"] {
            let e = locate(memory).unwrap_err();
            assert!(e.to_string().contains("in-memory"), "{memory}: {e}");
        }
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://chat:s3cret@db:5432/chat"),
            "postgres://chat:***@db:5432/chat"
        );
        assert_eq!(
            redact_url("postgres://chat@db/chat"),
            "postgres://chat@db/chat"
        );
        assert_eq!(redact_url("sqlite://data/chat.db"), "sqlite://data/chat.db");
        assert_eq!(redact_url("postgres://a:b@c"), "postgres://a:***@c");
        assert_eq!(
            redact_url("postgres://chat@db/chat?sslmode=require&password=s3cret"),
            "postgres://chat@db/chat?sslmode=require&password=***"
        );
        assert_eq!(
            redact_url("redis://:s3cret@cache:6379/0?PASSWORD=x"),
            "redis://:***@cache:6379/0?PASSWORD=***"
        );
    }
}
