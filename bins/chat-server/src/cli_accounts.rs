//! The account subcommands: `user add`, `user list`, `token issue`.

use std::io::{BufRead, IsTerminal, Write};

use chat_store::{AccountError, NewUser, Store};

use crate::cli::{TokenCommand, UserCommand};
use crate::config::ServerConfig;
use chat_rooms::server::auth::{password, token};
use chat_rooms::server::{check_password, check_username};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Reads the password: twice from the terminal without echo, or one line of standard input.
fn read_password() -> Result<String> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ")?;
        let again = rpassword::prompt_password("Password again: ")?;
        if first != again {
            return Err("the passwords differ".into());
        }
        Ok(first)
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    }
}

/// `chat-server user …`.
pub async fn user(store: &Store, config: &ServerConfig, cmd: UserCommand) -> Result<()> {
    match cmd {
        UserCommand::Add {
            username,
            name,
            role,
        } => {
            let username = username.trim().to_lowercase();
            check_username(&username)?;
            let name = config
                .chat
                .limits
                .check_guest_name(name.as_deref().unwrap_or(&username))
                .map_err(|e| format!("invalid --name: {e}"))?;
            let password = read_password()?;
            check_password(&password)?;
            let password_hash = password::hash(password).await.map_err(|e| e.to_string())?;
            let user = store
                .create_user(NewUser {
                    username,
                    display_name: name,
                    role: role.trim().to_owned(),
                    password_hash,
                })
                .await
                .map_err(|e| match e {
                    AccountError::UsernameTaken(u) => format!("the username {u:?} is taken"),
                    AccountError::Store(e) => e.to_string(),
                })?;
            println!(
                "created user {} (id {}, name {:?}, role {:?})",
                user.username, user.id, user.display_name, user.role
            );
        }
        UserCommand::List => {
            let users = store.users().await?;
            println!("{:>5}  {:<20} {:<24} role", "id", "username", "name");
            for u in users {
                println!(
                    "{:>5}  {:<20} {:<24} {}",
                    u.id, u.username, u.display_name, u.role
                );
            }
        }
    }
    Ok(())
}

/// `chat-server token …`: prints the token alone on standard output.
pub async fn token(store: &Store, config: &ServerConfig, cmd: TokenCommand) -> Result<()> {
    match cmd {
        TokenCommand::Issue { user, ttl } => {
            let seconds = token::parse_ttl(&ttl).map_err(|e| e.to_string())?;
            let now = chat_core::Timestamp::now().unix_millis() / 1_000;
            // Every user is checked before any token is printed: all or nothing.
            let mut tokens = Vec::with_capacity(user.len());
            for name in &user {
                let found = store
                    .user_with_password_hash(&name.trim().to_lowercase())
                    .await?
                    .ok_or_else(|| format!("there is no user {name:?}"))?;
                tokens.push(token::issue(
                    &config.chat.secret_key,
                    found.0.id,
                    now + seconds,
                ));
            }
            let mut out = std::io::stdout().lock();
            for t in tokens {
                writeln!(out, "{t}")?;
            }
        }
    }
    Ok(())
}
