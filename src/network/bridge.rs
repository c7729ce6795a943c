//! Docker's `bridge` network: the bridge `layers0` with the subnet's first address,
//! and per container a veth pair made with its inner end already in the container's
//! network namespace (as netavark does; moving it there after creation costs far
//! more), an address leased from the subnet, and a default route via the bridge.

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, OwnedFd};

use anyhow::{bail, Context};
use rustix::thread::{move_into_link_name_space, LinkNameSpaceType, UnshareFlags};

use super::ipam::{Holder, Lease, Leases};
use super::netlink::Netlink;
use super::settings::{Settings, BRIDGE};

/// The veth end left on the bridge for a container: `ly` and 12 hex digits of its ID
/// (15 characters at most, the kernel's limit).
pub fn host_veth(container: &str) -> String {
    format!("ly{}", &container[..container.len().min(12)])
}

/// A container's place on the bridge, kept for as long as it runs: dropped, its veth
/// goes at once (the kernel would take it with the namespace, but later, from a
/// work queue) and then its address.
pub struct Attachment {
    /// Its network namespace, for the container to join.
    pub netns: OwnedFd,
    /// Its veth's end on the bridge.
    veth: String,
    /// Its address, released when this is dropped (after the veth).
    pub lease: Lease,
}

impl Drop for Attachment {
    fn drop(&mut self) {
        if let Ok(mut nl) = Netlink::open() {
            remove_veth(&mut nl, &self.veth);
        }
    }
}

impl Attachment {
    /// The address in the subnet, as `a.b.c.d`.
    pub fn address(&self) -> Ipv4Addr {
        self.lease.address
    }
}

/// Makes the bridge if this namespace has none (its leases then go: no container can
/// be on a bridge just made) and writes our nftables table; the bridge's index.
fn ensure(nl: &mut Netlink, settings: &Settings, leases: &Leases) -> anyhow::Result<u32> {
    if let Some(link) = nl.link(BRIDGE)? {
        return Ok(link.index);
    }
    forwarding(settings)?;
    match nl.add_bridge(BRIDGE) {
        Ok(()) => {}
        // Made meanwhile by another run.
        Err(e) if e.errno() == Some(libc::EEXIST) => {}
        Err(e) => return Err(e.into()),
    }
    let index = nl.link(BRIDGE)?.with_context(|| format!("bridge {BRIDGE} vanished after it was made"))?.index;
    nl.add_address(index, settings.subnet.gateway(), settings.subnet.prefix)?;
    leases.forget_all()?;
    super::nft::apply(&[settings.subnet])?;
    Ok(index)
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

/// Puts the container `container` on the bridge: a network namespace of its own with
/// `lo` and `eth0` up, an address and a default route. `holder` is the process whose
/// life the address lease lasts. Veths of containers whose leases went stale are removed.
pub fn attach(settings: &Settings, container: &str, holder: &Holder) -> anyhow::Result<Attachment> {
    let state = super::state_dir()?;
    let leases = Leases::of(&state, "bridge")?;
    let mut outer = Netlink::open()?;
    let bridge = ensure(&mut outer, settings, &leases)?;
    let mut swept = Vec::new();
    let lease = leases.allocate(&settings.subnet, holder, &mut swept)?;
    for gone in swept {
        remove_veth(&mut outer, &host_veth(&gone));
    }
    let veth = host_veth(container);
    // A veth of this container left by a run that died while its namespace lived.
    remove_veth(&mut outer, &veth);
    let (netns, mut inner) = new_namespace()?;
    outer.add_veth(&veth, bridge, "eth0", netns.as_fd())?;
    inner.set_up(1, "lo")?;
    let eth0 = inner.link("eth0")?.context("eth0 missing in the container's namespace")?;
    inner.add_address(eth0.index, lease.address, settings.subnet.prefix)?;
    inner.set_up(eth0.index, "eth0")?;
    inner.add_default_route(settings.subnet.gateway())?;
    Ok(Attachment { netns, veth, lease })
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
