//! Tar read as Go's archive/tar reads it (the reader Docker, containerd and Podman
//! unpack layers with, and most registry scanners are built on): where we and it
//! disagree on what a layer holds, a scanner can be shown one tree and a container
//! run another. Each archive is built here byte by byte, then imported; GNU tar is
//! the second reader where it agrees with Go.

// Tests make and inspect their fixtures by path (clippy.toml bans that in the code under test).
#![allow(clippy::disallowed_methods)]

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::tar_bytes::*;
use common::*;

/// What GNU tar lists in the archive.
fn gnu_tar_lists(work: &Path, image: &str) -> Vec<String> {
    let out = std::process::Command::new("tar").arg("-tf").arg(work.join(format!("{image}.tar"))).output().unwrap();
    stdout(&out).lines().map(str::to_string).collect()
}

fn names(dir: &Path) -> Vec<String> {
    let mut n: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into()).collect();
    n.sort();
    n
}

#[test]
fn a_later_pax_header_replaces_an_earlier_one() {
    if !need_root("a_later_pax_header_replaces_an_earlier_one") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    // Two x headers before one entry: only the second applies, so the first's `path`
    // does not rename the entry (merging them would: a parser differential).
    let (_, layer) = import(
        work.path(),
        "pax2",
        &[pax(&[("path", b"renamed")]), pax(&[("mtime", b"1000")]), file("plain", b"data\n"), end()],
    );
    assert_eq!(names(&layer), ["plain"]);
    assert_eq!(fs::metadata(layer.join("plain")).unwrap().mtime(), 1000);
}

#[test]
fn a_gnu_long_name_wins_over_a_pax_path_as_in_go() {
    if !need_root("a_gnu_long_name_wins_over_a_pax_path_as_in_go") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    // Go applies the PAX records, then the GNU long name and link over them, in
    // either order. (GNU tar lets PAX win; Docker's, containerd's and Podman's
    // reader is Go's, so a layer means what Go reads.)
    for (i, order) in [[0, 1], [1, 0]].iter().enumerate() {
        let ext = [pax(&[("path", b"pax-name"), ("linkpath", b"pax-target")]), gnu_long(b'L', "gnu-name")];
        let link = gnu_long(b'K', "gnu-target");
        let (_, layer) = import(
            work.path(),
            &format!("gnu{i}"),
            &[ext[order[0]].clone(), ext[order[1]].clone(), link, header("short", b'2', 0, "short-target"), end()],
        );
        assert_eq!(names(&layer), ["gnu-name"], "order {order:?}");
        assert_eq!(fs::read_link(layer.join("gnu-name")).unwrap(), Path::new("gnu-target"));
    }
}

#[test]
fn a_symlink_header_with_a_size_has_no_data_so_what_follows_is_the_next_entry() {
    if !need_root("a_symlink_header_with_a_size_has_no_data_so_what_follows_is_the_next_entry") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    // A symlink that claims 1024 bytes of data, and those bytes are a file entry.
    // Go reads links, devices, dirs and FIFOs as header-only: "hidden" is an entry
    // to it, and so to every scanner built on it; GNU tar skips the bytes and never
    // sees it. We read as Go: what a scanner lists is what we extract.
    let hidden = file("hidden", b"payload\n");
    assert_eq!(hidden.len(), 1024);
    let (_, layer) =
        import(work.path(), "symsize", &[header("link", b'2', 1024, "target"), hidden, file("after", b"x\n"), end()]);
    assert_eq!(names(&layer), ["after", "hidden", "link"]);
    assert_eq!(fs::read_to_string(layer.join("hidden")).unwrap(), "payload\n");
    assert_eq!(
        gnu_tar_lists(work.path(), "symsize"),
        ["link", "after"],
        "GNU tar skips the data (documented difference)"
    );
}

/// Issue 26: types Go's reader passes on but Docker's and containerd's unpackers
/// refuse ("unhandled tar header type") were extracted here (a dumpdir as a
/// directory, a contiguous file as a file, an old GNU sparse file, a volume header
/// skipped); a layer they refuse is refused here too, by name, and nothing is stored.
#[test]
fn entry_types_docker_and_containerd_refuse_are_refused() {
    if !need_root("entry_types_docker_and_containerd_refuse_are_refused") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let listing = b"Ya\0Nb\0\0";
    let cases: [(&str, Vec<Vec<u8>>, &str); 4] = [
        (
            "dumpdir",
            vec![header("d/", b'D', listing.len() as u64, ""), padded(listing)],
            "'D' (GNU dumpdir) for \"d/\"",
        ),
        ("contiguous", vec![header("c", b'7', 2, ""), padded(b"c\n")], "'7' (contiguous file) for \"c\""),
        ("volume", vec![header("label", b'V', 0, "")], "'V' (GNU volume header) for \"label\""),
        ("oldsparse", vec![header("s", b'S', 0, "")], "'S' (old GNU sparse file) for \"s\""),
    ];
    for (name, parts, want) in cases {
        let path = work.path().join(format!("{name}.tar"));
        fs::write(&path, [parts.concat(), file("after", b"a\n"), end()].concat()).unwrap();
        let out = layers(&store, &["import", path.to_str().unwrap(), name]);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains(want) && err.contains("Docker and containerd refuse it") && err.lines().count() == 1,
            "{name}: {err}"
        );
    }
    assert_eq!(layers_ok(&store, &["images", "-q"]), "");
}

/// Issue 26: Go before 1.8 wrote a USTAR prefix into GNU headers (Go's testdata
/// invalid-go17.tar); Go reads it back as the name's prefix when the atime/ctime
/// fields it overwrote do not parse, and keeps a real GNU header's times as times.
#[test]
fn a_prefix_written_by_go_1_7_into_a_gnu_header_is_read_as_go_reads_it() {
    if !need_root("a_prefix_written_by_go_1_7_into_a_gnu_header_is_read_as_go_reads_it") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let gnu = |prefix: &[u8]| {
        let mut h = header("foo", b'0', 2, "");
        h[257..265].copy_from_slice(b"ustar  \0");
        h[345..345 + prefix.len()].copy_from_slice(prefix);
        seal(&mut h);
        [h, padded(b"x\n")].concat()
    };
    let a = "a".repeat(97);
    let (_, layer) = import(work.path(), "go17", &[gnu(a.as_bytes()), end()]);
    assert_eq!(fs::read_to_string(layer.join(&a).join("foo")).unwrap(), "x\n");
    // Valid octal atime and ctime: a GNU header's times, no prefix.
    let (_, layer) = import(work.path(), "gnutimes", &[gnu(b"00000000000\x0000000000000\x00"), end()]);
    assert_eq!(names(&layer), ["foo"]);
}

#[test]
fn times_before_1970_are_kept() {
    if !need_root("times_before_1970_are_kept") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    // One through PAX, one in GNU base-256 (two's complement).
    let mut b256 = header("b256", b'0', 0, "");
    b256[136..148].copy_from_slice(&[0xff; 12]);
    b256[144..148].copy_from_slice(&(-86400i32).to_be_bytes());
    seal(&mut b256);
    let (_, layer) = import(work.path(), "negative", &[pax(&[("mtime", b"-1.5")]), file("pax", b""), b256, end()]);
    assert_eq!(fs::symlink_metadata(layer.join("pax")).unwrap().mtime(), -2);
    assert_eq!(fs::symlink_metadata(layer.join("b256")).unwrap().mtime(), -86400);
}

#[test]
fn a_nul_in_a_pax_name_is_refused_naming_the_record_and_the_entry() {
    if !need_root("a_nul_in_a_pax_name_is_refused_naming_the_record_and_the_entry") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let path = work.path().join("nul.tar");
    fs::write(
        &path,
        [file("first", b"1\n"), pax(&[("linkpath", b"a\0/etc/shadow")]), header("l", b'2', 0, "a"), end()].concat(),
    )
    .unwrap();
    let store = work.path().join("store");
    let out = layers(&store, &["import", path.to_str().unwrap(), "nul"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("tar entry #2") && err.contains("record \"linkpath\" holds a NUL byte"), "{err}");
    assert_eq!(layers_ok(&store, &["images", "-q"]), "");
}

#[test]
fn a_zero_block_then_a_header_is_malformed_as_in_go() {
    if !need_root("a_zero_block_then_a_header_is_malformed_as_in_go") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    // One zero block, then an entry: GNU tar (without -i) stops at the zero block, Go
    // calls it an invalid header. Either way nobody may extract "ghost".
    let path = work.path().join("ghost.tar");
    fs::write(&path, [file("a", b"a\n"), vec![0u8; 512], file("ghost", b"boo\n"), end()].concat()).unwrap();
    let store = work.path().join("store");
    let out = layers(&store, &["import", path.to_str().unwrap(), "ghost"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("end-of-archive marker is two zero blocks"), "{}", stderr(&out));
}

#[test]
fn gnu_sparse_files_in_every_format_extract_with_their_holes() {
    if !need_root("gnu_sparse_files_in_every_format_extract_with_their_holes") {
        return;
    }
    use std::os::unix::fs::FileExt;
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(&src).unwrap();
    // 40 MiB with three islands of data (one at the very end) and holes between.
    let f = fs::File::create(src.join("sparse")).unwrap();
    f.set_len(40 << 20).unwrap();
    f.write_all_at(b"start", 0).unwrap();
    f.write_all_at(&[7u8; 70_000], 10 << 20).unwrap();
    f.write_all_at(b"end", (40 << 20) - 3).unwrap();
    drop(f);
    fs::write(src.join("plain"), "plain\n").unwrap();
    let want = fs::read(src.join("sparse")).unwrap();
    // GNU tar's default (old GNU, type 'S') is refused as Docker refuses it (above).
    for (name, args) in [
        ("pax00", &["--format=posix", "--sparse-version=0.0"][..]),
        ("pax01", &["--format=posix", "--sparse-version=0.1"][..]),
        ("pax10", &["--format=posix", "--sparse-version=1.0"][..]),
    ] {
        let tar = work.path().join(format!("{name}.tar"));
        let st = std::process::Command::new("tar")
            .args(["-S", "-cf"])
            .arg(&tar)
            .args(args)
            .arg("-C")
            .arg(&src)
            .args(["sparse", "plain"])
            .status()
            .unwrap();
        assert!(st.success());
        // The archive holds the islands, not 40 MiB.
        assert!(fs::metadata(&tar).unwrap().len() < 1 << 20, "{name}: GNU tar wrote a sparse archive");
        let store = work.path().join(format!("store-{name}"));
        layers_ok(&store, &["import", "-q", tar.to_str().unwrap(), name]);
        let layer = layer_dirs(&store, name).remove(0);
        assert_eq!(names(&layer), ["plain", "sparse"], "{name}");
        let got = layer.join("sparse");
        let m = fs::metadata(&got).unwrap();
        assert_eq!(m.len(), 40 << 20, "{name}: size");
        assert!(m.blocks() * 512 < 4 << 20, "{name}: holes stay holes ({} blocks)", m.blocks());
        assert!(fs::read(&got).unwrap() == want, "{name}: content as GNU tar wrote it");
        assert_eq!(fs::read_to_string(layer.join("plain")).unwrap(), "plain\n");
        // And as GNU tar extracts it, byte for byte.
        let out = work.path().join(format!("gnu-{name}"));
        fs::create_dir_all(&out).unwrap();
        let st = std::process::Command::new("tar").arg("-xf").arg(&tar).arg("-C").arg(&out).status().unwrap();
        assert!(st.success());
        assert!(fs::read(out.join("sparse")).unwrap() == fs::read(&got).unwrap(), "{name}: GNU tar agrees");
        assert_eq!(layers_ok(&store, &["fsck"]), "store is consistent");
    }
}

#[test]
fn a_sparse_map_that_lies_is_refused_and_holes_count_against_the_size_limit() {
    if !need_root("a_sparse_map_that_lies_is_refused_and_holes_count_against_the_size_limit") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let import = |name: &str, parts: &[Vec<u8>], extra: &[&str]| {
        let path = work.path().join(format!("{name}.tar"));
        fs::write(&path, parts.concat()).unwrap();
        let mut args = extra.to_vec();
        args.extend(["import", path.to_str().unwrap(), name]);
        layers(&store, &args)
    };
    // PAX 0.1: a map covering 8 bytes for an entry that holds 5.
    let lying = pax(&[
        ("GNU.sparse.name", b"f"),
        ("GNU.sparse.size", b"100"),
        ("GNU.sparse.numblocks", b"2"),
        ("GNU.sparse.map", b"0,4,50,4"),
    ]);
    let out = import("lying", &[lying, file("GNUSparseFile.0/f", b"abcde"), end()], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("sparse map covers 8 bytes but the entry holds 5"), "{}", stderr(&out));
    // A 5-byte entry that claims to be a 1 TiB file: refused by the layer size limit.
    let huge = pax(&[
        ("GNU.sparse.name", b"f"),
        ("GNU.sparse.size", b"1099511627776"),
        ("GNU.sparse.numblocks", b"1"),
        ("GNU.sparse.map", b"0,5"),
    ]);
    let out = import("huge", &[huge, file("GNUSparseFile.0/f", b"abcde"), end()], &["--max-layer-size", "1048576"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("sparse files larger than the limit of 1048576 bytes"), "{}", stderr(&out));
    // As Go: a 0.1 map needs GNU.sparse.numblocks, counting its pairs (Go: ErrHeader).
    for (name, blocks) in [("no-count", None), ("miscount", Some(&b"3"[..]))] {
        let mut records =
            vec![("GNU.sparse.name", &b"f"[..]), ("GNU.sparse.size", b"100"), ("GNU.sparse.map", b"0,4,50,4")];
        records.extend(blocks.map(|b| ("GNU.sparse.numblocks", b)));
        let out = import(name, &[pax(&records), file("GNUSparseFile.0/f", b"abcdefgh"), end()], &[]);
        assert_eq!(out.status.code(), Some(1), "{name}");
        assert!(stderr(&out).contains("GNU.sparse.numblocks"), "{name}: {}", stderr(&out));
    }
    assert_eq!(layers_ok(&store, &["images", "-q"]), "");
}

/// Issue 26: a 5 KB layer holding a 60 GB sparse file took 18–82 s to import (its
/// holes hashed as zeros for the fsck listing); GNU tar takes 5 ms. Holes now cost
/// their length, in the import and in fsck alike.
#[test]
fn a_sixty_gb_sparse_file_costs_its_data_not_its_holes() {
    if !need_root("a_sixty_gb_sparse_file_costs_its_data_not_its_holes") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    let size = 60_000_000_000u64;
    let map = format!("0,5,{},4", size - 4);
    let sparse = pax(&[
        ("GNU.sparse.name", b"big"),
        ("GNU.sparse.size", size.to_string().as_bytes()),
        ("GNU.sparse.numblocks", b"2"),
        ("GNU.sparse.map", map.as_bytes()),
    ]);
    let path = work.path().join("sparse.tar");
    fs::write(&path, [sparse, file("GNUSparseFile.0/big", b"startend!"), end()].concat()).unwrap();
    assert!(fs::metadata(&path).unwrap().len() < 8 << 10);
    let t = std::time::Instant::now();
    layers_ok(&store, &["import", "-q", path.to_str().unwrap(), "sparse"]);
    let import = t.elapsed();
    let t = std::time::Instant::now();
    assert_eq!(layers_ok(&store, &["fsck"]), "store is consistent");
    let fsck = t.elapsed();
    // Generous bounds (a loaded CI machine): hashing 60 GB of zeros takes 18 s at best.
    assert!(
        import < std::time::Duration::from_secs(5) && fsck < std::time::Duration::from_secs(5),
        "import {import:?}, fsck {fsck:?}"
    );
    let got = layer_dirs(&store, "sparse").remove(0).join("big");
    let f = fs::File::open(&got).unwrap();
    assert_eq!(f.metadata().unwrap().len(), size);
    use std::os::unix::fs::FileExt;
    let mut b = [0u8; 5];
    f.read_exact_at(&mut b, 0).unwrap();
    assert_eq!(&b, b"start");
    f.read_exact_at(&mut b[..4], size - 4).unwrap();
    assert_eq!(&b[..4], b"end!");
    // A change inside a hole is a change fsck sees.
    fs::OpenOptions::new().write(true).open(&got).unwrap().write_all_at(b"x", size / 2).unwrap();
    let out = layers(&store, &["fsck"]);
    assert!(!out.status.success() && stdout(&out).contains("first difference at big"), "{}", stdout(&out));
}

#[test]
fn an_xattr_the_kernel_refuses_is_named_in_words() {
    if !need_root("an_xattr_the_kernel_refuses_is_named_in_words") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let path = work.path().join("xattr.tar");
    fs::write(&path, [pax(&[("SCHILY.xattr.bogus.name", b"v")]), file("f", b"x\n"), end()].concat()).unwrap();
    let store = work.path().join("store");
    let out = layers(&store, &["import", path.to_str().unwrap(), "x"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("layer entry \"f\"") && err.contains("extended attribute \"bogus.name\": "), "{err}");
    assert!(!err.contains("os error"), "{err}");
}

/// Issue 26: a layer with a 4095-byte path, inside the documented 4096 limit, failed
/// with `File name too long` (the store's own directories come before it). The limit
/// that holds is stated and enforced: PATH_MAX less the store's path and directories;
/// a path of exactly that length imports and checks, one byte more is refused by name.
#[test]
fn the_path_limit_stated_is_the_one_that_holds() {
    if !need_root("the_path_limit_stated_is_the_one_that_holds") {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let store = work.path().join("store");
    layers_ok(&store, &["images", "-q"]);
    let limit = 4095 - store.canonicalize().unwrap().as_os_str().len() - 128;
    let path_of = |len: usize| {
        let mut parts = Vec::new();
        let mut left = len;
        while left > 251 {
            parts.push("d".repeat(250));
            left -= 251;
        }
        parts.push("f".repeat(left));
        parts.join("/")
    };
    for (len, ok) in [(limit, true), (limit + 1, false)] {
        let name = path_of(len);
        assert_eq!(name.len(), len);
        let tar =
            [pax(&[("path", name.as_bytes())]), header("placeholder", b'0', 2, ""), padded(b"x\n"), end()].concat();
        let path = work.path().join(format!("long-{len}.tar"));
        fs::write(&path, tar).unwrap();
        let out = layers(&store, &["import", "-q", path.to_str().unwrap(), &format!("long{len}")]);
        if ok {
            assert!(out.status.success(), "{len}: {}", stderr(&out));
        } else {
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(1));
            assert!(
                err.contains(&format!("path of {len} bytes is longer than this store's limit of {limit}")),
                "{err}"
            );
        }
    }
    assert_eq!(layers_ok(&store, &["fsck"]), "store is consistent");
}
