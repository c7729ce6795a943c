//! The plan of every example, computed without running anything, gives the same
//! steps and keys for two copies of its context in different directories with
//! different mtimes; a changed file changes the key of the COPY that reads it.

use std::path::Path;

use layers_store::images::oci::{ImageConfig, RootFs, RuntimeConfig};
use layers_store::meta::ImageRow;
use layers_store::{ImageBlobs, Store};

use super::{needed, plan, split, Found, FromImage, Inputs};
use crate::builder::frontend::instruction;
use crate::run::Network;
use layers_store::fsroot::Tree;

/// A stand-in base image (no layers) for every FROM.
fn base_image(store: &Store) -> ImageRow {
    let config = ImageConfig {
        created: Some("2024-01-01T00:00:00Z".into()),
        architecture: "amd64".into(),
        os: "linux".into(),
        variant: None,
        config: Some(RuntimeConfig { env: Some(vec!["PATH=/usr/bin:/bin".into()]), ..Default::default() }),
        rootfs: RootFs { kind: "layers".into(), diff_ids: Vec::new() },
        history: Vec::new(),
        extra: Default::default(),
    };
    store
        .images()
        .record(store.content().ingest().unwrap(), ImageBlobs::New { config: &config, layers: Vec::new() }, &[])
        .unwrap()
}

/// Each step's text and key, stage by stage.
fn keys(store: &Store, base: &ImageRow, context: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(context.join("Dockerfile")).unwrap();
    let parsed = instruction::parse("Dockerfile", &text).unwrap();
    let stages = split(&parsed.instructions);
    let need = needed(&stages, stages.stages.len() - 1);
    let tree = Tree::open(context, "build context").unwrap();
    let find = |_: &str, _: Option<&str>, _: &str| Ok(base.clone());
    let from = |_: &str, _: Option<&str>, _: &str| Ok(Found { image: FromImage::Stored(base.clone()), pulled: false });
    let mut global_args = std::collections::BTreeMap::new();
    global_args.insert("BASE".to_string(), Some("busybox".to_string()));
    let inputs = Inputs {
        store,
        context_tree: &tree,
        ignore: Default::default(),
        escape: parsed.escape,
        build_args: Default::default(),
        global_args,
        network: Network::Host,
        base: &find,
        from: &from,
        max_download: 1 << 20,
        transfers: &crate::transfer::Transfers::new(),
    };
    let plan = plan(&inputs, "Dockerfile", &stages, &need).unwrap();
    let mut out = Vec::new();
    for s in &plan.stages {
        out.push((s.text.clone(), s.base_key.to_string()));
        for step in &s.steps {
            out.push((step.text.clone(), step.key.to_string()));
        }
    }
    out
}

fn copy_tree(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp").arg("-r").arg(from).arg(to).status().unwrap();
    assert!(status.success());
}

/// Sets every file's mtime under `dir` to `secs` (as a checkout at another time would).
fn touch_all(dir: &Path, secs: u64) {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            touch_all(&p, secs);
        }
        std::fs::File::open(&p).unwrap().set_modified(t).unwrap();
    }
}

#[test]
fn example_plans_are_equal_in_two_checkouts_and_nothing_runs() {
    let work = tempfile::tempdir().unwrap();
    let store = Store::open(&work.path().join("store")).unwrap();
    let base = base_image(&store);
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile-examples");
    let mut names: Vec<_> = std::fs::read_dir(&examples)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Dockerfile").exists())
        .collect();
    names.sort();
    assert!(names.len() >= 5, "{names:?}");
    for example in &names {
        let name = example.file_name().unwrap();
        let (a, b) = (work.path().join("a"), work.path().join("checkout-b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        copy_tree(example, &a);
        copy_tree(example, &b);
        touch_all(&a.join(name), 1_000_000_000);
        touch_all(&b.join(name), 1_700_000_000);
        let (ka, kb) = (keys(&store, &base, &a.join(name)), keys(&store, &base, &b.join(name)));
        assert_eq!(ka, kb, "{}", example.display());
        let distinct: std::collections::HashSet<_> = ka.iter().map(|(_, k)| k).collect();
        assert!(distinct.len() > 1, "{}: every step has the same key", example.display());
        std::fs::remove_dir_all(&a).unwrap();
        std::fs::remove_dir_all(&b).unwrap();
    }
    // Planning ran nothing: no container, no step recorded, only the stand-in base stored.
    assert!(store.snapshots().list().unwrap().is_empty());
    assert_eq!(store.images().list().unwrap().len(), 1);
}

#[test]
fn a_changed_file_changes_the_key_of_the_copy_that_reads_it_and_of_what_follows() {
    let work = tempfile::tempdir().unwrap();
    let store = Store::open(&work.path().join("store")).unwrap();
    let base = base_image(&store);
    let ctx = work.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM busybox\nENV A=1\nCOPY a /a\nCOPY b /b\nRUN true\n").unwrap();
    std::fs::write(ctx.join("a"), "a").unwrap();
    std::fs::write(ctx.join("b"), "b").unwrap();
    let before = keys(&store, &base, &ctx);
    std::fs::write(ctx.join("b"), "B").unwrap();
    let after = keys(&store, &base, &ctx);
    let changed: Vec<bool> = before.iter().zip(&after).map(|(x, y)| x.1 != y.1).collect();
    // FROM, ENV, COPY a keep their keys; COPY b and the RUN after it do not.
    assert_eq!(changed, [false, false, false, true, true], "{before:?}\n{after:?}");
}
