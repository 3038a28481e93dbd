//! Rate limits keyed by client (IP address) or username, for HTTP endpoints that have no
//! connection to hang a token bucket on.

use std::hash::Hash;
use std::net::IpAddr;

use chat_core::TokenBucket;
use dashmap::DashMap;

/// Past this many tracked keys, full (idle) buckets are forgotten.
const PRUNE_AT: usize = 10_000;

/// One token bucket per key.
pub struct KeyedLimiter<K = IpAddr> {
    buckets: DashMap<K, TokenBucket>,
    rate: f64,
    burst: u32,
}

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    /// `rate` events per second per key, bursts of `burst`.
    pub fn new(rate: f64, burst: u32) -> Self {
        Self {
            buckets: DashMap::new(),
            rate,
            burst,
        }
    }

    fn prune(&self) {
        if self.buckets.len() > PRUNE_AT {
            // Buckets that are full again carry no state worth keeping.
            self.buckets.retain(|_, b| !b.is_full());
        }
    }

    /// Takes a token for `key`; `false` means over the limit.
    pub fn check(&self, key: &K) -> bool {
        self.prune();
        self.buckets
            .entry(key.clone())
            .or_insert_with(|| TokenBucket::with_rate(self.rate, self.burst))
            .try_take()
    }

    /// Whether `key` has a token left, without taking it.
    pub fn allows(&self, key: &K) -> bool {
        self.buckets.get_mut(key).is_none_or(|mut b| b.peek())
    }
}
