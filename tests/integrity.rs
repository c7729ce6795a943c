//! Regression tests for the integrity issues found by adversarial testing: a layer
//! blob is trusted only as the diffID it was verified to hold, committed layers never
//! change (and fsck can prove it), and what a killed process leaves is swept.

// Tests make and inspect their fixtures by path (clippy.toml bans that in the code under test).
#![allow(clippy::disallowed_methods)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// The fixture layout's `layered` image: (manifest, config) as JSON.
fn fixture_layered() -> (serde_json::Value, serde_json::Value, PathBuf) {
    let layout = fixtures().join("oci");
    let index: serde_json::Value = serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "layered")
        .unwrap()
        .clone();
    let blob = |d: &serde_json::Value| {
        let hex = d.as_str().unwrap().trim_start_matches("sha256:").to_string();
        serde_json::from_slice::<serde_json::Value>(&fs::read(layout.join("blobs/sha256").join(hex)).unwrap()).unwrap()
    };
    let manifest = blob(&entry["digest"]);
    let config = blob(&manifest["config"]["digest"]);
    (manifest, config, layout)
}

#[test]
fn load_of_a_repeated_diff_id_with_a_missing_blob_is_refused() {
    if !need_root("load_of_a_repeated_diff_id_with_a_missing_blob_is_refused") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (mut manifest, mut config, fixture) = fixture_layered();
    let out = t.path().join("layout");
    fs::create_dir_all(out.join("blobs/sha256")).unwrap();
    fs::write(out.join("oci-layout"), r#"{"imageLayoutVersion": "1.0.0"}"#).unwrap();
    // The first layer twice in the config; the manifest's second is a blob the layout lacks.
    let first_diff = config["rootfs"]["diff_ids"][0].clone();
    config["rootfs"]["diff_ids"] = serde_json::json!([first_diff.clone(), first_diff]);
    let first = manifest["layers"][0].clone();
    let hex = first["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string();
    fs::copy(fixture.join("blobs/sha256").join(&hex), out.join("blobs/sha256").join(&hex)).unwrap();
    let mut missing = first.clone();
    missing["digest"] = serde_json::json!(format!("sha256:{}", "e".repeat(64)));
    manifest["layers"] = serde_json::json!([first, missing]);
    let config_bytes = serde_json::to_vec(&config).unwrap();
    manifest["config"]["digest"] = serde_json::json!(layout_blob(&out, &config_bytes));
    manifest["config"]["size"] = serde_json::json!(config_bytes.len());
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": layout_blob(&out, &manifest_bytes), "size": manifest_bytes.len(),
        "annotations": {"org.opencontainers.image.ref.name": "twice"}}]});
    fs::write(out.join("index.json"), index.to_string()).unwrap();
    let store = t.path().join("store");
    let res = layers(&store, &["load", "-i", out.to_str().unwrap()]);
    assert_eq!(res.status.code(), Some(1), "{}", stdout(&res));
    assert!(stderr(&res).contains(&"e".repeat(64)), "{}", stderr(&res));
    assert_eq!(layers_ok(&store, &["images", "-a", "-q"]), "");
    assert_eq!(layers_ok(&store, &["fsck"]), "store is consistent");
}

#[test]
fn pulled_manifest_naming_a_stored_config_as_a_layer_is_fetched_and_refused() {
    if !need_root("pulled_manifest_naming_a_stored_config_as_a_layer_is_fetched_and_refused") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    load_fixtures(&store);
    let (manifest, config, layout) = fixture_layered();
    // The stored config blob posing as a layer whose diffID is a stored layer's.
    let config_digest = manifest["config"]["digest"].as_str().unwrap().to_string();
    let stored_config =
        fs::read(layout.join("blobs/sha256").join(config_digest.trim_start_matches("sha256:"))).unwrap();
    let mut evil_config = config.clone();
    evil_config["rootfs"]["diff_ids"] = serde_json::json!([config["rootfs"]["diff_ids"][0]]);
    let evil_config = evil_config.to_string();
    let evil = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": layers_store::Digest::of(evil_config.as_bytes()).to_string(), "size": evil_config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": config_digest, "size": stored_config.len()}]})
    .to_string();
    let evil_config_hex = layers_store::Digest::of(evil_config.as_bytes()).hex();
    let fetched = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = fetched.clone();
    let addr = fake_registry(move |req, s| {
        if req.contains("/manifests/") {
            reply(s, &evil)
        } else if req.contains(&evil_config_hex) {
            reply(s, &evil_config)
        } else {
            seen.store(true, std::sync::atomic::Ordering::SeqCst);
            reply(s, std::str::from_utf8(&stored_config).unwrap())
        }
    });
    let images_before = layers_ok(&store, &["images", "-a", "-q"]);
    let out = layers(&store, &["pull", &format!("{addr}/x/y:v1")]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(fetched.load(std::sync::atomic::Ordering::SeqCst), "the layer was taken as present without a fetch");
    assert_eq!(layers_ok(&store, &["images", "-a", "-q"]), images_before);
    assert_eq!(layers_ok(&store, &["fsck"]), "store is consistent");
}

/// Containers listed by `layers ps -a -q` (the call itself may sweep, being alone on the store).
fn containers_left(store: &Path) -> Vec<String> {
    layers_ok(store, &["ps", "-a", "-q"]).lines().map(str::to_string).collect()
}

fn kill9_and_wait(child: &mut std::process::Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn killed_build_and_run_rm_leave_no_containers_after_the_next_sweep() {
    if !need_root("killed_build_and_run_rm_leave_no_containers_after_the_next_sweep") {
        return;
    }
    let (work, store) = store_with_busybox();
    let ctx = build_context(work.path(), "ctx", "FROM busybox\nRUN echo started > /started; sleep 2\n");
    let mut build = spawn_layers(&store, &["build", "--no-cache", ctx.to_str().unwrap()]);
    // Wait until the RUN step's container exists, then kill the build.
    let started = std::time::Instant::now();
    while !fs::read_dir(store.join("containers")).map(|d| d.count() > 0).unwrap_or(false) {
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "no step container appeared");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    kill9_and_wait(&mut build);
    // The step's own `layers run` finishes its command, then nobody removes the container.
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(containers_left(&store), Vec::<String>::new(), "the killed build's step container is left");
    assert_eq!(fs::read_dir(store.join("containers")).unwrap().count(), 0);

    let mut run = spawn_layers(&store, &["run", "--rm", "--name", "doomed", "busybox", "sleep", "30"]);
    let started = std::time::Instant::now();
    while !layers_ok(&store, &["ps", "-q"]).contains(char::is_alphanumeric) {
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "the container never ran");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    kill9_and_wait(&mut run);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(containers_left(&store), Vec::<String>::new(), "the --rm container of a killed run is left");
    // A container nobody asked to remove stays.
    layers_ok(&store, &["create", "--name", "kept", "busybox"]);
    assert_eq!(containers_left(&store).len(), 1);
}

/// Every file under `dir` with its content, as one string (a whole-tree fingerprint).
fn tree_text(dir: &Path) -> String {
    files_with_contents(dir).into_iter().map(|(p, c)| format!("{p}\t{c}\n")).collect()
}

#[test]
fn commit_of_a_running_container_makes_a_layer_its_later_writes_never_reach() {
    if !need_root("commit_of_a_running_container_makes_a_layer_its_later_writes_never_reach") {
        return;
    }
    let (_work, store) = store_with_busybox();
    let script = "i=0; while true; do i=$((i+1)); echo $i > /counter; echo $i >> /log; usleep 5000; done";
    let id = layers_ok(&store, &["run", "-d", "--name", "busy", "busybox", "sh", "-c", script]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    for (name, pause) in [("snap:1", "true"), ("snap:2", "false")] {
        let image = layers_ok(&store, &["commit", "-q", &format!("--pause={pause}"), "busy", name]);
        assert!(image.starts_with("sha256:"), "{image}");
        let top = layer_dirs(&store, name).pop().unwrap();
        let upper = store.join("containers").join(&id).join("upper");
        assert!(upper.join("counter").exists(), "the container keeps its changes in its own upper dir");
        let before = tree_text(&top);
        assert!(before.contains("counter\t"), "{before}");
        std::thread::sleep(std::time::Duration::from_millis(500));
        assert_eq!(tree_text(&top), before, "{name}: the running container wrote into a committed layer");
        // The container went on running and writing, elsewhere. Its append-only log is
        // compared: /counter is truncated on every write, so a read (or an unpaused
        // commit) can catch it empty.
        let lines = |p: &std::path::Path| fs::read_to_string(p).unwrap_or_default().lines().count();
        assert!(lines(&upper.join("log")) > lines(&top.join("log")), "{name}: the container stopped writing");
    }
    layers_ok(&store, &["rm", "-f", "busy"]);
    let fsck = layers(&store, &["fsck"]);
    assert!(fsck.status.success(), "{}", stdout(&fsck));
    // What was committed runs as an image of its own.
    let log = layers_ok(&store, &["run", "--rm", "snap:1", "sh", "-c", "wc -l < /log"]);
    assert!(log.parse::<u32>().unwrap() > 0, "{log}");
}

#[test]
fn fsck_names_a_changed_layer_and_its_first_changed_path() {
    if !need_root("fsck_names_a_changed_layer_and_its_first_changed_path") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("store");
    load_fixtures(&store);
    assert_eq!(layers_ok(&store, &["fsck"]), "store is consistent");
    let top = layer_dirs(&store, "localhost/layered").pop().unwrap();
    let victim = files_with_contents(&top)
        .into_iter()
        .map(|(p, _)| p)
        .find(|p| fs::symlink_metadata(top.join(p)).unwrap().is_file());
    let victim = victim.expect("a regular file in the top layer");
    let mut f = fs::OpenOptions::new().append(true).open(top.join(&victim)).unwrap();
    std::io::Write::write_all(&mut f, b"tampered").unwrap();
    let out = layers(&store, &["fsck"]);
    assert_eq!(out.status.code(), Some(1));
    let diff_id = top.file_name().unwrap().to_string_lossy().to_string();
    let want = format!("layer sha256:{diff_id}: changed since it was made: first difference at {victim}");
    assert!(stdout(&out).contains(&want), "{}", stdout(&out));
    // --quick checks only that things exist.
    assert_eq!(layers_ok(&store, &["fsck", "--quick"]), "store is consistent");
}

#[test]
fn tree_recorded_at_unpack_matches_a_full_reread_with_hardlinks_and_replaced_entries() {
    if !need_root("tree_recorded_at_unpack_matches_a_full_reread_with_hardlinks_and_replaced_entries") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("src");
    fs::create_dir_all(dir.join("d")).unwrap();
    fs::write(dir.join("d/a"), "first").unwrap();
    fs::hard_link(dir.join("d/a"), dir.join("d/link")).unwrap();
    let tar = t.path().join("layer.tar");
    gnu_tar(&dir, &tar);
    // GNU tar appends a second `d/a` (new content) and a file that replaces a dir: the last entry wins.
    fs::write(dir.join("d/a"), "second, longer").unwrap();
    let st = Command::new("tar").arg("-C").arg(&dir).arg("-rf").arg(&tar).arg("./d/a").status().unwrap();
    assert!(st.success());
    let store = t.path().join("store");
    layers_ok(&store, &["import", "-q", tar.to_str().unwrap(), "tricky:1"]);
    let layer = layer_dirs(&store, "localhost/tricky:1").pop().unwrap();
    assert_eq!(fs::read_to_string(layer.join("d/a")).unwrap(), "second, longer");
    // fsck lists the dir again reading every file, and compares with what unpack recorded.
    assert_eq!(layers_ok(&store, &["fsck"]), "store is consistent");
}
