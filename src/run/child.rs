//! The container's first process, between fork and exec: join the cgroup, unshare
//! namespaces, mount the root filesystem in its own mount namespace, `pivot_root`,
//! become the user, drop capabilities. Runs in `Command::pre_exec`, in a
//! single-threaded copy of `layers`; the first failure is written to the error pipe
//! as one line and the parent prints it.

use std::ffi::CString;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use layers_store::mount::{mount_spec, MountOptions, MountSpec};
use rustix::fs::{mkdirat, mknodat, symlinkat, FileType, Mode, CWD};
use rustix::mount::{mount, mount_bind, mount_change, mount_remount, MountFlags, MountPropagationFlags, UnmountFlags};
use rustix::thread::{CapabilitySet, CapabilitySets, UnshareFlags};

use super::users;
use super::{caps, console, init};

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
    /// Own network namespace with only `lo` up (`--net none`), or the host's.
    pub own_network: bool,
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
    /// Bind mounts from the host (`-v`).
    pub volumes: Vec<Volume>,
    /// tmpfs mounts (`--tmpfs`): target and mount options.
    pub tmpfs: Vec<(String, String)>,
    /// `--read-only`: the root filesystem mount is read-only (volumes keep their own mode).
    pub read_only: bool,
    /// `-t`: the socket the container's pty master is sent over.
    pub console: Option<OwnedFd>,
    /// `--init`: a small PID 1 runs the command as its child.
    pub init: bool,
}

/// `-v HOST:CTR[:ro]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
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

/// A setup step's outcome: the error is the line the parent prints.
pub(super) type Step<T = ()> = Result<T, String>;

pub(super) fn errno(what: impl std::fmt::Display) -> impl FnOnce(rustix::io::Errno) -> String {
    move |e| format!("{what}: {e}")
}

/// Runs in the child: on error, the message goes to `err` and an error is returned
/// (so `Command::spawn` fails instead of exec'ing).
pub fn run_in_child(s: &ChildSetup, err: &OwnedFd) -> std::io::Result<()> {
    report(setup(s), err)
}

/// Passes a failed step's message to the parent and fails the spawn.
fn report(step: Step, err: &OwnedFd) -> std::io::Result<()> {
    step.or_else(|msg| {
        let mut f = std::fs::File::from(err.try_clone()?);
        let _ = f.write_all(msg.as_bytes());
        Err(std::io::Error::other(msg))
    })
}

fn setup(s: &ChildSetup) -> Step {
    for procs in &s.cgroup_procs {
        std::fs::write(procs, "0").map_err(|e| format!("join cgroup {}: {e}", procs.display()))?;
    }
    let mut flags = UnshareFlags::NEWNS | UnshareFlags::NEWUTS | UnshareFlags::NEWIPC | UnshareFlags::NEWCGROUP;
    if s.own_network {
        flags |= UnshareFlags::NEWNET;
    }
    // SAFETY: this process is single-threaded (a fresh fork); none of these flags
    // share or unshare file descriptor tables or memory.
    #[allow(unsafe_code)]
    unsafe { rustix::thread::unshare_unsafe(flags) }.map_err(errno("unshare namespaces"))?;
    // Nothing we mount may reach the host's mount namespace.
    mount_change("/", MountPropagationFlags::REC | MountPropagationFlags::PRIVATE)
        .map_err(errno("make mounts private"))?;
    mount_spec(&s.mount, &s.rootfs, MountOptions::default()).map_err(|e| e.to_string())?;
    let root = s.rootfs.as_path();
    mount_kernel_filesystems(root, s.privileged)?;
    for (host, target) in &s.files {
        bind_file(root, host, target)?;
    }
    for v in &s.volumes {
        bind_volume(root, v)?;
    }
    for (target, options) in &s.tmpfs {
        let at = target_beneath(root, target)?;
        mount_fs("tmpfs", &at.path, MountFlags::NOSUID | MountFlags::NODEV, options)?;
    }
    if s.read_only {
        mount_remount(root, MountFlags::BIND | MountFlags::RDONLY, "").map_err(errno("make the rootfs read-only"))?;
    }
    rustix::system::sethostname(s.hostname.as_bytes()).map_err(errno("set hostname"))?;
    if s.own_network {
        loopback_up()?;
    }
    pivot(root)?;
    if let Some(sock) = &s.console {
        console::make_in_child(sock, s.user.uid)?;
    }
    ensure_dir(&s.cwd)?;
    become_user(&s.user, s.caps, s.privileged)?;
    // After the identity change (which clears it): if `layers run` dies, even by
    // SIGKILL, so does the container's PID 1 and with it the namespace.
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        .map_err(errno("set parent death signal"))?;
    std::env::set_current_dir(&s.cwd).map_err(|e| format!("change to working dir {}: {e}", s.cwd))?;
    close_other_fds()?;
    if s.init {
        // seccomp after the fork, in both: a profile may deny what forking takes.
        return init::fork_init(s.console.is_some(), &s.seccomp);
    }
    apply_seccomp(&s.seccomp)
}

/// Last of all: the filters deny what the steps before needed (mount, pivot_root, setns...).
pub(super) fn apply_seccomp(filters: &[seccompiler::BpfProgram]) -> Step {
    for prog in filters {
        seccompiler::apply_filter(prog).map_err(|e| format!("apply seccomp profile: {e}"))?;
    }
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
    let steps = || -> Step {
        for procs in &j.cgroup_procs {
            std::fs::write(procs, "0").map_err(|e| format!("join cgroup {}: {e}", procs.display()))?;
        }
        use rustix::thread::ThreadNameSpaceType as T;
        let kinds = T::MOUNT
            | T::HOST_NAME_AND_NIS_DOMAIN_NAME
            | T::INTER_PROCESS_COMMUNICATION
            | T::NETWORK
            | T::CONTROL_GROUP;
        // Joining the mount namespace also moves our root and cwd to its root: the container's.
        rustix::thread::move_into_thread_name_spaces(j.pidfd.as_fd(), kinds)
            .map_err(errno("join the container's namespaces"))?;
        if let Some(sock) = &j.console {
            console::make_in_child(sock, j.user.uid)?;
        }
        become_user(&j.user, j.caps, j.privileged)?;
        std::env::set_current_dir(&j.cwd).map_err(|e| format!("change to working dir {}: {e}", j.cwd))?;
        close_other_fds()?;
        apply_seccomp(&j.seccomp)
    };
    report(steps(), err)
}

/// A dir beneath the new root for a mount: refused if the image made it a symlink
/// (mounting there would follow it out of the rootfs).
fn mount_point(root: &Path, rel: &str, dir: bool) -> Step<PathBuf> {
    let p = root.join(rel);
    match std::fs::symlink_metadata(&p) {
        Ok(m) if m.file_type().is_symlink() => {
            Err(format!("/{rel} in the image is a symlink; refusing to mount over it"))
        }
        Ok(m) if m.is_dir() != dir => {
            Err(format!("/{rel} in the image is not a {}", if dir { "directory" } else { "file" }))
        }
        Ok(_) => Ok(p),
        Err(_) if dir => {
            // Parents were checked by the caller's order (/dev before /dev/pts...).
            mkdirat(CWD, &p, Mode::from_raw_mode(0o755)).map_err(errno(format!("create /{rel}")))?;
            Ok(p)
        }
        Err(_) => {
            std::fs::File::create(&p).map_err(|e| format!("create /{rel}: {e}"))?;
            Ok(p)
        }
    }
}

fn mount_fs(fstype: &str, target: &Path, flags: MountFlags, data: &str) -> Step {
    let data = CString::new(data).map_err(|_| "NUL in mount data".to_string())?;
    mount(fstype, target, fstype, flags, Some(data.as_c_str()))
        .map_err(errno(format!("mount {fstype} on {}", target.display())))
}

fn mount_kernel_filesystems(root: &Path, privileged: bool) -> Step {
    let nse = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    let proc = mount_point(root, "proc", true)?;
    mount_fs("proc", &proc, nse, "")?;
    let dev = mount_point(root, "dev", true)?;
    mount_fs("tmpfs", &dev, MountFlags::NOSUID | MountFlags::STRICTATIME, "mode=755,size=65536k")?;
    for (name, major, minor) in
        [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)]
    {
        let p = dev.join(name);
        mknodat(CWD, &p, FileType::CharacterDevice, Mode::from_raw_mode(0o666), rustix::fs::makedev(major, minor))
            .map_err(errno(format!("create /dev/{name}")))?;
        // mknod honours the umask: set the mode explicitly.
        rustix::fs::chmod(&p, Mode::from_raw_mode(0o666)).map_err(errno(format!("chmod /dev/{name}")))?;
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
        ("core", "/proc/kcore"),
    ] {
        symlinkat(target, CWD, dev.join(link)).map_err(errno(format!("create /dev/{link}")))?;
    }
    for d in ["pts", "shm", "mqueue"] {
        mkdirat(CWD, dev.join(d), Mode::from_raw_mode(0o755)).map_err(errno(format!("create /dev/{d}")))?;
    }
    mount_fs(
        "devpts",
        &dev.join("pts"),
        MountFlags::NOSUID | MountFlags::NOEXEC,
        "newinstance,ptmxmode=0666,mode=0620,gid=5",
    )?;
    mount_fs("tmpfs", &dev.join("shm"), nse, "mode=1777,size=65536k")?;
    mount_fs("mqueue", &dev.join("mqueue"), nse, "")?;
    let sys = mount_point(root, "sys", true)?;
    mount_fs("sysfs", &sys, nse | MountFlags::RDONLY, "")?;
    if privileged {
        return Ok(());
    }
    for rel in MASKED {
        let p = root.join(rel);
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => mount_fs("tmpfs", &p, MountFlags::RDONLY, "size=0")?,
            Ok(_) => mount_bind(dev.join("null"), &p).map_err(errno(format!("mask /{rel}")))?,
            Err(_) => {}
        }
    }
    for rel in READ_ONLY {
        let p = root.join(rel);
        if p.exists() {
            mount_bind(&p, &p).map_err(errno(format!("bind /{rel}")))?;
            mount_remount(&p, MountFlags::BIND | MountFlags::RDONLY | nse, "")
                .map_err(errno(format!("make /{rel} read-only")))?;
        }
    }
    Ok(())
}

/// Bind-mounts a host file over `target` (relative to the rootfs), when its dir exists.
fn bind_file(root: &Path, host: &Path, target: &str) -> Step {
    let parent = Path::new(target).parent().map(|p| root.join(p)).unwrap_or_else(|| root.to_path_buf());
    match std::fs::symlink_metadata(&parent) {
        Ok(m) if m.is_dir() => {}
        _ => return Ok(()),
    }
    let p = root.join(target);
    if std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink()) {
        // A symlinked /etc/hosts would take the mount elsewhere: replace the link in the (writable) rootfs.
        std::fs::remove_file(&p).map_err(|e| format!("replace /{target}: {e}"))?;
    }
    mount_point(root, target, false)?;
    mount_bind(host, &p).map_err(errno(format!("bind /{target}")))
}

/// A directory beneath the rootfs, created if missing, reached without following any
/// symlink (an image cannot redirect a mount out of its rootfs: the runc
/// CVE-2021-30465 shape). Mounts go on `path`, the fd's magic link.
struct Target {
    _dir: layers_store::root::Subdir,
    path: PathBuf,
}

fn target_beneath(root: &Path, target: &str) -> Step<Target> {
    let rel = target.trim_start_matches('/');
    if rel.split('/').any(|c| c == "..") || !target.starts_with('/') {
        return Err(format!("mount target {target}: must be an absolute path without .."));
    }
    let r = layers_store::root::Root::open(root).map_err(|e| format!("open rootfs: {e}"))?;
    let dir = r.dir(rel.as_bytes(), true).map_err(|e| match r.blocking_component(rel.as_bytes()) {
        Some((c, true)) => format!("mount target {target}: /{c} is a symlink in the image"),
        Some((c, false)) => format!("mount target {target}: /{c} is not a directory"),
        None => format!("mount target {target}: {e}"),
    })?;
    let path = PathBuf::from(format!("/proc/self/fd/{}", dir.as_fd().as_raw_fd()));
    Ok(Target { _dir: dir, path })
}

fn bind_volume(root: &Path, v: &Volume) -> Step {
    let mut at = if v.host.is_dir() {
        target_beneath(root, &v.target)?
    } else {
        // A file: its dir beneath the rootfs, then the file itself (never through a symlink).
        let (dir, name) = v.target.rsplit_once('/').unwrap_or(("", &v.target));
        let parent = target_beneath(root, if dir.is_empty() { "/" } else { dir })?;
        if std::fs::symlink_metadata(parent.path.join(name)).is_ok_and(|m| !m.is_file()) {
            return Err(format!("mount target {}: exists and is not a regular file", v.target));
        }
        let _ = parent._dir.create_file(name.as_bytes());
        let path = parent.path.join(name);
        Target { _dir: parent._dir, path }
    };
    let target = std::mem::take(&mut at.path);
    mount_bind(&v.host, &target).map_err(errno(format!("bind {} on {}", v.host.display(), v.target)))?;
    at.path = target;
    if v.read_only {
        // A bind mount takes read-only only on a remount of itself, named by its path now
        // (the fd still names the dir underneath). Nothing has run in the rootfs since the
        // path was checked symlink-free.
        let mounted = root.join(v.target.trim_start_matches('/'));
        mount_remount(&mounted, MountFlags::BIND | MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV, "")
            .map_err(errno(format!("make {} read-only", v.target)))?;
    }
    Ok(())
}

/// `lo` up in the new network namespace.
fn loopback_up() -> Step {
    use rustix::net::{socket, AddressFamily, SocketType};
    let sock = socket(AddressFamily::INET, SocketType::DGRAM, None).map_err(errno("open socket for lo"))?;
    super::netif::set_up(sock.as_fd(), "lo").map_err(errno("bring up lo"))
}

fn pivot(root: &Path) -> Step {
    rustix::process::chdir(root).map_err(errno("enter rootfs"))?;
    // pivot_root(".", ".") stacks the old root on top of the new one; detaching it leaves only the new.
    rustix::process::pivot_root(".", ".").map_err(errno("pivot_root"))?;
    rustix::mount::unmount(".", UnmountFlags::DETACH).map_err(errno("detach old root"))?;
    rustix::process::chdir("/").map_err(errno("enter /"))
}

fn ensure_dir(path: &str) -> Step {
    std::fs::create_dir_all(path).map_err(|e| format!("create working dir {path}: {e}"))
}

fn become_user(u: &users::User, caps: CapabilitySet, privileged: bool) -> Step {
    use rustix::thread::{remove_capability_from_bounding_set, set_capabilities, set_no_new_privs};
    let keep = if privileged { CapabilitySet::all() } else { caps };
    for bit in 0..64 {
        let cap = CapabilitySet::from_bits_retain(1 << bit);
        if !keep.contains(cap) {
            // Bits past the kernel's last capability answer EINVAL: nothing to drop.
            match remove_capability_from_bounding_set(cap) {
                Ok(()) | Err(rustix::io::Errno::INVAL) => {}
                Err(e) => return Err(format!("drop capability {}: {e}", caps::name(bit))),
            }
        }
    }
    rustix::thread::clear_ambient_capability_set().map_err(errno("clear ambient capabilities"))?;
    let groups: Vec<rustix::process::Gid> = u.groups.iter().map(|g| rustix::process::Gid::from_raw(*g)).collect();
    rustix::thread::set_thread_groups(&groups).map_err(errno("set supplementary groups"))?;
    let gid = rustix::process::Gid::from_raw(u.gid);
    rustix::thread::set_thread_res_gid(gid, gid, gid).map_err(errno(format!("set gid {}", u.gid)))?;
    let uid = rustix::process::Uid::from_raw(u.uid);
    rustix::thread::set_thread_res_uid(uid, uid, uid).map_err(errno(format!("set uid {}", u.uid)))?;
    // Root keeps the set; anyone else got empty permitted/effective sets from setuid (as Docker).
    let sets = if u.uid == 0 {
        CapabilitySets { effective: keep, permitted: keep, inheritable: CapabilitySet::empty() }
    } else {
        CapabilitySets {
            effective: CapabilitySet::empty(),
            permitted: CapabilitySet::empty(),
            inheritable: CapabilitySet::empty(),
        }
    };
    set_capabilities(None, sets).map_err(errno("set capabilities"))?;
    if !privileged {
        set_no_new_privs(true).map_err(errno("set no_new_privs"))?;
    }
    Ok(())
}

/// Marks every fd but 0, 1 and 2 close-on-exec (the runc CVE-2024-21626 shape: no
/// host directory fd may survive into the container).
fn close_other_fds() -> Step {
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map_err(|e| format!("list fds: {e}"))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: fd comes from /proc/self/fd and is only borrowed for one fcntl; a stale
        // one (the dir handle above) fails with EBADF, which is ignored.
        #[allow(unsafe_code)]
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let _ = rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC);
    }
    Ok(())
}
