//! A store made by the previous release (`fixtures/old-store/`, recorded by its
//! `make.sh` with that release's binary): its containers kept their flags in
//! `options.json`. Today's binary converts them to `config.json` when it opens the
//! store; `ps` and `inspect` show them as that release did, and they start.

// Tests make and inspect their fixtures by path (clippy.toml bans that in the code under test).
#![allow(clippy::disallowed_methods)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// The fixture store, unpacked into `work`.
fn old_store(work: &Path) -> PathBuf {
    let store = work.join("store");
    std::fs::create_dir(&store).unwrap();
    let archive = repo().join("fixtures/old-store/store.tar.zst");
    let st = Command::new("tar")
        .args(["--zstd", "--xattrs", "--xattrs-include=*", "-xpf"])
        .arg(&archive)
        .arg("-C")
        .arg(&store)
        .status()
        .expect("GNU tar");
    assert!(st.success(), "unpack {}", archive.display());
    store
}

/// What the old release printed, its store's path as `$ROOT`, with `store` put in.
fn recorded(name: &str, store: &Path) -> String {
    let text = std::fs::read_to_string(repo().join("fixtures/old-store").join(name)).unwrap();
    text.replace("$ROOT", store.to_str().unwrap())
}

/// `ps --format '{{json .}}'` lines without the fields that say how long ago.
fn timeless(lines: &str) -> Vec<serde_json::Value> {
    lines
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let o = v.as_object_mut().unwrap();
            o.remove("RunningFor");
            o.remove("Status");
            v
        })
        .collect()
}

/// The previous release's `ps` lines with the fields changed on purpose since (issue
/// 32, Docker's shapes): `CreatedAt` as Go's time.String, `Size` "0B" without `-s`,
/// `LocalVolumes` added (counted from `Mounts`' volume names, which the fixture's
/// containers name as volumes unless they are host paths).
fn dockers_ps_fields(lines: Vec<serde_json::Value>) -> Vec<serde_json::Value> {
    lines
        .into_iter()
        .map(|mut v| {
            let o = v.as_object_mut().unwrap();
            let created = o["CreatedAt"].as_str().unwrap().to_string();
            let (date, time) = created.trim_end_matches('Z').split_once('T').unwrap();
            o.insert("CreatedAt".into(), format!("{date} {time} +0000 UTC").into());
            o.insert("Size".into(), "0B".into());
            let mounts = o["Mounts"].as_str().unwrap();
            let volumes = mounts.split(',').filter(|m| !m.is_empty() && !m.starts_with('/')).count();
            o.insert("LocalVolumes".into(), volumes.to_string().into());
            v
        })
        .collect()
}

#[test]
fn a_store_of_the_previous_release_is_converted_and_its_containers_show_and_start_as_before() {
    if !need_root("old_store") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let store = old_store(work.path());
    let containers: Vec<PathBuf> =
        std::fs::read_dir(store.join("containers")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(containers.len(), 4);
    assert!(containers.iter().all(|c| c.join("options.json").exists()), "the fixture is the old format");

    let ps = layers_ok(&store, &["ps", "-a", "--no-trunc", "--format", "{{json .}}"]);
    assert_eq!(timeless(&ps), dockers_ps_fields(timeless(&recorded("ps.jsonl", &store))));
    for c in &containers {
        assert!(!c.join("options.json").exists(), "options.json converted away in {}", c.display());
        assert!(c.join("config.json").exists(), "config.json written in {}", c.display());
    }
    let inspect: serde_json::Value =
        serde_json::from_str(&layers_ok(&store, &["inspect", "keeper", "finished", "plain", "binder"])).unwrap();
    let mut was: serde_json::Value = serde_json::from_str(&recorded("inspect.json", &store)).unwrap();
    // One change since that release, on purpose (issue 32): `Config.Env` is as the
    // container was created, as Docker's, without the `HOME=` placeholder and the
    // HOSTNAME set only at start. Everything else is as the old release printed it.
    for c in was.as_array_mut().unwrap() {
        if let Some(env) = c["Config"]["Env"].as_array_mut() {
            env.retain(|e| e != "HOME=" && !e.as_str().unwrap_or_default().starts_with("HOSTNAME="));
        }
    }
    assert_eq!(inspect, was, "inspect shows the old containers as the old release did");

    // Recorded when the store was upgraded: every store before it was a root store.
    let info = layers_ok(&store, &["info", "--format", "{{.StoreEncoding}} {{.StoreFormat}}"]);
    assert_eq!(info, format!("trusted {}", layers_store::meta::FORMAT_VERSION));

    // keeper: -e, --hostname, -w, -v (named and anonymous), --tmpfs and --mount tmpfs, all kept.
    let out = layers_ok(&store, &["start", "-a", "keeper"]);
    assert_eq!(out, "hi from box in /tmp\n/anon\n/data\n/scratch\n/t2");
    assert_eq!(layers_ok(&store, &["logs", "finished"]), "done");
    let status = layers_ok(&store, &["ps", "-a", "--filter", "name=keeper", "--format", "{{.Status}}"]);
    assert!(status.starts_with("Exited (0)"), "{status}");
}
