//! Store behaviour across processes and failures: concurrency, crash leftovers,
//! verification, references, gc.

// Tests make and inspect their fixtures by path (clippy.toml bans that in the code under test).
#![allow(clippy::disallowed_methods)]

mod common;

use std::fs::{self, File};
use std::io::Write;
use std::process::{Command, Stdio};

use common::*;
use layers_store::{DiffId, Digest, ErrorKind, LayerExpect, Store};

#[test]
fn concurrent_imports_into_one_store_all_succeed() {
    if !need_root("concurrent_imports_into_one_store_all_succeed") {
        return;
    }
    let fx = fixtures();
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let gz = fx.join("busybox-rootfs.tar.gz");
    let zst = fx.join("busybox-rootfs.tar.zst");
    let children: Vec<_> = (0..6)
        .map(|i| {
            let input = if i % 2 == 0 { &gz } else { &zst };
            spawn_layers(&store, &["import", "-q", input.to_str().unwrap(), &format!("c{i}")])
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "concurrent import failed: {}", stderr(&out));
    }
    let fsck = layers(&store, &["fsck"]);
    assert!(fsck.status.success(), "{}", stdout(&fsck));
    // One JSON object a line per name, as `docker images --format json` prints.
    let images = stdout(&layers(&store, &["images", "--format", "json"]));
    let tags =
        images.lines().filter(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["Tag"] != "<none>").count();
    assert_eq!(tags, 6);
    // gzip and zstd blobs of tars of the same tree: at most two layer dirs, one per distinct tar.
    assert!(fs::read_dir(store.join("layers")).unwrap().count() <= 2);
    assert_eq!(fs::read_dir(store.join("tmp")).unwrap().count(), 0);
}

#[test]
fn a_killed_import_leaves_nothing_visible_and_is_swept() {
    if !need_root("a_killed_import_leaves_nothing_visible_and_is_swept") {
        return;
    }
    let fx = fixtures();
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    assert!(layers(&store, &["import", "-q", fx.join("busybox-rootfs.tar.gz").to_str().unwrap(), "keep"])
        .status
        .success());
    let mut child = layers_cmd()
        .arg("--root")
        .arg(&store)
        .args(["import", "-", "half"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let data = fs::read(fx.join("busybox-rootfs.tar.gz")).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&data[..data.len() / 2]).unwrap();
    stdin.flush().unwrap();
    // Wait until the import has staged something, then kill it mid-stream.
    for _ in 0..200 {
        if fs::read_dir(store.join("tmp")).unwrap().count() > 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(fs::read_dir(store.join("tmp")).unwrap().count() > 0, "import staged under tmp/");
    child.kill().unwrap();
    child.wait().unwrap();
    drop(stdin);
    // The next process sweeps; nothing half-written is visible, the old image is intact.
    let images = stdout(&layers(&store, &["images"]));
    assert!(images.lines().any(|l| l.starts_with("keep ")) && !images.contains("half"), "{images}");
    assert_eq!(fs::read_dir(store.join("tmp")).unwrap().count(), 0, "tmp swept on open");
    assert!(layers(&store, &["fsck"]).status.success());
}

/// Issue 26: an import, pull or build stopped by SIGTERM or SIGINT left what it had
/// staged in tmp/ until the next command (on a tmpfs store: memory). A helper that
/// outlives it removes it now, whatever the signal, SIGKILL too.
#[test]
fn an_import_stopped_by_a_signal_removes_what_it_staged() {
    if !need_root("an_import_stopped_by_a_signal_removes_what_it_staged") {
        return;
    }
    let fx = fixtures();
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let data = fs::read(fx.join("busybox-rootfs.tar.gz")).unwrap();
    use std::os::unix::process::ExitStatusExt;
    for sig in [rustix::process::Signal::TERM, rustix::process::Signal::INT, rustix::process::Signal::KILL] {
        let mut child = layers_cmd()
            .arg("--root")
            .arg(&store)
            .args(["import", "-", "stopped"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&data[..data.len() / 2]).unwrap();
        stdin.flush().unwrap();
        let staged = || fs::read_dir(store.join("tmp")).map_or(0, |d| d.count());
        for _ in 0..500 {
            if staged() > 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(staged() > 0, "import staged under tmp/");
        rustix::process::kill_process(rustix::process::Pid::from_child(&child), sig).unwrap();
        let out = child.wait_with_output().unwrap();
        drop(stdin);
        assert_eq!(out.status.signal(), Some(sig.as_raw()), "{}", stderr(&out));
        // Seen before any other command opens (and sweeps) the store: the helper
        // needs a moment after the command is gone.
        for _ in 0..200 {
            if staged() == 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(
            staged(),
            0,
            "{sig:?}: tmp/ left {:?}",
            fs::read_dir(store.join("tmp")).unwrap().collect::<Vec<_>>()
        );
    }
}

#[test]
fn a_layer_committed_before_its_image_is_not_garbage_while_its_handle_lives() {
    if !need_root("a_layer_committed_before_its_image_is_not_garbage_while_its_handle_lives") {
        return;
    }
    let fx = fixtures();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("store");
    // The first handle commits a layer as a pull does, before any image names it.
    let pulling = Store::open(&root).unwrap();
    let mut ingest = pulling.content().ingest().unwrap();
    let u = pulling
        .layers()
        .unpack(&mut ingest, File::open(fx.join("busybox-rootfs.tar.gz")).unwrap(), &LayerExpect::default())
        .unwrap();
    pulling.content().commit(ingest).unwrap();
    // A gc from another handle (another process's, or the budget's) leaves it alone.
    let other = Store::open(&root).unwrap();
    let report = other.gc().collect().unwrap();
    assert!(report.layers.is_empty() && report.blobs.is_empty(), "{report:?}");
    assert!(other.layers().has(&u.diff_id, &u.blob).unwrap());
    // Once the handle is gone, nothing holds it: garbage.
    drop(pulling);
    let report = other.gc().collect().unwrap();
    assert_eq!((report.layers, report.blobs), (vec![u.diff_id], vec![u.blob]));
    assert_eq!(layers_ok(&root, &["fsck"]), "store is consistent");
}

#[test]
fn wrong_digests_are_rejected_naming_both() {
    if !need_root("wrong_digests_are_rejected_naming_both") {
        return;
    }
    let fx = fixtures();
    let work = tempfile::tempdir().unwrap();
    let store = Store::open(&work.path().join("store")).unwrap();
    let wrong = DiffId::new(Digest::of(b"not this layer"));
    let mut ingest = store.content().ingest().unwrap();
    let err = store
        .layers()
        .unpack(
            &mut ingest,
            File::open(fx.join("busybox-rootfs.tar.gz")).unwrap(),
            &LayerExpect { diff_id: Some(wrong), ..Default::default() },
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DigestMismatch);
    let msg = err.to_string();
    assert!(msg.contains(&wrong.to_string()) && msg.contains("content has digest sha256:"), "{msg}");
    drop(ingest);
    let wrong_blob = Digest::of(b"nope");
    let mut ingest = store.content().ingest().unwrap();
    let err = store
        .layers()
        .unpack(
            &mut ingest,
            File::open(fx.join("busybox-rootfs.tar.gz")).unwrap(),
            &LayerExpect { blob: Some(wrong_blob), ..Default::default() },
        )
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DigestMismatch);
    assert!(err.to_string().contains(&wrong_blob.to_string()));
    drop(ingest);
    for d in ["blobs/sha256", "layers", "tmp"] {
        assert_eq!(fs::read_dir(store.root().join(d)).unwrap().count(), 0, "{d} stays empty");
    }
}

#[test]
fn rmi_respects_names_and_leases_and_gc_frees_only_garbage() {
    if !need_root("rmi_respects_names_and_leases_and_gc_frees_only_garbage") {
        return;
    }
    let fx = fixtures();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("store");
    let gz = fx.join("busybox-rootfs.tar.gz");
    let id = stdout(&layers(&root, &["import", "-q", gz.to_str().unwrap(), "a"])).trim().to_string();
    assert!(layers(&root, &["tag", "a", "b:1"]).status.success());
    let by_id = layers(&root, &["rmi", &id[7..19]]);
    assert_eq!(by_id.status.code(), Some(1));
    assert!(stderr(&by_id).contains("referenced by several names"), "{}", stderr(&by_id));

    let store = Store::open(&root).unwrap();
    let img = store.images().resolve("a").unwrap();
    store.images().add_lease("container-1", &img.manifest).unwrap();
    drop(store);
    assert!(layers(&root, &["rmi", "b:1"]).status.success(), "removing one of two names is fine");
    let refused = layers(&root, &["rmi", "a"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("used by container-1"), "{}", stderr(&refused));
    let gc = layers(&root, &["gc"]);
    assert!(gc.status.success());
    assert!(!stdout(&gc).contains("deleted layer"), "gc keeps referenced layers: {}", stdout(&gc));
    Store::open(&root).unwrap().images().remove_lease("container-1").unwrap();

    let rmi = layers(&root, &["rmi", "a"]);
    assert!(rmi.status.success(), "{}", stderr(&rmi));
    assert!(stdout(&rmi).contains(&format!("Deleted: {id}")));
    let gc = layers(&root, &["gc"]);
    assert!(stdout(&gc).contains("deleted layer sha256:"), "{}", stdout(&gc));
    for d in ["blobs/sha256", "layers", "tmp"] {
        assert_eq!(fs::read_dir(root.join(d)).unwrap().count(), 0, "{d} empty after gc");
    }
    assert!(layers(&root, &["fsck"]).status.success());
}

#[test]
fn fsck_finds_a_corrupted_blob_and_a_missing_layer() {
    if !need_root("fsck_finds_a_corrupted_blob_and_a_missing_layer") {
        return;
    }
    let fx = fixtures();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("store");
    assert!(layers(&root, &["import", "-q", fx.join("busybox-rootfs.tar.gz").to_str().unwrap(), "a"]).status.success());
    let blob = fs::read_dir(root.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    fs::OpenOptions::new().append(true).open(&blob).unwrap().write_all(b"x").unwrap();
    let layer = fs::read_dir(root.join("layers")).unwrap().next().unwrap().unwrap().path();
    fs::rename(&layer, work.path().join("moved")).unwrap();
    let out = layers(&root, &["fsck"]);
    assert_eq!(out.status.code(), Some(1));
    let report = stdout(&out);
    assert!(report.contains("content hashes to"), "{report}");
    assert!(report.contains("layer dir missing"), "{report}");
}

#[test]
fn a_store_from_a_newer_format_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("store");
    drop(Store::open(&root).unwrap());
    let st = Command::new("python3")
        .arg("-c")
        .arg("import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('PRAGMA user_version=99'); c.commit()")
        .arg(root.join("db.sqlite"))
        .status()
        .unwrap();
    assert!(st.success());
    let err = Store::open(&root).err().expect("newer format refused");
    assert!(err.to_string().contains("store format 99 is newer"), "{err}");
}

#[test]
/// Docker's CLI: 1 for a failed command, 125 for a usage error (its flag errors) and
/// for `run`/`create` failing before the command starts (docs: `docker run` exit status).
fn cli_errors_are_one_line_with_dockers_exit_status() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("store");
    for (args, want, code) in [
        (vec!["import", "/nonexistent.tar"], "open /nonexistent.tar", 1),
        (vec!["inspect", "nosuch"], "no such image", 1),
        (vec!["tag", "nosuch", "x"], "no such image", 1),
        (vec!["imags"], "unrecognized subcommand", 125),
        (vec!["run", "--pull", "never", "nosuch"], "no such image", 125),
        (vec!["create", "--pull", "never", "nosuch"], "no such image", 125),
    ] {
        let out = layers(&root, &args);
        assert_eq!(out.status.code(), Some(code), "{args:?}");
        assert!(stderr(&out).contains(want), "{args:?}: {}", stderr(&out));
    }
    let bad = layers(&root, &["import", "/dev/null", "UPPER"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("lowercase"), "{}", stderr(&bad));
}

both_modes!(
    gc_beside_a_running_container_frees_only_what_nothing_uses,
    gc_beside_a_running_container_frees_only_what_nothing_uses_rootless,
    gc_beside_a_running_container
);

fn gc_beside_a_running_container(mode: Mode) {
    let (work, root) = mode.store_with_fixtures();
    // An image of its own layer, made by GNU tar, then unnamed.
    let rootfs = work.path().join("rootfs");
    fs::create_dir_all(&rootfs).unwrap();
    fs::write(rootfs.join("only-here"), "x").unwrap();
    let tar = work.path().join("extra.tar");
    gnu_tar(&rootfs, &tar);
    mode.give(&tar);
    mode.layers_ok(&root, &["import", "-q", tar.to_str().unwrap(), "extra:1"]);
    let extra = layer_dirs_as(mode, &root, "localhost/extra:1");
    let used = layer_dirs_as(mode, &root, "localhost/layered");
    mode.layers_ok(&root, &["run", "-d", "--name", "busy", "localhost/layered", "sleep", "60"]);
    mode.layers_ok(&root, &["rmi", "localhost/extra:1"]);
    // The running container's `layers run` holds the store: gc still runs.
    let out = mode.layers_ok(&root, &["gc"]);
    assert!(
        out.contains(&format!("deleted layer sha256:{}", extra[0].file_name().unwrap().to_string_lossy())),
        "{out}"
    );
    assert!(!extra[0].exists());
    assert!(used.iter().all(|l| l.is_dir()), "a layer the running container uses went");
    assert!(mode.layers_ok(&root, &["ps", "-q"]).len() >= 12, "the container stopped");
    assert!(!mode.layers_ok(&root, &["exec", "busy", "cat", "/etc/hostname"]).is_empty());
    mode.layers_ok(&root, &["rm", "-f", "busy"]);
    assert_eq!(mode.layers_ok(&root, &["fsck"]), "store is consistent");
    // df counts what is left; rmi then gc empty the store.
    assert!(mode.layers_ok(&root, &["system", "df"]).contains("Images"), "df");
    mode.layers_ok(&root, &["image", "prune", "-a", "-f"]);
    assert_eq!(mode.layers_ok(&root, &["images", "-q"]), "", "image prune -a left images");
    mode.layers_ok(&root, &["gc"]);
    assert_eq!(fs::read_dir(root.join("layers")).unwrap().count(), 0, "gc left layers");
}

#[test]
fn an_image_with_the_same_layer_twice_commits_once() {
    if !need_root("an_image_with_the_same_layer_twice_commits_once") {
        return;
    }
    let fx = fixtures();
    let work = tempfile::tempdir().unwrap();
    let store = Store::open(&work.path().join("store")).unwrap();
    let mut ingest = store.content().ingest().unwrap();
    let mut rows = vec![];
    for _ in 0..2 {
        let u = store
            .layers()
            .unpack(&mut ingest, File::open(fx.join("busybox-rootfs.tar.gz")).unwrap(), &LayerExpect::default())
            .unwrap();
        rows.push(layers_store::meta::ImageLayerRow {
            diff_id: u.diff_id,
            blob: u.blob,
            media_type: u.compression.oci_media_type().into(),
            size: u.blob_size,
        });
    }
    let config = layers_store::images::oci::ImageConfig {
        rootfs: layers_store::images::oci::RootFs {
            kind: "layers".into(),
            diff_ids: vec![rows[0].diff_id, rows[1].diff_id],
        },
        ..layers_store::images::oci::ImageConfig::imported(rows[0].diff_id, "2024-01-01T00:00:00Z", "test")
    };
    let layer_descs = rows
        .iter()
        .map(|r| layers_store::images::oci::Descriptor {
            media_type: r.media_type.clone(),
            digest: r.blob,
            size: r.size,
            urls: None,
            annotations: None,
        })
        .collect();
    let blobs = layers_store::ImageBlobs::New { config: &config, layers: layer_descs };
    let image = store.images().record(ingest, blobs, &["localhost/twice:1".into()]).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(fs::read_dir(store.root().join("layers")).unwrap().count(), 1);
    assert_eq!(store.images().layers(&image.manifest).unwrap().len(), 2);
    assert!(store.gc().fsck(false).unwrap().is_empty());
    assert_eq!(fs::read_dir(store.root().join("tmp")).unwrap().count(), 0);
}

#[test]
fn damaged_zstd_layers_are_rejected() {
    if !need_root("damaged_zstd_layers_are_rejected") {
        return;
    }
    let fx = fixtures();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("store");
    let good = fs::read(fx.join("busybox-rootfs.tar.zst")).unwrap();
    let junk = work.path().join("junk.tar.zst");
    fs::write(&junk, [&good[..], b"junk after the frame"].concat()).unwrap();
    let cut = work.path().join("cut.tar.zst");
    fs::write(&cut, &good[..good.len() / 2]).unwrap();
    for (file, want) in [(&junk, "data after the zstd stream is not zstd"), (&cut, "truncated input")] {
        let out = layers(&root, &["import", file.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1));
        assert!(stderr(&out).contains(want), "{}", stderr(&out));
    }
    for d in ["blobs/sha256", "layers", "tmp"] {
        assert_eq!(fs::read_dir(root.join(d)).unwrap().count(), 0);
    }
}

#[test]
fn a_full_disk_fails_cleanly_and_leaves_the_store_as_it_was() {
    if !need_root("a_full_disk_fails_cleanly_and_leaves_the_store_as_it_was") {
        return;
    }
    let fx = fixtures();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("small");
    fs::create_dir(&root).unwrap();
    // 3 MiB: room for the database and a small image, not for the 2 MiB busybox layer and its blob.
    assert!(Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=3m", "tmpfs"])
        .arg(&root)
        .status()
        .unwrap()
        .success());
    struct Unmount<'a>(&'a std::path::Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(self.0).status();
        }
    }
    let _u = Unmount(&root);
    let store = root.join("store");
    let small = work.path().join("small.tar");
    assert!(Command::new("tar")
        .arg("-cf")
        .arg(&small)
        .arg("-C")
        .arg(fx.join("oci"))
        .arg("index.json")
        .status()
        .unwrap()
        .success());
    assert!(layers(&store, &["import", "-q", small.to_str().unwrap(), "small"]).status.success());
    let before: Vec<_> = ["blobs/sha256", "layers", "tmp"]
        .iter()
        .map(|d| fs::read_dir(store.join(d)).unwrap().map(|e| e.unwrap().file_name()).collect::<Vec<_>>())
        .collect();
    let out = layers(&store, &["import", fx.join("busybox-rootfs.tar.gz").to_str().unwrap(), "big"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("No space left on device") && err.lines().count() == 1, "{err}");
    let after: Vec<_> = ["blobs/sha256", "layers", "tmp"]
        .iter()
        .map(|d| fs::read_dir(store.join(d)).unwrap().map(|e| e.unwrap().file_name()).collect::<Vec<_>>())
        .collect();
    assert_eq!(before, after, "nothing half-written is left");
    let images = stdout(&layers(&store, &["images"]));
    assert!(images.lines().any(|l| l.starts_with("small ")) && !images.contains("big"), "{images}");
    assert!(layers(&store, &["fsck"]).status.success());
}

#[test]
fn a_volume_dir_without_its_row_is_swept() {
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    layers_ok(&store, &["volume", "create", "keep"]);
    // What a process killed between the dir's rename and its row leaves (or between a
    // `volume rm`'s row and its dir), filled as a container would have.
    let orphan = store.join("volumes/orphan/_data");
    fs::create_dir_all(&orphan).unwrap();
    fs::write(orphan.join("f"), b"x").unwrap();
    // Any command alone on the store sweeps.
    assert_eq!(layers_ok(&store, &["volume", "ls", "-q"]), "keep");
    assert!(!store.join("volumes/orphan").exists(), "the orphan dir is gone");
    assert!(store.join("volumes/keep/_data").is_dir(), "a recorded volume stays");
}
