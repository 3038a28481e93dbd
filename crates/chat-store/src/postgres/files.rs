//! Uploaded files on PostgreSQL: one row each (the bytes in a `bytea` column), written and
//! read on a pooled connection, so every process sharing the database serves every file.

use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::files::{FileRow, NewFileRow};
use crate::schema::files;

type Conn = AsyncPgConnection;

/// Inserts a file, record and bytes in one statement; `Ok(false)` when the id is taken
/// (then nothing changed).
pub(crate) async fn put(conn: &mut Conn, row: &NewFileRow<'_>) -> QueryResult<bool> {
    match diesel::insert_into(files::table)
        .values(row)
        .execute(conn)
        .await
    {
        Ok(_) => Ok(true),
        Err(Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// A file's record, without reading its bytes.
pub(crate) async fn record(conn: &mut Conn, id: &str) -> QueryResult<Option<FileRow>> {
    files::table
        .filter(files::id.eq(id))
        .select(FileRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// A file's record and its bytes.
pub(crate) async fn with_data(
    conn: &mut Conn,
    id: &str,
) -> QueryResult<Option<(FileRow, Vec<u8>)>> {
    files::table
        .filter(files::id.eq(id))
        .select((FileRow::as_select(), files::data))
        .first(conn)
        .await
        .optional()
}
