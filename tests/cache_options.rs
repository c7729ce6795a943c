//! `--cache-to` options as Docker's documentation spells them (GitHub Actions
//! workflows copy these lines): compression honoured for the layers the export
//! writes, `ignore-error` keeping a cache outage from failing the build, the OCI
//! options accepted, other cache backends refused by name.

// Tests make and inspect their fixtures by path (clippy.toml bans that in the code under test).
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use common::build_cache::*;
use common::*;

/// Each layer of the cache directory's manifest: (diffID, media type, first bytes of its blob).
fn cache_layers(cache: &Path) -> Vec<(String, String, Vec<u8>)> {
    let blobs = cache.join("blobs/sha256");
    let (_, manifest) = cache_manifest(cache);
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let digest = l["digest"].as_str().unwrap().trim_start_matches("sha256:");
            let head = fs::read(blobs.join(digest)).unwrap()[..4].to_vec();
            let diff = l["annotations"]["vnd.layers.diff-id"].as_str().unwrap().to_string();
            (diff, l["mediaType"].as_str().unwrap().to_string(), head)
        })
        .collect()
}

/// The diffIDs of IMAGE's layers.
fn diff_ids(store: &Path, image: &str) -> BTreeSet<String> {
    let v: serde_json::Value = serde_json::from_str(&layers_ok(store, &["inspect", "--raw", image])).unwrap();
    v[0]["Config"]["rootfs"]["diff_ids"].as_array().unwrap().iter().map(|d| d.as_str().unwrap().to_string()).collect()
}

const ZSTD: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

#[test]
fn compression_applies_to_the_builds_own_layers_and_with_force_to_every_layer() {
    if !need_root("compression_applies_to_the_builds_own_layers_and_with_force_to_every_layer") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let (a, b) = (machine(work.path(), "a"), machine(work.path(), "b"));
    let base = diff_ids(&a, "busybox");
    let ctx = checkout(&work.path().join("checkout"), 1_000_000_000);
    let cache = work.path().join("zstd");
    // The line Docker's docs give, with zstd.
    let to = format!(
        "type=local,dest={},mode=max,image-manifest=true,oci-mediatypes=true,compression=zstd,compression-level=6",
        cache.display()
    );
    let built = build(&a, &["-t", "greet", "--cache-to", &to, ctx.to_str().unwrap()]);
    let layers = cache_layers(&cache);
    assert!(layers.iter().any(|(d, ..)| base.contains(d)) && layers.iter().any(|(d, ..)| !base.contains(d)));
    for (diff, media_type, head) in &layers {
        if base.contains(diff) {
            // Not the build's: the base image's blob as it is.
            assert_eq!(
                (media_type.as_str(), &head[..2]),
                ("application/vnd.oci.image.layer.v1.tar+gzip", &[0x1f, 0x8b][..])
            );
        } else {
            assert_eq!((media_type.as_str(), &head[..]), ("application/vnd.oci.image.layer.v1.tar+zstd", &ZSTD[..]));
        }
    }
    // A second export of the same build finds the zstd blobs made by the first.
    let blobs_before = fs::read_dir(a.join("blobs/sha256")).unwrap().count();
    let again = work.path().join("zstd-again");
    let to_again = to.replace(cache.to_str().unwrap(), again.to_str().unwrap());
    build(&a, &["--cache-to", &to_again, ctx.to_str().unwrap()]);
    assert_eq!(cache_layers(&again), layers, "the same blobs");
    assert_eq!(fs::read_dir(a.join("blobs/sha256")).unwrap().count(), blobs_before, "nothing made again");

    // Another machine reads the zstd cache: every step hits, the same image.
    let from = format!("type=local,src={}", cache.display());
    let on_b = build(&b, &["-t", "greet", "--cache-from", &from, ctx.to_str().unwrap()]);
    assert!(outcomes(&on_b).iter().all(|(_, o)| *o == "CACHED"), "{:?}", outcomes(&on_b));
    assert_eq!(stdout(&on_b), stdout(&built));
    assert_eq!(layers_ok(&b, &["run", "--rm", "greet"]), "hello from layers, built in stages");

    // force-compression: the base image's layers too; uncompressed works the same way.
    for (compression, media, magic) in [
        ("zstd", "application/vnd.oci.image.layer.v1.tar+zstd", Some(&ZSTD[..])),
        ("uncompressed", "application/vnd.oci.image.layer.v1.tar", None),
    ] {
        let forced = work.path().join(format!("forced-{compression}"));
        let to =
            format!("type=local,dest={},mode=max,compression={compression},force-compression=true", forced.display());
        build(&a, &["--cache-to", &to, ctx.to_str().unwrap()]);
        for (diff, media_type, head) in cache_layers(&forced) {
            assert_eq!(media_type, media, "{compression}: {diff}");
            if let Some(m) = magic {
                assert_eq!(&head[..], m, "{compression}: {diff}");
            }
        }
    }
    assert_eq!(layers_ok(&a, &["fsck"]), "store is consistent");
    assert_eq!(layers_ok(&b, &["fsck"]), "store is consistent");
}

#[test]
fn ignore_error_makes_a_failed_export_a_warning() {
    if !need_root("ignore_error_makes_a_failed_export_a_warning") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let a = machine(work.path(), "a");
    let ctx = checkout(&work.path().join("checkout"), 1_000_000_000);
    // A destination under a regular file: the export cannot make it.
    fs::write(work.path().join("file"), "not a directory").unwrap();
    let dest = work.path().join("file/cache");
    let to = format!("type=local,dest={},mode=max", dest.display());

    let failed = layers(&a, &["build", "-t", "greet", "--cache-to", &to, ctx.to_str().unwrap()]);
    let err = stderr(&failed);
    assert!(!failed.status.success(), "{err}");
    assert!(err.lines().last().unwrap_or_default().contains(&format!("--cache-to {to}")), "{err}");

    let ignored = format!("{to},ignore-error=true");
    let out = layers(&a, &["build", "-t", "greet", "--cache-to", &ignored, ctx.to_str().unwrap()]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    let warning: Vec<&str> = err.lines().filter(|l| l.contains("ignored (ignore-error=true)")).collect();
    assert!(warning.len() == 1 && warning[0].contains(&format!("--cache-to {ignored}: ")), "{err}");
    assert_eq!(stdout(&out).trim(), layers_ok(&a, &["inspect", "--format", "{{.Id}}", "greet"]).trim());
}

#[test]
fn other_cache_backends_and_options_are_refused_by_name_before_the_build() {
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    for (flag, spec, want) in [
        ("--cache-to", "type=gha,mode=max", "type gha is not supported; in GitHub Actions, use a registry"),
        ("--cache-from", "type=gha", "type gha is not supported"),
        ("--cache-to", "type=s3,region=x,bucket=y", "type s3 is not supported; use a registry"),
        ("--cache-to", "type=local,dest=/tmp/c,image-manifest=false", "image-manifest=false is not supported"),
        (
            "--cache-to",
            "type=local,dest=/tmp/c,compression=lz4",
            "compression=lz4 is not supported (gzip, zstd, uncompressed)",
        ),
    ] {
        let out = layers(&store, &["build", flag, spec, work.path().to_str().unwrap()]);
        let err = stderr(&out);
        assert_ne!(out.status.code(), Some(0), "{spec}: {err}");
        assert_eq!(err.lines().count(), 1, "{spec}: {err}");
        assert!(err.contains(&format!("{flag} {spec}: {want}")), "{spec}: {err}");
    }
}
