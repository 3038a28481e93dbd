//! What a process costs, read from /proc: resident memory and CPU time.

use std::time::Duration;

/// One reading of a process.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// Resident set size, bytes.
    pub rss: u64,
    /// User plus system CPU time so far.
    pub cpu: Duration,
}

/// Clock ticks per second of /proc/*/stat times (`getconf CLK_TCK`; 100 on Linux x86).
fn ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|t| *t > 0)
        .unwrap_or(100)
}

/// Reads `pid` (`None`: this process). `None` when the process is gone.
pub fn sample(pid: Option<u32>) -> Option<Sample> {
    let dir = match pid {
        Some(p) => format!("/proc/{p}"),
        None => "/proc/self".into(),
    };
    let status = std::fs::read_to_string(format!("{dir}/status")).ok()?;
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string(format!("{dir}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at field 3; utime and
    // stime are fields 14 and 15.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let ticks = ticks_per_second();
    Some(Sample {
        rss: rss_kib * 1024,
        cpu: Duration::from_millis((utime + stime) * 1000 / ticks),
    })
}

/// The sum of several processes (the nodes of a cluster); `None` when one is gone, and for
/// none at all.
pub fn sample_all(pids: &[u32]) -> Option<Sample> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().try_fold(Sample::default(), |sum, &pid| {
        let s = sample(Some(pid))?;
        Some(Sample {
            rss: sum.rss + s.rss,
            cpu: sum.cpu + s.cpu,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_memory_and_cpu() {
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert_ne!(x, 1);
        let s = sample(None).unwrap();
        assert!(s.rss > 1024 * 1024, "{s:?}");
        assert!(sample(Some(u32::MAX)).is_none());
        let me = std::process::id();
        let twice = sample_all(&[me, me]).unwrap();
        assert!(
            twice.rss >= s.rss + s.rss / 2,
            "the sum of two readings: {twice:?}"
        );
        assert!(sample_all(&[]).is_none());
        assert!(sample_all(&[me, u32::MAX]).is_none());
    }
}
