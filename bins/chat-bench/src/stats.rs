//! Latency histograms and the report every scenario prints (human summary and JSON).

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies in microseconds, 1 µs to 60 s, two significant digits (1 % resolution) —
/// small enough to keep one per connection and merge at the end.
#[derive(Clone)]
pub struct Latencies(Histogram<u32>);

impl Default for Latencies {
    fn default() -> Self {
        Self(
            Histogram::new_with_bounds(1, 60_000_000, 2).unwrap_or_else(|_| {
                // The bounds are constants within HdrHistogram's range.
                unreachable!("valid histogram bounds")
            }),
        )
    }
}

impl Latencies {
    /// Records one latency (saturating at the top of the range).
    pub fn record(&mut self, d: Duration) {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
        self.0.saturating_record(micros);
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, other: &Latencies) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.0.add(&other.0);
    }

    /// Percentiles in milliseconds, or `None` without samples.
    pub fn summary(&self) -> Option<LatencySummary> {
        if self.0.is_empty() {
            return None;
        }
        let ms = |q: f64| self.0.value_at_quantile(q) as f64 / 1000.0;
        Some(LatencySummary {
            count: self.0.len(),
            p50_ms: ms(0.50),
            p90_ms: ms(0.90),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: self.0.max() as f64 / 1000.0,
        })
    }
}

/// Latency percentiles.
#[derive(Debug, Clone, Serialize)]
pub struct LatencySummary {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

/// One scenario on one server.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Report {
    /// `fanout`, `pairs`, `idle`, `persist`.
    pub scenario: String,
    /// `chat`, `baseline` or the URL of an external server.
    pub target: String,
    /// The scenario's parameters.
    pub params: serde_json::Value,
    /// Connections that were open when sending started.
    pub connections: usize,
    /// Connections that failed to open.
    pub connect_failures: usize,
    /// Connections the server closed before the end.
    pub closed_early: usize,
    /// Seconds from the first send to the last delivery (or ack).
    pub elapsed_s: f64,
    /// Messages sent.
    pub sent: u64,
    /// Sends acknowledged (our protocol).
    pub acked: u64,
    /// Sends refused with an error frame.
    pub errors: u64,
    /// Messages received by clients.
    pub delivered: u64,
    /// Messages that should have been received.
    pub expected: u64,
    /// `expected - delivered`.
    pub lost: u64,
    /// Where deliveries went missing or came out of order (only when some did).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lost_detail: Option<crate::loss::LossDetail>,
    /// Deliveries per second.
    pub deliveries_per_s: f64,
    /// Acknowledged sends per second.
    pub acks_per_s: f64,
    /// Send to receipt by another client.
    pub delivery_latency: Option<LatencySummary>,
    /// Send to ack.
    pub ack_latency: Option<LatencySummary>,
    /// Server resident memory at the end, MiB.
    pub server_rss_mib: f64,
    /// Server memory growth per connection while they connected, KiB.
    pub server_rss_per_connection_kib: f64,
    /// Server CPU seconds while sending and draining.
    pub server_cpu_s: f64,
    /// Server CPU milliseconds per 1,000 deliveries.
    pub server_cpu_ms_per_1k_deliveries: f64,
    /// This benchmark's CPU seconds over the same time (it shares the machine).
    pub bench_cpu_s: f64,
    /// This run's deliveries/s (or acks/s for `persist`) divided by the baseline server's.
    pub ratio_to_baseline: Option<f64>,
    /// chat-server's database: `sqlite` or `postgres` (none for other servers).
    pub database: Option<String>,
    /// `openloop` only: every step and the highest clean one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub openloop: Option<crate::openloop::Steps>,
    /// Whether this is the baseline server (whatever `--label` calls it).
    #[serde(skip)]
    pub is_baseline: bool,
}

impl Report {
    /// The human summary: a few lines.
    pub fn print(&self) {
        println!(
            "{} on {}: {} connections ({} failed, {} closed early)",
            self.scenario, self.target, self.connections, self.connect_failures, self.closed_early
        );
        if self.sent > 0 {
            println!(
                "  sent {}  acked {}  errors {}  delivered {} of {} (lost {})  in {:.2} s",
                self.sent,
                self.acked,
                self.errors,
                self.delivered,
                self.expected,
                self.lost,
                self.elapsed_s
            );
            println!(
                "  {:.0} deliveries/s  {:.0} acked sends/s",
                self.deliveries_per_s, self.acks_per_s
            );
        }
        if let Some(d) = &self.lost_detail {
            println!(
                "  missing: {} skipped, {} late, {} never after the last seen, at {} receivers; e.g. {}",
                d.skipped,
                d.late,
                d.tail,
                d.receivers,
                d.examples.join("; ")
            );
        }
        for (name, l) in [
            ("delivery latency", &self.delivery_latency),
            ("ack latency", &self.ack_latency),
        ] {
            if let Some(l) = l {
                println!(
                    "  {name} ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}  (n={})",
                    l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms, l.count
                );
            }
        }
        if let Some(steps) = &self.openloop {
            println!("  steps (the figures above are the highest clean step's):");
            steps.print();
        }
        println!(
            "  server: {:.1} MiB RSS, {:.2} KiB/connection, {:.2} CPU s ({:.3} ms per 1,000 deliveries); bench {:.2} CPU s",
            self.server_rss_mib,
            self.server_rss_per_connection_kib,
            self.server_cpu_s,
            self.server_cpu_ms_per_1k_deliveries,
            self.bench_cpu_s
        );
        if let Some(r) = self.ratio_to_baseline {
            println!("  ratio to the baseline server: {r:.2}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_merge() {
        let mut a = Latencies::default();
        let mut b = Latencies::default();
        for ms in 1..=99 {
            a.record(Duration::from_millis(ms));
        }
        b.record(Duration::from_secs(2));
        a.merge(&b);
        let s = a.summary().unwrap();
        assert_eq!(s.count, 100);
        assert!((49.0..=51.0).contains(&s.p50_ms), "{s:?}");
        assert!(s.max_ms >= 1990.0, "{s:?}");
        assert!(Latencies::default().summary().is_none());
    }
}
