//! COPY's sources in the build context, another stage's root or an image: which
//! paths a source names (globs, `.dockerignore`), whether one is an archive ADD
//! extracts, and the digest of what a COPY will write (its cache key). Reading and
//! copying go through the store's one door for untrusted paths, `layers_store::fsroot`.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use layers_store::build_cache::FileStamp;
use layers_store::content::digest::{Digest, Hasher};
use layers_store::fsroot::{Attrs, CopyPlan, Entry, Filter, Tree};
use layers_store::ContentHash;
use layers_store::Store;
use rustix::fs::FileType;

use super::frontend::path::clean;
use super::frontend::pattern::Patterns;

impl Filter for Patterns {
    fn excludes(&self, rel: &Path) -> bool {
        self.matches(rel)
    }
}

/// The paths a COPY source names: itself, or what its glob matches (sorted).
pub fn select(tree: &Tree, source: &str, ignore: &Patterns) -> anyhow::Result<Vec<PathBuf>> {
    let Some(rel) = clean(source) else { bail!("{source}: the path leaves the {}", tree.name) };
    if !super::frontend::pattern::is_glob(source) {
        tree.stat(&rel).map_err(|e| anyhow::anyhow!("{source}: not found in the {}: {e}", tree.name))?;
        return Ok(vec![rel]);
    }
    let pattern = Patterns::single(&rel.to_string_lossy());
    let mut all = Vec::new();
    tree.walk(Path::new(""), ignore, &mut all)?;
    let hits: Vec<PathBuf> = all.into_iter().map(|e| e.rel).filter(|r| pattern.matches_exactly(r)).collect();
    if hits.is_empty() {
        bail!("{source}: no file in the {} matches", tree.name);
    }
    Ok(hits)
}

/// Whether `rel` in `tree` is a tar archive, plain or gzip/zstd-compressed (ADD extracts those).
pub fn is_archive(tree: &Tree, rel: &Path) -> bool {
    let Ok(mut f) = tree.open_file(rel) else { return false };
    let mut head = [0u8; 512];
    let mut got = 0;
    while got < head.len() {
        match f.read(&mut head[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    starts_a_tar(&head[..got])
}

/// Whether `head` (a stream's first bytes, up to 512) starts a tar, plain (its
/// `ustar` magic) or gzip/zstd-compressed.
pub fn starts_a_tar(head: &[u8]) -> bool {
    match layers_store::Compression::detect(head) {
        Ok(layers_store::Compression::None) => head.len() == 512 && &head[257..262] == b"ustar",
        Ok(_) => true,
        Err(_) => false,
    }
}

/// Extracts the archive `rel` of `tree` into the empty dir `into`, as safely as a layer
/// (no entry lands outside, limits on size and entries).
pub fn extract(tree: &Tree, rel: &Path, into: &Path, limits: &layers_store::Limits) -> anyhow::Result<()> {
    let file = tree.open_file(rel)?;
    extract_stream(std::io::BufReader::new(file), into, limits).with_context(|| format!("extract {}", rel.display()))
}

/// Extracts a tar stream (plain, gzip or zstd: ADD's archive, `build -`'s context,
/// `cp -`'s input) into the empty dir `into`, by the layer unpacker's rules and limits.
pub fn extract_stream(input: impl Read + Send, into: &Path, limits: &layers_store::Limits) -> anyhow::Result<()> {
    let root = layers_store::fsroot::Root::open(into).with_context(|| format!("open {}", into.display()))?;
    layers_store::layer::unpack::unpack(input, None, &root, limits, None)?;
    Ok(())
}

/// What COPY will write, digested: the whole, and each entry by its source path.
pub struct CopyDigest {
    pub digest: Digest,
    /// (source path, digest of that entry), in plan order.
    pub entries: Vec<(String, Digest)>,
}

/// A digest of what COPY will write: paths, types, modes, owners, sizes, contents,
/// link targets; not times (so a fresh checkout of the same files hits the cache).
/// With `known` (the build context's files, which keep their inodes between builds),
/// a file whose stamp is unchanged since it was last hashed is not read again.
pub fn content_digest(tree: &Tree, plan: &CopyPlan, attrs: Attrs, known: Option<&Store>) -> anyhow::Result<CopyDigest> {
    // A file changed within this margin of being hashed could change again within the
    // same timestamp tick unseen (git's "racily clean"): hashed each time until older.
    const SETTLED_NS: i64 = 2_000_000_000;
    let now_ns = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64);
    let regular = |e: &Entry| e.link.is_none() && e.kind() == FileType::RegularFile;
    let files: Vec<&Entry> = plan.items.iter().map(|(e, _)| e).filter(|e| regular(e)).collect();
    let stamps: Vec<FileStamp> = files.iter().map(|e| stamp(&e.stat)).collect();
    let mut hashes = match known {
        Some(store) => store.build_cache().known_file_digests(&stamps)?,
        None => vec![None; stamps.len()],
    };
    let unknown: Vec<usize> = (0..files.len()).filter(|i| hashes[*i].is_none()).collect();
    for (i, h) in hash_files(tree, &files, &unknown)? {
        hashes[i] = Some(h);
    }
    if let Some(store) = known {
        let settled = |s: &FileStamp| s.ctime_ns.max(s.mtime_ns) < now_ns - SETTLED_NS;
        let learned: Vec<_> = unknown
            .iter()
            .filter(|i| settled(&stamps[**i]))
            .filter_map(|i| hashes[*i].map(|h| (stamps[*i], h)))
            .collect();
        store.build_cache().remember_file_digests(&learned)?;
    }
    // In plan order, one per regular file.
    let mut regulars = hashes.into_iter();
    let mut h = Hasher::new();
    let mut entries = Vec::with_capacity(plan.items.len());
    for (e, target) in &plan.items {
        let mut entry = Hasher::new();
        let mode = attrs.mode.unwrap_or(e.stat.st_mode & 0o7777);
        let line = format!(
            "{}\0{:o}\0{}\0{}\0{}\n",
            target.display(),
            (e.stat.st_mode & 0o170000) | mode,
            attrs.uid,
            attrs.gid,
            if e.kind() == FileType::Directory { 0 } else { e.stat.st_size }
        );
        h.update(line.as_bytes());
        entry.update(line.as_bytes());
        if let Some(l) = &e.link {
            h.update(l);
            entry.update(l);
        } else if regular(e) {
            let content = regulars.next().flatten().context("a regular file without its hash")?.to_string();
            h.update(content.as_bytes());
            entry.update(content.as_bytes());
        }
        let name = if e.rel.as_os_str().is_empty() { ".".to_string() } else { e.rel.display().to_string() };
        entries.push((name, entry.finish()));
    }
    Ok(CopyDigest { digest: h.finish(), entries })
}

/// Hashes `files[i]` for each `i` in `which`, on every core: a context is often many
/// small files, or a few large ones, and reading and hashing it is the plan's cost.
fn hash_files(tree: &Tree, files: &[&Entry], which: &[usize]) -> anyhow::Result<Vec<(usize, ContentHash)>> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let work = || -> anyhow::Result<Vec<(usize, ContentHash)>> {
        let mut buf = vec![0u8; 256 << 10];
        let mut done = Vec::new();
        loop {
            let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(&i) = which.get(n) else { return Ok(done) };
            let (rel, size) = (&files[i].rel, files[i].stat.st_size as u64);
            let f = tree.open_file(rel)?;
            // A file alone large enough is split among the cores itself.
            let h = if which.len() == 1 && size >= layers_store::content::content_hash::PARALLEL_MIN {
                ContentHash::of_file(&f, size, cores)
            } else {
                ContentHash::of_reader_with(f, &mut buf)
            };
            done.push((i, h.with_context(|| format!("{}: read {}", tree.name, rel.display()))?));
        }
    };
    let threads = cores.min(which.len());
    if threads <= 1 {
        return work();
    }
    std::thread::scope(|s| {
        let helpers: Vec<_> = (1..threads).map(|_| s.spawn(work)).collect();
        let mut all = work()?;
        for h in helpers {
            all.extend(h.join().map_err(|_| anyhow::anyhow!("hashing the build context panicked"))??);
        }
        Ok(all)
    })
}

fn stamp(st: &rustix::fs::Stat) -> FileStamp {
    FileStamp {
        dev: st.st_dev,
        ino: st.st_ino,
        size: st.st_size as u64,
        mtime_ns: st.st_mtime * 1_000_000_000 + st.st_mtime_nsec as i64,
        ctime_ns: st.st_ctime * 1_000_000_000 + st.st_ctime_nsec as i64,
    }
}
