//! Two machines sharing a build cache, as the build cache tests stand them up: a
//! fresh store with the fixtures, a checkout of an example, a build's step outcomes,
//! and what a cache directory holds.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use super::*;

/// A fresh store with the busybox fixture, as a fresh CI runner with its base image.
pub fn machine(work: &Path, name: &str) -> PathBuf {
    let store = work.join(name);
    load_fixtures(&store);
    layers_ok(&store, &["tag", "localhost/layered", "busybox"]);
    store
}

/// A checkout of the multistage example at `dir`, its files dated `secs`.
pub fn checkout(dir: &Path, secs: i64) -> PathBuf {
    let st = std::process::Command::new("cp")
        .arg("-r")
        .arg(repo().join("Dockerfile-examples/multistage"))
        .arg(dir)
        .status()
        .unwrap();
    assert!(st.success());
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs as u64);
    for e in fs::read_dir(dir).unwrap() {
        fs::File::open(e.unwrap().path()).unwrap().set_modified(t).unwrap();
    }
    dir.to_path_buf()
}

pub fn build(store: &Path, args: &[&str]) -> Output {
    let mut full = vec!["build"];
    full.extend_from_slice(args);
    let out = layers(store, &full);
    assert!(out.status.success(), "build {args:?}: {}", stderr(&out));
    out
}

/// Each step line's outcome after it: `CACHED` or `RAN`.
pub fn outcomes(out: &Output) -> Vec<(String, &'static str)> {
    let mut v: Vec<(String, &'static str)> = Vec::new();
    for line in stderr(out).lines() {
        if let Some(rest) = line.strip_prefix("STEP ") {
            v.push((rest.split_once(": ").map_or(rest, |(_, t)| t).to_string(), "-"));
        } else if let Some(last) = v.last_mut() {
            if line.starts_with("--> CACHED") {
                last.1 = "CACHED";
            } else if line.starts_with("--> ") {
                last.1 = "RAN";
            }
        }
    }
    v.retain(|(t, _)| !t.starts_with("FROM"));
    v
}

pub fn layer_set(store: &Path) -> BTreeSet<String> {
    fs::read_dir(store.join("layers")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
}

pub fn blobs_in(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// The cache directory's manifest: its digest's hex and its JSON.
pub fn cache_manifest(dir: &Path) -> (String, serde_json::Value) {
    let index: serde_json::Value = serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap();
    let m = index["manifests"][0]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string();
    let manifest = serde_json::from_slice(&fs::read(dir.join("blobs/sha256").join(&m)).unwrap()).unwrap();
    (m, manifest)
}

/// Every blob the cache directory's index reaches: the manifest, its config and layers.
pub fn referenced(dir: &Path) -> BTreeSet<String> {
    let (m, manifest) = cache_manifest(dir);
    let mut out: BTreeSet<String> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string())
        .collect();
    out.insert(manifest["config"]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string());
    out.insert(m);
    out
}

/// The blobs `requests` (a registry's access log) fetched (`GET …/blobs/sha256:…`), by digest.
pub fn blob_gets(requests: &[String]) -> Vec<String> {
    requests
        .iter()
        .filter(|r| r.starts_with("GET ") && r.contains("/blobs/"))
        .filter_map(|r| r.rsplit('/').next())
        .map(str::to_string)
        .collect()
}
