//! `layers pull` against a real registry (CNCF distribution, `docker-registry`),
//! seeded by skopeo from umoci-built layouts; pulled images are checked file by
//! file against `umoci unpack` of the same image.

// Tests make and inspect their fixtures by path (clippy.toml bans that in the code under test).
#![allow(clippy::disallowed_methods)]

mod common;

use std::fs;
use std::path::Path;

use common::*;

fn manifest_digest(layout: &Path, tag: &str) -> String {
    let index: serde_json::Value = serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The merged view of a pulled image equals umoci's unpack of its source layout.
fn assert_same_as_umoci(store: &Path, image: &str, layout: &Path, tag: &str, work: &Path) {
    let dirs = layer_dirs(store, image);
    let theirs = umoci_unpack(layout, tag, &work.join(format!("bundle-{}", image.replace(['/', ':'], "_"))));
    let merged = work.join(format!("merged-{}", image.replace(['/', ':'], "_")));
    let _m = mount_overlay(&dirs, &merged);
    let diffs = compare_trees(&merged, &theirs, Mtimes::Files);
    assert!(diffs.is_empty(), "{image}: differs from umoci unpack:\n{}", diffs.join("\n"));
}

#[test]
fn pulled_images_equal_umoci_unpack_in_every_format() {
    if !need_root("pulled_images_equal_umoci_unpack_in_every_format") {
        return;
    }
    let layout = fixtures().join("oci");
    let reg = Registry::start();
    reg.push(&layout, "layered", "fixture/layered:v1", &[]);
    reg.push(&layout, "layered", "fixture/docker:v1", &["--format", "v2s2"]);
    let work = tempfile::tempdir().unwrap();
    // zstd layers: recompressed into a local layout first (a registry push would reuse the gzip blobs).
    let zstd = work.path().join("zstd-layout");
    let out = std::process::Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-compress", "--dest-compress-format", "zstd"])
        .arg(format!("oci:{}:layered", layout.display()))
        .arg(format!("oci:{}:layered", zstd.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    reg.push(&zstd, "layered", "fixture/zstd:v1", &[]);
    // Uncompressed layers: skopeo writes them into a `dir:` copy; curl uploads that verbatim.
    let plain = work.path().join("plain-dir");
    let out = std::process::Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-decompress"])
        .arg(format!("oci:{}:layered", layout.display()))
        .arg(format!("dir:{}", plain.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    reg.upload_dir(&plain, "fixture/plain", "v1");
    let store = work.path().join("store");
    for name in ["fixture/layered:v1", "fixture/docker:v1", "fixture/zstd:v1", "fixture/plain:v1"] {
        let image = format!("{}/{name}", reg.addr);
        let out = layers(&store, &["pull", &image]);
        assert!(out.status.success(), "pull {image}: {}", stderr(&out));
        assert_same_as_umoci(&store, &image, &layout, "layered", work.path());
    }
    let inspect: serde_json::Value =
        serde_json::from_str(&stdout(&layers(&store, &["inspect", "--raw", &format!("{}/fixture/zstd:v1", reg.addr)])))
            .unwrap();
    let media: Vec<&str> =
        inspect[0]["Manifest"]["layers"].as_array().unwrap().iter().map(|l| l["mediaType"].as_str().unwrap()).collect();
    assert!(media.iter().all(|m| m.ends_with("+zstd")), "{media:?}");
    let inspect: serde_json::Value = serde_json::from_str(&stdout(&layers(
        &store,
        &["inspect", "--raw", &format!("{}/fixture/plain:v1", reg.addr)],
    )))
    .unwrap();
    let media: Vec<&str> =
        inspect[0]["Manifest"]["layers"].as_array().unwrap().iter().map(|l| l["mediaType"].as_str().unwrap()).collect();
    assert!(media.iter().all(|m| m.ends_with(".tar")), "{media:?}");
    let fsck = layers(&store, &["fsck"]);
    assert!(fsck.status.success(), "{}", stdout(&fsck));
    // Same layers in four encodings: one layer dir per diffID, shared.
    assert_eq!(fs::read_dir(store.join("layers")).unwrap().count(), 3);
}

both_modes!(
    a_second_pull_fetches_nothing_and_a_digest_pull_is_verified,
    a_second_pull_fetches_nothing_and_a_digest_pull_is_verified_rootless,
    second_pull_and_digest_pull
);

fn second_pull_and_digest_pull(mode: Mode) {
    let layers = |store: &Path, args: &[&str]| mode.run(store, args);
    let layout = fixtures().join("oci");
    let reg = Registry::start();
    reg.push(&layout, "layered", "fixture/layered:v1", &[]);
    let work = mode.work();
    let store = work.path().join("store");
    let image = format!("{}/fixture/layered:v1", reg.addr);
    let first = layers(&store, &["pull", &image]);
    assert!(first.status.success(), "{}", stderr(&first));
    let digest = stdout(&first).trim().to_string();
    assert_eq!(digest, manifest_digest(&layout, "layered"), "prints the manifest digest");
    let blobs = fs::read_dir(store.join("blobs/sha256")).unwrap().count();
    let before = reg.requests_from_layers().len();
    let again = layers(&store, &["pull", &image]);
    assert!(again.status.success());
    assert!(stderr(&again).contains("image is up to date"), "{}", stderr(&again));
    assert_eq!(reg.requests_from_layers()[before..], ["GET /v2/fixture/layered/manifests/v1"], "one request, no probe");
    assert_eq!(fs::read_dir(store.join("blobs/sha256")).unwrap().count(), blobs);

    // By digest, into a fresh store; a layer already present from another image is not fetched again.
    let store2 = work.path().join("store2");
    reg.push(&layout, "two-layers", "fixture/two:v1", &[]);
    assert!(layers(&store2, &["pull", "-q", &format!("{}/fixture/two:v1", reg.addr)]).status.success());
    let by_digest = layers(&store2, &["pull", &format!("{}/fixture/layered@{digest}", reg.addr)]);
    assert!(by_digest.status.success(), "{}", stderr(&by_digest));
    assert_eq!(stderr(&by_digest).matches("already exists").count(), 2, "{}", stderr(&by_digest));
    let wrong = format!("{}/fixture/layered@sha256:{}", reg.addr, "0".repeat(64));
    let out = layers(&store2, &["pull", &wrong]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).lines().count() == 1, "{}", stderr(&out));
    let missing = layers(&store2, &["pull", &format!("{}/fixture/nope:v1", reg.addr)]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("fixture/nope:v1"), "{}", stderr(&missing));
    assert!(layers(&store2, &["fsck"]).status.success());
}

#[test]
fn multi_platform_indexes_pick_the_platform_or_say_what_they_offer() {
    if !need_root("multi_platform_indexes_pick_the_platform_or_say_what_they_offer") {
        return;
    }
    let layout = fixtures().join("oci");
    let reg = Registry::start();
    reg.push(&layout, "multi", "fixture/multi:v1", &["--all"]);
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let image = format!("{}/fixture/multi:v1", reg.addr);
    let arm = layers(&store, &["pull", "-q", "--platform", "linux/arm64", &image]);
    assert!(arm.status.success(), "{}", stderr(&arm));
    assert_eq!(stdout(&arm).trim(), manifest_digest(&layout, "two-layers"));
    let amd = layers(&store, &["pull", "-q", "--platform", "linux/amd64", &image]);
    assert_eq!(stdout(&amd).trim(), manifest_digest(&layout, "layered"));
    // Present already: the index alone is fetched, the platform's manifest is found in the store.
    let before = reg.requests_from_layers().len();
    let again = layers(&store, &["pull", "-q", "--platform", "linux/amd64", &image]);
    assert_eq!(stdout(&again).trim(), manifest_digest(&layout, "layered"));
    assert_eq!(reg.requests_from_layers()[before..], ["GET /v2/fixture/multi/manifests/v1"]);
    let none = layers(&store, &["pull", "--platform", "linux/s390x", &image]);
    assert_eq!(none.status.code(), Some(1));
    let err = stderr(&none);
    assert!(err.contains("no image for platform linux/s390x") && err.contains("linux/amd64, linux/arm64/v8"), "{err}");
}

#[test]
fn docker_hub_names_go_through_the_configured_mirrors_in_order() {
    if !need_root("docker_hub_names_go_through_the_configured_mirrors_in_order") {
        return;
    }
    let layout = fixtures().join("oci");
    let reg = Registry::start();
    reg.push(&layout, "layered", "library/busybox:latest", &[]);
    let work = tempfile::tempdir().unwrap();
    // The first mirror is down (a port nothing listens on); the second serves the image.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = work.path().join("registries.toml");
    fs::write(
        &config,
        format!("[registries.\"docker.io\"]\nmirrors = [\"http://127.0.0.1:{dead}\", \"{}\"]\n", reg.addr),
    )
    .unwrap();
    let store = work.path().join("store");
    let pull_with = |config: &Path| {
        layers_cmd()
            .arg("--root")
            .arg(&store)
            .arg("--registries-config")
            .arg(config)
            .args(["pull", "busybox"])
            .output()
            .unwrap()
    };
    let out = pull_with(&config);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains(&format!("127.0.0.1:{dead}")), "the dead mirror is reported: {}", stderr(&out));
    // Stored under its Docker Hub name, shown in Docker's familiar form.
    let raw = stdout(&layers(&store, &["inspect", "--raw", "busybox"]));
    assert!(raw.contains("\"docker.io/library/busybox:latest\""), "stored under its Docker Hub name: {raw}");
    let images = stdout(&layers(&store, &["images"]));
    assert!(images.lines().any(|l| l.starts_with("busybox ")), "{images}");
    assert_same_as_umoci(&store, "busybox", &layout, "layered", work.path());

    let bad = work.path().join("bad.toml");
    fs::write(&bad, "[registries.\"docker.io\"]\nmirors = []\n").unwrap();
    let out = pull_with(&bad);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("bad.toml") && stderr(&out).contains("mirors"), "{}", stderr(&out));
}

#[test]
fn concurrent_pulls_share_layers_and_download_each_blob_once() {
    if !need_root("concurrent_pulls_share_layers_and_download_each_blob_once") {
        return;
    }
    let layout = fixtures().join("oci");
    let reg = Registry::start();
    reg.push(&layout, "layered", "fixture/layered:v1", &[]);
    reg.push(&layout, "two-layers", "fixture/two:v1", &[]);
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    // Create the store first so every puller finds it ready.
    assert!(layers(&store, &["images"]).status.success());
    let children: Vec<_> = (0..6)
        .map(|i| {
            let image = if i % 2 == 0 { "fixture/layered:v1" } else { "fixture/two:v1" };
            spawn_layers(&store, &["pull", &format!("{}/{image}", reg.addr)])
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "concurrent pull failed: {}", stderr(&out));
    }
    let inspect: serde_json::Value = serde_json::from_str(&stdout(&layers(
        &store,
        &["inspect", "--raw", &format!("{}/fixture/layered:v1", reg.addr)],
    )))
    .unwrap();
    for l in inspect[0]["Manifest"]["layers"].as_array().unwrap() {
        let d = l["digest"].as_str().unwrap();
        assert_eq!(reg.blob_downloads(d), 1, "layer blob {d} downloaded once");
    }
    let fsck = layers(&store, &["fsck"]);
    assert!(fsck.status.success(), "{}", stdout(&fsck));
    assert_eq!(fs::read_dir(store.join("tmp")).unwrap().count(), 0);
}

#[test]
fn a_pull_killed_at_any_moment_is_finished_by_the_next_one() {
    if !need_root("a_pull_killed_at_any_moment_is_finished_by_the_next_one") {
        return;
    }
    let layout = fixtures().join("oci");
    let reg = Registry::start();
    reg.push(&layout, "layered", "fixture/layered:v1", &[]);
    let work = tempfile::tempdir().unwrap();
    let image = format!("{}/fixture/layered:v1", reg.addr);
    // Kill points spread over a pull's life: before, during and after the layer fetches.
    for (i, delay_ms) in [0u64, 5, 15, 30, 50, 80].into_iter().enumerate() {
        let store = work.path().join(format!("store-{i}"));
        assert!(layers(&store, &["images"]).status.success());
        let mut child = layers_cmd()
            .arg("--root")
            .arg(&store)
            .args(["pull", "-q", &image])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        let fsck = layers(&store, &["fsck"]);
        assert!(fsck.status.success(), "kill after {delay_ms} ms: fsck: {}{}", stdout(&fsck), stderr(&fsck));
        let again = layers(&store, &["pull", &image]);
        assert!(again.status.success(), "kill after {delay_ms} ms: re-pull: {}", stderr(&again));
        assert_eq!(fs::read_dir(store.join("tmp")).unwrap().count(), 0);
        assert!(layers(&store, &["fsck"]).status.success());
        assert_same_as_umoci(&store, &image, &layout, "layered", &work.path().join(format!("cmp-{i}")));
    }
}

#[test]
fn dropped_connections_and_server_errors_are_retried_and_resumed() {
    if !need_root("dropped_connections_and_server_errors_are_retried_and_resumed") {
        return;
    }
    let layout = fixtures().join("oci");
    let reg = Registry::start();
    reg.push(&layout, "layered", "fixture/layered:v1", &[]);
    let work = tempfile::tempdir().unwrap();
    for (name, fault, says) in [
        ("cut", Fault::CutAfter { bytes: 300_000, times: 3 }, "resuming"),
        ("stall", Fault::StallAfter { bytes: 300_000, times: 2 }, "resuming"),
        ("503", Fault::Status { code: 503, times: 2, retry_after: None }, "retrying"),
        ("429", Fault::Status { code: 429, times: 2, retry_after: Some(1) }, "as the registry asked (Retry-After)"),
    ] {
        let proxy = FaultProxy::start(&reg.addr, fault);
        let store = work.path().join(format!("store-{name}"));
        let image = format!("{}/fixture/layered:v1", proxy.addr);
        let started = std::time::Instant::now();
        let mut cmd = layers_cmd();
        let out =
            cmd.env("LAYERS_STALL_TIMEOUT", "1").arg("--root").arg(&store).args(["pull", &image]).output().unwrap();
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{name}: {}", stderr(&out));
        if name == "429" {
            // Two answers each asking for 1 s; our own backoff alone would wait 0.4 + 0.8 s.
            assert!(started.elapsed().as_secs_f64() >= 2.0, "waited out Retry-After: {:?}", started.elapsed());
        }
        assert!(layers(&store, &["fsck"]).status.success());
        assert_same_as_umoci(&store, &image, &layout, "layered", &work.path().join(format!("cmp-{name}")));
    }
}

#[test]
fn a_flipped_byte_fails_naming_both_digests_and_leaves_no_image() {
    if !need_root("a_flipped_byte_fails_naming_both_digests_and_leaves_no_image") {
        return;
    }
    let layout = fixtures().join("oci");
    let reg = Registry::start();
    reg.push(&layout, "layered", "fixture/layered:v1", &[]);
    let proxy = FaultProxy::start(&reg.addr, Fault::FlipAt { pos: 400_000 });
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let out = layers(&store, &["pull", &format!("{}/fixture/layered:v1", proxy.addr)]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("layers: ") && last.contains("content has digest sha256:"), "{err}");
    let images = stdout(&layers(&store, &["images", "-q"]));
    assert!(images.trim().is_empty(), "no image is visible: {images}");
    assert_eq!(fs::read_dir(store.join("tmp")).unwrap().count(), 0);
    assert!(layers(&store, &["fsck"]).status.success());
    // The next pull (no fault) completes it, fetching only what was not verified.
    let again = layers(&store, &["pull", &format!("{}/fixture/layered:v1", reg.addr)]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(stderr(&again).contains("already exists"), "verified layers were kept: {}", stderr(&again));
}

#[test]
fn basic_auth_needs_login_and_credentials_stay_with_their_host() {
    if !need_root("basic_auth_needs_login_and_credentials_stay_with_their_host") {
        return;
    }
    let layout = fixtures().join("oci");
    let reg = Registry::start_with_basic_auth("alice", "s3cret");
    reg.push(&layout, "layered", "fixture/layered:v1", &["--dest-creds", "alice:s3cret"]);
    let work = tempfile::tempdir().unwrap();
    let home = work.path().join("home");
    fs::create_dir_all(&home).unwrap();
    let store = work.path().join("store");
    let image = format!("{}/fixture/layered:v1", reg.addr);

    let anon = layers_as_user(&home, &store, &["pull", &image], None, None);
    assert_eq!(anon.status.code(), Some(1));
    assert!(
        stderr(&anon).contains(&format!("unauthorized: log in with `layers login {}`", reg.addr)),
        "{}",
        stderr(&anon)
    );

    let wrong =
        layers_as_user(&home, &store, &["login", "-u", "alice", "--password-stdin", &reg.addr], Some("nope\n"), None);
    assert_eq!(wrong.status.code(), Some(1));
    assert!(stderr(&wrong).contains("wrong user name or password"), "{}", stderr(&wrong));
    assert!(!home.join("config/layers/auth.json").exists(), "nothing saved for a failed login");

    let ok =
        layers_as_user(&home, &store, &["login", "-u", "alice", "--password-stdin", &reg.addr], Some("s3cret\n"), None);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(stdout(&ok).contains("Login Succeeded"));
    let file = home.join("config/layers/auth.json");
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&file).unwrap().permissions()) & 0o777, 0o600);
    let pulled = layers_as_user(&home, &store, &["pull", &image], None, None);
    assert!(pulled.status.success(), "{}", stderr(&pulled));
    assert_same_as_umoci(&store, &image, &layout, "layered", work.path());

    let out = layers_as_user(&home, &store, &["logout", &reg.addr], None, None);
    assert!(out.status.success(), "{}", stderr(&out));
    // Logged out already: Docker says so and succeeds.
    let again = layers_as_user(&home, &store, &["logout", &reg.addr], None, None);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(stdout(&again).trim(), format!("Not logged in to {}", reg.addr));
    // No registry named: Docker Hub, checked where its pulls go (its mirror, here the registry).
    let config = work.path().join("registries.toml");
    fs::write(&config, format!("[registries.\"docker.io\"]\nmirrors = [\"{}\"]\n", reg.addr)).unwrap();
    let hub = ["--registries-config", config.to_str().unwrap(), "login", "-u", "alice", "--password-stdin"];
    let wrong = layers_as_user(&home, &store, &hub, Some("nope\n"), None);
    assert!(stderr(&wrong).contains("wrong user name or password"), "{}", stderr(&wrong));
    let hub_ok = layers_as_user(&home, &store, &hub, Some("s3cret\n"), None);
    assert!(hub_ok.status.success() && stdout(&hub_ok).contains("Login Succeeded"), "{}", stderr(&hub_ok));
    let out = layers_as_user(&home, &store, &["logout"], None, None);
    assert_eq!(stdout(&out).trim(), "Removing login credentials for docker.io", "{}", stderr(&out));
    let store2 = work.path().join("store2");
    assert_eq!(layers_as_user(&home, &store2, &["pull", &image], None, None).status.code(), Some(1));

    // Docker's format through $REGISTRY_AUTH_FILE; another host's entry is never borrowed.
    let b64 = |s: &str| {
        let out = std::process::Command::new("base64")
            .arg("-w0")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        out.stdin.as_ref().unwrap().write_all(s.as_bytes()).unwrap();
        String::from_utf8(out.wait_with_output().unwrap().stdout).unwrap()
    };
    let other = work.path().join("other.json");
    fs::write(&other, format!("{{\"auths\": {{\"127.0.0.1:1\": {{\"auth\": \"{}\"}}}}}}", b64("alice:s3cret")))
        .unwrap();
    assert_eq!(layers_as_user(&home, &store2, &["pull", &image], None, Some(&other)).status.code(), Some(1));
    let docker = work.path().join("docker.json");
    fs::write(
        &docker,
        format!("{{\"auths\": {{\"http://{}\": {{\"auth\": \"{}\"}}}}}}", reg.addr, b64("alice:s3cret")),
    )
    .unwrap();
    let out = layers_as_user(&home, &store2, &["pull", &image], None, Some(&docker));
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn tls_registries_are_refused_unless_their_ca_is_trusted_or_tls_verify_is_off() {
    if !need_root("tls_registries_are_refused_unless_their_ca_is_trusted_or_tls_verify_is_off") {
        return;
    }
    let layout = fixtures().join("oci");
    let reg = Registry::start_with_tls();
    reg.push(&layout, "two-layers", "fixture/two:v1", &[]);
    let work = tempfile::tempdir().unwrap();
    // Loopback means plain http unless the registry is marked `insecure = false`.
    let config = work.path().join("registries.toml");
    fs::write(&config, format!("[registries.\"{}\"]\ninsecure = false\n", reg.addr)).unwrap();
    let config = config.to_str().unwrap();
    let store = work.path().join("store");
    let image = format!("{}/fixture/two:v1", reg.addr);
    let refused = layers(&store, &["--registries-config", config, "pull", &image]);
    assert_eq!(refused.status.code(), Some(1));
    let err = stderr(&refused);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&reg.addr) && err.to_lowercase().contains("certificate"), "{err}");
    assert!(stdout(&layers(&store, &["images", "-q"])).trim().is_empty());
    // Verification on, the registry's CA trusted (the system's roots are loaded when the
    // first certificate is checked, and SSL_CERT_FILE is among them).
    let trusted = layers_cmd()
        .arg("--root")
        .arg(work.path().join("trusting"))
        .args(["--registries-config", config, "pull", &image])
        .env("SSL_CERT_FILE", reg.tls_ca())
        .env_remove("SSL_CERT_DIR")
        .output()
        .unwrap();
    assert!(trusted.status.success(), "{}", stderr(&trusted));
    let out = layers(&store, &["--registries-config", config, "pull", "--tls-verify=false", &image]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_same_as_umoci(&store, &image, &layout, "two-layers", work.path());
}

#[test]
fn credentials_are_not_sent_where_a_blob_redirect_leads() {
    if !need_root("credentials_are_not_sent_where_a_blob_redirect_leads") {
        return;
    }
    let layout = fixtures().join("oci");
    // Blob storage: an open registry holding the same blobs, behind a proxy that records what it is sent.
    let storage = Registry::start();
    storage.push(&layout, "layered", "fixture/layered:v1", &[]);
    let storage_proxy = HttpProxy::start(&storage.addr, None);
    // The registry: basic auth, and every blob GET redirected to the storage under another host name.
    let reg = Registry::start_with_basic_auth("alice", "s3cret");
    reg.push(&layout, "layered", "fixture/layered:v1", &["--dest-creds", "alice:s3cret"]);
    let port = storage_proxy.addr.rsplit_once(':').unwrap().1;
    let front = HttpProxy::start(&reg.addr, Some(format!("http://localhost:{port}")));
    let work = tempfile::tempdir().unwrap();
    let (home, store) = (work.path().join("home"), work.path().join("store"));
    fs::create_dir_all(&home).unwrap();
    let login = ["login", "-u", "alice", "--password-stdin", &front.addr];
    assert!(layers_as_user(&home, &store, &login, Some("s3cret\n"), None).status.success());
    let image = format!("{}/fixture/layered:v1", front.addr);
    let out = layers_as_user(&home, &store, &["pull", &image], None, None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_same_as_umoci(&store, &image, &layout, "layered", work.path());

    let has_auth = |h: &String| h.lines().any(|l| l.to_ascii_lowercase().starts_with("authorization:"));
    let redirected: Vec<String> = front.heads().into_iter().filter(|h| h.contains("/blobs/sha256:")).collect();
    assert!(redirected.len() >= 4 && redirected.iter().all(has_auth), "the registry got credentials: {redirected:?}");
    let fetched = storage_proxy.heads();
    assert!(fetched.iter().filter(|h| h.contains("/blobs/sha256:")).count() >= 4, "{fetched:?}");
    assert!(!fetched.iter().any(has_auth), "no Authorization at the redirect's host: {fetched:?}");
}

#[test]
fn bearer_token_registries_are_pulled_anonymously_like_docker_hub() {
    if !need_root("bearer_token_registries_are_pulled_anonymously_like_docker_hub") {
        return;
    }
    let layout = fixtures().join("oci");
    let reg = Registry::start_with_token_auth();
    reg.push(&layout, "layered", "fixture/tok:v1", &[]);
    let work = tempfile::tempdir().unwrap();
    let home = work.path().join("home");
    fs::create_dir_all(&home).unwrap();
    let store = work.path().join("store");
    let image = format!("{}/fixture/tok:v1", reg.addr);
    let before = reg.token_log().lines().count();
    let out = layers_as_user(&home, &store, &["pull", &image], None, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let asked: Vec<String> = reg.token_log().lines().skip(before).map(str::to_string).collect();
    assert!(
        asked
            .iter()
            .any(|l| l.contains("scope=repository%3Afixture%2Ftok%3Apull") && l.contains("service=layers-test")),
        "layers asked the realm for a pull token: {asked:?}"
    );
    assert_same_as_umoci(&store, &image, &layout, "layered", work.path());
}
