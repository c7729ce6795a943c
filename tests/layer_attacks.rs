//! The hostile layer corpus (fixtures/hostile/generate.py): every attack fails with
//! an error naming the entry and the cause, nothing outside the store changes, and
//! the store is left exactly as it was.

// Tests make and inspect their fixtures by path (clippy.toml bans that in the code under test).
#![allow(clippy::disallowed_methods)]

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// (case file, expected substring of the one-line error)
const REJECTED: &[(&str, &str)] = &[
    ("traversal-dotdot.tar", "path has a '..' component"),
    ("traversal-nested.tar", "layer entry \"a/../../x\": path has a '..' component"),
    ("symlink-to-root-then-write.tar", "path goes through symlink \"l\""),
    ("symlink-dotdot-then-write.tar", "layer entry \"l/pwned\": path goes through symlink \"l\""),
    ("symlink-named-dot.tar", "layer entry \".\": entry would replace the layer root"),
    ("symlink-named-slash.tar", "layer entry \"/\": entry would replace the layer root"),
    ("hardlink-dotdot.tar", "layer entry \"x\": hardlink target: path has a '..' component"),
    ("hardlink-through-symlink.tar", "layer entry \"x\": path goes through symlink \"d\""),
    ("whiteout-dotdot.tar", "layer entry \"a/.wh..\": whiteout names no file"),
    ("whiteout-dotdotdot.tar", "layer entry \"a/.wh...\": whiteout names no file"),
    ("whiteout-bare.tar", "layer entry \"a/.wh.\": whiteout names no file"),
    ("whiteout-under-symlink.tar", "layer entry \"d/.wh.secret\": path goes through symlink \"d\""),
    ("opaque-on-file.tar", "layer entry \"f/.wh..wh..opq\": \"f\" is not a directory"),
    ("opaque-on-symlink.tar", "layer entry \"d/.wh..wh..opq\": path goes through symlink \"d\""),
    ("pax-64mib.tar", "PAX header of 67108882 bytes exceeds the 1048576 byte limit"),
    ("path-over-4096.tar", "path longer than 4096 bytes"),
    ("nesting-100k-deep.tar", "path longer than 4096 bytes"),
    ("gzip-bomb.tar.gz", "uncompressed size exceeds the limit of 67108864 bytes"),
    ("entry-bomb.tar", "more than 100 entries"),
    ("truncated-gzip.tar.gz", "decompress gzip layer: input: truncated input"),
    ("trailing-junk-gzip.tar.gz", "data after the gzip stream is not gzip"),
];

fn snapshot(dir: &Path) -> Vec<(String, u32, i64, u64)> {
    let mut out = vec![];
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = fs::symlink_metadata(e.path()).unwrap();
        out.push((e.file_name().to_string_lossy().into_owned(), m.mode(), m.mtime(), m.size()));
    }
    out.sort();
    out
}

fn store_entries(store: &Path) -> Vec<String> {
    let mut out = vec![];
    for d in ["blobs/sha256", "layers", "tmp"] {
        for e in fs::read_dir(store.join(d)).unwrap() {
            out.push(format!("{d}/{}", e.unwrap().file_name().to_string_lossy()));
        }
    }
    out
}

/// A victim dir outside any store, and the corpus aimed at it: (victim, corpus).
fn corpus(work: &Path) -> (PathBuf, PathBuf) {
    let victim = work.join("victim");
    fs::create_dir(&victim).unwrap();
    fs::write(victim.join("secret"), "secret\n").unwrap();
    let corpus = work.join("corpus");
    let st = Command::new("python3")
        .arg(repo().join("fixtures/hostile/generate.py"))
        .args([&corpus, &victim])
        .status()
        .expect("python3 runs the corpus generator");
    assert!(st.success());
    (victim, corpus)
}

both_modes!(
    hostile_layers_are_rejected_and_leave_no_trace,
    hostile_layers_are_rejected_and_leave_no_trace_rootless,
    hostile_corpus
);

/// Every case of the corpus imported by `mode`'s user, against a victim dir that user
/// owns (so only our checks stand between an attack and it).
fn hostile_corpus(mode: Mode) {
    let work = mode.work();
    let (victim, corpus) = corpus(work.path());
    mode.give(work.path());
    let before = snapshot(&victim);

    let store = work.path().join("store");
    // A store that already holds an image: a failed import must not disturb it.
    let ok = mode.run(&store, &["import", "-q", corpus.join("good.tar.gz").to_str().unwrap(), "good"]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    let entries_before = store_entries(&store);
    let list = ["images", "--format", "{{.ID}} {{.Repository}}:{{.Tag}} {{.Digest}} {{.Size}}"];
    let images_before = stdout(&mode.run(&store, &list));

    let mut failures = vec![];
    for (case, want) in REJECTED {
        let out = mode
            .command(&store)
            .args(["--max-layer-size", "67108864", "--max-layer-entries", "100"])
            .args(["import", corpus.join(case).to_str().unwrap(), "hostile"])
            .output()
            .unwrap();
        let err = stderr(&out);
        // Docker's CLI: a failed command (not run/create) exits 1.
        if out.status.code() != Some(1) {
            failures.push(format!("{case}: exit {:?}, stderr {err:?}", out.status.code()));
        }
        if err.lines().count() != 1 || !err.starts_with("layers: ") || !err.contains(want) {
            failures.push(format!("{case}: want one line containing {want:?}, got {err:?}"));
        }
        if snapshot(&victim) != before {
            failures.push(format!("{case}: the victim dir outside the store changed"));
        }
        if store_entries(&store) != entries_before {
            failures.push(format!("{case}: store content changed: {:?}", store_entries(&store)));
        }
        if stdout(&mode.run(&store, &list)) != images_before {
            failures.push(format!("{case}: image list changed"));
        }
    }
    let fsck = mode.run(&store, &["fsck"]);
    assert!(fsck.status.success(), "fsck after hostile imports: {}", stdout(&fsck));
    assert!(failures.is_empty(), "{mode:?}:\n{}", failures.join("\n"));
}

/// Cases that are legal tar but must be handled safely: the import succeeds,
/// the victim is untouched, and the layer holds what the last entries say.
#[test]
fn tricky_but_legal_layers_unpack_safely() {
    if !need_root("tricky_but_legal_layers_unpack_safely") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let (victim, corpus) = corpus(work.path());
    let before = snapshot(&victim);
    let store = work.path().join("store");
    let layer_of = |case: &str| {
        let out = layers(&store, &["import", "-q", corpus.join(case).to_str().unwrap(), case.trim_end_matches(".tar")]);
        assert!(out.status.success(), "{case}: {}", stderr(&out));
        let inspect: serde_json::Value =
            serde_json::from_str(&stdout(&layers(&store, &["inspect", "--raw", case.trim_end_matches(".tar")])))
                .unwrap();
        let diff = inspect[0]["Config"]["rootfs"]["diff_ids"][0].as_str().unwrap().to_string();
        store.join("layers").join(diff.trim_start_matches("sha256:"))
    };

    let l = layer_of("metadata-through-symlink.tar");
    assert!(fs::symlink_metadata(l.join("l")).unwrap().is_dir(), "a dir entry replaces the symlink, never follows it");
    assert_eq!(fs::symlink_metadata(l.join("m")).unwrap().uid(), 1234, "owner set on the symlink itself");
    assert_eq!(snapshot(&victim), before, "victim untouched by chmod/chown/utimes");

    let l = layer_of("overlay-xattrs.tar");
    let x = xattrs(&l.join("f"));
    assert_eq!(x.get("user.kept").map(Vec::as_slice), Some(&b"1"[..]));
    let all = rustix::fs::llistxattr(l.join("f"), &mut vec![0u8; 4096][..]).unwrap();
    let mut names = vec![0u8; all];
    rustix::fs::llistxattr(l.join("f"), &mut names[..]).unwrap();
    let names = String::from_utf8_lossy(&names);
    assert!(!names.contains("overlay."), "overlay xattrs from the tar are stripped: {names}");

    let l = layer_of("duplicates-and-type-changes.tar");
    assert_eq!(fs::read_to_string(l.join("a")).unwrap(), "second\n", "last entry wins");
    assert!(fs::symlink_metadata(l.join("d")).unwrap().file_type().is_symlink(), "dir replaced by symlink");
    assert!(fs::symlink_metadata(l.join("s")).unwrap().is_dir(), "symlink replaced by dir");
    assert_eq!(fs::read_to_string(l.join("s/inside")).unwrap(), "in\n");
    assert_eq!(fs::read_to_string(l.join("h")).unwrap(), "hard\n", "replacing a hardlink leaves its source alone");
    assert_eq!(fs::read_to_string(l.join("h2")).unwrap(), "replaced\n");
    assert_eq!(snapshot(&victim), before);

    // An absolute member name is read beneath the root, as Docker, containerd and
    // GNU tar read it (the leading `/` dropped): the victim outside is untouched.
    let l = layer_of("absolute-name.tar");
    let inside = l.join(victim.strip_prefix("/").unwrap()).join("pwned");
    assert!(fs::symlink_metadata(&inside).unwrap().is_file(), "{} holds the file", inside.display());
    assert_eq!(snapshot(&victim), before);
    let l = layer_of("absolute-hardlink.tar");
    assert_eq!(fs::metadata(l.join("h")).unwrap().ino(), fs::metadata(l.join("f")).unwrap().ino(), "h links /f");

    // Bytes after the end-of-archive marker: accepted, as Docker accepts them, and
    // still part of the stream whose digest is the diffID.
    let l = layer_of("trailing-junk-tar.tar");
    assert_eq!(fs::read_to_string(l.join("hello")).unwrap(), "hello\n");
    let whole = fs::read(corpus.join("trailing-junk-tar.tar")).unwrap();
    assert!(whole.ends_with(b"junkjunk"));
    assert_eq!(l.file_name().unwrap().to_string_lossy(), layers_store::Digest::of(&whole).hex());
}
