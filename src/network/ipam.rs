//! Address leases on a bridge network: one file per address in a directory of this
//! network namespace's runtime state (`/run/layers/networks/<netns>/<network>/`), made
//! with O_EXCL under the directory's lock, so two runs, even from two stores, never
//! get the same address. A lease names its container, its veth and the process that
//! holds it. Released (or its holder dead), the address stays taken while its veth
//! drains: the kernel removes a veth with its namespace, from a work queue, which
//! deleting it ourselves would wait for (about 20 ms here). The next allocation frees
//! leases whose veth is gone. Leases live on tmpfs, as Podman's IPAM does: after a
//! reboot no container holds one.

use std::io::Write;
use std::net::Ipv4Addr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::ports::PortMap;
use super::Subnet;

/// The process whose life a lease lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Holder {
    pub pid: u32,
    /// The holder's start time (clock ticks after boot): a reused PID is not it.
    pub start: u64,
}

impl Holder {
    /// This process.
    pub fn this_process() -> anyhow::Result<Holder> {
        let pid = std::process::id();
        let start = crate::run::state::start_time(pid).context("read this process's start time")?;
        Ok(Holder { pid, start })
    }

    fn alive(&self) -> bool {
        crate::run::state::start_time(self.pid) == Some(self.start)
    }
}

/// The container a lease is for.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Joined {
    pub container: String,
    /// Its name, which other containers on a network that resolves names reach it by.
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub hostname: String,
    /// Its hosts file, which the network keeps current (when it resolves names).
    #[serde(default)]
    pub hosts: Option<PathBuf>,
    /// Its `--add-host` entries, kept in that file as its peers come and go.
    #[serde(default)]
    pub extra_hosts: Vec<(String, std::net::IpAddr)>,
}

/// What a lease file holds.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Record {
    #[serde(flatten)]
    pub joined: Joined,
    /// The veth end on the bridge.
    pub veth: String,
    /// `None` once released: the address then waits for the veth to go.
    pub holder: Option<Holder>,
    /// Its published ports (host ports resolved).
    #[serde(default)]
    pub ports: Vec<PortMap>,
}

/// How long a released lease's veth may linger before the next allocation deletes it
/// itself (its namespace held by something unexpected).
const DRAIN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// The leases of one network in this network namespace.
pub struct Leases {
    dir: PathBuf,
}

/// An address held until dropped (then released: draining until its veth goes).
#[derive(Debug)]
pub struct Lease {
    pub address: Ipv4Addr,
    file: PathBuf,
    record: Record,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.record.holder = None;
        self.record.ports.clear();
        let _ = write_record(&self.file, &self.record);
    }
}

/// Writes `record` to `file` whole (a temp file renamed over it).
fn write_record(file: &Path, record: &Record) -> anyhow::Result<()> {
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = file.with_file_name(format!(".tmp-{name}-{}", std::process::id()));
    let mut f = std::fs::File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("write lease {name}"))?;
    f.write_all(&serde_json::to_vec(record)?).with_context(|| format!("write lease {name}"))?;
    std::fs::rename(&tmp, file).with_context(|| format!("write lease {name}"))
}

impl Leases {
    /// The leases of `network` under `state` (this namespace's runtime dir).
    pub fn of(state: &Path, network: &str) -> anyhow::Result<Leases> {
        let dir = state.join(network);
        std::fs::create_dir_all(&dir).with_context(|| format!("make lease dir {}", dir.display()))?;
        Ok(Leases { dir })
    }

    /// Drops every lease: the bridge was just made, so no container can be on it.
    pub fn forget_all(&self) -> anyhow::Result<()> {
        for e in std::fs::read_dir(&self.dir).with_context(|| format!("read {}", self.dir.display()))? {
            let e = e?;
            if e.file_name() != ".lock" {
                let _ = std::fs::remove_file(e.path());
            }
        }
        Ok(())
    }

    /// The lowest free address of `subnet` (past the gateway) for `container`, held by
    /// `holder`, publishing `ports`; `veth_of` names the veth for an address. Leases
    /// whose holder is gone are freed once their veth is gone (`links`), and their veth
    /// deleted when it lingers past a grace time. Also says whether a lease released
    /// here had published ports (their rules are then stale).
    pub fn allocate(
        &self,
        subnet: &Subnet,
        joined: &Joined,
        holder: Holder,
        ports: &[PortMap],
        veth_of: impl Fn(Ipv4Addr) -> String,
        links: &mut dyn VethLinks,
    ) -> anyhow::Result<(Lease, bool)> {
        let mut stale_ports = false;
        let _lock = crate::userns::lock_file(&self.dir.join(".lock"))?;
        let mut taken = std::collections::BTreeSet::new();
        for (addr, path) in self.files()? {
            let Some(record) = read_record(&path) else {
                // Made and never written (its maker died at once): nothing was attached.
                let _ = std::fs::remove_file(&path);
                continue;
            };
            if record.holder.is_some_and(|h| h.alive()) {
                taken.insert(addr);
                continue;
            }
            stale_ports |= record.holder.is_some() && !record.ports.is_empty();
            if links.exists(&record.veth) {
                // Released: its veth goes with its namespace, soon; a holder that died
                // without releasing (killed) gets its veth deleted now, as does one
                // lingering past the grace time.
                let age = std::fs::metadata(&path).and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
                if record.holder.is_none() && age.is_some_and(|a| a < DRAIN_GRACE) {
                    taken.insert(addr);
                    continue;
                }
                links.delete(&record.veth);
            }
            let _ = std::fs::remove_file(&path);
        }
        let Some(address) = subnet.hosts().find(|a| !taken.contains(a)) else {
            bail!("network {}: no free address in {subnet} ({} in use)", self.name(), taken.len());
        };
        let file = self.dir.join(address.to_string());
        std::fs::File::options()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&file)
            .with_context(|| format!("lease {address}"))?;
        let record =
            Record { joined: joined.clone(), veth: veth_of(address), holder: Some(holder), ports: ports.to_vec() };
        write_record(&file, &record)?;
        Ok((Lease { address, file, record }, stale_ports))
    }

    /// The published ports of every lease whose holder lives: address, container, port.
    pub fn published(&self) -> anyhow::Result<Vec<(Ipv4Addr, String, PortMap)>> {
        let held = self.held()?;
        Ok(held.iter().flat_map(|(addr, r)| r.ports.iter().map(|p| (*addr, r.joined.container.clone(), *p))).collect())
    }

    /// Every lease whose holder lives: its address and record.
    pub fn held(&self) -> anyhow::Result<Vec<(Ipv4Addr, Record)>> {
        let mut out = Vec::new();
        for (addr, path) in self.files()? {
            let Some(record) = read_record(&path) else { continue };
            if record.holder.is_some_and(|h| h.alive()) {
                out.push((addr, record));
            }
        }
        out.sort_by_key(|(a, _)| *a);
        Ok(out)
    }

    /// The lease files, by address (the lock and temp files are not leases).
    fn files(&self) -> anyhow::Result<Vec<(Ipv4Addr, PathBuf)>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.dir).with_context(|| format!("read {}", self.dir.display()))? {
            let e = e?;
            if let Some(addr) = e.file_name().to_str().and_then(|n| n.parse::<Ipv4Addr>().ok()) {
                out.push((addr, e.path()));
            }
        }
        Ok(out)
    }

    fn name(&self) -> String {
        self.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }
}

fn read_record(path: &Path) -> Option<Record> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// The links a lease's veth is looked up and removed in.
pub trait VethLinks {
    fn exists(&mut self, name: &str) -> bool;
    fn delete(&mut self, name: &str);
}

impl Lease {
    /// The container it is for.
    pub fn joined(&self) -> &Joined {
        &self.record.joined
    }

    /// The veth this lease's container has on the bridge.
    pub fn veth(&self) -> &str {
        &self.record.veth
    }

    /// Its published ports.
    pub fn ports(&self) -> &[PortMap] {
        &self.record.ports
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Veths by name, and the ones deleted.
    #[derive(Default)]
    struct Fake {
        present: std::collections::BTreeSet<String>,
        deleted: Vec<String>,
    }

    impl VethLinks for Fake {
        fn exists(&mut self, name: &str) -> bool {
            self.present.contains(name)
        }
        fn delete(&mut self, name: &str) {
            self.present.remove(name);
            self.deleted.push(name.to_string());
        }
    }

    #[test]
    fn a_released_address_waits_for_its_veth_and_a_dead_holders_is_swept() {
        let dir = tempfile::tempdir().unwrap();
        let leases = Leases::of(dir.path(), "bridge").unwrap();
        let subnet = Subnet::parse("10.1.0.0/24").unwrap();
        let me = Holder::this_process().unwrap();
        let veth = |a: Ipv4Addr| format!("v{}", a.octets()[3]);
        let who = |c: &str| Joined { container: c.into(), ..Joined::default() };
        let mut links = Fake::default();
        let first = leases.allocate(&subnet, &who("c1"), me, &[], veth, &mut links).unwrap().0;
        assert_eq!(first.address, Ipv4Addr::new(10, 1, 0, 2));
        links.present.insert("v2".into());
        drop(first);
        // Released, its veth still there: the address is not given again yet.
        let second = leases.allocate(&subnet, &who("c2"), me, &[], veth, &mut links).unwrap().0;
        assert_eq!(second.address, Ipv4Addr::new(10, 1, 0, 3));
        // Its veth gone: free again.
        links.present.remove("v2");
        let third = leases.allocate(&subnet, &who("c3"), me, &[], veth, &mut links).unwrap().0;
        assert_eq!(third.address, Ipv4Addr::new(10, 1, 0, 2));
        // A holder that died (a PID no process has) without releasing its lease: its
        // veth is deleted and the address freed.
        let dead = Holder { pid: u32::MAX - 1, start: 1 };
        let orphan = dir.path().join("bridge/10.1.0.9");
        let ports = crate::network::ports::parse("8080:80").unwrap();
        let record = Record { joined: who("c9"), veth: "v9".into(), holder: Some(dead), ports };
        std::fs::write(&orphan, serde_json::to_vec(&record).unwrap()).unwrap();
        links.present.insert("v9".into());
        let (_fourth, stale) = leases.allocate(&subnet, &who("c4"), me, &[], veth, &mut links).unwrap();
        assert!(stale, "the dead holder published a port: its rule is stale");
        assert_eq!(links.deleted, ["v9"]);
        assert!(!orphan.exists());
        drop((second, third));
    }
}
