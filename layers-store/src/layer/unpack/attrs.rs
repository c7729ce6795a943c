//! A node's attributes as a tar entry gives them, set on what the unpack made: one
//! piece of code for a file made inline and one made by a writer thread.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;

use rustix::io::Errno;

use crate::fsroot::{set_mtime_fd, set_owner_mode_fd, set_xattr_fd, xattrs_fd, Meta};
use crate::layer::listing::FileDigest;
use crate::layer::written::{Node, Tail};

/// The permissions to create a file of `meta` with. Its own, when creating it gives
/// it its owner (ours) and it has no setuid, setgid or sticky bit: then
/// [`finish_file`] need not chown or chmod it (two of a small file's eight syscalls).
/// Otherwise owner-only, until its owner and mode are set.
pub(super) fn create_mode(meta: &Meta) -> u32 {
    if made_as_is(meta) {
        meta.mode & 0o777
    } else {
        0o600
    }
}

/// Whether a file of `meta` created with [`create_mode`] should already have its owner and mode.
fn made_as_is(meta: &Meta) -> bool {
    static CREATOR: std::sync::OnceLock<(u32, u32)> = std::sync::OnceLock::new();
    let creator = CREATOR.get_or_init(|| (rustix::process::geteuid().as_raw(), rustix::process::getegid().as_raw()));
    meta.mode & 0o7000 == 0 && (meta.uid, meta.gid) == *creator
}

/// Gives a file whose bytes are written (created with [`create_mode`]) its owner,
/// mode, xattrs and times; returns its node as it now is.
pub(super) fn finish_file(
    file: &File,
    meta: &Meta,
    xattrs: &[(Vec<u8>, Vec<u8>)],
    digest: FileDigest,
) -> io::Result<Node> {
    let fd = file.as_fd();
    let set = |owner: bool| -> io::Result<rustix::fs::Stat> {
        // The owner first: a chown clears setuid, setgid and security.capability,
        // which the mode and the xattrs then set.
        if owner {
            set_owner_mode_fd(fd, meta)?;
        }
        apply_xattrs(xattrs, |k, v| set_xattr_fd(fd, k, v))?;
        set_mtime_fd(fd, meta)?;
        Ok(rustix::fs::fstat(file)?)
    };
    let st = match made_as_is(meta) {
        // Checked, not assumed: a umask, a setgid directory or a changed ID makes it
        // differ, and it is then set like any other file.
        true => match set(false)? {
            st if (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (meta.uid, meta.gid, meta.mode) => st,
            _ => set(true)?,
        },
        false => set(true)?,
    };
    Ok(Node::of(&st, Tail::Content(digest), xattrs_fd(fd)?))
}

/// Applies tar xattrs, dropping overlay's private ones: a layer must not forge overlay state.
pub(super) fn apply_xattrs(
    xattrs: &[(Vec<u8>, Vec<u8>)],
    mut set: impl FnMut(&[u8], &[u8]) -> io::Result<()>,
) -> io::Result<()> {
    for (k, v) in xattrs {
        if crate::layer::encoding::is_overlay_private(k) {
            continue;
        }
        // Which attribute, in words: a bare errno says nothing of the entry's xattrs.
        set(k, v).map_err(|e| {
            let why = match e.raw_os_error() {
                Some(n) if n == Errno::NOTSUP.raw_os_error() => "the filesystem does not support it".to_string(),
                Some(n) if n == Errno::RANGE.raw_os_error() || n == Errno::TOOBIG.raw_os_error() => {
                    "its name or value is too long".to_string()
                }
                Some(n) if n == Errno::INVAL.raw_os_error() || n == Errno::PERM.raw_os_error() => {
                    "the kernel refuses that name".to_string()
                }
                _ => e.to_string(),
            };
            io::Error::other(format!("extended attribute {:?}: {why}", String::from_utf8_lossy(k)))
        })?;
    }
    Ok(())
}
