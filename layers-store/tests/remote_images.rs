//! Known-remote images through the library alone: an image recorded from its manifest
//! and config while a layer is still in a registry is never taken for a present one
//! (no container, view or archive of it, no fsck problem, gc keeps its manifest and
//! config), and is local once its layers arrive. Layers made by GNU tar.

// The test makes its trees by path (clippy.toml bans that in the library).
#![allow(clippy::disallowed_methods)]

use std::fs;
use std::path::Path;

use layers_store::images::oci::{Descriptor, ImageConfig};
use layers_store::snapshots::containers::Lifetime;
use layers_store::{ErrorKind, ImageBlobs, LayerExpect, Store};

mod common;
use common::{gnu_tar, need_root};

/// A layer tar by GNU tar holding `name` with `content`.
fn layer_tar(work: &Path, name: &str, content: &str) -> std::path::PathBuf {
    let dir = work.join(format!("{name}.d"));
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(name), content).unwrap();
    let tar = work.join(format!("{name}.tar"));
    gnu_tar(&dir, &tar);
    tar
}

/// Unpacks `tar` into `store` (committed); returns its descriptor and diffID.
fn unpack(store: &Store, tar: &Path) -> (Descriptor, layers_store::DiffId) {
    let mut ingest = store.content().ingest().unwrap();
    let u = store.layers().unpack(&mut ingest, fs::File::open(tar).unwrap(), &LayerExpect::default()).unwrap();
    store.content().commit(ingest).unwrap();
    let d = Descriptor {
        media_type: u.compression.oci_media_type().to_string(),
        digest: u.blob,
        size: u.blob_size,
        urls: None,
        annotations: None,
    };
    (d, u.diff_id)
}

#[test]
fn a_remote_image_is_never_used_as_present_and_is_local_once_its_layers_arrive() {
    if !need_root("a_remote_image_is_never_used_as_present_and_is_local_once_its_layers_arrive") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let (base_tar, top_tar) = (layer_tar(work.path(), "base", "b\n"), layer_tar(work.path(), "top", "t\n"));
    // The top layer's identity, from another store (as a registry cache's record names it).
    let elsewhere = Store::open(&work.path().join("elsewhere")).unwrap();
    let (top, top_diff) = unpack(&elsewhere, &top_tar);

    let store = Store::open(&work.path().join("store")).unwrap();
    let (base, base_diff) = unpack(&store, &base_tar);
    let mut config = ImageConfig::imported(base_diff, "2026-01-01T00:00:00Z", "base");
    config.rootfs.diff_ids.push(top_diff);
    config.history.push(config.history[0].clone());
    let config = serde_json::to_vec(&config).unwrap();
    let blobs = || ImageBlobs::ReceivedConfig { config: &config, layers: vec![base.clone(), top.clone()] };
    let tags = ["r.example/app:1".to_string()];
    let image =
        store.images().record_remote(store.content().ingest().unwrap(), blobs(), &tags, "r.example/cache").unwrap();
    assert_eq!(image.remote.as_deref(), Some("r.example/cache"));

    let remote = store.images().remote(&image.manifest).unwrap().expect("remote");
    assert_eq!((remote.missing.len(), remote.layers), (1, 2));
    assert_eq!(remote.missing[0].diff_id, top_diff);
    assert!(remote.to_string().contains("1 of its 2 layers") && remote.to_string().contains("r.example/cache"));

    // Every reader of its layers refuses it, naming why.
    let refused = |e: layers_store::Error| {
        assert_eq!(e.kind(), ErrorKind::Remote, "{e}");
        assert!(e.to_string().contains("not fetched yet"), "{e}");
    };
    refused(store.images().require_local(&image.manifest).unwrap_err());
    refused(store.snapshots().create(&image.manifest, None, "app", Lifetime::Kept).unwrap_err());
    refused(store.snapshots().lower_dirs(&image.manifest).unwrap_err());
    refused(store.images().derive(Some(&image.manifest), &store.images().config(&image).unwrap(), &[]).unwrap_err());
    let save = layers_store::archive::layout::SaveImage { manifest: image.manifest, names: tags.to_vec() };
    let out = work.path().join("saved");
    refused(
        store
            .archive()
            .save(
                std::slice::from_ref(&save),
                &mut layers_store::archive::layout::DirSink::create(&out).unwrap(),
                false,
            )
            .unwrap_err(),
    );
    assert!(!out.join("index.json").exists(), "a refused save wrote an index");
    assert!(store.snapshots().list().unwrap().is_empty());

    // Not a problem to fsck; counted apart by df; gc keeps its manifest and config.
    assert!(store.gc().fsck(false).unwrap().is_empty(), "{:?}", store.gc().fsck(false).unwrap());
    assert_eq!(store.gc().df().unwrap().remote_images, 1);
    store.gc().collect().unwrap();
    assert!(store.images().config(&image).is_ok());
    assert_eq!(store.images().resolve("r.example/app:1").unwrap().manifest, image.manifest);

    // Recorded again as remote, it stays as it is; its layer arriving makes it local.
    store.images().record_remote(store.content().ingest().unwrap(), blobs(), &[], "r.example/other").unwrap();
    assert_eq!(store.images().remote(&image.manifest).unwrap().unwrap().source, "r.example/cache");
    unpack(&store, &top_tar);
    assert!(store.images().remote(&image.manifest).unwrap().is_none());
    assert_eq!(store.images().get(&image.manifest).unwrap().unwrap().remote, None);
    store.images().require_local(&image.manifest).unwrap();
    assert_eq!(store.snapshots().lower_dirs(&image.manifest).unwrap().len(), 2);
    assert_eq!(store.gc().df().unwrap().remote_images, 0);

    // A local image recorded as remote stays local.
    store.images().record_remote(store.content().ingest().unwrap(), blobs(), &[], "r.example/cache").unwrap();
    assert!(store.images().get(&image.manifest).unwrap().unwrap().remote.is_none());
}
