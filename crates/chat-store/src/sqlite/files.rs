//! Uploaded files on SQLite: one row each, written on the read pool like accounts (the
//! insert waits on SQLite's busy timeout while the message writer commits) and read there.

use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error};

use crate::files::{FileRow, NewFileRow};
use crate::schema::files;

/// Inserts a file, record and bytes in one statement; `Ok(false)` when the id is taken
/// (then nothing changed).
pub(crate) fn put(conn: &mut SqliteConnection, row: &NewFileRow<'_>) -> QueryResult<bool> {
    match diesel::insert_into(files::table).values(row).execute(conn) {
        Ok(_) => Ok(true),
        Err(Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// A file's record, without reading its bytes.
pub(crate) fn record(conn: &mut SqliteConnection, id: &str) -> QueryResult<Option<FileRow>> {
    files::table
        .filter(files::id.eq(id))
        .select(FileRow::as_select())
        .get_result(conn)
        .optional()
}

/// A file's record and its bytes.
pub(crate) fn with_data(
    conn: &mut SqliteConnection,
    id: &str,
) -> QueryResult<Option<(FileRow, Vec<u8>)>> {
    files::table
        .filter(files::id.eq(id))
        .select((FileRow::as_select(), files::data))
        .get_result(conn)
        .optional()
}
