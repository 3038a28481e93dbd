//! Reads and account writes on PostgreSQL: the same diesel queries as the SQLite backend,
//! run through diesel-async on a pooled connection.

use chat_core::{HistoryPage, HistoryQuery, RoomName, Seq, Timestamp, UserId};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error};
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::accounts::{NewUser, USER_COLUMNS, UnreadRow, User, UserRow, unread_rooms, user_id};
use crate::model::{MessageRow, db_seq, page};
use crate::schema::{messages, read_state, rooms, sessions, users};

type Conn = AsyncPgConnection;

/// One page of a room's history; see [`HistoryQuery`] for the directions.
pub(crate) async fn history(
    conn: &mut Conn,
    room: &RoomName,
    query: HistoryQuery,
) -> QueryResult<HistoryPage> {
    let limit = query.capped_limit();
    let Some(room_id) = rooms::table
        .filter(rooms::name.eq(room.as_str()))
        .select(rooms::id)
        .first::<i32>(conn)
        .await
        .optional()?
    else {
        return Ok(HistoryPage::default());
    };
    let after = db_seq(query.after.unwrap_or(0));
    let before = db_seq(query.before.unwrap_or(Seq::MAX));
    let base = messages::table
        .filter(messages::room_id.eq(room_id))
        .filter(messages::seq.gt(after))
        .filter(messages::seq.lt(before))
        .select(MessageRow::as_select())
        .limit(i64::from(limit) + 1);
    let forward = query.after.is_some();
    let rows = if forward {
        base.order(messages::seq.asc()).load(conn).await?
    } else {
        base.order(messages::seq.desc()).load(conn).await?
    };
    Ok(page(room, rows, limit, forward))
}

/// The room's latest seq, 0 when it has none.
pub(crate) async fn last_seq(conn: &mut Conn, room: &RoomName) -> QueryResult<Seq> {
    let seq: Option<i64> = rooms::table
        .filter(rooms::name.eq(room.as_str()))
        .select(rooms::last_seq)
        .first(conn)
        .await
        .optional()?;
    Ok(seq.and_then(|s| Seq::try_from(s).ok()).unwrap_or(0))
}

/// The last seq `user` read in `room`, 0 when never.
pub(crate) async fn last_read(conn: &mut Conn, room: &RoomName, user: i64) -> QueryResult<Seq> {
    let seq: Option<i64> = read_state::table
        .inner_join(rooms::table)
        .filter(rooms::name.eq(room.as_str()))
        .filter(read_state::user_id.eq(user))
        .select(read_state::last_read_seq)
        .first(conn)
        .await
        .optional()?;
    Ok(seq.and_then(|s| Seq::try_from(s).ok()).unwrap_or(0))
}

pub(crate) async fn ping(conn: &mut Conn) -> QueryResult<()> {
    diesel::sql_query("SELECT 1")
        .execute(conn)
        .await
        .map(|_| ())
}

/// Inserts a user; `Ok(None)` when the username is taken.
pub(crate) async fn create_user(conn: &mut Conn, u: &NewUser) -> QueryResult<Option<User>> {
    let inserted = diesel::insert_into(users::table)
        .values((
            users::username.eq(&u.username),
            users::display_name.eq(&u.display_name),
            users::role.eq(&u.role),
            users::password_hash.eq(&u.password_hash),
            users::created_at.eq(Timestamp::now().unix_millis()),
        ))
        .returning(USER_COLUMNS)
        .get_result::<UserRow>(conn)
        .await;
    match inserted {
        Ok(row) => Ok(Some(row.into())),
        Err(Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => Ok(None),
        Err(e) => Err(e),
    }
}

pub(crate) async fn user(conn: &mut Conn, id: UserId) -> QueryResult<Option<User>> {
    users::table
        .filter(users::id.eq(user_id(id)))
        .select(USER_COLUMNS)
        .first::<UserRow>(conn)
        .await
        .optional()
        .map(|r| r.map(Into::into))
}

pub(crate) async fn user_with_hash(
    conn: &mut Conn,
    username: &str,
) -> QueryResult<Option<(User, String)>> {
    users::table
        .filter(users::username.eq(username))
        .select((USER_COLUMNS, users::password_hash))
        .first::<(UserRow, String)>(conn)
        .await
        .optional()
        .map(|r| r.map(|(u, h)| (u.into(), h)))
}

pub(crate) async fn all_users(conn: &mut Conn) -> QueryResult<Vec<User>> {
    users::table
        .select(USER_COLUMNS)
        .order(users::id.asc())
        .load::<UserRow>(conn)
        .await
        .map(|rows| rows.into_iter().map(Into::into).collect())
}

pub(crate) async fn create_session(
    conn: &mut Conn,
    id_hash: &str,
    user: UserId,
    expires_at: Timestamp,
) -> QueryResult<()> {
    let now = Timestamp::now().unix_millis();
    // Expired sessions are swept whenever a new one starts, so the table does not grow forever.
    diesel::delete(sessions::table.filter(sessions::expires_at.le(now)))
        .execute(conn)
        .await?;
    diesel::insert_into(sessions::table)
        .values((
            sessions::id_hash.eq(id_hash),
            sessions::user_id.eq(user_id(user)),
            sessions::created_at.eq(now),
            sessions::expires_at.eq(expires_at.unix_millis()),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

pub(crate) async fn session_user(
    conn: &mut Conn,
    id_hash: &str,
    now: Timestamp,
) -> QueryResult<Option<User>> {
    sessions::table
        .inner_join(users::table)
        .filter(sessions::id_hash.eq(id_hash))
        .filter(sessions::expires_at.gt(now.unix_millis()))
        .select(USER_COLUMNS)
        .first::<UserRow>(conn)
        .await
        .optional()
        .map(|r| r.map(Into::into))
}

pub(crate) async fn delete_session(conn: &mut Conn, id_hash: &str) -> QueryResult<()> {
    diesel::delete(sessions::table.filter(sessions::id_hash.eq(id_hash)))
        .execute(conn)
        .await?;
    Ok(())
}

/// Unread messages per room for `user`: every pair room the user belongs to and every room the
/// user has read state in. The user's own messages never count as unread.
pub(crate) async fn unread(conn: &mut Conn, user: UserId) -> QueryResult<Vec<(RoomName, Seq)>> {
    let rows: Vec<UnreadRow> = diesel::sql_query(
        "SELECT r.name AS name,
                (SELECT COUNT(*) FROM messages m
                  WHERE m.room_id = r.id
                    AND m.seq > COALESCE(rs.last_read_seq, 0)
                    AND (m.sender_id IS NULL OR m.sender_id <> $1)) AS unread
           FROM rooms r
           LEFT JOIN read_state rs ON rs.room_id = r.id AND rs.user_id = $1
          WHERE rs.user_id IS NOT NULL
             OR (r.kind = 'pair'
                 AND (r.name LIKE 'dm\\_' || $2 || '\\_%'
                      OR r.name LIKE 'dm\\_%\\_' || $2))
          ORDER BY r.name",
    )
    .bind::<BigInt, _>(user)
    .bind::<Text, _>(user.to_string())
    .load(conn)
    .await?;
    Ok(unread_rooms(user, rows))
}
