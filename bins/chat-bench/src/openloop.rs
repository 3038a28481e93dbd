//! `openloop`: a fan-out room at a fixed offered rate, stepped up until a step fails.
//!
//! Closed loop (senders wait until the room has their messages) finds the most a server
//! delivers, but hides what a member of a busy room feels: real senders do not wait. Here
//! the senders send on a fixed schedule whatever the server's latency, at each rate of
//! `--rates` in turn, on fresh connections and a fresh room per step. A step is *clean* when
//! nothing is lost, no socket was closed, the senders kept to the schedule, and p99 stayed
//! within `--max-p99-ms`. The highest clean step is the figure of merit, compared with the
//! baseline server's in the same invocation.

use std::time::Duration;

use serde::Serialize;

use crate::engine::Plan;
use crate::scenario::{self, Fanout};
use crate::stats::Report;
use crate::target::Target;

/// Share of the scheduled messages the senders must have sent for a step to count: below
/// it, the load tool (not the server) was the limit and the step says nothing.
const KEPT_SCHEDULE: f64 = 0.95;

/// `openloop`: the parameters.
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct OpenLoop {
    /// Connections.
    #[arg(long, default_value_t = 1_000)]
    pub clients: usize,
    /// Rooms (clients are dealt round robin).
    #[arg(long, default_value_t = 1)]
    pub rooms: usize,
    /// How many of the clients send, sharing the rate.
    #[arg(long, default_value_t = 200)]
    pub senders: usize,
    /// The steps: total messages per second over all senders, in increasing order. A
    /// message is delivered to every member of its room, so a step offers `rate × clients /
    /// rooms` deliveries per second.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "50,100,200,300,400,500,700,1000"
    )]
    pub rates: Vec<f64>,
    /// Seconds of sending per step.
    #[arg(long, default_value_t = 5)]
    pub duration: u64,
    /// Body size in bytes.
    #[arg(long, default_value_t = 100)]
    pub body: usize,
    /// A step with a higher p99 delivery latency than this is not clean.
    #[arg(long, default_value_t = 100.0)]
    pub max_p99_ms: f64,
    /// Run every step, even after one was not clean.
    #[arg(long)]
    pub all_steps: bool,
}

/// One step's result.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Offered messages per second.
    pub rate: f64,
    /// Offered deliveries per second (`rate` × members per room).
    pub offered_deliveries_per_s: f64,
    /// Deliveries per second achieved.
    pub deliveries_per_s: f64,
    /// Messages sent.
    pub sent: u64,
    /// Deliveries that never came.
    pub lost: u64,
    /// Connections the server closed.
    pub closed_early: usize,
    /// Delivery latency percentiles, ms (none without deliveries).
    pub p50_ms: Option<f64>,
    /// 99th percentile.
    pub p99_ms: Option<f64>,
    /// 99.9th percentile.
    pub p999_ms: Option<f64>,
    /// Server CPU microseconds per delivery.
    pub server_cpu_us_per_delivery: f64,
    /// Whether the step passed.
    pub clean: bool,
    /// Why it did not.
    pub why: Option<String>,
}

/// Every step of one server, and the highest clean one.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Steps {
    /// In the order run.
    pub steps: Vec<Step>,
    /// The highest clean step's offered messages per second (0: none was clean).
    pub highest_clean_rate: f64,
    /// The highest clean step's offered deliveries per second.
    pub highest_clean_deliveries_per_s: f64,
    /// The p99 of the highest clean step.
    pub p99_at_highest_clean_ms: Option<f64>,
}

impl Steps {
    /// The step table.
    pub fn print(&self) {
        println!(
            "  offered msg/s  deliveries/s (offered)   p50 ms    p99 ms  p99.9 ms  µs CPU/dlv  result"
        );
        let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
        for s in &self.steps {
            println!(
                "  {:>13.0}  {:>10.0} ({:>10.0})  {:>7}  {:>8}  {:>8}  {:>10.2}  {}",
                s.rate,
                s.deliveries_per_s,
                s.offered_deliveries_per_s,
                ms(s.p50_ms),
                ms(s.p99_ms),
                ms(s.p999_ms),
                s.server_cpu_us_per_delivery,
                s.why.as_deref().unwrap_or("clean"),
            );
        }
        println!(
            "  highest clean: {:.0} msg/s = {:.0} deliveries/s (p99 {})",
            self.highest_clean_rate,
            self.highest_clean_deliveries_per_s,
            ms(self.p99_at_highest_clean_ms)
        );
    }
}

/// Runs the steps on one server. The report's own figures are the highest clean step's (the
/// first step's when none was clean); `openloop` holds them all.
pub async fn run(p: &OpenLoop, target: &Target) -> Report {
    let members = p.clients as f64 / p.rooms.max(1) as f64;
    let mut steps = Steps::default();
    let mut best: Option<Report> = None;
    let mut first: Option<Report> = None;
    for &rate in &p.rates {
        let fanout = Fanout {
            clients: p.clients,
            rooms: p.rooms,
            senders: p.senders,
            rate,
            window: 0,
            duration: p.duration,
            body: p.body,
        };
        let plan = Plan {
            duration: Duration::from_secs(p.duration),
            body_size: p.body,
        };
        let specs = scenario::fanout_specs(&fanout, target);
        let report = scenario::measure("openloop", json(p), target, specs, plan).await;
        let step = judge(&report, p, rate, members);
        eprintln!(
            "openloop on {}: {rate} msg/s: {}",
            target.name,
            step.why.as_deref().unwrap_or("clean")
        );
        let clean = step.clean;
        steps.steps.push(step);
        if clean {
            steps.highest_clean_rate = rate;
            steps.highest_clean_deliveries_per_s = rate * members;
            steps.p99_at_highest_clean_ms = report.delivery_latency.as_ref().map(|l| l.p99_ms);
            best = Some(report);
        } else {
            first.get_or_insert(report);
            if !p.all_steps {
                break;
            }
        }
    }
    let mut report = best.or(first).unwrap_or_default();
    report.scenario = "openloop".into();
    report.target = target.name.clone();
    report.openloop = Some(steps);
    report
}

/// Judges one step: clean, or why not.
fn judge(report: &Report, p: &OpenLoop, rate: f64, members: f64) -> Step {
    let latency = report.delivery_latency.as_ref();
    let p99 = latency.map(|l| l.p99_ms);
    let scheduled = rate * p.duration as f64;
    let why = if report.connect_failures > 0 {
        Some(format!("{} connections failed", report.connect_failures))
    } else if report.closed_early > 0 {
        Some(format!("{} connections closed", report.closed_early))
    } else if report.lost > 0 {
        Some(format!("{} deliveries lost", report.lost))
    } else if (report.sent as f64) < scheduled * KEPT_SCHEDULE {
        Some(format!(
            "senders fell behind ({} of {scheduled:.0} sent)",
            report.sent
        ))
    } else if report.errors > 0 {
        Some(format!("{} sends refused", report.errors))
    } else {
        match p99 {
            None => Some("nothing delivered".into()),
            Some(v) if v > p.max_p99_ms => Some(format!("p99 {v:.1} ms > {} ms", p.max_p99_ms)),
            Some(_) => None,
        }
    };
    Step {
        rate,
        offered_deliveries_per_s: rate * members,
        deliveries_per_s: report.deliveries_per_s,
        sent: report.sent,
        lost: report.lost,
        closed_early: report.closed_early,
        p50_ms: latency.map(|l| l.p50_ms),
        p99_ms: p99,
        p999_ms: latency.map(|l| l.p999_ms),
        server_cpu_us_per_delivery: report.server_cpu_ms_per_1k_deliveries,
        clean: why.is_none(),
        why,
    }
}

fn json(params: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(params).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::LatencySummary;

    fn params() -> OpenLoop {
        OpenLoop {
            clients: 100,
            rooms: 1,
            senders: 5,
            rates: vec![100.0],
            duration: 10,
            body: 100,
            max_p99_ms: 100.0,
            all_steps: false,
        }
    }

    fn report(sent: u64, lost: u64, p99_ms: f64) -> Report {
        Report {
            sent,
            lost,
            delivery_latency: Some(LatencySummary {
                count: 10,
                p50_ms: 1.0,
                p90_ms: 2.0,
                p99_ms,
                p999_ms: p99_ms * 2.0,
                max_ms: p99_ms * 3.0,
            }),
            ..Report::default()
        }
    }

    #[test]
    fn a_step_is_clean_only_without_loss_lateness_or_lag() {
        let p = params();
        let clean = judge(&report(1000, 0, 20.0), &p, 100.0, 100.0);
        assert!(clean.clean, "{clean:?}");
        assert_eq!(clean.offered_deliveries_per_s, 10_000.0);
        let lost = judge(&report(1000, 3, 20.0), &p, 100.0, 100.0);
        assert_eq!(lost.why.as_deref(), Some("3 deliveries lost"));
        let slow = judge(&report(1000, 0, 150.0), &p, 100.0, 100.0);
        assert_eq!(slow.why.as_deref(), Some("p99 150.0 ms > 100 ms"));
        let behind = judge(&report(900, 0, 20.0), &p, 100.0, 100.0);
        assert!(!behind.clean, "{behind:?}");
        let mut closed = report(1000, 0, 20.0);
        closed.closed_early = 1;
        assert!(!judge(&closed, &p, 100.0, 100.0).clean);
        let mut silent = report(1000, 0, 20.0);
        silent.delivery_latency = None;
        assert_eq!(
            judge(&silent, &p, 100.0, 100.0).why.as_deref(),
            Some("nothing delivered")
        );
    }
}
