//! A snapshot's life through the library's API alone (no binary), written once and
//! run against each way the store can mount overlay, as containerd runs one
//! conformance suite per snapshotter: the new mount API (`fsconfig` with one
//! `lowerdir+` per layer) and `mount(2)` with an option string. Layers are made by
//! GNU tar, not by our writer. Real kernel, as root.

// The test makes and inspects its trees by path (clippy.toml bans that in the library).
#![allow(clippy::disallowed_methods)]

use std::fs;
use std::path::{Path, PathBuf};

use layers_store::images::oci::{Descriptor, ImageConfig};
use layers_store::snapshots::commit::{CommitOptions, UpperDir};
use layers_store::snapshots::containers::Lifetime;
use layers_store::snapshots::mount::{lowerdir_plus_supported, mount_spec, unmount_path, MountOptions};
use layers_store::{Compression, ImageBlobs, LayerExpect, Store};

mod common;
use common::{gnu_tar, need_root};

/// A two-layer image made from GNU tar archives: the base has `keep`, `gone` and
/// `dir/{a,b}`; the top deletes `gone` (a whiteout) and makes `dir` opaque with `c`.
fn two_layer_image(store: &Store, work: &Path) -> layers_store::meta::ImageRow {
    let base = work.join("base");
    fs::create_dir_all(base.join("dir")).unwrap();
    fs::write(base.join("keep"), "kept\n").unwrap();
    fs::write(base.join("gone"), "to be deleted\n").unwrap();
    fs::write(base.join("dir/a"), "a\n").unwrap();
    fs::write(base.join("dir/b"), "b\n").unwrap();
    std::os::unix::fs::symlink("keep", base.join("link")).unwrap();
    let top = work.join("top");
    fs::create_dir_all(top.join("dir")).unwrap();
    fs::write(top.join(".wh.gone"), "").unwrap();
    fs::write(top.join("dir/.wh..wh..opq"), "").unwrap();
    fs::write(top.join("dir/c"), "c\n").unwrap();
    let mut ingest = store.content().ingest().unwrap();
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for (name, dir) in [("base", &base), ("top", &top)] {
        let tar = work.join(format!("{name}.tar"));
        gnu_tar(dir, &tar);
        let u = store.layers().unpack(&mut ingest, fs::File::open(&tar).unwrap(), &LayerExpect::default()).unwrap();
        diff_ids.push(u.diff_id);
        layers.push(Descriptor {
            media_type: u.compression.oci_media_type().to_string(),
            digest: u.blob,
            size: u.blob_size,
            urls: None,
            annotations: None,
        });
    }
    let mut config = ImageConfig::imported(diff_ids[0], "2026-01-01T00:00:00Z", "base");
    config.rootfs.diff_ids.push(diff_ids[1]);
    let mut top_history = config.history[0].clone();
    top_history.created_by = Some("top".into());
    config.history.push(top_history);
    store.images().record(ingest, ImageBlobs::New { config: &config, layers }, &["localhost/two:1".into()]).unwrap()
}

/// Every regular file and symlink under `dir`, with its content (a symlink: `-> target`).
fn files(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            if m.is_dir() {
                stack.push(p);
            } else if m.file_type().is_symlink() {
                out.push((rel, format!("-> {}", fs::read_link(&p).unwrap().display())));
            } else {
                out.push((rel, fs::read_to_string(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

/// The lifecycle: prepare a snapshot on an image, mount it, write through it, see the
/// changes, commit it as a layer, view the new image read-only, remove it.
fn lifecycle(test: &str, opts: MountOptions) {
    if !need_root(test) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let store = Store::open(&work.path().join("store")).unwrap();
    let image = two_layer_image(&store, work.path());

    // Prepare and mount: the merged view follows overlay's rules for whiteouts and opaque dirs.
    let c = store.snapshots().create(&image.manifest, Some("snap"), "two", Lifetime::Kept).unwrap();
    let merged: PathBuf = store.snapshots().merged_dir(&c);
    mount_spec(&store.snapshots().mount_spec(&c).unwrap(), &merged, opts).unwrap();
    assert!(store.snapshots().is_mounted(&c));
    let seen = files(&merged);
    assert_eq!(seen, pairs(&[("dir/c", "c\n"), ("keep", "kept\n"), ("link", "-> keep")]));

    // Writes land in the upper dir, never in a layer dir.
    fs::write(merged.join("new"), "new\n").unwrap();
    fs::write(merged.join("keep"), "changed\n").unwrap();
    fs::remove_file(merged.join("dir/c")).unwrap();
    unmount_path(&merged, false).unwrap();
    assert!(!store.snapshots().is_mounted(&c));
    let upper = store.snapshots().dir(&c.id).join("upper");
    let lowers = store.snapshots().mount_spec(&c).unwrap().lowers;
    let changes: Vec<String> = layers_store::layer::diff::changes(&upper, &lowers)
        .unwrap()
        .iter()
        .map(|ch| format!("{:?} {}", ch.kind, ch.path))
        .collect();
    assert_eq!(changes, ["Changed /dir", "Deleted /dir/c", "Changed /keep", "Added /new"]);
    for l in &lowers {
        assert!(!l.join("new").exists(), "a write reached layer dir {}", l.display());
    }

    // Commit: the upper dir becomes a layer, and the new image has three.
    let committed = store
        .snapshots()
        .commit(
            &c,
            &CommitOptions {
                compression: Compression::Gzip,
                created_by: "lifecycle".into(),
                comment: None,
                author: None,
                created: "2026-01-02T00:00:00Z".into(),
                tags: vec!["localhost/two:2".into()],
                mtime_clamp: None,
                config: None,
                upper: UpperDir::Move,
            },
        )
        .unwrap();
    assert_eq!(store.images().layers(&committed.manifest).unwrap().len(), 3);

    // A read-only view of the new image shows the changes; it takes no write.
    let view = work.path().join("view");
    fs::create_dir(&view).unwrap();
    mount_spec(&store.snapshots().image_view(&committed.manifest).unwrap(), &view, opts).unwrap();
    assert_eq!(files(&view), pairs(&[("keep", "changed\n"), ("link", "-> keep"), ("new", "new\n")]));
    let refused = fs::write(view.join("more"), "x").unwrap_err();
    assert_eq!(refused.raw_os_error(), Some(rustix::io::Errno::ROFS.raw_os_error()), "{refused}");
    unmount_path(&view, false).unwrap();

    // The container goes on from the new image with an empty upper dir; removed, it
    // leaves the images.
    let c = store.snapshots().resolve("snap").unwrap();
    assert_eq!(c.image, committed.manifest);
    assert!(fs::read_dir(&upper).unwrap().next().is_none(), "the upper dir moved into the layer");
    store.snapshots().remove(&c).unwrap();
    assert!(store.snapshots().resolve("snap").is_err());
    assert!(store.images().resolve("localhost/two:2").is_ok() && store.images().resolve("localhost/two:1").is_ok());
    let problems = store.gc().fsck(false).unwrap();
    assert!(
        problems.is_empty(),
        "{:?}",
        problems.iter().map(|p| format!("{}: {}", p.subject, p.detail)).collect::<Vec<_>>()
    );
}

#[test]
fn the_snapshot_lifecycle_with_the_new_mount_api() {
    if !lowerdir_plus_supported() {
        eprintln!("!!! SKIPPED the_snapshot_lifecycle_with_the_new_mount_api: this kernel has no overlay lowerdir+ (before 6.8) !!!");
        return;
    }
    lifecycle("the_snapshot_lifecycle_with_the_new_mount_api", MountOptions { host_visible: true, legacy: false });
}

#[test]
fn the_snapshot_lifecycle_with_mount_2_options() {
    lifecycle("the_snapshot_lifecycle_with_mount_2_options", MountOptions { host_visible: true, legacy: true });
}
