//! `layers gc`, `fsck`, `df`.

use std::process::ExitCode;

use layers_store::Store;

use crate::format;
use crate::images_cmd::print_table;

pub fn gc(store: &Store) -> anyhow::Result<ExitCode> {
    let r = store.gc()?;
    for l in &r.layers {
        outln!("deleted layer {l}");
    }
    for b in &r.blobs {
        outln!("deleted blob {b}");
    }
    if r.orphans > 0 {
        outln!("deleted {} leftover entries", r.orphans);
    }
    outln!("Total reclaimed space: {}", format::size(r.freed));
    Ok(ExitCode::SUCCESS)
}

pub fn fsck(store: &Store) -> anyhow::Result<ExitCode> {
    let problems = store.fsck()?;
    for p in &problems {
        outln!("{}: {}", p.subject, p.detail);
    }
    if problems.is_empty() {
        outln!("store is consistent");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("layers: fsck: {} problem(s) found", problems.len());
        Ok(ExitCode::from(1))
    }
}

pub fn df(store: &Store) -> anyhow::Result<ExitCode> {
    let du = store.df()?;
    print_table(
        &["TYPE", "TOTAL", "SIZE", "RECLAIMABLE"],
        &[
            vec!["Images".into(), du.images.to_string(), String::new(), String::new()],
            vec!["Blobs".into(), du.blobs.0.to_string(), format::size(du.blobs.1), String::new()],
            vec!["Layers".into(), du.layers.0.to_string(), format::size(du.layers.1), String::new()],
            vec!["Total".into(), String::new(), format::size(du.blobs.1 + du.layers.1), format::size(du.reclaimable)],
        ],
    );
    Ok(ExitCode::SUCCESS)
}
