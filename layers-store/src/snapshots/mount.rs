//! Mounting what the store describes: overlay stacks with a writable upper dir,
//! and read-only views of an image.
//!
//! The new mount API (`fsopen`, one `fsconfig lowerdir+` per layer, `fsmount`,
//! `move_mount`) has no option-string length limit, so a stack goes to the kernel's
//! own limit. Kernels without `lowerdir+` (before 6.8) get `mount(2)` with the
//! classic option string, which fits a page: a few dozen layers.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{statx, AtFlags, StatxAttributes, StatxFlags, CWD};
use rustix::io::Errno;
use rustix::mount::{
    fsconfig_create, fsconfig_set_flag, fsconfig_set_string, fsmount, fsopen, mount, mount_bind, mount_remount,
    move_mount, unmount, FsMountFlags, FsOpenFlags, MountAttrFlags, MountFlags, MoveMountFlags, UnmountFlags,
};

use crate::error::{Error, ErrorKind, Result};

/// Most lower layers overlayfs stacks (`OVL_MAX_STACK` is 500; one is kept for a
/// committed container's new layer).
pub const MAX_LAYERS: usize = 499;

/// Options every overlay mount gets: an upper dir must stay a plain diff that
/// `commit` can read (no index, no metacopy-only files, no redirected dirs). In a
/// user namespace (`userxattr`) the kernel refuses `redirect_dir=off` and allows only
/// `nofollow`, which creates no redirect either.
fn overlay_options() -> [(&'static str, &'static str); 3] {
    let redirect = if crate::layer::encoding::Encoding::of_process().mount_userxattr() { "nofollow" } else { "off" };
    [("index", "off"), ("metacopy", "off"), ("redirect_dir", redirect)]
}

/// How to mount a root filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    /// Layer dirs, top first.
    pub lowers: Vec<PathBuf>,
    /// Writable upper and work dirs; `None` is a read-only view.
    pub upper: Option<(PathBuf, PathBuf)>,
}

impl MountSpec {
    /// The same tree read-only: the upper dir, if any, becomes the top layer.
    pub fn view(&self) -> MountSpec {
        let upper = self.upper.iter().map(|(u, _)| u.clone());
        MountSpec { lowers: upper.chain(self.lowers.iter().cloned()).collect(), upper: None }
    }
}

/// How a mount is made.
#[derive(Debug, Clone, Copy, Default)]
pub struct MountOptions {
    /// `nosuid,nodev`: for mounts the host sees.
    pub host_visible: bool,
    /// Use `mount(2)` even where `lowerdir+` works (a seam for testing the fallback).
    pub legacy: bool,
}

/// Mounts `spec` on `target` (an existing dir).
pub fn mount_spec(spec: &MountSpec, target: &Path, opts: MountOptions) -> Result<()> {
    if spec.lowers.is_empty() {
        return Err(Error::new(ErrorKind::InvalidInput, "mount", target.display(), "no layers to mount"));
    }
    if spec.lowers.len() > MAX_LAYERS {
        return Err(Error::new(
            ErrorKind::TooManyLayers,
            "mount",
            target.display(),
            format!("{} layers is over overlayfs's limit of {MAX_LAYERS}", spec.lowers.len()),
        ));
    }
    if spec.upper.is_none() && spec.lowers.len() == 1 {
        return bind_read_only(&spec.lowers[0], target, opts);
    }
    if !opts.legacy {
        match overlay_new_api(spec, target, opts)? {
            NewApi::Mounted => return Ok(()),
            NewApi::Unsupported => {}
        }
    }
    overlay_legacy(spec, target, opts)
}

/// Whether this kernel's overlayfs takes `lowerdir+` (Linux 6.8+): asked of a
/// filesystem context that is configured with `/` and then dropped, never mounted.
pub fn lowerdir_plus_supported() -> bool {
    let Ok(fs) = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC) else { return false };
    fsconfig_set_string(fs.as_fd(), "lowerdir+", "/").is_ok()
}

/// What the new mount API made of a stack.
enum NewApi {
    Mounted,
    /// This kernel has no `fsopen` (ENOSYS) or its overlay no `lowerdir+` (EINVAL on
    /// that key, before 6.8): `mount(2)` with the option string instead.
    Unsupported,
}

fn bind_read_only(src: &Path, target: &Path, opts: MountOptions) -> Result<()> {
    mount_bind(src, target).map_err(|e| Error::errno("bind mount", target.display(), e))?;
    let mut flags = MountFlags::BIND | MountFlags::RDONLY;
    if opts.host_visible {
        flags |= MountFlags::NOSUID | MountFlags::NODEV;
    }
    mount_remount(target, flags, "").map_err(|e| {
        let _ = unmount(target, UnmountFlags::DETACH);
        Error::errno("make mount read-only", target.display(), e)
    })
}

fn overlay_new_api(spec: &MountSpec, target: &Path, opts: MountOptions) -> Result<NewApi> {
    let fs = match fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC) {
        Ok(fs) => fs,
        Err(Errno::NOSYS) => return Ok(NewApi::Unsupported),
        Err(e) => return Err(Error::errno("fsopen overlay", "overlay", e)),
    };
    let failed = |key: &str, value: &Path, e: Errno| {
        Error::errno("configure overlay", format!("{key}={}", value.display()), e).with_detail(kernel_log(&fs))
    };
    let set = |key: &str, value: &Path| fsconfig_set_string(fs.as_fd(), key, value).map_err(|e| failed(key, value, e));
    for lower in &spec.lowers {
        match fsconfig_set_string(fs.as_fd(), "lowerdir+", lower) {
            Ok(()) => {}
            Err(Errno::INVAL | Errno::NOSYS) => return Ok(NewApi::Unsupported),
            Err(e) => return Err(failed("lowerdir+", lower, e)),
        }
    }
    if let Some((upper, work)) = &spec.upper {
        set("upperdir", upper)?;
        set("workdir", work)?;
    }
    for (k, v) in overlay_options() {
        set(k, Path::new(v))?;
    }
    if crate::layer::encoding::Encoding::of_process().mount_userxattr() {
        fsconfig_set_flag(fs.as_fd(), "userxattr")
            .map_err(|e| Error::errno("configure overlay", "userxattr", e).with_detail(kernel_log(&fs)))?;
    }
    fsconfig_create(fs.as_fd())
        .map_err(|e| Error::errno("create overlay", target.display(), e).with_detail(kernel_log(&fs)))?;
    let mut attrs = MountAttrFlags::empty();
    if opts.host_visible {
        attrs |= MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NODEV;
    }
    let mnt = fsmount(fs.as_fd(), FsMountFlags::FSMOUNT_CLOEXEC, attrs)
        .map_err(|e| Error::errno("fsmount overlay", target.display(), e).with_detail(kernel_log(&fs)))?;
    move_mount(mnt.as_fd(), "", CWD, target, MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH)
        .map_err(|e| Error::errno("move overlay mount", target.display(), e))?;
    Ok(NewApi::Mounted)
}

/// What the kernel said about a failed configuration (`e overlay: ...` lines on the fs fd).
fn kernel_log(fs: &OwnedFd) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    while let Ok(n) = rustix::io::read(fs, &mut buf) {
        if n == 0 {
            break;
        }
        if !out.is_empty() {
            out.push(b';');
            out.push(b' ');
        }
        out.extend_from_slice(buf[..n].strip_prefix(b"e ").unwrap_or(&buf[..n]));
    }
    String::from_utf8_lossy(&out).trim().to_string()
}

fn overlay_legacy(spec: &MountSpec, target: &Path, opts: MountOptions) -> Result<()> {
    let mut data = String::from("lowerdir=");
    let lowers: Vec<String> = spec.lowers.iter().map(|p| p.display().to_string()).collect();
    data.push_str(&lowers.join(":"));
    if let Some((upper, work)) = &spec.upper {
        data.push_str(&format!(",upperdir={},workdir={}", upper.display(), work.display()));
    }
    for (k, v) in overlay_options() {
        data.push_str(&format!(",{k}={v}"));
    }
    if crate::layer::encoding::Encoding::of_process().mount_userxattr() {
        data.push_str(",userxattr");
    }
    let page = rustix::param::page_size();
    if data.len() >= page {
        return Err(Error::new(
            ErrorKind::LimitExceeded,
            "mount",
            target.display(),
            format!(
                "{} layers need {} bytes of mount options, over the {page}-byte page mount(2) takes; \
                 Linux 6.8+ (fsconfig lowerdir+) has no such limit",
                spec.lowers.len(),
                data.len()
            ),
        ));
    }
    let mut flags = MountFlags::empty();
    if opts.host_visible {
        flags |= MountFlags::NOSUID | MountFlags::NODEV;
    }
    let data = std::ffi::CString::new(data)
        .map_err(|_| Error::new(ErrorKind::InvalidInput, "mount overlay", target.display(), "NUL in a layer path"))?;
    mount("overlay", target, "overlay", flags, Some(data.as_c_str()))
        .map_err(|e| Error::errno("mount overlay", target.display(), e))
}

/// Unmounts `target`; `lazy` detaches it even while in use.
pub fn unmount_path(target: &Path, lazy: bool) -> Result<()> {
    let flags = if lazy { UnmountFlags::DETACH } else { UnmountFlags::empty() };
    unmount(target, flags).map_err(|e| match e {
        Errno::BUSY => Error::new(ErrorKind::InUse, "unmount", target.display(), "in use by a process"),
        e => Error::errno("unmount", target.display(), e),
    })
}

/// Whether `path` is the root of a mount.
pub fn is_mountpoint(path: &Path) -> bool {
    match statx(CWD, path, AtFlags::SYMLINK_NOFOLLOW, StatxFlags::BASIC_STATS) {
        Ok(s) => {
            s.stx_attributes_mask.contains(StatxAttributes::MOUNT_ROOT)
                && s.stx_attributes.contains(StatxAttributes::MOUNT_ROOT)
        }
        Err(_) => false,
    }
}
