//! cgroup limits for one container: the unified hierarchy (v2) when it has the
//! controllers, else the v1 memory, pids and cpu hierarchies. The hierarchy root is a
//! parameter, so the v2 code is tested on a plain directory here (this machine's
//! cgroup2 mount has no controllers).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// Limits from `-m`, `--memory-swap`, `--pids-limit`, `--cpus`.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// Bytes of memory.
    pub memory: Option<u64>,
    /// Memory plus swap, bytes (`None` with `memory`: no swap, as the seeds do).
    pub memory_swap: Option<i64>,
    /// Most processes.
    pub pids: Option<u64>,
    /// CPUs (fractions allowed).
    pub cpus: Option<f64>,
}

/// Which hierarchy a container's cgroup lives in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchy {
    /// Unified: one dir under this root.
    V2(PathBuf),
    /// Per-controller dirs under this root (`ROOT/memory`, `ROOT/pids`, `ROOT/cpu`).
    V1(PathBuf),
    /// None this process may use: rootless, with no cgroup v2 subtree delegated to the
    /// user (the reason, for a command that needs one). Containers run without one;
    /// limits and `pause` are refused with that reason.
    Unavailable(String),
}

/// Why a rootless user has no cgroup, in one line that names the fix.
const NO_DELEGATION: &str = "rootless: this user has no cgroup v2 subtree delegated to it with the memory and pids \
     controllers (systemd: `Delegate=yes` for user@.service, on a unified cgroup hierarchy)";

impl Hierarchy {
    /// The host's: v2 if `/sys/fs/cgroup` (or its `unified` mount) offers memory and pids, else v1.
    /// Rootless (in a user namespace): the subtree delegated to the user, if any.
    pub fn detect() -> anyhow::Result<Hierarchy> {
        if layers_store::layer::encoding::in_initial_user_namespace() {
            return Self::detect_at(Path::new("/sys/fs/cgroup"));
        }
        let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        Ok(Self::delegated_at(Path::new("/sys/fs/cgroup"), &own, rustix::process::geteuid().as_raw()))
    }

    /// A rootless process's hierarchy: the highest ancestor of its own v2 cgroup (`own`,
    /// `/proc/self/cgroup`'s text) under `mount` that `uid` owns (the delegation
    /// boundary: systemd hands `user@UID.service` to the user), if it has memory and pids.
    pub fn delegated_at(mount: &Path, own: &str, uid: u32) -> Hierarchy {
        use std::os::unix::fs::MetadataExt;
        let Some(path) = own.lines().find_map(|l| l.strip_prefix("0::")) else {
            return Hierarchy::Unavailable(NO_DELEGATION.to_string());
        };
        let mut dir = mount.to_path_buf();
        for part in path.split('/').filter(|p| !p.is_empty() && *p != "..") {
            dir.push(part);
            if fs::metadata(&dir).is_ok_and(|m| m.uid() == uid) {
                let controllers = fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
                let has = |c: &str| controllers.split_whitespace().any(|x| x == c);
                if has("memory") && has("pids") {
                    return Hierarchy::V2(dir);
                }
                break;
            }
        }
        Hierarchy::Unavailable(NO_DELEGATION.to_string())
    }

    /// As `detect`, for a hierarchy mounted at `root`.
    pub fn detect_at(root: &Path) -> anyhow::Result<Hierarchy> {
        for v2 in [root.to_path_buf(), root.join("unified")] {
            let controllers = fs::read_to_string(v2.join("cgroup.controllers")).unwrap_or_default();
            let has = |c: &str| controllers.split_whitespace().any(|x| x == c);
            if has("memory") && has("pids") {
                return Ok(Hierarchy::V2(v2));
            }
        }
        if root.join("memory").is_dir() && root.join("pids").is_dir() {
            return Ok(Hierarchy::V1(root.to_path_buf()));
        }
        bail!("no usable cgroup hierarchy at {} (need memory and pids controllers)", root.display())
    }
}

/// The file a single-threaded process writes `0` into to join a cgroup. On v1, the
/// thread's `tasks` file: moving only the calling thread spares the kernel the global
/// threadgroup lock that a write to `cgroup.procs` takes, and with it an RCU grace
/// period (5-20 ms here, most of a container start). The container's process is
/// single-threaded when it joins, so thread and process move alike. v2 has no such
/// file for a domain cgroup.
fn join_file(h: &Hierarchy) -> &'static str {
    match h {
        Hierarchy::V1(_) => "tasks",
        Hierarchy::V2(_) | Hierarchy::Unavailable(_) => "cgroup.procs",
    }
}

/// The v1 controllers a container gets a cgroup in where the host mounts them, after
/// memory, pids and cpu: the freezer (`pause`), cpuacct and blkio (`stats`).
const V1_OPTIONAL: [&str; 3] = ["freezer", "cpuacct", "blkio"];

/// Container `id`'s dir of v1 controller `ctrl` under the hierarchy `root`.
pub(crate) fn v1_dir(root: &Path, ctrl: &str, id: &str) -> PathBuf {
    root.join(ctrl).join("layers").join(id)
}

/// Container `id`'s one dir under the v2 hierarchy `root`.
pub(crate) fn v2_dir(root: &Path, id: &str) -> PathBuf {
    root.join("layers").join(id)
}

/// A container's cgroup(s), removed by `remove`.
#[derive(Debug)]
pub struct Cgroup {
    hierarchy: Hierarchy,
    /// The dirs made, one per controller on v1, one on v2.
    dirs: Vec<PathBuf>,
    memory_limit: Option<u64>,
}

fn write(dir: &Path, file: &str, value: &str) -> anyhow::Result<()> {
    fs::write(dir.join(file), value).with_context(|| format!("set cgroup {}/{file} to {value}", dir.display()))
}

impl Cgroup {
    /// Makes `layers/<id>` in the hierarchy and applies `limits`.
    pub fn create(hierarchy: &Hierarchy, id: &str, limits: &Limits) -> anyhow::Result<Cgroup> {
        let mut cg = Cgroup { hierarchy: hierarchy.clone(), dirs: Vec::new(), memory_limit: limits.memory };
        let made = cg.make(id, limits);
        if made.is_err() {
            cg.remove();
        }
        made.map(|()| cg)
    }

    fn make(&mut self, id: &str, l: &Limits) -> anyhow::Result<()> {
        match self.hierarchy.clone() {
            Hierarchy::Unavailable(why) => {
                let asked: Vec<&str> = [
                    l.memory.map(|_| "--memory"),
                    l.memory_swap.map(|_| "--memory-swap"),
                    l.pids.map(|_| "--pids-limit"),
                    l.cpus.map(|_| "--cpus"),
                ]
                .into_iter()
                .flatten()
                .collect();
                if !asked.is_empty() {
                    bail!("{} cannot be applied: {why}", asked.join(", "));
                }
            }
            Hierarchy::V2(root) => {
                let parent = root.join("layers");
                fs::create_dir_all(&parent).with_context(|| format!("create cgroup {}", parent.display()))?;
                // Controllers must be enabled in every ancestor's subtree_control.
                for dir in [&root, &parent] {
                    let _ = write(dir, "cgroup.subtree_control", "+memory +pids +cpu");
                }
                let dir = parent.join(id);
                fs::create_dir(&dir).with_context(|| format!("create cgroup {}", dir.display()))?;
                self.dirs.push(dir.clone());
                if let Some(m) = l.memory {
                    write(&dir, "memory.max", &m.to_string())?;
                    let swap = match l.memory_swap {
                        Some(-1) => "max".to_string(),
                        Some(total) => (total.max(m as i64) - m as i64).to_string(),
                        None => "0".to_string(),
                    };
                    write(&dir, "memory.swap.max", &swap)?;
                }
                if let Some(p) = l.pids {
                    write(&dir, "pids.max", &p.to_string())?;
                }
                if let Some(c) = l.cpus {
                    write(&dir, "cpu.max", &format!("{} 100000", (c * 100_000.0).round() as u64))?;
                }
            }
            Hierarchy::V1(root) => {
                for ctrl in ["memory", "pids", "cpu"] {
                    let dir = v1_dir(&root, ctrl, id);
                    fs::create_dir_all(&dir).with_context(|| format!("create cgroup {}", dir.display()))?;
                    self.dirs.push(dir);
                }
                // The freezer (`pause`, `commit` of a running container), and cpuacct and blkio
                // (`stats`) where the host has them; last, so the limits below keep their indices.
                for ctrl in V1_OPTIONAL.iter().filter(|c| root.join(c).is_dir()) {
                    let dir = v1_dir(&root, ctrl, id);
                    fs::create_dir_all(&dir).with_context(|| format!("create cgroup {}", dir.display()))?;
                    self.dirs.push(dir);
                }
                let (mem, pids, cpu) = (&self.dirs[0], &self.dirs[1], &self.dirs[2]);
                if let Some(m) = l.memory {
                    write(mem, "memory.limit_in_bytes", &m.to_string())?;
                    // No swap beyond the limit unless asked (memsw exists only with swap accounting).
                    let _ = write(mem, "memory.swappiness", "0");
                    if mem.join("memory.memsw.limit_in_bytes").exists() {
                        let total = match l.memory_swap {
                            Some(-1) => "-1".to_string(),
                            Some(t) => t.max(m as i64).to_string(),
                            None => m.to_string(),
                        };
                        write(mem, "memory.memsw.limit_in_bytes", &total)?;
                    }
                }
                if let Some(p) = l.pids {
                    write(pids, "pids.max", &p.to_string())?;
                }
                if let Some(c) = l.cpus {
                    write(cpu, "cpu.cfs_period_us", "100000")?;
                    write(cpu, "cpu.cfs_quota_us", &((c * 100_000.0).round() as u64).to_string())?;
                }
            }
        }
        Ok(())
    }

    /// The dirs `create` makes for container `id`.
    fn dirs_of(hierarchy: &Hierarchy, id: &str) -> Vec<PathBuf> {
        match hierarchy {
            Hierarchy::Unavailable(_) => Vec::new(),
            Hierarchy::V2(root) => vec![v2_dir(root, id)],
            Hierarchy::V1(root) => ["memory", "pids", "cpu"]
                .iter()
                .chain(V1_OPTIONAL.iter().filter(|c| root.join(c).is_dir()))
                .map(|c| v1_dir(root, c, id))
                .collect(),
        }
    }

    /// Freezes (or thaws) every process of container `id` and waits until the kernel
    /// says they are: v2's `cgroup.freeze` (done when `cgroup.events` says so), v1's
    /// freezer controller (done when `freezer.state` says so).
    pub fn set_frozen(hierarchy: &Hierarchy, id: &str, frozen: bool) -> anyhow::Result<()> {
        let (dir, file, value, state, done) = match hierarchy {
            Hierarchy::V2(root) => (
                v2_dir(root, id),
                "cgroup.freeze",
                if frozen { "1" } else { "0" },
                "cgroup.events",
                if frozen { "frozen 1" } else { "frozen 0" },
            ),
            Hierarchy::V1(root) => {
                let dir = v1_dir(root, "freezer", id);
                let want = if frozen { "FROZEN" } else { "THAWED" };
                (dir, "freezer.state", want, "freezer.state", want)
            }
            Hierarchy::Unavailable(why) => bail!("container {id} has no freezer cgroup: {why}"),
        };
        if !dir.is_dir() {
            bail!("container {id} has no freezer cgroup at {}", dir.display());
        }
        write(&dir, file, value)?;
        let started = std::time::Instant::now();
        while !fs::read_to_string(dir.join(state)).is_ok_and(|s| s.lines().any(|l| l.trim() == done)) {
            if started.elapsed() > std::time::Duration::from_secs(10) {
                if frozen {
                    let _ = Self::set_frozen(hierarchy, id, false);
                }
                bail!("container {id}: its processes did not {} within 10 s", if frozen { "freeze" } else { "thaw" });
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        Ok(())
    }

    /// Whether container `id`'s processes are frozen (or freezing): `pause`, or a
    /// `commit` in progress.
    pub fn is_frozen(hierarchy: &Hierarchy, id: &str) -> bool {
        match hierarchy {
            Hierarchy::V2(root) => {
                fs::read_to_string(v2_dir(root, id).join("cgroup.freeze")).is_ok_and(|s| s.trim() == "1")
            }
            Hierarchy::V1(root) => fs::read_to_string(v1_dir(root, "freezer", id).join("freezer.state"))
                .is_ok_and(|s| matches!(s.trim(), "FROZEN" | "FREEZING")),
            Hierarchy::Unavailable(_) => false,
        }
    }

    /// The `cgroup.procs` files of container `id`'s cgroup made by `create` (for `exec`).
    pub fn procs_files_of(hierarchy: &Hierarchy, id: &str) -> Vec<PathBuf> {
        Self::dirs_of(hierarchy, id).into_iter().map(|d| d.join(join_file(hierarchy))).collect()
    }

    /// The host PIDs of every process in container `id`'s cgroup.
    pub fn pids_of(hierarchy: &Hierarchy, id: &str) -> Vec<u32> {
        let Some(dir) = Self::dirs_of(hierarchy, id).into_iter().next() else { return Vec::new() };
        let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        procs.lines().filter_map(|l| l.trim().parse().ok()).collect()
    }

    /// Removes what is left of container `id`'s cgroup when its `layers run` could not
    /// (it was killed): only empty cgroups can go, so a live one stays.
    pub fn remove_leftover(hierarchy: &Hierarchy, id: &str) {
        for dir in Self::dirs_of(hierarchy, id) {
            let _ = fs::remove_dir(dir);
        }
    }

    /// The files a (single-threaded) process writes `0` into to join.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join(join_file(&self.hierarchy))).collect()
    }

    /// Whether the kernel's OOM killer killed something in the cgroup.
    pub fn oom_killed(&self) -> bool {
        let Some(dir) = self.dirs.first() else { return false };
        let file = match self.hierarchy {
            Hierarchy::V2(_) => "memory.events",
            Hierarchy::V1(_) => "memory.oom_control",
            Hierarchy::Unavailable(_) => return false,
        };
        let text = fs::read_to_string(dir.join(file)).unwrap_or_default();
        text.lines().any(|l| l.strip_prefix("oom_kill ").is_some_and(|n| n.trim() != "0"))
    }

    /// The memory limit, for the OOM message.
    pub fn memory_limit(&self) -> Option<u64> {
        self.memory_limit
    }

    /// Removes the cgroup dirs (they must be empty of processes; retried briefly while the kernel finishes).
    pub fn remove(&mut self) {
        for dir in self.dirs.drain(..).rev() {
            // The last process leaves its cgroup a moment after it is reaped: poll, briefly
            // at first (a run of /bin/true must not pay milliseconds here), for up to ~1 s.
            let mut wait = std::time::Duration::from_micros(50);
            for _ in 0..30 {
                match fs::remove_dir(&dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(_) => {
                        std::thread::sleep(wait);
                        wait = (wait * 2).min(std::time::Duration::from_millis(50));
                    }
                }
            }
        }
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        self.remove();
    }
}

/// `100M`, `1g`, `512k`, `1073741824`: bytes (binary units, as docker).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => {
            let mult = match s[i..].to_ascii_lowercase().trim_end_matches('b') {
                "" => 1,
                "k" => 1 << 10,
                "m" => 1 << 20,
                "g" => 1 << 30,
                "t" => 1u64 << 40,
                _ => return Err(format!("invalid size {s:?}: use a number with b, k, m, g or t")),
            };
            (&s[..i], mult)
        }
        None => (s, 1),
    };
    let n: f64 = num.parse().map_err(|_| format!("invalid size {s:?}: use a number with b, k, m, g or t"))?;
    if !(n.is_finite() && n > 0.0) {
        return Err(format!("invalid size {s:?}: must be positive"));
    }
    Ok((n * mult as f64) as u64)
}

/// `bytes` in the largest unit that gives it exactly (`20M` for 20 MiB), as `-m` takes it.
pub fn format_bytes(bytes: u64) -> String {
    for (unit, shift) in [("T", 40), ("G", 30), ("M", 20), ("k", 10)] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_print_back_as_dash_m_takes_them() {
        assert_eq!(format_bytes(parse_bytes("20M").unwrap()), "20M");
        assert_eq!(format_bytes(parse_bytes("1g").unwrap()), "1G");
        assert_eq!(format_bytes(1536), "1536");
        assert_eq!(format_bytes(parse_bytes("1.5g").unwrap()), "1536M");
    }

    #[test]
    fn sizes_parse_like_docker() {
        assert_eq!(parse_bytes("100M").unwrap(), 100 << 20);
        assert_eq!(parse_bytes("1g").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("512kb").unwrap(), 512 << 10);
        assert_eq!(parse_bytes("4096").unwrap(), 4096);
        assert!(parse_bytes("10x").is_err() && parse_bytes("-1m").is_err() && parse_bytes("m").is_err());
    }

    #[test]
    fn v2_freezing_writes_cgroup_freeze_and_waits_for_cgroup_events() {
        let root = tempfile::tempdir().unwrap();
        let h = Hierarchy::V2(root.path().to_path_buf());
        let dir = root.path().join("layers/c1");
        fs::create_dir_all(&dir).unwrap();
        // The kernel reports the state it reached; here the test plays the kernel.
        fs::write(dir.join("cgroup.events"), "populated 1\nfrozen 1\n").unwrap();
        Cgroup::set_frozen(&h, "c1", true).unwrap();
        assert_eq!(fs::read_to_string(dir.join("cgroup.freeze")).unwrap(), "1");
        assert!(Cgroup::is_frozen(&h, "c1"));
        fs::write(dir.join("cgroup.events"), "populated 1\nfrozen 0\n").unwrap();
        Cgroup::set_frozen(&h, "c1", false).unwrap();
        assert_eq!(fs::read_to_string(dir.join("cgroup.freeze")).unwrap(), "0");
        assert!(!Cgroup::is_frozen(&h, "c1"));
        assert!(Cgroup::set_frozen(&h, "nope", true).unwrap_err().to_string().contains("no freezer cgroup"));
        assert!(!Cgroup::is_frozen(&h, "nope"));
    }

    #[test]
    fn a_rootless_user_gets_the_subtree_delegated_to_it_or_a_reason() {
        use std::os::unix::fs::MetadataExt;
        let mount = tempfile::tempdir().unwrap();
        let me = fs::metadata(mount.path()).unwrap().uid();
        let service = mount.path().join("user.slice/user-1000.slice/user@1000.service");
        fs::create_dir_all(service.join("app.slice/run-1.scope")).unwrap();
        let own = "0::/user.slice/user-1000.slice/user@1000.service/app.slice/run-1.scope\n";
        // The whole tree is ours here: the highest dir we own is the boundary, and it
        // lacks the controllers.
        assert!(matches!(Hierarchy::delegated_at(mount.path(), own, me), Hierarchy::Unavailable(_)));
        fs::write(mount.path().join("user.slice/cgroup.controllers"), "cpu memory pids").unwrap();
        assert_eq!(Hierarchy::delegated_at(mount.path(), own, me), Hierarchy::V2(mount.path().join("user.slice")));
        // Not ours at all (another uid owns every dir): no cgroup, and limits say why.
        let h = Hierarchy::delegated_at(mount.path(), own, me + 1);
        let Hierarchy::Unavailable(why) = &h else { panic!("{h:?}") };
        assert!(why.contains("Delegate=yes"), "{why}");
        let none = Cgroup::create(&h, "c1", &Limits::default()).unwrap();
        assert!(none.procs_files().is_empty() && !none.oom_killed());
        let limits = Limits { memory: Some(1 << 20), pids: Some(5), ..Limits::default() };
        let err = Cgroup::create(&h, "c1", &limits).unwrap_err().to_string();
        assert!(err.starts_with("--memory, --pids-limit cannot be applied: rootless"), "{err}");
        assert!(Cgroup::set_frozen(&h, "c1", true).is_err());
    }

    #[test]
    fn v2_limits_are_written_through_the_seam() {
        let root = tempfile::tempdir().unwrap();
        fs::write(root.path().join("cgroup.controllers"), "cpuset cpu io memory pids").unwrap();
        let h = Hierarchy::detect_at(root.path()).unwrap();
        assert_eq!(h, Hierarchy::V2(root.path().to_path_buf()));
        let limits = Limits { memory: Some(100 << 20), memory_swap: None, pids: Some(64), cpus: Some(1.5) };
        let mut cg = Cgroup::create(&h, "c1", &limits).unwrap();
        let dir = root.path().join("layers/c1");
        let read = |f: &str| fs::read_to_string(dir.join(f)).unwrap();
        assert_eq!(read("memory.max"), (100u64 << 20).to_string());
        assert_eq!(read("memory.swap.max"), "0", "no swap beyond the limit by default");
        assert_eq!((read("pids.max").as_str(), read("cpu.max").as_str()), ("64", "150000 100000"));
        assert_eq!(
            fs::read_to_string(root.path().join("layers/cgroup.subtree_control")).unwrap(),
            "+memory +pids +cpu"
        );
        assert_eq!(cg.procs_files(), [dir.join("cgroup.procs")]);
        fs::write(dir.join("memory.events"), "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n").unwrap();
        assert!(cg.oom_killed());
        // A real cgroup dir's files vanish with it; here they must go first.
        for f in fs::read_dir(&dir).unwrap() {
            fs::remove_file(f.unwrap().path()).unwrap();
        }
        cg.remove();
        assert!(!dir.exists());
    }

    #[test]
    fn v1_is_chosen_when_the_unified_mount_has_no_controllers() {
        let root = tempfile::tempdir().unwrap();
        for d in ["memory", "pids", "cpu", "unified"] {
            fs::create_dir(root.path().join(d)).unwrap();
        }
        fs::write(root.path().join("unified/cgroup.controllers"), "").unwrap();
        assert_eq!(Hierarchy::detect_at(root.path()).unwrap(), Hierarchy::V1(root.path().to_path_buf()));
        let swap = Limits { memory: Some(1 << 20), memory_swap: Some(3 << 20), ..Default::default() };
        let cg = Cgroup::create(&Hierarchy::V1(root.path().to_path_buf()), "c", &swap).unwrap();
        let mem = root.path().join("memory/layers/c");
        assert_eq!(fs::read_to_string(mem.join("memory.limit_in_bytes")).unwrap(), (1u64 << 20).to_string());
        assert_eq!(cg.procs_files().len(), 3);
        assert!(cg.procs_files().iter().all(|f| f.ends_with("tasks")), "v1: join by thread, no global lock");
    }
}
