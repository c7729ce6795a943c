//! The container's first process, between fork and exec: join the cgroup, unshare
//! namespaces, mount the root filesystem in its own mount namespace, `pivot_root`,
//! become the user, drop capabilities. Runs in `Command::pre_exec`, in a
//! single-threaded copy of `layers`; the first failure is written to the error pipe
//! as one line and the parent prints it.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use layers_store::snapshots::mount::MountSpec;
use rustix::mount::MountFlags;
use rustix::thread::{CapabilitySet, CapabilitySets, UnshareFlags};

use super::sys::{errno, Kernel, Kind, Step, Sys};
use super::users;

/// Everything the child needs, prepared by the parent before the fork.
pub struct ChildSetup {
    /// `cgroup.procs` files to join.
    pub cgroup_procs: Vec<PathBuf>,
    /// The overlay (or view) to mount.
    pub mount: MountSpec,
    /// Where to mount it (an empty dir of the container's).
    pub rootfs: PathBuf,
    /// The UTS name.
    pub hostname: String,
    /// Its network namespace.
    pub network: ChildNetwork,
    /// Host files bind-mounted over paths in the container (`/etc/hosts`...).
    pub files: Vec<(PathBuf, String)>,
    /// Who to become (resolved by the parent).
    pub user: users::User,
    /// Absolute working dir.
    pub cwd: String,
    /// Capabilities kept (bounding, permitted, effective for root).
    pub caps: CapabilitySet,
    /// Skip the /proc masks and keep every capability.
    pub privileged: bool,
    /// seccomp filters, compiled before the fork; empty for none.
    pub seccomp: Vec<seccompiler::BpfProgram>,
    /// Bind mounts from the host (`-v`; a named volume too, as its directory).
    pub binds: Vec<Bind>,
    /// tmpfs mounts (`--tmpfs`): target and mount options.
    pub tmpfs: Vec<(String, String)>,
    /// `--read-only`: the root filesystem mount is read-only (volumes keep their own mode).
    pub read_only: bool,
    /// `-t`: the socket the container's pty master is sent over.
    pub console: Option<OwnedFd>,
    /// `--init`: a small PID 1 runs the command as its child.
    pub init: bool,
    /// How /dev gets its device nodes.
    pub devices: Devices,
}

/// The network namespace a container's child takes.
#[derive(Debug)]
pub enum ChildNetwork {
    /// A new one with only `lo` up (`--network none`).
    Own,
    /// The one it was started in (`--network host`, and user-mode networks, whose
    /// namespace the starting process has joined).
    Inherited,
    /// One made ready by the parent (`--network bridge`): joined first.
    Join(OwnedFd),
}

/// How a container's /dev gets its device nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Devices {
    /// Made with mknod (root in the initial user namespace).
    Made,
    /// Bind-mounted from the host's /dev, as runc does rootless: no process in a user
    /// namespace may make one. `tty_gid`: the `tty` group (5) is mapped, so devpts
    /// can give new terminals to it.
    Bound { tty_gid: bool },
}

impl Devices {
    /// What this process can do: `Bound` in a user namespace.
    pub fn of_process() -> Devices {
        if layers_store::layer::encoding::in_initial_user_namespace() {
            return Devices::Made;
        }
        // gid_map lines: first ID inside, first outside, count.
        let map = std::fs::read_to_string("/proc/self/gid_map").unwrap_or_default();
        let tty_gid = map.lines().any(|l| {
            let f: Vec<u64> = l.split_whitespace().filter_map(|n| n.parse().ok()).collect();
            matches!(f.as_slice(), [inside, _, count] if *inside <= 5 && 5 < inside + count)
        });
        Devices::Bound { tty_gid }
    }
}

/// A bind mount from the host: `-v HOST:CTR[:ro]`, or a named volume's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub host: PathBuf,
    /// Absolute path in the container.
    pub target: String,
    pub read_only: bool,
}

/// Paths Docker hides under /proc (bind-mounted /dev/null over files, a read-only
/// tmpfs over dirs).
const MASKED: &[&str] = &[
    "proc/asound",
    "proc/acpi",
    "proc/kcore",
    "proc/keys",
    "proc/latency_stats",
    "proc/timer_list",
    "proc/timer_stats",
    "proc/sched_debug",
    "proc/scsi",
    "sys/firmware",
    "sys/devices/virtual/powercap",
];

/// Paths under /proc Docker makes read-only.
const READ_ONLY: &[&str] = &["proc/bus", "proc/fs", "proc/irq", "proc/sys", "proc/sysrq-trigger"];

/// Runs in the child: on error, the message goes to `err` and an error is returned
/// (so `Command::spawn` fails instead of exec'ing).
pub fn run_in_child(s: &ChildSetup, err: &OwnedFd) -> std::io::Result<()> {
    report(setup(s, &mut Kernel), err)
}

/// Passes a failed step's message to the parent and fails the spawn.
fn report(step: Step, err: &OwnedFd) -> std::io::Result<()> {
    step.or_else(|msg| {
        let mut f = std::fs::File::from(err.try_clone()?);
        let _ = f.write_all(msg.as_bytes());
        Err(std::io::Error::other(msg))
    })
}

fn setup(s: &ChildSetup, k: &mut impl Sys) -> Step {
    use super::phases::mark;
    mark("child: forked");
    for procs in &s.cgroup_procs {
        k.join_cgroup(procs)?;
    }
    mark("child: cgroup joined");
    if let ChildNetwork::Join(ns) = &s.network {
        k.join_network(ns)?;
    }
    let mut flags = UnshareFlags::NEWNS | UnshareFlags::NEWUTS | UnshareFlags::NEWIPC | UnshareFlags::NEWCGROUP;
    if matches!(s.network, ChildNetwork::Own) {
        flags |= UnshareFlags::NEWNET;
    }
    k.unshare(flags)?;
    mark("child: namespaces unshared");
    // Nothing we mount may reach the host's mount namespace.
    k.make_mounts_private()?;
    k.mount_rootfs(&s.mount, &s.rootfs)?;
    mark("child: overlay mounted");
    let root = s.rootfs.as_path();
    mount_kernel_filesystems(k, root, s.privileged, s.devices)?;
    mark("child: /proc /dev /sys mounted");
    for (host, target) in &s.files {
        bind_file(k, root, host, target)?;
    }
    for v in &s.binds {
        bind_volume(k, root, v)?;
    }
    for (target, options) in &s.tmpfs {
        let at = target_beneath(k, root, target)?;
        let (flags, data) = tmpfs_options(options);
        k.mount("tmpfs", &at.path, flags, &data)?;
    }
    if s.read_only {
        k.remount(root, MountFlags::BIND | MountFlags::RDONLY)?;
    }
    k.sethostname(&s.hostname)?;
    if matches!(s.network, ChildNetwork::Own) {
        k.loopback_up()?;
    }
    mark("child: files, volumes, hostname");
    enter_root(k, root)?;
    mark("child: pivot_root");
    if let Some(sock) = &s.console {
        k.console(sock, s.user.uid)?;
    }
    k.mkdir_all(Path::new(&s.cwd))?;
    become_user(k, &s.user, s.caps, s.privileged)?;
    // After the identity change (which clears it): if `layers run` dies, even by
    // SIGKILL, so does the container's PID 1 and with it the namespace.
    k.die_with_parent()?;
    k.chdir(&s.cwd)?;
    k.close_other_fds()?;
    mark("child: user, capabilities, fds");
    if s.init {
        // seccomp after the fork, in both: a profile may deny what forking takes.
        return k.fork_init(s.console.is_some(), &s.seccomp);
    }
    // Last of all: the filters deny what the steps before needed (mount, pivot_root, setns...).
    k.seccomp(&s.seccomp)?;
    mark("child: seccomp loaded");
    Ok(())
}

/// What `layers exec` needs to join a running container.
pub struct JoinSetup {
    /// `cgroup.procs` files of the container's cgroup.
    pub cgroup_procs: Vec<PathBuf>,
    /// A pidfd of the container's PID 1.
    pub pidfd: OwnedFd,
    pub user: users::User,
    pub cwd: String,
    pub caps: CapabilitySet,
    pub privileged: bool,
    pub seccomp: Vec<seccompiler::BpfProgram>,
    /// `-t`: as for `run`.
    pub console: Option<OwnedFd>,
}

/// Runs in the `layers exec` child: the container's cgroup, then its mount, UTS, IPC,
/// network and cgroup namespaces (the PID namespace was joined by the parent), then
/// the same identity steps as `run`.
pub fn join_in_child(j: &JoinSetup, err: &OwnedFd) -> std::io::Result<()> {
    let k = &mut Kernel;
    let mut steps = || -> Step {
        for procs in &j.cgroup_procs {
            k.join_cgroup(procs)?;
        }
        use rustix::thread::ThreadNameSpaceType as T;
        let kinds = T::MOUNT
            | T::HOST_NAME_AND_NIS_DOMAIN_NAME
            | T::INTER_PROCESS_COMMUNICATION
            | T::NETWORK
            | T::CONTROL_GROUP;
        // Joining the mount namespace also moves our root and cwd to its root: the container's.
        rustix::thread::move_into_thread_name_spaces(std::os::fd::AsFd::as_fd(&j.pidfd), kinds)
            .map_err(errno("join the container's namespaces"))?;
        if let Some(sock) = &j.console {
            k.console(sock, j.user.uid)?;
        }
        become_user(k, &j.user, j.caps, j.privileged)?;
        k.chdir(&j.cwd)?;
        k.close_other_fds()?;
        k.seccomp(&j.seccomp)
    };
    report(steps(), err)
}

/// A dir beneath the new root for a mount: refused if the image made it a symlink
/// (mounting there would follow it out of the rootfs).
fn mount_point(k: &mut impl Sys, root: &Path, rel: &str, dir: bool) -> Step<PathBuf> {
    let p = root.join(rel);
    match k.kind(&p) {
        Some(Kind::Symlink) => Err(format!("/{rel} in the image is a symlink; refusing to mount over it")),
        Some(kind) if (kind == Kind::Dir) != dir => {
            Err(format!("/{rel} in the image is not a {}", if dir { "directory" } else { "file" }))
        }
        Some(_) => Ok(p),
        // Parents were checked by the caller's order (/dev before /dev/pts...).
        None if dir => k.mkdir(&p).map(|()| p),
        None => k.create_file(&p).map(|()| p),
    }
}

fn mount_kernel_filesystems(k: &mut impl Sys, root: &Path, privileged: bool, devices: Devices) -> Step {
    let nse = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    let proc = mount_point(k, root, "proc", true)?;
    k.mount("proc", &proc, nse, "")?;
    let dev = mount_point(k, root, "dev", true)?;
    k.mount("tmpfs", &dev, MountFlags::NOSUID | MountFlags::STRICTATIME, "mode=755,size=65536k")?;
    for (name, major, minor) in
        [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)]
    {
        match devices {
            Devices::Made => k.mknod_char(&dev.join(name), major, minor)?,
            Devices::Bound { .. } => {
                let node = dev.join(name);
                k.create_file(&node)?;
                k.bind(&Path::new("/dev").join(name), &node)?;
            }
        }
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
        ("core", "/proc/kcore"),
    ] {
        k.symlink(target, &dev.join(link))?;
    }
    for d in ["pts", "shm", "mqueue"] {
        k.mkdir(&dev.join(d))?;
    }
    k.mount(
        "devpts",
        &dev.join("pts"),
        MountFlags::NOSUID | MountFlags::NOEXEC,
        match devices {
            Devices::Made | Devices::Bound { tty_gid: true } => "newinstance,ptmxmode=0666,mode=0620,gid=5",
            Devices::Bound { tty_gid: false } => "newinstance,ptmxmode=0666,mode=0620",
        },
    )?;
    k.mount("tmpfs", &dev.join("shm"), nse, "mode=1777,size=65536k")?;
    k.mount("mqueue", &dev.join("mqueue"), nse, "")?;
    let sys = mount_point(k, root, "sys", true)?;
    match k.mount("sysfs", &sys, nse | MountFlags::RDONLY, "") {
        Ok(()) => {}
        // Rootless in a network namespace this user namespace does not own (the host's:
        // `--network host`, build steps) the kernel refuses a new sysfs: the host's is
        // bound, read-only, as runc does (recursively: its submounts are locked to it).
        Err(_) if devices != Devices::Made => {
            k.rbind(Path::new("/sys"), &sys)?;
            k.remount(&sys, MountFlags::BIND | MountFlags::RDONLY | nse)?;
        }
        Err(e) => return Err(e),
    }
    if privileged {
        return Ok(());
    }
    for rel in MASKED {
        let p = root.join(rel);
        match k.kind(&p) {
            Some(Kind::Dir) => k.mount("tmpfs", &p, MountFlags::RDONLY, "size=0")?,
            Some(_) => k.bind(&dev.join("null"), &p)?,
            None => {}
        }
    }
    for rel in READ_ONLY {
        let p = root.join(rel);
        if k.kind(&p).is_some() {
            k.bind(&p, &p)?;
            k.remount(&p, MountFlags::BIND | MountFlags::RDONLY | nse)?;
        }
    }
    Ok(())
}

/// Bind-mounts a host file over `target` (relative to the rootfs), when its dir exists.
fn bind_file(k: &mut impl Sys, root: &Path, host: &Path, target: &str) -> Step {
    let parent = Path::new(target).parent().map(|p| root.join(p)).unwrap_or_else(|| root.to_path_buf());
    if k.kind(&parent) != Some(Kind::Dir) {
        return Ok(());
    }
    let p = root.join(target);
    if k.kind(&p) == Some(Kind::Symlink) {
        // A symlinked /etc/hosts would take the mount elsewhere: replace the link in the (writable) rootfs.
        k.remove_file(&p)?;
    }
    mount_point(k, root, target, false)?;
    k.bind(host, &p)
}

/// A directory beneath the rootfs, created if missing, reached without following any
/// symlink (an image cannot redirect a mount out of its rootfs: the runc
/// CVE-2021-30465 shape).
fn target_beneath(k: &mut impl Sys, root: &Path, target: &str) -> Step<super::sys::Beneath> {
    let rel = target.trim_start_matches('/');
    if rel.split('/').any(|c| c == "..") || !target.starts_with('/') {
        return Err(format!("mount target {target}: must be an absolute path without .."));
    }
    k.dir_beneath(root, target)
}

fn bind_volume(k: &mut impl Sys, root: &Path, v: &Bind) -> Step {
    let (at, _keep) = if v.host.is_dir() {
        let b = target_beneath(k, root, &v.target)?;
        (b.path.clone(), b)
    } else {
        // A file: its dir beneath the rootfs, then the file itself (never through a symlink).
        let (dir, name) = v.target.rsplit_once('/').unwrap_or(("", &v.target));
        let parent = target_beneath(k, root, if dir.is_empty() { "/" } else { dir })?;
        let path = parent.path.join(name);
        match k.kind(&path) {
            Some(Kind::File) => {}
            Some(_) => return Err(format!("mount target {}: exists and is not a regular file", v.target)),
            None => k.create_file(&path)?,
        }
        (path, parent)
    };
    k.bind(&v.host, &at)?;
    if v.read_only {
        // A bind mount takes read-only only on a remount of itself, named by its path now
        // (the fd still names the dir underneath). Nothing has run in the rootfs since the
        // path was checked symlink-free.
        let mounted = root.join(v.target.trim_start_matches('/'));
        k.remount(&mounted, MountFlags::BIND | MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV)?;
    }
    Ok(())
}

/// Makes `root` the root: `pivot_root`, then the old root detached. Where the
/// current root cannot be pivoted away (an initramfs, or `layers` itself running in a
/// chroot) the kernel says EINVAL: move the mount over / and chroot, as runc does.
/// That is weaker (as runc's `--no-pivot`): the namespace's real root stays
/// underneath, reachable again by a process holding CAP_SYS_CHROOT.
fn enter_root(k: &mut impl Sys, root: &Path) -> Step {
    k.enter_dir(root)?;
    match k.pivot_root_here() {
        Ok(()) => k.detach_old_root()?,
        Err(rustix::io::Errno::INVAL) => k.move_root_and_chroot()?,
        Err(e) => return Err(format!("pivot_root: {e}")),
    }
    k.chdir("/")
}

/// `caps` is what the container keeps (for `--privileged`, every one we have).
fn become_user(k: &mut impl Sys, u: &users::User, keep: CapabilitySet, privileged: bool) -> Step {
    for bit in 0..64 {
        let cap = CapabilitySet::from_bits_retain(1 << bit);
        if !keep.contains(cap) {
            k.drop_bounding(cap)?;
        }
    }
    k.clear_ambient()?;
    k.set_groups(&u.groups)?;
    k.set_gid(u.gid)?;
    k.set_uid(u.uid)?;
    // Root keeps the set; anyone else got empty permitted/effective sets from setuid (as Docker).
    let kept = if u.uid == 0 { keep } else { CapabilitySet::empty() };
    k.set_caps(CapabilitySets { effective: kept, permitted: kept, inheritable: CapabilitySet::empty() })?;
    if !privileged {
        k.no_new_privs()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;

/// A tmpfs mount's options split as mount(2) takes them: the flag words (`ro`, `exec`,
/// `noexec`, `suid`, `dev`, …, the last one given winning) and the rest, tmpfs's own
/// (`size=`, `mode=`). Without a word saying otherwise it is `nosuid,nodev`.
fn tmpfs_options(options: &str) -> (MountFlags, String) {
    let mut flags = MountFlags::NOSUID | MountFlags::NODEV;
    let mut data = Vec::new();
    for o in options.split(',').filter(|o| !o.is_empty()) {
        match o {
            "rw" => flags.remove(MountFlags::RDONLY),
            "ro" => flags.insert(MountFlags::RDONLY),
            "exec" => flags.remove(MountFlags::NOEXEC),
            "noexec" => flags.insert(MountFlags::NOEXEC),
            "suid" => flags.remove(MountFlags::NOSUID),
            "nosuid" => flags.insert(MountFlags::NOSUID),
            "dev" => flags.remove(MountFlags::NODEV),
            "nodev" => flags.insert(MountFlags::NODEV),
            other => data.push(other),
        }
    }
    (flags, data.join(","))
}

#[cfg(test)]
mod tmpfs_tests {
    use super::*;

    #[test]
    fn tmpfs_flag_words_become_mount_flags_and_the_last_wins() {
        let (f, d) = tmpfs_options("noexec,mode=1777,size=1m");
        assert_eq!(f, MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC);
        assert_eq!(d, "mode=1777,size=1m");
        let (f, d) = tmpfs_options("noexec,exec,ro");
        assert_eq!(f, MountFlags::NOSUID | MountFlags::NODEV | MountFlags::RDONLY);
        assert_eq!(d, "");
    }
}
