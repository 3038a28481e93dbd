//! Throwaway PostgreSQL databases for tests (feature `test-util`).
//!
//! Each [`TestDatabase`] is a fresh, empty database on a real server, dropped again (with
//! any connections still open to it) when the value is dropped. Tests that need PostgreSQL
//! fail loudly when the server is missing: they never skip.

use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};

/// The server the project's tests use unless told otherwise.
pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database created for one test, dropped when this is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    admin_url: String,
    name: String,
    url: String,
}

/// Why a test database could not be made.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot create a test database through {admin_url}: {reason}\n\
     Is PostgreSQL running? Start it with: \
     pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
)]
pub struct TestDatabaseError {
    admin_url: String,
    reason: String,
}

async fn admin(admin_url: &str) -> Result<AsyncPgConnection, String> {
    match tokio::time::timeout(
        Duration::from_secs(10),
        AsyncPgConnection::establish(admin_url),
    )
    .await
    {
        Ok(conn) => conn.map_err(|e| e.to_string()),
        Err(_) => Err("no answer within 10 s".into()),
    }
}

impl TestDatabase {
    /// Creates an empty database named `chat_test_<random>` on the server `admin_url` points
    /// at (a URL whose user may `CREATE DATABASE`, such as [`DEFAULT_ADMIN_URL`]).
    pub async fn create(admin_url: &str) -> Result<Self, TestDatabaseError> {
        let fail = |reason: String| TestDatabaseError {
            admin_url: crate::redact_url(admin_url),
            reason,
        };
        let name = format!("chat_test_{}_{:08x}", std::process::id(), rand_u32());
        let mut conn = admin(admin_url).await.map_err(fail)?;
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let base = admin_url
            .rsplit_once('/')
            .map(|(base, _)| base)
            .ok_or_else(|| fail("the URL names no database".into()))?;
        Ok(Self {
            admin_url: admin_url.to_owned(),
            url: format!("{base}/{name}"),
            name,
        })
    }

    /// The new database's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Simulates an outage as clients see it: every connection to this database is cut and
    /// new ones are refused until [`TestDatabase::restore`]. Other databases on the server
    /// are untouched, so tests running beside this one are not disturbed.
    pub async fn cut_off(&self) -> Result<(), TestDatabaseError> {
        self.admin_sql(&format!(
            "ALTER DATABASE {0} ALLOW_CONNECTIONS false;
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{0}';",
            self.name
        ))
        .await
    }

    /// Ends the outage started by [`TestDatabase::cut_off`].
    pub async fn restore(&self) -> Result<(), TestDatabaseError> {
        self.admin_sql(&format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS true",
            self.name
        ))
        .await
    }

    async fn admin_sql(&self, sql: &str) -> Result<(), TestDatabaseError> {
        let fail = |reason: String| TestDatabaseError {
            admin_url: crate::redact_url(&self.admin_url),
            reason,
        };
        let mut conn = admin(&self.admin_url).await.map_err(fail)?;
        conn.batch_execute(sql)
            .await
            .map_err(|e| fail(e.to_string()))
    }
}

/// Enough randomness for unique names without another dependency: the std hasher's random
/// keys, mixed with the time.
fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish() as u32
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop may run inside or outside a runtime: do the async work on a thread of its own.
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                let mut conn = admin(&admin_url).await?;
                diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await
                    .map_err(|e| e.to_string())
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            tracing::warn!(database = %self.name, error = %e, "could not drop a test database");
        }
    }
}
