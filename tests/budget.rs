//! A store within a size budget: least recently used images go first, what a
//! container is based on and what is pinned stay, and the store stays consistent.

// Tests make and inspect their fixtures by path (clippy.toml bans that in the code under test).
#![allow(clippy::disallowed_methods)]

mod common;

use std::fs;
use std::path::Path;

use common::*;

/// A rootfs tar of `mib` MiB of incompressible bytes (so blob and layer are each that size).
fn rootfs(work: &Path, name: &str, mib: usize) -> String {
    let dir = work.join(format!("{name}-root"));
    fs::create_dir_all(&dir).unwrap();
    let mut bytes = vec![0u8; mib << 20];
    let mut x: u64 = name.bytes().fold(0x9e37_79b9_7f4a_7c15, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
    for chunk in bytes.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    fs::write(dir.join("data"), bytes).unwrap();
    let tar = work.join(format!("{name}.tar"));
    gnu_tar(&dir, &tar);
    tar.display().to_string()
}

/// Bytes in the store's blobs and layer dirs (apparent sizes), as a `du` would sample them.
fn content(store: &Path) -> u64 {
    fn walk(p: &Path) -> u64 {
        let m = fs::symlink_metadata(p).unwrap();
        if m.is_dir() {
            fs::read_dir(p).unwrap().map(|e| walk(&e.unwrap().path())).sum()
        } else {
            m.len()
        }
    }
    walk(&store.join("blobs")) + walk(&store.join("layers"))
}

fn has(store: &Path, name: &str) -> bool {
    layers(store, &["inspect", name]).status.success()
}

#[test]
fn a_store_over_its_budget_evicts_the_least_recently_used_and_keeps_what_is_in_use() {
    if !need_root("a_store_over_its_budget_evicts_the_least_recently_used_and_keeps_what_is_in_use") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    fs::create_dir_all(&store).unwrap();
    // Each image: a 2 MiB blob (a plain tar) and its 2 MiB layer, so 4 MiB; the budget holds two.
    fs::write(store.join("store.toml"), "max-size = \"9MB\"\n").unwrap();
    let budget = 9u64 << 20;
    let slack = 5u64 << 20; // one image being written beyond the budget
    for n in ["a", "b", "c"] {
        let tar = rootfs(work.path(), n, 2);
        layers_ok(&store, &["import", &tar, &format!("img-{n}:1")]);
        assert!(content(&store) <= budget + slack, "after {n}: {} bytes", content(&store));
    }
    // a was imported first and used by nothing since: it went when c came.
    assert!(!has(&store, "img-a:1") && has(&store, "img-b:1") && has(&store, "img-c:1"));
    assert!(content(&store) <= budget);

    // b is used now (a container on it): c is the least recently used, and b may not go anyway.
    layers_ok(&store, &["create", "--name", "on-b", "img-b:1"]);
    layers_ok(&store, &["import", &rootfs(work.path(), "d", 2), "img-d:1"]);
    assert!(has(&store, "img-b:1") && !has(&store, "img-c:1") && has(&store, "img-d:1"));

    // A pinned image stays; the next least recently used goes instead.
    layers_ok(&store, &["pin", "img-d:1"]);
    let df = layers_ok(&store, &["df", "-v"]);
    let row = |name: &str| df.lines().find(|l| l.starts_with(name)).unwrap_or_default().to_string();
    // Docker's familiar names (`docker system df -v` shows `img-d`, not `localhost/img-d`).
    assert!(row("img-d ").ends_with("yes"), "{df}");
    assert!(row("img-b ").contains("   1   "), "one container on img-b: {df}");
    layers_ok(&store, &["import", &rootfs(work.path(), "e", 2), "img-e:1"]);
    assert!(has(&store, "img-b:1") && has(&store, "img-d:1") && has(&store, "img-e:1"));
    // Everything else in use or pinned: over budget, and nothing lost.
    let err = stderr(&layers(&store, &["import", &rootfs(work.path(), "f", 2), "img-f:1"]));
    assert!(has(&store, "img-b:1") && has(&store, "img-d:1"), "{err}");
    // It says what it evicted, by name, and what it keeps and why (issue 32).
    assert_eq!(err.contains("evicted img-e:1;"), !has(&store, "img-e:1"), "{err}");
    let still = err.lines().find(|l| l.starts_with("layers: the store is still ")).unwrap_or_else(|| panic!("{err}"));
    assert!(still.contains("over its budget (max size "), "{still}");
    for kept in ["img-b:1 (used by 1 container(s))", "img-d:1 (pinned)", "img-f:1 (used by this command)"] {
        assert!(still.contains(kept), "{kept}: {still}");
    }
    assert_eq!(layers_ok(&store, &["fsck"]), "store is consistent");

    // gc --max-size and --max-age evict on demand with the same rules.
    layers_ok(&store, &["rm", "on-b"]);
    layers_ok(&store, &["unpin", "img-d:1"]);
    let out = layers_ok(&store, &["gc", "--max-size", "5MB"]);
    assert!(out.contains("evicted image"), "{out}");
    assert!(content(&store) <= 5 << 20, "{} bytes", content(&store));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    layers_ok(&store, &["gc", "--max-age", "1s"]);
    assert_eq!(layers_ok(&store, &["images", "-q"]), "");
    assert_eq!(content(&store), 0);
    assert_eq!(layers_ok(&store, &["fsck"]), "store is consistent");

    // A bad budget is refused by name.
    let out = layers(&store, &["--max-store-size", "lots", "images"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("lots"), "{}", stderr(&out));
}

#[test]
fn eviction_killed_at_any_point_leaves_a_consistent_store_and_a_rerun_converges() {
    if !need_root("eviction_killed_at_any_point_leaves_a_consistent_store_and_a_rerun_converges") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    for i in 0..24 {
        let name = format!("k{i}");
        layers_ok(&store, &["import", &rootfs(work.path(), &name, 1), &format!("img-{name}:1")]);
    }
    let before = layers_ok(&store, &["images", "-q"]).lines().count();
    for delay_ms in [1u64, 3, 6, 10, 20, 40] {
        let mut child = spawn_layers(&store, &["gc", "--max-size", "1"]);
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        let fsck = layers(&store, &["fsck"]);
        assert!(fsck.status.success(), "killed after {delay_ms} ms: {}", stdout(&fsck));
        // Every image still listed is whole: it runs.
        for id in layers_ok(&store, &["images", "-q"]).lines() {
            assert!(layers(&store, &["inspect", id]).status.success(), "{id} after a kill at {delay_ms} ms");
        }
    }
    let left = layers_ok(&store, &["images", "-q"]).lines().count();
    assert!(left <= before);
    layers_ok(&store, &["gc", "--max-size", "1"]);
    assert_eq!(layers_ok(&store, &["images", "-q"]), "", "a rerun evicts the rest");
    assert_eq!(content(&store), 0);
    assert_eq!(layers_ok(&store, &["fsck"]), "store is consistent");
}

/// Bytes under blobs/, layers/ and tmp/ (staged content counts), read while other
/// processes add and remove files: what vanishes mid-walk counts as gone.
fn sampled(store: &Path) -> u64 {
    fn walk(p: &Path) -> u64 {
        match fs::symlink_metadata(p) {
            Ok(m) if m.is_dir() => fs::read_dir(p).map_or(0, |d| d.flatten().map(|e| walk(&e.path())).sum()),
            Ok(m) => m.len(),
            Err(_) => 0,
        }
    }
    ["blobs", "layers", "tmp"].iter().map(|d| walk(&store.join(d))).sum()
}

#[test]
fn pulls_and_builds_never_take_a_store_past_its_budget_by_more_than_the_layer_being_written() {
    if !need_root("pulls_and_builds_never_take_a_store_past_its_budget_by_more_than_the_layer_being_written") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let registry = Registry::start();
    // Five single-layer images of 2 MiB each, made by skopeo from GNU tar archives.
    let layout = work.path().join("layout");
    for i in 0..5 {
        let tar = rootfs(work.path(), &format!("p{i}"), 2);
        let out = std::process::Command::new("skopeo")
            .args(["copy", "--quiet", &format!("tarball:{tar}"), &format!("oci:{}:p{i}", layout.display())])
            .output()
            .unwrap();
        assert!(out.status.success(), "skopeo: {}", stderr(&out));
        registry.push(&layout, &format!("p{i}"), &format!("budget/p{i}:1"), &[]);
    }
    let store = work.path().join("store");
    fs::create_dir_all(&store).unwrap();
    // An image is a 2 MiB blob and its 2 MiB layer: the budget holds three.
    fs::write(store.join("store.toml"), "max-size = \"13MB\"\n").unwrap();
    let budget = 13u64 << 20;
    // One layer being written: its blob and its unpacked dir, staged, then committed
    // before the eviction that makes room for it; and the small JSON blobs around it.
    let layer_written = (4u64 << 20) + (256 << 10);

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            let (mut peak, mut samples) = (0u64, 0u32);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(sampled(&store));
                samples += 1;
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            (peak, samples)
        })
    };
    for i in 0..5 {
        layers_ok(&store, &["pull", "-q", &format!("{}/budget/p{i}:1", registry.addr)]);
    }
    // The least recently pulled went first; the last two are here.
    let pulled = |i: usize| has(&store, &format!("{}/budget/p{i}:1", registry.addr));
    assert!(!pulled(0) && !pulled(1) && pulled(2) && pulled(3) && pulled(4));
    // A build on p4 whose two COPY steps write 2 MiB layers (each a blob and a dir):
    // the store makes room after each step, not only once the build is over (which
    // would have held all of it at once: the budget and two layers).
    let ctx =
        build_context(work.path(), "b", &format!("FROM {}/budget/p4:1\nCOPY one /one\nCOPY two /two\n", registry.addr));
    fs::copy(work.path().join("p0-root/data"), ctx.join("one")).unwrap();
    fs::copy(work.path().join("p1-root/data"), ctx.join("two")).unwrap();
    layers_ok(&store, &["build", "-q", "-t", "built", ctx.to_str().unwrap()]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (peak, samples) = sampler.join().unwrap();
    assert!(samples > 20, "only {samples} samples");
    assert!(peak <= budget + layer_written, "peak {peak} bytes for a budget of {budget}");
    // The build and what it stands on stay; what it did not use went, oldest first.
    assert!(has(&store, "built") && pulled(4) && !pulled(2) && !pulled(3));
    assert!(sampled(&store) <= budget);
    assert_eq!(layers_ok(&store, &["fsck"]), "store is consistent");
}

/// Issue 26: a FIFO in place of store.toml hung every command; a syntax error in it
/// printed a source excerpt over several lines. Both are one line naming the file.
#[test]
fn a_store_toml_that_is_a_fifo_or_malformed_is_one_line_and_no_hang() {
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    layers_ok(&store, &["images", "-q"]);
    let settings = store.join("store.toml");
    assert!(std::process::Command::new("mkfifo").arg(&settings).status().unwrap().success());
    let t = std::time::Instant::now();
    let out = layers(&store, &["images"]);
    assert!(t.elapsed() < std::time::Duration::from_secs(5), "{:?}", t.elapsed());
    let err = stderr(&out);
    assert!(
        !out.status.success() && err.lines().count() == 1 && err.contains("store.toml: not a regular file"),
        "{err}"
    );
    fs::remove_file(&settings).unwrap();
    fs::write(&settings, "max-size = \"9MB\"\nmin-free = [oops\n").unwrap();
    let out = layers(&store, &["images"]);
    let err = stderr(&out);
    assert!(!out.status.success() && err.lines().count() == 1 && err.contains("store.toml: line 2: "), "{err}");
}
