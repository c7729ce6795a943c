//! Regular files written off the tar-parsing thread. Creating a small file costs
//! eight syscalls (create, write, owner, mode, times, stat, xattrs, close); the parser
//! reads each small file's bytes into a buffer and hands the rest to a writer thread,
//! so a layer of many small files uses both cores.
//!
//! Correctness rests on one rule, kept by the extractor: a file is handed off only
//! when nothing is at its path yet (no record, none in flight), and before any entry
//! touches a path in flight (that path, a directory above it, a removal that could
//! reach it, a hardlink) every file in flight is finished ([`Files::settle`]). So the
//! tree ends as a one-thread unpack would leave it, and the first failing entry (by
//! tar order) is the error reported.

use std::collections::HashMap;
use std::fs::File;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::io::{self, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::{self, Scope};

use super::attrs::{create_mode, finish_file};
use crate::fsroot::{Meta, Subdir};
use crate::layer::listing::FileDigest;
use crate::layer::written::Node;

/// Largest file handed off: its bytes are held in memory while in flight.
pub(super) const MAX_FILE: u64 = 32 * 1024;
/// A batch is sent once it holds this many bytes or files: the writer wakes once per
/// batch, not once per file (a wake-up costs about what making a small file does:
/// one file per hand-off made a pull of 50,000 small files slower than none).
const BATCH_BYTES: usize = 32 * 1024;
const BATCH_FILES: usize = 48;
/// Batches in all: one being filled, the rest in flight. With the sizes above, at
/// most about 200 KiB of file bytes is held.
const BATCHES: usize = 3;

/// A file to be made by a writer; its bytes are `data[range]` of its batch.
struct Job {
    index: u64,
    path: Vec<u8>,
    name_at: usize,
    dir: Arc<Subdir>,
    meta: Meta,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    range: std::ops::Range<usize>,
}

/// A finished job: the node as made, or why it could not be.
pub(super) struct Done {
    pub index: u64,
    pub path: Vec<u8>,
    pub node: io::Result<Node>,
}

/// Files and their bytes, sent to a writer and back as one.
#[derive(Default)]
struct Batch {
    jobs: Vec<Job>,
    data: Vec<u8>,
    done: Vec<Done>,
}

/// The writers and what is in flight to them.
pub(super) struct Files<'scope, 'env> {
    scope: &'scope Scope<'scope, 'env>,
    writers: usize,
    /// Started with the first batch: a layer that never hands a file off (one of
    /// large files) costs no thread.
    started: Option<Writers>,
    /// The batch being filled.
    filling: Batch,
    /// Batches ready to be filled.
    spare: Vec<Batch>,
    /// Batches sent and not back.
    sent: usize,
    /// Hashes of the paths in flight, filling included (a collision only costs a
    /// needless settle).
    in_flight: HashMap<u64, u32, BuildHasherDefault<DefaultHasher>>,
}

/// The writer threads' two ends.
struct Writers {
    to: Option<SyncSender<Batch>>,
    back: Receiver<Batch>,
}

impl Writers {
    fn start<'scope>(scope: &'scope Scope<'scope, '_>, writers: usize) -> io::Result<Writers> {
        let (to, rx) = sync_channel::<Batch>(BATCHES);
        let (back_tx, back) = sync_channel::<Batch>(BATCHES);
        let rx = Arc::new(std::sync::Mutex::new(rx));
        for _ in 0..writers {
            let (rx, back_tx) = (Arc::clone(&rx), back_tx.clone());
            thread::Builder::new().name("layer-files".into()).spawn_scoped(scope, move || loop {
                // The lock is held only to take the next batch.
                let batch = match rx.lock() {
                    Ok(rx) => rx.recv(),
                    Err(_) => return,
                };
                let Ok(mut batch) = batch else { return };
                for job in batch.jobs.drain(..) {
                    let node = make(&job, &batch.data[job.range.clone()]);
                    batch.done.push(Done { index: job.index, path: job.path, node });
                }
                if back_tx.send(batch).is_err() {
                    return;
                }
            })?;
        }
        Ok(Writers { to: Some(to), back })
    }
}

impl<'scope, 'env> Files<'scope, 'env> {
    /// Files made by `writers` threads of `scope`, started when first needed.
    pub(super) fn new(scope: &'scope Scope<'scope, 'env>, writers: usize) -> Files<'scope, 'env> {
        Files {
            scope,
            writers,
            started: None,
            filling: Batch::default(),
            spare: (1..BATCHES).map(|_| Batch::default()).collect(),
            sent: 0,
            in_flight: HashMap::default(),
        }
    }

    /// Whether `path` or a directory above it is in flight.
    pub(super) fn touches(&self, path: &[u8]) -> bool {
        if self.in_flight.is_empty() {
            return false;
        }
        let mut end = path.len();
        loop {
            if self.in_flight.contains_key(&self.hash(&path[..end])) {
                return true;
            }
            match path[..end].iter().rposition(|&b| b == b'/') {
                Some(i) => end = i,
                None => return false,
            }
        }
    }

    /// Adds a file of `len` bytes, which `fill` writes into the buffer it is given;
    /// `apply` is given each file finished meanwhile.
    pub(super) fn add(
        &mut self,
        job: NewJob,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> io::Result<()>,
        mut apply: impl FnMut(Done),
    ) -> io::Result<()> {
        if self.started.is_none() {
            self.started = Some(Writers::start(self.scope, self.writers)?);
        }
        let start = self.filling.data.len();
        self.filling.data.resize(start + len, 0);
        if let Err(e) = fill(&mut self.filling.data[start..]) {
            self.filling.data.truncate(start);
            return Err(e);
        }
        *self.in_flight.entry(self.hash(&job.path)).or_default() += 1;
        let NewJob { index, path, name_at, dir, meta, xattrs } = job;
        self.filling.jobs.push(Job { index, path, name_at, dir, meta, xattrs, range: start..start + len });
        if self.filling.data.len() >= BATCH_BYTES || self.filling.jobs.len() >= BATCH_FILES {
            self.flush(&mut apply);
        }
        Ok(())
    }

    /// Gives `apply` each file already finished, without waiting.
    pub(super) fn poll(&mut self, mut apply: impl FnMut(Done)) {
        while self.sent > 0 {
            let Some(w) = &self.started else { return };
            match w.back.try_recv() {
                Ok(batch) => self.returned(batch, &mut apply),
                Err(_) => return,
            }
        }
    }

    /// Makes every file added so far, giving each to `apply`.
    pub(super) fn settle(&mut self, mut apply: impl FnMut(Done)) {
        if !self.filling.jobs.is_empty() {
            self.flush(&mut apply);
        }
        while self.sent > 0 {
            self.wait(&mut apply);
        }
    }

    /// Stops the writers once their files are made (they are joined by the scope).
    pub(super) fn close(&mut self, apply: impl FnMut(Done)) {
        self.settle(apply);
        if let Some(w) = &mut self.started {
            w.to = None;
        }
    }

    /// Sends the batch being filled, once a spare one is back to take its place.
    fn flush(&mut self, apply: &mut impl FnMut(Done)) {
        if self.spare.is_empty() {
            self.wait(apply);
        }
        let next = self.spare.pop().unwrap_or_default();
        let batch = std::mem::replace(&mut self.filling, next);
        self.sent += 1;
        if let Some(to) = self.started.as_ref().and_then(|w| w.to.as_ref()) {
            // The writers live until `to` is dropped: a send cannot find them gone.
            let _ = to.send(batch);
        }
    }

    fn wait(&mut self, apply: &mut impl FnMut(Done)) {
        match self.started.as_ref().map(|w| w.back.recv()) {
            Some(Ok(batch)) => self.returned(batch, apply),
            // Unreachable while batches are out: each writer answers before it ends.
            _ => panic!("file writers ended with {} batches out", self.sent),
        }
    }

    fn returned(&mut self, mut batch: Batch, apply: &mut impl FnMut(Done)) {
        self.sent -= 1;
        for done in batch.done.drain(..) {
            let h = self.hash(&done.path);
            if let Some(n) = self.in_flight.get_mut(&h) {
                *n -= 1;
                if *n == 0 {
                    self.in_flight.remove(&h);
                }
            }
            apply(done);
        }
        batch.data.clear();
        // A batch that once held a large file does not keep its memory.
        batch.data.shrink_to(BATCH_BYTES + MAX_FILE as usize);
        self.spare.push(batch);
    }

    fn hash(&self, path: &[u8]) -> u64 {
        self.in_flight.hasher().hash_one(path)
    }
}

/// What the extractor knows of a file to be handed off, its bytes aside.
pub(super) struct NewJob {
    /// The entry's number in the tar stream (errors are reported in tar order).
    pub index: u64,
    /// Its path beneath the root; the name is `path[name_at..]`.
    pub path: Vec<u8>,
    pub name_at: usize,
    pub dir: Arc<Subdir>,
    pub meta: Meta,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Makes the file of `job`, whose bytes are `data`, beneath its directory, as the
/// extractor would inline.
fn make(job: &Job, data: &[u8]) -> io::Result<Node> {
    let name = &job.path[job.name_at..];
    let mut file: File = job.dir.create_file(name, create_mode(&job.meta)).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            // The extractor hands off only paths it has made nothing at: the layer
            // dir was not empty, or something else writes into it.
            io::Error::other("a file is already there that this layer did not make")
        } else {
            e
        }
    })?;
    file.write_all(data)?;
    let digest = FileDigest::Plain(*blake3::hash(data).as_bytes());
    finish_file(&file, &job.meta, &job.xattrs, digest)
}
