//! CPU time and resident memory of a process (the server, or the load generator itself) from
//! `/proc`, so a run can report CPU per request.

use anyhow::Context;

/// Linux reports process CPU time in `/proc/<pid>/stat` in ticks of 1/100 s (`getconf CLK_TCK`).
pub(crate) const CLOCK_TICKS_PER_SEC: u64 = 100;

/// CPU seconds (user + system, all threads) and resident set of a process, from `/proc`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProcessSample {
    pub(crate) cpu_ticks: u64,
    /// On-CPU nanoseconds summed over the live threads (`/proc/<pid>/task/*/schedstat`): exact,
    /// unlike the tick-sampled `cpu_ticks`, which can misattribute short, frequent wake-ups.
    pub(crate) cpu_nanos: Option<u64>,
    pub(crate) rss_kib: u64,
}

pub(crate) fn sample_process(pid: u32) -> anyhow::Result<ProcessSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("unexpected /proc/<pid>/stat format")?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |index: usize| -> anyhow::Result<u64> {
        fields
            .get(index - 3)
            .context("short /proc/<pid>/stat")?
            .parse()
            .context("non-numeric /proc/<pid>/stat field")
    };
    let cpu_ticks = field(14)? + field(15)?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let rss_kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .context("no VmRSS in /proc/<pid>/status")?;
    Ok(ProcessSample {
        cpu_ticks,
        cpu_nanos: scheduled_nanos(pid),
        rss_kib,
    })
}

/// Sum of every live thread's on-CPU time; `None` when the kernel does not expose schedstat.
fn scheduled_nanos(pid: u32) -> Option<u64> {
    let mut total = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let path = task.ok()?.path().join("schedstat");
        let text = std::fs::read_to_string(path).ok()?;
        total += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// CPU microseconds spent between two samples of one process, per completed request.
/// Prefers the exact schedstat time; falls back to clock ticks.
pub(crate) fn cpu_micros_per_request(
    before: ProcessSample,
    after: ProcessSample,
    completed: u64,
) -> f64 {
    let micros = match (before.cpu_nanos, after.cpu_nanos) {
        (Some(start), Some(end)) if end > start => (end - start) as f64 / 1e3,
        _ => {
            let ticks = after.cpu_ticks.saturating_sub(before.cpu_ticks) as f64;
            ticks * 1e6 / CLOCK_TICKS_PER_SEC as f64
        }
    };
    micros / completed.max(1) as f64
}
