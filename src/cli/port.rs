//! `layers port CONTAINER [PRIVATE_PORT[/PROTO]]`: a running container's published
//! ports, as `docker port` prints them.

use std::process::ExitCode;

use anyhow::bail;
use clap::Args;
use layers_store::Store;

use crate::run::state;

// Arguments of `layers port`.
#[derive(Args)]
pub struct PortArgs {
    /// Container.
    container: String,
    /// Only this container port (`80` or `80/tcp`).
    private_port: Option<String>,
}

pub fn port(store: &Store, a: &PortArgs) -> anyhow::Result<ExitCode> {
    let c = store.snapshots().resolve(&a.container)?;
    let ports = state::running(store, &c).map(|r| r.ports).unwrap_or_default();
    let wanted = match a.private_port.as_deref() {
        Some(p) => {
            let (n, proto) = p.split_once('/').unwrap_or((p, "tcp"));
            let n: u16 = n.parse().map_err(|_| anyhow::anyhow!("port {}: invalid port {p:?}", a.container))?;
            Some((n, proto.to_string()))
        }
        None => None,
    };
    let shown: Vec<_> = ports
        .iter()
        .filter(|m| wanted.as_ref().is_none_or(|(n, p)| m.container_port == *n && m.proto.name() == p))
        .collect();
    if let (Some((n, p)), true) = (&wanted, shown.is_empty()) {
        bail!("port {}: no public port '{n}/{p}' published for {}", a.container, c.name);
    }
    for m in shown {
        // Docker prints only the host side for one port.
        let line = if wanted.is_some() { m.host() } else { m.describe() };
        outln!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}
