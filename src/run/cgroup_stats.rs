//! One reading of a container's resource use, from the cgroup `create` made for it
//! (v2's one dir, or v1's memory, pids, cpuacct and blkio dirs) and its network
//! namespace's interface counters: what `stats` shows. A figure the cgroup does not
//! have is `None`, shown as `--`.

use std::fs;
use std::path::Path;

use super::cgroup::{v1_dir, v2_dir, Hierarchy};

/// A container's use at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sample {
    /// CPU time used, nanoseconds.
    pub cpu_ns: Option<u64>,
    /// Memory in use, less the inactive file cache (as Docker counts it).
    pub memory: Option<u64>,
    /// The memory limit (the host's memory when there is none).
    pub memory_limit: Option<u64>,
    /// Processes.
    pub pids: Option<u64>,
    /// Bytes read and written on block devices.
    pub block: Option<(u64, u64)>,
    /// Bytes received and sent on its interfaces other than `lo`.
    pub net: Option<(u64, u64)>,
}

fn number(dir: &Path, file: &str) -> Option<u64> {
    fs::read_to_string(dir.join(file)).ok()?.trim().parse().ok()
}

/// `KEY VALUE` lines (`memory.stat`, `cpu.stat`): the value of `key`.
fn keyed(dir: &Path, file: &str, key: &str) -> Option<u64> {
    let text = fs::read_to_string(dir.join(file)).ok()?;
    text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The machine's memory, the limit of a container with none (as Docker shows it).
fn host_memory() -> Option<u64> {
    let info = fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 =
        info.lines().find_map(|l| l.strip_prefix("MemTotal:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb * 1024)
}

/// Bytes in and out of the network namespace `pid` is in, less `lo`.
fn net_of(pid: u32) -> Option<(u64, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/net/dev")).ok()?;
    let mut total = (0, 0);
    // Two header lines, then `  eth0: RXBYTES packets … TXBYTES …`.
    for line in text.lines().skip(2) {
        let (name, rest) = line.split_once(':')?;
        if name.trim() == "lo" {
            continue;
        }
        let fields: Vec<u64> = rest.split_whitespace().filter_map(|f| f.parse().ok()).collect();
        if fields.len() >= 9 {
            total.0 += fields[0];
            total.1 += fields[8];
        }
    }
    Some(total)
}

/// Container `id`'s use now; `pid`: its first process, for its network counters.
pub fn sample(hierarchy: &Hierarchy, id: &str, pid: Option<u32>) -> Sample {
    let limit = |v: Option<u64>| match v {
        // v1's "no limit" is a page-rounded i64::MAX.
        Some(l) if l < (1 << 62) => Some(l),
        _ => host_memory(),
    };
    let mut s = Sample { net: pid.and_then(net_of), ..Sample::default() };
    match hierarchy {
        Hierarchy::Unavailable(_) => {}
        Hierarchy::V2(root) => {
            let dir = v2_dir(root, id);
            s.cpu_ns = keyed(&dir, "cpu.stat", "usage_usec").map(|us| us * 1000);
            s.memory = number(&dir, "memory.current")
                .map(|m| m.saturating_sub(keyed(&dir, "memory.stat", "inactive_file").unwrap_or(0)));
            s.memory_limit = limit(number(&dir, "memory.max"));
            s.pids = number(&dir, "pids.current");
            s.block = fs::read_to_string(dir.join("io.stat")).ok().map(|t| io_stat(&t));
        }
        Hierarchy::V1(root) => {
            let dir = |ctrl: &str| v1_dir(root, ctrl, id);
            let mem = dir("memory");
            s.memory = number(&mem, "memory.usage_in_bytes")
                .map(|m| m.saturating_sub(keyed(&mem, "memory.stat", "total_inactive_file").unwrap_or(0)));
            s.memory_limit = limit(number(&mem, "memory.limit_in_bytes"));
            s.pids = number(&dir("pids"), "pids.current");
            s.cpu_ns = number(&dir("cpuacct"), "cpuacct.usage");
            s.block = fs::read_to_string(dir("blkio").join("blkio.throttle.io_service_bytes_recursive"))
                .ok()
                .map(|t| blkio(&t));
        }
    }
    s
}

/// v2's `io.stat`: `MAJ:MIN rbytes=N wbytes=N …` per device, summed.
fn io_stat(text: &str) -> (u64, u64) {
    let mut total = (0, 0);
    for word in text.split_whitespace() {
        if let Some(n) = word.strip_prefix("rbytes=").and_then(|n| n.parse::<u64>().ok()) {
            total.0 += n;
        } else if let Some(n) = word.strip_prefix("wbytes=").and_then(|n| n.parse::<u64>().ok()) {
            total.1 += n;
        }
    }
    total
}

/// v1's `blkio.throttle.io_service_bytes_recursive`: `MAJ:MIN Read N` lines, summed.
fn blkio(text: &str) -> (u64, u64) {
    let mut total = (0, 0);
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if let [_, op, n] = f.as_slice() {
            let n: u64 = n.parse().unwrap_or(0);
            match *op {
                "Read" => total.0 += n,
                "Write" => total.1 += n,
                _ => {}
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_v2_cgroup_is_read_as_docker_counts_it() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("layers/c1");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("cpu.stat"), "usage_usec 1500\nuser_usec 1000\n").unwrap();
        fs::write(dir.join("memory.current"), "10485760\n").unwrap();
        fs::write(dir.join("memory.stat"), "anon 1\ninactive_file 4194304\n").unwrap();
        fs::write(dir.join("memory.max"), "67108864\n").unwrap();
        fs::write(dir.join("pids.current"), "3\n").unwrap();
        fs::write(dir.join("io.stat"), "8:0 rbytes=100 wbytes=20 rios=1\n8:16 rbytes=5 wbytes=0\n").unwrap();
        let s = sample(&Hierarchy::V2(root.path().to_path_buf()), "c1", None);
        assert_eq!(s.cpu_ns, Some(1_500_000));
        assert_eq!(s.memory, Some(6 << 20), "less the inactive file cache");
        assert_eq!(s.memory_limit, Some(64 << 20));
        assert_eq!(s.pids, Some(3));
        assert_eq!(s.block, Some((105, 20)));
        fs::write(dir.join("memory.max"), "max\n").unwrap();
        assert_eq!(sample(&Hierarchy::V2(root.path().to_path_buf()), "c1", None).memory_limit, host_memory());
    }

    #[test]
    fn v1_blkio_lines_are_summed_by_direction() {
        assert_eq!(blkio("8:0 Read 4096\n8:0 Write 512\n8:0 Sync 4608\n8:0 Total 4608\nTotal 4608\n"), (4096, 512));
    }
}
