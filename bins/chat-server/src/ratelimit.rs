//! Rate limits keyed by client (IP address), for HTTP endpoints that have no connection to
//! hang a token bucket on.

use std::hash::Hash;
use std::net::IpAddr;

use chat_core::TokenBucket;
use dashmap::DashMap;

/// Past this many tracked keys, full (idle) buckets are forgotten.
const PRUNE_AT: usize = 10_000;

/// One token bucket per key.
pub struct KeyedLimiter<K = IpAddr> {
    buckets: DashMap<K, TokenBucket>,
    rate: u32,
    burst: u32,
}

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    /// `rate` events per second per key, bursts of `burst`.
    pub fn new(rate: u32, burst: u32) -> Self {
        Self {
            buckets: DashMap::new(),
            rate,
            burst,
        }
    }

    /// Takes a token for `key`; `false` means over the limit.
    pub fn check(&self, key: &K) -> bool {
        if self.buckets.len() > PRUNE_AT {
            // Buckets that would be full again carry no state worth keeping.
            self.buckets.retain(|_, b| !b.is_full());
        }
        self.buckets
            .entry(key.clone())
            .or_insert_with(|| TokenBucket::new(self.rate, self.burst))
            .try_take()
    }
}
