//! Each table's SQL lives with the module that owns it: another module asks the
//! owner (a read, or a `_tx` function inside its own transaction), never writes the
//! SQL itself. This reads the library's sources and names every statement that
//! touches a table outside its owner, so a new one fails here, not in review.

// It reads the library's own sources, by path.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Table → the source files (relative to `src/`) that own it.
const OWNERS: &[(&str, &[&str])] = &[
    ("blobs", &["store/ingest.rs"]),
    ("layers", &["store/ingest.rs"]),
    ("held_content", &["store/ingest.rs"]),
    ("images", &["images/catalog.rs", "images/remote.rs"]),
    ("image_layers", &["images/catalog.rs"]),
    ("tags", &["images/catalog.rs"]),
    ("leases", &["images/catalog.rs"]),
    ("layer_blobs", &["layer/mod.rs"]),
    ("layer_trees", &["layer/mod.rs"]),
    ("blob_variants", &["layer/variants.rs"]),
    ("containers", &["snapshots/containers.rs", "snapshots/commit.rs"]),
    ("build_cache", &["build_cache.rs"]),
    ("build_images", &["build_cache.rs"]),
    ("build_step_inputs", &["build_cache.rs"]),
    ("file_digests", &["build_cache.rs"]),
    ("volumes", &["volumes.rs"]),
    ("volume_users", &["volumes.rs"]),
    ("settings", &["meta/mod.rs"]),
    ("sqlite_master", &["meta/mod.rs"]),
];

/// Reads across owners that are kept, each for its reason.
const ALLOWED: &[(&str, &str, &str)] = &[
    // Seeding the pairs table from the layers and images a store already had (format 5).
    ("layer/mod.rs", "layers", "schema seed and the pair check"),
    ("layer/mod.rs", "image_layers", "schema seed"),
    // A pair counts only with both halves ready, checked in the committing transaction.
    ("layer/mod.rs", "blobs", "the pair check"),
    // A variant counts only while its blob is stored and ready.
    ("layer/variants.rs", "blobs", "the variant's blob check"),
    // The upgrade test makes a format-1 store with an image in it.
    ("meta/mod.rs", "images", "the format-1 upgrade test"),
];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The tables a line of SQL names after FROM, JOIN, INTO, UPDATE or TABLE.
fn tables(line: &str) -> Vec<String> {
    let words: Vec<&str> = line.split(|c: char| c.is_whitespace() || c == '"' || c == '(' || c == ',').collect();
    let mut out = Vec::new();
    for pair in words.windows(2) {
        let [kw, name] = pair else { continue };
        if matches!(*kw, "FROM" | "JOIN" | "INTO" | "UPDATE" | "TABLE") {
            let name: String = name.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
            if !name.is_empty() {
                out.push(name);
            }
        }
    }
    out
}

#[test]
fn every_table_s_sql_is_in_its_owner() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut seen = BTreeSet::new();
    let mut wrong = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
        for (n, line) in std::fs::read_to_string(file).unwrap().lines().enumerate() {
            for table in tables(line) {
                let Some((_, owners)) = OWNERS.iter().find(|(t, _)| *t == table) else {
                    continue;
                };
                seen.insert(table.clone());
                let allowed = ALLOWED.iter().any(|(f, t, _)| *f == rel && *t == table);
                if !owners.contains(&rel.as_str()) && !allowed {
                    wrong.push(format!("{rel}:{}: table {table} is owned by {}", n + 1, owners.join(", ")));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "SQL outside its owner:\n{}", wrong.join("\n"));
    // The scan itself must see every table (a scan that finds nothing proves nothing).
    for (t, _) in OWNERS {
        assert!(seen.contains(*t), "no statement names table {t}: is the scan broken?");
    }
}

#[test]
fn the_scan_finds_a_table_in_a_statement() {
    assert_eq!(tables(r#"  "DELETE FROM blobs WHERE digest = ?1","#), ["blobs"]);
    assert_eq!(tables("SELECT 1 FROM images i JOIN tags t ON t.x = i.x"), ["images", "tags"]);
    assert_eq!(tables("INSERT OR IGNORE INTO layer_blobs (a) SELECT a FROM layers"), ["layer_blobs", "layers"]);
    assert!(tables("let x = DiffId::from(y); // taken from the layer").is_empty());
}
