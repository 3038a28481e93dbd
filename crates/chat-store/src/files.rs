//! Uploaded files (attachments) kept in the database: the record type both backends share,
//! its rows, and the checks a file passes on its way in and out.
//!
//! A file is one row of the `files` table, its record and its bytes together, so storing it
//! is one `INSERT`: it is stored whole or not at all, and every server process sharing the
//! database serves it. Reading the record alone ([`crate::Store::file`]) never loads the bytes.

use chat_core::{RoomName, StoreError, Timestamp};
use diesel::prelude::*;

use crate::schema::files;

/// A stored file's record: everything but its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    /// The file's id (the attachment id the protocol shows), unique in the store.
    pub id: String,
    /// The room it was uploaded to: whose members may read it.
    pub room: RoomName,
    /// Who uploaded it: their sender key (`u:<user id>`, `g:<guest id>`).
    pub uploader: String,
    /// The file's name, as uploaded.
    pub name: String,
    /// Its media type, such as `image/png`.
    pub content_type: String,
    /// Its length in bytes: [`crate::Store::put_file`] takes only bytes of this length.
    pub size: u64,
    /// When it was stored.
    pub created_at: Timestamp,
}

/// A file's record as the database has it (the bytes are selected apart, and only when
/// wanted).
#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = files)]
#[diesel(check_for_backend(diesel::sqlite::Sqlite))]
#[cfg_attr(feature = "postgres", diesel(check_for_backend(diesel::pg::Pg)))]
pub(crate) struct FileRow {
    pub id: String,
    pub room: String,
    pub uploader: String,
    pub name: String,
    pub content_type: String,
    pub size: i64,
    pub created_at: i64,
}

/// A file to insert: its record and its bytes, in one row.
#[derive(Debug, Insertable)]
#[diesel(table_name = files)]
pub(crate) struct NewFileRow<'a> {
    pub id: &'a str,
    pub room: &'a str,
    pub uploader: &'a str,
    pub name: &'a str,
    pub content_type: &'a str,
    pub size: i64,
    pub data: &'a [u8],
    pub created_at: i64,
}

impl<'a> NewFileRow<'a> {
    /// The row of a file that passed [`check_new_file`].
    pub(crate) fn new(file: &'a StoredFile, data: &'a [u8]) -> Self {
        Self {
            id: &file.id,
            room: file.room.as_str(),
            uploader: &file.uploader,
            name: &file.name,
            content_type: &file.content_type,
            // Checked to be `data.len()`, which an i64 always holds.
            size: i64::try_from(file.size).unwrap_or(i64::MAX),
            data,
            created_at: file.created_at.unix_millis(),
        }
    }
}

/// Refuses a file whose record does not describe its bytes, before any database work.
pub(crate) fn check_new_file(file: &StoredFile, data: &[u8]) -> Result<(), StoreError> {
    if u64::try_from(data.len()).ok() != Some(file.size) || i64::try_from(file.size).is_err() {
        return Err(StoreError::Invalid(format!(
            "the file {:?} says it has {} bytes but {} were given",
            file.id,
            file.size,
            data.len()
        )));
    }
    Ok(())
}

/// The answer to an insert that found the id taken.
pub(crate) fn duplicate_id(id: &str) -> StoreError {
    StoreError::Invalid(format!("a file with the id {id:?} is already stored"))
}

/// A stored file that cannot be read back: logged, and an error for this file alone.
fn damaged(id: &str, why: &str) -> StoreError {
    tracing::warn!(id, why, "a stored file cannot be read back");
    StoreError::Unavailable(format!("the stored file {id:?} cannot be read back: {why}"))
}

impl FileRow {
    /// The record as callers see it; a row this crate would not have written (a room name
    /// that does not parse, a negative size) is an error, not a panic.
    pub(crate) fn into_stored(self) -> Result<StoredFile, StoreError> {
        let room = match RoomName::parse(&self.room) {
            Ok(room) => room,
            Err(e) => return Err(damaged(&self.id, &format!("its room: {e}"))),
        };
        let Ok(size) = u64::try_from(self.size) else {
            return Err(damaged(
                &self.id,
                &format!("its size is negative ({})", self.size),
            ));
        };
        Ok(StoredFile {
            id: self.id,
            room,
            uploader: self.uploader,
            name: self.name,
            content_type: self.content_type,
            size,
            created_at: Timestamp::from_unix_millis(self.created_at),
        })
    }

    /// The record and its bytes, which must be as long as the record says.
    pub(crate) fn with_data(self, data: Vec<u8>) -> Result<(StoredFile, Vec<u8>), StoreError> {
        let file = self.into_stored()?;
        if u64::try_from(data.len()).ok() != Some(file.size) {
            return Err(damaged(
                &file.id,
                &format!(
                    "its record says {} bytes but {} are stored",
                    file.size,
                    data.len()
                ),
            ));
        }
        Ok((file, data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(room: &str, size: i64) -> FileRow {
        FileRow {
            id: "f".into(),
            room: room.into(),
            uploader: "g:1".into(),
            name: "a.png".into(),
            content_type: "image/png".into(),
            size,
            created_at: 7,
        }
    }

    #[test]
    fn a_sensible_row_reads_back() {
        let (file, data) = row("lobby", 3).with_data(vec![1, 2, 3]).unwrap();
        assert_eq!(file.room.as_str(), "lobby");
        assert_eq!((file.size, file.created_at.unix_millis()), (3, 7));
        assert_eq!(data, [1, 2, 3]);
        check_new_file(&file, &data).unwrap();
        assert_eq!(NewFileRow::new(&file, &data).size, 3);
    }

    #[test]
    fn a_row_that_makes_no_sense_is_an_error() {
        for bad in [
            row("no spaces allowed", 3),
            row("dm_2_1", 3),
            row("lobby", -1),
        ] {
            assert!(matches!(bad.into_stored(), Err(StoreError::Unavailable(_))));
        }
        assert!(matches!(
            row("lobby", 4).with_data(vec![1, 2, 3]),
            Err(StoreError::Unavailable(_))
        ));
    }

    #[test]
    fn a_size_that_is_not_the_bytes_length_is_refused() {
        let file = row("lobby", 0).into_stored().unwrap();
        assert!(check_new_file(&file, &[]).is_ok());
        assert!(matches!(
            check_new_file(&file, &[0]),
            Err(StoreError::Invalid(_))
        ));
        let huge = StoredFile {
            size: u64::MAX,
            ..file
        };
        assert!(matches!(
            check_new_file(&huge, &[]),
            Err(StoreError::Invalid(_))
        ));
    }
}
