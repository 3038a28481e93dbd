//! Users, sessions and unread counts: the types both backends share.

use chat_core::{RoomName, Seq, Timestamp, UserId};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

use crate::schema::users;

/// A registered user (without the password hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The id (positive).
    pub id: UserId,
    /// The unique login name.
    pub username: String,
    /// The name shown to others.
    pub display_name: String,
    /// Free text such as `tutor`, `vet`, `admin`; may be empty.
    pub role: String,
    /// When the account was created.
    pub created_at: Timestamp,
}

/// A user to create. The password must already be hashed (argon2): the store never sees it.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// The unique login name.
    pub username: String,
    /// The name shown to others.
    pub display_name: String,
    /// The role (may be empty).
    pub role: String,
    /// The PHC string of the password hash (`$argon2id$…`).
    pub password_hash: String,
}

/// Why an account operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The username is taken.
    #[error("the username {0:?} is already taken")]
    UsernameTaken(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] chat_core::StoreError),
}

#[derive(Queryable)]
pub(crate) struct UserRow {
    id: i32,
    username: String,
    display_name: String,
    role: String,
    created_at: i64,
}

pub(crate) type UserColumns = (
    users::id,
    users::username,
    users::display_name,
    users::role,
    users::created_at,
);
pub(crate) const USER_COLUMNS: UserColumns = (
    users::id,
    users::username,
    users::display_name,
    users::role,
    users::created_at,
);

impl From<UserRow> for User {
    fn from(r: UserRow) -> Self {
        Self {
            id: i64::from(r.id),
            username: r.username,
            display_name: r.display_name,
            role: r.role,
            created_at: Timestamp::from_unix_millis(r.created_at),
        }
    }
}

pub(crate) fn user_id(id: UserId) -> i32 {
    i32::try_from(id).unwrap_or(-1)
}

/// A row of the unread query (both backends select the same columns).
#[derive(QueryableByName)]
pub(crate) struct UnreadRow {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = BigInt)]
    unread: i64,
}

/// Keeps the rooms `user` really belongs to: the SQL narrows pair rooms with `LIKE`, and
/// membership is decided here by parsing the name.
pub(crate) fn unread_rooms(user: UserId, rows: Vec<UnreadRow>) -> Vec<(RoomName, Seq)> {
    rows.into_iter()
        .filter_map(|r| {
            let room = RoomName::parse(&r.name).ok()?;
            if room.pair().is_some_and(|p| !p.contains(user)) {
                return None;
            }
            Some((room, Seq::try_from(r.unread).unwrap_or(0)))
        })
        .collect()
}
