//! Presence in Redis, shared by every node.
//!
//! Per room, a sorted set of user keys and, per user, a sorted set of their connections, both
//! scored by expiry time. Live nodes refresh their connections every third of the TTL; the
//! connections of a node that died simply expire. Join and leave are Lua scripts, so "first
//! connection" and "last connection" are decided atomically across nodes.

use std::collections::HashSet;
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;

use super::{Presence, PresenceError, user_key};
use crate::message::{Sender, Timestamp};
use crate::names::RoomName;

const JOIN: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[4])
local before = redis.call('ZCARD', KEYS[1])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('ZADD', KEYS[2], 'GT', ARGV[3], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
redis.call('HSET', KEYS[3], ARGV[2], ARGV[5])
if before == 0 then return 1 else return 0 end
";

const LEAVE: &str = r"
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
if redis.call('ZCARD', KEYS[1]) == 0 then
  return redis.call('ZREM', KEYS[2], ARGV[2])
end
return 0
";

/// One registration made by this node, refreshed while the connection lives.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Registration {
    room: RoomName,
    user: String,
    conn: String,
}

struct Inner {
    pool: deadpool_redis::Pool,
    prefix: String,
    ttl: Duration,
    local: Mutex<HashSet<Registration>>,
    join: redis::Script,
    leave: redis::Script,
}

/// Presence across nodes, in Redis.
#[derive(Clone)]
pub struct RedisPresence {
    inner: Arc<Inner>,
}

fn err(e: impl std::fmt::Display) -> PresenceError {
    PresenceError(e.to_string())
}

impl Inner {
    fn users_key(&self, room: &RoomName) -> String {
        format!("{}:p:{room}", self.prefix)
    }

    fn conns_key(&self, room: &RoomName, user: &str) -> String {
        format!("{}:pc:{room}:{user}", self.prefix)
    }

    fn info_key(&self) -> String {
        format!("{}:pu", self.prefix)
    }

    fn expiry(&self) -> i64 {
        Timestamp::now().unix_millis() + self.ttl.as_millis() as i64
    }

    async fn conn(&self) -> Result<deadpool_redis::Connection, PresenceError> {
        self.pool.get().await.map_err(err)
    }

    /// Re-registers every local connection with a fresh expiry.
    async fn refresh(&self) -> Result<(), PresenceError> {
        let regs: Vec<Registration> = self.local.lock().iter().cloned().collect();
        if regs.is_empty() {
            return Ok(());
        }
        let exp = self.expiry();
        let ttl = self.ttl.as_millis() as i64;
        let mut pipe = redis::pipe();
        for r in &regs {
            let conns = self.conns_key(&r.room, &r.user);
            let users = self.users_key(&r.room);
            pipe.cmd("ZADD").arg(&conns).arg(exp).arg(&r.conn).ignore();
            pipe.cmd("PEXPIRE").arg(&conns).arg(ttl).ignore();
            pipe.cmd("ZADD")
                .arg(&users)
                .arg("GT")
                .arg(exp)
                .arg(&r.user)
                .ignore();
            pipe.cmd("PEXPIRE").arg(&users).arg(ttl).ignore();
        }
        let mut c = self.conn().await?;
        pipe.query_async::<()>(&mut *c).await.map_err(err)
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
            local: Mutex::new(HashSet::new()),
            join: redis::Script::new(JOIN),
            leave: redis::Script::new(LEAVE),
        });
        tokio::spawn(heartbeat(Arc::downgrade(&inner), ttl / 3));
        Ok(Self { inner })
    }
}

/// Refreshes this node's registrations until the presence is dropped.
async fn heartbeat(inner: Weak<Inner>, every: Duration) {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
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
        i.local.lock().insert(Registration {
            room: room.clone(),
            user: key.clone(),
            conn: conn.to_owned(),
        });
        let info = serde_json::to_string(user).map_err(err)?;
        let mut c = i.conn().await?;
        let first: i64 = i
            .join
            .key(i.conns_key(room, &key))
            .key(i.users_key(room))
            .key(i.info_key())
            .arg(conn)
            .arg(&key)
            .arg(i.expiry())
            .arg(Timestamp::now().unix_millis())
            .arg(info)
            .arg(i.ttl.as_millis() as i64)
            .invoke_async(&mut *c)
            .await
            .map_err(err)?;
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
        i.local.lock().remove(&Registration {
            room: room.clone(),
            user: key.clone(),
            conn: conn.to_owned(),
        });
        let mut c = i.conn().await?;
        let last: i64 = i
            .leave
            .key(i.conns_key(room, &key))
            .key(i.users_key(room))
            .arg(conn)
            .arg(&key)
            .arg(Timestamp::now().unix_millis())
            .invoke_async(&mut *c)
            .await
            .map_err(err)?;
        Ok(last == 1)
    }

    async fn online(&self, room: &RoomName) -> Result<Vec<Sender>, PresenceError> {
        let i = &self.inner;
        let mut c = i.conn().await?;
        let now = Timestamp::now().unix_millis();
        let keys: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(i.users_key(room))
            .arg(now)
            .arg("+inf")
            .query_async(&mut *c)
            .await
            .map_err(err)?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let infos: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(i.info_key())
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
        Ok(users)
    }
}
