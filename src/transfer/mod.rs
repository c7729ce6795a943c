//! Moving images between registries and the store: a [`remote::Remote`] per
//! repository (manifests, configs, layers streamed into the store, blobs pushed),
//! pulls and pushes built on it, the one rule by which `run`, `create` and a build's
//! FROM obtain an image (`obtain.rs`), and what a transfer shows (`progress.rs`).
//!
//! Every transfer of a process runs on one runtime, [`Transfers`]', whose worker
//! threads a container must never see: the runtime forks a container's process from a
//! single-threaded one. Starting a container takes a [`Quiesced`], which only
//! [`Transfers::quiesce`] hands out, after it has waited for the background transfers
//! and stopped the threads.

pub mod obtain;
pub mod platform;
pub mod progress;
pub mod pull;
pub mod push;
pub mod remote;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Context};
use tokio::runtime::{Handle, Runtime};
use tokio::task::JoinHandle;

/// How long `quiesce` (or the end of the process) waits for the runtime's threads.
const SHUTDOWN: std::time::Duration = std::time::Duration::from_secs(5);

/// The transfers of this process: one runtime (two worker threads, started on first
/// use) and the background transfers running on it. Clones share them.
#[derive(Clone, Default)]
pub struct Transfers(Arc<Inner>);

#[derive(Default)]
struct Inner {
    rt: Mutex<Option<Runtime>>,
    /// Background transfers (a build cache's layer prefetches), by key.
    background: Mutex<BTreeMap<String, JoinHandle<anyhow::Result<()>>>>,
}

/// Proof that no transfer thread runs: what starting a container takes.
pub struct Quiesced {
    _only_from_quiesce: (),
}

impl Transfers {
    /// No transfer yet; the runtime starts with the first.
    pub fn new() -> Transfers {
        Transfers::default()
    }

    /// A handle on the runtime, started if it is not running.
    pub fn handle(&self) -> anyhow::Result<Handle> {
        let mut rt = self.0.rt.lock().map_err(|_| anyhow!("a transfer panicked"))?;
        Ok(match &*rt {
            Some(r) => r.handle().clone(),
            None => {
                let r = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .context("start the transfer runtime")?;
                rt.insert(r).handle().clone()
            }
        })
    }

    /// Runs `f` on the runtime and waits for it (from outside the runtime).
    pub fn block_on<F: Future>(&self, f: F) -> anyhow::Result<F::Output> {
        Ok(self.handle()?.block_on(f))
    }

    /// Starts `task` in the background under `key`, unless one under that key was
    /// started and not joined yet.
    pub fn spawn_background(
        &self,
        key: &str,
        task: impl Future<Output = anyhow::Result<()>> + Send + 'static,
    ) -> anyhow::Result<()> {
        let handle = self.handle()?;
        let mut running = self.0.background.lock().map_err(|_| anyhow!("a transfer panicked"))?;
        if !running.contains_key(key) {
            running.insert(key.to_string(), handle.spawn(task));
        }
        Ok(())
    }

    /// Waits for the background transfer under `key`; `None` if none was started (or
    /// `quiesce` already waited for it).
    pub fn join(&self, key: &str) -> Option<anyhow::Result<()>> {
        let task = self.0.background.lock().ok()?.remove(key)?;
        let waited = self.block_on(task);
        Some(waited.and_then(|r| r.map_err(anyhow::Error::from).and_then(|r| r)))
    }

    /// Waits for every background transfer (a failed one is tried again, and its
    /// error shown, by whoever needs it) and stops the runtime's threads.
    pub fn quiesce(&self) -> Quiesced {
        let tasks = self.0.background.lock().map(|mut b| std::mem::take(&mut *b)).unwrap_or_default();
        let rt = self.0.rt.lock().ok().and_then(|mut rt| rt.take());
        if let Some(rt) = rt {
            for (_, t) in tasks {
                let _ = rt.block_on(t);
            }
            rt.shutdown_timeout(SHUTDOWN);
        }
        Quiesced { _only_from_quiesce: () }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // A background transfer nobody waited for (a build failed first) is abandoned:
        // what it staged under tmp/ is never committed.
        if let Some(rt) = self.rt.get_mut().ok().and_then(Option::take) {
            rt.shutdown_timeout(SHUTDOWN);
        }
    }
}
