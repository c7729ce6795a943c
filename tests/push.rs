//! `layers push` against the real distribution registry: only missing blobs go up,
//! blobs another repository holds are mounted, chunked uploads, a flaky registry,
//! and what was pushed reads back identical through skopeo and umoci, and pulls and
//! runs in podman.

// Tests make and inspect their fixtures by path (clippy.toml bans that in the code under test).
#![allow(clippy::disallowed_methods)]

mod common;

use common::*;

fn setup() -> (tempfile::TempDir, std::path::PathBuf) {
    store_with_fixtures()
}

/// The layers-sent requests of one kind (`POST`, `PUT`, `PATCH`, `HEAD`) on blobs.
fn blob_requests(reg: &Registry, method: &str) -> Vec<String> {
    reg.requests_from_layers()
        .into_iter()
        .filter(|r| r.starts_with(&format!("{method} ")) && r.contains("/blobs/"))
        .collect()
}

both_modes!(
    only_missing_blobs_are_sent_others_are_mounted_and_the_image_reads_back_identical,
    only_missing_blobs_are_sent_others_are_mounted_and_the_image_reads_back_identical_rootless,
    missing_blobs_only
);

fn missing_blobs_only(mode: Mode) {
    let layers = |store: &std::path::Path, args: &[&str]| mode.run(store, args);
    let layers_ok = |store: &std::path::Path, args: &[&str]| mode.layers_ok(store, args);
    let (work, store) = mode.store_with_fixtures();
    let reg = Registry::start();
    let raw: serde_json::Value =
        serde_json::from_str(&layers_ok(&store, &["inspect", "--raw", "localhost/layered:latest"])).unwrap();
    let manifest = raw[0]["Digest"].as_str().unwrap().to_string();
    let first = format!("{}/team/app:v1", reg.addr);
    let out = layers(&store, &["push", "localhost/layered", &first]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), manifest, "prints the manifest digest, unchanged");
    let blobs = blob_requests(&reg, "PUT").len();
    assert!(blobs >= 2, "config and layers uploaded: {:?}", reg.requests_from_layers());

    // Again: HEADs only, then the manifest.
    let before = reg.requests_from_layers().len();
    assert!(layers(&store, &["push", "localhost/layered", &first]).status.success());
    let again: Vec<String> = reg.requests_from_layers()[before..].to_vec();
    assert!(again.iter().all(|r| r.starts_with("HEAD ") || r.starts_with("PUT /v2/team/app/manifests/")), "{again:?}");
    assert_eq!(again.iter().filter(|r| r.starts_with("HEAD ")).count(), blobs);

    // To another repository of the same registry: mounted from the first, nothing uploaded.
    layers_ok(&store, &["tag", "localhost/layered", &first]);
    let (puts, posts) = (blob_requests(&reg, "PUT").len(), blob_requests(&reg, "POST").len());
    let second = format!("{}/other/app:v2", reg.addr);
    let out = layers(&store, &["push", &first, &second]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("mounted from team/app"), "{}", stderr(&out));
    assert_eq!(blob_requests(&reg, "PUT").len(), puts, "no blob uploaded");
    let mounts = blob_requests(&reg, "POST")[posts..].to_vec();
    assert!(
        mounts.len() == blobs && mounts.iter().all(|r| r.contains("mount=") && r.contains("from=team%2Fapp")),
        "{mounts:?}"
    );

    // An independent reader: skopeo sees the same manifest digest, umoci the same files.
    assert_eq!(registry_digest(&second), manifest);
    let copied = work.path().join("copied");
    let copy = std::process::Command::new("skopeo")
        .args(["copy", "--quiet", "--src-tls-verify=false", &format!("docker://{second}")])
        .arg(format!("oci:{}:v2", copied.display()))
        .output()
        .unwrap();
    assert!(copy.status.success(), "{}", stderr(&copy));
    let ours = umoci_unpack(&copied, "v2", &work.path().join("ours"));
    let original = umoci_unpack(&fixtures().join("oci"), "layered", &work.path().join("original"));
    assert_eq!(compare_trees(&original, &ours, Mtimes::Files), Vec::<String>::new());
}

#[test]
fn chunked_uploads_survive_a_flaky_registry_and_a_built_image_pulls_back() {
    if !need_root("chunked_uploads_survive_a_flaky_registry_and_a_built_image_pulls_back") {
        return;
    }
    let (work, store) = setup();
    layers_ok(&store, &["tag", "localhost/layered", "busybox"]);
    let ctx = work.path().join("multistage");
    let cp = std::process::Command::new("cp")
        .arg("-a")
        .arg(repo().join("Dockerfile-examples/multistage"))
        .arg(&ctx)
        .status()
        .unwrap();
    assert!(cp.success());
    let built = layers(&store, &["build", "-q", "-t", "greet", ctx.to_str().unwrap()]);
    assert!(built.status.success(), "{}", stderr(&built));

    let reg = Registry::start();
    let proxy = FaultProxy::start(&reg.addr, Fault::Status { code: 503, times: 2, retry_after: None });
    let dest = format!("{}/built/greet:1", proxy.addr);
    let out = layers(&store, &["push", "--chunk-size", "65536", "greet", &dest]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("retrying"), "the 503s were retried: {}", stderr(&out));
    assert!(!blob_requests(&reg, "PATCH").is_empty(), "blobs went up in chunks");
    let manifest = stored_manifest(&store, "localhost/greet:latest");
    assert_eq!(stdout(&out).trim(), manifest);

    let other = work.path().join("other");
    let pulled = layers(&other, &["pull", "-q", &format!("{}/built/greet:1", reg.addr)]);
    assert_eq!(stdout(&pulled).trim(), manifest, "pulled back: the same manifest digest");
    let run = layers(&other, &["run", "--rm", &format!("{}/built/greet:1", reg.addr)]);
    assert_eq!(stdout(&run), "hello from layers, built in stages\n", "{}", stderr(&run));

    let missing = layers(&store, &["push", "no-such-image", &dest]);
    assert_eq!(missing.status.code(), Some(1));
    let by_digest = layers(&store, &["push", "greet", &format!("{}/x@sha256:{}", reg.addr, "0".repeat(64))]);
    assert!(stderr(&by_digest).contains("give a tag"), "{}", stderr(&by_digest));
}

/// Files podman and layers each see inside the python example's image: every node's
/// type, mode, owner, size and (but for directories, which each unpacker may make)
/// mtime, and the application's contents.
const APP_LISTING: &str = "cd / ; find app bin lib lib64 usr ! -type d -exec stat -c '%n %F %a %u %g %s %Y' {} + | sort ; \
    find app bin lib lib64 usr -type d -exec stat -c '%n %F %a %u %g' {} + | sort ; md5sum app/*.txt app/hello/*.py app/hello/__pycache__/*";

#[test]
fn a_built_and_pushed_image_pulls_and_runs_in_podman_with_the_same_files_and_config() {
    if !need_root("a_built_and_pushed_image_pulls_and_runs_in_podman_with_the_same_files_and_config") {
        return;
    }
    let (work, store) = setup();
    load_python_base(&store);
    let ctx = repo().join("Dockerfile-examples/python-app");
    let built = layers(&store, &["build", "-q", "-t", "hello", ctx.to_str().unwrap()]);
    assert!(built.status.success(), "{}", stderr(&built));
    let reg = Registry::start();
    let dest = format!("{}/apps/hello:1", reg.addr);
    let pushed = layers(&store, &["push", "-q", "hello", &dest]);
    assert!(pushed.status.success(), "{}", stderr(&pushed));
    let manifest = stored_manifest(&store, "localhost/hello:latest");

    let pm = work.path().join("podman");
    let pulled = podman(&pm, &["pull", "-q", "--tls-verify=false", &dest]);
    assert!(pulled.status.success(), "podman pull: {}", stderr(&pulled));
    let inspect = podman(&pm, &["image", "inspect", &dest]);
    let theirs: serde_json::Value = serde_json::from_slice(&inspect.stdout).expect("podman image inspect");
    let theirs = &theirs[0];
    assert_eq!(theirs["Digest"], manifest.as_str(), "podman sees our manifest digest");
    let run = |args: &[&str]| {
        let mut full = vec!["run", "--runtime", "runc", "--rm", "--net", "none"];
        full.extend_from_slice(args);
        podman(&pm, &full)
    };
    let default = run(&[&dest]);
    let with_listing = run(&[&dest, "sh", "-c", APP_LISTING]);
    let _ = podman(&pm, &["system", "reset", "-f"]);
    assert!(default.status.success(), "podman run: {}", stderr(&default));
    assert_eq!(stdout(&default), stdout(&layers(&store, &["run", "--rm", "hello"])), "the same program output");
    let ours = layers(&store, &["run", "--rm", "hello", "sh", "-c", APP_LISTING]);
    assert!(ours.status.success() && with_listing.status.success(), "{} {}", stderr(&ours), stderr(&with_listing));
    assert!(stdout(&ours).contains("app/hello/__pycache__/__main__.cpython-311.pyc"), "{}", stdout(&ours));
    assert_eq!(stdout(&with_listing), stdout(&ours), "podman sees the same files");

    let ours: serde_json::Value = serde_json::from_str(&layers_ok(&store, &["inspect", "--raw", "hello"])).unwrap();
    let ours = &ours[0]["Config"]["config"];
    for (key, podman_key) in [
        ("Cmd", "Cmd"),
        ("Entrypoint", "Entrypoint"),
        ("Env", "Env"),
        ("WorkingDir", "WorkingDir"),
        ("User", "User"),
        ("ExposedPorts", "ExposedPorts"),
        ("Labels", "Labels"),
    ] {
        let podman_value = &theirs["Config"][podman_key];
        let ours_value = ours.get(key).unwrap_or(&serde_json::Value::Null);
        assert_eq!(podman_value, ours_value, "config {key}");
    }
}

#[test]
fn pushes_authenticate_like_pulls_with_basic_credentials_or_a_push_token() {
    if !need_root("pushes_authenticate_like_pulls_with_basic_credentials_or_a_push_token") {
        return;
    }
    let (work, store) = setup();
    let manifest = stored_manifest(&store, "localhost/layered:latest");
    let home = work.path().join("home");
    std::fs::create_dir_all(&home).unwrap();

    // Basic auth: refused with the way out named, then accepted after `layers login`.
    let reg = Registry::start_with_basic_auth("alice", "s3cret");
    let dest = format!("{}/team/app:v1", reg.addr);
    let anon = layers_as_user(&home, &store, &["push", "localhost/layered", &dest], None, None);
    assert_eq!(anon.status.code(), Some(1));
    assert!(stderr(&anon).contains(&format!("layers login {}", reg.addr)), "{}", stderr(&anon));
    assert_eq!(stderr(&anon).lines().count(), 1, "one line: {}", stderr(&anon));
    let login =
        layers_as_user(&home, &store, &["login", "-u", "alice", "--password-stdin", &reg.addr], Some("s3cret\n"), None);
    assert!(login.status.success(), "{}", stderr(&login));
    let out = layers_as_user(&home, &store, &["push", "-q", "localhost/layered", &dest], None, None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), manifest);

    // Token auth (Docker Hub's flow): a token with push rights for the repository, and
    // for a cross-repository mount pull rights on the source too.
    let reg = Registry::start_with_token_auth();
    let first = format!("{}/team/app:v1", reg.addr);
    let out = layers_as_user(&home, &store, &["push", "localhost/layered", &first], None, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let log = reg.token_log();
    // The registry names the actions in either order.
    let push_scope = ["repository%3Ateam%2Fapp%3Apull%2Cpush", "repository%3Ateam%2Fapp%3Apush%2Cpull"];
    assert!(push_scope.iter().any(|s| log.contains(s)), "a push token was asked for: {log}");
    // Four blobs in parallel, one token each for pulling (HEAD) and pushing: not one per blob.
    assert_eq!(log.lines().count(), 2, "{log}");
    layers_ok(&store, &["tag", "localhost/layered", &first]);
    let second = format!("{}/other/app:v2", reg.addr);
    let before = log.lines().count();
    let out = layers_as_user(&home, &store, &["push", &first, &second], None, None);
    assert!(out.status.success(), "{} {}\n{:?}", stderr(&out), reg.token_log(), reg.requests_from_layers());
    assert!(stderr(&out).contains("mounted from team/app"), "{}", stderr(&out));
    let asked: Vec<String> = reg.token_log().lines().skip(before).map(str::to_string).collect();
    assert!(asked.iter().any(|l| l.contains("repository%3Ateam%2Fapp%3Apull")), "the mount's source scope: {asked:?}");
    assert_eq!(registry_digest(&second), manifest);
}
