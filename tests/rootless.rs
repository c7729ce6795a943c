//! Rootless, for real: commands run as unprivileged users (`common::modes`: one with a
//! subordinate ID range, one without), in the user namespace `layers` enters, and
//! their results are held against GNU tar's extraction and against the same commands
//! as root.

// Tests make and inspect their fixtures by path (clippy.toml bans that in the code under test).
#![allow(clippy::disallowed_methods)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

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
    let ok = Command::new("tar").arg("--numeric-owner").arg("-C").arg(&root).arg("-cf").arg(&tar).arg(".").status();
    assert!(ok.unwrap().success());
    std::fs::remove_dir_all(&root).unwrap();
    tar
}

/// What `layers mount IMAGE` shows of `image`, listed where the mount is seen: from
/// inside `layers unshare` rootless.
fn listed_in_namespace(mode: Mode, store: &Path, image: &str) -> String {
    let script = format!("cd \"$({} --root {} mount {image})\" && {LIST}", layers_bin().display(), store.display());
    match mode {
        Mode::Root => stdout(&Command::new("sh").args(["-c", &script]).output().unwrap()),
        Mode::Rootless(_) => mode.ok(store, &["unshare", "sh", "-c", &script]),
    }
}

#[test]
fn an_import_seen_from_the_users_namespace_is_gnu_tars_extraction_as_root() {
    if !need_root("rootless import") {
        return;
    }
    let mode = Mode::rootless();
    let work = mode.work();
    let tar = rootfs_tar(work.path());
    mode.give(&tar);
    let store = work.path().join("store");
    mode.ok(&store, &["import", "-q", tar.to_str().unwrap(), "owners"]);
    let seen = listed_in_namespace(mode, &store, "owners");

    let extracted = tempfile::tempdir().unwrap();
    let ok_tar =
        Command::new("tar").args(["--numeric-owner", "-xpf"]).arg(&tar).arg("-C").arg(extracted.path()).status();
    assert!(ok_tar.unwrap().success());
    let want = Command::new("sh").args(["-c", LIST]).current_dir(extracted.path()).output().unwrap();
    assert_eq!(seen, stdout(&want), "rootless import, seen in the namespace, against GNU tar as root");

    // On the host the same files belong to the user's subordinate range (1000 → first + 999).
    let uid = user(MAPPED.0, None);
    let layer = std::fs::read_dir(store.join("layers")).unwrap().next().unwrap().unwrap().path();
    let notes = std::fs::metadata(layer.join("home/alice/notes")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&notes), first_subuid(MAPPED.0) + 999);
    let motd = std::fs::metadata(layer.join("etc/motd")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&motd), uid, "container root is the user");
    // Outside `layers unshare`, the path `mount` prints comes with a note that says where it works.
    let outside = mode.run(&store, &["mount", "owners"]);
    assert!(stderr(&outside).contains("use the path in `layers unshare`"), "{}", stderr(&outside));
    mode.ok(&store, &["rm", "-f", "owners-working-container"]);
    let problems = mode.ok(&store, &["fsck"]);
    assert!(problems.contains("store is consistent"), "fsck of the rootless store: {problems}");
}

#[test]
fn whiteouts_and_opaque_dirs_hide_lower_files_through_userxattr_as_for_root() {
    if !need_root("rootless whiteouts") {
        return;
    }
    let rootless = Mode::rootless();
    let work = rootless.work();
    // The fixture's `layered` image deletes files and replaces a dir in upper layers
    // (umoci wrote the whiteouts): both modes must show the same merged tree.
    let mut seen = Vec::new();
    for mode in [Mode::Root, rootless] {
        let store = mode.fixture_store_in(work.path(), &format!("store-{}", mode.name()));
        seen.push(listed_in_namespace(mode, &store, "localhost/layered"));
    }
    // Device nodes are the one difference: no process in a user namespace may make them.
    let devices = |l: &&str| matches!(l.split(' ').nth(4), Some("c" | "b"));
    let (root_devices, root_rest): (Vec<&str>, Vec<&str>) = seen[0].lines().partition(devices);
    assert_eq!(root_devices, ["./dev/null 0 0 644 c 0", "./dev/sda 0 0 644 b 0"]);
    assert_eq!(root_rest, seen[1].lines().collect::<Vec<_>>(), "the layered image merged, as root and rootless");
    assert!(root_rest.len() > 50, "a real tree was listed: {}", seen[0]);
    // Whited out (umoci's and GNU tar's whiteouts), hidden by an opaque dir, replaced.
    for gone in ["./data/gone ", "./etc/motd ", "./data/replace/old-file ", "./data/keep/file ", "./bin/vi "] {
        assert!(!seen[1].contains(gone), "{gone}is hidden rootless");
    }
    assert!(seen[1].contains("./data/keep/fresh ") && seen[1].contains("./opt/app/config/README "));
}

#[test]
fn a_rootless_container_is_root_in_its_namespace_pid_1_and_keeps_exit_codes() {
    if !need_root("rootless run") {
        return;
    }
    let mode = Mode::rootless();
    let (work, store) = mode.store_with_fixtures();
    let vol = work.path().join("vol");
    std::fs::create_dir(&vol).unwrap();
    mode.give(&vol);
    let v = format!("{}:/v:ro", vol.display());
    let script = "id -u; echo $$; touch /v/x 2>&1; exit 3";
    let out = mode.run(&store, &["run", "--rm", "-v", &v, "localhost/layered", "sh", "-c", script]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[..2], ["0", "1"], "{text}");
    assert!(text.contains("Read-only file system"), "ro volume: {text}");
    assert_eq!(mode.ok(&store, &["ps", "-a", "-q"]), "", "--rm leaves nothing");
    // Limits need a delegated cgroup, which this machine's users do not have: refused by name.
    let limited = mode.run(&store, &["run", "--rm", "-m", "20m", "localhost/layered", "true"]);
    assert_eq!(limited.status.code(), Some(125));
    assert!(stderr(&limited).contains("--memory cannot be applied: rootless"), "{}", stderr(&limited));
}

#[test]
fn a_detached_rootless_container_is_running_takes_exec_and_stops_on_its_signal() {
    if !need_root("rootless run -d") {
        return;
    }
    let mode = Mode::rootless();
    let (_work, store) = mode.store_with_fixtures();
    let script = "echo started; trap 'echo got-term; exit 7' TERM; sleep 100 & wait";
    mode.ok(&store, &["run", "-d", "--name", "d", "localhost/layered", "sh", "-c", script]);
    assert_eq!(mode.ok(&store, &["ps", "--format", "{{.Names}}"]), "d\n", "running as soon as run -d returns");
    assert_eq!(
        mode.ok(&store, &["exec", "d", "sh", "-c", "id -u; cat /proc/1/cmdline | tr '\\0' ' '"]),
        "0\nsh -c echo started; trap 'echo got-term; exit 7' TERM; sleep 100 & wait "
    );
    assert!(mode.ok(&store, &["top", "d"]).contains("sleep 100"), "top lists the PID namespace without a cgroup");
    mode.ok(&store, &["stop", "-t", "5", "d"]);
    assert_eq!(mode.ok(&store, &["wait", "d"]), "7\n");
    assert_eq!(mode.ok(&store, &["logs", "d"]), "started\ngot-term\n");
    mode.ok(&store, &["rm", "d"]);
}

#[test]
fn a_killed_pause_process_is_replaced_in_the_namespace_running_containers_hold() {
    if !need_root("rootless pause process killed") {
        return;
    }
    // A user of its own: killing the pause process must not disturb other tests' users.
    user("layers-rl-pause", Some("600000-665535"));
    let mode = Mode::Rootless("layers-rl-pause");
    let kill_pause = || Command::new("pkill").args(["-KILL", "-u", "layers-rl-pause", "-x", "layers-pause"]).status();
    // A pause process a previous run left is not this test's to count.
    let _ = kill_pause();
    let (_work, store) = mode.store_with_fixtures();
    mode.ok(&store, &["run", "-d", "--name", "d", "localhost/layered", "sleep", "100"]);
    // Live pause processes (zombies left where init does not reap are not counted).
    let pause = || {
        let ps = Command::new("ps").args(["-u", "layers-rl-pause", "-o", "pid=,stat=,comm="]).output().unwrap();
        let listed = stdout(&ps);
        let live = listed.lines().filter(|l| l.ends_with(" layers-pause") && !l.contains(" Z"));
        live.collect::<Vec<_>>().join("\n")
    };
    let first = pause();
    assert_eq!(first.lines().count(), 1, "one pause process: {first}");
    assert!(kill_pause().unwrap().success());
    // The next command's namespace is the container's: exec reaches it, stop stops it.
    assert_eq!(mode.ok(&store, &["exec", "d", "cat", "/etc/hostname"]).len(), 13, "exec after the pause process died");
    let second = pause();
    assert!(second.lines().count() == 1 && second != first, "a new pause process: {second}");
    mode.ok(&store, &["stop", "-t", "1", "d"]);
    assert_eq!(mode.ok(&store, &["ps", "-q"]), "");
    mode.ok(&store, &["rm", "d"]);
}

#[test]
fn a_build_step_run_rootless_makes_the_layer_root_makes() {
    if !need_root("rootless build") {
        return;
    }
    let rootless = Mode::rootless();
    let work = rootless.work();
    let ctx = work.path().join("ctx");
    std::fs::create_dir(&ctx).unwrap();
    // Every time the step sets is fixed, so its layer depends only on what it wrote:
    // owners from the image's view (2:3, not the host's), a setuid bit, modes.
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM localhost/layered\nRUN mkdir -p /data/sub && echo hi > /data/sub/f && chown 2:3 /data/sub/f \
         && chmod 4755 /data/sub/f && touch -d @0 /data/sub/f /data/sub /data /\n",
    )
    .unwrap();
    rootless.give(&ctx);
    let mut layers_of = Vec::new();
    for mode in [Mode::Root, rootless] {
        let store = mode.fixture_store_in(work.path(), &format!("store-{}", mode.name()));
        mode.ok(&store, &["build", "-q", "-t", "step", ctx.to_str().unwrap()]);
        layers_of.push(mode.ok(&store, &["inspect", "--format", "{{json .RootFS.Layers}}", "step"]));
    }
    assert_eq!(layers_of[0], layers_of[1], "the same diffIDs as root and rootless");
}

#[test]
fn a_user_without_a_subordinate_range_runs_with_its_own_id_and_a_warning() {
    if !need_root("rootless single-ID run") {
        return;
    }
    user(SINGLE, None);
    let mode = Mode::Rootless(SINGLE);
    let reg = Registry::start();
    reg.push(&fixtures().join("oci"), "layered", "fixture/layered:v1", &[]);
    let work = mode.work();
    let store = work.path().join("store");
    let image = format!("{}/fixture/layered:v1", reg.addr);
    let pulled = mode.run(&store, &["pull", "-q", &image]);
    assert!(pulled.status.success(), "{}", stderr(&pulled));
    assert!(stderr(&pulled).contains("only your own user ID mapped"), "{}", stderr(&pulled));
    let out = mode.run(&store, &["run", "--rm", &image, "id", "-u"]);
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
    let mode = Mode::rootless();
    let work = mode.work();
    let store = work.path().join("root-store");
    layers_ok(&store, &["images"]);
    mode.give(&store);
    let out = mode.run(&store, &["images"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("made by root"), "{}", stderr(&out));
}

#[test]
fn one_users_store_is_closed_to_another_user() {
    if !need_root("rootless isolation between users") {
        return;
    }
    let owner = Mode::rootless();
    user(SINGLE, None);
    let other = Mode::Rootless(SINGLE);
    let work = owner.work();
    // The other user may enter the work dir (the store beneath is the owner's, 0700).
    std::fs::set_permissions(work.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let store = work.path().join("store");
    owner.ok(&store, &["load", "-q", "-i", &owner.fixtures_in(work.path())]);
    let before = owner.ok(&store, &["images", "-q"]);
    for args in
        [&["images"][..], &["rmi", "-f", "localhost/layered"], &["gc"], &["run", "--rm", "localhost/layered", "true"]]
    {
        let out = other.run(&store, args);
        assert!(!out.status.success(), "{args:?} by another user: {}", stdout(&out));
        assert!(
            stderr(&out).contains("Permission denied") || stderr(&out).contains("not by this user"),
            "{}",
            stderr(&out)
        );
    }
    assert_eq!(owner.ok(&store, &["images", "-q"]), before, "the owner's store is as it was");
}

#[test]
fn a_rootless_container_cannot_write_what_its_user_cannot() {
    if !need_root("rootless container and host files") {
        return;
    }
    let mode = Mode::rootless();
    let (work, store) = mode.store_with_fixtures();
    // Root's file, readable by all, writable by root only; and the host's /etc.
    let host = work.path().join("roots");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("file"), "root's\n").unwrap();
    let v = format!("{}:/h", host.display());
    let script = "cat /h/file; echo x >> /h/file || echo refused; touch /h/new || echo refused; \
                  cat /etc-host/shadow >/dev/null 2>&1 || echo no-shadow; id -u";
    let out =
        mode.run(&store, &["run", "--rm", "-v", &v, "-v", "/etc:/etc-host", "localhost/layered", "sh", "-c", script]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "root's\nrefused\nrefused\nno-shadow\n0\n", "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(host.join("file")).unwrap(), "root's\n");
    assert!(!host.join("new").exists());
}

#[test]
fn a_rootless_container_gets_a_network_of_its_own_from_slirp4netns_or_pasta() {
    if !need_root("rootless --network slirp4netns|pasta") {
        return;
    }
    let mode = Mode::rootless();
    let (work, store) = mode.store_with_fixtures();
    // A server on the host's loopback, which both programs map to their gateway address.
    let site = work.path().join("site");
    std::fs::create_dir(&site).unwrap();
    std::fs::write(site.join("index.html"), "hello from the host\n").unwrap();
    let port = free_port();
    let mut server = Command::new("python3")
        .args(["-m", "http.server", &port.to_string(), "--bind", "127.0.0.1"])
        .current_dir(&site)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_for_listener(&format!("127.0.0.1:{port}"), 500, std::time::Duration::from_millis(10)));
    let fetch = format!("wget -q -O - http://$gw:{port}/index.html");
    for (net, device, open) in
        [("slirp4netns", "tap0", "slirp4netns:allow_host_loopback=true"), ("pasta", "eth0", "pasta:--map-gw")]
    {
        // Its interface with an address and a default route; the host's loopback closed
        // behind the gateway address (Podman's default), and open when asked for.
        let script = format!(
            "ip -o -4 addr show {device} | grep -q inet && echo addressed; \
             gw=$(ip route | awk '/default/ {{print $3}}'); nc -w 2 $gw {port} </dev/null || echo closed"
        );
        let out = mode.ok(&store, &["run", "--rm", "--network", net, "localhost/layered", "sh", "-c", &script]);
        assert_eq!(out, "addressed\nclosed\n", "--network {net}");
        let script = format!("gw=$(ip route | awk '/default/ {{print $3}}'); {fetch}");
        let out = mode.ok(&store, &["run", "--rm", "--network", open, "localhost/layered", "sh", "-c", &script]);
        assert_eq!(out, "hello from the host\n", "--network {open}");
        assert!(
            !Command::new("pgrep").args(["-u", MAPPED.0, "-x", net]).status().unwrap().success(),
            "{net} ends with its container"
        );
    }
    let refused = mode.run(&store, &["run", "--rm", "--network", "slirp4netns:cidr=10.9.0.0/24", "localhost/layered"]);
    assert!(stderr(&refused).contains("`cidr=10.9.0.0/24` is not supported"), "{}", stderr(&refused));
    // As root: slirp4netns (sandboxed) serves too; pasta, which would run as root, is refused.
    let (_root_work, root_store) = Mode::Root.store_with_fixtures();
    let script = format!("ip -o -4 addr show tap0 | grep -q inet && {fetch}");
    let script = format!("gw=10.0.2.2; {script}");
    let open = "slirp4netns:allow_host_loopback=true";
    let out = Mode::Root.ok(&root_store, &["run", "--rm", "--network", open, "localhost/layered", "sh", "-c", &script]);
    assert_eq!(out, "hello from the host\n");
    let refused = Mode::Root.run(&root_store, &["run", "--rm", "--network", "pasta", "localhost/layered", "true"]);
    assert!(stderr(&refused).contains("--network pasta is for rootless containers"), "{}", stderr(&refused));
    let _ = server.kill();
    let _ = server.wait();
}

#[test]
fn a_commit_made_rootless_holds_the_entries_whiteouts_and_owners_a_root_commit_holds() {
    if !need_root("rootless commit") {
        return;
    }
    let rootless = Mode::rootless();
    let work = rootless.work();
    let script = "echo added > /added.txt; rm /etc/app.conf; rm -rf /opt/app; \
                  rm -rf /data/keep && mkdir /data/keep && echo replaced > /data/keep/other; \
                  chown 123:456 /etc/group; chmod 600 /etc/passwd; mkfifo /newfifo";
    let mut listings = Vec::new();
    for mode in [Mode::Root, rootless] {
        let store = mode.fixture_store_in(work.path(), &format!("store-{}", mode.name()));
        mode.ok(&store, &["run", "--name", "rt", "localhost/layered", "sh", "-c", script]);
        mode.ok(&store, &["commit", "-q", "rt", "roundtrip:v1"]);
        // The new layer, as GNU tar lists it: type and mode, owners, size, name (no times).
        let raw: serde_json::Value =
            serde_json::from_str(&mode.ok(&store, &["inspect", "--raw", "localhost/roundtrip:v1"])).unwrap();
        let manifest = raw[0]["Digest"].as_str().unwrap().to_string();
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(store.join("blobs/sha256").join(&manifest[7..])).unwrap()).unwrap();
        let top = &m["layers"].as_array().unwrap().last().unwrap()["digest"].as_str().unwrap()[7..];
        let out = Command::new("tar")
            .args(["--numeric-owner", "-tvzf"])
            .arg(store.join("blobs/sha256").join(top))
            .output()
            .unwrap();
        assert!(out.status.success());
        let mut lines: Vec<String> = stdout(&out)
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                format!("{} {} {} {}", f[0], f[1], f[2], f[5..].join(" "))
            })
            .collect();
        lines.sort();
        listings.push(lines.join("\n"));
        mode.ok(&store, &["rm", "rt"]);
        assert!(mode.ok(&store, &["fsck"]).contains("store is consistent"));
    }
    assert_eq!(listings[0], listings[1], "the committed layer, as root and rootless");
    for want in ["data/keep/.wh..wh..opq", "etc/.wh.app.conf", "opt/.wh.app", "123/456", "newfifo"] {
        assert!(listings[1].contains(want), "{want} in\n{}", listings[1]);
    }
}

#[test]
fn exports_and_saves_made_rootless_read_back_with_gnu_tar_and_umoci() {
    if !need_root("rootless export and save") {
        return;
    }
    let mode = Mode::rootless();
    let (work, store) = mode.store_with_fixtures();
    // export, read by GNU tar as root, against umoci's unpack of the fixture: the same
    // tree with the image's owners, but for the two device nodes a user namespace leaves out.
    let tar = work.path().join("layered.tar");
    mode.ok(&store, &["export", "localhost/layered", "-o", tar.to_str().unwrap()]);
    let extracted = work.path().join("gnu");
    gnu_untar(&tar, &extracted);
    let rootfs = umoci_unpack(&fixtures().join("oci"), "layered", &work.path().join("umoci"));
    let mut diffs = compare_trees(&extracted, &rootfs, Mtimes::Files);
    diffs.sort();
    assert_eq!(diffs.len(), 2, "{diffs:#?}");
    assert!(diffs[0].ends_with("/dev/null") && diffs[1].ends_with("/dev/sda"), "{diffs:#?}");

    // save as an OCI layout: the stored blobs, byte for byte; umoci unpacks it; a fresh
    // rootless store loads the same manifest.
    let layout = work.path().join("layout");
    mode.ok(&store, &["save", "--format", "oci", "-o", &format!("{}/", layout.display()), "localhost/layered"]);
    for e in std::fs::read_dir(layout.join("blobs/sha256")).unwrap() {
        let e = e.unwrap();
        let stored = std::fs::read(store.join("blobs/sha256").join(e.file_name())).unwrap();
        assert_eq!(std::fs::read(e.path()).unwrap(), stored, "blob {:?} written as stored", e.file_name());
    }
    umoci_unpack(&layout, "latest", &work.path().join("umoci-saved"));
    let fresh = work.path().join("fresh");
    mode.ok(&fresh, &["load", "-q", "-i", layout.to_str().unwrap()]);
    let digest =
        |s: &Path| mode.ok(s, &["inspect", "--format", "{{.Id}} {{json .RootFS.Layers}}", "localhost/layered"]);
    assert_eq!(digest(&fresh), digest(&store));
    assert!(mode.ok(&fresh, &["fsck"]).contains("store is consistent"));
}
