//! Counters that the worker threads add to without sharing a cache line, folded into the
//! Prometheus recorder before each scrape.
//!
//! Why: `chat_deliveries_total` is added to once per delivery, from every worker thread. With
//! one atomic behind it, its cache line moved between the cores on every delivery: about 2 %
//! of a busy server's CPU at 1 room × 100 (`docs/benchmarks.md`, 2026-12-03, fifth sitting).
//! Here each thread adds to a slot of its own, and a scrape first sums the slots into the
//! recorder, so what it shows is exact. The library crates keep recording through the
//! `metrics` facade and know nothing of this.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use metrics::{
    Counter, CounterFn, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};

/// Slots per counter. Threads beyond this share slots (still correct, only less spread).
const SLOTS: usize = 8;

/// One thread's part of a counter, alone on its cache lines (128 bytes: adjacent-line
/// prefetching pairs lines).
#[repr(align(128))]
#[derive(Default)]
struct Slot(AtomicU64);

/// This thread's slot number, given out in turn as threads first count.
fn slot_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SLOTS;
    }
    INDEX.try_with(|i| *i).unwrap_or(0)
}

/// A counter whose increments wait in per-thread slots until [`Sharded::fold`].
struct Sharded {
    inner: Counter,
    slots: [Slot; SLOTS],
}

impl Sharded {
    /// Moves what the slots hold into the recorder's counter.
    fn fold(&self) {
        let sum: u64 = self
            .slots
            .iter()
            .map(|slot| slot.0.swap(0, Ordering::Relaxed))
            .sum();
        if sum > 0 {
            self.inner.increment(sum);
        }
    }
}

impl CounterFn for Sharded {
    fn increment(&self, value: u64) {
        self.slots[slot_index()]
            .0
            .fetch_add(value, Ordering::Relaxed);
    }

    fn absolute(&self, value: u64) {
        self.fold();
        self.inner.absolute(value);
    }
}

/// Every sharded counter, by key, to fold them all before a scrape.
#[derive(Default)]
pub struct Counters {
    by_key: Mutex<HashMap<Key, Arc<Sharded>>>,
}

impl Counters {
    /// Moves every counter's pending increments into the recorder: call before rendering.
    pub fn fold(&self) {
        for counter in self.lock().values() {
            counter.fold();
        }
    }

    /// The map; a panic elsewhere while it was held left nothing half-done in it.
    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Arc<Sharded>>> {
        self.by_key.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A [`Recorder`] that hands out sharded counters and passes everything else to `inner`.
pub struct ShardedCounters<R> {
    inner: R,
    counters: Arc<Counters>,
}

impl<R> ShardedCounters<R> {
    /// Wraps `inner`; fold with the returned [`Counters`] before reading `inner`'s counters.
    pub fn new(inner: R) -> (Self, Arc<Counters>) {
        let counters = Arc::new(Counters::default());
        (
            Self {
                inner,
                counters: counters.clone(),
            },
            counters,
        )
    }
}

impl<R: Recorder> Recorder for ShardedCounters<R> {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_counter(key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_gauge(key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_histogram(key, unit, description);
    }

    /// The same counter for the same key, every time: hot paths resolve theirs once, the rest
    /// (a close, a refused login) look it up here on each event.
    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        let mut by_key = self.counters.lock();
        let counter = by_key.entry(key.clone()).or_insert_with(|| {
            Arc::new(Sharded {
                inner: self.inner.register_counter(key, metadata),
                slots: Default::default(),
            })
        });
        Counter::from_arc(counter.clone())
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        self.inner.register_gauge(key, metadata)
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        self.inner.register_histogram(key, metadata)
    }
}

#[cfg(test)]
mod tests {
    use metrics_exporter_prometheus::PrometheusBuilder;

    use super::*;

    fn value(rendered: &str, series: &str) -> Option<f64> {
        rendered
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn increments_from_many_threads_all_show_after_a_fold() {
        let prometheus = PrometheusBuilder::new().build_recorder();
        let handle = prometheus.handle();
        let (recorder, counters) = ShardedCounters::new(prometheus);
        let metadata = Metadata::new("test", metrics::Level::INFO, None);
        let key = Key::from_static_name("test_total");
        std::thread::scope(|s| {
            for _ in 0..SLOTS + 3 {
                s.spawn(|| {
                    let counter = recorder.register_counter(&key, &metadata);
                    for _ in 0..1000 {
                        counter.increment(1);
                    }
                });
            }
        });
        let unfolded = value(&handle.render(), "test_total").unwrap_or(0.0);
        assert_eq!(unfolded, 0.0, "nothing reaches the recorder before a fold");
        counters.fold();
        assert_eq!(value(&handle.render(), "test_total"), Some(11_000.0));
        // A second registration is the same counter.
        recorder.register_counter(&key, &metadata).increment(5);
        counters.fold();
        assert_eq!(value(&handle.render(), "test_total"), Some(11_005.0));
    }
}
