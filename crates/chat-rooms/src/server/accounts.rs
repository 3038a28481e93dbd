//! Accounts over HTTP: login, logout, registration, and the session's user, contacts and
//! unread counts.

use std::collections::BTreeMap;
use std::net::IpAddr;

use chat_core::{ErrorCode, Member, PairRoom, Timestamp};
use chat_store::{AccountError, NewUser, User};
use http::{HeaderValue, Request, StatusCode, header};
use serde::Deserialize;
use serde_json::json;

use crate::server::app::Chat;
use crate::server::auth::{Identity, SessionKeys, authenticate, password, session};
use crate::server::pages;
use crate::server::respond::{ApiError, Resp, json, read_body, redirect, respond};

/// Largest login or registration body.
const FORM_LIMIT: usize = 8 * 1024;

/// The user as the API shows it.
pub fn user_json(u: &User) -> serde_json::Value {
    json!({"id": u.id, "username": u.username, "name": u.display_name, "role": u.role})
}

#[derive(Deserialize, Default)]
struct Credentials {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    next: Option<String>,
}

fn is_json<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

async fn read_credentials<B>(req: Request<B>) -> Result<Credentials, ApiError>
where
    B: hyper::body::Body + Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let json_body = is_json(&req);
    let bytes = read_body(req.into_body(), FORM_LIMIT).await?;
    if json_body {
        return serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidJson,
                format!("expected {{\"username\": \"...\", \"password\": \"...\"}}: {e}"),
            )
        });
    }
    let text = String::from_utf8_lossy(&bytes);
    let mut c = Credentials::default();
    for (k, v) in chat_ws::form_decode(&text) {
        match k.as_str() {
            "username" => c.username = v,
            "password" => c.password = v,
            "name" => c.name = Some(v),
            "role" => c.role = Some(v),
            "next" => c.next = Some(v),
            _ => {}
        }
    }
    Ok(c)
}

/// Only local paths are followed after login (no open redirect). Browsers drop tabs and line
/// breaks from URLs and read `\\` as `/`, so `/<TAB>/evil.example` would go off-site: a path
/// with a control character, a space or a backslash is refused, as is `//`.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n
                    .chars()
                    .any(|c| c.is_control() || c.is_whitespace() || c == '\\') =>
        {
            n
        }
        _ => "/",
    }
}

fn check_origin<B>(app: &Chat, req: &Request<B>) -> Result<(), ApiError> {
    if app.sockets.origins().check(req.headers()).is_ok() {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "cross-site requests are not allowed",
        ))
    }
}

/// Starts a session for `user` and answers like a successful login.
async fn start_session(
    app: &Chat,
    user: &User,
    json_reply: bool,
    next: Option<&str>,
) -> Result<Resp, ApiError> {
    let id = SessionKeys::new_session_id();
    let expires = Timestamp::from_unix_millis(
        Timestamp::now().unix_millis() + session::SESSION_TTL.whole_milliseconds() as i64,
    );
    app.store
        .create_session(&SessionKeys::id_hash(&id), user.id, expires)
        .await
        .map_err(|e| ApiError::store(&e))?;
    let (set_cookie, signed) = app.sessions.start(&id);
    let mut res = if json_reply {
        json(
            StatusCode::OK,
            &json!({"session": signed, "user": user_json(user)}),
        )
    } else {
        redirect(StatusCode::SEE_OTHER, safe_next(next))
    };
    if let Ok(v) = HeaderValue::from_str(&set_cookie) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(res)
}

fn form_error(json_reply: bool, e: ApiError) -> Resp {
    if json_reply {
        e.into_response()
    } else {
        let status = e.status();
        pages::error_page_with_link(status, e.message(), "/login", "Back to login")
    }
}

/// `POST /login` with `username` and `password` (form fields or JSON).
pub async fn login<B>(app: &Chat, peer: IpAddr, req: Request<B>) -> Resp
where
    B: hyper::body::Body + Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let json_reply = is_json(&req);
    match try_login(app, peer, req, json_reply).await {
        Ok(res) => res,
        Err(e) => form_error(json_reply, e),
    }
}

async fn try_login<B>(
    app: &Chat,
    peer: IpAddr,
    req: Request<B>,
    json_reply: bool,
) -> Result<Resp, ApiError>
where
    B: hyper::body::Body + Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    check_origin(app, &req)?;
    let creds = read_credentials(req).await?;
    let username = creds.username.trim().to_lowercase();
    if !app.login_by_ip.allows(&peer) || !app.login_by_user.allows(&username) {
        crate::observe::rate_limited("logins");
        crate::observe::login("rate_limited");
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RateLimited,
            "too many failed logins; wait a minute and try again",
        ));
    }
    let found = app
        .store
        .user_with_password_hash(&username)
        .await
        .map_err(|e| ApiError::store(&e))?;
    let (user, hash) = match found {
        Some((u, h)) => (Some(u), Some(h)),
        None => (None, None),
    };
    // Verified against a dummy hash when the user does not exist: same time, same answer.
    let ok = password::verify(creds.password, hash).await;
    match user {
        Some(user) if ok => {
            crate::observe::login("ok");
            start_session(app, &user, json_reply, creds.next.as_deref()).await
        }
        _ => {
            crate::observe::login("failed");
            app.login_by_ip.check(&peer);
            app.login_by_user.check(&username);
            tracing::info!(%peer, "failed login");
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::Forbidden,
                "wrong username or password",
            ))
        }
    }
}

/// `POST /logout`: ends the session server-side and clears the cookie.
pub async fn logout<B>(app: &Chat, req: Request<B>) -> Resp {
    let json_reply = is_json(&req);
    if let Err(e) = check_origin(app, &req) {
        return form_error(json_reply, e);
    }
    if let Some(id) =
        crate::server::auth::session_value((&req).into()).and_then(|v| app.sessions.verify(&v))
    {
        let hash = SessionKeys::id_hash(&id);
        if let Err(e) = app.store.delete_session(&hash).await {
            return form_error(json_reply, ApiError::store(&e));
        }
        // The session's open sockets, on every node, close (chat_ws::SESSION_ENDED_CODE).
        if let Some(group) = crate::server::auth::session_group(&hash) {
            let ended = chat_core::LayerMessage::new(chat_ws::SESSION_ENDED, json!({}));
            if let Err(e) = app.layer.group_send(&group, ended).await {
                tracing::warn!(error = %e, "could not close the sockets of a session that ended");
            }
        }
    }
    let mut res = if json_reply {
        json(StatusCode::OK, &json!({"ok": true}))
    } else {
        redirect(StatusCode::SEE_OTHER, "/")
    };
    if let Ok(v) = HeaderValue::from_str(&app.sessions.end()) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

/// A username or password that breaks the account rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidCredentials {
    /// Not 3–32 of `a-z 0-9 . _ -` starting with a letter or digit.
    #[error(
        "a username has 3 to 32 characters: a-z, 0-9, '.', '_' or '-', starting with a letter or digit"
    )]
    Username,
    /// Fewer characters than this.
    #[error("a password has at least {0} characters")]
    PasswordTooShort(usize),
    /// Over 1,024 characters.
    #[error("a password has at most 1,024 characters")]
    PasswordTooLong,
}

/// Checks a username: 3–32 of `a-z 0-9 . _ -`, starting with a letter or digit.
pub fn check_username(u: &str) -> Result<(), InvalidCredentials> {
    let ok_chars = u
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    let ok_start = u.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric());
    if (3..=32).contains(&u.len()) && ok_chars && ok_start {
        Ok(())
    } else {
        Err(InvalidCredentials::Username)
    }
}

/// Checks a new password.
pub fn check_password(p: &str) -> Result<(), InvalidCredentials> {
    let n = p.chars().count();
    if n < password::MIN_PASSWORD_CHARS {
        Err(InvalidCredentials::PasswordTooShort(
            password::MIN_PASSWORD_CHARS,
        ))
    } else if n > 1_024 {
        Err(InvalidCredentials::PasswordTooLong)
    } else {
        Ok(())
    }
}

/// `POST /register` (when enabled): creates an account and logs it in.
pub async fn register<B>(app: &Chat, peer: IpAddr, req: Request<B>) -> Resp
where
    B: hyper::body::Body + Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let json_reply = is_json(&req);
    match try_register(app, peer, req, json_reply).await {
        Ok(res) => res,
        Err(e) => form_error(json_reply, e),
    }
}

async fn try_register<B>(
    app: &Chat,
    peer: IpAddr,
    req: Request<B>,
    json_reply: bool,
) -> Result<Resp, ApiError>
where
    B: hyper::body::Body + Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidJson, m);
    if !app.config.allow_registration {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "registration is closed on this server; ask an administrator for an account",
        ));
    }
    check_origin(app, &req)?;
    if !app.login_by_ip.check(&peer) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RateLimited,
            "too many attempts from this address; wait a minute",
        ));
    }
    let creds = read_credentials(req).await?;
    let username = creds.username.trim().to_lowercase();
    check_username(&username).map_err(|e| bad(e.to_string()))?;
    check_password(&creds.password).map_err(|e| bad(e.to_string()))?;
    let name = app
        .config
        .limits
        .check_guest_name(creds.name.as_deref().unwrap_or(&username))
        .map_err(|e| bad(format!("invalid name: {e}")))?;
    // Anyone can register, so nobody picks their own role: it would let a stranger sign up as
    // a vet (or an admin). The server's configured role is the only one.
    let role = app.config.register_role.trim().to_owned();
    let asked = creds.role.as_deref().map(str::trim).unwrap_or("");
    if !asked.is_empty() && !asked.eq_ignore_ascii_case(&role) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            format!(
                "roles are given by the server's administrator (`chat-server user add --role`); \
                 registration gives {}",
                if role.is_empty() {
                    "no role".to_owned()
                } else {
                    format!("the role {role:?}")
                }
            ),
        ));
    }
    let password_hash = password::hash(creds.password).await.map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            e.to_string(),
        )
    })?;
    let user = app
        .store
        .create_user(NewUser {
            username,
            display_name: name,
            role,
            password_hash,
        })
        .await
        .map_err(|e| match e {
            AccountError::UsernameTaken(_) => ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::Forbidden,
                "that username is taken",
            ),
            AccountError::Store(e) => ApiError::store(&e),
        })?;
    start_session(app, &user, json_reply, creds.next.as_deref()).await
}

async fn require_user<B>(app: &Chat, req: &Request<B>) -> Result<User, ApiError> {
    match authenticate(app, req)
        .await
        .map_err(|e| ApiError::store(&e))?
    {
        Identity::User(u) => Ok(u),
        Identity::Anonymous => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden,
            "log in first",
        )),
    }
}

/// `GET /api/me`.
pub async fn me<B>(app: &Chat, req: &Request<B>) -> Resp {
    respond(
        require_user(app, req)
            .await
            .map(|u| json(StatusCode::OK, &user_json(&u))),
    )
}

/// `GET /api/unread`: `{"dm_3_8": 2, "lobby": 0}`.
pub async fn unread<B>(app: &Chat, req: &Request<B>) -> Resp {
    respond(
        async {
            let me = require_user(app, req).await?;
            let counts = app
                .store
                .unread(me.id)
                .await
                .map_err(|e| ApiError::store(&e))?;
            let map: BTreeMap<String, u64> = counts
                .into_iter()
                .map(|(room, n)| (room.to_string(), n))
                .collect();
            Ok(json(StatusCode::OK, &map))
        }
        .await,
    )
}

/// `GET /api/contacts`: the users the caller may talk with, each with the unread count of
/// their pair room.
pub async fn contacts<B>(app: &Chat, req: &Request<B>) -> Resp {
    respond(
        async {
            let me = require_user(app, req).await?;
            let users = app.store.users().await.map_err(|e| ApiError::store(&e))?;
            let unread: BTreeMap<String, u64> = app
                .store
                .unread(me.id)
                .await
                .map_err(|e| ApiError::store(&e))?
                .into_iter()
                .map(|(room, n)| (room.to_string(), n))
                .collect();
            let me_member = Member {
                id: me.id,
                role: &me.role,
            };
            let list: Vec<serde_json::Value> = users
                .iter()
                .filter(|u| {
                    app.policy.may_pair(
                        me_member,
                        Member {
                            id: u.id,
                            role: &u.role,
                        },
                    )
                })
                .filter_map(|u| {
                    let room = PairRoom::new(me.id, u.id).ok()?.name();
                    let mut v = user_json(u);
                    v["unread"] = json!(unread.get(room.as_str()).copied().unwrap_or(0));
                    v["room"] = json!(room.as_str());
                    Some(v)
                })
                .collect();
            Ok(json(StatusCode::OK, &list))
        }
        .await,
    )
}

/// `GET /api/config`: what the web client needs to know about this server.
pub fn config(app: &Chat) -> Resp {
    json(
        StatusCode::OK,
        &json!({
            "allow_guests": app.config.allow_guests,
            "allow_registration": app.config.allow_registration,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_and_passwords() {
        assert!(check_username("ana").is_ok());
        assert!(check_username("dr.bruno-2").is_ok());
        for bad in ["an", "Ana", "-ana", "a b", "ana!", &"a".repeat(33)] {
            assert!(check_username(bad).is_err(), "{bad}");
        }
        assert!(check_password("12345678").is_ok());
        assert!(check_password("1234567").is_err());
    }

    #[test]
    fn only_local_redirects() {
        assert_eq!(safe_next(Some("/dm/3/")), "/dm/3/");
        assert_eq!(safe_next(Some("//evil.example")), "/");
        assert_eq!(safe_next(Some("https://evil.example")), "/");
        assert_eq!(safe_next(Some("/\\evil")), "/");
        assert_eq!(safe_next(Some("/\t/evil.example/")), "/");
        assert_eq!(safe_next(Some("/\n/evil.example/")), "/");
        assert_eq!(safe_next(Some("/ /evil.example/")), "/");
        assert_eq!(safe_next(None), "/");
    }
}
