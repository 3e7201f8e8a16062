//! CPU accounting from `/proc`: how much of the machine this process and
//! others used during a measurement, and the CPU time of named threads.

/// Jiffies from /proc/stat (whole machine) and /proc/self/stat (this
/// process), to say how much of the machine others used during the run.
pub struct CpuSample {
    total: u64,
    idle: u64,
    steal: u64,
    ours: u64,
}

/// Clock ticks per second of `/proc` times (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// utime + stime, in clock ticks, of a `/proc/.../stat` line. After the
/// command name (in parentheses) come state (field 3) … utime (14) and
/// stime (15): indexes 11 and 12 of what follows the name.
fn stat_ticks(stat: &str) -> u64 {
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |i: usize| -> u64 { fields.get(i).and_then(|x| x.parse().ok()).unwrap_or(0) };
    field(11) + field(12)
}

/// CPU seconds this process has used (all threads, user + system).
pub fn process_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    stat_ticks(&stat) as f64 / TICKS_PER_SECOND
}

/// CPU seconds the calling thread has used (user + system).
pub fn current_thread_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    stat_ticks(&stat) as f64 / TICKS_PER_SECOND
}

/// CPU seconds of this process's threads named `name` or `name-N` (a
/// table's helper writers).
pub fn thread_seconds(name: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| {
                let c = c.trim();
                c == name
                    || c.strip_prefix(name)
                        .and_then(|n| n.strip_prefix('-'))
                        .is_some_and(|n| n.parse::<u32>().is_ok())
            })
        })
        .map(|t| {
            let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
            stat_ticks(&stat) as f64 / TICKS_PER_SECOND
        })
        .sum()
}

impl CpuSample {
    pub fn now() -> CpuSample {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let cpu: Vec<u64> = stat
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .take(8)
            .filter_map(|x| x.parse().ok())
            .collect();
        let at = |i: usize| cpu.get(i).copied().unwrap_or(0);
        let me = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        CpuSample {
            total: cpu.iter().sum(),
            idle: at(3) + at(4),
            steal: at(7),
            ours: stat_ticks(&me),
        }
    }

    /// Shares of the machine over the interval: (this process, others,
    /// idle, steal), each 0..=1.
    pub fn since(&self, before: &CpuSample) -> [f64; 4] {
        let total = self.total.saturating_sub(before.total).max(1) as f64;
        let idle = self.idle.saturating_sub(before.idle) as f64;
        let steal = self.steal.saturating_sub(before.steal) as f64;
        let ours = self.ours.saturating_sub(before.ours) as f64;
        let busy = total - idle - steal;
        [
            ours / total,
            (busy - ours).max(0.0) / total,
            idle / total,
            steal / total,
        ]
    }
}
