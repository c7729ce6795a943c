//! One function per fuzz target. Each must return for any input (no panic, no hang,
//! memory bounded); what it checks beyond that is said at each.
#![allow(dead_code)]

use std::io::Read as _;

use layers_store::layer::tar::{EntryKind, TarReader};

// The binary's parsers, compiled here from their own files: they use no other part of it.
#[path = "../../src/run/caps.rs"]
mod caps;
#[path = "../../src/builder/frontend/mod.rs"]
mod frontend;
#[path = "../../src/run/seccomp_profile.rs"]
mod seccomp_profile;
#[path = "../../src/template/mod.rs"]
mod template;

/// Most entries any target reads: inputs are small, and this bounds a loop over them.
const MAX_ENTRIES: usize = 10_000;

/// One entry as read: path, kind, link target, data.
type Read = (Vec<u8>, EntryKind, Vec<u8>, Vec<u8>);

/// What our reader sees in an archive, or the error.
fn our_entries(data: &[u8]) -> Result<Vec<Read>, String> {
    let mut r = TarReader::new(data, 1 << 16);
    let mut out = Vec::new();
    while let Some(e) = r.next_entry().map_err(|e| e.to_string())? {
        let mut content = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = r.read_data(&mut buf).map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            content.extend_from_slice(&buf[..n]);
        }
        if let Some(m) = &e.sparse {
            // The map was checked: its fragments add up to the data read.
            let covered: u64 = m.fragments.iter().map(|f| f.1).sum();
            assert_eq!(covered, content.len() as u64, "a sparse map the reader let through does not match its data");
        } else {
            assert_eq!(content.len() as u64, e.size, "data read differs from the entry's size");
        }
        out.push((e.path, e.kind, e.link, content));
        if out.len() >= MAX_ENTRIES {
            break;
        }
    }
    Ok(out)
}

/// The tar reader: any bytes, every entry and its data read.
pub fn tar_reader(data: &[u8]) {
    let _ = our_entries(data);
}

/// A layer unpacked into a scratch root (whiteouts, hardlinks, xattrs): whatever it
/// holds, nothing is written outside the root.
pub fn unpack(data: &[u8]) {
    let Ok(dir) = tempfile::tempdir_in(std::env::var_os("FUZZ_TMP").unwrap_or_else(|| "/dev/shm".into())) else {
        return;
    };
    let root_dir = dir.path().join("root");
    let outside = dir.path().join("outside");
    if std::fs::create_dir(&root_dir).is_err() || std::fs::create_dir(&outside).is_err() {
        return;
    }
    let Ok(root) = layers_store::fsroot::Root::open(&root_dir) else { return };
    let limits = layers_store::Limits { max_bytes: 1 << 20, max_entries: 1000, max_header: 1 << 16, max_path: 4096 };
    let _ = layers_store::layer::unpack::unpack(data, None, &root, &limits, None);
    let escaped = std::fs::read_dir(&outside).map(|mut d| d.next().is_some()).unwrap_or(false);
    assert!(!escaped, "an entry was written outside the root");
}

/// Entries made from the input, written by our writer and read back by our reader:
/// the same entries come out.
pub fn tar_roundtrip(data: &[u8]) {
    use layers_store::layer::tar::Entry;
    use layers_store::layer::tar_writer::TarWriter;
    let mut w = TarWriter::new(Vec::new());
    let mut want = Vec::new();
    for (i, chunk) in data.chunks(24).take(64).enumerate() {
        let kind = match chunk[0] % 4 {
            0 => EntryKind::File,
            1 => EntryKind::Dir,
            2 => EntryKind::Symlink,
            _ => EntryKind::Fifo,
        };
        // Names from the input, long ones included (PAX), unique by index.
        let name_len = (chunk.get(1).copied().unwrap_or(0) as usize) * 2;
        let mut path = format!("e{i}/n").into_bytes();
        path.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, name_len));
        let content: Vec<u8> = if kind == EntryKind::File { chunk[2.min(chunk.len())..].to_vec() } else { Vec::new() };
        let link = if kind == EntryKind::Symlink { b"target/".repeat(name_len / 3 + 1) } else { Vec::new() };
        let e = Entry {
            path: path.clone(),
            link: link.clone(),
            kind,
            mode: u32::from(chunk.get(2).copied().unwrap_or(0)) << 4 & 0o7777,
            uid: u32::from(chunk.get(3).copied().unwrap_or(0)) << 16,
            gid: u32::from(chunk.get(4).copied().unwrap_or(0)),
            mtime: (i64::from(chunk.get(5).copied().unwrap_or(0)) << 30, 0),
            size: content.len() as u64,
            dev: (0, 0),
            xattrs: if chunk.len() > 20 { vec![(b"user.x".to_vec(), chunk[20..].to_vec())] } else { Vec::new() },
            sparse: None,
        };
        w.append(&e).expect("append");
        w.write_data(&content).expect("data");
        want.push((path, kind, link, content));
    }
    let bytes = w.finish().expect("finish");
    let mut got = our_entries(&bytes).expect("our reader reads what our writer wrote");
    // The writer marks a directory's name with a trailing `/`, as tar does.
    for g in &mut got {
        if g.1 == EntryKind::Dir && g.0.last() == Some(&b'/') {
            g.0.pop();
        }
    }
    assert_eq!(got, want);
}

/// The Dockerfile frontend: parse, then expand every instruction's words with a
/// few variables set, as a build would.
pub fn dockerfile(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let env = |n: &str| match n {
        "A" => Some("a b".to_string()),
        "EMPTY" => Some(String::new()),
        _ => None,
    };
    if let Ok(d) = frontend::instruction::parse("Dockerfile", text) {
        for i in &d.instructions {
            let json = serde_json::to_string(&i.instruction).unwrap_or_default();
            for w in frontend::words::split_raw(&json, d.escape).iter().take(MAX_ENTRIES) {
                if let Ok(out) = frontend::words::expand(w, d.escape, &env) {
                    assert!(out.len() <= frontend::words::MAX_EXPANSION, "an expansion past its cap");
                }
            }
        }
    }
    // Expansion alone, on the raw text, with both escape characters.
    for esc in ['\\', '`'] {
        let _ = frontend::words::expand_words(text, esc, &env);
    }
    let _ = frontend::pattern::Patterns::parse(text);
}

/// Image references: parsed, then printed and parsed again to the same value.
pub fn reference(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else { return };
    for short in [layers_store::ShortNames::DockerHub, layers_store::ShortNames::Local] {
        if let Ok(r) = layers_store::Reference::parse(s, short) {
            let again = layers_store::Reference::parse(&r.to_string(), short)
                .unwrap_or_else(|e| panic!("{r} does not parse again: {e}"));
            assert_eq!(again.to_string(), r.to_string());
        }
    }
}

/// Manifests, indexes and configs: typed parsing, the ambiguity check, and an OCI
/// layout whose index.json is the input (nested indexes walked within their bounds).
pub fn oci_json(data: &[u8]) {
    let _ = serde_json::from_slice::<layers_store::images::oci::Manifest>(data);
    let _ = serde_json::from_slice::<layers_store::images::oci::ImageConfig>(data);
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = layers_store::archive::layout::refuse_ambiguous(&v);
    }
    let Ok(dir) = tempfile::tempdir_in(std::env::var_os("FUZZ_TMP").unwrap_or_else(|| "/dev/shm".into())) else {
        return;
    };
    let ok = std::fs::write(dir.path().join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).is_ok()
        && std::fs::create_dir_all(dir.path().join("blobs/sha256")).is_ok()
        && std::fs::write(dir.path().join("index.json"), data).is_ok();
    if ok {
        if let Ok(l) = layers_store::archive::layout::Layout::open(dir.path()) {
            let _ = l.images("amd64");
        }
    }
}

/// Docker-format seccomp profiles compiled to filters.
pub fn seccomp_profile(data: &[u8]) {
    let _ = seccomp_profile::compile(data, rustix::thread::CapabilitySet::empty());
}

/// Our reader against the `tar` crate, where both accept the bytes: the same
/// entries, names, kinds, link targets and contents. Known, documented differences
/// are left out: archives with PAX or GNU extension headers (the crate applies
/// them differently from Go, which we follow), sparse files, and header-only types
/// with a size (Go, and we, read no data for them; the crate skips it).
pub fn tar_differential(data: &[u8]) {
    let Ok(ours) = our_entries(data) else { return };
    // Extension headers anywhere: a known difference (see above), not compared.
    let mut raw = tar::Archive::new(data);
    let Ok(headers) = raw.entries().map(|e| e.raw(true)) else { return };
    for h in headers.take(MAX_ENTRIES) {
        let Ok(h) = h else { return };
        if matches!(h.header().entry_type().as_byte(), b'x' | b'g' | b'L' | b'K' | b'S' | b'D' | b'M' | b'V') {
            return;
        }
    }
    let mut theirs = Vec::new();
    let mut archive = tar::Archive::new(data);
    let Ok(entries) = archive.entries() else { return };
    for e in entries.take(MAX_ENTRIES) {
        let Ok(mut e) = e else { return };
        let h = e.header();
        let flag = h.entry_type().as_byte();
        if !matches!(flag, b'0' | 0 | b'1' | b'2' | b'3' | b'4' | b'5' | b'6' | b'7') {
            return;
        }
        if !matches!(flag, b'0' | 0 | b'7') && h.entry_size().unwrap_or(0) != 0 {
            return;
        }
        let path: Vec<u8> = e.path_bytes().into_owned();
        let link = e.link_name_bytes().map(|l| l.into_owned()).unwrap_or_default();
        let mut content = Vec::new();
        if e.read_to_end(&mut content).is_err() {
            return;
        }
        theirs.push((path, flag, link, content));
    }
    if ours.len() != theirs.len() {
        return;
    }
    for (a, b) in ours.iter().zip(&theirs) {
        assert_eq!(a.0, b.0, "entry name");
        assert_eq!(a.2, b.2, "link target of {:?}", String::from_utf8_lossy(&a.0));
        assert_eq!(a.3, b.3, "content of {:?}", String::from_utf8_lossy(&a.0));
    }
}

/// `--format` templates: parsed, then run over a container's inspect document; any
/// template returns (no panic, no stack overflow, steps and output bounded).
pub fn template(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let doc = include_str!("../../fixtures/templates/container.json");
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(doc) else { return };
    let format = template::Format::Template { table: data.first() == Some(&b't'), text: text.to_string() };
    if let Ok(out) = template::render(&format, &[("Id", "ID")], &[doc]) {
        assert!(out.len() <= template::MAX_OUTPUT + 2, "output past its cap");
    }
}
