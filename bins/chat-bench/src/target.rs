//! The servers under test: `chat` (our chat-server, started fresh on a temporary data
//! directory), `baseline` (this binary's `baseline-server`, in its own process) or an
//! external server given by URL and PID (the Django peer, the Node Socket.IO peer), each
//! spoken to in one protocol (`--protocol`, one for all or one per `--against` entry).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;

use clap::ValueEnum;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::client::{Endpoint, Protocol};
use crate::socketio::Namespace;

/// Which server a scenario runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// Our chat-server (SQLite in a temporary directory unless `--database-url`).
    Chat,
    /// The bare tokio-tungstenite baseline.
    Baseline,
    /// An already running server: `--url` and `--pid`.
    External,
}

/// How to start or find the servers.
#[derive(Debug, Clone, clap::Args)]
pub struct TargetArgs {
    /// The servers to run the scenario against, in turn; results on `chat` and `external`
    /// are also given as a ratio to `baseline` when it ran. A server may come twice with
    /// different protocols: `--against chat,chat,external --protocol ours,socketio,socketio`.
    #[arg(long, value_delimiter = ',', default_value = "chat,baseline")]
    pub against: Vec<Kind>,
    /// The chat-server binary; default: `chat-server` beside this one.
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
    /// The chat-server's database; default: SQLite in its temporary data directory.
    /// PostgreSQL: `postgres://postgres@127.0.0.1:5432/chat_bench` (created beforehand).
    /// With `external` and `--secret-key`: the database of the chat-server (or cluster)
    /// behind `--url`, where `pairs` creates its accounts.
    #[arg(long)]
    pub database_url: Option<String>,
    /// The `--secret-key` of the external chat-server behind `--url`. With `--database-url`,
    /// the external server is treated as a chat-server: `pairs` creates real accounts and
    /// issues their tokens with `chat-server token issue`, as for a server it starts itself.
    #[arg(long)]
    pub secret_key: Option<String>,
    /// The external server's address (`ws://127.0.0.1:8300`), or its nodes' addresses,
    /// comma-separated: connection `n` goes to node `n % nodes`.
    #[arg(long, value_delimiter = ',')]
    pub url: Vec<String>,
    /// The external server's process id, or its nodes' (for memory and CPU, summed).
    #[arg(long, value_delimiter = ',')]
    pub pid: Vec<u32>,
    /// The protocol: one per `--against` entry, or one for all (then a server that does not
    /// speak it uses ours: the baseline speaks only ours, chat-server ours and socketio).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "ours")]
    pub protocol: Vec<Protocol>,
    /// The Socket.IO namespace; default `/chat` on chat-server (which acks joins and sends),
    /// `/` on an external server (assumed not to ack, as the Node peer).
    #[arg(long)]
    pub sio_namespace: Option<String>,
    /// Whether the Socket.IO server acks `join_chat` and `send_message`; default: yes on
    /// chat-server, no on an external server.
    #[arg(long)]
    pub sio_acks: Option<bool>,
    /// Names for the reports, one per `--against` entry (`--label chat,baseline,"Node
    /// socket.io"`); default: `chat`, `baseline`, the URL, with the protocol when not ours.
    #[arg(long, value_delimiter = ',')]
    pub label: Vec<String>,
    /// Start sending together with other chat-bench processes (one process may open only so
    /// many sockets): each, once its connections are set up, leaves a file in this directory
    /// and waits until `--parties` files are there. Without it, one process's set-up would
    /// load the server during another's measurement.
    #[arg(long, requires = "parties")]
    pub barrier: Option<PathBuf>,
    /// How many processes meet at `--barrier`.
    #[arg(long, requires = "barrier")]
    pub parties: Option<usize>,
}

impl TargetArgs {
    /// The protocol for `--against` entry number `i`, of kind `kind`.
    pub fn protocol(&self, i: usize, kind: Kind) -> Result<Protocol, String> {
        let speaks = |p: Protocol| match kind {
            Kind::Baseline => p == Protocol::Ours,
            Kind::Chat => p != Protocol::Django,
            Kind::External => true,
        };
        match self.protocol.as_slice() {
            [one] if speaks(*one) => Ok(*one),
            [_] => Ok(Protocol::Ours),
            many if many.len() == self.against.len() && speaks(many[i]) => Ok(many[i]),
            many if many.len() == self.against.len() => Err(format!(
                "--against {kind:?} does not speak --protocol {}",
                many[i].name()
            )),
            _ => Err("--protocol takes one value, or one per --against entry".into()),
        }
    }

    /// The Socket.IO namespace for a server of `kind`.
    fn namespace(&self, kind: Kind) -> Namespace {
        let (default, acks) = match kind {
            Kind::Chat => ("/chat", true),
            _ => ("/", false),
        };
        Namespace::new(
            self.sio_namespace.as_deref().unwrap_or(default),
            self.sio_acks.unwrap_or(acks),
        )
    }
}

/// A server ready for clients.
pub struct Target {
    /// `chat`, `baseline` or the external URL.
    pub name: String,
    /// Where it listens.
    pub endpoint: Endpoint,
    /// Its processes (one per node), for /proc readings.
    pub pids: Vec<u32>,
    /// The secret it signs tokens with (chat only).
    pub secret: String,
    /// Other chat-bench processes to start sending with (`--barrier`).
    pub barrier: Option<crate::engine::Barrier>,
    /// Its database URL (chat only).
    pub database_url: Option<String>,
    /// Its data directory (chat only).
    pub data_dir: Option<tempfile::TempDir>,
    child: Option<Child>,
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.start_kill();
        }
    }
}

fn barrier(args: &TargetArgs) -> Option<crate::engine::Barrier> {
    args.barrier
        .clone()
        .zip(args.parties)
        .map(|(dir, parties)| crate::engine::Barrier { dir, parties })
}

/// The chat-server binary to run.
pub fn server_bin(args: &TargetArgs) -> Result<PathBuf, String> {
    let bin = match &args.server_bin {
        Some(b) => b.clone(),
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("chat-server"),
    };
    if bin.exists() {
        Ok(bin)
    } else {
        Err(format!(
            "no chat-server binary at {}: build it with `cargo build --release -p chat-server` \
             (or pass --server-bin)",
            bin.display()
        ))
    }
}

/// Reads the `listening on http://ADDR` line a server prints when it is ready.
async fn listening_addr(child: &mut Child) -> Result<SocketAddr, String> {
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    while let Some(line) = lines.next_line().await.map_err(|e| e.to_string())? {
        if let Some(addr) = line.strip_prefix("listening on http://") {
            let addr = addr.trim().parse().map_err(|e| format!("{addr}: {e}"))?;
            // Keep draining stdout so the server never blocks on a full pipe.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return Ok(addr);
        }
    }
    Err("the server exited before listening".into())
}

fn random_secret() -> String {
    use std::hash::{BuildHasher, Hasher};
    (0..4)
        .map(|_| {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(crate::client::now_nanos());
            format!("{:016x}", h.finish())
        })
        .collect()
}

/// Starts (or finds) one target, spoken to in `protocol`.
pub async fn start(kind: Kind, protocol: Protocol, args: &TargetArgs) -> Result<Target, String> {
    let sio = args.namespace(kind);
    // Names other than the plain ones say which protocol the figures are for.
    let name = |plain: String| match protocol {
        Protocol::Ours => plain,
        p => format!("{plain} ({})", p.name()),
    };
    match kind {
        Kind::Chat => {
            let bin = server_bin(args)?;
            let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
            let database_url = args
                .database_url
                .clone()
                .unwrap_or_else(|| format!("sqlite://{}/chat.db", dir.path().display()));
            let secret = random_secret();
            let mut child = Command::new(bin)
                .args(["serve", "--bind", "127.0.0.1:0", "--log", "warn"])
                .arg("--data-dir")
                .arg(dir.path())
                .args(["--database-url", &database_url, "--secret-key", &secret])
                // The benchmark measures throughput, not the per-connection send limit, and
                // opens all its sockets (up to 10,000) from one address.
                .args([
                    "--messages-per-second",
                    "1000000",
                    "--message-burst",
                    "1000000",
                    "--max-sockets-per-ip",
                    "0",
                ])
                .env_remove("REDIS_URL")
                .stdout(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| format!("cannot start chat-server: {e}"))?;
            let addr = listening_addr(&mut child).await?;
            Ok(Target {
                name: name("chat".into()),
                endpoint: Endpoint {
                    addrs: vec![addr],
                    protocol,
                    sio,
                },
                pids: child.id().into_iter().collect(),
                secret,
                database_url: Some(database_url),
                data_dir: Some(dir),
                barrier: barrier(args),
                child: Some(child),
            })
        }
        Kind::Baseline => {
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            let mut child = Command::new(exe)
                .args(["baseline-server", "--bind", "127.0.0.1:0"])
                .stdout(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| format!("cannot start the baseline server: {e}"))?;
            let addr = listening_addr(&mut child).await?;
            Ok(Target {
                name: "baseline".into(),
                endpoint: Endpoint {
                    addrs: vec![addr],
                    protocol,
                    sio,
                },
                pids: child.id().into_iter().collect(),
                secret: String::new(),
                database_url: None,
                data_dir: None,
                barrier: barrier(args),
                child: Some(child),
            })
        }
        Kind::External => {
            if args.url.is_empty() {
                return Err("--against external needs --url".into());
            }
            let mut addrs = Vec::with_capacity(args.url.len());
            for url in &args.url {
                let hostport = url
                    .trim_start_matches("ws://")
                    .trim_start_matches("http://")
                    .trim_end_matches('/');
                let addr = tokio::net::lookup_host(hostport)
                    .await
                    .map_err(|e| format!("{url}: {e}"))?
                    .next()
                    .ok_or_else(|| format!("{url}: no address"))?;
                addrs.push(addr);
            }
            let url = args.url.join(",");
            Ok(Target {
                name: name(url),
                endpoint: Endpoint {
                    addrs,
                    protocol,
                    sio,
                },
                pids: args.pid.clone(),
                secret: args.secret_key.clone().unwrap_or_default(),
                database_url: args
                    .database_url
                    .clone()
                    .filter(|_| args.secret_key.is_some()),
                data_dir: None,
                barrier: barrier(args),
                child: None,
            })
        }
    }
}

impl Target {
    /// Whether this is our chat-server (which has accounts, pair rooms and a store): one it
    /// started, or an external one given with its database and secret key.
    pub fn is_chat(&self) -> bool {
        self.database_url.is_some() && !self.secret.is_empty()
    }

    /// Runs a chat-server subcommand against this target's data directory and database.
    pub async fn cli(&self, args: &[String], bin: &std::path::Path) -> Result<String, String> {
        let (true, Some(db)) = (self.is_chat(), &self.database_url) else {
            return Err("only chat-server has a CLI".into());
        };
        // An external server's data directory is not ours to touch: the subcommands used
        // here (accounts, tokens) keep everything in the database.
        let scratch;
        let dir = match &self.data_dir {
            Some(dir) => dir.path(),
            None => {
                scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
                scratch.path()
            }
        };
        let out = Command::new(bin)
            .args(args)
            .arg("--data-dir")
            .arg(dir)
            .args([
                "--database-url",
                db,
                "--secret-key",
                &self.secret,
                "--log",
                "warn",
            ])
            .output()
            .await
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}
