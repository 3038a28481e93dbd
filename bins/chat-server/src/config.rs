//! Turns flags into the server's configuration: resolves defaults in the data directory.

use std::path::Path;
use std::sync::Arc;

use chat_core::Limits;

use chat_rooms::server::ChatConfig;
use chat_rooms::server::attachments::DirAttachments;

use crate::cli::{Compat, Settings};

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The data directory could not be created or read.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A setting has a value that cannot work.
    #[error("{0}")]
    Invalid(String),
}

/// The resolved configuration. Not `Debug`: it holds the secret key, which is never logged.
#[derive(Clone)]
pub struct ServerConfig {
    /// The settings as given.
    pub settings: Settings,
    /// The database URL to open.
    pub database_url: String,
    /// The Redis URL of the channel layer; `None`: the in-memory layer.
    pub redis_url: Option<String>,
    /// What the chat service gets.
    pub chat: ChatConfig,
}

impl ServerConfig {
    /// Resolves `settings`, creating the data directory and the secret key if needed.
    pub fn resolve(settings: Settings, utc_offset: time::UtcOffset) -> Result<Self, ConfigError> {
        let dir = &settings.data_dir;
        std::fs::create_dir_all(dir).map_err(|source| ConfigError::DataDir {
            path: dir.display().to_string(),
            source,
        })?;
        // An empty variable (`REDIS_URL=`) means "unset", as in most tools.
        let set = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
        let database_url = set(&settings.database_url)
            .unwrap_or_else(|| format!("sqlite://{}", dir.join("chat.db").display()));
        let secret_key = match &set(&settings.secret_key) {
            Some(k) if k.len() < 32 => {
                return Err(ConfigError::Invalid(
                    "CHAT_SECRET_KEY must be at least 32 characters".into(),
                ));
            }
            Some(k) => k.clone(),
            None => load_or_create_secret(dir)?,
        };
        let role = settings.register_role.trim();
        if role.chars().count() > 32 || role.chars().any(char::is_control) {
            return Err(ConfigError::Invalid(
                "CHAT_REGISTER_ROLE has at most 32 characters".into(),
            ));
        }
        if role.eq_ignore_ascii_case("admin") {
            return Err(ConfigError::Invalid(
                "CHAT_REGISTER_ROLE cannot be admin: anyone can register".into(),
            ));
        }
        let pair_policy = chat_core::policy::parse_pair_policy(&settings.pair_policy)
            .map_err(|e| ConfigError::Invalid(format!("CHAT_PAIR_POLICY: {e}")))?;
        if settings.messages_per_second == 0 {
            return Err(ConfigError::Invalid(
                "CHAT_MESSAGES_PER_SECOND must be at least 1".into(),
            ));
        }
        let limits = Limits {
            messages_per_second: settings.messages_per_second,
            message_burst: settings.message_burst,
            write_timeout: std::time::Duration::from_secs(settings.write_timeout.max(1)),
            presence_limit: settings.presence_limit,
            ..Limits::default()
        };
        // 0 would refuse every body: the shortest timeout is one second.
        let body_timeout = std::time::Duration::from_secs(settings.body_timeout.max(1));
        let allow_registration = settings
            .allow_registration
            .unwrap_or(set(&settings.database_url).is_none());
        let chat = ChatConfig {
            secret_key,
            limits,
            allow_guests: settings.allow_guests,
            allow_registration,
            register_role: role.to_owned(),
            allowed_origins: settings.allowed_origins.clone(),
            secure_cookies: settings.secure_cookies,
            trust_proxy: settings.trust_proxy,
            compat: settings.compat.map(|c| match c {
                Compat::Tutorials => chat_rooms::server::Compat::Tutorials,
            }),
            max_sockets_per_ip: settings.max_sockets_per_ip,
            utc_offset,
            pair_policy,
            body_timeout,
            authenticator: None,
            attachments: Some(Arc::new(DirAttachments::new(dir.join("attachments")))),
            max_attachment_bytes: settings.max_attachment_bytes,
            recent: chat_rooms::RecentConfig::default(),
        };
        Ok(Self {
            redis_url: set(&settings.redis_url),
            database_url,
            settings,
            chat,
        })
    }
}

/// Reads `<data dir>/secret_key`, creating it with 256 random bits on first start.
fn load_or_create_secret(dir: &Path) -> Result<String, ConfigError> {
    let path = dir.join("secret_key");
    let err = |source| ConfigError::DataDir {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(s) if s.trim().len() >= 32 => return Ok(s.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let bytes: [u8; 32] = rand::random();
    let key: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    write_private(&path, &key).map_err(err)?;
    Ok(key)
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(contents.as_bytes())
}
