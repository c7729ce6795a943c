//! The shared build cache between two stores standing for two machines: a cache
//! directory written by one and read by the other.

// Tests make and inspect their fixtures by path (clippy.toml bans that in the code under test).
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::build_cache::*;
use common::*;

#[test]
fn a_cache_directory_carries_every_step_to_a_fresh_machine() {
    if !need_root("a_cache_directory_carries_every_step_to_a_fresh_machine") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let (a, b) = (machine(work.path(), "a"), machine(work.path(), "b"));
    let ctx_a = checkout(&work.path().join("checkout-a"), 1_000_000_000);
    let to = format!("type=local,dest={},mode=max", cache.display());
    let built_a = build(&a, &["-t", "greet", "--cache-to", &to, ctx_a.to_str().unwrap()]);
    let id_a = stdout(&built_a).trim().to_string();
    assert_eq!(blobs_in(&cache), referenced(&cache), "the cache directory holds what its index names");
    let exported = |out: &Output| -> (usize, usize) {
        let log = stderr(out);
        let line = log.lines().find(|l| l.starts_with("exported ")).unwrap_or_else(|| panic!("{log}")).to_string();
        assert!(line.ends_with(&format!(" MB) to type=local,dest={}", cache.display())), "{line}");
        let n = |w: &str| line.split(w).next().unwrap().rsplit(['(', ' ']).next().unwrap().parse().unwrap();
        (n(" step"), n(" new layer"))
    };
    let (steps_a, new_a) = exported(&built_a);
    assert!(steps_a > 0 && new_a > 0, "{}", stderr(&built_a));

    // Machine B: another checkout (another path, other mtimes), a fresh store.
    let ctx_b = checkout(&work.path().join("elsewhere-b"), 1_700_000_000);
    let before = layer_set(&b);
    let from = format!("type=local,src={}", cache.display());
    let built_b = build(&b, &["-t", "greet", "--cache-from", &from, ctx_b.to_str().unwrap()]);
    assert!(outcomes(&built_b).iter().all(|(_, o)| *o == "CACHED"), "{:?}", outcomes(&built_b));
    assert_eq!(stdout(&built_b).trim(), id_a, "the image from the cache has machine A's ID");
    let imported = format!("imported {steps_a} steps from {from}");
    assert!(stderr(&built_b).lines().any(|l| l == imported), "{imported}: {}", stderr(&built_b));
    assert_eq!(layers_ok(&b, &["run", "--rm", "greet"]), "hello from layers, built in stages");
    // Only the final image's layers were made on B: not the build stage's RUN layer.
    let new: BTreeSet<String> = layer_set(&b).difference(&before).cloned().collect();
    let final_layers: BTreeSet<String> =
        layer_dirs(&b, "greet").iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert!(!new.is_empty() && new.is_subset(&final_layers), "new on B: {new:?}, final: {final_layers:?}");

    // A change on B: the steps before the changed COPY hit, it and what follows run.
    fs::write(ctx_b.join("greet.sh.in"), "#!/bin/sh\necho \"hello from @NAME@, changed on B\"\n").unwrap();
    let changed = build(&b, &["-t", "greet", "--cache-from", &from, "--cache-to", &to, ctx_b.to_str().unwrap()]);
    // The miss is explained from machine A's record, which B only has through the cache.
    assert!(stderr(&changed).contains("--> cache miss: greet.sh.in changed"), "{}", stderr(&changed));
    // Only the layers the change made are new to the cache directory.
    let (_, new_changed) = exported(&changed);
    assert!(new_changed > 0 && new_changed < new_a, "{new_changed} of {new_a}: {}", stderr(&changed));
    let o = outcomes(&changed);
    assert_eq!(o.iter().map(|(_, r)| *r).collect::<Vec<_>>(), ["CACHED", "RAN", "RAN", "RAN", "RAN"], "{o:?}");
    assert_eq!(layers_ok(&b, &["run", "--rm", "greet"]), "hello from layers, changed on B");
    assert_eq!(blobs_in(&cache), referenced(&cache), "no blob left behind by the second export");
    // A reads B's export: all cached again, on A.
    let ctx_a2 = checkout(&work.path().join("checkout-a2"), 1_200_000_000);
    fs::copy(ctx_b.join("greet.sh.in"), ctx_a2.join("greet.sh.in")).unwrap();
    let again = build(&a, &["--cache-from", &from, ctx_a2.to_str().unwrap()]);
    assert!(outcomes(&again).iter().all(|(_, o)| *o == "CACHED"), "{:?}", outcomes(&again));
    assert_eq!(stdout(&again), stdout(&changed));
    assert!(layers(&b, &["fsck"]).status.success());
}

#[test]
fn a_broken_or_missing_cache_is_a_warning_and_the_build_goes_on() {
    if !need_root("a_broken_or_missing_cache_is_a_warning_and_the_build_goes_on") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let a = machine(work.path(), "a");
    let ctx = checkout(&work.path().join("ctx"), 1_000_000_000);
    build(&a, &["--cache-to", &format!("type=local,dest={}", cache.display()), ctx.to_str().unwrap()]);

    let missing = format!("type=local,src={}", work.path().join("nothing-here").display());
    let out = build(&machine(work.path(), "b"), &["--cache-from", &missing, ctx.to_str().unwrap()]);
    assert!(stderr(&out).contains("warning") && stderr(&out).contains("nothing-here"), "{}", stderr(&out));

    // A config that lies about a layer index: refused by name, built without it.
    let index: serde_json::Value = serde_json::from_slice(&fs::read(cache.join("index.json")).unwrap()).unwrap();
    let m = index["manifests"][0]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string();
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(cache.join("blobs/sha256").join(&m)).unwrap()).unwrap();
    let c = manifest["config"]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string();
    let mut config: serde_json::Value =
        serde_json::from_slice(&fs::read(cache.join("blobs/sha256").join(&c)).unwrap()).unwrap();
    config["steps"][0]["layers"] = serde_json::json!([99]);
    fs::write(cache.join("blobs/sha256").join(&c), serde_json::to_vec(&config).unwrap()).unwrap();
    let from = format!("type=local,src={}", cache.display());
    let out = build(&machine(work.path(), "c"), &["--cache-from", &from, ctx.to_str().unwrap()]);
    assert!(stderr(&out).contains(&format!("blob sha256:{c} has digest")), "{}", stderr(&out));
    assert!(outcomes(&out).iter().all(|(_, o)| *o == "RAN"), "{:?}", outcomes(&out));

    // The same lie with a matching digest (a hostile writer): refused for what it says.
    let bytes = serde_json::to_vec(&config).unwrap();
    let d = layers_store::Digest::of(&bytes);
    fs::write(cache.join("blobs/sha256").join(d.hex()), &bytes).unwrap();
    let mut manifest = manifest.clone();
    manifest["config"]["digest"] = serde_json::json!(d.to_string());
    manifest["config"]["size"] = serde_json::json!(bytes.len());
    let mbytes = serde_json::to_vec(&manifest).unwrap();
    let md = layers_store::Digest::of(&mbytes);
    fs::write(cache.join("blobs/sha256").join(md.hex()), &mbytes).unwrap();
    let mut index = index.clone();
    index["manifests"][0]["digest"] = serde_json::json!(md.to_string());
    fs::write(cache.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    let out = build(&machine(work.path(), "d"), &["--cache-from", &from, ctx.to_str().unwrap()]);
    assert!(stderr(&out).contains("layer index 99 out of range"), "{}", stderr(&out));

    // Issue 26: records that read fine over layer blobs that are missing or wrong
    // failed the whole build; now a warning naming the source, and the steps run.
    let fresh = work.path().join("fresh-cache");
    build(&a, &["--cache-to", &format!("type=local,dest={}", fresh.display()), ctx.to_str().unwrap()]);
    let fresh_from = format!("type=local,src={}", fresh.display());
    let layer_blobs: Vec<PathBuf> = {
        let index: serde_json::Value = serde_json::from_slice(&fs::read(fresh.join("index.json")).unwrap()).unwrap();
        let m = index["manifests"][0]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string();
        let manifest: serde_json::Value =
            serde_json::from_slice(&fs::read(fresh.join("blobs/sha256").join(&m)).unwrap()).unwrap();
        manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| fresh.join("blobs/sha256").join(l["digest"].as_str().unwrap().trim_start_matches("sha256:")))
            .collect()
    };
    for (case, damage) in [("wrong", true), ("missing", false)] {
        for b in &layer_blobs {
            if damage {
                let len = fs::metadata(b).map(|m| m.len()).unwrap_or(100);
                fs::write(b, vec![0x5a; len as usize]).unwrap();
            } else {
                let _ = fs::remove_file(b);
            }
        }
        let store = machine(work.path(), &format!("blobs-{case}"));
        let out = build(&store, &["-t", "greet", "--cache-from", &fresh_from, ctx.to_str().unwrap()]);
        let log = stderr(&out);
        assert!(
            log.contains(&format!("layers: warning: --cache-from {fresh_from}: "))
                && log.contains("building without it"),
            "{case}: {log}"
        );
        assert!(outcomes(&out).iter().any(|(_, o)| *o == "RAN"), "{case}: {:?}", outcomes(&out));
        assert_eq!(layers_ok(&store, &["run", "--rm", "greet"]), "hello from layers, built in stages", "{case}");
        assert!(layers(&store, &["fsck"]).status.success(), "{case}");
    }

    // Bad flags are refused before anything is built.
    for bad in ["type=local", "type=local,dest=/x,mode=all", "type=s3,bucket=b", "type=local,dest=/x,color=red"] {
        let out = layers(&a, &["build", "--cache-to", bad, ctx.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{bad}");
        assert!(stderr(&out).contains("--cache-to"), "{bad}: {}", stderr(&out));
    }
}

#[test]
fn a_registry_carries_the_cache_and_a_fresh_machine_fetches_only_what_the_image_needs() {
    if !need_root("a_registry_carries_the_cache_and_a_fresh_machine_fetches_only_what_the_image_needs") {
        return;
    }
    let reg = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let (a, b) = (machine(work.path(), "a"), machine(work.path(), "b"));
    let cache = format!("{}/cache/multistage:main", reg.addr);
    let ctx_a = checkout(&work.path().join("checkout-a"), 1_000_000_000);
    let to = format!("type=registry,ref={cache},mode=max");
    let built_a = build(&a, &["-t", "greet", "--cache-to", &to, ctx_a.to_str().unwrap()]);

    let ctx_b = checkout(&work.path().join("elsewhere-b"), 1_700_000_000);
    let had: BTreeSet<String> = layer_dirs(&b, "busybox").iter().map(|p| p.display().to_string()).collect();
    let before = reg.requests_from_layers().len();
    let built_b = build(&b, &["-t", "greet", "--cache-from", &cache, ctx_b.to_str().unwrap()]);
    assert!(outcomes(&built_b).iter().all(|(_, o)| *o == "CACHED"), "{:?}", outcomes(&built_b));
    assert_eq!(stdout(&built_b), stdout(&built_a), "the same image ID as machine A's");
    assert_eq!(layers_ok(&b, &["run", "--rm", "greet"]), "hello from layers, built in stages");
    // B fetched the cache manifest (its config carried in it) and the final image's layers it
    // lacked: nothing of the build stage.
    let requests = reg.requests_from_layers()[before..].to_vec();
    let manifest: serde_json::Value = serde_json::from_str(&layers_ok(&b, &["inspect", "--raw", "greet"])).unwrap();
    let lacking: BTreeSet<String> = manifest[0]["Manifest"]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .zip(layer_dirs(&b, "greet"))
        .filter(|(_, dir)| !had.contains(&dir.display().to_string()))
        .map(|(l, _)| l["digest"].as_str().unwrap().to_string())
        .collect();
    let fetched: BTreeSet<String> = blob_gets(&requests).into_iter().collect();
    assert_eq!(fetched, lacking, "the lacking layers and nothing else: {requests:?}");

    // A change on B: B's export sends only what the registry lacks.
    fs::write(ctx_b.join("greet.sh.in"), "#!/bin/sh\necho \"hello from @NAME@, changed on B\"\n").unwrap();
    let before = reg.requests_from_layers().len();
    build(&b, &["-t", "greet", "--cache-from", &cache, "--cache-to", &to, ctx_b.to_str().unwrap()]);
    let requests = reg.requests_from_layers()[before..].to_vec();
    let uploads = requests.iter().filter(|r| r.starts_with("PUT ") && r.contains("/blobs/uploads/")).count();
    // New: the COPY, RUN and COPY --from layers, and the cache config.
    assert_eq!(uploads, 4, "{requests:?}");
    assert_eq!(layers_ok(&b, &["run", "--rm", "greet"]), "hello from layers, changed on B");

    // Faults: a registry that is down is a warning; a push that fails fails the command, the image stays.
    let dead = "127.0.0.1:9/cache/none:x";
    let out = build(&b, &["--cache-from", dead, ctx_b.to_str().unwrap()]);
    assert!(stderr(&out).contains("warning") && stderr(&out).contains(dead), "{}", stderr(&out));
    let out = layers(
        &b,
        &["build", "-t", "kept", "--cache-to", &format!("type=registry,ref={dead}"), ctx_b.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(dead) && stderr(&out).trim().lines().last().unwrap().starts_with("layers: --cache-to"),
        "{}",
        stderr(&out)
    );
    assert!(layers(&b, &["inspect", "--raw", "kept"]).status.success(), "the built image stays");
}

#[test]
fn a_miss_names_what_changed() {
    if !need_root("a_miss_names_what_changed") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let store = machine(work.path(), "store");
    let ctx = work.path().join("ctx");
    fs::create_dir_all(ctx.join("app")).unwrap();
    fs::write(ctx.join("app/a.py"), "a").unwrap();
    fs::write(ctx.join("app/main.py"), "main").unwrap();
    let dockerfile = |run: &str| format!("FROM busybox\nARG V=1\nCOPY app/ /app/\nRUN {run}\n");
    fs::write(ctx.join("Dockerfile"), dockerfile("echo $V")).unwrap();
    build(&store, &[ctx.to_str().unwrap()]);
    let miss = |args: &[&str]| {
        let mut full = args.to_vec();
        full.push(ctx.to_str().unwrap());
        let err = stderr(&build(&store, &full));
        err.lines().filter_map(|l| l.strip_prefix("--> cache miss: ")).map(str::to_string).collect::<Vec<_>>()
    };
    fs::write(ctx.join("app/main.py"), "main, changed").unwrap();
    assert_eq!(miss(&[]), ["app/main.py changed"]);
    assert_eq!(miss(&["--build-arg", "V=2"]), ["build arg V changed"]);
    fs::write(ctx.join("Dockerfile"), dockerfile("echo $V; true")).unwrap();
    assert_eq!(miss(&["--build-arg", "V=2"]), ["the instruction changed (was: RUN echo $V)"]);
    layers_ok(&store, &["tag", "localhost/two-layers", "busybox"]);
    assert_eq!(miss(&["--build-arg", "V=2"]), ["base image busybox changed"]);
    // --no-cache looks nothing up, so it explains nothing.
    assert!(miss(&["--no-cache"]).is_empty());
}

#[test]
fn a_fresh_machine_never_fetches_the_base_of_a_stage_that_all_hits() {
    if !need_root("a_fresh_machine_never_fetches_the_base_of_a_stage_that_all_hits") {
        return;
    }
    let reg = Registry::start();
    let work = tempfile::tempdir().unwrap();
    // Two bases in the registry, made by umoci (busybox) and skopeo (a one-file image).
    reg.push(&fixtures().join("oci"), "layered", "lazy/builder-base:1", &[]);
    let root = work.path().join("final-root");
    fs::create_dir_all(&root).unwrap();
    fs::write(root.join("motd"), "final base\n").unwrap();
    let tar = work.path().join("final.tar");
    gnu_tar(&root, &tar);
    let layout = work.path().join("final-layout");
    let out = std::process::Command::new("skopeo")
        .args(["copy", "--quiet", &format!("tarball:{}", tar.display()), &format!("oci:{}:final", layout.display())])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    reg.push(&layout, "final", "lazy/final-base:1", &[]);
    let ctx = build_context(
        work.path(),
        "lazy",
        &format!(
            "FROM {r}/lazy/builder-base:1 AS build\nRUN echo built > /out\nFROM {r}/lazy/final-base:1\nCOPY --from=build /out /out\n",
            r = reg.addr
        ),
    );
    let cache = format!("{}/cache/lazy:main", reg.addr);
    let (a, b) = (work.path().join("a"), work.path().join("b"));
    let built_a =
        build(&a, &["-t", "lazy", "--cache-to", &format!("type=registry,ref={cache},mode=max"), ctx.to_str().unwrap()]);
    // Issue 26: a base not stored is pulled with its STEP line printed first and the
    // pull's progress after it (a silent 20 s pull looked like a hang), each once.
    let log = stderr(&built_a);
    let lines: Vec<&str> = log.lines().collect();
    let at =
        |prefix: &str| lines.iter().position(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("{prefix}: {log}"));
    let step1 = format!("STEP 1/4: FROM {}/lazy/builder-base:1 AS build", reg.addr);
    let step3 = format!("STEP 3/4: FROM {}/lazy/final-base:1", reg.addr);
    assert_eq!(lines[0], step1, "{log}");
    let pulled1 = at(&format!("{}/lazy/builder-base:1: pulled sha256:", reg.addr));
    let pulled3 = at(&format!("{}/lazy/final-base:1: pulled sha256:", reg.addr));
    assert!(at(&step3) < pulled3 && pulled1 < at("STEP 2/4: RUN"), "{log}");
    assert_eq!(lines.iter().filter(|l| **l == step1 || **l == step3).count(), 2, "{log}");
    // And the cache export says what it wrote, in one line.
    let exported = lines.iter().find(|l| l.starts_with("exported 2 steps (")).unwrap_or_else(|| panic!("{log}"));
    assert!(exported.ends_with(&format!(" MB) to {cache}")) && !exported.contains("(0 new layers"), "{exported}");

    let before = reg.requests_from_layers().len();
    let built_b = build(&b, &["-t", "lazy", "--cache-from", &cache, ctx.to_str().unwrap()]);
    assert!(outcomes(&built_b).iter().all(|(_, o)| *o == "CACHED"), "{:?}", outcomes(&built_b));
    assert_eq!(stdout(&built_b), stdout(&built_a), "the same image ID as machine A's");
    assert!(stderr(&built_b).lines().any(|l| l == format!("imported 2 steps from {cache}")), "{}", stderr(&built_b));
    // B read both bases' manifests and configs (their keys), and fetched the final
    // image's two layers from the cache: not one blob of the builder's base.
    let requests = reg.requests_from_layers()[before..].to_vec();
    let builder_layers: Vec<String> = layer_blobs(&a, &format!("{}/lazy/builder-base:1", reg.addr));
    let fetched: BTreeSet<String> = blob_gets(&requests).into_iter().collect();
    assert!(builder_layers.iter().all(|l| !fetched.contains(l)), "{requests:?}");
    let final_layers = layer_blobs(&b, "lazy");
    assert_eq!(final_layers.len(), 2);
    assert!(final_layers.iter().all(|l| fetched.contains(l)), "{requests:?}");
    let m = PathBuf::from(layers_ok(&b, &["mount", "lazy"]));
    let _unmount = Mounted(m.clone());
    assert_eq!(fs::read_to_string(m.join("out")).unwrap(), "built\n");
    assert_eq!(fs::read_to_string(m.join("motd")).unwrap(), "final base\n");

    // A step that misses on B: only then is its stage's base pulled.
    fs::write(ctx.join("Dockerfile"), format!("FROM {r}/lazy/final-base:1\nRUN [\"/nonexistent\"]\n", r = reg.addr))
        .unwrap();
    let out = layers(&b, &["build", "--cache-from", &cache, ctx.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        layers(&b, &["inspect", "--raw", &format!("{}/lazy/final-base:1", reg.addr)]).status.success(),
        "pulled to run on"
    );
}

/// The layer blob digests of IMAGE in STORE.
fn layer_blobs(store: &Path, image: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(&layers_ok(store, &["inspect", "--raw", image])).unwrap();
    v[0]["Manifest"]["layers"].as_array().unwrap().iter().map(|l| l["digest"].as_str().unwrap().to_string()).collect()
}

/// Machine A's build of `dockerfile` exported to a cache directory (`mode`): the work
/// dir, the cache directory, the context.
fn exported(dockerfile: &str, mode: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let a = machine(work.path(), "a");
    let ctx = work.path().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    let to = format!("type=local,dest={},mode={mode}", cache.display());
    build(&a, &["--cache-to", &to, ctx.to_str().unwrap()]);
    (work, cache, ctx)
}

/// Rewrites the cache directory's config with `change`, and its manifest and index
/// to match (as a hostile writer with the directory could).
fn rewrite_cache_config(cache: &Path, change: impl FnOnce(&mut serde_json::Value)) {
    let blobs = cache.join("blobs/sha256");
    let mut index: serde_json::Value = serde_json::from_slice(&fs::read(cache.join("index.json")).unwrap()).unwrap();
    let m = index["manifests"][0]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string();
    let mut manifest: serde_json::Value = serde_json::from_slice(&fs::read(blobs.join(&m)).unwrap()).unwrap();
    let c = manifest["config"]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string();
    let mut config: serde_json::Value = serde_json::from_slice(&fs::read(blobs.join(&c)).unwrap()).unwrap();
    change(&mut config);
    let bytes = serde_json::to_vec(&config).unwrap();
    let d = layers_store::Digest::of(&bytes);
    fs::write(blobs.join(d.hex()), &bytes).unwrap();
    manifest["config"]["digest"] = serde_json::json!(d.to_string());
    manifest["config"]["size"] = serde_json::json!(bytes.len());
    if let Some(m) = manifest["config"].as_object_mut() {
        m.remove("data");
    }
    let mbytes = serde_json::to_vec(&manifest).unwrap();
    let md = layers_store::Digest::of(&mbytes);
    fs::write(blobs.join(md.hex()), &mbytes).unwrap();
    index["manifests"][0]["digest"] = serde_json::json!(md.to_string());
    index["manifests"][0]["size"] = serde_json::json!(mbytes.len());
    fs::write(cache.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

/// Issue 26: an imported record's instruction was printed raw in a miss's
/// explanation: escape sequences from outside reached the terminal.
#[test]
fn a_miss_explained_from_an_imported_record_escapes_its_text() {
    if !need_root("a_miss_explained_from_an_imported_record_escapes_its_text") {
        return;
    }
    let (work, cache, ctx) = exported("FROM busybox\nRUN echo one > /one\n", "min");
    rewrite_cache_config(&cache, |c| {
        c["steps"][0]["instruction"] = serde_json::json!("RUN echo one > /one\u{1b}[2J\u{1b}]0;pwned\u{7}");
    });
    fs::write(ctx.join("Dockerfile"), "FROM busybox\nRUN echo two > /two\n").unwrap();
    let b = machine(work.path(), "b");
    let out = build(&b, &["--cache-from", &format!("type=local,src={}", cache.display()), ctx.to_str().unwrap()]);
    let log = stderr(&out);
    assert!(!log.contains('\u{1b}') && !log.contains('\u{7}'), "{log:?}");
    assert!(log.contains("--> cache miss: the instruction changed (was: RUN echo one > /one\\u{1b}[2J"), "{log}");
}

/// Issue 26: a --cache-from registry that accepts connections and never answers
/// delayed the build 121-306 s before the warning. An optional cache gets 30 s by
/// default ($LAYERS_CACHE_FROM_TIMEOUT, here 2 s), then the build goes on without it.
#[test]
fn a_hanging_cache_source_costs_the_build_its_timeout_only() {
    if !need_root("a_hanging_cache_source_costs_the_build_its_timeout_only") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    // Accepts, reads, never answers.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in listener.incoming().flatten() {
            held.push(c);
        }
    });
    let store = machine(work.path(), "a");
    let ctx = checkout(&work.path().join("ctx"), 1_000_000_000);
    let started = std::time::Instant::now();
    let out = layers_cmd()
        .env("LAYERS_CACHE_FROM_TIMEOUT", "2")
        .arg("--root")
        .arg(&store)
        .args(["build", "--cache-from", &format!("{addr}/cache/app:main"), ctx.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no cache read within 2s ($LAYERS_CACHE_FROM_TIMEOUT); going on without it"),
        "{}",
        stderr(&out)
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "{:?}", started.elapsed());
}

/// Issue 26: imported records are checked against what their step makes: a record
/// whose layers drop its parent's (the base image's) or whose config is not what its
/// instruction makes (a USER step that sets Env) is refused by name, and the step runs.
#[test]
fn imported_records_that_do_not_fit_their_step_are_refused() {
    if !need_root("imported_records_that_do_not_fit_their_step_are_refused") {
        return;
    }
    let (work, cache, ctx) = exported("FROM busybox\nUSER nobody\nRUN echo hi > /tmp/x\nUSER root\n", "max");
    rewrite_cache_config(&cache, |c| {
        for s in c["steps"].as_array_mut().unwrap() {
            let mut config: serde_json::Value = serde_json::from_str(s["config"].as_str().unwrap()).unwrap();
            if s["instruction"] == "USER nobody" {
                config["config"]["Env"].as_array_mut().unwrap().push(serde_json::json!("EVIL=1"));
            } else if s["instruction"].as_str().unwrap().starts_with("RUN") {
                // Only its own layer: the base image's are dropped.
                let own = s["layers"].as_array().unwrap().last().unwrap().clone();
                s["layers"] = serde_json::json!([own]);
                let diffs = config["rootfs"]["diff_ids"].as_array().unwrap().clone();
                config["rootfs"]["diff_ids"] = serde_json::json!([diffs.last().unwrap()]);
            }
            s["config"] = serde_json::json!(serde_json::to_string(&config).unwrap());
        }
    });
    let b = machine(work.path(), "b");
    let out = build(
        &b,
        &["-t", "checked", "--cache-from", &format!("type=local,src={}", cache.display()), ctx.to_str().unwrap()],
    );
    let log = stderr(&out);
    assert!(
        log.contains("the record of \"USER nobody\" is not used: its config is not what the instruction makes"),
        "{log}"
    );
    // Keys are the instructions and their parents' keys: the RUN's record is looked
    // up after the USER ran here, and refused for dropping the base's layers; the
    // last USER's record, whose parent record is that one, no longer extends it.
    assert!(log.contains("the record of \"RUN echo hi > /tmp/x\" is not used: its layers do not start with the base image's 3 layer(s)"), "{log}");
    assert!(
        log.contains(
            "the record of \"USER root\" is not used: its layers do not start with its parent record's 1 layer(s)"
        ),
        "{log}"
    );
    let o: Vec<&str> = outcomes(&out).iter().map(|(_, o)| *o).collect();
    assert_eq!(o, ["RAN", "RAN", "RAN"], "{log}");
    let env = layers_ok(&b, &["inspect", "-f", "{{json .Config.Env}}", "checked"]);
    assert!(!env.contains("EVIL"), "{env}");
    assert_eq!(layers_ok(&b, &["run", "--rm", "checked", "cat", "/tmp/x"]), "hi");
    assert!(layers(&b, &["fsck"]).status.success());
}
