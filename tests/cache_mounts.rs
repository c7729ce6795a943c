//! `RUN --mount=type=cache` dirs that travel with a shared cache (issue 31): runner A
//! fills one and exports it, runner B's step that misses finds it filled; a step that
//! hits fetches nothing for it; unchanged content is not sent again; a hostile blob
//! leaves the mount empty.

// Tests make and inspect their fixtures by path (clippy.toml bans that in the code under test).
#![allow(clippy::disallowed_methods)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::build_cache::*;
use common::*;

/// A RUN whose cache mount makes a slow "download" the first time and reuses it after.
/// What it prints is split in the text (`gen""erated`), so the step line that shows the
/// instruction never matches what only running it prints.
const DOCKERFILE: &str = r#"FROM busybox
ARG V=1
RUN --mount=type=cache,target=/cache,id=gen sh -c 'if [ -f /cache/made ]; then echo "cache: reused $(cat /cache/made)"; else sleep 2; echo "by build $V" > /cache/made; echo "cache: gen""erated"; fi; echo $V > /out'
"#;

fn context(work: &Path) -> PathBuf {
    let ctx = work.join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(ctx.join("Dockerfile"), DOCKERFILE).unwrap();
    ctx
}

/// The cache manifest's layers as (mount id, digest), mounts only.
fn mount_layers(cache: &Path) -> Vec<(String, String)> {
    let (_, manifest) = cache_manifest(cache);
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| {
            let id = l["annotations"]["vnd.layers.cache-mount"].as_str()?;
            Some((id.to_string(), l["digest"].as_str().unwrap().to_string()))
        })
        .collect()
}

/// A build's output (what its steps print and its log) and how long it took.
fn built(store: &Path, args: &[&str]) -> (String, Duration) {
    let started = Instant::now();
    let out = build(store, args);
    (format!("{}{}", stdout(&out), stderr(&out)), started.elapsed())
}

#[test]
fn a_cache_mount_filled_on_one_runner_is_found_by_a_missing_step_on_another() {
    if !need_root("a_cache_mount_filled_on_one_runner_is_found_by_a_missing_step_on_another") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let ctx = context(work.path());
    let cache = work.path().join("cache");
    let (to, from) =
        (format!("type=local,dest={},mode=max", cache.display()), format!("type=local,src={}", cache.display()));
    let (a, b, c) = (machine(work.path(), "a"), machine(work.path(), "b"), machine(work.path(), "c"));

    let (log, _) = built(&a, &["--cache-to", &to, ctx.to_str().unwrap()]);
    assert!(log.contains("cache: generated"), "{log}");
    assert!(log.contains("exported 1 step and 1 cache mount ("), "{log}");
    let exported = mount_layers(&cache);
    assert_eq!(exported.len(), 1, "{exported:?}");
    assert_eq!(exported[0].0, "gen");

    // A again, nothing changed: the mount's blob is the same, and not sent again.
    let (log, _) = built(&a, &["--cache-to", &to, ctx.to_str().unwrap()]);
    assert!(log.contains("exported 1 step and 1 cache mount (0 new layers, 0.0 MB)"), "{log}");
    assert_eq!(mount_layers(&cache), exported, "unchanged content, the same blob");

    // B, every step a hit: the step needs no mount, and none is filled.
    let (log, _) = built(&b, &["--cache-from", &from, ctx.to_str().unwrap()]);
    assert!(log.contains(&format!("imported 1 step and 1 cache mount from {from}")), "{log}");
    assert!(!log.contains("cache mount gen: filled"), "{log}");
    assert!(fs::read_dir(b.join("cache-mounts")).map_or(true, |mut d| d.next().is_none()), "no mount made on B");

    // B, the RUN's input changed: the step misses and finds A's mount filled.
    let (log, with_cache) = built(&b, &["--cache-from", &from, "--build-arg", "V=2", ctx.to_str().unwrap()]);
    assert!(log.contains(&format!("--> cache mount gen: filled from {from} (")), "{log}");
    assert!(log.contains("cache: reused by build 1"), "{log}");
    // C makes the same change with no cache: it generates, and takes longer.
    let (log_c, without) = built(&c, &["--build-arg", "V=2", ctx.to_str().unwrap()]);
    assert!(log_c.contains("cache: generated"), "{log_c}");
    assert!(with_cache + Duration::from_millis(1500) < without, "with A's mount {with_cache:?}, without {without:?}");

    // B's export carries the mount on (B's own, filled and used).
    let cache_b = work.path().join("cache-b");
    let to_b = format!("type=local,dest={},cache-mounts=true", cache_b.display());
    let (log, _) =
        built(&b, &["--cache-from", &from, "--build-arg", "V=2", "--cache-to", &to_b, ctx.to_str().unwrap()]);
    assert!(log.contains("and 1 cache mount ("), "{log}");
    assert_eq!(mount_layers(&cache_b), exported, "B's mount is A's content, unchanged");
    for s in [&a, &b, &c] {
        assert_eq!(layers_ok(s, &["fsck"]), "store is consistent");
    }
}

#[test]
fn which_mounts_an_export_writes_follows_its_options() {
    if !need_root("which_mounts_an_export_writes_follows_its_options") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let ctx = context(work.path());
    let a = machine(work.path(), "a");
    for (options, mounts, note) in [
        ("mode=max", 1, false),
        ("mode=max,cache-mounts=false", 0, false),
        ("mode=min", 0, false),
        ("mode=min,cache-mounts=true", 1, false),
        ("mode=max,cache-mount-max-size=100", 0, true),
    ] {
        let cache = work.path().join(options.replace([',', '='], "-"));
        let to = format!("type=local,dest={},{options}", cache.display());
        let (log, _) = built(&a, &["--cache-to", &to, ctx.to_str().unwrap()]);
        assert_eq!(mount_layers(&cache).len(), mounts, "{options}: {log}");
        let said = log
            .lines()
            .any(|l| l == "cache mount gen: larger than cache-mount-max-size (100 bytes of tar); not exported");
        assert_eq!(said, note, "{options}: {log}");
    }
}

#[test]
fn a_hostile_mount_blob_leaves_the_mount_empty_and_the_step_runs() {
    if !need_root("a_hostile_mount_blob_leaves_the_mount_empty_and_the_step_runs") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let ctx = context(work.path());
    let cache = work.path().join("cache");
    let (a, b) = (machine(work.path(), "a"), machine(work.path(), "b"));
    built(&a, &["--cache-to", &format!("type=local,dest={},mode=max", cache.display()), ctx.to_str().unwrap()]);
    // The mount's blob becomes a tar that climbs out of the mount, its digests made to match.
    let tar = [common::tar_bytes::file("../../escaped", b"out\n"), common::tar_bytes::end()].concat();
    let (blob, diff) = (layers_store::Digest::of(&tar), layers_store::Digest::of(&tar));
    fs::write(cache.join("blobs/sha256").join(blob.hex()), &tar).unwrap();
    let (_, mut manifest) = cache_manifest(&cache);
    let mut index: serde_json::Value = serde_json::from_slice(&fs::read(cache.join("index.json")).unwrap()).unwrap();
    for l in manifest["layers"].as_array_mut().unwrap() {
        if l["annotations"]["vnd.layers.cache-mount"].is_string() {
            l["digest"] = serde_json::json!(blob.to_string());
            l["size"] = serde_json::json!(tar.len());
            l["mediaType"] = serde_json::json!("application/vnd.oci.image.layer.v1.tar");
            l["annotations"]["vnd.layers.diff-id"] = serde_json::json!(diff.to_string());
        }
    }
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let md = layers_store::Digest::of(&bytes);
    fs::write(cache.join("blobs/sha256").join(md.hex()), &bytes).unwrap();
    index["manifests"][0]["digest"] = serde_json::json!(md.to_string());
    index["manifests"][0]["size"] = serde_json::json!(bytes.len());
    fs::write(cache.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();

    let from = format!("type=local,src={}", cache.display());
    let (log, _) = built(&b, &["--cache-from", &from, "--build-arg", "V=2", ctx.to_str().unwrap()]);
    let warning: Vec<&str> = log.lines().filter(|l| l.starts_with("layers: warning: cache mount gen: ")).collect();
    assert!(
        warning.len() == 1 && warning[0].contains("escaped") && warning[0].ends_with("the step starts with it empty"),
        "{log}"
    );
    assert!(log.contains("cache: generated"), "the step ran with the mount empty: {log}");
    for p in [work.path().join("escaped"), b.join("escaped"), b.join("tmp/escaped"), b.join("cache-mounts/escaped")] {
        assert!(!p.exists(), "{} was written", p.display());
    }
    assert_eq!(layers_ok(&b, &["fsck"]), "store is consistent");
}

#[test]
fn a_registry_carries_a_cache_mount_fetched_only_by_a_step_that_runs() {
    if !need_root("a_registry_carries_a_cache_mount_fetched_only_by_a_step_that_runs") {
        return;
    }
    let reg = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let ctx = context(work.path());
    let (a, b) = (machine(work.path(), "a"), machine(work.path(), "b"));
    let cache = format!("{}/cache/mounts:main", reg.addr);
    let (log, _) = built(&a, &["--cache-to", &format!("type=registry,ref={cache},mode=max"), ctx.to_str().unwrap()]);
    assert!(log.contains("and 1 cache mount ("), "{log}");

    // Every step a hit: the RUN's layer is fetched (the image needs it), the mount is not.
    let before = reg.requests_from_layers().len();
    let (log, _) = built(&b, &["--cache-from", &cache, ctx.to_str().unwrap()]);
    assert!(!log.contains("cache mount gen: filled"), "{log}");
    let hits = blob_gets(&reg.requests_from_layers()[before..]);

    // The RUN misses: the mount's blob is fetched, once, and the step reuses it.
    let before = reg.requests_from_layers().len();
    let (log, _) = built(&b, &["--cache-from", &cache, "--build-arg", "V=2", ctx.to_str().unwrap()]);
    assert!(log.contains(&format!("--> cache mount gen: filled from {cache} (")), "{log}");
    assert!(log.contains("cache: reused by build 1"), "{log}");
    let miss = blob_gets(&reg.requests_from_layers()[before..]);
    assert_eq!(miss.len(), 1, "only the mount's blob: {miss:?}");
    assert!(!hits.contains(&miss[0]), "the all-hit build did not fetch it: {hits:?}");
    assert_eq!(layers_ok(&b, &["fsck"]), "store is consistent");
}

#[test]
fn a_new_cache_mount_gets_the_owner_and_mode_its_mount_names() {
    if !need_root("a_new_cache_mount_gets_the_owner_and_mode_its_mount_names") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let ctx = work.path().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    let a = machine(work.path(), "a");
    for (options, want) in [("uid=1000,gid=1001,mode=0700", "1000 1001 700"), ("uid=33", "33 0 755")] {
        fs::write(
            ctx.join("Dockerfile"),
            format!(
                "FROM busybox\nRUN --mount=type=cache,target=/c,id={options},{options} stat -c 'root: %u %g %a' /c\n"
            ),
        )
        .unwrap();
        let (log, _) = built(&a, &[ctx.to_str().unwrap()]);
        assert!(log.contains(&format!("root: {want}")), "{options}: {log}");
    }
}

both_modes!(
    a_cache_mount_travels_between_runners_as_root,
    a_cache_mount_travels_between_runners_rootless,
    |mode: Mode| {
        let work = mode.work();
        let ctx = context(work.path());
        mode.give(&ctx);
        let cache = work.path().join("cache");
        let (to, from) =
            (format!("type=local,dest={},mode=max", cache.display()), format!("type=local,src={}", cache.display()));
        let runner = |name: &str| {
            let store = mode.fixture_store_in(work.path(), name);
            mode.ok(&store, &["tag", "localhost/layered", "busybox"]);
            store
        };
        let (a, b) = (runner("a"), runner("b"));
        let built = |store: &Path, args: &[&str]| {
            let mut full = vec!["build"];
            full.extend_from_slice(args);
            let out = mode.run(store, &full);
            assert!(out.status.success(), "{}: build {args:?}: {}", mode.name(), stderr(&out));
            format!("{}{}", stdout(&out), stderr(&out))
        };
        let out = built(&a, &["--cache-to", &to, ctx.to_str().unwrap()]);
        assert!(out.contains("cache: generated") && out.contains("and 1 cache mount ("), "{out}");
        // B's step misses (its input changed) and finds A's mount filled, whoever runs it.
        let out = built(&b, &["--cache-from", &from, "--build-arg", "V=2", ctx.to_str().unwrap()]);
        assert!(out.contains(&format!("--> cache mount gen: filled from {from} (")), "{out}");
        assert!(out.contains("cache: reused by build 1"), "{out}");
        assert_eq!(mode.layers_ok(&b, &["fsck"]), "store is consistent");
    }
);
