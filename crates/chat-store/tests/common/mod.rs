//! What the store's test files share: a fresh store on each backend, and `suite!`.

#![allow(dead_code)]

use chat_store::testing::{DEFAULT_ADMIN_URL, TestDatabase};
use chat_store::{Store, StoreConfig};
use tempfile::TempDir;

/// A store on a new SQLite file, and the directory that holds it.
pub async fn sqlite() -> (Store, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig::new(format!(
        "sqlite://{}/chat.db",
        dir.path().display()
    )))
    .await
    .expect("open store");
    (store, dir)
}

/// A store on a new PostgreSQL database, and the guard that drops the database.
/// `CHAT_TEST_PG_URL` names another server than 127.0.0.1:5432.
pub async fn postgres() -> (Store, TestDatabase) {
    let db = TestDatabase::create(&pg_admin_url())
        .await
        .expect("PostgreSQL for tests");
    let store = Store::open(StoreConfig::new(db.url()))
        .await
        .expect("open the PostgreSQL store");
    assert_eq!(store.backend_name(), "postgres");
    (store, db)
}

/// The admin URL tests create databases through.
pub fn pg_admin_url() -> String {
    std::env::var("CHAT_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_ADMIN_URL.into())
}

/// Runs every check against a backend: `suite!(module_name, opener; check, …)`, where
/// `opener().await` yields a fresh store plus a guard that keeps its database alive.
#[macro_export]
macro_rules! suite {
    ($module:ident, $open:path; $($name:ident),* $(,)?) => {
        mod $module {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (store, _guard) = $open().await;
                    super::$name(store).await;
                }
            )*
        }
    };
}
