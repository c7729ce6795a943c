//! Shared test helpers: fixtures, running the binary, comparing trees.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use layers_store::content::digest::Hasher;

pub mod build_cache;
mod modes;
mod netns;
mod registry;
pub mod tar_bytes;
#[allow(unused_imports)]
pub use modes::*;
#[allow(unused_imports)]
pub use netns::*;
#[allow(unused_imports)]
pub use registry::*;

/// The source tree: this checkout, or `LAYERS_TEST_REPO` where CI copied the fixtures
/// for the run as an unprivileged user (who cannot read root's checkout).
pub fn repo() -> PathBuf {
    std::env::var_os("LAYERS_TEST_REPO").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

/// The `layers` binary under test: cargo's, or `LAYERS_TEST_BIN` (the same binary,
/// copied where an unprivileged user can run it).
pub fn layers_bin() -> PathBuf {
    std::env::var_os("LAYERS_TEST_BIN").map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_layers")), PathBuf::from)
}

/// True when running as root. Otherwise the test fails, unless `LAYERS_TEST_SKIP_ROOT=1`
/// asks to skip what needs root: then a loud notice, and false. A test that checked
/// nothing must not pass by default.
pub fn need_root(test: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    let why = "needs root (mknod, chown, trusted.* xattrs, overlay mounts)";
    if std::env::var_os("LAYERS_TEST_SKIP_ROOT").is_some_and(|v| v == "1") {
        eprintln!("!!! SKIPPED {test}: {why}; LAYERS_TEST_SKIP_ROOT=1 !!!");
        return false;
    }
    panic!("{test} {why}: run the tests as root, or set LAYERS_TEST_SKIP_ROOT=1 to skip it");
}

/// What every `layers` the tests start has in its environment: containers made
/// without `--network` get `none`, as before bridges were the default, so that no test
/// makes a bridge or a firewall table in the machine's own network namespace. The
/// network tests make a namespace of their own and leave the default in place there.
pub const NO_DEFAULT_NETWORK: (&str, &str) = ("LAYERS_DEFAULT_NETWORK", "none");

/// `layers` with the tests' environment ([`NO_DEFAULT_NETWORK`]).
pub fn layers_cmd() -> Command {
    let mut c = Command::new(layers_bin());
    c.env(NO_DEFAULT_NETWORK.0, NO_DEFAULT_NETWORK.1);
    c
}

/// A loopback TCP port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Builds (once, cached) and returns the fixtures directory.
pub fn fixtures() -> PathBuf {
    let status = Command::new("bash").arg(repo().join("fixtures/build.sh")).status().expect("run fixtures/build.sh");
    assert!(status.success(), "fixtures/build.sh failed");
    repo().join("fixtures/cache")
}

/// Starts `layers --root STORE ARGS...` with its output captured.
pub fn spawn_layers(store: &Path, args: &[&str]) -> Child {
    layers_cmd()
        .arg("--root")
        .arg(store)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run layers")
}

/// Runs `layers --root STORE ARGS...` to the end.
pub fn layers(store: &Path, args: &[&str]) -> Output {
    spawn_layers(store, args).wait_with_output().expect("run layers")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Everything that matters about one node for equality of root filesystems.
#[derive(Debug, PartialEq, Eq)]
pub struct Node {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub content: Option<String>,
    pub link: Option<String>,
    pub rdev: u64,
    pub mtime: Option<i64>,
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

pub fn xattrs(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut names = vec![0u8; 64 * 1024];
    let Ok(n) = rustix::fs::llistxattr(path, &mut names[..]) else { return out };
    for name in names[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let key = String::from_utf8_lossy(name).into_owned();
        if key.starts_with("trusted.overlay.") || key.starts_with("user.overlay.") {
            continue;
        }
        let mut val = vec![0u8; 64 * 1024];
        if let Ok(m) = rustix::fs::lgetxattr(path, name, &mut val[..]) {
            out.insert(key, val[..m].to_vec());
        }
    }
    out
}

fn node(path: &Path) -> Node {
    let m = fs::symlink_metadata(path).unwrap();
    let ft = m.file_type();
    let kind = if ft.is_dir() {
        "dir"
    } else if ft.is_file() {
        "file"
    } else if ft.is_symlink() {
        "symlink"
    } else if ft.is_char_device() {
        "char"
    } else if ft.is_block_device() {
        "block"
    } else if ft.is_fifo() {
        "fifo"
    } else {
        "socket"
    };
    let content = ft.is_file().then(|| {
        let mut h = Hasher::new();
        let mut f = fs::File::open(path).unwrap();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = f.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        h.finish().hex()
    });
    Node {
        kind,
        mode: if ft.is_symlink() { 0 } else { m.mode() & 0o7777 },
        uid: m.uid(),
        gid: m.gid(),
        size: if ft.is_file() { m.size() } else { 0 },
        content,
        link: ft.is_symlink().then(|| fs::read_link(path).unwrap().to_string_lossy().into_owned()),
        rdev: if ft.is_char_device() || ft.is_block_device() { m.rdev() } else { 0 },
        mtime: Some(m.mtime()),
        xattrs: xattrs(path),
    }
}

/// Which mtimes a comparison trusts.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mtimes {
    /// Regular files only: a flattening reader (umoci) touches directories when it
    /// applies whiteouts, and an overlay view shows the upper layer's directory.
    Files,
    /// Every node but the root: both trees come from one layer.
    All,
    /// None: two builders ran the same commands at different times.
    None,
}

/// Every node beneath `root`, keyed by relative path (the root itself is "").
pub fn tree(root: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let abs = root.join(&rel);
        let n = node(&abs);
        if n.kind == "dir" {
            for e in fs::read_dir(&abs).unwrap() {
                stack.push(rel.join(e.unwrap().file_name()));
            }
        }
        out.insert(rel.to_string_lossy().into_owned(), n);
    }
    out
}

/// Differences between two trees, one line each; empty when identical.
pub fn compare_trees(a: &Path, b: &Path, mtimes: Mtimes) -> Vec<String> {
    let (mut ta, mut tb) = (tree(a), tree(b));
    if mtimes != Mtimes::All {
        for n in ta.values_mut().chain(tb.values_mut()) {
            if n.kind != "file" || mtimes == Mtimes::None {
                n.mtime = None;
            }
        }
    }
    let mut diffs = Vec::new();
    for (p, na) in &ta {
        match tb.get(p) {
            None => diffs.push(format!("only in {}: /{p}", a.display())),
            Some(nb) if p.is_empty() => {
                // The roots of the two trees are made by different tools; compare type only.
                if na.kind != nb.kind {
                    diffs.push("root types differ".into());
                }
            }
            Some(nb) if na != nb => diffs.push(format!("/{p}: {na:?} != {nb:?}")),
            Some(_) => {}
        }
    }
    for p in tb.keys() {
        if !ta.contains_key(p) {
            diffs.push(format!("only in {}: /{p}", b.display()));
        }
    }
    diffs
}

/// An overlay mount, unmounted on drop.
pub struct Mounted(pub PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Mounts `layers` (bottom first) read-only with a plain `mount -t overlay`.
pub fn mount_overlay(layers: &[PathBuf], target: &Path) -> Mounted {
    fs::create_dir_all(target).unwrap();
    let lower: Vec<String> = layers.iter().rev().map(|p| p.display().to_string()).collect();
    let opts = format!("ro,lowerdir={},index=off,metacopy=off,redirect_dir=off", lower.join(":"));
    let st = Command::new("mount").args(["-t", "overlay", "overlay", "-o", &opts]).arg(target).status().unwrap();
    assert!(st.success(), "mount -t overlay -o {opts}");
    Mounted(target.to_path_buf())
}

/// Runs layers with its own HOME and config dir, so no real credentials are seen.
pub fn layers_as_user(
    home: &Path,
    store: &Path,
    args: &[&str],
    stdin: Option<&str>,
    auth_file: Option<&Path>,
) -> Output {
    use std::io::Write;
    let mut cmd = layers_cmd();
    cmd.env("HOME", home).env("XDG_CONFIG_HOME", home.join("config")).env_remove("REGISTRY_AUTH_FILE");
    if let Some(f) = auth_file {
        cmd.env("REGISTRY_AUTH_FILE", f);
    }
    let mut child = cmd
        .arg("--root")
        .arg(store)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

/// A containers.conf in `dir` (made) with the ulimits this sandbox allows podman and
/// buildah (it lacks CAP_SYS_RESOURCE; ANCHORS.md), for `CONTAINERS_CONF`.
pub fn containers_conf(dir: &Path) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    let conf = dir.join("containers.conf");
    fs::write(&conf, "[containers]\ndefault_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"]\n").unwrap();
    conf
}

/// Waits (up to `tries` × `pause`) until something listens on `addr`; whether it does.
pub fn wait_for_listener(addr: &str, tries: u32, pause: std::time::Duration) -> bool {
    for _ in 0..tries {
        if std::net::TcpStream::connect(addr).is_ok() {
            return true;
        }
        std::thread::sleep(pause);
    }
    false
}

/// The python fixture image (`fixtures/build.sh`), named `python:3.11` as the python
/// example's FROM asks.
pub fn load_python_base(store: &Path) {
    layers_ok(store, &["load", "-i", fixtures().join("python").to_str().unwrap()]);
    layers_ok(store, &["tag", "localhost/python", "python:3.11"]);
}

/// podman (the real client) with its store under `dir`, podman's ulimit workaround
/// (ANCHORS.md); run it with `--runtime runc` (crun refuses this machine's cgroup layout).
pub fn podman(dir: &Path, args: &[&str]) -> Output {
    let conf = containers_conf(dir);
    let runroot = format!("/run/layers-test-{}", std::process::id());
    Command::new("podman")
        .env("CONTAINERS_CONF", &conf)
        .arg("--root")
        .arg(dir.join("root"))
        .args(["--runroot", &runroot, "--storage-driver", "overlay"])
        .args(args)
        .output()
        .expect("podman (Debian package podman)")
}

/// `umoci unpack` of `layout:tag` into `bundle`; its rootfs. Run by a user, umoci's
/// `--rootless` mode (every file the user's), for both sides of a comparison alike.
pub fn umoci_unpack(layout: &Path, tag: &str, bundle: &Path) -> PathBuf {
    let rootless = (!rustix::process::geteuid().is_root()).then_some("--rootless");
    let out = Command::new("umoci")
        .arg("unpack")
        .args(rootless)
        .args(["--image", &format!("{}:{tag}", layout.display())])
        .arg(bundle)
        .output()
        .unwrap();
    assert!(out.status.success(), "umoci unpack: {}", stderr(&out));
    bundle.join("rootfs")
}

/// An OCI layout at `dir` with `n` small layers, tagged `deep`, written by
/// tests/support/deep_image.py (Python's tarfile).
pub fn deep_layout(dir: &Path, n: usize) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let st = Command::new("python3")
        .arg(repo().join("tests/support/deep_image.py"))
        .arg(dir)
        .arg(n.to_string())
        .arg("deep")
        .env("ARCH", arch)
        .status()
        .unwrap();
    assert!(st.success());
}

/// The layer dirs of a stored image, bottom first, read through `layers inspect`.
pub fn layer_dirs(store: &Path, image: &str) -> Vec<PathBuf> {
    layer_dirs_as(Mode::Root, store, image)
}

/// [`layer_dirs`] of a store of `mode`'s user.
pub fn layer_dirs_as(mode: Mode, store: &Path, image: &str) -> Vec<PathBuf> {
    let v: serde_json::Value = serde_json::from_str(&mode.ok(store, &["inspect", "--raw", image])).unwrap();
    v[0]["Config"]["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| store.join("layers").join(d.as_str().unwrap().trim_start_matches("sha256:")))
        .collect()
}

/// Runs layers, asserts success, returns its trimmed stdout.
pub fn layers_ok(store: &Path, args: &[&str]) -> String {
    let out = layers(store, args);
    assert!(out.status.success(), "layers {args:?}: {}", stderr(&out));
    stdout(&out).trim().to_string()
}

/// `tar -xpf TAR -C DIR` by GNU tar, owners by number and xattrs kept (DIR made).
pub fn gnu_untar(tar: &Path, dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    let st = Command::new("tar")
        .args(["--numeric-owner", "--xattrs", "--xattrs-include=*", "-xpf"])
        .arg(tar)
        .arg("-C")
        .arg(dir)
        .status()
        .unwrap();
    assert!(st.success(), "tar -xpf {}", tar.display());
}

/// `tar -C DIR -cf OUT .` by GNU tar: a rootfs tarball no code of ours wrote.
pub fn gnu_tar(dir: &Path, out: &Path) {
    let st = Command::new("tar").arg("-C").arg(dir).arg("-cf").arg(out).arg(".").status().expect("GNU tar");
    assert!(st.success(), "tar -C {} -cf {}", dir.display(), out.display());
}

/// A work dir and, in it, a store with the fixture images loaded.
pub fn store_with_fixtures() -> (tempfile::TempDir, PathBuf) {
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    load_fixtures(&store);
    (work, store)
}

/// Loads every fixture image (umoci's layout) into `store`.
pub fn load_fixtures(store: &Path) {
    layers_ok(store, &["load", "-i", fixtures().join("oci").to_str().unwrap()]);
}

/// A stored image as `layers inspect --raw` shows it (`Digest`, `Id`, `RepoTags`), by full name.
pub fn stored_image(store: &Path, name: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(&layers_ok(store, &["inspect", "--raw", name])).unwrap();
    let img = v.as_array().unwrap().iter().find(|i| i["RepoTags"].as_array().unwrap().iter().any(|t| t == name));
    img.unwrap_or_else(|| panic!("{name} in {v}")).clone()
}

/// The manifest digest of a stored image.
pub fn stored_manifest(store: &Path, name: &str) -> String {
    stored_image(store, name)["Digest"].as_str().unwrap().to_string()
}

/// A store with the fixture images, `localhost/layered` also named `busybox` (as the
/// quick start's pull names it), in a work dir for build contexts.
pub fn store_with_busybox() -> (tempfile::TempDir, PathBuf) {
    let (work, store) = store_with_fixtures();
    layers_ok(&store, &["tag", "localhost/layered", "busybox"]);
    (work, store)
}

pub fn build_context(work: &Path, name: &str, dockerfile: &str) -> PathBuf {
    let ctx = work.join(name);
    fs::create_dir_all(&ctx).unwrap();
    fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    ctx
}

/// Every file under `dir` with its content (symlinks as their target), for before/after comparisons.
pub fn files_with_contents(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            if m.is_dir() {
                stack.push(p);
                out.push((rel, "dir".into()));
            } else if m.file_type().is_symlink() {
                out.push((rel, format!("-> {}", fs::read_link(&p).unwrap().display())));
            } else {
                out.push((rel, fs::read_to_string(&p).unwrap_or_default()));
            }
        }
    }
    out.sort();
    out
}

/// Writes `bytes` as a blob of the OCI layout at `dir`; returns its digest.
pub fn layout_blob(dir: &Path, bytes: &[u8]) -> String {
    let d = layers_store::Digest::of(bytes);
    fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    fs::write(dir.join("blobs/sha256").join(d.hex()), bytes).unwrap();
    d.to_string()
}

/// Runs `sh -c SCRIPT` in a throwaway container of IMAGE; asserts success, returns stdout.
pub fn run_in(store: &Path, image: &str, script: &str) -> String {
    let out = layers(store, &["run", "--rm", image, "sh", "-c", script]);
    assert!(out.status.success(), "{script}: {}", stderr(&out));
    stdout(&out)
}

/// `layers ARGS` on a pty of ROWS x COLS driven by `steps` (see tests/support/pty_harness.py).
pub fn on_a_terminal(store: &Path, size: (u16, u16), steps: &[&str], args: &[&str]) -> String {
    Mode::Root.on_a_terminal(store, size, steps, args)
}

/// `layers run -d ARGS`, which must succeed: the container's ID.
pub fn detached(store: &Path, args: &[&str]) -> String {
    let mut full = vec!["run", "-d"];
    full.extend_from_slice(args);
    layers_ok(store, &full)
}

/// Every container's name (`ps -a`), sorted.
pub fn names(store: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        layers_ok(store, &["ps", "-a", "--format", "{{.Names}}"]).lines().map(str::to_string).collect();
    v.sort();
    v
}

/// Runs `cmd` with `input` on its stdin, to the end.
pub fn feed(mut cmd: std::process::Command, input: &[u8]) -> std::process::Output {
    use std::process::Stdio;
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    {
        use std::io::Write;
        // A command that ended (or failed) before reading all of it: its output says why.
        match child.stdin.take().unwrap().write_all(input) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            r => r.unwrap(),
        }
    }
    child.wait_with_output().unwrap()
}

/// A copy of an example's context (`Dockerfile-examples/NAME`) at `work/NAME`, free to change.
pub fn example_context(work: &Path, name: &str) -> PathBuf {
    let dest = work.join(name);
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(repo().join("Dockerfile-examples").join(name))
        .arg(&dest)
        .status()
        .unwrap();
    assert!(status.success());
    dest
}
