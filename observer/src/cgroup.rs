//! The target's cgroups (v1 and v2): its memory limit, its CPU quota
//! (the tightest over the cgroup and its ancestors) and CFS throttling
//! counters from cpu.stat.

use std::path::{Path, PathBuf};

use serde::Serialize;

/// v1 limits at or above this mean "no limit" (the kernel's page-rounded
/// LONG_MAX).
const V1_UNLIMITED: u64 = 1 << 62;

/// Where a process sits in each hierarchy.
#[derive(Clone, Debug, Default)]
pub struct Cgroups {
    /// Directories whose files apply to the process, innermost first.
    memory: Vec<PathBuf>,
    cpu: Vec<PathBuf>,
    v2: bool,
}

/// CFS bandwidth counters (cumulative).
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct CpuStat {
    pub periods: u64,
    pub throttled_periods: u64,
    pub throttled_ns: u64,
}

impl Cgroups {
    /// Reads /proc/PID/cgroup; `root` is the cgroup mount root
    /// (/sys/fs/cgroup).
    pub fn of(pid: u32, root: &Path) -> Option<Self> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        Some(Self::parse(&text, root))
    }

    pub fn parse(text: &str, root: &Path) -> Self {
        let mut cgroups = Cgroups::default();
        let chain = |base: PathBuf, path: &str| -> Vec<PathBuf> {
            let mut dirs = Vec::new();
            let mut current = base.join(path.trim_start_matches('/'));
            loop {
                dirs.push(current.clone());
                if current == base || !current.pop() || !current.starts_with(&base) {
                    break;
                }
            }
            dirs
        };
        let mut v2_path = None;
        for line in text.lines() {
            let mut fields = line.splitn(3, ':');
            let (Some(_), Some(controllers), Some(path)) =
                (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            if controllers.is_empty() {
                v2_path = Some(path.to_string());
                continue;
            }
            for controller in controllers.split(',') {
                match controller {
                    "memory" => cgroups.memory = chain(root.join("memory"), path),
                    "cpu" => {
                        let dir = ["cpu,cpuacct", "cpu"]
                            .iter()
                            .map(|d| root.join(d))
                            .find(|d| d.exists())
                            .unwrap_or_else(|| root.join("cpu"));
                        cgroups.cpu = chain(dir, path);
                    }
                    _ => {}
                }
            }
        }
        // A pure v2 system (or hybrid with v2 controllers): use the unified
        // hierarchy for what v1 does not provide.
        if let Some(path) = v2_path {
            let unified = [root.join("unified"), root.to_path_buf()]
                .into_iter()
                .find(|d| d.join("cgroup.controllers").exists());
            if let Some(unified) = unified {
                let dirs = chain(unified, &path);
                if cgroups.memory.is_empty() && dirs.iter().any(|d| d.join("memory.max").exists()) {
                    cgroups.memory = dirs.clone();
                    cgroups.v2 = true;
                }
                if cgroups.cpu.is_empty() && dirs.iter().any(|d| d.join("cpu.max").exists()) {
                    cgroups.cpu = dirs;
                    cgroups.v2 = true;
                }
            }
        }
        cgroups
    }

    /// The tightest memory limit over the cgroup and its ancestors.
    pub fn memory_limit(&self) -> Option<u64> {
        self.memory
            .iter()
            .filter_map(|dir| {
                if let Ok(text) = std::fs::read_to_string(dir.join("memory.max")) {
                    return text.trim().parse::<u64>().ok();
                }
                let v1: u64 = std::fs::read_to_string(dir.join("memory.limit_in_bytes"))
                    .ok()?
                    .trim()
                    .parse()
                    .ok()?;
                (v1 < V1_UNLIMITED).then_some(v1)
            })
            .min()
    }

    /// The tightest CPU quota, in CPUs (quota / period).
    pub fn cpu_quota(&self) -> Option<f64> {
        self.cpu
            .iter()
            .filter_map(|dir| {
                if let Ok(text) = std::fs::read_to_string(dir.join("cpu.max")) {
                    return parse_cpu_max(&text);
                }
                let quota: i64 = read_number(&dir.join("cpu.cfs_quota_us"))?;
                let period: i64 = read_number(&dir.join("cpu.cfs_period_us"))?;
                (quota > 0 && period > 0).then(|| quota as f64 / period as f64)
            })
            .reduce(f64::min)
    }

    /// cpu.stat of the process's own cpu cgroup.
    pub fn cpu_stat(&self) -> Option<CpuStat> {
        let dir = self.cpu.first()?;
        let text = std::fs::read_to_string(dir.join("cpu.stat")).ok()?;
        Some(CpuStat::parse(&text))
    }

    /// The process's own cpu cgroup directory.
    pub fn cpu_dir(&self) -> Option<&Path> {
        self.cpu.first().map(PathBuf::as_path)
    }

    pub fn is_v2(&self) -> bool {
        self.v2
    }
}

impl CpuStat {
    /// Parses a cpu.stat file (v1 `throttled_time` in ns, v2
    /// `throttled_usec`); unknown and malformed lines are skipped.
    pub fn parse(text: &str) -> Self {
        let mut stat = CpuStat::default();
        for line in text.lines() {
            let mut kv = line.split_whitespace();
            let (Some(key), Some(value)) =
                (kv.next(), kv.next().and_then(|v| v.parse::<u64>().ok()))
            else {
                continue;
            };
            match key {
                "nr_periods" => stat.periods = value,
                "nr_throttled" => stat.throttled_periods = value,
                "throttled_time" => stat.throttled_ns = value,
                "throttled_usec" => stat.throttled_ns = value.saturating_mul(1000),
                _ => {}
            }
        }
        stat
    }
}

/// The quota in CPUs of a v2 cpu.max file (`QUOTA PERIOD`; `max`: none).
pub fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut parts = text.split_whitespace();
    let quota: f64 = parts.next()?.parse().ok()?;
    let period: f64 = parts.next()?.parse().ok()?;
    let finite = quota.is_finite() && period.is_finite();
    (finite && period > 0.0 && quota >= 0.0).then(|| quota / period)
}

fn read_number<T: std::str::FromStr>(path: &Path) -> Option<T> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn v1_limits_take_the_tightest_ancestor() {
        let root = std::env::temp_dir().join(format!("goscope-cg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        write(
            &root.join("memory/memory.limit_in_bytes"),
            "9223372036854771712\n",
        );
        write(
            &root.join("memory/svc/memory.limit_in_bytes"),
            "268435456\n",
        );
        write(
            &root.join("memory/svc/app/memory.limit_in_bytes"),
            "9223372036854771712\n",
        );
        write(&root.join("cpu,cpuacct/svc/cpu.cfs_quota_us"), "150000\n");
        write(&root.join("cpu,cpuacct/svc/cpu.cfs_period_us"), "100000\n");
        write(&root.join("cpu,cpuacct/svc/app/cpu.cfs_quota_us"), "-1\n");
        write(
            &root.join("cpu,cpuacct/svc/app/cpu.cfs_period_us"),
            "100000\n",
        );
        write(
            &root.join("cpu,cpuacct/svc/app/cpu.stat"),
            "nr_periods 10\nnr_throttled 4\nthrottled_time 5000\n",
        );
        let cg = Cgroups::parse("4:memory:/svc/app\n2:cpu,cpuacct:/svc/app\n0::/\n", &root);
        assert_eq!(cg.memory_limit(), Some(268_435_456));
        assert_eq!(cg.cpu_quota(), Some(1.5));
        assert_eq!(
            cg.cpu_stat(),
            Some(CpuStat {
                periods: 10,
                throttled_periods: 4,
                throttled_ns: 5000
            })
        );
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn v2_limits() {
        let root = std::env::temp_dir().join(format!("goscope-cg2-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        write(&root.join("cgroup.controllers"), "cpu memory\n");
        write(&root.join("svc/memory.max"), "max\n");
        write(&root.join("svc/cpu.max"), "50000 100000\n");
        write(
            &root.join("svc/cpu.stat"),
            "nr_periods 7\nnr_throttled 2\nthrottled_usec 30\n",
        );
        let cg = Cgroups::parse("0::/svc\n", &root);
        assert_eq!(cg.memory_limit(), None);
        assert_eq!(cg.cpu_quota(), Some(0.5));
        assert_eq!(cg.cpu_stat().unwrap().throttled_ns, 30_000);
        let _ = std::fs::remove_dir_all(&root);
    }
}
