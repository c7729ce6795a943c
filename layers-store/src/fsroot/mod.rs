//! The one door for paths beneath a root whose content someone else controls: a
//! layer being unpacked, a container's root filesystem or upper dir, an image's
//! view, a build context, a directory a user names. Everything beneath such a root is
//! resolved, opened, walked, read, copied and removed through this module, from a
//! directory fd with `openat2` (`RESOLVE_IN_ROOT` or `RESOLVE_BENEATH`, no magic
//! links) and `*at` calls on single names: no `..` and no symlink leads out.
//!
//! - `root`: write a tree beneath a root (what the unpacker and `run`'s mount points use)
//! - `walk`: read a tree through directory fds (a container's upper dir for `diff`)
//! - `tree`: read a tree to copy from (a build context, an image, a container for `cp`)
//! - `lowers`: the merged view of an image's layer dirs, read without mounting
//! - `copy`: lay out and copy a tree's entries into another root (COPY, `cp`, volume copy-up)
//! - `tar_out`: write a copy plan as a tar stream instead (`cp CTR:PATH -`)
//! - `stubs`: take out the mount points a run made in an upper dir, unless written to
//! - `user_dir`: a directory named on the command line, which others may write

// Relative paths are joined here to be resolved beneath the root's fd
// (`RESOLVE_IN_ROOT`), never opened by path.
#[allow(clippy::disallowed_methods)]
pub mod copy;
pub mod lowers;
pub mod root;
// Resolves beneath the root with openat2, nothing by path.
#[allow(clippy::disallowed_methods)]
pub mod stubs;
pub mod tar_out;
#[allow(clippy::disallowed_methods)]
pub mod tree;
// Paths are joined for messages only; every access goes through the directory's fd.
#[allow(clippy::disallowed_methods)]
pub mod user_dir;
pub mod walk;

pub use copy::{at_real_dest, copy, in_root, make_dir, plan, resolve_dest, Attrs, CopyPlan};
pub use root::{
    join, set_mtime_fd, set_owner_mode_fd, set_xattr_fd, split_last, xattrs_fd, Existing, Meta, PathRule, RelPath,
    Root, Subdir, MAX_PATH,
};
pub use stubs::remove_stubs;
pub use tar_out::write_tar;
pub use tree::{Entry, Everything, Filter, Tree};
pub use user_dir::{NewFile, UserDir};
pub use walk::{walk, Node};
