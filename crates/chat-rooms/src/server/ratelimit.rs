//! Rate limits keyed by client (IP address) or username, for HTTP endpoints that have no
//! connection to hang a token bucket on.
//!
//! The arithmetic is `governor`'s (GCRA: one timestamp per key, updated by compare-and-swap, so
//! concurrent requests never take a lock around the decision); [`KeyedLimiter`] is the app's
//! thin wrapper around it. It adds two things governor leaves to its user:
//!
//! - [`KeyedLimiter::allows`], a look that takes nothing: a login is refused while the limit of
//!   *failed* logins is reached, and only a failure spends a token. Governor has no such call,
//!   so the state store below runs governor's own decision and throws the new state away.
//! - A bound on memory: every distinct key (any address on the Internet, any username typed at
//!   the login form) gets an entry, and governor never drops one by itself.
//!   [`RateLimiter::retain_recent`] drops the entries that are as good as fresh, and is called
//!   with an amortised schedule (see [`KeyedLimiter::housekeeping`]).

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};
use governor::{Quota, RateLimiter};

/// The store is not looked at below this many keys: a small map costs nothing to keep.
const PRUNE_AT: usize = 10_000;

/// How often (in checks) the key count is looked at. `DashMap::len` takes a read lock on each
/// shard, cheap but not free, so not on every request.
const LOOK_EVERY: usize = 256;

/// The longest refill period, for rates of zero (never refills) or below one event per
/// `MAX_WINDOW / burst`. Governor counts time in `u64` nanoseconds (584 years) and the
/// whole-burst window `period × burst` must fit with room to spare.
const MAX_WINDOW: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// A key, and whether the limiter is only looking (see [`PeekableStore`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Probe<K> {
    key: K,
    peek: bool,
}

/// Governor's DashMap store, keyed by `K`, that can also answer "would this pass?" without
/// recording anything.
///
/// Governor hands a store a closure that computes the decision and the key's new state; the
/// store writes the state only when the closure returns `Ok`. For a peek, the closure's
/// answer is carried out as an `Err`, so the DashMap store discards the new state: the
/// decision is governor's own, and nothing is written.
struct PeekableStore<K: Hash + Eq + Clone>(DashMapStateStore<K>);

/// Whether a peek would have passed.
enum Peeked<T, E> {
    Passes(T),
    Refused(E),
}

impl<K: Hash + Eq + Clone> StateStore for PeekableStore<K> {
    type Key = Probe<K>;

    fn measure_and_replace<T, F, E>(&self, probe: &Probe<K>, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        if !probe.peek {
            return self.0.measure_and_replace(&probe.key, f);
        }
        if !self.0.contains_key(&probe.key) {
            // A key never seen is a fresh bucket; measuring it through the map would insert it.
            return f(None).map(|(t, _)| t);
        }
        let peeked = self
            .0
            .measure_and_replace(&probe.key, |state| match f(state) {
                Ok((t, _)) => Err(Peeked::Passes(t)),
                Err(e) => Err(Peeked::Refused(e)),
            });
        match peeked {
            Err(Peeked::Passes(t)) | Ok(t) => Ok(t),
            Err(Peeked::Refused(e)) => Err(e),
        }
    }
}

impl<K: Hash + Eq + Clone> ShrinkableKeyedStateStore<Probe<K>> for PeekableStore<K> {
    fn retain_recent(&self, drop_below: Nanos) {
        self.0.retain_recent(drop_below);
    }

    fn shrink_to_fit(&self) {
        ShrinkableKeyedStateStore::shrink_to_fit(&self.0);
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One token bucket per key: `rate` events per second, bursts of `burst`.
pub struct KeyedLimiter<K: Hash + Eq + Clone = IpAddr, C: Clock = DefaultClock> {
    limiter: RateLimiter<Probe<K>, PeekableStore<K>, C, NoOpMiddleware<C::Instant>>,
    /// Checks so far, to look at the key count every [`LOOK_EVERY`] of them.
    checks: AtomicUsize,
    /// Prune when the store holds more keys than this.
    prune_above: AtomicUsize,
}

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    /// `rate` events per second per key, bursts of `burst` (at least one). A rate of zero,
    /// negative or not a number never refills.
    pub fn new(rate: f64, burst: u32) -> Self {
        Self::with_clock(rate, burst, DefaultClock::default())
    }
}

impl<K: Hash + Eq + Clone, C: Clock> KeyedLimiter<K, C> {
    /// [`KeyedLimiter::new`] on another clock (tests drive a fake one).
    pub fn with_clock(rate: f64, burst: u32, clock: C) -> Self {
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        // `try_from_secs_f64` refuses what `1 / rate` gives for a rate that is zero, negative
        // or NaN (infinite, negative, NaN): those never refill, as near as governor can say.
        let period = Duration::try_from_secs_f64(1.0 / rate)
            .unwrap_or(MAX_WINDOW)
            .min(MAX_WINDOW / burst.get())
            // Governor refuses a zero period (what an absurdly high rate rounds to).
            .max(Duration::from_nanos(1));
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| unreachable!("the period is at least one nanosecond"))
            .allow_burst(burst);
        Self {
            limiter: RateLimiter::new(quota, PeekableStore(DashMapStateStore::default()), clock),
            checks: AtomicUsize::new(0),
            prune_above: AtomicUsize::new(PRUNE_AT),
        }
    }

    /// Takes a token for `key`; `false` means over the limit.
    pub fn check(&self, key: &K) -> bool {
        self.housekeeping();
        self.limiter
            .check_key(&Probe {
                key: key.clone(),
                peek: false,
            })
            .is_ok()
    }

    /// Whether `key` has a token left, without taking it.
    pub fn allows(&self, key: &K) -> bool {
        self.limiter
            .check_key(&Probe {
                key: key.clone(),
                peek: true,
            })
            .is_ok()
    }

    /// How many keys the limiter holds now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.limiter.len()
    }

    /// Keeps the key store bounded, in amortised constant time per check.
    ///
    /// Every [`LOOK_EVERY`] checks the key count is read; once it passes the threshold, the
    /// keys whose buckets have refilled (indistinguishable from a key never seen) are dropped
    /// and the threshold becomes twice what is left (never below [`PRUNE_AT`]). A scan of `n`
    /// keys thus comes only after at least `n / 2` keys were added since the last one: O(1)
    /// per check, amortised. While a flood of live keys lasts, scans grow rarer instead of
    /// running on every request (what the hand-written limiter this replaced did past 10,000
    /// keys). The store holds at most twice the keys that were live at the last scan, or
    /// [`PRUNE_AT`], plus [`LOOK_EVERY`].
    fn housekeeping(&self) {
        if self.checks.fetch_add(1, Ordering::Relaxed) % LOOK_EVERY != 0 {
            return;
        }
        let before = self.limiter.len();
        if before <= self.prune_above.load(Ordering::Relaxed) {
            return;
        }
        self.limiter.retain_recent();
        let after = self.limiter.len();
        if after <= before / 2 {
            // DashMap keeps its capacity after removals: give the memory back too.
            self.limiter.shrink_to_fit();
        }
        self.prune_above
            .store(after.saturating_mul(2).max(PRUNE_AT), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use governor::clock::FakeRelativeClock;

    use super::*;

    fn limiter(rate: f64, burst: u32) -> (KeyedLimiter<u32, FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        (KeyedLimiter::with_clock(rate, burst, clock.clone()), clock)
    }

    #[test]
    fn a_burst_passes_then_is_refused() {
        let (l, _) = limiter(1.0, 3);
        assert!(l.check(&1) && l.check(&1) && l.check(&1));
        assert!(!l.check(&1));
        assert!(!l.allows(&1));
    }

    #[test]
    fn tokens_refill_over_time() {
        let (l, clock) = limiter(2.0, 2);
        assert!(l.check(&1) && l.check(&1) && !l.check(&1));
        clock.advance(Duration::from_millis(499));
        assert!(!l.check(&1), "half a second for a token at 2/s");
        clock.advance(Duration::from_millis(1));
        assert!(l.check(&1) && !l.check(&1));
        clock.advance(Duration::from_secs(60));
        assert!(
            l.check(&1) && l.check(&1),
            "a full burst after a long pause"
        );
        assert!(!l.check(&1), "but no more than the burst");
    }

    #[test]
    fn keys_are_independent() {
        let (l, _) = limiter(1.0, 1);
        assert!(l.check(&1) && !l.check(&1));
        assert!(l.check(&2), "another key has its own bucket");
        assert!(!l.allows(&1) && !l.allows(&2) && l.allows(&3));
    }

    #[test]
    fn allows_takes_nothing() {
        let (l, _) = limiter(1.0 / 60.0, 2);
        for _ in 0..100 {
            assert!(l.allows(&7));
        }
        assert_eq!(l.len(), 0, "a look at an unknown key stores nothing");
        assert!(l.check(&7));
        for _ in 0..100 {
            assert!(l.allows(&7));
        }
        assert!(l.check(&7) && !l.allows(&7) && !l.check(&7));
    }

    #[test]
    fn odd_rates_do_not_panic_and_zero_never_refills() {
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e-300, 1e300] {
            for burst in [0, 1, u32::MAX] {
                let (l, clock) = limiter(rate, burst);
                assert!(l.check(&1), "rate {rate} burst {burst}");
                clock.advance(Duration::from_secs(3600));
                l.check(&1);
            }
        }
        let (l, clock) = limiter(0.0, 1);
        assert!(l.check(&1));
        clock.advance(Duration::from_secs(10 * 365 * 24 * 3600));
        assert!(!l.check(&1));
    }

    #[test]
    fn the_key_store_stays_bounded() {
        let (l, clock) = limiter(1000.0, 1);
        // One new key per millisecond, each refilled a millisecond later: only a handful are
        // live at any time. Without pruning the store would hold all 50,000.
        for key in 0..50_000 {
            assert!(l.check(&key));
            clock.advance(Duration::from_millis(1));
            assert!(l.len() <= PRUNE_AT + LOOK_EVERY, "{} keys", l.len());
        }
    }

    #[test]
    fn pruning_keeps_keys_that_are_still_limited() {
        let (l, clock) = limiter(1.0 / 3600.0, 1);
        assert!(l.check(&u32::MAX));
        for key in 0..30_000 {
            l.check(&key);
            clock.advance(Duration::from_millis(1));
        }
        assert_eq!(l.len(), 30_001, "all still limited: none dropped");
        assert!(!l.check(&u32::MAX), "the exhausted key is still refused");
        assert!(!l.check(&0), "and so are the others");
    }
}
