//! Presence in Redis, shared by every node.
//!
//! Per room, a sorted set of user keys and, per user, a sorted set of their connections, both
//! scored by expiry time, and a hash of the users' details. Live nodes refresh their
//! connections every third of the TTL. Join and leave are Lua scripts, so "first connection"
//! and "last connection" are decided atomically across nodes.
//!
//! A node that dies cannot say goodbye, so the others do it for it: every node lists its
//! registrations under its own id and beats in a shared sorted set of nodes. A node whose beat
//! is older than two thirds of the TTL is dead; the first live node to sweep claims it (one
//! `ZREM`, inside the sweep script, so exactly one node does) and removes its connections, and
//! [`Presence::sweep`] returns the users who thereby left a room, for the caller to announce.
//! Everything else (details, lists, beats) expires in Redis if no node is left to sweep.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;

use super::{OnlineUsers, Presence, PresenceError, user_key};
use crate::layer::RedisError;
use crate::message::{Sender, Timestamp};
use crate::names::RoomName;

/// KEYS: the user's connections, the room's users, the room's user details, this node's
/// registrations, the nodes. ARGV: conn, user key, expiry, now, details, ttl, registration,
/// node, registrations' ttl.
const JOIN: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[4])
local before = redis.call('ZCARD', KEYS[1])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('ZADD', KEYS[2], 'GT', ARGV[3], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
redis.call('HSET', KEYS[3], ARGV[2], ARGV[5])
redis.call('PEXPIRE', KEYS[3], ARGV[6])
redis.call('SADD', KEYS[4], ARGV[7])
redis.call('PEXPIRE', KEYS[4], ARGV[9])
redis.call('ZADD', KEYS[5], ARGV[4], ARGV[8])
if before == 0 then return 1 else return 0 end
";

/// KEYS: the user's connections, the room's users, the room's user details, this node's
/// registrations. ARGV: conn, user key, now, registration.
const LEAVE: &str = r"
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
redis.call('SREM', KEYS[4], ARGV[4])
if redis.call('ZCARD', KEYS[1]) == 0 then
  redis.call('HDEL', KEYS[3], ARGV[2])
  return redis.call('ZREM', KEYS[2], ARGV[2])
end
return 0
";

/// KEYS: the nodes. ARGV: key prefix, beats older than this are dead, now. Returns, flat, the
/// room and the user details of every user whose last connection was on a dead node.
const SWEEP: &str = r"
local left = {}
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
for _, node in ipairs(dead) do
  if redis.call('ZREM', KEYS[1], node) == 1 then
    local regs_key = ARGV[1] .. ':pn:' .. node
    for _, reg in ipairs(redis.call('SMEMBERS', regs_key)) do
      local a = string.find(reg, '\n', 1, true)
      local b = string.find(reg, '\n', a + 1, true)
      local room = string.sub(reg, 1, a - 1)
      local user = string.sub(reg, a + 1, b - 1)
      local conn = string.sub(reg, b + 1)
      local conns = ARGV[1] .. ':pc:' .. room .. ':' .. user
      redis.call('ZREM', conns, conn)
      redis.call('ZREMRANGEBYSCORE', conns, '-inf', ARGV[3])
      if redis.call('ZCARD', conns) == 0 then
        if redis.call('ZREM', ARGV[1] .. ':p:' .. room, user) == 1 then
          local info_key = ARGV[1] .. ':pi:' .. room
          local info = redis.call('HGET', info_key, user)
          redis.call('HDEL', info_key, user)
          if info then
            table.insert(left, room)
            table.insert(left, info)
          end
        end
      end
    end
    redis.call('DEL', regs_key)
  end
end
return left
";

/// One registration made by this node, refreshed while the connection lives.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Registration {
    room: RoomName,
    user: String,
    conn: String,
}

impl Registration {
    /// How the registration is listed under its node (what `SWEEP` parses). Room names and
    /// channel names never hold a newline, and the user key sits between them.
    fn listed(&self) -> String {
        format!("{}\n{}\n{}", self.room, self.user, self.conn)
    }
}

struct Inner {
    pool: deadpool_redis::Pool,
    prefix: String,
    ttl: Duration,
    /// This process's id among the nodes.
    node: String,
    /// This node's registrations, with the user's details (JSON).
    local: Mutex<HashMap<Registration, String>>,
    join: redis::Script,
    leave: redis::Script,
    sweep: redis::Script,
}

/// Presence across nodes, in Redis.
#[derive(Clone)]
pub struct RedisPresence {
    inner: Arc<Inner>,
}

fn err(e: impl Into<RedisError>) -> PresenceError {
    e.into().into()
}

impl Inner {
    fn users_key(&self, room: &RoomName) -> String {
        format!("{}:p:{room}", self.prefix)
    }

    fn conns_key(&self, room: &RoomName, user: &str) -> String {
        format!("{}:pc:{room}:{user}", self.prefix)
    }

    fn info_key(&self, room: &RoomName) -> String {
        format!("{}:pi:{room}", self.prefix)
    }

    fn regs_key(&self) -> String {
        format!("{}:pn:{}", self.prefix, self.node)
    }

    fn nodes_key(&self) -> String {
        format!("{}:pnodes", self.prefix)
    }

    fn ttl_ms(&self) -> i64 {
        self.ttl.as_millis() as i64
    }

    /// How long a node's list of registrations outlives its last beat: long enough for a
    /// live node to sweep it, bounded so that it goes when no node is left.
    fn regs_ttl_ms(&self) -> i64 {
        self.ttl_ms() * 10
    }

    fn expiry(&self) -> i64 {
        Timestamp::now().unix_millis() + self.ttl_ms()
    }

    async fn conn(&self) -> Result<deadpool_redis::Connection, PresenceError> {
        self.pool.get().await.map_err(err)
    }

    /// Beats, and re-registers every local connection with a fresh expiry (everything, so
    /// that presence comes back whole after a Redis restart).
    async fn refresh(&self) -> Result<(), PresenceError> {
        let regs: Vec<(Registration, String)> = self
            .local
            .lock()
            .iter()
            .map(|(r, i)| (r.clone(), i.clone()))
            .collect();
        let now = Timestamp::now().unix_millis();
        let exp = self.expiry();
        let ttl = self.ttl_ms();
        let regs_key = self.regs_key();
        let mut pipe = redis::pipe();
        pipe.cmd("ZADD")
            .arg(self.nodes_key())
            .arg(now)
            .arg(&self.node)
            .ignore();
        for (r, info) in &regs {
            let conns = self.conns_key(&r.room, &r.user);
            let users = self.users_key(&r.room);
            let infos = self.info_key(&r.room);
            pipe.cmd("ZADD").arg(&conns).arg(exp).arg(&r.conn).ignore();
            pipe.cmd("PEXPIRE").arg(&conns).arg(ttl).ignore();
            pipe.cmd("ZADD")
                .arg(&users)
                .arg("GT")
                .arg(exp)
                .arg(&r.user)
                .ignore();
            pipe.cmd("PEXPIRE").arg(&users).arg(ttl).ignore();
            pipe.cmd("HSET").arg(&infos).arg(&r.user).arg(info).ignore();
            pipe.cmd("PEXPIRE").arg(&infos).arg(ttl).ignore();
            pipe.cmd("SADD").arg(&regs_key).arg(r.listed()).ignore();
        }
        if !regs.is_empty() {
            pipe.cmd("PEXPIRE")
                .arg(&regs_key)
                .arg(self.regs_ttl_ms())
                .ignore();
        }
        let mut c = self.conn().await?;
        pipe.query_async::<()>(&mut *c).await.map_err(err)
    }

    /// The users online in `room` (at most `limit`, by name) and how many there are: one
    /// round trip for the count and the keys, one for their details.
    async fn online(
        &self,
        room: &RoomName,
        limit: Option<usize>,
    ) -> Result<OnlineUsers, PresenceError> {
        let mut c = self.conn().await?;
        let now = Timestamp::now().unix_millis();
        let users_key = self.users_key(room);
        let mut range = redis::cmd("ZRANGEBYSCORE");
        range.arg(&users_key).arg(now).arg("+inf");
        if let Some(limit) = limit {
            range.arg("LIMIT").arg(0).arg(limit);
        }
        let (total, keys): (usize, Vec<String>) = redis::pipe()
            .cmd("ZCOUNT")
            .arg(&users_key)
            .arg(now)
            .arg("+inf")
            .add_command(range)
            .query_async(&mut *c)
            .await
            .map_err(err)?;
        if keys.is_empty() {
            return Ok(OnlineUsers {
                users: Vec::new(),
                total,
            });
        }
        let infos: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(self.info_key(room))
            .arg(&keys)
            .query_async(&mut *c)
            .await
            .map_err(err)?;
        let mut users: Vec<Sender> = infos
            .into_iter()
            .flatten()
            .filter_map(|j| serde_json::from_str(&j).ok())
            .collect();
        users.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(OnlineUsers { users, total })
    }
}

impl RedisPresence {
    /// Presence in the Redis at `url`, under `prefix`, with registrations that expire `ttl`
    /// after their node stops refreshing them.
    pub fn connect(url: &str, prefix: &str, ttl: Duration) -> Result<Self, PresenceError> {
        let mut cfg = deadpool_redis::Config::from_url(url);
        let mut pc = deadpool_redis::PoolConfig::new(8);
        let timeout = Some(Duration::from_secs(2));
        pc.timeouts.wait = timeout;
        pc.timeouts.create = timeout;
        pc.timeouts.recycle = timeout;
        cfg.pool = Some(pc);
        let pool = cfg
            .create_pool(Some(deadpool_redis::Runtime::Tokio1))
            .map_err(err)?;
        let inner = Arc::new(Inner {
            pool,
            prefix: prefix.to_owned(),
            ttl,
            node: crate::layer::node_id(),
            local: Mutex::new(HashMap::new()),
            join: redis::Script::new(JOIN),
            leave: redis::Script::new(LEAVE),
            sweep: redis::Script::new(SWEEP),
        });
        tokio::spawn(heartbeat(Arc::downgrade(&inner), ttl / 3));
        Ok(Self { inner })
    }
}

/// Refreshes this node's registrations until the presence is dropped.
async fn heartbeat(inner: Weak<Inner>, every: Duration) {
    let every = every.max(Duration::from_millis(100));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        if let Err(e) = inner.refresh().await {
            tracing::warn!(error = %e, "presence heartbeat failed");
        }
    }
}

#[async_trait]
impl Presence for RedisPresence {
    async fn join(
        &self,
        room: &RoomName,
        user: &Sender,
        conn: &str,
    ) -> Result<bool, PresenceError> {
        let i = &self.inner;
        let key = user_key(user);
        let info = serde_json::to_string(user).map_err(err)?;
        let reg = Registration {
            room: room.clone(),
            user: key.clone(),
            conn: conn.to_owned(),
        };
        let listed = reg.listed();
        let mut c = i.conn().await?;
        let now = Timestamp::now().unix_millis();
        let first: i64 = i
            .join
            .key(i.conns_key(room, &key))
            .key(i.users_key(room))
            .key(i.info_key(room))
            .key(i.regs_key())
            .key(i.nodes_key())
            .arg(conn)
            .arg(&key)
            .arg(now + i.ttl_ms())
            .arg(now)
            .arg(&info)
            .arg(i.ttl_ms())
            .arg(listed)
            .arg(&i.node)
            .arg(i.regs_ttl_ms())
            .invoke_async(&mut *c)
            .await
            .map_err(err)?;
        // Listed for the heartbeat only now: a refresh that ran before the script would have
        // registered the connection first, and the script would not see the user's first one.
        i.local.lock().insert(reg, info);
        Ok(first == 1)
    }

    async fn leave(
        &self,
        room: &RoomName,
        user: &Sender,
        conn: &str,
    ) -> Result<bool, PresenceError> {
        let i = &self.inner;
        let key = user_key(user);
        let reg = Registration {
            room: room.clone(),
            user: key.clone(),
            conn: conn.to_owned(),
        };
        let listed = reg.listed();
        i.local.lock().remove(&reg);
        let mut c = i.conn().await?;
        let last: i64 = i
            .leave
            .key(i.conns_key(room, &key))
            .key(i.users_key(room))
            .key(i.info_key(room))
            .key(i.regs_key())
            .arg(conn)
            .arg(&key)
            .arg(Timestamp::now().unix_millis())
            .arg(listed)
            .invoke_async(&mut *c)
            .await
            .map_err(err)?;
        Ok(last == 1)
    }

    async fn online(&self, room: &RoomName) -> Result<Vec<Sender>, PresenceError> {
        Ok(self.inner.online(room, None).await?.users)
    }

    async fn online_upto(
        &self,
        room: &RoomName,
        limit: usize,
    ) -> Result<OnlineUsers, PresenceError> {
        self.inner.online(room, Some(limit)).await
    }

    async fn count(&self, room: &RoomName) -> Result<usize, PresenceError> {
        let i = &self.inner;
        let mut c = i.conn().await?;
        redis::cmd("ZCOUNT")
            .arg(i.users_key(room))
            .arg(Timestamp::now().unix_millis())
            .arg("+inf")
            .query_async(&mut *c)
            .await
            .map_err(err)
    }

    async fn sweep(&self) -> Result<Vec<(RoomName, Sender)>, PresenceError> {
        let i = &self.inner;
        let now = Timestamp::now().unix_millis();
        // Beats come every third of the TTL: two missed ones and the node is gone.
        let dead_before = now - i.ttl_ms() * 2 / 3;
        let mut c = i.conn().await?;
        let left: Vec<String> = i
            .sweep
            .key(i.nodes_key())
            .arg(&i.prefix)
            .arg(dead_before)
            .arg(now)
            .invoke_async(&mut *c)
            .await
            .map_err(err)?;
        Ok(left
            .chunks_exact(2)
            .filter_map(|pair| {
                let room = RoomName::parse_stored(&pair[0]).ok()?;
                let user = serde_json::from_str(&pair[1]).ok()?;
                Some((room, user))
            })
            .collect())
    }
}
