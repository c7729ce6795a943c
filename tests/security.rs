//! Regression tests for the security issues found by adversarial testing: each is
//! named after what it pins.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// Whether uid/gid 65534 with no supplementary groups can `stat` (and so reach) `path`.
fn nobody_reaches(path: &Path) -> bool {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--", "stat", "--"])
        .arg(path)
        .output()
        .expect("run setpriv")
        .status
        .success()
}

/// A dir other users may traverse, so only the store's own modes keep them out.
fn open_parent() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    fs::set_permissions(t.path(), fs::Permissions::from_mode(0o755)).unwrap();
    t
}

/// A rootfs tarball (made by GNU tar) with a setuid-root binary and a 0666 device node.
fn setuid_rootfs(dir: &Path) -> PathBuf {
    let rootfs = dir.join("rootfs");
    fs::create_dir_all(rootfs.join("bin")).unwrap();
    fs::create_dir_all(rootfs.join("dev")).unwrap();
    fs::copy("/bin/busybox", rootfs.join("bin/rootshell")).unwrap();
    fs::set_permissions(rootfs.join("bin/rootshell"), fs::Permissions::from_mode(0o4755)).unwrap();
    let st = Command::new("mknod").args(["-m", "666"]).arg(rootfs.join("dev/kmsg")).args(["c", "1", "11"]).status();
    assert!(st.unwrap().success(), "mknod");
    let tar = dir.join("rootfs.tar");
    let st = Command::new("tar").arg("-C").arg(&rootfs).arg("-cf").arg(&tar).arg(".").status().unwrap();
    assert!(st.success(), "GNU tar");
    tar
}

const PRIVATE: [&str; 8] = ["", "blobs", "blobs/sha256", "layers", "tmp", "locks", "containers", "cache-mounts"];

#[test]
fn store_hands_no_root_to_local_users() {
    if !need_root("store_hands_no_root_to_local_users") {
        return;
    }
    let t = open_parent();
    let store = t.path().join("store");
    let tar = setuid_rootfs(t.path());
    layers_ok(&store, &["import", "-q", tar.to_str().unwrap(), "suid:1"]);
    let id = layers_ok(&store, &["create", "--name", "c1", "localhost/suid:1"]).trim().to_string();
    let merged = layers_ok(&store, &["mount", "c1"]).trim().to_string();
    let _unmount = Mounted(PathBuf::from(&merged));
    // What a root process in the container would leave in its upper dir.
    let upper = store.join("containers").join(&id).join("upper");
    fs::copy("/bin/busybox", upper.join("planted")).unwrap();
    fs::set_permissions(upper.join("planted"), fs::Permissions::from_mode(0o4755)).unwrap();

    let layer = layer_dirs(&store, "localhost/suid:1").pop().unwrap();
    let content = [
        layer.join("bin/rootshell"),
        layer.join("dev/kmsg"),
        upper.join("planted"),
        PathBuf::from(&merged).join("bin/rootshell"),
        PathBuf::from(&merged).join("planted"),
    ];
    for p in &content {
        assert!(fs::symlink_metadata(p).is_ok(), "root sees {}", p.display());
    }
    // The harness itself can succeed: nobody reaches a file in the open parent.
    fs::write(t.path().join("control"), "x").unwrap();
    assert!(nobody_reaches(&t.path().join("control")), "setpriv harness cannot reach an open file");
    for p in content.iter().chain(PRIVATE.iter().skip(1).map(|d| store.join(d)).collect::<Vec<_>>().iter()) {
        assert!(!nobody_reaches(p), "uid 65534 reaches {}", p.display());
    }
    for d in PRIVATE {
        let m = fs::metadata(store.join(d)).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o700, "mode of {}/{d}", store.display());
    }
    let c = fs::metadata(store.join("containers").join(&id)).unwrap();
    assert_eq!(c.mode() & 0o7777, 0o700, "mode of the container's dir");
    // The container's own root keeps a root filesystem's mode.
    assert_eq!(fs::metadata(&upper).unwrap().mode() & 0o777, 0o755, "mode of the upper dir");
}

#[test]
fn store_opened_by_root_gets_private_modes_back() {
    if !need_root("store_opened_by_root_gets_private_modes_back") {
        return;
    }
    let t = open_parent();
    let store = t.path().join("store");
    layers_ok(&store, &["images", "-q"]);
    // A store made by an earlier version: every dir 0755.
    for d in PRIVATE {
        fs::set_permissions(store.join(d), fs::Permissions::from_mode(0o755)).unwrap();
    }
    assert!(nobody_reaches(&store.join("layers")), "0755 store reachable before reopening");
    layers_ok(&store, &["images", "-q"]);
    for d in PRIVATE {
        let m = fs::metadata(store.join(d)).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o700, "mode of {}/{d} after reopening", store.display());
    }
    assert!(!nobody_reaches(&store.join("layers")));
}
