//! Mount points a runtime made in a container's upper dir only to mount over: taken
//! out again after the process ran, unless it put something there.

use std::path::{Path, PathBuf};

use rustix::fs::{openat2, statat, unlinkat, AtFlags, FileType, Mode, OFlags, ResolveFlags};

/// Removes each of `stubs` (relative to `root`, deepest first) that is still an empty
/// directory or an empty regular file; what the process wrote there stays. The
/// process may have swapped a parent for a symlink: parents are reached beneath
/// `root` without following any.
pub fn remove_stubs(root: &Path, stubs: &[PathBuf]) {
    let Ok(root) = rustix::fs::open(root, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()) else {
        return;
    };
    let how = ResolveFlags::NO_SYMLINKS | ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
    for stub in stubs {
        let (Some(parent), Some(name)) = (stub.parent(), stub.file_name()) else { continue };
        let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
        let Ok(dir) = openat2(&root, parent, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty(), how)
        else {
            continue;
        };
        let Ok(st) = statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) else { continue };
        // A failed removal (a dir not empty) is the answer we want: the process wrote there.
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => {
                let _ = unlinkat(&dir, name, AtFlags::REMOVEDIR);
            }
            FileType::RegularFile if st.st_size == 0 => {
                let _ = unlinkat(&dir, name, AtFlags::empty());
            }
            _ => {}
        }
    }
}
