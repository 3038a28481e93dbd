//! Test helpers: run the real `chat-server` binary on an ephemeral port, talk to it with real
//! WebSocket and HTTP clients.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod prom;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for something that must happen.
pub const WAIT: Duration = Duration::from_secs(10);

/// A running `chat-server` process.
pub struct Server {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
}

impl Server {
    /// Starts the server with a data directory and extra flags, and waits for its
    /// `listening on` line.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Self {
        Self::start_at(data_dir, "127.0.0.1:0", extra)
    }

    /// Starts the server on a given address (to restart it where clients expect it).
    pub fn start_at(data_dir: &Path, bind: &str, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_chat-server"))
            .args(["serve", "--bind", bind, "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env(
                "CHAT_LOG",
                std::env::var("TEST_CHAT_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .env_remove("DATABASE_URL")
            .env_remove("REDIS_URL")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start chat-server");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("chat-server exited before listening")
                .expect("read stdout");
            if let Some(rest) = line.strip_prefix("listening on http://") {
                break rest.trim().to_owned();
            }
        };
        Self { child, addr }
    }

    /// Starts the server with the log filter `log` (`CHAT_LOG`) and extra flags, collecting
    /// its standard error (where it logs) instead of passing it through, and waits for its
    /// `listening on` line.
    pub fn start_logged(data_dir: &Path, log: &str, extra: &[&str]) -> (Self, Logs) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_chat-server"))
            .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("CHAT_LOG", log)
            .env_remove("CHAT_LOG_FORMAT")
            .env_remove("DATABASE_URL")
            .env_remove("REDIS_URL")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chat-server");
        let logs = Logs::default();
        let stderr = child.stderr.take().expect("stderr");
        let collected = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                collected.0.lock().unwrap().push(line);
            }
        });
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            let line = lines
                .next()
                .unwrap_or_else(|| {
                    panic!("chat-server exited before listening: {:?}", logs.lines())
                })
                .expect("read stdout");
            if let Some(rest) = line.strip_prefix("listening on http://") {
                break rest.trim().to_owned();
            }
        };
        (Self { child, addr }, logs)
    }

    /// A `ws://` URL on this server.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// Stops the server with SIGTERM and returns whether it exited successfully.
    pub fn stop(mut self) -> bool {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.success();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "server did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server with SIGKILL (`kill -9`: no shutdown, no close frames) and waits for
    /// it to be gone.
    pub fn kill9(mut self) {
        use std::os::unix::process::ExitStatusExt;
        self.child.kill().expect("SIGKILL the server");
        let status = self.child.wait().expect("wait");
        assert_eq!(
            status.signal(),
            Some(9),
            "the server died of SIGKILL: {status}"
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A throwaway PostgreSQL database on the real server (dropped with the value); see
/// `chat_store::testing`. `CHAT_TEST_PG_URL` names another server than 127.0.0.1:5432.
pub async fn postgres() -> chat_store::testing::TestDatabase {
    let admin = std::env::var("CHAT_TEST_PG_URL")
        .unwrap_or_else(|_| chat_store::testing::DEFAULT_ADMIN_URL.into());
    chat_store::testing::TestDatabase::create(&admin)
        .await
        .expect("PostgreSQL for tests")
}

/// A WebSocket client.
pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    /// Connects, panicking on failure.
    pub async fn connect(url: &str) -> Self {
        Self::try_connect(url, None)
            .await
            .expect("websocket connect")
    }

    /// Connects, returning the HTTP status when the handshake is refused.
    pub async fn try_connect(url: &str, origin: Option<&str>) -> Result<Self, u16> {
        match origin {
            Some(o) => Self::try_connect_with(url, &[("origin", o)]).await,
            None => Self::try_connect_with(url, &[]).await,
        }
    }

    /// Connects with extra handshake headers (cookies, bearer tokens, origin).
    pub async fn try_connect_with(url: &str, headers: &[(&str, &str)]) -> Result<Self, u16> {
        let mut req = url.into_client_request().expect("request");
        for (k, v) in headers {
            req.headers_mut().insert(
                tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        match tokio_tungstenite::connect_async(req).await {
            Ok((ws, _)) => Ok(Self { ws }),
            Err(tungstenite::Error::Http(res)) => Err(res.status().as_u16()),
            Err(e) => panic!("websocket connect to {url}: {e}"),
        }
    }

    /// Sends a JSON frame.
    pub async fn send(&mut self, v: Value) {
        self.ws
            .send(Message::Text(v.to_string().into()))
            .await
            .expect("send");
    }

    /// Sends raw text.
    pub async fn send_text(&mut self, t: &str) {
        self.ws
            .send(Message::Text(t.to_owned().into()))
            .await
            .expect("send");
    }

    /// The next JSON frame, skipping control frames and presence news (`joined`,
    /// `presence`); use [`Client::recv_type`] to wait for those.
    pub async fn recv(&mut self) -> Value {
        loop {
            let v = self.recv_any().await;
            if v["type"] != "joined" && v["type"] != "presence" {
                return v;
            }
        }
    }

    /// The next JSON frame, whatever it is (control frames skipped).
    pub async fn recv_any(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("no frame within the wait")
                .expect("socket closed")
                .expect("socket error");
            match msg {
                Message::Text(t) => return serde_json::from_str(&t).expect("JSON frame"),
                Message::Close(f) => panic!("closed while waiting for a frame: {f:?}"),
                _ => continue,
            }
        }
    }

    /// The next frame of a given type, skipping others (for example echoes).
    pub async fn recv_type(&mut self, kind: &str) -> Value {
        loop {
            let v = self.recv_any().await;
            if v["type"] == kind {
                return v;
            }
        }
    }

    /// Waits for the server's close frame and returns its code.
    pub async fn closed(&mut self) -> Option<u16> {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("not closed within the wait");
            match msg {
                Some(Ok(Message::Close(f))) => return f.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// Waits `within` and returns whether no text frame arrived.
    pub async fn silent(&mut self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return true,
                Ok(Some(Ok(Message::Text(t)))) => {
                    eprintln!("unexpected frame: {t}");
                    return false;
                }
                Ok(Some(Ok(_))) => continue,
                Ok(_) => return false,
            }
        }
    }

    /// Sends a raw message (for oversized frames).
    pub async fn send_raw(&mut self, m: Message) {
        let _ = self.ws.send(m).await;
    }

    /// Sends a JSON frame; `false` when the socket is gone (for tests where servers die).
    pub async fn try_send(&mut self, v: &Value) -> bool {
        self.ws
            .send(Message::Text(v.to_string().into()))
            .await
            .is_ok()
    }

    /// The next JSON text frame or the end of the socket, whichever comes first (control
    /// frames skipped); `None` when neither came by `deadline`. Never panics on a dead
    /// connection, for tests where servers die.
    pub async fn next_event(&mut self, deadline: tokio::time::Instant) -> Option<Event> {
        loop {
            let msg = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .ok()?;
            match msg {
                Some(Ok(Message::Text(t))) => {
                    return Some(Event::Frame(serde_json::from_str(&t).expect("JSON frame")));
                }
                Some(Ok(Message::Close(f))) => {
                    return Some(Event::Closed(f.map(|f| u16::from(f.code))));
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Some(Event::Closed(None)),
            }
        }
    }
}

/// What [`Client::next_event`] saw.
#[derive(Debug)]
pub enum Event {
    /// A JSON text frame.
    Frame(Value),
    /// The socket ended: the server's close code, or `None` when the connection just dropped.
    Closed(Option<u16>),
}

/// A minimal HTTP/1.1 client: one request per connection.
pub async fn http(addr: &str, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let r = request(
        addr,
        method,
        path,
        &[("content-type", "application/json")],
        body,
    )
    .await;
    (r.status, r.body)
}

/// A response: status, raw header lines, body.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    /// The first header with this (lowercase) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// An HTTP request with headers.
pub async fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Reply {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let body = body.unwrap_or("");
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut raw))
        .await
        .expect("response in time")
        .expect("read");
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").expect("HTTP response");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// Runs a `chat-server` subcommand on a data directory, with `stdin` as its input; returns
/// (success, stdout, stderr).
pub fn cli(data_dir: &Path, args: &[&str], stdin: &str) -> (bool, String, String) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_chat-server"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env("CHAT_LOG", "warn")
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run chat-server");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Creates a user with the CLI and returns its id.
pub fn add_user(data_dir: &Path, username: &str, name: &str, role: &str, password: &str) -> i64 {
    add_user_in(data_dir, &[], username, name, role, password)
}

/// Creates a user with the CLI given extra flags (such as `--database-url`); returns its id.
pub fn add_user_in(
    data_dir: &Path,
    flags: &[&str],
    username: &str,
    name: &str,
    role: &str,
    password: &str,
) -> i64 {
    let mut args = vec![
        "user",
        "add",
        "--username",
        username,
        "--name",
        name,
        "--role",
        role,
    ];
    args.extend_from_slice(flags);
    let (ok, out, err) = cli(data_dir, &args, &format!("{password}\n"));
    assert!(ok, "user add failed: {err}");
    out.split("(id ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no id in {out:?}"))
}

/// Logs in over the JSON API; returns the session value (`?session=`) and the cookie pair.
pub async fn login(addr: &str, username: &str, password: &str) -> (String, String) {
    let body = serde_json::json!({"username": username, "password": password}).to_string();
    let r = request(
        addr,
        "POST",
        "/login",
        &[("content-type", "application/json")],
        Some(&body),
    )
    .await;
    assert_eq!(r.status, 200, "login {username}: {}", r.body);
    let session = r.json()["session"].as_str().expect("session").to_owned();
    let cookie = r
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .expect("set-cookie")
        .to_owned();
    (session, cookie)
}

/// An HTTP request whose body is JSON.
pub async fn http_json(addr: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let body = body.map(|b| b.to_string());
    let (status, text) = http(addr, method, path, body.as_deref()).await;
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, v)
}

/// Percent-encodes a query value.
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The lines a server wrote to its standard error (its logs), collected as they come
/// ([`Server::start_logged`]).
#[derive(Clone, Default)]
pub struct Logs(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl Logs {
    /// Every line so far.
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    /// Every line so far, parsed as JSON (`--log-format json`); panics on a line that is not.
    pub fn json(&self) -> Vec<Value> {
        self.lines()
            .iter()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("log line not JSON ({e}): {l}"))
            })
            .collect()
    }

    /// Waits (up to `within`) until the JSON lines satisfy `done`, and returns them.
    pub async fn wait_json(
        &self,
        what: &str,
        within: Duration,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = std::time::Instant::now() + within;
        loop {
            let lines = self.json();
            if done(&lines) {
                return lines;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{what}: not within {within:?}; logs:\n{}",
                self.lines().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The message of a JSON log line (`fields.message`), or "".
pub fn log_message(line: &Value) -> &str {
    line["fields"]["message"].as_str().unwrap_or("")
}

/// A `redis-server` of the test's own on a spare port (never the shared one on 6379).
/// Whether a Redis server answers `PING` on `port` (not just anything accepting connections).
fn redis_answers(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut conn) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(1)));
    let mut answer = [0u8; 7];
    conn.write_all(b"PING\r\n").is_ok()
        && conn.read_exact(&mut answer).is_ok()
        && &answer == b"+PONG\r\n"
}

pub struct OwnRedis {
    child: Child,
    /// Its port.
    pub port: u16,
}

impl OwnRedis {
    /// Starts one on `port` (0: a spare one) and waits until it answers `PING`. A spare port
    /// can be taken by another test's server between our probe and redis-server's bind: then
    /// redis-server exits, and this tries another port rather than trusting whoever answers.
    pub fn start(port: u16) -> Self {
        for _ in 0..5 {
            let chosen = if port == 0 {
                std::net::TcpListener::bind("127.0.0.1:0")
                    .unwrap()
                    .local_addr()
                    .unwrap()
                    .port()
            } else {
                port
            };
            let mut child = Command::new("redis-server")
                .args(["--bind", "127.0.0.1", "--port", &chosen.to_string()])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .spawn()
                .expect("redis-server is installed on this machine");
            let deadline = std::time::Instant::now() + WAIT;
            loop {
                if child.try_wait().ok().flatten().is_some() {
                    break; // it could not bind: another port
                }
                if redis_answers(chosen) {
                    return Self {
                        child,
                        port: chosen,
                    };
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "redis-server did not start"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            assert_eq!(port, 0, "redis-server could not listen on port {port}");
        }
        panic!("redis-server found no spare port in 5 tries");
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills it.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A PostgreSQL server of the test's own, in a temporary directory on a spare port, for tests
/// that stop and restart PostgreSQL (never the shared one on 5432, which other tests use).
/// PostgreSQL refuses to run as root: when the tests run as root, its programs run as the
/// `postgres` user (`runuser`), in a directory owned by that user.
pub struct OwnPostgres {
    dir: tempfile::TempDir,
    bin: std::path::PathBuf,
    as_postgres: bool,
    running: bool,
    /// Its port.
    pub port: u16,
}

impl OwnPostgres {
    /// Creates a cluster (`initdb`), starts it and waits until it accepts connections. Fails
    /// loudly when PostgreSQL's server programs are not installed.
    pub fn start() -> Self {
        let bin = pg_bin_dir();
        let as_postgres = command_output("id", &["-u"]) == "0";
        let dir = tempfile::tempdir().expect("temporary directory");
        if as_postgres {
            let uid = command_output("id", &["-u", "postgres"])
                .parse()
                .expect("uid");
            let gid = command_output("id", &["-g", "postgres"])
                .parse()
                .expect("gid");
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .expect("give the temporary directory to the postgres user");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut pg = Self {
            dir,
            bin,
            as_postgres,
            running: false,
            port,
        };
        let data = pg.data_dir();
        pg.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        );
        pg.restart();
        pg
    }

    /// Its URL (the `postgres` database, user `postgres`, no password).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops it (`pg_ctl stop -m fast`: open connections are cut, open transactions roll
    /// back) and waits until it is down.
    pub fn stop(&mut self) {
        let data = self.data_dir();
        self.run(
            "pg_ctl",
            &["-D", &data, "-m", "fast", "-w", "-t", "20", "stop"],
        );
        self.running = false;
    }

    /// Starts it (again) on the same port and waits until it accepts connections.
    pub fn restart(&mut self) {
        let data = self.data_dir();
        let log = self.dir.path().join("log").display().to_string();
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        self.run(
            "pg_ctl",
            &[
                "-D", &data, "-l", &log, "-o", &opts, "-w", "-t", "20", "start",
            ],
        );
        self.running = true;
        let deadline = std::time::Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "PostgreSQL on port {} does not accept connections",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn data_dir(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// Runs one of PostgreSQL's programs (as the `postgres` user when we are root).
    fn run(&self, program: &str, args: &[&str]) {
        let path = self.bin.join(program);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&path);
            c
        } else {
            Command::new(&path)
        };
        let out = cmd
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", path.display()));
        if !out.status.success() {
            let log = std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default();
            panic!(
                "{} {args:?} failed ({}):\n{}{}\nserver log:\n{log}",
                path.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        if self.running {
            let data = self.data_dir();
            let path = self.bin.join("pg_ctl");
            let mut cmd = if self.as_postgres {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(&path);
                c
            } else {
                Command::new(&path)
            };
            let _ = cmd
                .args(["-D", &data, "-m", "immediate", "-w", "stop"])
                .current_dir(self.dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The directory of PostgreSQL's server programs: the newest `/usr/lib/postgresql/*/bin`
/// (Debian), else `pg_config --bindir`.
fn pg_bin_dir() -> std::path::PathBuf {
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .max();
    if let Some((_, bin)) = newest {
        return bin;
    }
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| std::path::PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .filter(|bin| bin.join("initdb").exists());
    from_pg_config.expect(
        "PostgreSQL's server programs (initdb, pg_ctl) are not installed: \
         apt-get install postgresql",
    )
}

/// The trimmed standard output of a command that must succeed.
fn command_output(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(out.status.success(), "{program} {args:?} failed");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
