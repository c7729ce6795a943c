//! Every file kept in fuzz/corpus/TARGET/ (seeds, and each crash a fuzzer found,
//! kept with its fix) replayed through the fuzz target's own body, on stable: a
//! crash fixed once stays fixed. `bench/fuzz.sh` runs the fuzzers themselves.

// Tests make and inspect their fixtures by path (clippy.toml bans that in the code under test).
#![allow(clippy::disallowed_methods)]

#[path = "../fuzz/src/targets.rs"]
mod targets;

use std::path::Path;

fn replay(corpus: &str, target: &str, body: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(corpus);
    let Ok(entries) = std::fs::read_dir(&dir) else { return 0 };
    let mut n = 0;
    for e in entries {
        let path = e.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        // A panic names the file that caused it.
        let result = std::panic::catch_unwind(|| body(&data));
        assert!(result.is_ok(), "{target}: {} panics", path.display());
        n += 1;
    }
    n
}

/// (corpus directory, target name, body).
type Target = (&'static str, &'static str, fn(&[u8]));

#[test]
fn every_kept_fuzz_input_passes_its_target() {
    std::env::set_var("FUZZ_TMP", std::env::temp_dir());
    // (corpus, target): the tar targets share one corpus of archives.
    let all: [Target; 9] = [
        ("tar", "tar_reader", targets::tar_reader),
        ("tar", "unpack", targets::unpack),
        ("tar", "tar_roundtrip", targets::tar_roundtrip),
        ("tar", "tar_differential", targets::tar_differential),
        ("dockerfile", "dockerfile", targets::dockerfile),
        ("reference", "reference", targets::reference),
        ("oci_json", "oci_json", targets::oci_json),
        ("seccomp_profile", "seccomp_profile", targets::seccomp_profile),
        ("template", "template", targets::template),
    ];
    let replayed: usize = all.iter().map(|(c, t, body)| replay(c, t, *body)).sum();
    assert!(replayed > 0, "no corpus files found under fuzz/corpus/");
}
