//! Regressions of the builder's redesign (parse → plan → execute in process), each
//! named after the bug it pins.

// Tests make and inspect their fixtures by path (clippy.toml bans that in the code under test).
#![allow(clippy::disallowed_methods)]

mod common;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::Output;

use common::*;

fn build(store: &Path, args: &[&str]) -> Output {
    let mut full = vec!["build"];
    full.extend_from_slice(args);
    layers(store, &full)
}

fn built(store: &Path, args: &[&str]) -> String {
    let out = build(store, args);
    assert!(out.status.success(), "build {args:?}: {}", stderr(&out));
    stdout(&out).trim().to_string()
}

#[test]
fn run_bind_mount_works_when_the_context_path_has_a_colon() {
    if !need_root("run_bind_mount_works_when_the_context_path_has_a_colon") {
        return;
    }
    let (work, store) = store_with_busybox();
    let ctx = build_context(
        work.path(),
        "a:b:c",
        "FROM busybox\nRUN --mount=type=bind,target=/m cat /m/data > /copied\nRUN --mount=type=bind,target=/w,rw echo x > /w/data\n",
    );
    fs::write(ctx.join("data"), "through the mount\n").unwrap();
    built(&store, &["-t", "colon", ctx.to_str().unwrap()]);
    assert_eq!(run_in(&store, "colon", "cat /copied"), "through the mount\n");
    assert_eq!(fs::read_to_string(ctx.join("data")).unwrap(), "through the mount\n", "rw writes stay in the step");
}

#[test]
fn a_context_directory_named_from_is_not_unmounted() {
    if !need_root("a_context_directory_named_from_is_not_unmounted") {
        return;
    }
    let (work, store) = store_with_busybox();
    let ctx = work.path().join("from");
    fs::create_dir_all(&ctx).unwrap();
    let status = std::process::Command::new("mount").args(["-t", "tmpfs", "tmpfs"]).arg(&ctx).status().unwrap();
    assert!(status.success());
    let _unmount = Mounted(ctx.clone());
    fs::write(ctx.join("Dockerfile"), "FROM busybox\nCOPY one /one\nCOPY two /two\n").unwrap();
    fs::write(ctx.join("one"), "1\n").unwrap();
    fs::write(ctx.join("two"), "2\n").unwrap();
    built(&store, &["-t", "from-ctx", ctx.to_str().unwrap()]);
    assert_eq!(run_in(&store, "from-ctx", "cat /one /two"), "1\n2\n");
    assert!(ctx.join("Dockerfile").exists(), "the context's mount is still there");
}

#[test]
fn copy_parents_keeps_the_source_paths() {
    if !need_root("copy_parents_keeps_the_source_paths") {
        return;
    }
    let (work, store) = store_with_busybox();
    let ctx = build_context(
        work.path(),
        "parents",
        "FROM busybox\nCOPY --parents x/y/z.txt /dst/\nCOPY --parents ./x/./y/*.txt /pivot/\nCOPY --parents x/y /dirs/\nCOPY x/y/z.txt /flat/\n",
    );
    fs::create_dir_all(ctx.join("x/y")).unwrap();
    fs::write(ctx.join("x/y/z.txt"), "z\n").unwrap();
    fs::write(ctx.join("x/y/w.txt"), "w\n").unwrap();
    built(&store, &["-t", "parents", ctx.to_str().unwrap()]);
    let found = run_in(&store, "parents", "find /dst /pivot /dirs /flat -type f | sort");
    assert_eq!(
        found,
        "/dirs/x/y/w.txt\n/dirs/x/y/z.txt\n/dst/x/y/z.txt\n/flat/z.txt\n/pivot/y/w.txt\n/pivot/y/z.txt\n"
    );
}

#[test]
fn copy_link_makes_a_layer_of_its_own_and_unsupported_flags_are_refused() {
    if !need_root("copy_link_makes_a_layer_of_its_own_and_unsupported_flags_are_refused") {
        return;
    }
    let (work, store) = store_with_busybox();
    let ctx = build_context(work.path(), "link", "FROM busybox\nCOPY --link f /opt/app/f\n");
    fs::write(ctx.join("f"), "linked\n").unwrap();
    built(&store, &["-t", "linked", ctx.to_str().unwrap()]);
    assert_eq!(run_in(&store, "linked", "cat /opt/app/f; ls /bin/sh"), "linked\n/bin/sh\n");
    // The new layer holds the copied file and the dirs made for it, nothing of the base.
    let dirs = layer_dirs(&store, "linked");
    let top = dirs.last().unwrap();
    let mut in_layer: Vec<String> = tree(top).into_keys().collect();
    in_layer.sort();
    assert_eq!(in_layer, ["", "opt", "opt/app", "opt/app/f"], "{in_layer:?}");

    for (dockerfile, flag) in [
        ("FROM busybox\nADD --keep-git-dir=true f /f\n", "--keep-git-dir"),
        ("FROM busybox\nRUN --security=insecure true\n", "--security=insecure"),
        ("FROM busybox\nRUN --mount=type=cache,target=/c,uid=ab true\n", "uid=ab: want a number"),
        ("FROM busybox\nRUN --mount=type=cache,target=/c,mode=0999 true\n", "mode=0999: want a number in octal"),
        ("FROM busybox\nRUN --mount=type=tmpfs,target=/c,uid=1000 true\n", "uid does not apply to type=tmpfs"),
        ("FROM busybox\nRUN --mount=type=cache,target=/c,sharing=exclusive true\n", "sharing=exclusive"),
        (
            "FROM busybox\nRUN --mount=type=tmpfs,target=/c,sharing=locked true\n",
            "sharing does not apply to type=tmpfs",
        ),
        ("FROM busybox\nRUN --mount=type=volume,target=/s true\n", "type volume"),
        ("FROM busybox\nRUN --mount=type=ssh,mode=0644 true\n", "mode is not supported for type=ssh"),
        ("FROM busybox\nRUN --mount=type=secret,id=s,from=x true\n", "from does not apply to type=secret"),
        ("FROM busybox\nRUN --mount=type=secret,id=s,required true\n", "secret s was not given"),
    ] {
        fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
        let out = build(&store, &[ctx.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{dockerfile}");
        let err = stderr(&out);
        assert!(err.contains(flag) && err.lines().count() == 1 + err.matches("STEP").count(), "{dockerfile}: {err}");
    }
}

#[test]
fn add_archives_and_output_local_obey_the_layer_limits() {
    if !need_root("add_archives_and_output_local_obey_the_layer_limits") {
        return;
    }
    let (work, store) = store_with_busybox();
    let ctx = build_context(work.path(), "archive", "FROM busybox\nADD many.tar /unpacked/\n");
    let many = work.path().join("many");
    fs::create_dir_all(&many).unwrap();
    for i in 0..50 {
        fs::write(many.join(format!("f{i}")), "x").unwrap();
    }
    gnu_tar(&many, &ctx.join("many.tar"));
    let out = layers(&store, &["--max-layer-entries", "20", "build", ctx.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("20"), "{}", stderr(&out));
    assert!(stderr(&out).contains("many.tar"), "{}", stderr(&out));
    built(&store, &["-t", "archive", ctx.to_str().unwrap()]);
    // The image has the archive's 50 files and busybox's: more than 20 entries.
    let dest = work.path().join("out");
    let out = layers(
        &store,
        &[
            "--max-layer-entries",
            "20",
            "build",
            "--output",
            &format!("type=local,dest={}", dest.display()),
            ctx.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(!dest.exists(), "nothing half-written at the destination");
}

#[test]
fn add_url_larger_than_the_cap_is_refused_without_reading_it_all() {
    if !need_root("add_url_larger_than_the_cap_is_refused_without_reading_it_all") {
        return;
    }
    let (work, store) = store_with_busybox();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = sent.clone();
    // 1 GiB, chunked (no length to refuse up front), as fast as the client takes it.
    let addr = fake_registry(move |_, s| {
        let _ = write!(s, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..1024 {
            if write!(s, "{:x}\r\n", chunk.len())
                .and_then(|()| s.write_all(&chunk))
                .and_then(|()| s.write_all(b"\r\n"))
                .is_err()
            {
                return;
            }
            counter.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
        let _ = s.write_all(b"0\r\n\r\n");
    });
    let ctx = build_context(work.path(), "big-url", &format!("FROM busybox\nADD http://{addr}/big.bin /big.bin\n"));
    let out = layers(&store, &["--max-layer-size", "4194304", "build", ctx.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("4194304 byte limit"), "{}", stderr(&out));
    let taken = sent.load(std::sync::atomic::Ordering::Relaxed);
    assert!(taken < 64 << 20, "the body was read on after the cap: {taken} bytes");
    assert_eq!(fs::read_dir(store.join("tmp")).unwrap().count(), 0, "no download left in tmp/");
}

/// Issue 26: `ADD` of a URL that redirects to `file:`, `data:` or `http+unix:` added
/// an empty file (the unfollowed 3xx's body); and a 1 B/s trickle was sat through
/// (100 bytes in 104 s). Both fail now, by name, with pulls' pace rules.
#[test]
fn add_url_refuses_odd_redirects_and_trickles() {
    if !need_root("add_url_refuses_odd_redirects_and_trickles") {
        return;
    }
    let (work, store) = store_with_busybox();
    for to in ["file:///etc/passwd", "data:text/plain,hi", "http+unix://%2Frun%2Fx.sock/"] {
        let target = to.to_string();
        let addr = fake_registry(move |_, s| {
            let _ = write!(s, "HTTP/1.1 302 Found\r\nLocation: {target}\r\nContent-Length: 0\r\n\r\n");
        });
        let ctx = build_context(work.path(), "redirect", &format!("FROM busybox\nADD http://{addr}/f /f\n"));
        let out = layers(&store, &["build", ctx.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{to}: {}", stderr(&out));
        assert!(stderr(&out).contains("only http and https redirects are followed"), "{to}: {}", stderr(&out));
    }
    let addr = fake_registry(move |_, s| {
        let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n");
        for _ in 0..100 {
            if s.write_all(b"x").is_err() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
    });
    let ctx = build_context(work.path(), "trickle", &format!("FROM busybox\nADD http://{addr}/slow /slow\n"));
    let started = std::time::Instant::now();
    let mut cmd = layers_cmd();
    let out = cmd
        .env("LAYERS_STALL_TIMEOUT", "2")
        .arg("--root")
        .arg(&store)
        .args(["build", ctx.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("transfer too slow"), "{}", stderr(&out));
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "{:?}", started.elapsed());
}

#[test]
fn no_cache_leaves_no_stray_step_image() {
    if !need_root("no_cache_leaves_no_stray_step_image") {
        return;
    }
    let (work, store) = store_with_busybox();
    let ctx = build_context(work.path(), "envs", "FROM busybox\nENV A=1\nRUN echo x > /x\nENV B=2\n");
    built(&store, &["-t", "envs", ctx.to_str().unwrap()]);
    // Each step image records its creation second: rebuilt a second later, each is a new image.
    for _ in 0..2 {
        std::thread::sleep(std::time::Duration::from_millis(1100));
        built(&store, &["--no-cache", "-t", "envs", ctx.to_str().unwrap()]);
    }
    let listed = layers_ok(&store, &["images", "--format", "json"]);
    assert!(!listed.contains("<none>") && !listed.contains("\"Names\":[]"), "{listed}");
    let names = |s: &str| s.lines().filter(|l| l.contains("<none>")).count();
    assert_eq!(names(&layers_ok(&store, &["images"])), 0);
    layers_ok(&store, &["rmi", "envs"]);
    layers_ok(&store, &["builder", "prune", "-a", "-f"]);
    let left = layers_ok(&store, &["images", "-a", "-q"]);
    assert_eq!(left.lines().count(), layers_ok(&store, &["images", "-q"]).lines().count(), "step images left: {left}");
}

#[test]
fn run_steps_get_the_host_network_unless_none() {
    if !need_root("run_steps_get_the_host_network_unless_none") {
        return;
    }
    let (work, store) = store_with_busybox();
    let addr = fake_registry(|_, s| reply(s, "from the host\n"));
    let ctx = build_context(work.path(), "net", &format!("FROM busybox\nRUN wget -q -O /got http://{addr}/\n"));
    built(&store, &["-t", "net", ctx.to_str().unwrap()]);
    assert_eq!(run_in(&store, "net", "cat /got"), "from the host\n");
    let out = build(&store, &["--no-cache", "--network", "none", ctx.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("non-zero code"), "{}", stderr(&out));
    fs::write(ctx.join("Dockerfile"), format!("FROM busybox\nRUN --network=none wget -q -O /got http://{addr}/\n"))
        .unwrap();
    let out = build(&store, &[ctx.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
}

#[test]
fn from_pulls_in_process_and_the_run_steps_after_it_work() {
    if !need_root("from_pulls_in_process_and_the_run_steps_after_it_work") {
        return;
    }
    let reg = Registry::start();
    reg.push(&fixtures().join("oci"), "layered", "fixture/layered:v1", &[]);
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let image = format!("{}/fixture/layered:v1", reg.addr);
    let ctx = build_context(work.path(), "pulled", &format!("FROM {image}\nRUN echo ran > /ran\n"));
    built(&store, &["-t", "pulled", ctx.to_str().unwrap()]);
    assert_eq!(run_in(&store, "pulled", "cat /ran"), "ran\n");
    assert!(reg.requests_from_layers().iter().any(|r| r.contains("/manifests/v1")), "the base came from the registry");
    // A pull that fails is the step's one-line error, naming the line.
    fs::write(ctx.join("Dockerfile"), format!("FROM {}/fixture/nope:v1\nRUN true\n", reg.addr)).unwrap();
    let out = build(&store, &[ctx.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("Dockerfile:1") && err.contains("fixture/nope:v1"), "{err}");
}

/// Issue 27: `--progress` was parsed and dropped. `plain` and `auto` build (steps are
/// lines either way), `tty` needs a terminal and says so when stderr is not one, and
/// a value BuildKit does not know is refused by clap.
#[test]
fn build_progress_modes_are_honoured_or_refused() {
    if !need_root("build_progress_modes_are_honoured_or_refused") {
        return;
    }
    let (work, store) = store_with_busybox();
    let ctx = build_context(work.path(), "progress", "FROM busybox\nRUN echo hi > /hi\n");
    for mode in ["plain", "auto"] {
        let out = layers(&store, &["build", "--progress", mode, ctx.to_str().unwrap()]);
        assert!(out.status.success(), "{mode}: {}", stderr(&out));
        assert!(stderr(&out).contains("STEP 2/2: RUN echo hi > /hi"), "{mode}: {}", stderr(&out));
    }
    let out = layers(&store, &["build", "--progress", "tty", ctx.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--progress tty: stderr is not a terminal"), "{}", stderr(&out));
    let out = layers(&store, &["build", "--progress", "rainbow", ctx.to_str().unwrap()]);
    assert!(!out.status.success() && stderr(&out).contains("rainbow"), "{}", stderr(&out));
}
