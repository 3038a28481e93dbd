//! Turns flags into the server's configuration: resolves defaults in the data directory.

use std::path::Path;

use chat_core::Limits;

use crate::cli::Settings;

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
    /// The key that signs session cookies and tokens.
    pub secret_key: String,
    /// Protocol limits.
    pub limits: Limits,
    /// Whether `POST /register` is open.
    pub allow_registration: bool,
    /// The server's time zone, for the tutorials' `HH:MM` times (read once at start).
    pub utc_offset: time::UtcOffset,
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
        if settings.messages_per_second == 0 {
            return Err(ConfigError::Invalid(
                "CHAT_MESSAGES_PER_SECOND must be at least 1".into(),
            ));
        }
        let limits = Limits {
            messages_per_second: settings.messages_per_second,
            message_burst: settings.message_burst,
            write_timeout: std::time::Duration::from_secs(settings.write_timeout.max(1)),
            ..Limits::default()
        };
        let allow_registration = settings
            .allow_registration
            .unwrap_or(set(&settings.database_url).is_none());
        Ok(Self {
            redis_url: set(&settings.redis_url),
            allow_registration,
            settings,
            database_url,
            secret_key,
            limits,
            utc_offset,
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
