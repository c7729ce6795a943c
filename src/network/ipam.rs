//! Address leases on a bridge network: one file per address in a directory of this
//! network namespace's runtime state (`/run/layers/networks/<netns>/<network>/`), made
//! with O_EXCL under the directory's lock, so two runs, even from two stores, never
//! get the same address. A lease names its container and the process that holds it;
//! one whose process is gone is stale and swept by the next allocation. Leases live
//! on tmpfs, as Podman's IPAM does: after a reboot no container holds one.

use std::io::Write;
use std::net::Ipv4Addr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::Subnet;

/// What a lease file holds: the container and the process whose life it lasts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Holder {
    pub container: String,
    pub pid: u32,
    /// The holder's start time (clock ticks after boot): a reused PID is not it.
    pub start: u64,
}

impl Holder {
    /// This process, for `container`.
    pub fn this_process(container: &str) -> anyhow::Result<Holder> {
        let pid = std::process::id();
        let start = crate::run::state::start_time(pid).context("read this process's start time")?;
        Ok(Holder { container: container.to_string(), pid, start })
    }

    fn alive(&self) -> bool {
        crate::run::state::start_time(self.pid) == Some(self.start)
    }
}

/// The leases of one network in this network namespace.
pub struct Leases {
    dir: PathBuf,
}

/// An address held until dropped (then its file goes).
#[derive(Debug)]
pub struct Lease {
    pub address: Ipv4Addr,
    file: PathBuf,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
    }
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

    /// The lowest free address of `subnet` (past the gateway) for `holder`; stale
    /// leases are swept first. Their containers' names go to `swept`.
    pub fn allocate(&self, subnet: &Subnet, holder: &Holder, swept: &mut Vec<String>) -> anyhow::Result<Lease> {
        let lock = std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join(".lock"))
            .with_context(|| format!("open lock {}", self.dir.display()))?;
        lock.lock().with_context(|| format!("lock {}", self.dir.display()))?;
        let mut taken = std::collections::BTreeSet::new();
        for e in std::fs::read_dir(&self.dir).with_context(|| format!("read {}", self.dir.display()))? {
            let e = e?;
            let Some(addr) = e.file_name().to_str().and_then(|n| n.parse::<Ipv4Addr>().ok()) else { continue };
            match read_holder(&e.path()) {
                Some(h) if h.alive() => {
                    taken.insert(addr);
                }
                stale => {
                    swept.extend(stale.map(|h| h.container));
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let Some(address) = subnet.hosts().find(|a| !taken.contains(a)) else {
            bail!("network {}: no free address in {subnet} ({} in use)", self.name(), taken.len());
        };
        let file = self.dir.join(address.to_string());
        let mut f = std::fs::File::options()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&file)
            .with_context(|| format!("lease {address}"))?;
        let lease = Lease { address, file };
        f.write_all(&serde_json::to_vec(holder)?).with_context(|| format!("lease {address}"))?;
        Ok(lease)
    }

    fn name(&self) -> String {
        self.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }
}

fn read_holder(path: &Path) -> Option<Holder> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}
