//! Where the database is and how to open a connection to it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/sqlite");

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
    /// - `postgres://…` / `postgresql://…`: PostgreSQL, which this build does not support
    ///   yet ([`OpenError::Unsupported`]).
    ///
    /// In-memory SQLite (`sqlite::memory:`, `:memory:`, `file:` URIs) is refused: the writer
    /// and the read connections would each see their own empty database. Tests use a file in
    /// a temporary directory instead, which also exercises the real WAL setup.
    pub database_url: String,
    /// Read connections kept open (SQLite in WAL mode reads concurrently with the writer).
    pub read_connections: usize,
    /// How long a statement waits for a lock before failing.
    pub busy_timeout: Duration,
    /// Most appends committed in one transaction.
    pub max_batch: usize,
}

impl StoreConfig {
    /// Defaults for a database URL.
    pub fn new(database_url: impl Into<String>) -> Self {
        Self {
            database_url: database_url.into(),
            read_connections: 4,
            busy_timeout: Duration::from_secs(5),
            max_batch: 512,
        }
    }
}

/// The SQLite file a URL points at.
pub(crate) fn sqlite_path(url: &str) -> Result<PathBuf, OpenError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Err(OpenError::Unsupported(
            "PostgreSQL support is not built yet; use a SQLite path or sqlite:// URL".into(),
        ));
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
            "unsupported database URL {url:?}: expected sqlite://PATH or a file path"
        )));
    }
    Ok(PathBuf::from(path))
}

/// Opens one connection with the settings every connection needs.
pub(crate) fn connect(path: &Path, config: &StoreConfig) -> Result<SqliteConnection, OpenError> {
    let err = |reason: String| OpenError::Sqlite {
        path: path.display().to_string(),
        reason,
    };
    let path_str = path
        .to_str()
        .ok_or_else(|| err("the path is not valid UTF-8".into()))?;
    let mut conn = SqliteConnection::establish(path_str).map_err(|e| err(e.to_string()))?;
    conn.batch_execute(&format!(
        "PRAGMA busy_timeout = {};
         PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = ON;",
        config.busy_timeout.as_millis()
    ))
    .map_err(|e| err(e.to_string()))?;
    Ok(conn)
}

/// Creates the file's directory, opens the writer connection and applies migrations.
pub(crate) fn open_writer(config: &StoreConfig) -> Result<(PathBuf, SqliteConnection), OpenError> {
    let path = sqlite_path(&config.database_url)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| OpenError::Sqlite {
            path: path.display().to_string(),
            reason: format!("cannot create its directory: {e}"),
        })?;
    }
    let mut conn = connect(&path, config)?;
    conn.run_pending_migrations(SQLITE_MIGRATIONS)
        .map_err(|e| OpenError::Migration(e.to_string()))?;
    Ok((path, conn))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            sqlite_path("sqlite://data/chat.db").unwrap(),
            PathBuf::from("data/chat.db")
        );
        assert_eq!(
            sqlite_path("sqlite:///abs/chat.db").unwrap(),
            PathBuf::from("/abs/chat.db")
        );
        assert_eq!(sqlite_path("chat.db").unwrap(), PathBuf::from("chat.db"));
        let e = sqlite_path("postgres://localhost/chat").unwrap_err();
        assert!(e.to_string().contains("PostgreSQL"), "{e}");
        assert!(sqlite_path("mysql://x").is_err());
        assert!(sqlite_path("").is_err());
        for memory in ["sqlite::memory:", ":memory:", "file::memory:?cache=shared"] {
            let e = sqlite_path(memory).unwrap_err();
            assert!(e.to_string().contains("in-memory"), "{memory}: {e}");
        }
    }
}
