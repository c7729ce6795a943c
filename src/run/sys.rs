//! The system calls a container's setup makes, behind one trait (as youki's
//! `Syscall`): `Kernel` makes them; the tests' recorder writes them down, so the
//! order of setup (cgroup, namespaces, mounts, pivot_root, identity, seccomp last)
//! is checked without root, and the real thing is tested as root in tests/run.rs.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use layers_store::snapshots::mount::{mount_spec, MountOptions, MountSpec};
use rustix::fs::{Mode, OFlags, CWD};
use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};
use rustix::thread::{CapabilitySet, CapabilitySets, UnshareFlags};

use super::kernel;

pub use super::step::{errno, Step};

/// What is at a path (not following a final symlink).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink,
    Other,
}

/// A dir beneath the rootfs reached without following symlinks; mounts go on `path`
/// (the magic link of `_dir` for the kernel).
pub struct Beneath {
    pub _dir: Option<layers_store::fsroot::Subdir>,
    pub path: PathBuf,
}

/// The calls setup makes, each failing with the one line the parent prints.
pub trait Sys {
    fn kind(&self, path: &Path) -> Option<Kind>;
    fn mkdir(&mut self, path: &Path) -> Step;
    fn mkdir_all(&mut self, path: &Path) -> Step;
    /// Creates an empty regular file; never through a symlink.
    fn create_file(&mut self, path: &Path) -> Step;
    fn remove_file(&mut self, path: &Path) -> Step;
    fn mknod_char(&mut self, path: &Path, major: u32, minor: u32) -> Step;
    fn symlink(&mut self, target: &str, link: &Path) -> Step;
    /// `target` relative to `root`, created as dirs as needed, without following symlinks.
    fn dir_beneath(&mut self, root: &Path, target: &str) -> Step<Beneath>;

    fn join_cgroup(&mut self, procs: &Path) -> Step;
    fn unshare(&mut self, flags: UnshareFlags) -> Step;
    /// `setns` into a network namespace.
    fn join_network(&mut self, ns: &OwnedFd) -> Step;
    fn make_mounts_private(&mut self) -> Step;
    fn mount_rootfs(&mut self, spec: &MountSpec, target: &Path) -> Step;
    fn mount(&mut self, fstype: &str, target: &Path, flags: MountFlags, data: &str) -> Step;
    fn bind(&mut self, from: &Path, to: &Path) -> Step;
    /// A recursive bind (`MS_BIND | MS_REC`).
    fn rbind(&mut self, from: &Path, to: &Path) -> Step;
    fn remount(&mut self, target: &Path, flags: MountFlags) -> Step;
    fn sethostname(&mut self, name: &str) -> Step;
    fn loopback_up(&mut self) -> Step;
    /// `chdir` on the host side, before the root changes.
    fn enter_dir(&mut self, dir: &Path) -> Step;
    /// `pivot_root(".", ".")`: the old root stacks on the new one.
    fn pivot_root_here(&mut self) -> rustix::io::Result<()>;
    fn detach_old_root(&mut self) -> Step;
    /// Where pivot_root cannot work: the mount at "." moved over "/", then `chroot(".")`.
    fn move_root_and_chroot(&mut self) -> Step;
    fn console(&mut self, sock: &OwnedFd, uid: u32) -> Step;

    fn drop_bounding(&mut self, cap: CapabilitySet) -> Step;
    fn clear_ambient(&mut self) -> Step;
    fn set_groups(&mut self, groups: &[u32]) -> Step;
    fn set_gid(&mut self, gid: u32) -> Step;
    fn set_uid(&mut self, uid: u32) -> Step;
    fn set_caps(&mut self, sets: CapabilitySets) -> Step;
    fn no_new_privs(&mut self) -> Step;
    fn die_with_parent(&mut self) -> Step;
    fn chdir(&mut self, path: &str) -> Step;
    fn close_other_fds(&mut self) -> Step;
    /// With `--init`: returns in the command's process only.
    fn fork_init(&mut self, tty: bool, seccomp: &[seccompiler::BpfProgram]) -> Step;
    fn seccomp(&mut self, filters: &[seccompiler::BpfProgram]) -> Step;
}

/// The real thing.
pub struct Kernel;

/// Mount points in /proc/self/mountinfo escape space, tab, newline and backslash as `\NNN`.
fn unescape_mountinfo(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.get(i + 1..i + 4).filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push(d.iter().fold(0u8, |n, c| n.wrapping_mul(8) + (c - b'0')));
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Sys for Kernel {
    fn kind(&self, path: &Path) -> Option<Kind> {
        let m = std::fs::symlink_metadata(path).ok()?;
        let t = m.file_type();
        Some(if t.is_symlink() {
            Kind::Symlink
        } else if t.is_dir() {
            Kind::Dir
        } else if t.is_file() {
            Kind::File
        } else {
            Kind::Other
        })
    }

    fn mkdir(&mut self, path: &Path) -> Step {
        rustix::fs::mkdirat(CWD, path, Mode::from_raw_mode(0o755)).map_err(errno(format!("create {}", path.display())))
    }

    fn mkdir_all(&mut self, path: &Path) -> Step {
        std::fs::create_dir_all(path).map_err(|e| format!("create {}: {e}", path.display()))
    }

    fn create_file(&mut self, path: &Path) -> Step {
        let flags = OFlags::CREATE | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        rustix::fs::open(path, flags, Mode::from_raw_mode(0o644))
            .map(drop)
            .map_err(errno(format!("create {}", path.display())))
    }

    fn remove_file(&mut self, path: &Path) -> Step {
        std::fs::remove_file(path).map_err(|e| format!("remove {}: {e}", path.display()))
    }

    fn mknod_char(&mut self, path: &Path, major: u32, minor: u32) -> Step {
        let what = || format!("create {}", path.display());
        let mode = Mode::from_raw_mode(0o666);
        rustix::fs::mknodat(CWD, path, rustix::fs::FileType::CharacterDevice, mode, rustix::fs::makedev(major, minor))
            .map_err(errno(what()))?;
        // mknod honours the umask: set the mode explicitly.
        rustix::fs::chmod(path, mode).map_err(errno(what()))
    }

    fn symlink(&mut self, target: &str, link: &Path) -> Step {
        rustix::fs::symlinkat(target, CWD, link).map_err(errno(format!("create {}", link.display())))
    }

    fn dir_beneath(&mut self, root: &Path, target: &str) -> Step<Beneath> {
        let rel = target.trim_start_matches('/');
        let r = layers_store::fsroot::Root::open(root).map_err(|e| format!("open rootfs: {e}"))?;
        let dir = r.dir(rel.as_bytes(), true).map_err(|e| match r.blocking_component(rel.as_bytes()) {
            Some((c, true)) => format!("mount target {target}: /{c} is a symlink in the image"),
            Some((c, false)) => format!("mount target {target}: /{c} is not a directory"),
            None => format!("mount target {target}: {e}"),
        })?;
        let path = PathBuf::from(format!("/proc/self/fd/{}", dir.as_fd().as_raw_fd()));
        Ok(Beneath { _dir: Some(dir), path })
    }

    fn join_cgroup(&mut self, procs: &Path) -> Step {
        std::fs::write(procs, "0").map_err(|e| format!("join cgroup {}: {e}", procs.display()))
    }

    fn unshare(&mut self, flags: UnshareFlags) -> Step {
        kernel::unshare_in_child(flags).map_err(errno("unshare namespaces"))
    }

    fn join_network(&mut self, ns: &OwnedFd) -> Step {
        rustix::thread::move_into_link_name_space(ns.as_fd(), Some(rustix::thread::LinkNameSpaceType::Network))
            .map_err(errno("join the container's network namespace"))
    }

    fn make_mounts_private(&mut self) -> Step {
        let private = MountPropagationFlags::PRIVATE;
        match rustix::mount::mount_change("/", MountPropagationFlags::REC | private) {
            // In a chroot whose root is not a mount point: every mount it can see, one by one.
            Err(rustix::io::Errno::INVAL) => {
                let info =
                    std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| format!("read mountinfo: {e}"))?;
                for point in info.lines().filter_map(|l| l.split(' ').nth(4)).map(unescape_mountinfo) {
                    rustix::mount::mount_change(point.as_str(), private)
                        .map_err(errno(format!("make mount {point} private")))?;
                }
                Ok(())
            }
            other => other.map_err(errno("make mounts private")),
        }
    }

    fn mount_rootfs(&mut self, spec: &MountSpec, target: &Path) -> Step {
        mount_spec(spec, target, MountOptions::default()).map_err(|e| e.to_string())
    }

    fn mount(&mut self, fstype: &str, target: &Path, flags: MountFlags, data: &str) -> Step {
        let data = CString::new(data).map_err(|_| "NUL in mount data".to_string())?;
        rustix::mount::mount(fstype, target, fstype, flags, Some(data.as_c_str()))
            .map_err(errno(format!("mount {fstype} on {}", target.display())))
    }

    fn bind(&mut self, from: &Path, to: &Path) -> Step {
        rustix::mount::mount_bind(from, to).map_err(errno(format!("bind {} on {}", from.display(), to.display())))
    }

    fn rbind(&mut self, from: &Path, to: &Path) -> Step {
        rustix::mount::mount_bind_recursive(from, to).map_err(errno(format!(
            "bind {} on {} recursively",
            from.display(),
            to.display()
        )))
    }

    fn remount(&mut self, target: &Path, flags: MountFlags) -> Step {
        rustix::mount::mount_remount(target, flags, "").map_err(errno(format!("make {} read-only", target.display())))
    }

    fn sethostname(&mut self, name: &str) -> Step {
        rustix::system::sethostname(name.as_bytes()).map_err(errno("set hostname"))
    }

    fn loopback_up(&mut self) -> Step {
        use rustix::net::{socket, AddressFamily, SocketType};
        let sock = socket(AddressFamily::INET, SocketType::DGRAM, None).map_err(errno("open socket for lo"))?;
        kernel::set_interface_up(sock.as_fd(), "lo").map_err(errno("bring up lo"))
    }

    fn enter_dir(&mut self, dir: &Path) -> Step {
        rustix::process::chdir(dir).map_err(errno(format!("enter {}", dir.display())))
    }

    fn pivot_root_here(&mut self) -> rustix::io::Result<()> {
        rustix::process::pivot_root(".", ".")
    }

    fn detach_old_root(&mut self) -> Step {
        rustix::mount::unmount(".", UnmountFlags::DETACH).map_err(errno("detach old root"))
    }

    fn move_root_and_chroot(&mut self) -> Step {
        rustix::mount::mount_move(".", "/").map_err(errno("move rootfs over / (pivot_root refused)"))?;
        rustix::process::chroot(".").map_err(errno("chroot into rootfs"))
    }

    fn console(&mut self, sock: &OwnedFd, uid: u32) -> Step {
        super::console::make_in_child(sock, uid)
    }

    fn drop_bounding(&mut self, cap: CapabilitySet) -> Step {
        // Bits past the kernel's last capability answer EINVAL: nothing to drop.
        match rustix::thread::remove_capability_from_bounding_set(cap) {
            Ok(()) | Err(rustix::io::Errno::INVAL) => Ok(()),
            Err(e) => Err(format!("drop capability {}: {e}", super::caps::name(cap.bits().trailing_zeros()))),
        }
    }

    fn clear_ambient(&mut self) -> Step {
        rustix::thread::clear_ambient_capability_set().map_err(errno("clear ambient capabilities"))
    }

    fn set_groups(&mut self, groups: &[u32]) -> Step {
        let groups: Vec<rustix::process::Gid> = groups.iter().map(|g| rustix::process::Gid::from_raw(*g)).collect();
        match rustix::thread::set_thread_groups(&groups) {
            // A namespace that maps only the user's own IDs (rootless without a
            // subordinate range) denies setgroups: the process keeps the user's own
            // groups, which give it nothing the user lacks.
            Err(rustix::io::Errno::PERM)
                if std::fs::read_to_string("/proc/self/setgroups").is_ok_and(|s| s.trim() == "deny") =>
            {
                Ok(())
            }
            r => r.map_err(errno("set supplementary groups")),
        }
    }

    fn set_gid(&mut self, gid: u32) -> Step {
        let g = rustix::process::Gid::from_raw(gid);
        rustix::thread::set_thread_res_gid(g, g, g).map_err(errno(format!("set gid {gid}")))
    }

    fn set_uid(&mut self, uid: u32) -> Step {
        let u = rustix::process::Uid::from_raw(uid);
        rustix::thread::set_thread_res_uid(u, u, u).map_err(errno(format!("set uid {uid}")))
    }

    fn set_caps(&mut self, sets: CapabilitySets) -> Step {
        rustix::thread::set_capabilities(None, sets).map_err(errno("set capabilities"))
    }

    fn no_new_privs(&mut self) -> Step {
        rustix::thread::set_no_new_privs(true).map_err(errno("set no_new_privs"))
    }

    fn die_with_parent(&mut self) -> Step {
        rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
            .map_err(errno("set parent death signal"))
    }

    fn chdir(&mut self, path: &str) -> Step {
        std::env::set_current_dir(path).map_err(|e| format!("change to working dir {path}: {e}"))
    }

    /// Marks every fd but 0, 1 and 2 close-on-exec (the runc CVE-2024-21626 shape: no
    /// host directory fd may survive into the container).
    fn close_other_fds(&mut self) -> Step {
        let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
            .map_err(|e| format!("list this process's open descriptors (/proc/self/fd): {e}"))?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .filter(|fd| *fd > 2)
            .collect();
        for fd in fds {
            kernel::set_cloexec_raw(fd);
        }
        Ok(())
    }

    fn fork_init(&mut self, tty: bool, seccomp: &[seccompiler::BpfProgram]) -> Step {
        kernel::fork_init(tty, || Kernel.seccomp(seccomp))
    }

    fn seccomp(&mut self, filters: &[seccompiler::BpfProgram]) -> Step {
        for prog in filters {
            seccompiler::apply_filter(prog).map_err(|e| format!("apply seccomp profile: {e}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(super::unescape_mountinfo("/mnt/a\\040b\\134c"), "/mnt/a b\\c");
        assert_eq!(super::unescape_mountinfo("/plain"), "/plain");
    }
}
