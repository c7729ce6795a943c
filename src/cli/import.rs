//! `layers import`: a rootfs tarball becomes a single-layer image.

use std::fs::File;
use std::io::{self, IsTerminal, Read};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use layers_store::images::oci::{rfc3339, ImageConfig};
use layers_store::{ImageBlobs, LayerExpect, Reference, ShortNames, Store};

// Arguments of `layers import`.
#[derive(Args)]
pub struct ImportArgs {
    /// Tarball to import, or `-` for standard input.
    file: String,
    /// Name for the image (short names go under localhost/).
    reference: Option<String>,
    /// Print only the image ID.
    #[arg(short, long)]
    quiet: bool,
    /// Comment recorded in the image history.
    #[arg(short, long)]
    message: Option<String>,
    /// Apply a Dockerfile instruction to the image's config (CMD, ENTRYPOINT, ENV,
    /// EXPOSE, LABEL, ONBUILD, USER, VOLUME, WORKDIR; repeatable).
    #[arg(short, long = "change", value_name = "INSTRUCTION")]
    change: Vec<String>,
}

pub fn run(store: &Store, a: &ImportArgs) -> anyhow::Result<ExitCode> {
    let tag = a
        .reference
        .as_deref()
        .map(|r| Reference::parse(r, ShortNames::Local))
        .transpose()?
        .map(|r| r.tagged_name().context("import needs a name with a tag, not a digest"))
        .transpose()?;
    // Checked before the tarball is read: a bad change costs nothing.
    let mut runtime = layers_store::images::oci::RuntimeConfig::default();
    crate::builder::changes::apply(&mut runtime, &a.change).with_context(|| format!("import {}", a.file))?;
    let (input, total): (Box<dyn Read + Send>, Option<u64>) = if a.file == "-" {
        (Box::new(io::stdin()), None)
    } else {
        let f = File::open(&a.file).with_context(|| format!("open {}", a.file))?;
        let len = f.metadata().ok().map(|m| m.len());
        (Box::new(f), len)
    };
    let started = Instant::now();
    let bar = (!a.quiet && io::stderr().is_terminal()).then(|| progress_bar(total));
    let input: Box<dyn Read + Send> = match &bar {
        Some(b) => Box::new(b.wrap_read(input)),
        None => input,
    };

    let mut ingest = store.content().ingest()?;
    let u = store
        .layers()
        .unpack(&mut ingest, input, &LayerExpect::default())
        .with_context(|| format!("import {}", a.file))?;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let now = rfc3339(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0),
    );
    let created_by = format!("layers import {}", if a.file == "-" { "-" } else { &a.file });
    let mut config = ImageConfig::imported(u.diff_id, &now, &created_by);
    if let Some(m) = &a.message {
        config.history[0].comment = Some(m.clone());
    }
    if !a.change.is_empty() {
        config.config = Some(runtime);
    }
    let layer = layers_store::images::oci::Descriptor {
        media_type: u.compression.oci_media_type().to_string(),
        digest: u.blob,
        size: u.blob_size,
        urls: None,
        annotations: None,
    };
    let tags: Vec<String> = tag.iter().cloned().collect();
    let image = store
        .images()
        .record(ingest, ImageBlobs::New { config: &config, layers: vec![layer] }, &tags)
        .context("commit imported image")?;
    if !a.quiet {
        eprintln!(
            "Imported {} ({} in, {} unpacked, {} entries) in {:.2}s{}",
            a.file,
            crate::format::size(u.blob_size),
            crate::format::size(u.tar_size),
            u.entries,
            started.elapsed().as_secs_f64(),
            tag.map(|t| format!(" as {t}")).unwrap_or_default()
        );
    }
    let id = image.config.to_string();
    crate::events::of_image(store, &image, &id).record(store, "import");
    outln!("{}", image.config);
    Ok(ExitCode::SUCCESS)
}

fn progress_bar(total: Option<u64>) -> indicatif::ProgressBar {
    let bar = match total {
        Some(n) => indicatif::ProgressBar::new(n),
        None => indicatif::ProgressBar::no_length(),
    };
    let style = if total.is_some() {
        "importing [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}"
    } else {
        "importing {bytes} {bytes_per_sec}"
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(style)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}
