//! `layers build --push` and `--output type=registry|image` (issue 31): the built
//! image goes to its names in a registry, where a fresh machine pulls and runs it;
//! a name with nowhere to go is refused before anything is built.

// Tests make and inspect their fixtures by path (clippy.toml bans that in the code under test).
#![allow(clippy::disallowed_methods)]

mod common;

use common::build_cache::*;
use common::*;

/// Blobs sent in `requests`: the `PUT …/blobs/uploads/…?digest=` that ends each upload.
fn uploads(requests: &[String]) -> usize {
    requests.iter().filter(|r| r.starts_with("PUT ") && r.contains("/blobs/uploads/")).count()
}

#[test]
fn build_push_sends_the_image_to_its_names_and_a_fresh_machine_runs_it() {
    if !need_root("build_push_sends_the_image_to_its_names_and_a_fresh_machine_runs_it") {
        return;
    }
    let reg = Registry::start();
    let work = tempfile::tempdir().unwrap();
    let (a, c) = (machine(work.path(), "a"), machine(work.path(), "c"));
    let ctx = checkout(&work.path().join("checkout"), 1_000_000_000);
    let one = format!("{}/app/greet:1", reg.addr);
    let out = build(&a, &["-t", &one, "--push", ctx.to_str().unwrap()]);
    let id = stdout(&out).trim().to_string();
    assert!(stderr(&out).contains(&format!("Pushed {}/app/greet:1@sha256:", reg.addr)), "{}", stderr(&out));

    // BuildKit's spellings: type=registry with a name, type=image with push=true.
    let two = format!("{}/app/greet:2", reg.addr);
    build(&a, &["--output", &format!("type=registry,name={two}"), ctx.to_str().unwrap()]);
    let three = format!("{}/app/greet:3", reg.addr);
    build(&a, &["-t", &three, "--output", "type=image,push=true", ctx.to_str().unwrap()]);

    for name in [&one, &two, &three] {
        layers_ok(&c, &["pull", "-q", name]);
        assert_eq!(layers_ok(&c, &["inspect", "-f", "{{.Id}}", name]).trim(), id, "{name}");
        assert_eq!(layers_ok(&c, &["run", "--rm", name]), "hello from layers, built in stages");
    }
    // The later pushes found the blobs there: only the first uploaded them (the layers and the config).
    let raw: serde_json::Value = serde_json::from_str(&layers_ok(&a, &["inspect", "--raw", &one])).unwrap();
    let blobs = raw[0]["Manifest"]["layers"].as_array().unwrap().len() + 1;
    let requests = reg.requests_from_layers();
    assert_eq!(uploads(&requests), blobs, "{requests:?}");
}

/// Runner A, which built the example and exported its cache to `cache` (mode=max) in
/// `reg`, and a fresh runner B.
struct Runners {
    reg: Registry,
    a: std::path::PathBuf,
    b: std::path::PathBuf,
    ctx: std::path::PathBuf,
    cache: String,
}

fn runners(work: &std::path::Path) -> Runners {
    let reg = Registry::start();
    let (a, b) = (machine(work, "a"), machine(work, "b"));
    let ctx = checkout(&work.join("checkout"), 1_000_000_000);
    let cache = format!("{}/cache/greet:main", reg.addr);
    build(&a, &["--cache-to", &format!("type=registry,ref={cache},mode=max"), ctx.to_str().unwrap()]);
    Runners { reg, a, b, ctx, cache }
}

#[test]
fn a_fresh_runner_that_hits_a_registry_cache_pushes_no_layer() {
    if !need_root("a_fresh_runner_that_hits_a_registry_cache_pushes_no_layer") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let Runners { reg, a, b, ctx, cache } = runners(work.path());

    let before = reg.requests_from_layers().len();
    let name = format!("{}/app/greet:ci", reg.addr);
    let out = build(&b, &["-t", &name, "--cache-from", &cache, "--push", ctx.to_str().unwrap()]);
    assert!(outcomes(&out).iter().all(|(_, o)| *o == "CACHED"), "{:?}", outcomes(&out));
    let requests = reg.requests_from_layers()[before..].to_vec();
    // What the push did with each blob is said: the config, not in the cache, was uploaded.
    let said: Vec<String> =
        stderr(&out).lines().filter(|l| l.contains("not mounted from cache/greet")).map(String::from).collect();
    assert_eq!(said.len(), 1, "{}", stderr(&out));
    // The layers are mounted from the cache's repository; the image config is the only blob sent.
    assert_eq!(uploads(&requests), 1, "{requests:?}");
    let raw: serde_json::Value = serde_json::from_str(&layers_ok(&b, &["inspect", "--raw", &name])).unwrap();
    let image_layers: Vec<String> = raw[0]["Manifest"]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    for l in &image_layers {
        let mount = format!("mount={}&from=cache%2Fgreet", l.replace(':', "%3A"));
        assert!(requests.iter().any(|r| r.starts_with("POST ") && r.contains(&mount)), "{mount}: {requests:?}");
    }
    // Nothing was downloaded: the image is known-remote on b, its layers in the cache's repository.
    let gets = blob_gets(&requests);
    assert!(image_layers.iter().all(|l| !gets.contains(l)), "layers fetched: {gets:?}");
    assert!(layer_set(&b).len() < layer_set(&a).len(), "b unpacked the image's layers");

    // fsck and df say so, and neither counts it as present or broken.
    let fsck = layers(&b, &["fsck"]);
    assert!(fsck.status.success(), "{}", stderr(&fsck));
    let said = stdout(&fsck);
    assert!(said.contains("remote:") && said.contains("not fetched yet") && said.contains("cache/greet"), "{said}");
    assert!(layers_ok(&b, &["df"]).contains("1 of the images are remote"));

    // The registries config is read only to fetch: a broken one leaves a local image's
    // save alone, and fails the remote one's naming it (nothing fetched).
    let broken = ["--registries-config", "/nonexistent/registries.toml", "save", "-o"];
    let local = b.join("local.tar");
    layers_ok(&b, &[&broken[..], &[local.to_str().unwrap(), "localhost/layered"]].concat());
    let out = layers(&b, &[&broken[..], &[b.join("x.tar").to_str().unwrap(), &name]].concat());
    assert!(!out.status.success() && stderr(&out).contains("/nonexistent/registries.toml"), "{}", stderr(&out));
    assert!(layers_ok(&b, &["fsck"]).contains("remote:"));

    // The first use fetches them (save, here), once; then fsck finds nothing remote and run works.
    let before = reg.requests_from_layers().len();
    let tar = b.join("saved.tar");
    let out = layers(&b, &["save", "-o", tar.to_str().unwrap(), &name]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed = std::process::Command::new("tar").arg("-tf").arg(&tar).output().unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    for l in &image_layers {
        assert!(listed.contains(&format!("blobs/sha256/{}", l.trim_start_matches("sha256:"))), "{l}: {listed}");
    }
    let gets = blob_gets(&reg.requests_from_layers()[before..]);
    assert!(image_layers.iter().all(|l| gets.iter().filter(|g| *g == l).count() <= 1), "{gets:?}");
    let fsck = layers_ok(&b, &["fsck"]);
    assert!(!fsck.contains("remote:"), "{fsck}");
    assert_eq!(layers_ok(&b, &["run", "--rm", &name]), "hello from layers, built in stages");
}

#[test]
fn a_remote_image_is_fetched_by_the_first_command_that_needs_its_layers() {
    if !need_root("a_remote_image_is_fetched_by_the_first_command_that_needs_its_layers") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let Runners { reg, a: _, b, ctx, cache } = runners(work.path());
    let name = format!("{}/app/greet:ci", reg.addr);
    build(&b, &["-t", &name, "--cache-from", &cache, "--push", ctx.to_str().unwrap()]);
    // Run, even told never to pull, fetches the stored image's own layers (no name is looked up again).
    let before = layer_set(&b);
    let out = layers(&b, &["run", "--rm", "--pull", "never", &name]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "hello from layers, built in stages");
    assert!(stderr(&out).contains("fetching"), "{}", stderr(&out));
    assert!(layer_set(&b).len() > before.len());
    // Pushed again elsewhere: it is local now, so the push reads its own blobs.
    let again = format!("{}/app/copy:1", reg.addr);
    layers_ok(&b, &["push", &name, &again]);
}

#[test]
fn a_name_with_no_registry_is_refused_before_the_build() {
    if !need_root("a_name_with_no_registry_is_refused_before_the_build") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let a = machine(work.path(), "a");
    let ctx = checkout(&work.path().join("checkout"), 1_000_000_000);
    for (args, want) in [
        (vec!["-t", "greet:1", "--push"], "--push: greet:1 has no registry to push to: name it REGISTRY/NAME:TAG"),
        (vec!["--push"], "--push: name the image to push (-t REGISTRY/NAME:TAG)"),
        (vec!["--output", "type=registry,push=false"], "type=registry always pushes"),
    ] {
        let mut full = vec!["build"];
        full.extend(args.iter().copied());
        full.push(ctx.to_str().unwrap());
        let out = layers(&a, &full);
        let err = stderr(&out);
        assert!(!out.status.success() && err.lines().count() == 1 && err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("STEP"), "refused before the build: {err}");
    }
}

#[test]
fn a_push_to_another_registry_than_the_caches_uploads_and_says_so() {
    if !need_root("a_push_to_another_registry_than_the_caches_uploads_and_says_so") {
        return;
    }
    let (cache_reg, other) = (Registry::start(), Registry::start());
    let work = tempfile::tempdir().unwrap();
    let (a, b, c) = (machine(work.path(), "a"), machine(work.path(), "b"), machine(work.path(), "c"));
    let ctx = checkout(&work.path().join("checkout"), 1_000_000_000);
    let cache = format!("{}/cache/greet:main", cache_reg.addr);
    build(&a, &["--cache-to", &format!("type=registry,ref={cache},mode=max"), ctx.to_str().unwrap()]);
    let name = format!("{}/app/greet:ci", other.addr);
    let out = build(&b, &["-t", &name, "--cache-from", &cache, "--push", ctx.to_str().unwrap()]);
    let want = format!(
        "push {name}: the build cache is on {}, not {}: its layers are uploaded, not mounted",
        cache_reg.addr, other.addr
    );
    assert!(stderr(&out).lines().any(|l| l == want), "{want}: {}", stderr(&out));
    // The image was left remote by the build: its layers are fetched from the cache to be uploaded.
    let fetch = format!(
        "push {name}: {} did not mount the remote image's layers from {}/cache/greet: fetching them to upload",
        other.addr, cache_reg.addr
    );
    assert!(stderr(&out).lines().any(|l| l == fetch), "{fetch}: {}", stderr(&out));
    layers_ok(&c, &["pull", "-q", &name]);
    assert_eq!(layers_ok(&c, &["run", "--rm", &name]), "hello from layers, built in stages");
}
