//! `layers build` on the real kernel: the examples build and run, the cache hits and
//! misses where it should, whiteouts and opaque dirs land in our own layers, builds
//! are reproducible under SOURCE_DATE_EPOCH, and hostile contexts stay contained.

// Tests make and inspect their fixtures by path (clippy.toml bans that in the code under test).
#![allow(clippy::disallowed_methods)]

mod common;

use std::fs;
use std::path::Path;
use std::process::Output;

use common::*;

fn build(store: &Path, args: &[&str]) -> Output {
    let mut full = vec!["build"];
    full.extend_from_slice(args);
    layers(store, &full)
}

/// Each step's instruction and its outcome (`CACHED` or `BUILT`), from the progress lines.
fn steps(out: &Output) -> Vec<(String, &'static str)> {
    let err = stderr(out);
    let mut steps: Vec<(String, &'static str)> = Vec::new();
    for line in err.lines() {
        if let Some(rest) = line.strip_prefix("STEP ") {
            let text = rest.split_once(": ").map_or(rest, |(_, t)| t).to_string();
            steps.push((text, "-"));
        } else if line.starts_with("--> CACHED") {
            steps.last_mut().expect("a step before its outcome").1 = "CACHED";
        } else if line.starts_with("--> ") {
            steps.last_mut().expect("a step before its outcome").1 = "BUILT";
        }
    }
    steps
}

fn image_id(out: &Output) -> String {
    assert!(out.status.success(), "build failed: {}", stderr(out));
    stdout(out).trim().to_string()
}

#[test]
fn the_examples_build_and_run() {
    if !need_root("the_examples_build_and_run") {
        return;
    }
    let (work, store) = store_with_busybox();
    load_python_base(&store);
    for (name, want) in [
        ("python-app", "{\"python\": \"3.11\", \"top\": [[\"layers\", 3], [\"a\", 2], [\"layer\", 2]]}\n"),
        ("multistage", "hello from layers, built in stages\n"),
        ("whiteouts", "/demo:\nnew\n"),
        ("args-env-heredoc", "hello from the here-document\nliteral $HOME stays: /root\ncolor=blue\n65534\n/srv/app\n"),
    ] {
        let ctx = example_context(work.path(), name);
        let out = build(&store, &["-t", name, ctx.to_str().unwrap()]);
        image_id(&out);
        let run = layers(&store, &["run", "--rm", name]);
        assert_eq!(stdout(&run), want, "{name}: {}", stderr(&run));
    }
    // The application was byte-compiled at build time and runs as nobody.
    let check = layers(&store, &["run", "--rm", "python-app", "sh", "-c", "id -un; ls hello/__pycache__"]);
    assert_eq!(stdout(&check), "nobody\n__init__.cpython-311.pyc\n__main__.cpython-311.pyc\n", "{}", stderr(&check));
    // The multi-stage result has the program and not the build stage's scratch files.
    let check = layers(&store, &["run", "--rm", "multistage", "sh", "-c", "ls /src 2>&1; ls -l /usr/local/bin/greet"]);
    let o = stdout(&check);
    assert!(o.contains("No such file") && o.contains("-rwxr-xr-x"), "{o}");
    // Build steps' images stay out of the image list unless asked for.
    let list = layers_ok(&store, &["images"]);
    assert!(!list.contains("<none>"), "{list}");
    assert!(layers_ok(&store, &["images", "-a"]).contains("<none>"));
}

#[test]
fn an_unchanged_build_is_all_cached_and_a_changed_file_rebuilds_from_its_copy() {
    if !need_root("an_unchanged_build_is_all_cached_and_a_changed_file_rebuilds_from_its_copy") {
        return;
    }
    let (work, store) = store_with_busybox();
    let ctx = example_context(work.path(), "args-env-heredoc");
    let dir = ctx.to_str().unwrap();
    let first = build(&store, &["-t", "app", dir]);
    let id = image_id(&first);
    let built = steps(&first);
    assert!(built.iter().skip(1).filter(|(t, _)| !t.starts_with("ARG")).all(|(_, s)| *s == "BUILT"), "{built:?}");

    let again = build(&store, &["-t", "app", dir]);
    assert_eq!(image_id(&again), id, "the same image");
    let s = steps(&again);
    assert!(s.iter().skip(1).filter(|(t, _)| !t.starts_with("ARG")).all(|(_, st)| *st == "CACHED"), "{s:?}");

    // A new mtime alone changes nothing; new content rebuilds that COPY and what follows.
    fs::write(ctx.join("app.conf"), "color=blue\n").unwrap();
    assert_eq!(image_id(&build(&store, &["-t", "app", dir])), id, "same content, same cache");
    fs::write(ctx.join("app.conf"), "color=green\n").unwrap();
    let changed = build(&store, &["-t", "app", dir]);
    assert_ne!(image_id(&changed), id);
    let s = steps(&changed);
    let copy_at = s.iter().position(|(t, _)| t.starts_with("COPY app.conf")).expect("the COPY step");
    let outcome: Vec<&str> = s.iter().skip(1).filter(|(t, _)| !t.starts_with("ARG")).map(|(_, st)| *st).collect();
    let before = s[1..copy_at].iter().filter(|(t, _)| !t.starts_with("ARG")).count();
    assert!(outcome[..before].iter().all(|st| *st == "CACHED"), "steps before the COPY hit: {s:?}");
    assert!(outcome[before..].iter().all(|st| *st == "BUILT"), "the COPY and later steps run: {s:?}");
    assert!(stdout(&layers(&store, &["run", "--rm", "app"])).contains("color=green"));

    // --no-cache runs everything; --build-arg changes what depends on it.
    let fresh = build(&store, &["--no-cache", "-t", "app", dir]);
    image_id(&fresh);
    assert!(steps(&fresh).iter().all(|(_, s)| *s != "CACHED"));
    let arg = build(&store, &["--build-arg", "GREETING=hi", "--build-arg", "GRETING=typo", "-t", "hi", dir]);
    image_id(&arg);
    assert!(stdout(&layers(&store, &["run", "--rm", "hi"])).starts_with("hi from the here-document"));
    assert!(stderr(&arg).contains("[Warning] One or more build-args [GRETING] were not consumed"), "{}", stderr(&arg));
}

#[test]
fn deletions_and_replaced_directories_become_whiteouts_and_opaque_dirs() {
    if !need_root("deletions_and_replaced_directories_become_whiteouts_and_opaque_dirs") {
        return;
    }
    let (work, store) = store_with_busybox();
    let ctx = example_context(work.path(), "whiteouts");
    image_id(&build(&store, &["-t", "wh", ctx.to_str().unwrap()]));
    let dirs = layer_dirs(&store, "localhost/wh");
    let n = dirs.len();
    // Bottom first: base, RUN 1, RUN 2 (deletions), RUN 3 (replaced /data).
    let deletions = &dirs[n - 2];
    let motd = fs::symlink_metadata(deletions.join("etc/motd")).unwrap();
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    assert!(motd.file_type().is_char_device() && motd.rdev() == 0, "/etc/motd is a whiteout");
    let replaced = &dirs[n - 1];
    let mut opaque = [0u8; 8];
    let n = rustix::fs::lgetxattr(replaced.join("demo"), "trusted.overlay.opaque", &mut opaque[..]);
    assert_eq!(n.map(|n| &opaque[..n]), Ok(&b"y"[..]), "/demo replaced: an opaque dir");
    assert!(replaced.join("demo/new").exists() && !replaced.join("demo/keep").exists());
}

#[test]
fn the_examples_build_to_the_same_images_as_root_and_rootless() {
    if !need_root("the_examples_build_to_the_same_images_as_root_and_rootless") {
        return;
    }
    let rootless = Mode::rootless();
    let work = rootless.work();
    // Fixed times (SOURCE_DATE_EPOCH), so the layers depend only on what the steps wrote.
    let mut ids = Vec::new();
    for mode in [Mode::Root, rootless] {
        let store = mode.fixture_store_in(work.path(), &format!("store-{}", mode.name()));
        mode.ok(&store, &["tag", "localhost/layered", "busybox"]);
        let contexts = work.path().join(mode.name());
        std::fs::create_dir(&contexts).unwrap();
        mode.give(&contexts);
        let mut built = Vec::new();
        for name in ["multistage", "whiteouts", "args-env-heredoc", "cache-mount"] {
            let ctx = example_context(&contexts, name);
            mode.give(&ctx);
            let out = mode
                .command_with(&store, &[("SOURCE_DATE_EPOCH", "1700000000")])
                .args(["build", "-q", "-t", name])
                .arg(&ctx)
                .output()
                .unwrap();
            built.push(format!("{name} {}", image_id(&out)));
        }
        let run = mode.run(&store, &["run", "--rm", "multistage"]);
        assert_eq!(stdout(&run), "hello from layers, built in stages\n", "{}", stderr(&run));
        ids.push(built);
    }
    assert_eq!(ids[0], ids[1], "the same image IDs (configs naming the same diffIDs), root and rootless");
}

#[test]
fn source_date_epoch_makes_builds_reproducible() {
    if !need_root("source_date_epoch_makes_builds_reproducible") {
        return;
    }
    let (work, store) = store_with_busybox();
    let ctx = example_context(work.path(), "args-env-heredoc");
    let run = |extra: &[&str]| {
        let mut cmd = layers_cmd();
        cmd.arg("--root").arg(&store).args(["build", "-q", "--no-cache"]).args(extra).arg(&ctx);
        cmd.env("SOURCE_DATE_EPOCH", "1700000000").output().unwrap()
    };
    let a = image_id(&run(&[]));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let b = image_id(&run(&[]));
    assert_eq!(a, b, "same inputs, same image, a second later");
}

#[test]
fn a_hostile_context_stays_inside() {
    if !need_root("a_hostile_context_stays_inside") {
        return;
    }
    let (work, store) = store_with_busybox();
    let ctx = work.path().join("ctx");
    fs::create_dir_all(ctx.join("dir")).unwrap();
    fs::write(work.path().join("secret"), "host secret\n").unwrap();
    std::os::unix::fs::symlink(work.path().join("secret"), ctx.join("dir/leak")).unwrap();
    std::os::unix::fs::symlink("/", ctx.join("root")).unwrap();
    fs::write(ctx.join("Dockerfile"), "FROM busybox\nCOPY dir/ /copied/\nCMD [\"readlink\", \"/copied/leak\"]\n")
        .unwrap();
    let out = build(&store, &["-t", "links", ctx.to_str().unwrap()]);
    image_id(&out);
    let run = layers(&store, &["run", "--rm", "links", "sh", "-c", "readlink /copied/leak; cat /copied/leak 2>&1"]);
    let o = stdout(&run);
    assert!(o.starts_with(&format!("{}\n", work.path().join("secret").display())), "a symlink, as it was: {o}");
    assert!(!o.contains("host secret"), "never followed out: {o}");

    for (source, why) in
        [("../secret", "leaves the build context"), ("root/etc/passwd", "not found in the build context")]
    {
        fs::write(ctx.join("Dockerfile"), format!("FROM busybox\nCOPY {source} /x\n")).unwrap();
        let out = build(&store, &[ctx.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{source}");
        let err = stderr(&out);
        assert!(err.contains("Dockerfile:2:1") && err.contains(why), "{source}: {err}");
    }
}

#[test]
fn target_builds_only_the_stages_it_needs_and_errors_name_the_line() {
    if !need_root("target_builds_only_the_stages_it_needs_and_errors_name_the_line") {
        return;
    }
    let (work, store) = store_with_busybox();
    let ctx = work.path().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    let dockerfile = "FROM busybox AS base\nRUN echo base > /base\n\
                      FROM busybox AS unrelated\nRUN exit 3\n\
                      FROM base AS final\nRUN cat /base\n";
    fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    let out = build(&store, &["--target", "final", "-t", "final", ctx.to_str().unwrap()]);
    image_id(&out);
    assert!(!stderr(&out).contains("exit 3"), "the unrelated stage is not built: {}", stderr(&out));
    let out = build(&store, &["--target", "unrelated", ctx.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("Dockerfile:4:1: RUN exit 3: the command returned a non-zero code: 3"),
        "{}",
        stderr(&out)
    );
    fs::write(ctx.join("Dockerfile"), "FROM busybox\nCOPY --frm=x a b\n").unwrap();
    let out = build(&store, &[ctx.to_str().unwrap()]);
    assert!(stderr(&out).contains("Dockerfile:2:6: unknown flag: --frm"), "{}", stderr(&out));
}

#[test]
fn workdir_makes_its_directory_when_the_image_lacks_it() {
    if !need_root("workdir_makes_its_directory_when_the_image_lacks_it") {
        return;
    }
    let (work, store) = store_with_busybox();
    let ctx = work.path().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(ctx.join("Dockerfile"), "FROM busybox\nWORKDIR /new/dir\nWORKDIR sub\nWORKDIR /etc\n").unwrap();
    let out = build(&store, &["-t", "wd", ctx.to_str().unwrap()]);
    image_id(&out);
    let run = layers(&store, &["run", "--rm", "wd", "sh", "-c", "ls -d /new/dir/sub; pwd"]);
    assert_eq!(stdout(&run), "/new/dir/sub\n/etc\n", "{}", stderr(&run));
    // /etc exists: that WORKDIR adds no layer.
    let layers_count = layer_dirs(&store, "localhost/wd").len();
    let base_count = layer_dirs(&store, "localhost/busybox").len();
    assert_eq!(layers_count, base_count + 2, "one layer per directory made, none for /etc");
}

#[test]
fn label_sets_the_final_images_labels_over_the_dockerfiles_without_a_history_entry() {
    if !need_root("label_sets_the_final_images_labels_over_the_dockerfiles_without_a_history_entry") {
        return;
    }
    let (work, store) = store_with_busybox();
    let ctx = work.path().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(ctx.join("Dockerfile"), "FROM busybox\nLABEL a=file keep=yes\n").unwrap();
    let c = ctx.to_str().unwrap();
    let plain = image_id(&build(&store, &["-q", "-t", "plain", c]));
    let labelled = image_id(&build(&store, &["-q", "-t", "labelled", "--label", "a=flag", "--label", "b", c]));
    assert_ne!(plain, labelled);
    let config = |name: &str| -> serde_json::Value {
        let all: serde_json::Value =
            serde_json::from_str(&layers_ok(&store, &["inspect", "--raw", "--type", "image", name])).unwrap();
        all[0].clone()
    };
    let (p, l) = (config("plain"), config("labelled"));
    let labels = &l["Config"]["config"]["Labels"];
    assert_eq!(labels, &serde_json::json!({"a": "flag", "b": "", "keep": "yes"}), "{l}");
    assert_eq!(p["Config"]["config"]["Labels"], serde_json::json!({"a": "file", "keep": "yes"}));
    assert_eq!(p["Config"]["history"], l["Config"]["history"], "no history entry for --label");
    assert_eq!(p["Manifest"]["layers"], l["Manifest"]["layers"], "no layer for --label");
    // The same labels again: the same image; labels the image already has: the image itself.
    assert_eq!(image_id(&build(&store, &["-q", "--label", "b=", "--label", "a=flag", c])), labelled);
    assert_eq!(image_id(&build(&store, &["-q", "--label", "keep=yes", c])), plain);
    let bad = build(&store, &["-q", "--label", "=x", c]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("--label =x: the key is empty"), "{}", stderr(&bad));
}

#[test]
fn onbuild_triggers_run_when_the_image_is_a_base() {
    if !need_root("onbuild_triggers_run_when_the_image_is_a_base") {
        return;
    }
    let (work, store) = store_with_busybox();
    let (base, child) = (work.path().join("base"), work.path().join("child"));
    fs::create_dir_all(&base).unwrap();
    fs::create_dir_all(&child).unwrap();
    fs::write(
        base.join("Dockerfile"),
        "FROM busybox\nONBUILD RUN echo triggered > /triggered\nONBUILD ENV FROM_TRIGGER=yes\n",
    )
    .unwrap();
    fs::write(child.join("Dockerfile"), "FROM onbuild-base\nRUN cat /triggered\n").unwrap();
    image_id(&build(&store, &["-t", "onbuild-base", base.to_str().unwrap()]));
    let base_run = layers(&store, &["run", "--rm", "onbuild-base", "sh", "-c", "ls /triggered 2>&1"]);
    assert!(stdout(&base_run).contains("No such file"), "triggers do not run in the image that declares them");
    let out = build(&store, &["-t", "onbuild-child", child.to_str().unwrap()]);
    image_id(&out);
    let run = layers(&store, &["run", "--rm", "onbuild-child", "sh", "-c", "cat /triggered; echo $FROM_TRIGGER"]);
    assert_eq!(stdout(&run), "triggered\nyes\n", "{}", stderr(&run));
    let inspect: serde_json::Value =
        serde_json::from_str(&layers_ok(&store, &["inspect", "--raw", "onbuild-child"])).unwrap();
    let config = &inspect[0]["Config"]["config"];
    assert!(config.get("OnBuild").is_none(), "triggers are not passed on: {config}");
}

#[test]
fn a_cache_mount_outlives_the_build_and_stays_out_of_the_image() {
    if !need_root("a_cache_mount_outlives_the_build_and_stays_out_of_the_image") {
        return;
    }
    let (work, store) = store_with_busybox();
    let ctx = example_context(work.path(), "cache-mount");
    for n in 1..=2 {
        image_id(&build(&store, &["--no-cache", "-t", "cm", ctx.to_str().unwrap()]));
        let run = layers(&store, &["run", "--rm", "cm"]);
        assert_eq!(stdout(&run), format!("built with a cache that has seen {n} build(s)\n"));
    }
    // Neither the cache's files nor the mount point (and the parent made for it) are in the image.
    let inside = layers(&store, &["run", "--rm", "cm", "sh", "-c", "ls -d /var/*; ls /var/cache"]);
    assert_eq!(stdout(&inside), "/var/log\n", "{}", stderr(&inside));
    // What the command wrote beside a mount point stays; only the empty stubs go.
    let beside = work.path().join("beside");
    fs::create_dir_all(&beside).unwrap();
    fs::write(beside.join("Dockerfile"), "FROM busybox\nRUN --mount=type=tmpfs,target=/x/y/z touch /x/keep\n").unwrap();
    image_id(&build(&store, &["-t", "beside", beside.to_str().unwrap()]));
    let run = layers(&store, &["run", "--rm", "beside", "find", "/x"]);
    assert_eq!(stdout(&run), "/x\n/x/keep\n", "{}", stderr(&run));
    let bad = work.path().join("bad");
    fs::create_dir_all(&bad).unwrap();
    fs::write(bad.join("Dockerfile"), "FROM busybox\nRUN --mount=type=bind,source=../..,target=/x true\n").unwrap();
    let out = build(&store, &[bad.to_str().unwrap()]);
    assert!(stderr(&out).contains("the source leaves the build context"), "{}", stderr(&out));
    // A symlink in the context is followed inside it, as BuildKit resolves a bind
    // source: `inner -> data` reaches the context's data, `out -> /etc` the context's
    // own (absent) etc, never the host's.
    let links = work.path().join("links");
    fs::create_dir_all(links.join("data")).unwrap();
    fs::write(links.join("data/file"), "from the context\n").unwrap();
    std::os::unix::fs::symlink("data", links.join("inner")).unwrap();
    std::os::unix::fs::symlink("/etc", links.join("out")).unwrap();
    fs::write(
        links.join("Dockerfile"),
        "FROM busybox\nRUN --mount=type=bind,source=inner,target=/x cat /x/file > /seen\n",
    )
    .unwrap();
    image_id(&build(&store, &["-t", "links", links.to_str().unwrap()]));
    assert_eq!(layers_ok(&store, &["run", "--rm", "links", "cat", "/seen"]), "from the context");
    fs::write(links.join("Dockerfile"), "FROM busybox\nRUN --mount=type=bind,source=out,target=/x ls /x/passwd\n")
        .unwrap();
    let out = build(&store, &[links.to_str().unwrap()]);
    assert!(!out.status.success(), "the host's /etc was mounted");
    assert!(stderr(&out).contains("source out is not in the build context"), "{}", stderr(&out));
}

#[test]
fn output_writes_the_image_as_oci_docker_archive_a_rootfs_tar_or_dir() {
    if !need_root("output_writes_the_image_as_oci_docker_archive_a_rootfs_tar_or_dir") {
        return;
    }
    let (work, store) = store_with_busybox();
    let ctx = example_context(work.path(), "multistage");
    let dir = ctx.to_str().unwrap();
    let oci = work.path().join("oci");
    let out = build(&store, &["-t", "greet", "--output", &format!("type=oci,dest={}/", oci.display()), dir]);
    image_id(&out);
    // An independent reader: umoci unpacks what we wrote, and the program is there.
    let bundle = umoci_unpack(&oci, "latest", &work.path().join("bundle"));
    assert!(bundle.join("usr/local/bin/greet").is_file());
    let archive = work.path().join("greet.tar");
    image_id(&build(
        &store,
        &["-t", "greet", "--output", &format!("type=docker-archive,dest={}", archive.display()), dir],
    ));
    let other = work.path().join("other");
    let loaded = layers(&other, &["load", "-i", archive.to_str().unwrap()]);
    assert!(loaded.status.success(), "{}", stderr(&loaded));
    assert_eq!(stdout(&layers(&other, &["run", "--rm", "greet"])), "hello from layers, built in stages\n");
    let rootfs = work.path().join("rootfs.tar");
    image_id(&build(&store, &["--output", &format!("type=tar,dest={}", rootfs.display()), dir]));
    let list = std::process::Command::new("tar").arg("-tf").arg(&rootfs).output().unwrap();
    assert!(stdout(&list).lines().any(|l| l == "usr/local/bin/greet"), "GNU tar lists the program");
    // type=local: the root filesystem as a directory, the same files umoci unpacked.
    let local = work.path().join("local");
    image_id(&build(&store, &["--output", &format!("type=local,dest={}", local.display()), dir]));
    assert_eq!(compare_trees(&local, &bundle, Mtimes::Files), Vec::<String>::new());
    let again = build(&store, &["--output", &format!("type=local,dest={}", local.display()), dir]);
    assert_eq!(again.status.code(), Some(1), "a non-empty dest is refused");
    assert!(stderr(&again).contains("is not empty"), "{}", stderr(&again));
    let names: Vec<_> = fs::read_dir(work.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(!names.iter().any(|n| n.to_string_lossy().starts_with(".layers-output")), "{names:?}");
    let bad = build(&store, &["--output", "type=registry", dir]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("--output type=registry"), "{}", stderr(&bad));
}

#[test]
fn add_extracts_local_archives_safely_and_copies_other_files() {
    if !need_root("add_extracts_local_archives_safely_and_copies_other_files") {
        return;
    }
    let (work, store) = store_with_busybox();
    let ctx = work.path().join("ctx");
    fs::create_dir_all(ctx.join("payload/sub")).unwrap();
    fs::write(ctx.join("payload/sub/file.txt"), "inside the archive\n").unwrap();
    // An archive by GNU tar (an independent writer), with an owner to keep.
    let tar = std::process::Command::new("tar")
        .args(["--owner=1234", "--group=4321", "-czf"])
        .arg(ctx.join("payload.tar.gz"))
        .arg("-C")
        .arg(ctx.join("payload"))
        .arg(".")
        .status()
        .unwrap();
    assert!(tar.success());
    fs::write(ctx.join("plain.txt"), "not an archive\n").unwrap();
    fs::write(ctx.join("Dockerfile"), "FROM busybox\nADD payload.tar.gz /opt/payload/\nADD plain.txt /opt/\n").unwrap();
    image_id(&build(&store, &["-t", "added", ctx.to_str().unwrap()]));
    let run = layers(
        &store,
        &[
            "run",
            "--rm",
            "added",
            "sh",
            "-c",
            "cat /opt/payload/sub/file.txt /opt/plain.txt; stat -c '%u:%g' /opt/payload/sub/file.txt; ls /opt/payload",
        ],
    );
    assert_eq!(stdout(&run), "inside the archive\nnot an archive\n1234:4321\nsub\n", "{}", stderr(&run));
    let again = build(&store, &["-t", "added", ctx.to_str().unwrap()]);
    assert!(steps(&again).iter().skip(1).all(|(_, s)| *s == "CACHED"), "{:?}", steps(&again));

    // A hostile archive is refused as `layers import` refuses it, and nothing leaks out.
    let corpus = work.path().join("corpus");
    let victim = work.path().join("victim");
    fs::create_dir_all(&victim).unwrap();
    let gen = std::process::Command::new("python3")
        .arg(repo().join("fixtures/hostile/generate.py"))
        .arg(&corpus)
        .arg(&victim)
        .status()
        .unwrap();
    assert!(gen.success());
    for (case, why) in [
        ("symlink-dotdot-then-write.tar", "path goes through symlink \"l\""),
        ("hardlink-dotdot.tar", "hardlink target: path has a '..' component"),
    ] {
        fs::copy(corpus.join(case), ctx.join(case)).unwrap();
        fs::write(ctx.join("Dockerfile"), format!("FROM busybox\nADD {case} /x/\n")).unwrap();
        let out = build(&store, &[ctx.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{case}");
        assert!(stderr(&out).contains(why) && stderr(&out).contains("Dockerfile:2:1"), "{case}: {}", stderr(&out));
    }
    assert_eq!(fs::read_dir(&victim).unwrap().count(), 0, "nothing written outside");
}

#[test]
fn add_fetches_urls_and_checks_their_checksum() {
    if !need_root("add_fetches_urls_and_checks_their_checksum") {
        return;
    }
    let (work, store) = store_with_busybox();
    let served = work.path().join("served");
    fs::create_dir_all(&served).unwrap();
    fs::write(served.join("tool.sh"), "#!/bin/sh\necho fetched\n").unwrap();
    // A loopback web server (Python's), on a free port.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut server = std::process::Command::new("python3")
        .args(["-m", "http.server", "--bind", "127.0.0.1", &port.to_string()])
        .current_dir(&served)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_listener(&format!("127.0.0.1:{port}"), 100, std::time::Duration::from_millis(50));
    let url = format!("http://127.0.0.1:{port}/tool.sh");
    let sum = layers_store::Digest::of(b"#!/bin/sh\necho fetched\n");
    let ctx = work.path().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(ctx.join("Dockerfile"), format!("FROM busybox\nADD --checksum={sum} {url} /usr/local/bin/\n")).unwrap();
    image_id(&build(&store, &["-t", "fetched", ctx.to_str().unwrap()]));
    let run = layers(
        &store,
        &["run", "--rm", "fetched", "sh", "-c", "stat -c %a /usr/local/bin/tool.sh; sh /usr/local/bin/tool.sh"],
    );
    assert_eq!(stdout(&run), "600\nfetched\n", "{}", stderr(&run));
    fs::write(served.join("tool.sh"), "#!/bin/sh\necho tampered\n").unwrap();
    let out = build(&store, &["--no-cache", ctx.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("checksum mismatch"), "{}", stderr(&out));
    let _ = server.kill();
    let _ = server.wait();
}

#[test]
fn builder_prune_forgets_the_cache_and_frees_what_only_it_held() {
    if !need_root("builder_prune_forgets_the_cache_and_frees_what_only_it_held") {
        return;
    }
    let (work, store) = store_with_busybox();
    let ms = example_context(work.path(), "multistage");
    let cm = example_context(work.path(), "cache-mount");
    image_id(&build(&store, &["-t", "greet", ms.to_str().unwrap()]));
    image_id(&build(&store, &["-t", "cm", cm.to_str().unwrap()]));
    let layers_before = fs::read_dir(store.join("layers")).unwrap().count();
    let out = layers(&store, &["builder", "prune", "-af"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // multistage's build stage (3 steps) and its runtime stage's COPY/CMD; cache-mount's RUN/CMD.
    assert!(stdout(&out).starts_with("deleted 7 build steps, 5 step images, 1 cache mounts\n"), "{}", stdout(&out));
    assert!(stdout(&out).contains("deleted layer"), "the build stage's RUN layer was freed: {}", stdout(&out));
    assert!(fs::read_dir(store.join("layers")).unwrap().count() < layers_before);
    assert!(!layers_ok(&store, &["images", "-a"]).contains("<none>"), "no step image left");
    // Named images stay and run; the next build starts afresh (the cache mount too).
    assert_eq!(stdout(&layers(&store, &["run", "--rm", "greet"])), "hello from layers, built in stages\n");
    let again = build(&store, &["-t", "cm", cm.to_str().unwrap()]);
    image_id(&again);
    assert!(steps(&again).iter().all(|(_, s)| *s != "CACHED"), "{:?}", steps(&again));
    assert_eq!(stdout(&layers(&store, &["run", "--rm", "cm"])), "built with a cache that has seen 1 build(s)\n");
    assert!(layers(&store, &["fsck"]).status.success());
}

#[test]
fn known_file_digests_skip_rereading_but_never_miss_a_change() {
    if !need_root("known_file_digests_skip_rereading_but_never_miss_a_change") {
        return;
    }
    let (work, store) = store_with_busybox();
    let ctx = work.path().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(ctx.join("Dockerfile"), "FROM busybox\nCOPY a.txt /a.txt\nCMD [\"cat\", \"/a.txt\"]\n").unwrap();
    fs::write(ctx.join("a.txt"), "one\n").unwrap();
    // Files changed in the last two seconds are hashed each time (they could still change unseen).
    std::thread::sleep(std::time::Duration::from_millis(2200));
    image_id(&build(&store, &["-t", "a", ctx.to_str().unwrap()]));
    let known = std::process::Command::new("python3")
        .arg("-c")
        .arg("import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('SELECT COUNT(*) FROM file_digests').fetchone()[0])")
        .arg(store.join("db.sqlite"))
        .output()
        .unwrap();
    assert_eq!(stdout(&known).trim(), "1", "a.txt is known: {}", stderr(&known));
    let again = build(&store, &["-t", "a", ctx.to_str().unwrap()]);
    assert!(steps(&again).iter().any(|(t, s)| t.starts_with("COPY") && *s == "CACHED"), "{:?}", steps(&again));
    // The same size and the old mtime put back: the ctime still tells.
    let old = fs::metadata(ctx.join("a.txt")).unwrap().modified().unwrap();
    fs::write(ctx.join("a.txt"), "two\n").unwrap();
    fs::File::options().write(true).open(ctx.join("a.txt")).unwrap().set_modified(old).unwrap();
    let changed = build(&store, &["-t", "a", ctx.to_str().unwrap()]);
    image_id(&changed);
    assert!(steps(&changed).iter().any(|(t, s)| t.starts_with("COPY") && *s == "BUILT"), "{:?}", steps(&changed));
    assert_eq!(stdout(&layers(&store, &["run", "--rm", "a"])), "two\n");
}
