//! Resource figures: this process's CPU time and memory (`getrusage`, `/proc/self`), and a
//! server's memory and CPU time from `/proc/<pid>`.

use std::time::Duration;

use anyhow::{Context, bail};

/// CPU time spent by a process so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuTime {
    pub user: Duration,
    pub system: Duration,
}

impl CpuTime {
    pub fn total(&self) -> Duration {
        self.user + self.system
    }

    /// The CPU time spent between `earlier` and `self`.
    pub fn since(&self, earlier: &CpuTime) -> CpuTime {
        CpuTime {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
        }
    }
}

/// This process's CPU time, all threads included.
pub fn self_cpu() -> CpuTime {
    // SAFETY: getrusage writes into the zeroed struct we pass and reads nothing else.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    CpuTime {
        user: tv(usage.ru_utime),
        system: tv(usage.ru_stime),
    }
}

/// The whole machine's CPU time so far, all processes included: (busy, total) in clock ticks
/// summed over every core, from the first line of `/proc/stat`.
pub fn machine_cpu() -> anyhow::Result<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    parse_machine_cpu(&stat).context("unexpected format of /proc/stat")
}

fn parse_machine_cpu(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .map(|t| t.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice, already in user/nice]
    let total: u64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3)? + ticks.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// How many cores the machine has online.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The resident set size of process `pid` in KiB (`VmRSS` in `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_vm_rss(&status).with_context(|| format!("no VmRSS line in {path}"))
}

/// This process's resident set size in KiB.
pub fn self_rss_kib() -> anyhow::Result<u64> {
    rss_kib(std::process::id())
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line["VmRSS:".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The CPU time process `pid` has used so far, from `/proc/<pid>/stat`.
pub fn process_cpu(pid: u32) -> anyhow::Result<CpuTime> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks <= 0 {
        bail!("sysconf(_SC_CLK_TCK) failed");
    }
    parse_stat_cpu(&stat, ticks as u64).with_context(|| format!("unexpected format of {path}"))
}

/// Which processes to add up: by command name (`comm`, as `ps -o comm` shows it, e.g.
/// `postgres`), or by a piece of the command line (PostgreSQL backends show their database
/// there: `postgres: 15/main: root <database> …`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessMatch {
    Comm(String),
    CmdlineContains(String),
}

impl ProcessMatch {
    /// How the match is named in reports: `postgres`, or `cmdline~<text>`.
    pub fn label(&self) -> String {
        match self {
            ProcessMatch::Comm(name) => name.clone(),
            ProcessMatch::CmdlineContains(text) => format!("cmdline~{text}"),
        }
    }

    fn matches(&self, pid: u32) -> bool {
        match self {
            ProcessMatch::Comm(name) => std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim_end() == name),
            ProcessMatch::CmdlineContains(text) => std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains(text.as_str())),
        }
    }
}

/// The CPU time used so far by every process that `what` matches, summed. Processes that
/// ended are not counted, and this process never is.
pub fn processes_cpu(what: &ProcessMatch) -> CpuTime {
    let mut total = CpuTime::default();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return total;
    };
    let own = std::process::id();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != own
            && what.matches(pid)
            && let Ok(cpu) = process_cpu(pid)
        {
            total.user += cpu.user;
            total.system += cpu.system;
        }
    }
    total
}

fn parse_stat_cpu(stat: &str, ticks_per_sec: u64) -> Option<CpuTime> {
    // The command name (field 2) is in parentheses and may hold spaces, so count the fields
    // after its closing parenthesis: utime and stime are fields 14 and 15 of the whole line.
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let to_duration = |t: u64| Duration::from_secs_f64(t as f64 / ticks_per_sec as f64);
    Some(CpuTime {
        user: to_duration(utime),
        system: to_duration(stime),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vm_rss() {
        let status = "Name:\tconfab\nVmPeak:\t  100 kB\nVmRSS:\t   53124 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss(status), Some(53124));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
    }

    #[test]
    fn reads_cpu_from_stat() {
        let stat = "1234 (a (weird) name) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 3 0 100 0 0";
        let cpu = parse_stat_cpu(stat, 100).unwrap();
        assert_eq!(cpu.user, Duration::from_millis(2500));
        assert_eq!(cpu.system, Duration::from_millis(500));
    }

    #[test]
    fn reads_machine_cpu() {
        let stat = "cpu  100 5 50 800 20 3 2 0 0 0\ncpu0 50 2 25 400 10 1 1 0 0 0\n";
        assert_eq!(parse_machine_cpu(stat), Some((160, 980)));
        assert!(machine_cpu().is_ok());
    }

    #[test]
    fn matches_processes() {
        let nobody = ProcessMatch::Comm("no-such-process-name".into());
        assert_eq!(processes_cpu(&nobody).total(), Duration::ZERO);
        assert!(ProcessMatch::Comm("init".into()).label() == "init");
        let parent = std::os::unix::process::parent_id();
        let cmdline = std::fs::read(format!("/proc/{parent}/cmdline")).unwrap();
        let first =
            String::from_utf8_lossy(cmdline.split(|&b| b == 0).next().unwrap()).into_owned();
        assert!(ProcessMatch::CmdlineContains(first).matches(parent));
        assert!(!ProcessMatch::CmdlineContains("no such text \u{1F600}".into()).matches(parent));
    }

    #[test]
    fn reads_own_figures() {
        assert!(self_rss_kib().unwrap() > 0);
        let cpu = process_cpu(std::process::id()).unwrap();
        assert!(cpu.total() <= self_cpu().total() + Duration::from_secs(1));
    }
}
