//! Bridge networks (Docker's `bridge`, `layers0`, and user-defined ones): the bridge
//! with the subnet's first address, and per container a veth pair made with its inner
//! end already in the container's network namespace (as netavark does; moving it there
//! after creation costs far more), an address leased from the subnet, and a default
//! route via the bridge.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, OwnedFd};

use anyhow::{bail, Context};
use rustix::thread::{move_into_link_name_space, LinkNameSpaceType, UnshareFlags};

use super::defs::BridgeNet;
use super::ipam::{Holder, Joined, Lease, Leases, VethLinks};
use super::netlink::Netlink;
use super::ports::PortMap;
use super::settings::Settings;
use super::Subnet;

/// The veth end left on the bridge for a container at `address`: `ly`, 8 hex digits of
/// its ID and 4 of its address (15 characters at most, the kernel's limit). The address
/// makes it unique: a veth still draining keeps its address leased.
pub fn host_veth(container: &str, address: Ipv4Addr) -> String {
    let low = u32::from(address) & 0xffff;
    format!("ly{}{low:04x}", &container[..container.len().min(8)])
}

/// A container's place on the bridge, kept for as long as it runs. Dropped, its address
/// is released (and its published ports' rules go); its veth goes with its namespace
/// (the kernel's work, not ours to wait for).
pub struct Attachment {
    /// Its network namespace, for the container to join.
    pub netns: OwnedFd,
    /// Its address, and the ports it publishes (taken when dropped, before the rules
    /// are rewritten without them).
    lease: Option<Lease>,
    /// The host ports held for it: let go after its rules (fields drop after `drop`).
    _reserved: super::ports::Reserved,
    leases: Leases,
    net: BridgeNet,
}

impl Attachment {
    /// Writes the hosts files of the containers on its network, this one's included
    /// (after its own was written), when the network resolves names.
    pub fn announce(&self) {
        if self.net.resolves_names {
            refresh_hosts(&self.leases);
        }
    }

    /// The address in the subnet.
    pub fn address(&self) -> Option<Ipv4Addr> {
        self.lease.as_ref().map(|l| l.address)
    }

    /// Its published ports, host ports resolved.
    pub fn ports(&self) -> Vec<PortMap> {
        self.lease.as_ref().map(|l| l.ports().to_vec()).unwrap_or_default()
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        // Its rules go before its address is released: the address may be leased again.
        if let Some(lease) = self.lease.as_ref().filter(|l| !l.ports().is_empty()) {
            let removed = table_lock().and_then(|_lock| super::nft::unpublish(&lease.joined().container));
            if let Err(e) = removed {
                eprintln!("layers: warning: remove the published ports' rules: {e:#}");
            }
        }
        drop(self.lease.take());
        if self.net.resolves_names {
            refresh_hosts(&self.leases);
        }
    }
}

impl VethLinks for Netlink {
    fn exists(&mut self, name: &str) -> bool {
        self.link(name).is_ok_and(|l| l.is_some())
    }

    fn delete(&mut self, name: &str) {
        remove_veth(self, name);
    }
}

/// Makes `net`'s bridge if this namespace has none (its leases then go: no container
/// can be on a bridge just made) and rewrites our nftables table; the bridge's index.
fn ensure(nl: &mut Netlink, settings: &Settings, net: &BridgeNet, leases: &Leases) -> anyhow::Result<u32> {
    let name = net.bridge.as_str();
    if let Some(link) = nl.link(name)? {
        return Ok(link.index);
    }
    forwarding(settings)?;
    match nl.add_bridge(name) {
        Ok(()) => {}
        // Made meanwhile by another run.
        Err(e) if e.errno() == Some(libc::EEXIST) => {}
        Err(e) => return Err(e.into()),
    }
    let index = nl.link(name)?.with_context(|| format!("bridge {name} vanished after it was made"))?.index;
    nl.add_address(index, net.subnet.gateway(), net.subnet.prefix)?;
    leases.forget_all()?;
    // Published to 127.0.0.1 from the host: the bridge must route loopback sources.
    let localnet = format!("/proc/sys/net/ipv4/conf/{name}/route_localnet");
    std::fs::write(&localnet, "1").with_context(|| format!("set {localnet}"))?;
    apply_table(settings)?;
    Ok(index)
}

/// Holds the lock under which this network namespace's table is written: a table
/// written whole from the leases read must not drop rules appended meanwhile.
fn table_lock() -> anyhow::Result<File> {
    crate::userns::lock_file(&super::state_dir()?.join("nft.lock"))
}

/// Writes our nftables table for every bridge network and every published port of a
/// live container on one.
pub fn apply_table(settings: &Settings) -> anyhow::Result<()> {
    let _lock = table_lock()?;
    let state = super::state_dir()?;
    let nets = super::defs::all(settings)?;
    let mut published = Vec::new();
    for n in &nets {
        published.extend(Leases::of(&state, &n.name)?.published()?);
    }
    let published: Vec<super::nft::Published<'_>> = published
        .iter()
        .map(|(address, container, port)| super::nft::Published { container, address: *address, port: *port })
        .collect();
    let bridges: Vec<(&str, Subnet)> = nets.iter().map(|n| (n.bridge.as_str(), n.subnet)).collect();
    super::nft::apply(&bridges, &published)
}

/// Adds a container's published-port rules to the table; written whole when it is
/// missing its chain, or when a dead container's rules are to go.
fn publish(settings: &Settings, lease: &Lease, stale: bool) -> anyhow::Result<()> {
    if !stale {
        let lock = table_lock()?;
        if super::nft::publish(&lease.joined().container, lease.address, lease.ports())? {
            return Ok(());
        }
        drop(lock);
    }
    // Its lease is written: the whole table includes its ports. (A table written whole
    // between its lease and its rules has them twice, which matches the same; both go.)
    apply_table(settings)
}

/// Rewrites the hosts file of every container on a network that resolves names: its
/// own lines, then every other container's name and address.
fn refresh_hosts(leases: &Leases) {
    let Ok(held) = leases.held() else { return };
    for (addr, me) in &held {
        let me = &me.joined;
        let Some(file) = &me.hosts else { continue };
        let mut text = crate::run::hosts_text(&me.hostname, Some(*addr), &me.extra_hosts);
        for (other_addr, other) in &held {
            let other = &other.joined;
            if other.container != me.container && !other.name.is_empty() {
                text.push_str(&format!("{other_addr}\t{}\n", other.name));
            }
        }
        // In place: the file is bind-mounted into the container (its inode must stay).
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let opened = std::fs::File::options().write(true).truncate(true).custom_flags(libc::O_NOFOLLOW).open(file);
        if let Ok(mut f) = opened {
            let _ = f.write_all(text.as_bytes());
        }
    }
}

/// Refuses to route for containers while `net.ipv4.ip_forward` is off, unless the
/// settings allow turning it on.
fn forwarding(settings: &Settings) -> anyhow::Result<()> {
    let path = "/proc/sys/net/ipv4/ip_forward";
    if std::fs::read_to_string(path).is_ok_and(|v| v.trim() == "1") {
        return Ok(());
    }
    if settings.enable_forwarding {
        return std::fs::write(path, "1").context("turn on net.ipv4.ip_forward");
    }
    bail!(
        "--network bridge: IP forwarding is off, so containers could not reach beyond the host: \
         turn it on (`sysctl -w net.ipv4.ip_forward=1`), or set `enable-forwarding = true` under \
         [network] in the store's store.toml or in /etc/layers/network.toml"
    )
}

/// Puts the container `who` on the bridge network `net`: a network namespace of its own
/// with `lo` and `eth0` up, an address and a default route, and `ports` published.
/// `holder` is the process whose life the address lease lasts (it holds the host ports
/// too). Its hosts file is kept current only on a network that resolves names.
pub fn attach(
    settings: &Settings,
    net: &BridgeNet,
    who: &Joined,
    holder: &Holder,
    ports: &[PortMap],
) -> anyhow::Result<Attachment> {
    let container = who.container.as_str();
    let state = super::state_dir()?;
    let leases = Leases::of(&state, &net.name)?;
    let mut outer = Netlink::open()?;
    let bridge = ensure(&mut outer, settings, net, &leases)?;
    let reserved = super::ports::reserve(ports)?;
    let joined = Joined { hosts: who.hosts.clone().filter(|_| net.resolves_names), ..who.clone() };
    let (lease, stale_ports) =
        leases.allocate(&net.subnet, &joined, *holder, &reserved.maps, |a| host_veth(container, a), &mut outer)?;
    let veth = lease.veth().to_string();
    let (netns, mut inner) = new_namespace()?;
    // In the new namespace, lo is link 1 and eth0 is made as link 2.
    const ETH0: u32 = 2;
    match outer.add_veth(&veth, bridge, "eth0", ETH0, netns.as_fd()) {
        // Left by a run whose namespace something else still holds.
        Err(e) if e.errno() == Some(libc::EEXIST) => {
            remove_veth(&mut outer, &veth);
            outer.add_veth(&veth, bridge, "eth0", ETH0, netns.as_fd())?;
        }
        r => r?,
    }
    inner.set_up(1, "lo")?;
    inner.add_address(ETH0, lease.address, net.subnet.prefix)?;
    inner.set_up(ETH0, "eth0")?;
    inner.add_default_route(net.subnet.gateway())?;
    if !lease.ports().is_empty() || stale_ports {
        publish(settings, &lease, stale_ports)?;
    }
    Ok(Attachment { netns, lease: Some(lease), _reserved: reserved, leases, net: net.clone() })
}

fn remove_veth(nl: &mut Netlink, name: &str) {
    if let Ok(Some(link)) = nl.link(name) {
        let _ = nl.delete_link(link.index, name);
    }
}

/// A new network namespace and a netlink socket in it, made by this thread, which
/// then returns to the namespace it was in.
fn new_namespace() -> anyhow::Result<(OwnedFd, Netlink)> {
    let here = File::open("/proc/thread-self/ns/net").context("open this network namespace")?;
    // SAFETY: a new network namespace for this thread only; no memory is shared
    // differently after it (unlike CLONE_FILES or CLONE_FS, which this is not).
    #[allow(unsafe_code)]
    let unshared = unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNET) };
    unshared.context("make the container's network namespace")?;
    let made = (|| {
        let ns = File::open("/proc/thread-self/ns/net").context("open the container's network namespace")?;
        let nl = Netlink::open()?;
        anyhow::Ok((OwnedFd::from(ns), nl))
    })();
    move_into_link_name_space(here.as_fd(), Some(LinkNameSpaceType::Network))
        .context("return to the host's network namespace")?;
    made
}
