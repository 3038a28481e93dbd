//! Who may use which room: guests only public rooms (when allowed), pair rooms only their two
//! members, and only while the other member exists and the server's pair policy lets the two
//! talk. One rule for every path: the room sockets, `/ws`, Socket.IO and the HTTP API.

use crate::{AccessCheck, RoomAccess};
use chat_core::{ErrorCode, FrameError, Member, PairRoom, RoomName, Sender, UserId};
use chat_store::User;
use http::StatusCode;

use crate::server::app::Chat;
use crate::server::auth::Identity;
use crate::server::respond::ApiError;

/// Who is using a room.
pub enum Access {
    /// A guest in a public room.
    Guest,
    /// A user (in a public room, or a member of the pair room).
    User(User),
}

fn login_required(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden,
        format!("{what} needs an account; log in first"),
    )
}

fn not_a_member(room: &RoomName) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        ErrorCode::Forbidden,
        format!("you are not a member of {room}"),
    )
}

/// Decides whether `identity` may read and write `room`.
pub async fn room_access(
    app: &Chat,
    identity: &Identity,
    room: &RoomName,
) -> Result<Access, ApiError> {
    match (room.pair(), identity) {
        (None, Identity::User(u)) => Ok(Access::User(u.clone())),
        (None, Identity::Anonymous) if app.config.allow_guests => Ok(Access::Guest),
        (None, Identity::Anonymous) => Err(login_required("this server")),
        (Some(_), Identity::Anonymous) => Err(login_required("a private room")),
        (Some(pair), Identity::User(u)) if pair.contains(u.id) => {
            allowed_pair(app, u.id, &u.role, &pair).await?;
            Ok(Access::User(u.clone()))
        }
        (Some(_), Identity::User(_)) => Err(not_a_member(room)),
    }
}

/// The other member of `pair` for the member `me`, when they exist and the policy lets the
/// two talk. A room with someone who does not exist is not a conversation.
async fn allowed_pair(
    app: &Chat,
    me: UserId,
    my_role: &str,
    pair: &PairRoom,
) -> Result<User, ApiError> {
    let other_id = pair.other(me).ok_or_else(|| not_a_member(&pair.name()))?;
    let other = app
        .store
        .user(other_id)
        .await
        .map_err(|e| ApiError::store(&e))?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::Forbidden,
                format!("there is no user {other_id}"),
            )
        })?;
    let allowed = app.policy.may_pair(
        Member {
            id: me,
            role: my_role,
        },
        Member {
            id: other.id,
            role: &other.role,
        },
    );
    if !allowed {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            format!("you cannot open a conversation with {}", other.display_name),
        ));
    }
    Ok(other)
}

/// Resolves `/dm/{user_id}/` for `me`: the other user must exist and the policy must allow
/// the pair.
pub async fn pair_with(app: &Chat, me: &User, other: &str) -> Result<(PairRoom, User), ApiError> {
    let other_id: UserId = other.parse().map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::Forbidden,
            format!("there is no user {other:?}"),
        )
    })?;
    let pair = PairRoom::new(me.id, other_id).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidRoom,
            e.to_string(),
        )
    })?;
    let other = allowed_pair(app, me.id, &me.role, &pair).await?;
    Ok((pair, other))
}

/// The server's rule for rooms joined on `/ws` and Socket.IO, the same as for the
/// room-bound routes and the HTTP API.
pub struct ServerAccess {
    app: Chat,
}

impl ServerAccess {
    /// The rule of `app`'s configuration and pair policy.
    pub fn new(app: &Chat) -> Self {
        Self { app: app.clone() }
    }
}

impl RoomAccess for ServerAccess {
    fn check<'a>(&'a self, user: &'a Sender, room: &'a RoomName) -> AccessCheck<'a> {
        Box::pin(async move {
            let forbidden = |m: String| Err(FrameError::new(ErrorCode::Forbidden, m));
            match (room.pair(), user.id) {
                (None, Some(_)) => Ok(()),
                (None, None) if self.app.config.allow_guests => Ok(()),
                (None, None) => forbidden("log in to join rooms".into()),
                (Some(_), None) => forbidden(format!("{room} is private; log in first")),
                (Some(pair), Some(id)) if pair.contains(id) => {
                    let role = user.role.as_deref().unwrap_or("");
                    match allowed_pair(&self.app, id, role, &pair).await {
                        Ok(_) => Ok(()),
                        Err(e) => Err(FrameError::new(e.code(), e.message())),
                    }
                }
                (Some(_), Some(_)) => forbidden(format!("you are not a member of {room}")),
            }
        })
    }
}
