//! Volumes and copies: named and anonymous volumes filled from the image, `cp` both
//! ways, holes and FIFOs kept, no symlink in a container reaching the host.

// Tests make and inspect their fixtures by path (clippy.toml bans that in the code under test).
#![allow(clippy::disallowed_methods)]

mod common;

use common::*;

/// Issue 26: filling a new volume from the image, and `cp`, wrote a 4 GiB sparse file
/// out as 4 GiB of zeros; a FIFO in the image's directory failed the run. Holes stay
/// holes and a FIFO is made anew, as Docker's copy makes one.
#[test]
fn volume_fill_and_cp_keep_holes_and_fifos() {
    use std::fs;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    if !need_root("volume_fill_and_cp_keep_holes_and_fifos") {
        return;
    }
    let (work, store) = store_with_busybox();
    let ctx = build_context(
        work.path(),
        "holes",
        "FROM busybox\nRUN mkdir -p /data && truncate -s 4G /data/sparse && echo end >> /data/sparse && mkfifo /data/pipe\n",
    );
    layers_ok(&store, &["build", "-q", "-t", "holes", ctx.to_str().unwrap()]);
    let t = std::time::Instant::now();
    let ls = layers_ok(&store, &["run", "--rm", "-v", "filled:/data", "holes", "ls", "-l", "/data"]);
    assert!(ls.contains("sparse") && ls.contains("pipe"), "{ls}");
    let filled = store.join("volumes/filled/_data");
    let m = fs::metadata(filled.join("sparse")).unwrap();
    assert_eq!(m.len(), (4u64 << 30) + 4);
    assert!(m.blocks() * 512 < 1 << 20, "the volume's copy kept its holes: {} blocks", m.blocks());
    assert!(fs::symlink_metadata(filled.join("pipe")).unwrap().file_type().is_fifo());
    assert!(t.elapsed() < std::time::Duration::from_secs(20), "{:?}", t.elapsed());
    // cp out of a container: the same.
    layers_ok(&store, &["create", "--name", "holder", "holes"]);
    let out = work.path().join("out");
    fs::create_dir(&out).unwrap();
    layers_ok(&store, &["cp", "holder:/data/sparse", out.to_str().unwrap()]);
    let m = fs::metadata(out.join("sparse")).unwrap();
    assert_eq!(m.len(), (4u64 << 30) + 4);
    assert!(m.blocks() * 512 < 1 << 20, "cp kept its holes: {} blocks", m.blocks());
    layers_ok(&store, &["rm", "holder"]);
}

both_modes!(
    named_volumes_outlive_containers_are_filled_from_the_image_and_mount_flags_parse_as_dockers,
    named_volumes_outlive_containers_are_filled_from_the_image_and_mount_flags_parse_as_dockers_rootless,
    named_volumes
);

fn named_volumes(mode: Mode) {
    let layers = |store: &std::path::Path, args: &[&str]| mode.run(store, args);
    let layers_ok = |store: &std::path::Path, args: &[&str]| mode.layers_ok(store, args);
    let (work, store) = mode.store_with_fixtures();
    assert_eq!(layers_ok(&store, &["volume", "create", "--label", "team=a", "data"]), "data");
    assert_eq!(layers_ok(&store, &["volume", "ls", "-q"]), "data");
    let mountpoint = layers_ok(
        &store,
        &["volume", "inspect", "--format", "{{.Mountpoint}} {{.Driver}} {{index .Labels \"team\"}}", "data"],
    );
    assert_eq!(mountpoint, format!("{} local a", store.join("volumes/data/_data").display()));
    // Written by one container, read by the next.
    layers_ok(&store, &["run", "--rm", "-v", "data:/data", "localhost/layered", "sh", "-c", "echo kept > /data/f"]);
    assert_eq!(
        layers_ok(&store, &["run", "--rm", "-v", "data:/mnt:ro,z", "localhost/layered", "cat", "/mnt/f"]),
        "kept"
    );
    let ro = layers(&store, &["run", "--rm", "-v", "data:/mnt:ro", "localhost/layered", "touch", "/mnt/g"]);
    assert_ne!(ro.status.code(), Some(0), "read-only");

    // A new volume where the image has a directory starts with that directory's content.
    let etc = layers_ok(&store, &["run", "--rm", "-v", "etc-copy:/etc", "localhost/layered", "cat", "/etc/passwd"]);
    assert!(etc.contains("root:"), "{etc}");
    assert!(store.join("volumes/etc-copy/_data/passwd").exists());
    // nocopy: left empty.
    let empty = layers_ok(&store, &["run", "--rm", "-v", "bare:/etc:nocopy", "localhost/layered", "ls", "-A", "/etc"]);
    assert_eq!(empty, "");

    // In use: refused; its container gone: removed.
    layers_ok(
        &store,
        &["create", "--name", "user", "-v", "data:/data", "--mount", "type=tmpfs,target=/t", "localhost/layered"],
    );
    // inspect and ps name the volume as a volume (Docker's shape), the --mount too.
    let m = layers_ok(
        &store,
        &[
            "inspect",
            "--format",
            "{{range .Mounts}}{{.Type}}:{{.Destination}} {{end}}{{(index .Mounts 0).Name}}",
            "user",
        ],
    );
    assert_eq!(m, "volume:/data tmpfs:/t data");
    assert_eq!(layers_ok(&store, &["ps", "-a", "--filter", "name=user", "--format", "{{.Mounts}}"]), "data");
    let busy = layers(&store, &["volume", "rm", "data"]);
    assert_eq!(busy.status.code(), Some(1));
    // Docker names the containers using it ("volume is in use - [ID]"); we give the name too.
    assert!(stderr(&busy).contains("volume is in use by container user ("), "{}", stderr(&busy));
    layers_ok(&store, &["rm", "user"]);
    assert_eq!(layers_ok(&store, &["volume", "rm", "data"]), "data");
    assert_eq!(layers(&store, &["volume", "rm", "data"]).status.code(), Some(1), "gone");
    assert_eq!(layers_ok(&store, &["volume", "rm", "-f", "data"]), "data", "-f: a missing one is no error");
    assert!(!store.join("volumes/data").exists());

    // -v CONTAINER: an anonymous volume, which `volume prune` takes once unused; named ones need -a.
    layers_ok(&store, &["create", "--name", "anon", "-v", "/scratch", "localhost/layered"]);
    let vols = layers_ok(&store, &["volume", "ls", "-q", "--filter", "dangling=false"]);
    assert_eq!(vols.len(), 64, "{vols}");
    layers_ok(&store, &["rm", "anon"]);
    let pruned = layers_ok(&store, &["volume", "prune", "-f"]);
    assert!(pruned.contains(&vols) && !pruned.contains("etc-copy"), "{pruned}");
    let all = layers_ok(&store, &["volume", "prune", "-a", "-f"]);
    assert!(all.contains("etc-copy") && all.contains("bare"), "{all}");

    // --mount: volume, tmpfs with a size, bind (its source must exist); unknown options named.
    let host = work.path().join("hostdir");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("h"), "from host").unwrap();
    mode.give(&host);
    let out = layers_ok(
        &store,
        &[
            "run",
            "--rm",
            "--mount",
            "type=volume,source=m1,target=/v",
            "--mount",
            "type=tmpfs,target=/t,tmpfs-size=1m",
            "--mount",
            &format!("type=bind,src={},dst=/h,readonly", host.display()),
            "localhost/layered",
            "sh",
            "-c",
            "touch /v/x && cat /h/h && df -k /t | tail -1",
        ],
    );
    assert!(out.starts_with("from host") && out.contains(" 1024 "), "{out}");
    for (flag, says) in [
        ("type=bind,source=/no/such/dir,target=/x", "bind source path does not exist"),
        ("type=volume,source=v,target=/x,bind-propagation=shared", "unsupported option \"bind-propagation\""),
        ("type=npipe,target=/x", "type \"npipe\" is not supported"),
    ] {
        let out = layers(&store, &["run", "--rm", "--mount", flag, "localhost/layered", "true"]);
        assert_eq!(out.status.code(), Some(125), "{flag}");
        assert!(stderr(&out).contains(says), "{flag}: {}", stderr(&out));
    }
    let rel = layers(&store, &["run", "--rm", "-v", "data/sub:/data", "localhost/layered", "true"]);
    assert_eq!(rel.status.code(), Some(125));
    assert!(stderr(&rel).contains("is a relative path: give it as ./data/sub"), "{}", stderr(&rel));
    assert_eq!(stderr(&rel).lines().count(), 1);
    // Docker 23+: `./data` is made absolute against the current directory.
    let cwd = work.path().join("cwd");
    std::fs::create_dir(&cwd).unwrap();
    mode.give(&cwd);
    let dotted = mode
        .command(&store)
        .current_dir(&cwd)
        .args(["run", "--rm", "-v", "./data/../out:/out", "localhost/layered", "sh", "-c", "echo hi > /out/f"])
        .output()
        .unwrap();
    assert!(dotted.status.success(), "{}", stderr(&dotted));
    assert_eq!(std::fs::read_to_string(cwd.join("out/f")).unwrap(), "hi\n");
}

both_modes!(
    cp_copies_both_ways_and_no_symlink_in_the_container_reaches_the_host,
    cp_copies_both_ways_and_no_symlink_in_the_container_reaches_the_host_rootless,
    cp_both_ways
);

fn cp_both_ways(mode: Mode) {
    let layers = |store: &std::path::Path, args: &[&str]| mode.run(store, args);
    let layers_ok = |store: &std::path::Path, args: &[&str]| mode.layers_ok(store, args);
    let detached = |store: &std::path::Path, args: &[&str]| mode.ok(store, &[&["run", "-d"], args].concat());
    let (work, store) = mode.store_with_fixtures();
    let out_dir = work.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    mode.give(&out_dir);
    // A host file the container must never reach, and the traps an image could hold.
    let marker = format!("layers-cp-marker-{}-{}", std::process::id(), mode.name());
    std::fs::write(format!("/tmp/{marker}"), "HOST").unwrap();
    let traps = "mkdir -p /data && echo inside > /data/f && ln -s / /evil && ln -s ../../../../../.. /data/up && ln -s /tmp /data/tmp";
    let out = layers(&store, &["run", "--name", "s", "localhost/layered", "sh", "-c", traps]);
    assert!(out.status.success(), "{}", stderr(&out));
    let running = detached(&store, &["--name", "r", "localhost/layered", "sh", "-c", &format!("{traps}; sleep 100")]);
    std::thread::sleep(std::time::Duration::from_millis(300));

    for c in ["s", "r"] {
        // Out: a file, a directory (into an existing dir, and as a new name).
        layers_ok(&store, &["cp", &format!("{c}:/data/f"), out_dir.to_str().unwrap()]);
        assert_eq!(std::fs::read_to_string(out_dir.join("f")).unwrap(), "inside\n");
        std::fs::remove_file(out_dir.join("f")).unwrap();
        layers_ok(&store, &["cp", &format!("{c}:/data"), out_dir.join("copy").to_str().unwrap()]);
        assert_eq!(std::fs::read_to_string(out_dir.join("copy/f")).unwrap(), "inside\n");
        assert_eq!(std::fs::read_link(out_dir.join("copy/evil")).ok(), None);
        assert!(
            std::fs::symlink_metadata(out_dir.join("copy/up")).unwrap().file_type().is_symlink(),
            "links copied as links"
        );
        std::fs::remove_dir_all(out_dir.join("copy")).unwrap();
        // Through every symlink, absolute or `..`: the container's /tmp, not the host's.
        for through in ["/evil/tmp", "/data/up/tmp", "/data/tmp"] {
            let got =
                layers(&store, &["cp", &format!("{c}:{through}/{marker}"), out_dir.join("stolen").to_str().unwrap()]);
            assert_eq!(got.status.code(), Some(1), "{c}: {through} reached the host");
            assert!(!out_dir.join("stolen").exists());
        }
        // In: through the same symlinks, the file lands in the container.
        let src = work.path().join("in.txt");
        std::fs::write(&src, "from host").unwrap();
        mode.give(&src);
        for (i, through) in ["/evil/tmp", "/data/up/tmp", "/data/tmp"].iter().enumerate() {
            let name = format!("{marker}-in-{c}-{i}");
            layers_ok(&store, &["cp", src.to_str().unwrap(), &format!("{c}:{through}/{name}")]);
            assert!(
                !std::path::Path::new(&format!("/tmp/{name}")).exists(),
                "{c}: written on the host through {through}"
            );
        }
    }
    let diff = layers_ok(&store, &["diff", "s"]);
    assert!(diff.contains(&format!("A /tmp/{marker}-in-s-0")), "{diff}");
    assert_eq!(layers_ok(&store, &["exec", running.trim(), "cat", &format!("/tmp/{marker}-in-r-2")]), "from host");
    assert_eq!(std::fs::read_to_string(format!("/tmp/{marker}")).unwrap(), "HOST");
    std::fs::remove_file(format!("/tmp/{marker}")).unwrap();
    layers_ok(&store, &["rm", "-f", "r"]);
}
