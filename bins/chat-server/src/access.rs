//! Who may use which room: guests only public rooms (when allowed), pair rooms only their two
//! members. One rule for the WebSocket routes and the HTTP API.

use chat_core::{ErrorCode, PairRoom, RoomName};
use chat_store::User;
use http::StatusCode;

use crate::app::App;
use crate::auth::Identity;
use crate::respond::ApiError;

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

/// Decides whether `identity` may read and write `room`.
pub fn room_access(app: &App, identity: &Identity, room: &RoomName) -> Result<Access, ApiError> {
    match (room.pair(), identity) {
        (None, Identity::User(u)) => Ok(Access::User(u.clone())),
        (None, Identity::Anonymous) if app.config.settings.allow_guests => Ok(Access::Guest),
        (None, Identity::Anonymous) => Err(login_required("this server")),
        (Some(_), Identity::Anonymous) => Err(login_required("a private room")),
        (Some(pair), Identity::User(u)) if pair.contains(u.id) => Ok(Access::User(u.clone())),
        (Some(_), Identity::User(_)) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            format!("you are not a member of {room}"),
        )),
    }
}

/// Resolves `/dm/{user_id}/` for `me`: the other user must exist and the policy must allow
/// the pair.
pub async fn pair_with(app: &App, me: &User, other: &str) -> Result<(PairRoom, User), ApiError> {
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::Forbidden,
            format!("there is no user {other:?}"),
        )
    };
    let other_id: i64 = other.parse().map_err(|_| not_found())?;
    let pair = PairRoom::new(me.id, other_id).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidRoom,
            e.to_string(),
        )
    })?;
    let other = app
        .store
        .user(other_id)
        .await
        .map_err(|e| ApiError::store(&e))?
        .ok_or_else(not_found)?;
    let allowed = app.policy.may_pair(
        chat_core::Member {
            id: me.id,
            role: &me.role,
        },
        chat_core::Member {
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
    Ok((pair, other))
}
