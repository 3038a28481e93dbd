//! Users, sessions and unread counts on SQLite.

use chat_core::{RoomName, Seq, Timestamp, UserId};
use diesel::prelude::*;
use diesel::sql_types::BigInt;

use crate::accounts::{NewUser, USER_COLUMNS, UnreadRow, User, UserRow, unread_rooms, user_id};
use crate::schema::{sessions, users};

/// Inserts a user; `Ok(None)` when the username is taken.
pub(crate) fn create_user(conn: &mut SqliteConnection, u: &NewUser) -> QueryResult<Option<User>> {
    let inserted = diesel::insert_into(users::table)
        .values((
            users::username.eq(&u.username),
            users::display_name.eq(&u.display_name),
            users::role.eq(&u.role),
            users::password_hash.eq(&u.password_hash),
            users::created_at.eq(Timestamp::now().unix_millis()),
        ))
        .returning(USER_COLUMNS)
        .get_result::<UserRow>(conn);
    match inserted {
        Ok(row) => Ok(Some(row.into())),
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => Ok(None),
        Err(e) => Err(e),
    }
}

pub(crate) fn user(conn: &mut SqliteConnection, id: UserId) -> QueryResult<Option<User>> {
    users::table
        .filter(users::id.eq(user_id(id)))
        .select(USER_COLUMNS)
        .get_result::<UserRow>(conn)
        .optional()
        .map(|r| r.map(Into::into))
}

pub(crate) fn user_with_hash(
    conn: &mut SqliteConnection,
    username: &str,
) -> QueryResult<Option<(User, String)>> {
    users::table
        .filter(users::username.eq(username))
        .select((USER_COLUMNS, users::password_hash))
        .get_result::<(UserRow, String)>(conn)
        .optional()
        .map(|r| r.map(|(u, h)| (u.into(), h)))
}

pub(crate) fn all_users(conn: &mut SqliteConnection) -> QueryResult<Vec<User>> {
    users::table
        .select(USER_COLUMNS)
        .order(users::id.asc())
        .load::<UserRow>(conn)
        .map(|rows| rows.into_iter().map(Into::into).collect())
}

pub(crate) fn create_session(
    conn: &mut SqliteConnection,
    id_hash: &str,
    user: UserId,
    expires_at: Timestamp,
) -> QueryResult<()> {
    let now = Timestamp::now().unix_millis();
    // Expired sessions are swept whenever a new one starts, so the table does not grow forever.
    diesel::delete(sessions::table.filter(sessions::expires_at.le(now))).execute(conn)?;
    diesel::insert_into(sessions::table)
        .values((
            sessions::id_hash.eq(id_hash),
            sessions::user_id.eq(user_id(user)),
            sessions::created_at.eq(now),
            sessions::expires_at.eq(expires_at.unix_millis()),
        ))
        .execute(conn)?;
    Ok(())
}

pub(crate) fn session_user(
    conn: &mut SqliteConnection,
    id_hash: &str,
    now: Timestamp,
) -> QueryResult<Option<User>> {
    sessions::table
        .inner_join(users::table)
        .filter(sessions::id_hash.eq(id_hash))
        .filter(sessions::expires_at.gt(now.unix_millis()))
        .select(USER_COLUMNS)
        .get_result::<UserRow>(conn)
        .optional()
        .map(|r| r.map(Into::into))
}

pub(crate) fn delete_session(conn: &mut SqliteConnection, id_hash: &str) -> QueryResult<()> {
    diesel::delete(sessions::table.filter(sessions::id_hash.eq(id_hash))).execute(conn)?;
    Ok(())
}

/// Unread messages per room for `user`: every pair room the user belongs to and every room the
/// user has read state in. The user's own messages never count as unread.
pub(crate) fn unread(
    conn: &mut SqliteConnection,
    user: UserId,
) -> QueryResult<Vec<(RoomName, Seq)>> {
    let rows: Vec<UnreadRow> = diesel::sql_query(
        "SELECT r.name AS name,
                (SELECT COUNT(*) FROM messages m
                  WHERE m.room_id = r.id
                    AND m.seq > COALESCE(rs.last_read_seq, 0)
                    AND (m.sender_id IS NULL OR m.sender_id <> ?1)) AS unread
           FROM rooms r
           LEFT JOIN read_state rs ON rs.room_id = r.id AND rs.user_id = ?1
          WHERE rs.user_id IS NOT NULL
             OR (r.kind = 'pair'
                 AND (r.name LIKE 'dm\\_' || ?1 || '\\_%' ESCAPE '\\'
                      OR r.name LIKE 'dm\\_%\\_' || ?1 ESCAPE '\\'))
          ORDER BY r.name",
    )
    .bind::<BigInt, _>(user)
    .load(conn)?;
    Ok(unread_rooms(user, rows))
}
