//! The fault suite's traffic: the peers, what they send and expect, and the checks of what
//! every client saw (see `faults.rs`).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::block_in_place;
use tokio::time::Instant;

use crate::common::{Client, Event, add_user_in, login, request};

/// Messages each peer sends.
pub const MESSAGES: usize = 80;
/// Messages a peer has in flight (sent, not yet acked) at most.
pub const WINDOW: usize = 8;
/// A peer sends at most one message per this: the fault must find traffic still flowing.
pub const PACE: Duration = Duration::from_millis(10);
/// Acks (of the 4 × 80 messages) before the fault.
pub const FAULT_AT: usize = 60;
/// How long a peer may take for everything, fault included.
pub const PEER_DEADLINE: Duration = Duration::from_secs(20);
/// How long the test waits for one step of the traffic.
pub const STEP: Duration = Duration::from_secs(15);
/// The traffic is paced by the peers; the servers' per-connection rate limit stays out of it.
pub const NO_RATE_LIMIT: [&str; 4] = ["--messages-per-second", "1000", "--message-burst", "1000"];

// ---------------------------------------------------------------------------------------------
// The cast: two users with a pair room, two guests.

pub struct Users {
    pub ana_cookie: String,
    pub bruno_cookie: String,
    /// The guests' `chat_guest` cookies: a guest is the guest of its cookie, which its
    /// reconnects keep (as a browser's do), so its resends are recognised as its retries.
    pub gina_cookie: String,
    pub gus_cookie: String,
    pub bruno_id: i64,
    /// The pair room of ana and bruno.
    pub pair: String,
}

impl Users {
    /// Creates ana and bruno in the nodes' database and logs them in (on `addr`).
    pub async fn create(dir: &Path, database_url: &str, addr: &str) -> Self {
        let flags = ["--database-url", database_url];
        let ana_id = block_in_place(|| add_user_in(dir, &flags, "ana", "Ana", "tutor", "pw-ana-1"));
        let bruno_id =
            block_in_place(|| add_user_in(dir, &flags, "bruno", "Bruno", "vet", "pw-bruno-1"));
        let (_, ana_cookie) = login(addr, "ana", "pw-ana-1").await;
        let (_, bruno_cookie) = login(addr, "bruno", "pw-bruno-1").await;
        Self {
            ana_cookie,
            bruno_cookie,
            gina_cookie: guest_cookie(addr).await,
            gus_cookie: guest_cookie(addr).await,
            bruno_id,
            pair: format!("dm_{}_{}", ana_id.min(bruno_id), ana_id.max(bruno_id)),
        }
    }

    /// The four peers: ana and the guest gina on node A, bruno and the guest gus on node B.
    pub fn peers(&self, a: &Route, b: &Route) -> Vec<(Spec, Route)> {
        let spec = |name: &str, cookie: Option<String>, rooms: [&str; 2]| Spec {
            name: name.to_owned(),
            cookie,
            rooms: rooms.iter().map(|r| (*r).to_owned()).collect(),
        };
        let pair = self.pair.as_str();
        vec![
            (
                spec("ana", Some(self.ana_cookie.clone()), ["lobby", pair]),
                a.clone(),
            ),
            (
                spec("gina", Some(self.gina_cookie.clone()), ["lobby", "games"]),
                a.clone(),
            ),
            (
                spec("bruno", Some(self.bruno_cookie.clone()), [pair, "games"]),
                b.clone(),
            ),
            (
                spec("gus", Some(self.gus_cookie.clone()), ["games", "lobby"]),
                b.clone(),
            ),
        ]
    }
}

/// A new browser's guest cookie (`chat_guest=…`), as the web client's index page sets it.
async fn guest_cookie(addr: &str) -> String {
    let page = request(addr, "GET", "/", &[], None).await;
    page.headers
        .iter()
        .filter(|(k, _)| k == "set-cookie")
        .filter_map(|(_, v)| v.split(';').next())
        .find(|c| c.starts_with("chat_guest="))
        .expect("the index page sets the guest cookie")
        .to_owned()
}

// ---------------------------------------------------------------------------------------------
// A peer: one `/ws` connection at a time, sending its messages and reading its rooms.

/// Where a peer connects: (generation, address). A peer whose socket ended waits for a newer
/// generation (the test sets it once the node to go to is up).
type Route = watch::Receiver<(u32, String)>;

#[derive(Clone)]
pub struct Spec {
    pub name: String,
    /// Logged-in users send their session cookie, guests their guest cookie.
    pub cookie: Option<String>,
    pub rooms: Vec<String>,
}

/// What a peer is doing, for the test to wait on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Sending,
    /// Refused by the store and waiting for the test to say it is back, nothing in flight.
    Stalled,
    /// Every message acked.
    Done,
}

/// The traffic's progress, updated by the peers.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    /// Messages acked (first acks only).
    pub acked: usize,
    /// Error frames received.
    pub errors: usize,
    /// Sockets that ended.
    pub closed: usize,
    pub state: Vec<State>,
    /// The highest acked seq of each room.
    pub top: BTreeMap<String, u64>,
}

/// What a peer did and saw.
#[derive(Debug, Default)]
pub struct Report {
    pub name: String,
    pub rooms: Vec<String>,
    /// Message frames sent, resends included.
    pub sent: usize,
    /// Of which resends (after a refusal or a broken socket).
    pub resent: usize,
    /// `client_id` → (room, seq).
    pub acked: BTreeMap<String, (String, u64)>,
    pub errors: Vec<Value>,
    /// Room → (seq, client_id) in arrival order.
    pub received: BTreeMap<String, Vec<(u64, String)>>,
    /// Messages replayed to it after a reconnect (`since`).
    pub resumed: usize,
    /// Resends that the server had stored already (the last acked message, sent again after a
    /// reconnect or a store outage, and any in flight on a broken socket that was stored),
    /// acked with their first seq (de-duplicated on `client_id`) instead of stored again.
    pub deduplicated: usize,
    /// How each of its sockets ended (close code; `None`: the connection just dropped).
    pub closes: Vec<Option<u16>>,
    pub problems: Vec<String>,
}

pub struct Links {
    pub index: usize,
    pub route: Route,
    pub progress: Arc<watch::Sender<Progress>>,
    /// Bumped by the test when the store is back.
    pub recovered: watch::Receiver<u32>,
    /// Set by the test when every peer is done: the last seq of every room.
    pub targets: watch::Receiver<Option<BTreeMap<String, u64>>>,
    /// `store_unavailable` is expected (the store is being restarted): stop sending until
    /// `recovered` moves.
    pub store_outage: bool,
    pub deadline: Instant,
}

pub async fn open(addr: &str, spec: &Spec) -> Client {
    let url = format!("ws://{addr}/ws?name={}", spec.name);
    let headers: Vec<(&str, &str)> = spec.cookie.iter().map(|c| ("cookie", c.as_str())).collect();
    Client::try_connect_with(&url, &headers)
        .await
        .unwrap_or_else(|s| panic!("{} could not connect to {addr}: HTTP {s}", spec.name))
}

/// The message number in a `client_id` of this peer (`name-N`).
pub fn number(spec: &Spec, v: &Value) -> Option<usize> {
    v["client_id"]
        .as_str()?
        .strip_prefix(&spec.name)?
        .strip_prefix('-')?
        .parse()
        .ok()
}

pub async fn peer(spec: Spec, mut l: Links) -> Report {
    let mut r = Report {
        name: spec.name.clone(),
        rooms: spec.rooms.clone(),
        ..Report::default()
    };
    // The last seq seen in each room: where a reconnect resumes.
    let mut last: BTreeMap<String, u64> = spec.rooms.iter().map(|room| (room.clone(), 0)).collect();
    // After a reconnect: the room's last seq at the rejoin (what is replayed).
    let mut replay_to: BTreeMap<String, u64> = BTreeMap::new();
    let mut next = 0;
    let mut resend: VecDeque<usize> = VecDeque::new();
    // The message acked last: sent once more after a reconnect or a store outage, as by a
    // client whose ack was lost; the server must answer with its first seq and store nothing.
    let mut last_acked: Option<usize> = None;
    let mut in_flight: BTreeSet<usize> = BTreeSet::new();
    let mut paused = false;
    let mut generation = 0;
    let mut connections = 0;
    let mut conn: Option<Client> = None;
    let mut state = State::Sending;
    let mut next_send = Instant::now();
    loop {
        let c = match &mut conn {
            Some(c) => c,
            slot => {
                let route = tokio::time::timeout_at(
                    l.deadline,
                    l.route
                        .wait_for(|(g, _)| connections == 0 || *g > generation),
                )
                .await;
                let Ok(Ok(route)) = route.map(|r| r.map(|r| r.clone())) else {
                    r.problems
                        .push("no node to reconnect to before the deadline".into());
                    return r;
                };
                let (g, addr) = route;
                generation = g;
                let mut c = open(&addr, &spec).await;
                connections += 1;
                for room in &spec.rooms {
                    c.try_send(&json!({"type": "join", "room": room, "since": last[room]}))
                        .await;
                }
                // Whatever was in flight on the broken socket goes again, first.
                for i in in_flight.iter().rev() {
                    resend.push_front(*i);
                }
                in_flight.clear();
                if connections > 1 {
                    resend.extend(last_acked.filter(|i| !resend.contains(i)));
                }
                slot.insert(c)
            }
        };

        // Send while the window and the pace allow.
        let mut more = false;
        if !paused {
            while in_flight.len() < WINDOW {
                let i = if let Some(&i) = resend.front() {
                    i
                } else if next < MESSAGES {
                    next
                } else {
                    break;
                };
                if Instant::now() < next_send {
                    more = true;
                    break;
                }
                if resend.pop_front().is_some() {
                    r.resent += 1;
                } else {
                    next += 1;
                }
                next_send = Instant::now() + PACE;
                let room = &spec.rooms[i % spec.rooms.len()];
                let id = format!("{}-{i}", spec.name);
                r.sent += 1;
                in_flight.insert(i);
                let frame = json!({"type": "message", "room": room, "body": id, "client_id": id});
                if !c.try_send(&frame).await {
                    break; // the socket is gone: the read below says how
                }
            }
        }

        let now = if r.acked.len() == MESSAGES && in_flight.is_empty() && resend.is_empty() {
            State::Done
        } else if paused && in_flight.is_empty() {
            State::Stalled
        } else {
            State::Sending
        };
        if now != state {
            state = now;
            l.progress.send_modify(|p| p.state[l.index] = now);
        }
        if state == State::Done {
            let targets = l.targets.borrow_and_update().clone();
            if let Some(t) = targets {
                let caught_up = spec
                    .rooms
                    .iter()
                    .all(|room| last[room] >= t.get(room).copied().unwrap_or(0));
                if caught_up {
                    return r;
                }
            }
        }

        let event = tokio::select! {
            e = c.next_event(l.deadline) => e,
            () = tokio::time::sleep_until(next_send), if more => continue,
            _ = l.recovered.changed(), if paused => {
                paused = false;
                resend.extend(last_acked.filter(|i| !resend.contains(i)));
                continue;
            }
            changed = l.targets.changed(), if state == State::Done => {
                if changed.is_err() {
                    r.problems.push("the test went away".into());
                    return r;
                }
                continue;
            }
        };
        let v = match event {
            None => {
                r.problems.push(format!(
                    "timed out ({state:?}): acked {}/{MESSAGES}, in flight {in_flight:?}, \
                     to resend {resend:?}, last seen {last:?}, targets {:?}",
                    r.acked.len(),
                    *l.targets.borrow()
                ));
                return r;
            }
            Some(Event::Closed(code)) => {
                r.closes.push(code);
                conn = None;
                paused = false;
                l.progress.send_modify(|p| p.closed += 1);
                continue;
            }
            Some(Event::Frame(v)) => v,
        };
        match v["type"].as_str() {
            Some("ack") => {
                let (Some(i), Some(room), Some(seq)) =
                    (number(&spec, &v), v["room"].as_str(), v["seq"].as_u64())
                else {
                    r.problems.push(format!("an ack that is not ours: {v}"));
                    continue;
                };
                if room != spec.rooms[i % spec.rooms.len()] {
                    r.problems.push(format!("an ack for the wrong room: {v}"));
                }
                let id = format!("{}-{i}", spec.name);
                if !in_flight.remove(&i) {
                    r.problems.push(format!(
                        "an ack for {id}, which is not in flight (refused, or acked already)"
                    ));
                }
                match r.acked.get(&id) {
                    Some((_, first)) if *first != seq => r.problems.push(format!(
                        "{id} acked as seq {first} and again as seq {seq}: stored twice"
                    )),
                    // Acks are idempotent on client_id.
                    Some(_) => r.deduplicated += 1,
                    None => {
                        if replay_to.get(room).is_some_and(|&to| seq <= to) {
                            // Stored before the reconnect; its ack was lost with the socket.
                            r.deduplicated += 1;
                        }
                        last_acked = Some(i);
                        r.acked.insert(id, (room.to_owned(), seq));
                        l.progress.send_modify(|p| {
                            p.acked += 1;
                            let top = p.top.entry(room.to_owned()).or_default();
                            *top = (*top).max(seq);
                        });
                    }
                }
            }
            Some("error") => {
                r.errors.push(v.clone());
                l.progress.send_modify(|p| p.errors += 1);
                match number(&spec, &v) {
                    Some(i) => {
                        if in_flight.remove(&i) {
                            resend.push_back(i);
                        } else {
                            r.problems
                                .push(format!("an error for a message not in flight: {v}"));
                        }
                    }
                    None => r
                        .problems
                        .push(format!("an error for no message of ours: {v}")),
                }
                if l.store_outage && v["code"] == "store_unavailable" {
                    if !paused {
                        paused = true;
                        l.recovered.borrow_and_update();
                    }
                } else {
                    r.problems.push(format!("unexpected error: {v}"));
                }
            }
            Some("message") => {
                let (Some(room), Some(seq)) = (v["room"].as_str(), v["seq"].as_u64()) else {
                    r.problems.push(format!("a malformed message: {v}"));
                    continue;
                };
                let Some(prev) = last.get_mut(room) else {
                    r.problems
                        .push(format!("a message of a room not joined: {v}"));
                    continue;
                };
                if seq != *prev + 1 {
                    let what = if seq <= *prev { "duplicate" } else { "gap" };
                    r.problems
                        .push(format!("{room}: seq {seq} after {prev} ({what})"));
                }
                *prev = (*prev).max(seq);
                let id = v["client_id"].as_str().unwrap_or_default().to_owned();
                r.received
                    .entry(room.to_owned())
                    .or_default()
                    .push((seq, id));
                if replay_to.get(room).is_some_and(|&to| seq <= to) {
                    r.resumed += 1;
                }
            }
            Some("joined") => {
                if connections > 1 {
                    let room = v["room"].as_str().unwrap_or_default().to_owned();
                    replay_to.insert(room, v["last_seq"].as_u64().unwrap_or_default());
                }
            }
            Some("presence" | "typing") => {}
            _ => r.problems.push(format!("an unexpected frame: {v}")),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The test's side of the traffic.

pub struct Traffic {
    pub progress: watch::Receiver<Progress>,
    pub recovered: watch::Sender<u32>,
    pub targets: watch::Sender<Option<BTreeMap<String, u64>>>,
    pub peers: Vec<(String, tokio::task::JoinHandle<Report>)>,
}

impl Traffic {
    /// Starts the peers; `store_outage`: the store will be down for a while.
    pub fn start(peers: Vec<(Spec, Route)>, store_outage: bool) -> Self {
        let (progress_tx, progress) = watch::channel(Progress {
            state: vec![State::Sending; peers.len()],
            ..Progress::default()
        });
        let progress_tx = Arc::new(progress_tx);
        let (recovered, recovered_rx) = watch::channel(0);
        let (targets, targets_rx) = watch::channel(None);
        let deadline = Instant::now() + PEER_DEADLINE;
        let peers = peers
            .into_iter()
            .enumerate()
            .map(|(index, (spec, route))| {
                let links = Links {
                    index,
                    route,
                    progress: progress_tx.clone(),
                    recovered: recovered_rx.clone(),
                    targets: targets_rx.clone(),
                    store_outage,
                    deadline,
                };
                (spec.name.clone(), tokio::spawn(peer(spec, links)))
            })
            .collect();
        Self {
            progress,
            recovered,
            targets,
            peers,
        }
    }

    /// Messages acked so far.
    pub fn acked(&self) -> usize {
        self.progress.borrow().acked
    }

    /// Waits until the progress satisfies `cond`, failing the test after [`STEP`].
    pub async fn until(&mut self, what: &str, cond: impl Fn(&Progress) -> bool) -> Progress {
        let reached = tokio::time::timeout(STEP, self.progress.wait_for(|p| cond(p)))
            .await
            .map(|r| r.map(|p| p.clone()));
        match reached {
            Ok(Ok(p)) => p,
            _ => panic!("{what}: not within {STEP:?}: {:?}", *self.progress.borrow()),
        }
    }

    /// Waits until every message is acked, tells the peers the last seq of every room, and
    /// collects their reports once they have seen everything.
    pub async fn finish(mut self) -> (Vec<Report>, BTreeMap<String, u64>) {
        let done = tokio::time::timeout(
            STEP,
            self.progress
                .wait_for(|p| p.state.iter().all(|s| *s == State::Done)),
        )
        .await
        .map(|r| r.map(|p| p.top.clone()));
        let targets = match done {
            Ok(Ok(top)) => top,
            // A peer gave up (its report says why) or is stuck: collect what they have.
            _ => self.progress.borrow().top.clone(),
        };
        self.targets.send_replace(Some(targets.clone()));
        let mut reports = Vec::new();
        for (name, handle) in self.peers {
            match tokio::time::timeout(STEP, handle).await {
                Ok(Ok(report)) => reports.push(report),
                Ok(Err(e)) => panic!("peer {name} panicked: {e}"),
                Err(_) => panic!("peer {name} did not finish"),
            }
        }
        (reports, targets)
    }
}

// ---------------------------------------------------------------------------------------------
// Checks.

/// What a scenario's fault does to the peers.
pub struct Expect {
    /// The peers whose socket the fault ends (once each), and the close code they get.
    pub cut: &'static [&'static str],
    pub close: Option<u16>,
    /// The store is down for a while: `store_unavailable` refusals must happen (and are the
    /// only errors allowed). Otherwise no error at all is.
    pub store_errors: bool,
}

pub async fn verify(
    label: &str,
    addr: &str,
    users: &Users,
    reports: &[Report],
    targets: &BTreeMap<String, u64>,
    expect: &Expect,
    fault_at: usize,
) {
    let mut failures = Vec::new();
    let mut sum = [0; 7];
    for r in reports {
        let received: usize = r.received.values().map(Vec::len).sum();
        println!(
            "[{label}] {:<5} sent {:>3} (resent {:>2}, deduplicated {:>2}), acked {:>3}, \
             errors {:>2}, received {:>3}, resumed {:>3}, closes {:?}",
            r.name,
            r.sent,
            r.resent,
            r.deduplicated,
            r.acked.len(),
            r.errors.len(),
            received,
            r.resumed,
            r.closes
        );
        for (i, n) in [
            r.sent,
            r.resent,
            r.deduplicated,
            r.acked.len(),
            r.errors.len(),
            received,
            r.resumed,
        ]
        .into_iter()
        .enumerate()
        {
            sum[i] += n;
        }
        failures.extend(r.problems.iter().map(|p| format!("{}: {p}", r.name)));
    }
    println!(
        "[{label}] total sent {} (resent {}, deduplicated {}), acked {}, errors {}, received {}, \
         resumed {}; fault after {fault_at} acks; last seq per room {targets:?}",
        sum[0], sum[1], sum[2], sum[3], sum[4], sum[5], sum[6]
    );
    if fault_at >= reports.len() * MESSAGES {
        failures.push("the fault came after the traffic".into());
    }

    // Every message acked, each seq acked to one message, and every stored seq acked.
    let mut by_seq: BTreeMap<(String, u64), String> = BTreeMap::new();
    for r in reports {
        if r.acked.len() != MESSAGES {
            failures.push(format!("{}: {} of {MESSAGES} acked", r.name, r.acked.len()));
        }
        for (id, (room, seq)) in &r.acked {
            if let Some(other) = by_seq.insert((room.clone(), *seq), id.clone()) {
                failures.push(format!("{room} seq {seq} acked to both {other} and {id}"));
            }
        }
    }
    for (room, &last) in targets {
        let n = by_seq.keys().filter(|(r, _)| r == room).count();
        if n as u64 != last {
            failures.push(format!("{room}: {n} messages acked, seqs up to {last}"));
        }
    }

    // Every peer saw every seq of its rooms once, in order, each with its acked message.
    for r in reports {
        for room in &r.rooms {
            let got = r.received.get(room).map(Vec::as_slice).unwrap_or_default();
            failures.extend(check_room(&r.name, room, got, targets, &by_seq));
        }
    }

    // Who was cut off, and how.
    for r in reports {
        let want: Vec<Option<u16>> = if expect.cut.contains(&r.name.as_str()) {
            vec![expect.close]
        } else {
            vec![]
        };
        if r.closes != want {
            failures.push(format!(
                "{}: sockets ended {:?}, expected {want:?}",
                r.name, r.closes
            ));
        }
    }

    let errors: Vec<&Value> = reports.iter().flat_map(|r| &r.errors).collect();
    if expect.store_errors && errors.is_empty() {
        failures.push("no store_unavailable refusal while the store was down".into());
    }

    failures.extend(resume(addr, users, targets, &by_seq).await);
    assert!(
        failures.is_empty(),
        "[{label}] {} failure(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// `got` (seq, client_id in arrival order) is exactly seqs 1..=last of the room, each with the
/// message acked under that seq.
pub fn check_room(
    who: &str,
    room: &str,
    got: &[(u64, String)],
    targets: &BTreeMap<String, u64>,
    by_seq: &BTreeMap<(String, u64), String>,
) -> Vec<String> {
    check_from(who, room, 0, got, targets, by_seq)
}

/// Like [`check_room`], for a client that resumed after `since`.
pub fn check_from(
    who: &str,
    room: &str,
    since: u64,
    got: &[(u64, String)],
    targets: &BTreeMap<String, u64>,
    by_seq: &BTreeMap<(String, u64), String>,
) -> Vec<String> {
    let mut failures = Vec::new();
    let last = targets.get(room).copied().unwrap_or(0);
    let seqs: Vec<u64> = got.iter().map(|(s, _)| *s).collect();
    let want: Vec<u64> = (since + 1..=last).collect();
    if seqs != want {
        let missing: Vec<u64> = want.iter().filter(|s| !seqs.contains(s)).copied().collect();
        failures.push(format!(
            "{who} in {room} after {since}: got {} messages for {} seqs; missing {missing:?}; \
             in order: {}",
            seqs.len(),
            want.len(),
            seqs.windows(2).all(|w| w[0] < w[1])
        ));
    }
    let mut ids = BTreeSet::new();
    for (seq, id) in got {
        if !ids.insert(id) {
            failures.push(format!("{who} in {room}: {id} stored twice (seq {seq})"));
        }
        match by_seq.get(&(room.to_owned(), *seq)) {
            Some(acked) if acked == id => {}
            Some(acked) => failures.push(format!(
                "{who} in {room}: seq {seq} is {id}, but {acked} was acked with it"
            )),
            None => failures.push(format!("{who} in {room}: seq {seq} ({id}) was never acked")),
        }
    }
    failures
}

/// Fresh clients resume with `since`: from 0 on `/ws` (every room at once), and from the middle
/// on the room sockets; each gets exactly the acked messages after it.
pub async fn resume(
    addr: &str,
    users: &Users,
    targets: &BTreeMap<String, u64>,
    by_seq: &BTreeMap<(String, u64), String>,
) -> Vec<String> {
    let mut failures = Vec::new();
    let cookie = [("cookie", users.ana_cookie.as_str())];
    let mut c = Client::try_connect_with(&format!("ws://{addr}/ws"), &cookie)
        .await
        .unwrap();
    for room in targets.keys() {
        c.send(json!({"type": "join", "room": room, "since": 0}))
            .await;
    }
    let (got, joined, problem) = read_rooms(&mut c, targets, 0).await;
    failures.extend(problem);
    for (room, &last) in targets {
        if joined.get(room) != Some(&last) {
            failures.push(format!(
                "/ws join {room}: last_seq {:?}, expected {last}",
                joined.get(room)
            ));
        }
        let got = got.get(room).map(Vec::as_slice).unwrap_or_default();
        failures.extend(check_room("/ws since=0", room, got, targets, by_seq));
    }

    for (room, &last) in targets {
        let since = last / 2;
        let path = if *room == users.pair {
            format!("/ws/dm/{}/?since={since}", users.bruno_id)
        } else {
            format!("/ws/chat/{room}/?name=late&since={since}")
        };
        let mut c = Client::try_connect_with(&format!("ws://{addr}{path}"), &cookie)
            .await
            .unwrap();
        let one = BTreeMap::from([(room.clone(), last)]);
        let (got, _, problem) = read_rooms(&mut c, &one, since).await;
        failures.extend(problem);
        let got = got.get(room).map(Vec::as_slice).unwrap_or_default();
        failures.extend(check_from(path.as_str(), room, since, got, targets, by_seq));
    }
    failures
}

/// Reads `message` frames until every room of `until` has reached its seq; returns them by
/// room, the `joined` frames' `last_seq`s, and what went wrong.
pub async fn read_rooms(
    c: &mut Client,
    until: &BTreeMap<String, u64>,
    since: u64,
) -> (
    BTreeMap<String, Vec<(u64, String)>>,
    BTreeMap<String, u64>,
    Option<String>,
) {
    let mut got: BTreeMap<String, Vec<(u64, String)>> = BTreeMap::new();
    let mut joined = BTreeMap::new();
    let deadline = Instant::now() + crate::common::WAIT;
    let reached = |got: &BTreeMap<String, Vec<(u64, String)>>| {
        until.iter().all(|(room, &last)| {
            got.get(room)
                .and_then(|v| v.last())
                .map_or(since, |(s, _)| *s)
                >= last
        })
    };
    while !reached(&got) || joined.len() < until.len() {
        let v = match c.next_event(deadline).await {
            Some(Event::Frame(v)) => v,
            other => {
                let why = format!("resuming after {since}: {other:?}; got {got:?}");
                return (got, joined, Some(why));
            }
        };
        let room = v["room"].as_str().unwrap_or_default().to_owned();
        match v["type"].as_str() {
            Some("message") => got.entry(room).or_default().push((
                v["seq"].as_u64().unwrap_or_default(),
                v["client_id"].as_str().unwrap_or_default().to_owned(),
            )),
            Some("joined") => {
                joined.insert(room, v["last_seq"].as_u64().unwrap_or_default());
            }
            _ => {}
        }
    }
    (got, joined, None)
}

/// After the fault, a message sent on node `from` reaches a new client of node `to` (the nodes
/// talk again), with the seq it was acked with.
pub async fn across(from: &str, to: &str) {
    let mut watcher = Client::connect(&format!("ws://{to}/ws/chat/lobby/?name=watcher")).await;
    watcher.recv_type("joined").await;
    let mut sender = Client::connect(&format!("ws://{from}/ws/chat/lobby/?name=sender")).await;
    let id = format!("across-{from}");
    sender
        .send(json!({"type": "message", "body": "across", "client_id": id}))
        .await;
    let ack = sender.recv_type("ack").await;
    let got = watcher.recv_type("message").await;
    assert_eq!(
        (got["seq"].as_u64(), got["client_id"].as_str()),
        (ack["seq"].as_u64(), Some(id.as_str())),
        "{from} -> {to}"
    );
}
