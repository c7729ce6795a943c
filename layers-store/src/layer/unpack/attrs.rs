//! A node's attributes as a tar entry gives them, set on what the unpack made: one
//! piece of code for a file made inline and one made by a writer thread.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;

use rustix::io::Errno;

use crate::fsroot::{set_mtime_fd, set_owner_mode_fd, set_xattr_fd, xattrs_fd, Meta};
use crate::layer::listing::FileDigest;
use crate::layer::written::{Node, Tail};

/// Gives a file whose bytes are written its owner, mode, xattrs and times; returns
/// its node as it now is.
pub(super) fn finish_file(
    file: &File,
    meta: &Meta,
    xattrs: &[(Vec<u8>, Vec<u8>)],
    digest: FileDigest,
) -> io::Result<Node> {
    set_owner_mode_fd(file.as_fd(), meta)?;
    apply_xattrs(xattrs, |k, v| set_xattr_fd(file.as_fd(), k, v))?;
    set_mtime_fd(file.as_fd(), meta)?;
    let st = rustix::fs::fstat(file)?;
    Ok(Node::of(&st, Tail::Content(digest), xattrs_fd(file.as_fd())?))
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
