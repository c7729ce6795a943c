//! Containers on real overlay mounts: create, mount, diff, commit, rm, leases, and
//! deep layer stacks. Images come from umoci and Python's tarfile; results are
//! checked with `umoci unpack` and GNU tar.

// Tests make and inspect their fixtures by path (clippy.toml bans that in the code under test).
#![allow(clippy::disallowed_methods)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// An OCI layout made from the store's blobs by hand (not by layers), for umoci to read.
fn layout_from_store(store: &Path, name: &str, dir: &Path) {
    let manifest = stored_manifest(store, name);
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    for e in fs::read_dir(store.join("blobs/sha256")).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), blobs.join(e.file_name())).unwrap();
    }
    let size = fs::metadata(blobs.join(manifest.trim_start_matches("sha256:"))).unwrap().len();
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    fs::write(
        dir.join("index.json"),
        format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{manifest}","size":{size},"annotations":{{"org.opencontainers.image.ref.name":"x"}}}}]}}"#
        ),
    )
    .unwrap();
}

fn mount_options(path: &Path) -> String {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let p = path.to_str().unwrap();
    info.lines().find(|l| l.split(' ').nth(4) == Some(p)).map(|l| l.to_string()).unwrap_or_default()
}

#[test]
fn fixture_images_mount_like_umoci_unpacks_them() {
    if !need_root("fixture_images_mount_like_umoci_unpacks_them") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    load_fixtures(&store);
    for tag in ["two-layers", "layered"] {
        let merged = PathBuf::from(layers_ok(&store, &["mount", &format!("localhost/{tag}")]));
        let opts = mount_options(&merged);
        assert!(opts.contains("nosuid") && opts.contains("nodev"), "host-visible mounts are nosuid,nodev: {opts}");
        let rootfs = umoci_unpack(&fixtures().join("oci"), tag, &work.path().join(format!("umoci-{tag}")));
        let diffs = compare_trees(&merged, &rootfs, Mtimes::Files);
        assert!(diffs.is_empty(), "{tag}: {diffs:#?}");
        let name = format!("{tag}-working-container");
        assert!(layers_ok(&store, &["ps"]).contains(&name));
        layers_ok(&store, &["umount", &name]);
        assert!(!layers_ok(&store, &["ps"]).contains(&name), "ps without -a lists mounted containers");
        assert!(layers_ok(&store, &["ps", "-a"]).contains(&name));
        layers_ok(&store, &["rm", &name]);
    }
    assert!(layers_ok(&store, &["ps", "-a", "-q"]).is_empty());
    assert!(layers(&store, &["fsck"]).status.success());
}

#[test]
fn a_committed_container_round_trips_through_umoci_with_exactly_its_whiteouts() {
    if !need_root("a_committed_container_round_trips_through_umoci_with_exactly_its_whiteouts") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    load_fixtures(&store);
    let id = layers_ok(&store, &["create", "--name", "rt", "localhost/layered"]);
    assert_eq!(id.len(), 64);
    let m = PathBuf::from(layers_ok(&store, &["mount", "rt"]));
    fs::write(m.join("added.txt"), "added\n").unwrap();
    let mut passwd = fs::read(m.join("etc/passwd")).unwrap();
    passwd.extend_from_slice(b"new:x:1000:1000::/home/new:/bin/sh\n");
    fs::write(m.join("etc/passwd"), passwd).unwrap();
    fs::remove_file(m.join("etc/hostname")).unwrap();
    fs::remove_dir_all(m.join("opt/app")).unwrap();
    fs::remove_dir_all(m.join("data/keep")).unwrap();
    fs::create_dir(m.join("data/keep")).unwrap();
    fs::write(m.join("data/keep/other"), "replaced\n").unwrap();
    std::os::unix::fs::chown(m.join("etc/group"), Some(123), Some(456)).unwrap();
    fs::set_permissions(m.join("etc/passwd"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    rustix::fs::setxattr(m.join("opt/owned"), "user.test", b"value", rustix::fs::XattrFlags::empty()).unwrap();
    fs::hard_link(m.join("added.txt"), m.join("added-link")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", m.join("link")).unwrap();
    assert!(Command::new("mkfifo").arg(m.join("newfifo")).status().unwrap().success());

    let diff = layers_ok(&store, &["diff", "rt"]);
    for line in ["A /added.txt", "C /etc/passwd", "D /etc/hostname", "D /opt/app", "C /data/keep", "A /newfifo"] {
        assert!(diff.lines().any(|l| l == line), "{line} in\n{diff}");
    }

    let image = layers_ok(&store, &["commit", "-q", "rt", "roundtrip:v1"]);
    assert!(image.starts_with("sha256:"), "{image}");
    assert!(!mount_options(&m).is_empty(), "a mounted container is mounted again after commit");
    assert!(layers_ok(&store, &["diff", "rt"]).is_empty(), "the container goes on from the new image");
    let rootfs = {
        let layout = work.path().join("layout");
        layout_from_store(&store, "localhost/roundtrip:v1", &layout);
        let bundle = work.path().join("bundle");
        assert!(Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:x", layout.display()))
            .arg(&bundle)
            .status()
            .unwrap()
            .success());
        bundle.join("rootfs")
    };
    let diffs = compare_trees(&m, &rootfs, Mtimes::Files);
    assert!(diffs.is_empty(), "{diffs:#?}");
    assert_eq!(std::os::unix::fs::MetadataExt::nlink(&fs::metadata(rootfs.join("added-link")).unwrap()), 2);

    // The new layer is the manifest's last; GNU tar lists its entries.
    let manifest = stored_manifest(&store, "localhost/roundtrip:v1");
    let m_json: serde_json::Value =
        serde_json::from_slice(&fs::read(store.join("blobs/sha256").join(&manifest[7..])).unwrap()).unwrap();
    let top = m_json["layers"].as_array().unwrap().last().unwrap()["digest"].as_str().unwrap()[7..].to_string();
    let out = Command::new("tar").arg("-tzf").arg(store.join("blobs/sha256").join(top)).output().unwrap();
    assert!(out.status.success());
    let mut wh: Vec<String> = stdout(&out).lines().filter(|l| l.contains(".wh.")).map(str::to_string).collect();
    wh.sort();
    assert_eq!(wh, ["data/keep/.wh..wh..opq", "etc/.wh.hostname", "opt/.wh.app"]);
    assert!(layers(&store, &["fsck"]).status.success());
}

#[test]
fn committing_the_same_changes_twice_gives_the_same_layer() {
    if !need_root("committing_the_same_changes_twice_gives_the_same_layer") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    load_fixtures(&store);
    let mut layer_digests = Vec::new();
    for name in ["one", "two"] {
        layers_ok(&store, &["create", "--name", name, "localhost/two-layers"]);
        let m = PathBuf::from(layers_ok(&store, &["mount", name]));
        fs::create_dir(m.join("new")).unwrap();
        fs::write(m.join("new/file"), "same\n").unwrap();
        fs::remove_file(m.join("etc/hostname")).unwrap();
        for p in ["new/file", "new", "etc"] {
            assert!(Command::new("touch").args(["-h", "-d", "@1700000000"]).arg(m.join(p)).status().unwrap().success());
        }
        layers_ok(&store, &["umount", name]);
        layers_ok(&store, &["commit", "-q", name, &format!("same:{name}")]);
        let manifest = stored_manifest(&store, &format!("localhost/same:{name}"));
        let v: serde_json::Value =
            serde_json::from_slice(&fs::read(store.join("blobs/sha256").join(&manifest[7..])).unwrap()).unwrap();
        layer_digests.push(v["layers"].as_array().unwrap().last().unwrap()["digest"].clone());
    }
    assert_eq!(layer_digests[0], layer_digests[1]);
    assert!(layers(&store, &["fsck"]).status.success());
}

#[test]
fn a_containers_layers_survive_rmi_and_gc_until_it_is_removed() {
    if !need_root("a_containers_layers_survive_rmi_and_gc_until_it_is_removed") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    load_fixtures(&store);
    layers_ok(&store, &["rmi", "localhost/multi"]);
    layers_ok(&store, &["create", "--name", "keep", "localhost/layered"]);
    let refused = layers(&store, &["rmi", "localhost/layered"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("used by container keep"), "{}", stderr(&refused));
    layers_ok(&store, &["rmi", "-f", "localhost/layered"]);
    layers_ok(&store, &["rmi", "localhost/two-layers"]);
    layers_ok(&store, &["gc"]);
    let layer_count = || fs::read_dir(store.join("layers")).unwrap().count();
    assert_eq!(layer_count(), 3, "the container's three layers stay");
    let m = PathBuf::from(layers_ok(&store, &["mount", "keep"]));
    assert!(m.join("data/replace/new-file").exists());
    let busy = layers(&store, &["rm", "keep"]);
    assert_eq!(busy.status.code(), Some(1), "a mounted container needs -f");
    layers_ok(&store, &["rm", "-f", "keep"]);
    assert!(mount_options(&m).is_empty());
    // The untagged image is now unused: gone with rmi by ID, then gc frees its layers.
    let id = layers_ok(&store, &["images", "-q"]);
    layers_ok(&store, &["rmi", &id]);
    layers_ok(&store, &["gc"]);
    assert_eq!(layer_count(), 0);
    assert_eq!(fs::read_dir(store.join("containers")).unwrap().count(), 0);
    assert!(layers(&store, &["fsck"]).status.success());
}

#[test]
fn a_commit_killed_at_any_moment_leaves_no_image_and_the_container_intact() {
    if !need_root("a_commit_killed_at_any_moment_leaves_no_image_and_the_container_intact") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    load_fixtures(&store);
    layers_ok(&store, &["create", "--name", "big", "localhost/two-layers"]);
    let m = PathBuf::from(layers_ok(&store, &["mount", "big"]));
    for d in 0..100 {
        let dir = m.join(format!("many/{d}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..100 {
            fs::write(dir.join(f.to_string()), format!("{d}/{f}\n").repeat(200)).unwrap();
        }
    }
    fs::remove_file(m.join("etc/hostname")).unwrap();
    layers_ok(&store, &["umount", "big"]);
    let before = layers_ok(&store, &["diff", "big"]);
    let images = layers_ok(&store, &["images", "-q"]);
    let mut killed = 0;
    for delay_ms in [2u64, 20, 60, 120, 200, 300, 450] {
        let mut child = spawn_layers(&store, &["commit", "big", "killed:v1"]);
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        if child.wait().unwrap().success() {
            eprintln!("commit finished within {delay_ms} ms: no later kill point");
            break;
        }
        killed += 1;
        // Any later command alone on the store recovers.
        layers_ok(&store, &["gc"]);
        assert!(layers(&store, &["fsck"]).status.success());
        if layers_ok(&store, &["images", "-q"]) != images {
            // Killed after the commit point: the commit is whole, the container moved onto it.
            assert!(layers_ok(&store, &["images"]).contains("localhost/killed"), "kill at {delay_ms} ms");
            assert!(layers_ok(&store, &["diff", "big"]).is_empty(), "kill at {delay_ms} ms");
            break;
        }
        assert_eq!(
            layers_ok(&store, &["diff", "big"]),
            before,
            "the container's changes survive a kill at {delay_ms} ms"
        );
    }
    assert!(killed >= 3, "only {killed} kills landed before the commit finished");
    // And a commit left alone completes (or the last round's did).
    if layers_ok(&store, &["diff", "big"]) == before {
        layers_ok(&store, &["commit", "big", "done:v1"]);
    }
    assert!(layers_ok(&store, &["diff", "big"]).is_empty());
    let m = PathBuf::from(layers_ok(&store, &["mount", "big"]));
    assert_eq!(fs::read_to_string(m.join("many/99/99")).unwrap(), "99/99\n".repeat(200));
    assert!(!m.join("etc/hostname").exists());
    layers_ok(&store, &["rm", "-f", "big"]);
}

#[test]
fn images_of_200_and_499_layers_mount_and_500_is_refused_with_advice() {
    if !need_root("images_of_200_and_499_layers_mount_and_500_is_refused_with_advice") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    for n in [200usize, 499] {
        let layout = work.path().join(format!("deep-{n}"));
        deep_layout(&layout, n);
        let store = work.path().join(format!("store-{n}"));
        layers_ok(&store, &["load", "-i", layout.to_str().unwrap()]);
        let m = PathBuf::from(layers_ok(&store, &["mount", "localhost/deep"]));
        assert_eq!(fs::read_dir(m.join("l")).unwrap().count(), n);
        assert_eq!(fs::read_to_string(m.join("top")).unwrap(), (n - 1).to_string());
        assert!(!m.join("gone").exists());
        assert_eq!(fs::read_dir(m.join("d")).unwrap().map(|e| e.unwrap().file_name()).collect::<Vec<_>>(), ["new"]);
        if n == 200 {
            let rootfs = umoci_unpack(&layout, "deep", &work.path().join("umoci-200"));
            let diffs = compare_trees(&m, &rootfs, Mtimes::Files);
            assert!(diffs.is_empty(), "{diffs:#?}");
        }
        layers_ok(&store, &["rm", "-f", "deep-working-container"]);
    }
    let layout = work.path().join("deep-500");
    deep_layout(&layout, 500);
    let store = work.path().join("store-500");
    layers_ok(&store, &["load", "-i", layout.to_str().unwrap()]);
    let out = layers(&store, &["mount", "localhost/deep"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.lines().count() == 1 && err.contains("500 layers") && err.contains("squash"), "{err}");
    assert!(layers_ok(&store, &["ps", "-a", "-q"]).is_empty(), "no container is left behind");
}

#[test]
fn the_mount_2_fallback_mounts_the_same_tree() {
    if !need_root("the_mount_2_fallback_mounts_the_same_tree") {
        return;
    }
    use layers_store::snapshots::mount::{mount_spec, unmount_path, MountOptions};
    let work = tempfile::tempdir().unwrap();
    let store_dir = work.path().join("store");
    load_fixtures(&store_dir);
    let store = layers_store::Store::open(&store_dir).unwrap();
    let img = store.images().resolve("localhost/layered").unwrap();
    let c = store
        .snapshots()
        .create(&img.manifest, Some("legacy"), "layered", layers_store::snapshots::containers::Lifetime::Kept)
        .unwrap();
    let spec = store.snapshots().mount_spec(&c).unwrap();
    let (new_api, legacy) = (work.path().join("new"), work.path().join("legacy"));
    fs::create_dir(&new_api).unwrap();
    fs::create_dir(&legacy).unwrap();
    mount_spec(&store.snapshots().image_view(&img.manifest).unwrap(), &new_api, MountOptions::default()).unwrap();
    mount_spec(&spec, &legacy, MountOptions { legacy: true, ..Default::default() }).unwrap();
    assert!(mount_options(&legacy).contains("lowerdir="), "{}", mount_options(&legacy));
    let diffs = compare_trees(&new_api, &legacy, Mtimes::All);
    unmount_path(&new_api, false).unwrap();
    unmount_path(&legacy, false).unwrap();
    assert!(diffs.is_empty(), "{diffs:#?}");
}
