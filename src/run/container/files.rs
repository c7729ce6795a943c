//! The files `run` makes in a container's dir for it: the init layer and what is
//! mounted on its `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use layers_store::fsroot::lowers;

use super::dir::{ContainerDir, File};

/// Docker's "init layer": a lower dir between the image and the container's upper
/// dir holding the mount points `run` needs (`/etc/hosts`... and `/proc`, `/sys`,
/// `/dev` when the image lacks them), so they never show in `diff` or `commit`.
pub fn init_layer(dir: &ContainerDir, lowers: &[PathBuf]) -> anyhow::Result<PathBuf> {
    let init = dir.file(File::InitLayer);
    let visible_dir = |rel: &str| lowers::is_visible_dir(lowers, Path::new(rel));
    let absent = |rel: &str| !lowers::in_lowers(lowers, Path::new(rel));
    // The init dir is ours (the container's dir); only fixed names are made in it.
    let mk = |rel: &str| std::fs::create_dir_all(init.join(rel)).with_context(|| format!("create init layer {rel}"));
    mk("")?;
    for d in ["proc", "sys", "dev"] {
        if absent(d) {
            mk(d)?;
        }
    }
    // Only into a real /etc: a dir here would hide an image's /etc symlink.
    if visible_dir("etc") || absent("etc") {
        mk("etc")?;
        for f in ["hosts", "hostname", "resolv.conf"] {
            if absent(&format!("etc/{f}")) {
                std::fs::write(init.join("etc").join(f), "").with_context(|| format!("create init layer etc/{f}"))?;
            }
        }
    }
    Ok(init)
}

/// `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf` for the container, in its dir.
pub fn etc_files(dir: &ContainerDir, hostname: &str) -> anyhow::Result<Vec<(PathBuf, String)>> {
    let hosts = format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n");
    let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let mut out = Vec::new();
    for (f, content) in [(File::Hostname, format!("{hostname}\n")), (File::Hosts, hosts), (File::ResolvConf, resolv)] {
        let p = dir.file(f);
        std::fs::write(&p, content).with_context(|| format!("write {}", p.display()))?;
        out.push((p, format!("etc/{}", f.name())));
    }
    Ok(out)
}
