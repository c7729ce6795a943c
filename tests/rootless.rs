//! Rootless, for real: commands run as unprivileged users this test makes (one with a
//! subordinate ID range, one without), in the user namespace `layers` enters, and
//! their results are held against GNU tar's extraction as root, file by file.

// Tests make and inspect their fixtures by path (clippy.toml bans that in the code under test).
#![allow(clippy::disallowed_methods)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

/// A user with a subordinate range (container IDs 1…65536 mapped).
const MAPPED: (&str, &str) = ("layers-rl", "300000-365535");
/// A user without one (only its own ID mapped).
const SINGLE: &str = "layers-rl-single";

/// Makes the user `name` if missing (with the subordinate range `range`), and returns
/// its uid. Idempotent: concurrent tests of this file share the users.
fn user(name: &str, range: Option<&str>) -> u32 {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let id = |n: &str| Command::new("id").args(["-u", n]).output().unwrap();
    if !id(name).status.success() {
        // No subordinate IDs unless asked (useradd gives some where login.defs says so).
        let ok = Command::new("useradd")
            .args(["--create-home", "--shell", "/bin/sh", "-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0", name])
            .status()
            .unwrap();
        assert!(ok.success(), "useradd {name}");
    }
    if let Some(r) = range {
        let listed = std::fs::read_to_string("/etc/subuid").unwrap_or_default();
        if !listed.lines().any(|l| l.starts_with(&format!("{name}:"))) {
            let ok = Command::new("usermod").args(["--add-subuids", r, "--add-subgids", r, name]).status().unwrap();
            assert!(ok.success(), "usermod --add-subuids {r} {name}");
        }
    }
    String::from_utf8(id(name).stdout).unwrap().trim().parse().unwrap()
}

/// The first host ID of `name`'s subordinate range: what container ID 1 is on the host.
fn first_subuid(name: &str) -> u32 {
    let listed = std::fs::read_to_string("/etc/subuid").unwrap();
    let line = listed.lines().find(|l| l.starts_with(&format!("{name}:"))).expect("a subordinate range");
    line.split(':').nth(1).unwrap().parse().unwrap()
}

/// A work dir the user owns (the tests' own temp dirs are root's 0700).
fn work_for(uid: u32) -> tempfile::TempDir {
    let work = tempfile::Builder::new().prefix("layers-rootless").tempdir_in("/tmp").unwrap();
    std::os::unix::fs::chown(work.path(), Some(uid), Some(uid)).unwrap();
    work
}

/// The fixture images' OCI layout, copied where `uid` can read it (umoci writes its
/// index.json 0600).
fn fixtures_for(work: &Path, uid: u32) -> String {
    let to = work.join("oci");
    let ok = Command::new("cp").arg("-a").arg(fixtures().join("oci")).arg(&to).status().unwrap();
    assert!(ok.success());
    let ok = Command::new("chown").arg("-R").arg(format!("{uid}:{uid}")).arg(&to).status().unwrap();
    assert!(ok.success());
    to.to_str().unwrap().to_string()
}

/// Runs `layers --root STORE ARGS…` as `user`, with that user's environment.
fn as_user(user: &str, store: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new("setpriv");
    cmd.args([&format!("--reuid={user}"), &format!("--regid={user}"), "--init-groups", "--reset-env", "--"])
        .arg(env!("CARGO_BIN_EXE_layers"))
        .arg("--root")
        .arg(store)
        .args(args);
    cmd.output().unwrap()
}

fn ok(user: &str, store: &Path, args: &[&str]) -> String {
    let out = as_user(user, store, args);
    assert!(out.status.success(), "layers {args:?} as {user}: {}{}", stdout(&out), stderr(&out));
    stdout(&out)
}

/// `find` over a tree: path, numeric owner, group, mode, type, size (dirs: no size).
const LIST: &str = r#"find . -printf '%p %U %G %m %y %s\n' | awk '$5 == "d" { $6 = "-" } { print }' | sort"#;

/// A rootfs with several owners, a setuid file, a 0700 dir, links and a FIFO,
/// tarred by GNU tar.
fn rootfs_tar(dir: &Path) -> PathBuf {
    let root = dir.join("rootfs");
    let script = r#"
        set -e
        mkdir -p bin etc home/alice private
        echo hello > etc/motd; chown 0:0 etc/motd
        echo tool > bin/tool; chmod 4755 bin/tool
        echo mine > home/alice/notes; chown -R 1000:1000 home/alice; chmod 0750 home/alice
        echo secret > private/key; chown 1:2 private private/key; chmod 0700 private; chmod 0600 private/key
        ln -s ../etc/motd bin/motd; ln etc/motd etc/motd.hard
        mkfifo etc/fifo; chown 65534:65534 etc/fifo
    "#;
    std::fs::create_dir_all(&root).unwrap();
    let ok = Command::new("sh").args(["-c", script]).current_dir(&root).status().unwrap();
    assert!(ok.success());
    let tar = dir.join("rootfs.tar");
    let ok =
        Command::new("tar").args(["--numeric-owner", "-C"]).arg(&root).arg("-cf").arg(&tar).arg(".").status().unwrap();
    assert!(ok.success());
    std::fs::remove_dir_all(&root).unwrap();
    tar
}

#[test]
fn an_import_seen_from_the_users_namespace_is_gnu_tars_extraction_as_root() {
    if !need_root("rootless import") {
        return;
    }
    let uid = user(MAPPED.0, Some(MAPPED.1));
    let work = work_for(uid);
    let tar = rootfs_tar(work.path());
    std::os::unix::fs::chown(&tar, Some(uid), Some(uid)).unwrap();
    let store = work.path().join("store");
    ok(MAPPED.0, &store, &["import", "-q", tar.to_str().unwrap(), "owners"]);

    // From inside the namespace: a mount made by `layers mount` is visible to `layers unshare`.
    let script =
        format!("cd \"$({} --root {} mount owners)\" && {LIST}", env!("CARGO_BIN_EXE_layers"), store.display());
    let seen = ok(MAPPED.0, &store, &["unshare", "sh", "-c", &script]);

    let extracted = tempfile::tempdir().unwrap();
    let ok_tar =
        Command::new("tar").args(["--numeric-owner", "-xpf"]).arg(&tar).arg("-C").arg(extracted.path()).status();
    assert!(ok_tar.unwrap().success());
    let want = Command::new("sh").args(["-c", LIST]).current_dir(extracted.path()).output().unwrap();
    assert_eq!(seen, stdout(&want), "rootless import, seen in the namespace, against GNU tar as root");

    // On the host the same files belong to the user's subordinate range (1000 → first + 999).
    let layer = std::fs::read_dir(store.join("layers")).unwrap().next().unwrap().unwrap().path();
    let notes = std::fs::metadata(layer.join("home/alice/notes")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&notes), first_subuid(MAPPED.0) + 999);
    let motd = std::fs::metadata(layer.join("etc/motd")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&motd), uid, "container root is the user");
    ok(MAPPED.0, &store, &["rm", "-f", "owners-working-container"]);
    let problems = ok(MAPPED.0, &store, &["fsck"]);
    assert!(!problems.contains("layer "), "fsck of the rootless store: {problems}");
}

#[test]
fn a_rootless_container_is_root_in_its_namespace_pid_1_and_keeps_exit_codes() {
    if !need_root("rootless run") {
        return;
    }
    let uid = user(MAPPED.0, Some(MAPPED.1));
    let work = work_for(uid);
    let store = work.path().join("store");
    let vol = work.path().join("vol");
    std::fs::create_dir(&vol).unwrap();
    std::os::unix::fs::chown(&vol, Some(uid), Some(uid)).unwrap();
    ok(MAPPED.0, &store, &["load", "-q", "-i", &fixtures_for(work.path(), uid)]);
    let v = format!("{}:/v:ro", vol.display());
    let out = as_user(
        MAPPED.0,
        &store,
        &["run", "--rm", "-v", &v, "localhost/layered", "sh", "-c", "id -u; echo $$; touch /v/x 2>&1; exit 3"],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[..2], ["0", "1"], "{text}");
    assert!(text.contains("Read-only file system"), "ro volume: {text}");
    assert_eq!(ok(MAPPED.0, &store, &["ps", "-a", "-q"]), "", "--rm leaves nothing");
}

#[test]
fn a_user_without_a_subordinate_range_runs_with_its_own_id_and_a_warning() {
    if !need_root("rootless single-ID run") {
        return;
    }
    let uid = user(SINGLE, None);
    let work = work_for(uid);
    let store = work.path().join("store");
    ok(SINGLE, &store, &["load", "-q", "-i", &fixtures_for(work.path(), uid)]);
    let out = as_user(SINGLE, &store, &["run", "--rm", "localhost/layered", "id", "-u"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "0\n");
    let err = stderr(&out);
    assert!(err.contains("only your own user ID mapped") && err.contains("usermod --add-subuids"), "{err}");
}

#[test]
fn a_store_made_by_root_is_refused_by_a_rootless_user_by_name() {
    if !need_root("rootless store kinds") {
        return;
    }
    let uid = user(MAPPED.0, Some(MAPPED.1));
    let work = work_for(uid);
    let store = work.path().join("root-store");
    layers_ok(&store, &["images"]);
    let ok_chown = Command::new("chown").arg("-R").arg(format!("{uid}:{uid}")).arg(&store).status().unwrap();
    assert!(ok_chown.success());
    let out = as_user(MAPPED.0, &store, &["images"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("made by root"), "{}", stderr(&out));
}
