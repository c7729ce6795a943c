//! `export`, `save` and `load`, checked against independent tools: GNU tar reads
//! exports, umoci reads saved OCI layouts, podman loads and runs saved
//! docker-archives, and skopeo writes docker-archives for us to load.

// Tests make and inspect their fixtures by path (clippy.toml bans that in the code under test).
#![allow(clippy::disallowed_methods)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn digests(store: &Path) -> String {
    layers_ok(store, &["images", "--digests", "--format", "json"])
}

#[test]
fn export_writes_the_flattened_rootfs_and_import_takes_it_back() {
    if !need_root("export_writes_the_flattened_rootfs_and_import_takes_it_back") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    load_fixtures(&store);
    let tar = work.path().join("layered.tar");
    layers_ok(&store, &["export", "localhost/layered", "-o", tar.to_str().unwrap()]);
    let extracted = work.path().join("gnu");
    gnu_untar(&tar, &extracted);
    let rootfs = umoci_unpack(&fixtures().join("oci"), "layered", &work.path().join("umoci"));
    let diffs = compare_trees(&extracted, &rootfs, Mtimes::Files);
    assert!(diffs.is_empty(), "{diffs:#?}");
    assert!(fs::read_dir(store.join("tmp")).unwrap().next().is_none(), "the scratch mount is gone");

    // A container's export has its changes; `import` of it gives the same tree back.
    layers_ok(&store, &["create", "--name", "c", "localhost/layered"]);
    let m = PathBuf::from(layers_ok(&store, &["mount", "c"]));
    fs::write(m.join("added"), "x\n").unwrap();
    fs::remove_file(m.join("etc/hostname")).unwrap();
    let out = layers_cmd().arg("--root").arg(&store).args(["export", "c", "-o", "-"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let ctar = work.path().join("c.tar");
    fs::write(&ctar, &out.stdout).unwrap();
    let cdir = work.path().join("c");
    gnu_untar(&ctar, &cdir);
    assert!(cdir.join("added").exists() && !cdir.join("etc/hostname").exists());
    layers_ok(&store, &["import", ctar.to_str().unwrap(), "back:v1"]);
    let back = PathBuf::from(layers_ok(&store, &["mount", "localhost/back:v1"]));
    let diffs = compare_trees(&back, &cdir, Mtimes::All);
    assert!(diffs.is_empty(), "{diffs:#?}");
    layers_ok(&store, &["rm", "-f", "c", "back-working-container"]);
}

#[test]
fn saved_oci_layouts_keep_every_blob_and_umoci_reads_them() {
    if !need_root("saved_oci_layouts_keep_every_blob_and_umoci_reads_them") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    load_fixtures(&store);
    let dir = work.path().join("layout/");
    layers_ok(&store, &["save", "--format", "oci", "-o", &format!("{}/", dir.display()), "localhost/layered"]);
    for e in fs::read_dir(dir.join("blobs/sha256")).unwrap() {
        let e = e.unwrap();
        let from_store = fs::read(store.join("blobs/sha256").join(e.file_name())).unwrap();
        assert_eq!(fs::read(e.path()).unwrap(), from_store, "blob {:?} written as stored", e.file_name());
    }
    let rootfs = umoci_unpack(&dir, "latest", &work.path().join("umoci"));
    let merged = PathBuf::from(layers_ok(&store, &["mount", "localhost/layered"]));
    let diffs = compare_trees(&merged, &rootfs, Mtimes::Files);
    assert!(diffs.is_empty(), "{diffs:#?}");
    layers_ok(&store, &["rm", "-f", "layered-working-container"]);

    // As a tar, loaded into a fresh store: the same manifest, byte for byte.
    let tar = work.path().join("oci.tar");
    layers_ok(
        &store,
        &["save", "--format", "oci", "-o", tar.to_str().unwrap(), "localhost/layered", "localhost/two-layers"],
    );
    let fresh = work.path().join("fresh");
    let loaded = layers_ok(&fresh, &["load", "-i", tar.to_str().unwrap()]);
    assert_eq!(loaded.lines().count(), 2, "{loaded}");
    for name in ["localhost/layered:latest", "localhost/two-layers:latest"] {
        assert_eq!(stored_manifest(&fresh, name), stored_manifest(&store, name));
    }
    assert!(layers(&fresh, &["fsck"]).status.success());
}

/// Every node's type, mode, owner, size and (but for directories) mtime, and file contents.
/// A layer's tar may leave out a parent dir: each unpacker then makes it with the
/// time of unpacking (podman as we do), so directory mtimes are not compared.
const LISTING: &str = "cd / ; find bin data opt usr ! -type d -exec stat -c '%n %F %a %u %g %s %Y' {} + | sort ; \
    find bin data opt usr -type d -exec stat -c '%n %F %a %u %g' {} + | sort ; md5sum data/*/* opt/app/a opt/app/b | sort";

#[test]
fn docker_archives_load_and_run_in_podman_and_skopeos_load_here() {
    if !need_root("docker_archives_load_and_run_in_podman_and_skopeos_load_here") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    load_fixtures(&store);
    let tar = work.path().join("docker.tar");
    layers_ok(&store, &["save", "-o", tar.to_str().unwrap(), "localhost/layered"]);

    let pm = work.path().join("podman");
    fs::create_dir_all(&pm).unwrap();
    let loaded = podman(&pm, &["load", "-i", tar.to_str().unwrap()]);
    assert!(loaded.status.success(), "podman load: {}", stderr(&loaded));
    let ran = podman(
        &pm,
        &["run", "--runtime", "runc", "--rm", "--net", "none", "localhost/layered:latest", "/bin/sh", "-c", LISTING],
    );
    let _ = podman(&pm, &["system", "reset", "-f"]);
    assert!(ran.status.success(), "podman run: {}", stderr(&ran));
    let merged = PathBuf::from(layers_ok(&store, &["mount", "localhost/layered"]));
    let ours = Command::new("chroot").arg(&merged).args(["/bin/sh", "-c", LISTING]).output().unwrap();
    layers_ok(&store, &["rm", "-f", "layered-working-container"]);
    assert!(ours.status.success(), "{}", stderr(&ours));
    assert!(stdout(&ours).lines().count() > 50 && stdout(&ours).contains("  opt/app/a"), "{}", stdout(&ours));
    assert_eq!(stdout(&ran), stdout(&ours), "podman sees the same files");

    // skopeo's docker-archive (another writer): our load gives the same image ID and tree.
    let sk = work.path().join("skopeo.tar");
    let st = Command::new("skopeo")
        .args(["copy", "--quiet"])
        .arg(format!("oci:{}:layered", fixtures().join("oci").display()))
        .arg(format!("docker-archive:{}:example.com/sk:v1", sk.display()))
        .status()
        .unwrap();
    assert!(st.success());
    let fresh = work.path().join("fresh");
    layers_ok(&fresh, &["load", "-i", sk.to_str().unwrap()]);
    let id_of = |s: &Path, name: &str| stored_image(s, name)["Id"].clone();
    assert_eq!(
        id_of(&fresh, "example.com/sk:v1"),
        id_of(&store, "localhost/layered:latest"),
        "same config, same image ID"
    );
    let m2 = PathBuf::from(layers_ok(&fresh, &["mount", "example.com/sk:v1"]));
    let rootfs = umoci_unpack(&fixtures().join("oci"), "layered", &work.path().join("umoci"));
    let diffs = compare_trees(&m2, &rootfs, Mtimes::Files);
    layers_ok(&fresh, &["rm", "-f", "sk-working-container"]);
    assert!(diffs.is_empty(), "{diffs:#?}");
}

#[test]
fn hostile_archives_are_refused_and_leave_the_store_as_it_was() {
    if !need_root("hostile_archives_are_refused_and_leave_the_store_as_it_was") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    load_fixtures(&store);
    let before = digests(&store);
    let victim = work.path().join("victim");
    fs::create_dir(&victim).unwrap();
    // Members outside the archive's root are skipped; a manifest naming them is refused.
    let evil = work.path().join("evil");
    fs::create_dir_all(evil.join("d")).unwrap();
    fs::write(evil.join("manifest.json"), r#"[{"Config":"../victim/c.json","RepoTags":["x:1"],"Layers":[]}]"#).unwrap();
    fs::write(evil.join("d/payload"), "p").unwrap();
    let tar = work.path().join("evil.tar");
    let st = Command::new("tar")
        .arg("-cf")
        .arg(&tar)
        .arg("-C")
        .arg(&evil)
        .args(["manifest.json", "--transform", "s,^d/payload,../victim/payload,", "d/payload"])
        .status()
        .unwrap();
    assert!(st.success());
    let out = layers(&store, &["load", "-i", tar.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.lines().count() == 1 && err.contains("../victim/c.json"), "{err}");
    assert_eq!(fs::read_dir(&victim).unwrap().count(), 0, "nothing written outside");
    assert_eq!(digests(&store), before);
    assert!(fs::read_dir(store.join("tmp")).unwrap().next().is_none());
    let missing = layers(&store, &["load", "-i", work.path().join("nope.tar").to_str().unwrap()]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("nope.tar"));
}
