//! Where `layers build` sends the image besides the store: `--output` (BuildKit's
//! spellings: files, a directory, or an image pushed with `type=registry` /
//! `type=image,push=true`) and `--push`. Parsed before the build, so a bad spec or
//! an unpushable name costs nothing.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use layers_store::meta::ImageRow;
use layers_store::{Reference, ShortNames, Store};

use crate::registry::config::RegistriesConfig;
use crate::transfer::push::{push_stored, PushOptions};

/// What `--output` asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// `type=oci|docker-archive|tar|local,dest=PATH`.
    Files { kind: FileKind, dest: PathBuf },
    /// `type=image[,name=REF][,push=true]`, `type=registry[,name=REF]`: the image
    /// named `name` (else the `-t` names), pushed with `push`.
    Image { name: Option<String>, push: bool },
}

/// The file forms of `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Oci,
    DockerArchive,
    Tar,
    Local,
}

impl Output {
    /// Parses `--output SPEC`: every key understood or refused by name.
    pub fn parse(spec: &str) -> anyhow::Result<Output> {
        let (mut kind, mut dest, mut name, mut push) = (None, None, None, None);
        for kv in spec.split(',') {
            match kv.split_once('=') {
                Some(("type", t)) => kind = Some(t),
                Some(("dest", d)) => dest = Some(d),
                Some(("name", n)) => name = Some(n.to_string()),
                Some(("push", p)) => match p {
                    "true" => push = Some(true),
                    "false" => push = Some(false),
                    _ => bail!("--output {spec}: push={p}: use true or false"),
                },
                Some((k, _)) => bail!("--output {spec}: option {k} is not supported"),
                None => bail!("--output {spec}: {kv:?} is not KEY=VALUE"),
            }
        }
        let file = |kind| -> anyhow::Result<Output> {
            if name.is_some() || push.is_some() {
                bail!("--output {spec}: name= and push= are for type=image and type=registry");
            }
            let dest = dest.with_context(|| format!("--output {spec}: dest= is missing"))?;
            Ok(Output::Files { kind, dest: PathBuf::from(dest) })
        };
        let image = |push: bool| -> anyhow::Result<Output> {
            if dest.is_some() {
                bail!("--output {spec}: dest= is for files; an image is named with name=");
            }
            Ok(Output::Image { name: name.clone(), push })
        };
        match kind {
            Some("oci") => file(FileKind::Oci),
            Some("docker-archive" | "docker") => file(FileKind::DockerArchive),
            Some("tar") => file(FileKind::Tar),
            Some("local") => file(FileKind::Local),
            Some("registry") if push == Some(false) => bail!("--output {spec}: type=registry always pushes"),
            Some("registry") => image(true),
            Some("image") => image(push.unwrap_or(false)),
            Some(other) => {
                bail!(
                    "--output {spec}: type {other} is not supported (oci, docker-archive, tar, local, image, registry)"
                )
            }
            None => bail!("--output {spec}: type= is missing"),
        }
    }
}

/// The references an image goes to on a push: `name`, else every `-t`. Refused
/// before the build: none given, a digest, or a name made here that has no
/// registry (`app:1` is `localhost/app:1`; Docker Hub is not what was meant).
pub fn push_targets(name: Option<&str>, tags: &[String], flag: &str) -> anyhow::Result<Vec<Reference>> {
    let names: Vec<&str> = match name {
        Some(n) => vec![n],
        None => tags.iter().map(String::as_str).collect(),
    };
    if names.is_empty() {
        bail!("{flag}: name the image to push (-t REGISTRY/NAME:TAG)");
    }
    names
        .into_iter()
        .map(|n| {
            let local = Reference::parse(n, ShortNames::Local)?;
            if local.registry == "localhost" && !n.starts_with("localhost/") {
                bail!("{flag}: {n} has no registry to push to: name it REGISTRY/NAME:TAG");
            }
            let r = Reference::parse(n, ShortNames::DockerHub)?;
            if r.digest.is_some() {
                bail!("{flag}: {n}: give a tag to push to, not a digest");
            }
            Ok(r)
        })
        .collect()
}

/// Writes the image out as `output` asks (a push is [`push_all`]'s, to the targets
/// [`push_targets`] found before the build).
pub fn write(store: &Store, image: &ImageRow, tags: &[String], output: &Output) -> anyhow::Result<()> {
    use crate::cli::archive::{export_local, export_view, write_images, SaveFormat};
    let images = || [layers_store::archive::layout::SaveImage { manifest: image.manifest, names: tags.to_vec() }];
    match output {
        Output::Files { kind, dest } => {
            let d = dest.to_string_lossy();
            match kind {
                FileKind::Oci => write_images(store, &images(), &d, SaveFormat::Oci),
                FileKind::DockerArchive => write_images(store, &images(), &d, SaveFormat::DockerArchive),
                FileKind::Tar => export_view(store, &store.snapshots().image_view(&image.manifest)?, &d),
                FileKind::Local => {
                    export_local(store, &store.snapshots().image_view(&image.manifest)?, Path::new(dest))
                }
            }
        }
        Output::Image { name: Some(n), .. } => {
            let tagged =
                Reference::parse(n, ShortNames::Local)?.tagged_name().context("name= needs a tag, not a digest")?;
            Ok(store.images().tag(&image.manifest, &tagged)?)
        }
        Output::Image { name: None, .. } => Ok(()),
    }
}

/// Pushes the built image to each of `targets`; its layers are mounted from the
/// repositories `built`'s caches came from where they are on the same registry.
pub fn push_all(
    store: &Store,
    built: &crate::builder::Built,
    targets: &[Reference],
    registries: &RegistriesConfig,
    transfers: &crate::transfer::Transfers,
    quiet: bool,
) -> anyhow::Result<()> {
    if targets.is_empty() {
        return Ok(());
    }
    // Its names now, -t included: blobs can be mounted between repositories of a registry.
    let image = store.images().resolve(&built.image.manifest.to_string())?;
    let o = PushOptions { chunk_size: 0, tls_verify: true, quiet };
    let shown = if quiet { crate::transfer::progress::Shown::Quiet } else { crate::transfer::progress::Shown::Auto };
    let puller = crate::transfer::obtain::Puller { transfers, registries, shown };
    let caches = built.cache_registries();
    for dest in targets {
        let from = built.cache_repositories(&dest.registry);
        if from.is_empty() && !caches.is_empty() && !quiet {
            // A registry mounts blobs only between its own repositories.
            eprintln!(
                "push {dest}: the build cache is on {}, not {}: its layers are uploaded, not mounted",
                caches.join(", "),
                dest.registry
            );
        }
        push_stored(&puller, store, &image, (dest, &from), &o).with_context(|| format!("push {dest}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_specs_as_buildkit_spells_them() {
        assert_eq!(Output::parse("type=registry").unwrap(), Output::Image { name: None, push: true });
        assert_eq!(
            Output::parse("type=image,name=r.example/a:1,push=true").unwrap(),
            Output::Image { name: Some("r.example/a:1".into()), push: true }
        );
        assert_eq!(Output::parse("type=image").unwrap(), Output::Image { name: None, push: false });
        assert_eq!(
            Output::parse("type=oci,dest=/o").unwrap(),
            Output::Files { kind: FileKind::Oci, dest: "/o".into() }
        );
        for (bad, why) in [
            ("type=registry,push=false", "type=registry always pushes"),
            ("type=registry,dest=/x", "dest= is for files"),
            ("type=oci,dest=/x,push=true", "name= and push= are for type=image"),
            ("type=image,compression=zstd", "option compression is not supported"),
            ("type=cacheonly", "type cacheonly is not supported"),
        ] {
            let e = Output::parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
        let tags = ["localhost/app:1".to_string(), "127.0.0.1:5000/app:1".to_string()];
        assert_eq!(push_targets(None, &tags, "--push").unwrap().len(), 2);
        let e = push_targets(Some("app:1"), &tags, "--push").unwrap_err().to_string();
        assert!(e.contains("app:1 has no registry to push to"), "{e}");
        assert!(push_targets(None, &[], "--push").unwrap_err().to_string().contains("-t REGISTRY/NAME:TAG"));
    }
}
