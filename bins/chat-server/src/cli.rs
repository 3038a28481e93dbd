//! Command-line flags and environment variables (PROTOCOL.md, "Running the server").

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The chat server: public rooms by name, history and live messages over WebSocket.
#[derive(Debug, Parser)]
#[command(name = "chat-server", version, about)]
pub struct Cli {
    /// Settings shared by every subcommand.
    #[command(flatten)]
    pub settings: Settings,
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Check the configuration, the database and Redis, and say how to fix what is wrong.
    Doctor,
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage bearer tokens for services.
    #[command(subcommand)]
    Token(TokenCommand),
}

/// `chat-server user …`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user. The password is read from the terminal, or as one line of standard
    /// input when that is not a terminal.
    Add {
        /// Login name (3–32 of a-z 0-9 . _ -).
        #[arg(long)]
        username: String,
        /// Display name (defaults to the username).
        #[arg(long)]
        name: Option<String>,
        /// Role, free text such as tutor, vet or admin.
        #[arg(long, default_value = "")]
        role: String,
    },
    /// List users.
    List,
}

/// `chat-server token …`
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a signed bearer token for a user; with several `--user`, one line per user in
    /// the order given.
    Issue {
        /// The username (repeat for several users).
        #[arg(long, required = true)]
        user: Vec<String>,
        /// Lifetime: 90s, 30m, 1h, 7d.
        #[arg(long, default_value = "1h")]
        ttl: String,
    },
}

/// Flags shared by every subcommand, each with an environment variable.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Address to listen on (port 0 picks a free port).
    #[arg(
        long,
        env = "CHAT_BIND",
        default_value = "127.0.0.1:8000",
        global = true
    )]
    pub bind: SocketAddr,
    /// Directory for the SQLite file and the generated secret key.
    #[arg(long, env = "CHAT_DATA_DIR", default_value = "./data", global = true)]
    pub data_dir: PathBuf,
    /// Database URL; default: SQLite in the data directory.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,
    /// Redis URL for the channel layer; unset: the in-memory layer (one process).
    #[arg(long, env = "REDIS_URL", global = true, hide_env_values = true)]
    pub redis_url: Option<String>,
    /// SQLite: microseconds a send may wait to share a commit when the latest commit started
    /// that recently (0: none). Under load, commits then hold several messages, which a
    /// room's members receive as one batch; see docs/benchmarks.md.
    #[arg(
        long,
        env = "CHAT_COMMIT_INTERVAL_US",
        default_value_t = 1000,
        global = true
    )]
    pub commit_interval_us: u64,
    /// Prefix of the Redis topics, so several deployments can share one Redis.
    #[arg(long, env = "CHAT_REDIS_PREFIX", default_value = "chat", global = true)]
    pub redis_prefix: String,
    /// Seconds after which the users of a node that stopped (crashed) no longer count as
    /// online, with Redis; the other nodes announce their departure within this time.
    #[arg(long, env = "CHAT_PRESENCE_TTL", default_value_t = 30, global = true)]
    pub presence_ttl: u64,
    /// Secret key for signing; default: generated once and kept in the data directory.
    #[arg(long, env = "CHAT_SECRET_KEY", global = true, hide_env_values = true)]
    pub secret_key: Option<String>,
    /// Comma-separated origins allowed to open WebSockets (`https://chat.example.com`);
    /// default: the server's own host.
    #[arg(
        long,
        env = "CHAT_ALLOWED_ORIGINS",
        value_delimiter = ',',
        global = true
    )]
    pub allowed_origins: Vec<String>,
    /// Whether guests (no account, a `?name=`) may use public rooms.
    #[arg(long, env = "CHAT_ALLOW_GUESTS", default_value_t = true, action = clap::ArgAction::Set, global = true)]
    pub allow_guests: bool,
    /// Mark session cookies `Secure` (set this when the server is behind HTTPS).
    #[arg(long, env = "CHAT_SECURE_COOKIES", default_value_t = false, action = clap::ArgAction::Set, global = true)]
    pub secure_cookies: bool,
    /// Whether anyone may create an account with `POST /register`. Default: on for the
    /// embedded setup (no DATABASE_URL), off otherwise.
    #[arg(long, env = "CHAT_ALLOW_REGISTRATION", action = clap::ArgAction::Set, global = true)]
    pub allow_registration: Option<bool>,
    /// Who may open a private conversation with whom: `any` (anyone with anyone else), or
    /// `roles:tutor=vet` (only across these role pairs; several with commas:
    /// `roles:tutor=vet,vet=vet`). Applied on every path: room sockets, `/ws`, Socket.IO and
    /// the HTTP API.
    #[arg(long, env = "CHAT_PAIR_POLICY", default_value = "any", global = true)]
    pub pair_policy: String,
    /// The role every self-registered account gets (`tutor`, say); empty: none. Other roles
    /// are given with `chat-server user add --role`, never by the person registering.
    #[arg(long, env = "CHAT_REGISTER_ROLE", default_value = "", global = true)]
    pub register_role: String,
    /// Trust the `X-Forwarded-For` header for the client address (rate limits), as set by a
    /// reverse proxy in front of the server. Leave off when clients connect directly: they
    /// could forge it.
    #[arg(long, env = "CHAT_TRUST_PROXY", default_value_t = false, action = clap::ArgAction::Set, global = true)]
    pub trust_proxy: bool,
    /// Messages per second a connection may send, sustained (beyond the burst, sends get
    /// `rate_limited`).
    #[arg(
        long,
        env = "CHAT_MESSAGES_PER_SECOND",
        default_value_t = 20,
        global = true
    )]
    pub messages_per_second: u32,
    /// Seconds a write to a client may take (its TCP window full: it stopped reading) before
    /// the client is closed (1013) and its task, socket and queue are freed.
    #[arg(long, env = "CHAT_WRITE_TIMEOUT", default_value_t = 10, global = true)]
    pub write_timeout: u64,
    /// Most users a room announces one by one: in a room with more online, joins and leaves
    /// are not broadcast and `joined` lists this many (with the total in `online_count`).
    #[arg(
        long,
        env = "CHAT_PRESENCE_LIMIT",
        default_value_t = 500,
        global = true
    )]
    pub presence_limit: usize,
    /// Seconds a client has to send the whole body of a request once the server starts
    /// reading it. A body that stalls or trickles is answered 408 and its connection closed:
    /// without this, a client could hold a connection and a task forever (the request head
    /// has its own 30 s).
    #[arg(long, env = "CHAT_BODY_TIMEOUT", default_value_t = 30, global = true)]
    pub body_timeout: u64,
    /// Sockets one client address may hold at once: WebSockets on every route (Socket.IO's
    /// included) and held long-polls. Beyond it a handshake gets 429, so one address cannot
    /// take all of the server's connections. 0: no cap. The address is the peer's, or with
    /// `--trust-proxy` the one the proxy put in `X-Forwarded-For`.
    #[arg(
        long,
        env = "CHAT_MAX_SOCKETS_PER_IP",
        default_value_t = 256,
        global = true
    )]
    pub max_sockets_per_ip: usize,
    /// The largest attachment a member may upload, in bytes (files are kept in the data
    /// directory's `attachments/`).
    #[arg(
        long,
        env = "CHAT_MAX_ATTACHMENT_BYTES",
        default_value_t = 10 * 1024 * 1024,
        global = true
    )]
    pub max_attachment_bytes: usize,
    /// Messages a connection may send at once above the sustained rate.
    #[arg(long, env = "CHAT_MESSAGE_BURST", default_value_t = 40, global = true)]
    pub message_burst: u32,
    /// Speak the frames of other clients on their own URLs: `tutorials` makes `/ws/chat/…`
    /// and `/ws/socket-server/` answer exactly as the Channels tutorials' pages expect (see
    /// "Coming from the tutorials" in the README). Our own clients keep our protocol by
    /// asking for the `chat.v1` subprotocol.
    #[arg(long, env = "CHAT_COMPAT", value_enum, global = true)]
    pub compat: Option<Compat>,
    /// Serve `GET /metrics` (Prometheus) on this address, on a listener of its own (port 0
    /// picks a free port), instead of on the main listener to local requests only.
    #[arg(long, env = "CHAT_METRICS_BIND", global = true)]
    pub metrics_bind: Option<SocketAddr>,
    /// Record no metrics and serve no `/metrics` (every recording call is then a no-op): to
    /// measure what metrics cost, or where another system collects them.
    #[arg(
        long,
        env = "CHAT_NO_METRICS",
        global = true,
        conflicts_with = "metrics_bind"
    )]
    pub no_metrics: bool,
    /// Log filter (`info`, `debug`, `chat_ws=debug,info`…).
    #[arg(long, env = "CHAT_LOG", default_value = "info", global = true)]
    pub log: String,
    /// How log lines are written (to standard error): `text` for people, `json` for log
    /// collectors (one JSON object per line, with the fields of the request's or
    /// connection's span).
    #[arg(
        long,
        env = "CHAT_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,
}

/// The format of log lines (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line: `timestamp`, `level`, `fields` (with `message`), `target`,
    /// `span` and `spans`.
    Json,
}

/// Other clients' frames the server can speak (`--compat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Compat {
    /// The Django Channels tutorials' pages (seeds 000, 002, 003 and 004).
    Tutorials,
}
