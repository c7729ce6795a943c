//! What the library's integration tests share: the root check and GNU tar.

// Tests make their trees by path (clippy.toml bans that in the library).
#![allow(clippy::disallowed_methods, dead_code)]

use std::path::Path;
use std::process::Command;

/// True when running as root; otherwise the test fails, unless
/// `LAYERS_TEST_SKIP_ROOT=1` asks to skip it (then a loud notice).
pub fn need_root(test: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    if std::env::var_os("LAYERS_TEST_SKIP_ROOT").is_some_and(|v| v == "1") {
        eprintln!("!!! SKIPPED {test}: needs root (mknod, trusted.* xattrs, overlay mounts) !!!");
        return false;
    }
    panic!("{test} needs root (mknod, trusted.* xattrs, overlay mounts); LAYERS_TEST_SKIP_ROOT=1 skips it");
}

/// `tar -C dir -cf out .` by GNU tar (owners numeric, root's).
pub fn gnu_tar(dir: &Path, out: &Path) {
    let st = Command::new("tar")
        .args(["--numeric-owner", "--owner=0", "--group=0", "-C"])
        .arg(dir)
        .arg("-cf")
        .arg(out)
        .arg(".")
        .status()
        .expect("GNU tar");
    assert!(st.success(), "tar -C {}", dir.display());
}
