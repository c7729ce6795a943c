//! Regression tests for the security issues found by adversarial testing: each is
//! named after what it pins.

// Tests make and inspect their fixtures by path (clippy.toml bans that in the code under test).
#![allow(clippy::disallowed_methods)]

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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
    gnu_tar(&rootfs, &tar);
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

#[test]
fn run_mount_bind_rw_never_writes_to_the_build_context() {
    if !need_root("run_mount_bind_rw_never_writes_to_the_build_context") {
        return;
    }
    let (work, store) = store_with_busybox();
    let script = "echo planted > /m/.git/hooks/pre-commit; echo changed > /m/app.txt; \
                  ln -s /etc/shadow /m/shadow; rm /m/keep.txt; cat /m/app.txt > /seen";
    let ctx = build_context(
        work.path(),
        "ctx",
        &format!("FROM busybox\nRUN --mount=type=bind,target=/m,rw sh -c '{script}'\nCMD [\"cat\", \"/seen\"]\n"),
    );
    fs::create_dir_all(ctx.join(".git/hooks")).unwrap();
    fs::write(ctx.join("app.txt"), "original\n").unwrap();
    fs::write(ctx.join("keep.txt"), "kept\n").unwrap();
    let before = files_with_contents(&ctx);
    let tmp_before: Vec<_> = fs::read_dir(store.join("tmp")).unwrap().collect();
    let out = layers(&store, &["build", "-q", "-t", "rw", ctx.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(files_with_contents(&ctx), before, "the build changed its context on the host");
    // The step saw its own writes.
    assert_eq!(layers_ok(&store, &["run", "--rm", "rw"]), "changed");
    // Nothing of the throwaway layer is left, and nothing is still mounted.
    assert_eq!(fs::read_dir(store.join("tmp")).unwrap().count(), tmp_before.len(), "scratch left in tmp/");
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(store.to_str().unwrap()), "a mount of the store is left: {mounts}");
}

#[test]
fn dockerfile_symlink_out_of_the_context_is_not_read() {
    if !need_root("dockerfile_symlink_out_of_the_context_is_not_read") {
        return;
    }
    let (work, store) = store_with_busybox();
    let ctx = work.path().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    let secret = work.path().join("secret");
    fs::write(&secret, "root:*:20228:0:99999:7:::\n").unwrap();
    std::os::unix::fs::symlink(&secret, ctx.join("Dockerfile")).unwrap();
    std::os::unix::fs::symlink(&secret, ctx.join(".dockerignore")).unwrap();
    let out = layers(&store, &["build", ctx.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(!err.contains("root:*"), "the secret was read: {err}");
    assert!(err.contains("Dockerfile: no such file or directory"), "{err}");
    // A symlink inside the context is followed inside it, as BuildKit reads the context.
    fs::remove_file(ctx.join("Dockerfile")).unwrap();
    fs::remove_file(ctx.join(".dockerignore")).unwrap();
    fs::write(ctx.join("Dockerfile.real"), "FROM busybox\nCMD [\"true\"]\n").unwrap();
    std::os::unix::fs::symlink("/Dockerfile.real", ctx.join("Dockerfile")).unwrap();
    layers_ok(&store, &["build", "-q", ctx.to_str().unwrap()]);
    // A -f path the user gives is read where it is.
    fs::write(&secret, "FROM busybox\n").unwrap();
    layers_ok(&store, &["build", "-q", "-f", secret.to_str().unwrap(), ctx.to_str().unwrap()]);
}

/// `layers build` on `dockerfile`: must fail within `secs`, with `want` in its one-line error.
fn build_refused(store: &Path, work: &Path, name: &str, dockerfile: &str, want: &str, secs: u64) {
    let ctx = build_context(work, name, dockerfile);
    let started = std::time::Instant::now();
    let out = layers(store, &["build", "-q", ctx.to_str().unwrap()]);
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{name}: {}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(want), "{name}: {err}");
    assert_eq!(err.trim().lines().count(), 1, "{name}: one line: {err}");
    assert!(took < std::time::Duration::from_secs(secs), "{name} took {took:?}");
}

#[test]
fn dockerfile_expansion_is_bounded_in_memory_time_and_depth() {
    if !need_root("dockerfile_expansion_is_bounded_in_memory_time_and_depth") {
        return;
    }
    let (work, store) = store_with_busybox();
    let images_before = layers_ok(&store, &["images", "-a", "-q"]);
    let mut doubling = String::from("FROM busybox\nARG A0=abcdefgh\n");
    for i in 1..32 {
        doubling.push_str(&format!("ARG A{i}=${{A{}}}${{A{}}}\n", i - 1, i - 1));
    }
    doubling.push_str("LABEL x=$A31\n");
    let w = work.path();
    build_refused(&store, w, "doubling", &doubling, "Dockerfile:20:1: variable expansion larger than the limit", 10);
    let n = 100_000;
    let nested = format!("FROM busybox\nLABEL a={}x\n", "${A:-".repeat(n));
    build_refused(&store, w, "nested", &nested, "missing '}' in a variable substitution", 10);
    let long = format!("FROM busybox\nLABEL a={}\n", "x".repeat(2 << 20));
    build_refused(&store, w, "long-line", &long, "variable expansion larger than the limit of 1048576 bytes", 10);
    let huge = format!("FROM busybox\n#{}\n", "x".repeat(5 << 20));
    build_refused(&store, w, "huge", &huge, "larger than the limit of 4194304 bytes", 10);
    // Deep nesting that closes is fine: linear, no stack overflow.
    let ctx = build_context(w, "deep-ok", &format!("FROM busybox\nLABEL a={}x{}\n", "${A:-".repeat(n), "}".repeat(n)));
    layers_ok(&store, &["build", "-q", "-t", "deep", ctx.to_str().unwrap()]);
    assert_eq!(layers_ok(&store, &["images", "-a", "-q"]).lines().count(), images_before.lines().count() + 1);
}

#[test]
fn uids_that_are_not_uids_are_refused() {
    if !need_root("uids_that_are_not_uids_are_refused") {
        return;
    }
    let (work, store) = store_with_busybox();
    for user in ["4294967295", "-1", "0:4294967295", "99999999999"] {
        let out = layers(&store, &["run", "--rm", &format!("--user={user}"), "busybox", "id", "-u"]);
        assert_eq!(out.status.code(), Some(125), "-u {user}: {}", stdout(&out));
        assert!(stderr(&out).contains("uids and gids must be in range 0-2147483647"), "{}", stderr(&out));
    }
    let dockerfile = "FROM busybox\nUSER 4294967295\nRUN id -u > /who\n";
    // Refused at the USER line itself.
    build_refused(
        &store,
        work.path(),
        "user",
        dockerfile,
        "Dockerfile:2:1: 4294967295: uids and gids must be in range",
        30,
    );
}

#[test]
fn local_inputs_of_dev_zero_are_refused_at_their_caps() {
    if !need_root("local_inputs_of_dev_zero_are_refused_at_their_caps") {
        return;
    }
    let (_work, store) = store_with_busybox();
    // Docker's statuses: 125 where `run` fails before its command starts, 1 elsewhere.
    let refused = |out: Output, want: &str| {
        let code = if want.starts_with("env file") || want.starts_with("--security-opt") { 125 } else { 1 };
        assert_eq!(out.status.code(), Some(code), "{want}");
        assert!(stderr(&out).contains(want), "{}", stderr(&out));
    };
    refused(
        layers(&store, &["run", "--rm", "--env-file", "/dev/zero", "busybox", "true"]),
        "env file /dev/zero: larger than the limit of 1048576 bytes",
    );
    refused(
        layers(&store, &["run", "--rm", "--security-opt", "seccomp=/dev/zero", "busybox", "true"]),
        "--security-opt seccomp /dev/zero: larger than the limit of 4194304 bytes",
    );
    refused(
        layers(&store, &["--registries-config", "/dev/zero", "pull", "127.0.0.1:1/x:y"]),
        "registries config /dev/zero: larger than the limit of 4194304 bytes",
    );
    let mut login = layers_cmd();
    login.arg("--root").arg(&store).args(["login", "-u", "me", "--password-stdin", "127.0.0.1:1"]);
    let out = login.stdin(fs::File::open("/dev/zero").unwrap()).output().unwrap();
    refused(out, "password from stdin: larger than the limit of 65536 bytes");
}

#[test]
fn etc_passwd_fifo_does_not_hang_run() {
    if !need_root("etc_passwd_fifo_does_not_hang_run") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let rootfs = t.path().join("rootfs");
    fs::create_dir_all(rootfs.join("bin")).unwrap();
    fs::create_dir_all(rootfs.join("etc")).unwrap();
    fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    for f in ["passwd", "group"] {
        assert!(Command::new("mkfifo").arg(rootfs.join("etc").join(f)).status().unwrap().success());
    }
    let tar = t.path().join("fifo.tar");
    gnu_tar(&rootfs, &tar);
    let store = t.path().join("store");
    layers_ok(&store, &["import", "-q", tar.to_str().unwrap(), "fifo:1"]);
    let mut child = spawn_layers(&store, &["run", "--rm", "fifo:1", "/bin/busybox", "echo", "ran"]);
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > std::time::Duration::from_secs(20) {
            let _ = child.kill();
            panic!("layers run hangs on an /etc/passwd FIFO");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "ran\n");
    // A named user needs the file: refused, not hung.
    let out = layers(&store, &["run", "--rm", "-u", "app", "fifo:1", "/bin/busybox", "true"]);
    assert_eq!(out.status.code(), Some(125), "{}", stderr(&out));
    assert!(stderr(&out).contains("unable to find user app"), "{}", stderr(&out));
}

fn index_of(digest: &str, n: usize) -> Vec<u8> {
    let entry =
        serde_json::json!({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": digest, "size": 1});
    serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": vec![entry; n]})).unwrap()
}

#[test]
fn load_caps_json_members_and_index_fan_out() {
    if !need_root("load_caps_json_members_and_index_fan_out") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    layers_ok(&store, &["images", "-q"]);
    let before = files_with_contents(&store.join("layers"));
    let load = |input: &Path, want: &str| {
        let started = std::time::Instant::now();
        let out = layers(&store, &["load", "-i", input.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{}: {}", input.display(), stdout(&out));
        assert!(stderr(&out).contains(want), "{}: {}", input.display(), stderr(&out));
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{} took {:?}",
            input.display(),
            started.elapsed()
        );
    };
    // A docker-archive whose manifest.json is 5 MiB (made by GNU tar).
    let big = t.path().join("big");
    fs::create_dir_all(&big).unwrap();
    fs::write(big.join("manifest.json"), format!("[{}]", " ".repeat(5 << 20))).unwrap();
    let big_tar = t.path().join("big.tar");
    gnu_tar(&big, &big_tar);
    load(&big_tar, "manifest.json: larger than 4194304 bytes");
    load(&big, "manifest.json: larger than 4194304 bytes");
    // One that lists nothing: an error, not a silent success.
    fs::write(big.join("manifest.json"), "[]").unwrap();
    load(&big, "manifest.json lists no image");
    // An OCI layout whose index fans out 300 × 300 × 300 through two nested indexes.
    let fan = t.path().join("fan");
    fs::create_dir_all(&fan).unwrap();
    fs::write(fan.join("oci-layout"), r#"{"imageLayoutVersion": "1.0.0"}"#).unwrap();
    let manifest = serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": layout_blob(&fan, b"{}"), "size": 2});
    let inner = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": vec![manifest; 300]})).unwrap();
    let middle = index_of(&layout_blob(&fan, &inner), 300);
    fs::write(fan.join("index.json"), index_of(&layout_blob(&fan, &middle), 300)).unwrap();
    load(&fan, "indexes list more than 10000 entries in all");
    assert_eq!(files_with_contents(&store.join("layers")), before);
    assert_eq!(layers_ok(&store, &["images", "-a", "-q"]), "");
}

// 425 is io_uring_setup's number on x86_64.
#[cfg(target_arch = "x86_64")]
#[test]
fn seccomp_denies_io_uring() {
    if !need_root("seccomp_denies_io_uring") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    load_python_base(&store);
    // io_uring_setup(1, NULL): EFAULT where the call is allowed, EPERM where the profile denies it.
    let probe = "import ctypes, errno\nlibc = ctypes.CDLL(None, use_errno=True)\n\
                 libc.syscall(425, 1, None)\nprint(errno.errorcode[ctypes.get_errno()])\n";
    assert_eq!(layers_ok(&store, &["run", "--rm", "localhost/python", "python3", "-c", probe]), "EPERM");
    let off = ["run", "--rm", "--security-opt", "seccomp=unconfined", "localhost/python", "python3", "-c", probe];
    assert_eq!(layers_ok(&store, &off), "EFAULT", "the probe reaches the kernel without the profile");
}

/// A victim dir outside everything the command was pointed at, with one file to keep.
fn victim(work: &Path) -> PathBuf {
    let v = work.join("victim-dir");
    fs::create_dir_all(&v).unwrap();
    fs::write(v.join("k1"), "keep").unwrap();
    v
}

fn assert_victim_intact(v: &Path) {
    let names: Vec<_> = fs::read_dir(v).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["k1"], "nothing added to or removed from {}", v.display());
    assert_eq!(fs::read_to_string(v.join("k1")).unwrap(), "keep");
}

#[test]
fn cache_to_local_never_follows_symlinks_planted_in_its_dir() {
    if !need_root("cache_to_local_never_follows_symlinks_planted_in_its_dir") {
        return;
    }
    let (work, store) = store_with_fixtures();
    let w = work.path();
    let v = victim(w);
    let ctx = build_context(w, "ctx", "FROM localhost/layered\nRUN echo hi > /hi\n");
    // blobs/sha256 -> the victim: its files would be deleted as blobs no index names.
    let cache = w.join("shared-cache");
    fs::create_dir_all(cache.join("blobs")).unwrap();
    std::os::unix::fs::symlink(&v, cache.join("blobs/sha256")).unwrap();
    let to = format!("type=local,dest={}", cache.display());
    let out = layers(&store, &["build", "-t", "app", "--cache-to", &to, ctx.to_str().unwrap()]);
    assert!(stderr(&out).contains("blobs/sha256: a symlink on the way: refused"), "{}", stderr(&out));
    assert_victim_intact(&v);
    // oci-layout and index.json -> files outside: replaced as links, never written through.
    fs::remove_file(cache.join("blobs/sha256")).unwrap();
    std::os::unix::fs::symlink(v.join("k1"), cache.join("oci-layout")).unwrap();
    std::os::unix::fs::symlink(v.join("k1"), cache.join("index.json")).unwrap();
    let out = layers(&store, &["build", "-t", "app", "--cache-to", &to, ctx.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_victim_intact(&v);
    assert!(!fs::symlink_metadata(cache.join("index.json")).unwrap().file_type().is_symlink());
    // Reading follows no symlink either: a planted index.json link is refused by name.
    fs::remove_file(cache.join("index.json")).unwrap();
    std::os::unix::fs::symlink(v.join("k1"), cache.join("index.json")).unwrap();
    let from = format!("type=local,src={}", cache.display());
    let out = layers(&store, &["build", "--cache-from", &from, ctx.to_str().unwrap()]);
    assert!(stderr(&out).contains("index.json: a symlink on the way"), "{}", stderr(&out));
    // A cache dir another user owns is refused, for writing and for reading.
    fs::remove_file(cache.join("index.json")).unwrap();
    Command::new("chown").args(["-R", "4242:4242"]).arg(&cache).status().unwrap();
    let out = layers(&store, &["build", "--cache-to", &to, ctx.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("owned by uid 4242, neither you (uid 0) nor root"), "{}", stderr(&out));
    let out = layers(&store, &["build", "--cache-from", &from, ctx.to_str().unwrap()]);
    assert!(stderr(&out).contains("owned by uid 4242"), "{}", stderr(&out));
}

#[test]
fn save_load_and_output_dirs_never_follow_symlinks_planted_in_them() {
    if !need_root("save_load_and_output_dirs_never_follow_symlinks_planted_in_them") {
        return;
    }
    let (work, store) = store_with_fixtures();
    let w = work.path();
    let v = victim(w);
    // save -o DIR/ with DIR/blobs -> the victim.
    let out_dir = w.join("saved");
    fs::create_dir(&out_dir).unwrap();
    std::os::unix::fs::symlink(&v, out_dir.join("blobs")).unwrap();
    let dest = format!("{}/", out_dir.display());
    let out = layers(&store, &["save", "--format", "oci", "-o", &dest, "localhost/layered"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("blobs: a symlink on the way: refused"), "{}", stderr(&out));
    assert_victim_intact(&v);
    // A good layout; then load -i of it with a symlinked index and with a FIFO for one.
    fs::remove_file(out_dir.join("blobs")).unwrap();
    layers_ok(&store, &["save", "--format", "oci", "-o", &dest, "localhost/layered"]);
    fs::rename(out_dir.join("index.json"), v.join("index.json")).unwrap();
    std::os::unix::fs::symlink(v.join("index.json"), out_dir.join("index.json")).unwrap();
    let out = layers(&store, &["load", "-i", out_dir.to_str().unwrap()]);
    assert!(stderr(&out).contains("index.json: a symlink on the way"), "{}", stderr(&out));
    fs::remove_file(v.join("index.json")).unwrap();
    fs::remove_file(out_dir.join("index.json")).unwrap();
    assert!(Command::new("mkfifo").arg(out_dir.join("index.json")).status().unwrap().success());
    let start = std::time::Instant::now();
    let out = layers(&store, &["load", "-i", out_dir.to_str().unwrap()]);
    assert!(stderr(&out).contains("index.json: not a regular file"), "{}", stderr(&out));
    assert!(start.elapsed() < std::time::Duration::from_secs(10), "a FIFO does not hang load");
    // --output type=local whose dest is a symlink to the victim: refused, not followed.
    let ctx = build_context(w, "ctx", "FROM localhost/layered\n");
    let local = w.join("rootfs-out");
    std::os::unix::fs::symlink(&v, &local).unwrap();
    let spec = format!("type=local,dest={}", local.display());
    let out = layers(&store, &["build", "--output", &spec, ctx.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("a symlink is never followed"), "{}", stderr(&out));
    assert_victim_intact(&v);
    fs::remove_file(&local).unwrap();
    layers_ok(&store, &["build", "--output", &spec, ctx.to_str().unwrap()]);
    assert!(local.join("bin").is_dir());
}

/// Bytes under `dir`, symlinks not followed.
fn disk_bytes(dir: &Path) -> u64 {
    let out = Command::new("du").args(["-sb"]).arg(dir).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn label_env_and_workdir_lines_cost_linear_time_memory_and_space() {
    if !need_root("label_env_and_workdir_lines_cost_linear_time_memory_and_space") {
        return;
    }
    let (work, store) = store_with_fixtures();
    let w = work.path();
    // Before: each config line recorded an image holding the whole config so far
    // (2,000 WORKDIR lines: 48 s and 222 MB; 10,000 LABEL lines: 6 GB of memory).
    let mut df = String::from("FROM localhost/layered\n");
    for i in 0..10_000 {
        df.push_str(&format!("LABEL l{i}=v{i}\n"));
    }
    df.push_str("RUN true\n");
    for _ in 0..2_000 {
        df.push_str("WORKDIR /\n");
    }
    let ctx = build_context(w, "many", &df);
    let before = disk_bytes(&store);
    let start = std::time::Instant::now();
    let out = Command::new("/usr/bin/time")
        .args(["-f", "maxrss=%M"])
        .env(NO_DEFAULT_NETWORK.0, NO_DEFAULT_NETWORK.1)
        .arg(layers_bin())
        .arg("--root")
        .arg(&store)
        .args(["build", "-q", "-t", "many", ctx.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(start.elapsed() < std::time::Duration::from_secs(30), "took {:?}", start.elapsed());
    let rss: u64 = stderr(&out).rsplit("maxrss=").next().unwrap().trim().parse().unwrap();
    assert!(rss < 400_000, "peak memory {rss} KB");
    let grown = disk_bytes(&store) - before;
    assert!(grown < 40 << 20, "the store grew {grown} bytes");
    let shown: serde_json::Value = serde_json::from_str(&layers_ok(&store, &["inspect", "many"])).unwrap();
    assert_eq!(shown[0]["Config"]["Labels"].as_object().map(|l| l.len()), Some(10_000));
    // A second build is all cache, and just as cheap.
    let again = layers(&store, &["build", "-t", "many", ctx.to_str().unwrap()]);
    assert!(!stderr(&again).contains("cache miss"), "{}", stderr(&again));

    // Caps, named: environment variables, and a config no reader would take back.
    let pairs: Vec<String> = (0..10_001).map(|i| format!("V{i}=x")).collect();
    let env = format!("FROM localhost/layered\nENV {}\n", pairs.join(" "));
    build_refused(&store, w, "env", &env, "ENV: the image would have more than 10000 environment variables", 30);
    let mut df = String::from("FROM localhost/layered\n");
    for i in 0..60_000 {
        df.push_str(&format!("LABEL l{}=v{i}\n", i % 5_000));
    }
    build_refused(&store, w, "history", &df, "over the 4194304 an image config may have", 60);
}

/// Issue 26: a store root owned by another user (0777, say) was used as found, so its
/// owner could change what the store holds. Refused by name, and left as it was.
#[test]
fn a_store_root_owned_by_another_user_is_refused() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if !need_root("a_store_root_owned_by_another_user_is_refused") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("theirs");
    std::fs::create_dir(&root).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o777)).unwrap();
    rustix::fs::chown(&root, Some(rustix::fs::Uid::from_raw(65534)), Some(rustix::fs::Gid::from_raw(65534))).unwrap();
    let out = layers(&root, &["images"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("owned by uid 65534, not by this user (uid 0)") && err.lines().count() == 1, "{err}");
    let m = std::fs::metadata(&root).unwrap();
    assert_eq!((m.mode() & 0o7777, m.uid()), (0o777, 65534), "left as found");
    assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0, "nothing made in it");
}

/// Issue 26: a mount over /proc failed the run late with a bare errno ("list fds: No
/// such file or directory"). Refused up front, by flag, as runc refuses it; and a
/// mount over the root, as Docker refuses it.
#[test]
fn mounts_over_proc_or_the_root_are_refused_by_flag() {
    let (work, store) = store_with_fixtures();
    let dir = work.path().display().to_string();
    for (args, says) in [
        (vec!["-v".to_string(), format!("{dir}:/proc")], "a mount over /proc is refused"),
        (vec!["-v".to_string(), format!("{dir}:/proc/sys/")], "a mount over /proc is refused"),
        (vec!["--tmpfs".to_string(), "/proc".to_string()], "a mount over /proc is refused"),
        (vec!["--mount".to_string(), "type=tmpfs,target=//./proc".to_string()], "a mount over /proc is refused"),
        (vec!["-v".to_string(), format!("{dir}:/")], "a mount over the container's root is refused"),
        (vec!["-v".to_string(), format!("{dir}:/x/../proc")], "has a '..' component"),
    ] {
        let mut full = vec!["run".to_string(), "--rm".to_string()];
        full.extend(args.iter().cloned());
        full.extend(["localhost/layered".to_string(), "true".to_string()]);
        let full: Vec<&str> = full.iter().map(String::as_str).collect();
        let out = layers(&store, &full);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(125), "{args:?}: {err}");
        assert!(err.lines().count() == 1 && err.contains(says) && err.contains(&args[0]), "{args:?}: {err}");
    }
}
