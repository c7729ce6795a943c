//! Small files are made by a writer thread while the tar is parsed: a layer whose
//! entries revisit paths (replace a file, a directory full of files in flight, link
//! to or whiteout a file just written, put an entry under a file) must end exactly
//! as one thread taking the entries in tar order leaves it, and a failure is
//! reported for the first failing entry in tar order, whichever thread met it. A file
//! gets its entry's owner, mode and xattrs whichever thread made it and however its
//! creation left it.

// Tests make and inspect their fixtures by path (clippy.toml bans that in the code under test).
#![allow(clippy::disallowed_methods)]

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::Output;

use common::tar_bytes::*;
use common::*;

/// `layers --root STORE import TAR NAME` with every small file handed to the writer
/// threads (a debug build's switch; by default only a writer behind the decoder
/// hands off, which a test's small archive never makes it).
fn import_handing_off(store: &Path, tar: &Path, name: &str) -> Output {
    import_cmd(store, tar, name, true).output().unwrap()
}

/// The command `layers --root STORE import -q TAR NAME`, small files handed off or not.
fn import_cmd(store: &Path, tar: &Path, name: &str, hand_off: bool) -> std::process::Command {
    let mut cmd = layers_cmd();
    if hand_off {
        cmd.env("LAYERS_DEBUG_HANDOFF", "1");
    }
    cmd.arg("--root").arg(store).args(["import", "-q"]).arg(tar).arg(name);
    cmd
}

/// `n` small files under `dir/`: enough to fill the writers' queue.
fn files_under(dir: &str, n: usize, content: &str) -> Vec<Vec<u8>> {
    (0..n).map(|i| file(&format!("{dir}/f{i}"), format!("{content} {i}\n").as_bytes())).collect()
}

#[test]
fn entries_that_revisit_paths_in_flight_end_as_the_last_entry_says() {
    if !need_root("entries_that_revisit_paths_in_flight_end_as_the_last_entry_says") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let mut parts = vec![header("many/", b'5', 0, "")];
    parts.extend(files_under("many", 300, "first"));
    parts.extend([
        file("x", b"one\n"),
        file("x", b"two\n"),
        header("d/", b'5', 0, ""),
        file("d/f", b"inner\n"),
        file("d", b"now a file\n"),
        file("h", b"linked\n"),
        header("h2", b'1', 0, "h"),
        file("w", b"gone\n"),
        file(".wh.w", b""),
        // A directory whose 300 files may all be in flight, replaced by a symlink.
        header("many", b'2', 0, "elsewhere"),
        header("again/", b'5', 0, ""),
    ]);
    parts.extend(files_under("again", 50, "old"));
    // The directory named twice stays; a file in it written twice has the last bytes.
    parts.extend([header("again/", b'5', 0, ""), file("again/f7", b"new\n"), end()]);
    let (store, tar) = (work.path().join("store"), work.path().join("revisit.tar"));
    fs::write(&tar, parts.concat()).unwrap();
    let out = import_handing_off(&store, &tar, "revisit");
    assert!(out.status.success(), "{}", stderr(&out));
    let layer = layer_dirs(&store, "revisit").remove(0);

    assert_eq!(fs::read_to_string(layer.join("x")).unwrap(), "two\n");
    assert_eq!(fs::read_to_string(layer.join("d")).unwrap(), "now a file\n");
    let (h, h2) = (fs::metadata(layer.join("h")).unwrap(), fs::metadata(layer.join("h2")).unwrap());
    assert_eq!((h.ino(), h.nlink()), (h2.ino(), 2));
    assert_eq!(fs::read_to_string(layer.join("h2")).unwrap(), "linked\n");
    let w = fs::symlink_metadata(layer.join("w")).unwrap();
    assert!(w.file_type().is_char_device() && w.rdev() == 0, "w is a whiteout: {w:?}");
    assert_eq!(fs::read_link(layer.join("many")).unwrap(), Path::new("elsewhere"));
    assert_eq!(fs::read_dir(layer.join("again")).unwrap().count(), 50);
    assert_eq!(fs::read_to_string(layer.join("again/f7")).unwrap(), "new\n");
    assert_eq!(fs::read_to_string(layer.join("again/f8")).unwrap(), "old 8\n");
    // The listing recorded as the writers finished agrees with the tree on disk.
    assert_eq!(layers_ok(&store, &["fsck"]), "store is consistent");
}

#[test]
fn an_entry_under_a_file_in_flight_is_refused_and_nothing_is_stored() {
    if !need_root("an_entry_under_a_file_in_flight_is_refused_and_nothing_is_stored") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let path = work.path().join("under.tar");
    let mut parts = files_under("a", 20, "x");
    parts.extend([file("p", b"a file\n"), file("p/q", b"under it\n"), end()]);
    fs::write(&path, parts.concat()).unwrap();
    let out = import_handing_off(&store, &path, "under");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("\"p/q\"") && err.contains("not a directory") && err.lines().count() == 1, "{err}");
    assert_eq!(layers_ok(&store, &["images", "-q"]), "");
}

#[test]
fn the_first_failing_entry_in_tar_order_is_the_one_named() {
    if !need_root("the_first_failing_entry_in_tar_order_is_the_one_named") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    // "bad" fails in a writer (the kernel refuses an xattr of no namespace it knows);
    // "../out", later, fails on the parsing thread, which may see it first.
    let cases = [
        ("both", vec![pax(&[("SCHILY.xattr.nonamespace.k", b"v")]), file("bad", b"data\n"), file("../out", b"x\n")]),
        ("writer-only", vec![pax(&[("SCHILY.xattr.nonamespace.k", b"v")]), file("bad", b"data\n"), file("ok", b"x\n")]),
    ];
    for (name, mut parts) in cases {
        let path = work.path().join(format!("{name}.tar"));
        parts.push(end());
        fs::write(&path, parts.concat()).unwrap();
        let out = import_handing_off(&store, &path, name);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert!(err.contains("\"bad\"") && err.contains("nonamespace.k") && err.lines().count() == 1, "{name}: {err}");
    }
    assert_eq!(layers_ok(&store, &["images", "-q"]), "");
}

#[test]
fn files_get_their_entrys_owner_mode_and_xattrs_however_creation_left_them() {
    if !need_root("files_get_their_entrys_owner_mode_and_xattrs_however_creation_left_them") {
        return;
    }
    use std::os::unix::process::CommandExt;
    // A file created with its own mode and owner needs no chown or chmod; these are
    // the files whose creation leaves something else: a umask takes bits away, a
    // setgid directory gives its group, an owner or a setuid bit that only a chown
    // and a chmod give; and a capability that a chown would clear.
    let cap = [0x01, 0, 0, 0x02, 0, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]; // v2, effective, CAP_NET_BIND_SERVICE
    let parts = [
        owned(header("sg/", b'5', 0, ""), 0, 5, 0o2775),
        owned(file("sg/f", b"in a setgid dir\n"), 0, 0, 0o644),
        owned(file("open", b"rw for all\n"), 0, 0, 0o666),
        owned(file("suid", b"setuid\n"), 0, 0, 0o4755),
        owned(file("theirs", b"someone else's\n"), 1000, 1001, 0o640),
        pax(&[("SCHILY.xattr.security.capability", &cap)]),
        owned(file("cap", b"capable\n"), 0, 0, 0o755),
        pax(&[("SCHILY.xattr.security.capability", &cap)]),
        owned(file("capuser", b"capable, theirs\n"), 1000, 1000, 0o750),
        end(),
    ];
    let want = [
        ("sg/f", 0, 0, 0o644, false),
        ("open", 0, 0, 0o666, false),
        ("suid", 0, 0, 0o4755, false),
        ("theirs", 1000, 1001, 0o640, false),
        ("cap", 0, 0, 0o755, true),
        ("capuser", 1000, 1000, 0o750, true),
    ];
    let work = tempfile::tempdir().unwrap();
    let tar = work.path().join("attrs.tar");
    fs::write(&tar, parts.concat()).unwrap();
    for (hand_off, umask) in [(false, 0o022), (true, 0o022), (false, 0o077), (true, 0o077)] {
        let case = format!("hand_off={hand_off} umask={umask:03o}");
        let store = work.path().join(format!("store-{hand_off}-{umask:o}"));
        let mut cmd = import_cmd(&store, &tar, "attrs", hand_off);
        // SAFETY: umask is async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                rustix::process::umask(rustix::fs::Mode::from_raw_mode(umask));
                Ok(())
            });
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{case}: {}", stderr(&out));
        let layer = layer_dirs(&store, "attrs").remove(0);
        for (name, uid, gid, mode, capable) in want {
            let m = fs::symlink_metadata(layer.join(name)).unwrap();
            assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (uid, gid, mode), "{case}: {name}");
            let mut got = [0u8; 64];
            let n = rustix::fs::getxattr(layer.join(name).as_path(), "security.capability", &mut got[..]).unwrap_or(0);
            assert_eq!(&got[..n], if capable { &cap[..] } else { &[][..] }, "{case}: capability of {name}");
        }
        assert_eq!(layers_ok(&store, &["fsck"]), "store is consistent", "{case}");
    }
}
