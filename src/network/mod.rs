//! Container networks: the bridge (`layers0`, Docker's `bridge`) with outgoing NAT,
//! and its parts: links and addresses through rtnetlink (`netlink`), address leases
//! (`ipam`), the one nftables table of ours (`nft`), and the settings that choose the
//! subnet and the default network (`settings`).

pub mod bridge;
pub mod defs;
pub mod ipam;
pub mod netlink;
pub mod nfnl;
pub mod nft;
pub mod ports;
pub mod settings;

use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use anyhow::{bail, Context};

/// An IPv4 subnet, `a.b.c.d/len`, its host bits zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    pub base: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    /// `a.b.c.d/len` (8 to 30 bits of prefix, no host bits set).
    pub fn parse(s: &str) -> anyhow::Result<Subnet> {
        let (addr, len) = s.split_once('/').with_context(|| format!("subnet {s:?}: want a.b.c.d/len"))?;
        let base: Ipv4Addr = addr.parse().with_context(|| format!("subnet {s:?}: {addr:?} is not an IPv4 address"))?;
        let prefix: u8 = len.parse().with_context(|| format!("subnet {s:?}: {len:?} is not a prefix length"))?;
        if !(8..=30).contains(&prefix) {
            bail!("subnet {s}: the prefix length must be 8 to 30");
        }
        let subnet = Subnet { base, prefix };
        if u32::from(base) & !subnet.mask() != 0 {
            bail!("subnet {s}: host bits are set (did you mean {}?)", Subnet { base: subnet.network(), prefix });
        }
        Ok(subnet)
    }

    fn mask(&self) -> u32 {
        u32::MAX << (32 - self.prefix)
    }

    fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.base) & self.mask())
    }

    /// The bridge's own address: the first host address.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.base) + 1)
    }

    /// The addresses containers may get: past the gateway, before the broadcast address.
    pub fn hosts(&self) -> impl Iterator<Item = Ipv4Addr> {
        let first = u32::from(self.base) + 2;
        let broadcast = u32::from(self.base) | !self.mask();
        (first..broadcast).map(Ipv4Addr::from)
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

/// Runtime state of this network namespace's networks: `/run/layers/networks/<netns>`
/// (the namespace's inode: two namespaces have two bridges and two sets of leases).
pub fn state_dir() -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let ns = std::fs::metadata("/proc/thread-self/ns/net").context("read this network namespace")?.ino();
    let base =
        std::env::var_os("LAYERS_NETWORK_STATE").map_or_else(|| PathBuf::from("/run/layers/networks"), PathBuf::from);
    let dir = base.join(format!("netns-{ns}"));
    std::fs::create_dir_all(&dir).with_context(|| format!("make {}", dir.display()))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_parse_and_give_a_gateway_and_host_addresses() {
        let s = Subnet::parse("10.77.0.0/16").unwrap();
        assert_eq!(s.gateway(), Ipv4Addr::new(10, 77, 0, 1));
        assert_eq!(s.hosts().next(), Some(Ipv4Addr::new(10, 77, 0, 2)));
        assert_eq!(s.hosts().last(), Some(Ipv4Addr::new(10, 77, 255, 254)));
        assert_eq!(Subnet::parse("192.168.5.0/30").unwrap().hosts().count(), 1);
        for (bad, says) in [
            ("10.77.0.1/16", "did you mean 10.77.0.0/16"),
            ("10.77.0.0", "want a.b.c.d/len"),
            ("10.77.0.0/31", "8 to 30"),
            ("10.777.0.0/16", "not an IPv4 address"),
        ] {
            let err = Subnet::parse(bad).unwrap_err().to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
