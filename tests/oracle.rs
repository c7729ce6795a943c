//! The main correctness test: images written by independent tools (umoci, GNU tar),
//! unpacked by `layers-store`, mounted with a plain `mount -t overlay`, must equal
//! what the independent readers (`umoci unpack`, GNU tar) produce, file by file.

// Tests make and inspect their fixtures by path (clippy.toml bans that in the code under test).
#![allow(clippy::disallowed_methods)]

mod common;

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use layers_store::images::oci::{ImageConfig, Manifest};
use layers_store::meta::ImageLayerRow;
use layers_store::{Digest, ImageBlobs, LayerExpect, Store};

fn blob(layout: &Path, d: &Digest) -> PathBuf {
    layout.join("blobs/sha256").join(d.hex())
}

/// Imports `layout:tag` through the library, verifying every digest; returns layer dirs bottom first.
fn import_layout(store: &Store, layout: &Path, tag: &str) -> Vec<PathBuf> {
    let index: serde_json::Value = serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let desc = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("no {tag} in {}", layout.display()));
    let manifest_digest = Digest::parse(desc["digest"].as_str().unwrap()).unwrap();
    let manifest_bytes = fs::read(blob(layout, &manifest_digest)).unwrap();
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes).unwrap();
    let config_bytes = fs::read(blob(layout, &manifest.config.digest)).unwrap();
    let config: ImageConfig = serde_json::from_slice(&config_bytes).unwrap();
    assert_eq!(config.rootfs.diff_ids.len(), manifest.layers.len());

    let mut ingest = store.content().ingest().unwrap();
    let mut rows = vec![];
    for (l, diff) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
        let expect = LayerExpect { blob: Some(l.digest), size: Some(l.size), diff_id: Some(*diff) };
        let u = store.layers().unpack(&mut ingest, File::open(blob(layout, &l.digest)).unwrap(), &expect).unwrap();
        rows.push(ImageLayerRow { diff_id: u.diff_id, blob: u.blob, media_type: l.media_type.clone(), size: l.size });
    }
    let blobs = ImageBlobs::Received { manifest: &manifest_bytes, config: &config_bytes };
    let image = store.images().record(ingest, blobs, &[format!("localhost/fixture:{tag}")]).unwrap();
    assert_eq!(image.manifest, manifest_digest);
    rows.iter().map(|r| store.layers().path(&r.diff_id)).collect()
}

#[test]
fn overlay_of_our_layers_equals_umoci_unpack() {
    if !need_root("overlay_of_our_layers_equals_umoci_unpack") {
        return;
    }
    let fx = fixtures();
    let layout = fx.join("oci");
    let work = tempfile::tempdir().unwrap();
    let store = Store::open(&work.path().join("store")).unwrap();
    for tag in ["two-layers", "layered"] {
        let dirs = import_layout(&store, &layout, tag);
        assert!(dirs.len() >= 2, "{tag} is a multi-layer image");
        let merged = work.path().join(format!("merged-{tag}"));
        let _m = mount_overlay(&dirs, &merged);
        let theirs = umoci_unpack(&layout, tag, &work.path().join(format!("bundle-{tag}")));
        let diffs = compare_trees(&merged, &theirs, Mtimes::Files);
        assert!(diffs.is_empty(), "{tag}: overlay view differs from umoci unpack:\n{}", diffs.join("\n"));
    }
    // The fixtures must really exercise what they claim to.
    let layered = import_layout(&store, &layout, "layered");
    let top = &layered[2];
    let opaque = rustix::fs::getxattr(top.join("data/keep"), "trusted.overlay.opaque", &mut [0u8; 8][..]).unwrap();
    assert_eq!(opaque, 1, "opaque dir marked");
    let wh = fs::symlink_metadata(top.join("bin/vi")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(&wh.file_type()));
    assert_eq!(std::os::unix::fs::MetadataExt::rdev(&wh), 0, "whiteout is a 0/0 char device");
    let second = &layered[1];
    assert!(fs::symlink_metadata(second.join("etc/motd")).is_ok(), "umoci's .wh.motd became a whiteout node");
    let report = store.gc().fsck(false).unwrap();
    assert!(report.is_empty(), "{report:?}");
}

#[test]
fn imported_rootfs_equals_gnu_tar_extraction() {
    if !need_root("imported_rootfs_equals_gnu_tar_extraction") {
        return;
    }
    let fx = fixtures();
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let theirs = work.path().join("tar-x");
    fs::create_dir(&theirs).unwrap();
    let st = Command::new("tar")
        .args(["--numeric-owner", "--xattrs", "--xattrs-include=*", "-xpzf"])
        .arg(fx.join("busybox-rootfs.tar.gz"))
        .arg("-C")
        .arg(&theirs)
        .status()
        .unwrap();
    assert!(st.success());
    for (file, name) in [("busybox-rootfs.tar.gz", "bb-gz"), ("busybox-rootfs.tar.zst", "bb-zst")] {
        let out = layers(&store, &["import", "-q", fx.join(file).to_str().unwrap(), name]);
        assert!(out.status.success(), "{}", stderr(&out));
        let inspect: serde_json::Value =
            serde_json::from_str(&stdout(&layers(&store, &["inspect", "--raw", name]))).unwrap();
        let diff =
            inspect[0]["Config"]["rootfs"]["diff_ids"][0].as_str().unwrap().trim_start_matches("sha256:").to_string();
        let media = inspect[0]["Manifest"]["layers"][0]["mediaType"].as_str().unwrap().to_string();
        assert!(media.ends_with(if file.ends_with("gz") { "+gzip" } else { "+zstd" }), "{media}");
        let diffs = compare_trees(&store.join("layers").join(diff), &theirs, Mtimes::All);
        assert!(diffs.is_empty(), "{file}: layer differs from GNU tar -x:\n{}", diffs.join("\n"));
    }
}

#[test]
fn the_examples_match_what_buildah_builds() {
    if !need_root("the_examples_match_what_buildah_builds") {
        return;
    }
    let (work, store) = store_with_busybox();
    // buildah in its own store, the same base image, podman's ulimit workaround (ANCHORS.md).
    let conf = containers_conf(work.path());
    let runroot = format!("/run/lbt-{}", std::process::id());
    let buildah = |args: &[&str]| {
        let out = std::process::Command::new("buildah")
            .arg("--root")
            .arg(work.path().join("buildah"))
            .args(["--runroot", &runroot, "--storage-driver", "overlay"])
            .args(args)
            .env("CONTAINERS_CONF", &conf)
            // buildah keeps RUN --mount=type=cache dirs under $TMPDIR, not its --root: a fresh one.
            .env("TMPDIR", work.path())
            .output()
            .expect("run buildah");
        assert!(out.status.success(), "buildah {args:?}: {}", stderr(&out));
        stdout(&out)
    };
    let base = format!("oci:{}:layered", fixtures().join("oci").display());
    buildah(&["pull", "-q", &base]);
    let id = buildah(&["images", "-q"]).lines().next().unwrap().to_string();
    buildah(&["tag", &id, "localhost/busybox:latest"]);
    load_python_base(&store);
    let py = buildah(&["pull", "-q", &format!("oci:{}:python", fixtures().join("python").display())]);
    buildah(&["tag", py.trim(), "localhost/python:3.11"]);
    // Examples buildah 1.28 can build (it has no here-documents in COPY).
    for ex in ["python-app", "multistage", "whiteouts", "cache-mount"] {
        let ctx = example_context(work.path(), ex);
        let ours = work.path().join(format!("ours-{ex}"));
        let dest = format!("type=oci,dest={}/", ours.display());
        layers_ok(&store, &["build", "-t", ex, "--output", &dest, ctx.to_str().unwrap()]);
        buildah(&["bud", "--isolation", "chroot", "--layers", "-q", "-t", ex, ctx.to_str().unwrap()]);
        let theirs = work.path().join(format!("theirs-{ex}"));
        buildah(&["push", "-q", ex, &format!("oci:{}:latest", theirs.display())]);
        // Both read by the same independent reader.
        let a = umoci_unpack(&ours, "latest", &work.path().join(format!("ua-{ex}")));
        let b = umoci_unpack(&theirs, "latest", &work.path().join(format!("ub-{ex}")));
        for leftover in BUILDAH_RUN_LEFTOVERS {
            let p = b.join(leftover);
            if !a.join(leftover).exists() && fs::symlink_metadata(&p).is_ok() {
                let _ = fs::remove_file(&p).or_else(|_| fs::remove_dir_all(&p));
            }
        }
        assert_eq!(compare_trees(&a, &b, Mtimes::None), Vec::<String>::new(), "{ex}: our rootfs and buildah's differ");
        let config = |layout: &Path| -> serde_json::Value {
            let out = std::process::Command::new("skopeo")
                .args(["inspect", "--config", &format!("oci:{}:latest", layout.display())])
                .output()
                .unwrap();
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("skopeo inspect --config");
            v["config"].clone()
        };
        let (ca, cb) = (config(&ours), config(&theirs));
        for key in ["Cmd", "Entrypoint", "Env", "WorkingDir", "User", "ExposedPorts"] {
            assert_eq!(ca.get(key), cb.get(key), "{ex}: config {key}");
        }
        let labels = |c: &serde_json::Value| {
            let mut l = c.get("Labels").cloned().unwrap_or_default();
            if let Some(m) = l.as_object_mut() {
                m.remove("io.buildah.version");
            }
            l.as_object().filter(|m| !m.is_empty()).cloned()
        };
        assert_eq!(labels(&ca), labels(&cb), "{ex}: labels (buildah's own version label aside)");
    }
    let _ = std::process::Command::new("buildah")
        .arg("--root")
        .arg(work.path().join("buildah"))
        .args(["--runroot", &runroot, "--storage-driver", "overlay", "rm", "-a"])
        .output();
    let _ = fs::remove_dir_all(&runroot);
}

/// Where buildah's RUN leaves its own mount points behind (BuildKit and layers do not),
/// and the parent it made for a `RUN --mount` target (buildah after 1.28 removes it too:
/// containers/buildah#6233).
const BUILDAH_RUN_LEFTOVERS: [&str; 4] = ["etc/hosts", "etc/resolv.conf", "run", "var/cache"];
