//! The one rule by which `run`, `create` and a build's FROM get an image: the stored
//! one (of the platform asked for, if one was), else pulled as the pull policy says;
//! and the one by which a command that reads an image's layers gets a remote image's
//! (`build --push`'s) fetched first ([`fetched`]).

use anyhow::Context;
use layers_store::meta::ImageRow;
use layers_store::{ErrorKind, Reference, ShortNames, Store};

use super::platform::{describe, of_config, Platform};
use super::progress::Shown;
use super::Transfers;
use crate::registry::config::RegistriesConfig;

/// When an image is pulled, as Docker's `--pull`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum PullPolicy {
    /// When the store does not have it.
    #[default]
    Missing,
    /// Every time (a tag may have moved).
    Always,
    /// Never: a missing image is an error.
    Never,
}

/// An image asked for.
pub struct Want<'a> {
    /// As the user wrote it: a name or an image ID.
    pub name: &'a str,
    /// `os/arch[/variant]`: a stored image of another platform is not the one asked for.
    pub platform: Option<&'a str>,
    pub policy: PullPolicy,
}

/// Where pulls go and how they show.
pub struct Puller<'a> {
    pub transfers: &'a Transfers,
    pub registries: &'a RegistriesConfig,
    pub shown: Shown,
}

impl<'a> Puller<'a> {
    /// Progress shown as a pull's by default: bars on a terminal, lines elsewhere.
    pub fn auto(transfers: &'a Transfers, registries: &'a RegistriesConfig) -> Puller<'a> {
        Puller { transfers, registries, shown: Shown::Auto }
    }
}

/// Reads the registries config, for a command that needs it only to fetch.
pub type LoadRegistries<'a> = &'a dyn Fn() -> anyhow::Result<RegistriesConfig>;

/// The image `want` names, in the store, pulled first as its policy says; `announce`
/// is called before a pull (with whether the store lacked it) to say why. Returns the
/// image and whether it was pulled now. Names only we can have made (`localhost/…`)
/// and image IDs are never pulled.
pub fn image(store: &Store, puller: &Puller, want: &Want, announce: &dyn Fn(bool)) -> anyhow::Result<(ImageRow, bool)> {
    let name = want.name;
    let local = store.images().resolve(name);
    let mut missing = matches!(&local, Err(e) if e.kind() == ErrorKind::NotFound);
    let mut local = local.map_err(anyhow::Error::new);
    // A stored image of another platform is not the one asked for: Docker pulls the
    // platform asked for (or, told never to pull, says what the image is).
    if let (Some(p), Ok(row)) = (want.platform, &local) {
        let asked = Platform::parse(p)?;
        let has = of_config(&store.images().config(row)?);
        if !asked.matches(&has) {
            local = Err(anyhow::anyhow!("image {name} is {}, not the platform asked for ({asked})", describe(&has)));
            missing = true;
        }
    }
    let remote = Reference::parse(name, ShortNames::DockerHub).ok().filter(|r| r.registry != "localhost");
    let pull = match want.policy {
        PullPolicy::Never => false,
        PullPolicy::Always => remote.is_some(),
        PullPolicy::Missing => missing && remote.is_some(),
    };
    if !pull {
        return match local {
            Err(e) if missing && want.policy == PullPolicy::Never => {
                Err(e.context(format!("--pull never: pull it first (`layers pull {name}`)")))
            }
            // Not touched here: the container made on it (`run`, `create`) records the
            // use in its own transaction, and a build's FROM records it itself.
            Ok(row) => {
                fetched(store, puller, &row)?;
                Ok((row, false))
            }
            Err(e) => Err(e),
        };
    }
    announce(missing);
    // The pull gets a handle of its own on the same store.
    let store_for_pull = store.reopen()?;
    super::pull::pull_image(
        puller.transfers,
        store_for_pull,
        name,
        want.platform,
        puller.registries,
        true,
        puller.shown,
    )?;
    let row = store.images().resolve(name).with_context(|| format!("{name}: pulled, then not found"))?;
    Ok((row, true))
}

/// Makes a remote image (`build --push`'s, its layers left in a registry) local: its
/// missing layers fetched from the repository they are in. A local image costs nothing.
/// The pull policy does not apply: this is the stored image, not a name looked up again.
pub fn fetched(store: &Store, puller: &Puller, image: &ImageRow) -> anyhow::Result<()> {
    fetched_with(store, image, &|r| {
        super::pull::fetch_remote(puller.transfers, store, r, puller.registries, puller.shown)
    })
}

/// [`fetched`] for `mount`, `save` and `export`: the registries config is read (`load`)
/// only when the image is remote, so a local image never depends on it.
pub fn fetched_loading(
    store: &Store,
    transfers: &Transfers,
    load: LoadRegistries,
    image: &ImageRow,
) -> anyhow::Result<()> {
    fetched_with(store, image, &|r| super::pull::fetch_remote(transfers, store, r, &load()?, Shown::Auto))
}

/// The rule both share: a local image costs nothing; a remote one's missing layers are
/// fetched by `fetch`.
fn fetched_with(
    store: &Store,
    image: &ImageRow,
    fetch: &dyn Fn(&layers_store::images::remote::RemoteImage) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    if image.remote.is_none() {
        return Ok(());
    }
    match store.images().remote(&image.manifest)? {
        None => Ok(()),
        Some(r) => fetch(&r).with_context(|| format!("image {}", image.manifest)),
    }
}
