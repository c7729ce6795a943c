//! COPY's two sides. Sources: paths in a root (the build context, or another
//! stage's or image's root filesystem) resolved with `RESOLVE_IN_ROOT`, so `..` and
//! symlinks never lead out of it; trees walked without following symlinks (a symlink
//! is copied as a symlink); `.dockerignore` and `--exclude` patterns applied.
//! Destination: a mounted container root, reached the same way.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStringExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context};
use layers_store::build_cache::FileStamp;
use layers_store::digest::{Digest, Hasher};
use layers_store::ContentHash;
use layers_store::Store;
use rustix::fs::{openat2, AtFlags, Mode, OFlags, ResolveFlags};

pub use super::frontend::path::{clean, clean_in_root};
use super::frontend::pattern::Patterns;

/// A directory tree reached through a directory fd, nothing resolved outside it.
pub struct Tree {
    root: OwnedFd,
    /// For messages.
    pub name: String,
}

/// One selected source entry: its path relative to the tree root and what it is.
#[derive(Debug, Clone)]
pub struct Entry {
    pub rel: PathBuf,
    pub stat: rustix::fs::Stat,
    /// Symlink target.
    pub link: Option<Vec<u8>>,
}

fn kind(st: &rustix::fs::Stat) -> rustix::fs::FileType {
    rustix::fs::FileType::from_raw_mode(st.st_mode)
}

impl Tree {
    pub fn open(dir: &Path, name: &str) -> anyhow::Result<Tree> {
        let root = rustix::fs::open(dir, OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
            .with_context(|| format!("open {name} {}", dir.display()))?;
        Ok(Tree { root, name: name.to_string() })
    }

    fn open_in(&self, rel: &Path, flags: OFlags) -> rustix::io::Result<OwnedFd> {
        let rel = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
        openat2(
            &self.root,
            rel,
            flags | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )
    }

    fn stat(&self, rel: &Path) -> rustix::io::Result<rustix::fs::Stat> {
        let fd = self.open_in(rel, OFlags::PATH | OFlags::NOFOLLOW)?;
        rustix::fs::fstat(&fd)
    }

    /// Whether `rel` is a directory (not a symlink to one).
    pub fn is_dir(&self, rel: &Path) -> bool {
        self.stat(rel).is_ok_and(|s| kind(&s) == rustix::fs::FileType::Directory)
    }

    /// Every entry under `rel` (itself first), parents before children, names sorted;
    /// those `ignore` matches are left out (a dir's contents with it).
    pub fn walk(&self, rel: &Path, ignore: &Patterns, out: &mut Vec<Entry>) -> anyhow::Result<()> {
        let stat = self.stat(rel).with_context(|| format!("{}: {}", self.name, rel.display()))?;
        if !rel.as_os_str().is_empty() && ignore.matches(rel) {
            return Ok(());
        }
        match kind(&stat) {
            rustix::fs::FileType::Symlink => {
                let parent = self.open_in(rel.parent().unwrap_or(Path::new("")), OFlags::PATH | OFlags::DIRECTORY)?;
                let name = rel.file_name().context("symlink without a name")?;
                let link = Some(rustix::fs::readlinkat(&parent, name, Vec::new())?.into_bytes());
                out.push(Entry { rel: rel.to_path_buf(), stat, link });
            }
            rustix::fs::FileType::Directory => {
                out.push(Entry { rel: rel.to_path_buf(), stat, link: None });
                let dir = self.open_in(rel, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW)?;
                self.walk_dir(&dir, rel, ignore, out)?;
            }
            _ => out.push(Entry { rel: rel.to_path_buf(), stat, link: None }),
        }
        Ok(())
    }

    /// The entries below the open directory `dir` (at `rel`). Each child is one name
    /// looked up in `dir` without following it, so nothing resolves outside the tree.
    fn walk_dir(&self, dir: &OwnedFd, rel: &Path, ignore: &Patterns, out: &mut Vec<Entry>) -> anyhow::Result<()> {
        let mut names: Vec<std::ffi::CString> = rustix::fs::Dir::read_from(dir)?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_owned())
            .filter(|n| n.as_bytes() != b"." && n.as_bytes() != b"..")
            .collect();
        names.sort();
        for name in names {
            let child = rel.join(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name.as_bytes()));
            if ignore.matches(&child) {
                continue;
            }
            let stat = rustix::fs::statat(dir, &name, AtFlags::SYMLINK_NOFOLLOW)
                .with_context(|| format!("{}: {}", self.name, child.display()))?;
            match kind(&stat) {
                rustix::fs::FileType::Symlink => {
                    let link = Some(rustix::fs::readlinkat(dir, &name, Vec::new())?.into_bytes());
                    out.push(Entry { rel: child, stat, link });
                }
                rustix::fs::FileType::Directory => {
                    let sub = rustix::fs::openat(
                        dir,
                        &name,
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .with_context(|| format!("{}: {}", self.name, child.display()))?;
                    out.push(Entry { rel: child.clone(), stat, link: None });
                    self.walk_dir(&sub, &child, ignore, out)?;
                }
                _ => out.push(Entry { rel: child, stat, link: None }),
            }
        }
        Ok(())
    }

    /// The paths a COPY source names: itself, or what its glob matches (sorted).
    pub fn select(&self, source: &str, ignore: &Patterns) -> anyhow::Result<Vec<PathBuf>> {
        let Some(rel) = clean(source) else { bail!("{source}: the path leaves the {}", self.name) };
        if !super::frontend::pattern::is_glob(source) {
            self.stat(&rel).map_err(|e| anyhow::anyhow!("{source}: not found in the {}: {e}", self.name))?;
            return Ok(vec![rel]);
        }
        let pattern = Patterns::single(&rel.to_string_lossy());
        let mut all = Vec::new();
        self.walk(Path::new(""), ignore, &mut all)?;
        let hits: Vec<PathBuf> = all.into_iter().map(|e| e.rel).filter(|r| pattern.matches_exactly(r)).collect();
        if hits.is_empty() {
            bail!("{source}: no file in the {} matches", self.name);
        }
        Ok(hits)
    }

    /// A regular file's whole content, at most `max` bytes (the Dockerfile, `.dockerignore`).
    /// Symlinks resolve inside the tree, as BuildKit reads them from the context:
    /// `Dockerfile -> /etc/shadow` means the context's own `etc/shadow`. `Ok(None)` if absent.
    pub fn read_small(&self, rel: &Path, max: u64) -> anyhow::Result<Option<Vec<u8>>> {
        let what = format!("{}: {}", self.name, rel.display());
        // Non-blocking, so a FIFO cannot hang the build at open.
        let fd = match self.open_in(rel, OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return Ok(None),
            Err(e) => return Err(anyhow::Error::from(e).context(what)),
        };
        if kind(&rustix::fs::fstat(&fd).with_context(|| what.clone())?) != rustix::fs::FileType::RegularFile {
            bail!("{what}: not a regular file");
        }
        crate::bounded::read_capped(std::fs::File::from(fd), max, &what).map(Some)
    }

    /// Reads a regular file's content (for hashing and copying).
    pub fn open_file(&self, rel: &Path) -> anyhow::Result<std::fs::File> {
        let fd = self
            .open_in(rel, OFlags::RDONLY | OFlags::NOFOLLOW)
            .with_context(|| format!("{}: {}", self.name, rel.display()))?;
        Ok(std::fs::File::from(fd))
    }
}

/// Ownership and mode COPY gives what it writes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Attrs {
    pub uid: u32,
    pub gid: u32,
    /// `--chmod`: replaces every mode.
    pub mode: Option<u32>,
    /// Keep each entry's own owner (what ADD extracts from an archive), not `uid`/`gid`.
    pub keep_owner: bool,
}

impl Attrs {
    /// Every entry keeps its own owner and mode.
    pub fn kept() -> Attrs {
        Attrs { keep_owner: true, ..Attrs::default() }
    }

    /// Everything owned by `uid`:`gid`, modes kept.
    pub fn owned_by(uid: u32, gid: u32) -> Attrs {
        Attrs { uid, gid, ..Attrs::default() }
    }
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
    match layers_store::Compression::detect(&head[..got]) {
        Ok(layers_store::Compression::None) => got == 512 && &head[257..262] == b"ustar",
        Ok(_) => true,
        Err(_) => false,
    }
}

/// Extracts the archive `rel` of `tree` into the empty dir `into`, as safely as a layer
/// (no entry lands outside, limits on size and entries).
pub fn extract(tree: &Tree, rel: &Path, into: &Path, limits: &layers_store::Limits) -> anyhow::Result<()> {
    let file = tree.open_file(rel)?;
    let root = layers_store::root::Root::open(into).with_context(|| format!("open {}", into.display()))?;
    layers_store::unpack::unpack(std::io::BufReader::new(file), None, &root, limits, None)
        .with_context(|| format!("extract {}", rel.display()))?;
    Ok(())
}

/// One thing to copy: entries under a source, and where they go.
#[derive(Default)]
pub struct Plan {
    /// (source entry, destination path relative to the container root).
    pub items: Vec<(Entry, PathBuf)>,
    /// Targets that are a directory source's top, whose contents are copied into
    /// them: one that exists keeps its own mode and owner (BuildKit's rule).
    pub tops: Vec<PathBuf>,
}

/// Lays out COPY's sources under `dest` (absolute in the container), Docker's way: a
/// directory's contents go into `dest`; a file goes to `dest/NAME` when `dest` ends
/// in `/` (or there are several sources), else to `dest` itself.
pub fn plan(tree: &Tree, sources: &[PathBuf], dest: &str, ignore: &Patterns) -> anyhow::Result<Plan> {
    let dest_rel = clean_in_root(dest);
    let into_dir = dest.ends_with('/') || sources.len() > 1;
    let mut items = Vec::new();
    let mut tops = Vec::new();
    for src in sources {
        let mut entries = Vec::new();
        tree.walk(src, &Patterns::default(), &mut entries)?;
        let Some(top) = entries.first() else { continue };
        let is_dir = kind(&top.stat) == rustix::fs::FileType::Directory;
        for e in entries {
            let below = e.rel.strip_prefix(src).unwrap_or(Path::new("")).to_path_buf();
            // `.dockerignore` applies to what is inside a named directory too.
            if !below.as_os_str().is_empty() && ignore.matches(&e.rel) {
                continue;
            }
            if is_dir && below.as_os_str().is_empty() {
                tops.push(dest_rel.clone());
            }
            let target = if is_dir {
                dest_rel.join(&below)
            } else if into_dir {
                dest_rel.join(src.file_name().unwrap_or_default())
            } else {
                dest_rel.clone()
            };
            items.push((e, target));
        }
    }
    Ok(Plan { items, tops })
}

/// What COPY will write, digested: the whole, and each entry by its source path.
pub struct Content {
    pub digest: Digest,
    /// (source path, digest of that entry), in plan order.
    pub entries: Vec<(String, Digest)>,
}

/// A digest of what COPY will write: paths, types, modes, owners, sizes, contents,
/// link targets; not times (so a fresh checkout of the same files hits the cache).
/// With `known` (the build context's files, which keep their inodes between builds),
/// a file whose stamp is unchanged since it was last hashed is not read again.
pub fn content_digest(tree: &Tree, plan: &Plan, attrs: Attrs, known: Option<&Store>) -> anyhow::Result<Content> {
    // A file changed within this margin of being hashed could change again within the
    // same timestamp tick unseen (git's "racily clean"): hashed each time until older.
    const SETTLED_NS: i64 = 2_000_000_000;
    let now_ns = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64);
    let regular = |e: &Entry| e.link.is_none() && kind(&e.stat) == rustix::fs::FileType::RegularFile;
    let files: Vec<&Entry> = plan.items.iter().map(|(e, _)| e).filter(|e| regular(e)).collect();
    let stamps: Vec<FileStamp> = files.iter().map(|e| stamp(&e.stat)).collect();
    let mut hashes = match known {
        Some(store) => store.known_file_digests(&stamps)?,
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
        store.remember_file_digests(&learned)?;
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
            if kind(&e.stat) == rustix::fs::FileType::Directory { 0 } else { e.stat.st_size }
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
    Ok(Content { digest: h.finish(), entries })
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
            let h = if which.len() == 1 && size >= layers_store::content_hash::PARALLEL_MIN {
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

/// A directory in the destination root, created (0755, `attrs`' owner) where missing;
/// resolved inside the root (an image's symlinks are followed within it, as Docker does).
fn dest_dir(root: &OwnedFd, rel: &Path, attrs: Attrs) -> anyhow::Result<OwnedFd> {
    let mut cur = rustix::io::dup(root)?;
    let mut so_far = PathBuf::new();
    for c in rel.components() {
        let Component::Normal(name) = c else { continue };
        so_far.push(name);
        let open = || {
            openat2(
                root,
                &so_far,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                ResolveFlags::IN_ROOT,
            )
        };
        cur = match open() {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => {
                rustix::fs::mkdirat(&cur, name, Mode::from_raw_mode(0o755))?;
                rustix::fs::chownat(&cur, name, Some(uid(attrs.uid)), Some(gid(attrs.gid)), AtFlags::SYMLINK_NOFOLLOW)?;
                open()?
            }
            Err(e) => return Err(e).with_context(|| format!("destination /{}", so_far.display())),
        };
    }
    Ok(cur)
}

fn uid(u: u32) -> rustix::fs::Uid {
    rustix::fs::Uid::from_raw(u)
}

fn gid(g: u32) -> rustix::fs::Gid {
    rustix::fs::Gid::from_raw(g)
}

/// The destination root at `dest_root`, opened to resolve paths beneath it.
fn open_root(dest_root: &Path) -> anyhow::Result<OwnedFd> {
    rustix::fs::open(dest_root, OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
        .with_context(|| format!("open {}", dest_root.display()))
}

/// Makes directory `rel` (and missing parents, root-owned 0755) in the root at `dest_root`.
pub fn make_dir(dest_root: &Path, rel: &Path) -> anyhow::Result<()> {
    let root = open_root(dest_root)?;
    dest_dir(&root, rel, Attrs::default()).map(drop)
}

/// Whether `rel` is a directory in the destination root (resolved inside it).
fn dest_dir_exists(root: &OwnedFd, rel: &Path) -> bool {
    rel.as_os_str().is_empty()
        || openat2(root, rel, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty(), ResolveFlags::IN_ROOT)
            .is_ok()
}

/// Where COPY's destination `dest` really is in the root at `dest_root`: symlinks on
/// the way, the last component's too, followed inside the root (BuildKit resolves
/// the destination so: `COPY f /link` writes where `/link` points, a dangling
/// link included). At most 40 links, as the kernel allows.
pub fn resolve_dest(dest_root: &Path, dest: &Path) -> anyhow::Result<PathBuf> {
    resolve_in(&open_root(dest_root)?, dest)
}

/// `resolve_dest` in a root already open.
fn resolve_in(root: &OwnedFd, dest: &Path) -> anyhow::Result<PathBuf> {
    let mut pending: std::collections::VecDeque<std::ffi::OsString> =
        dest.components().map(|c| c.as_os_str().to_owned()).collect();
    let mut resolved = PathBuf::new();
    let mut links = 0;
    while let Some(c) = pending.pop_front() {
        match c.to_str() {
            Some("/") | Some(".") => continue,
            Some("..") => {
                resolved.pop();
                continue;
            }
            _ => {}
        }
        // The parent, reached with no symlink (every one so far was resolved here).
        let parent = openat2(
            root,
            if resolved.as_os_str().is_empty() { Path::new(".") } else { &resolved },
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_SYMLINKS,
        );
        let target = parent.ok().and_then(|p| rustix::fs::readlinkat(&p, c.as_os_str(), Vec::new()).ok());
        match target {
            Some(t) => {
                links += 1;
                if links > 40 {
                    bail!("destination {}: too many levels of symbolic links", dest.display());
                }
                let t = std::path::PathBuf::from(std::ffi::OsString::from_vec(t.into_bytes()));
                if t.is_absolute() {
                    resolved = PathBuf::new();
                }
                for (i, part) in t.components().map(|c| c.as_os_str().to_owned()).enumerate() {
                    pending.insert(i, part);
                }
            }
            None => resolved.push(&c),
        }
    }
    Ok(resolved)
}

/// `plan` with its destination where it really is in the root at `dest_root`, found
/// now that the root is there: `dest` resolved (`resolve_dest`), and a single file
/// copied onto an existing directory put inside it, as BuildKit does.
pub fn at_real_dest(plan: &Plan, dest_root: &Path, dest: &str) -> anyhow::Result<Plan> {
    let dest_rel = clean_in_root(dest);
    let root = open_root(dest_root)?;
    let real = resolve_in(&root, &dest_rel)?;
    if let [(e, target)] = plan.items.as_slice() {
        let file = kind(&e.stat) != rustix::fs::FileType::Directory;
        if file && *target == dest_rel && !real.as_os_str().is_empty() && dest_dir_exists(&root, &real) {
            let name = e.rel.file_name().context("a file source without a name")?;
            return Ok(Plan { items: vec![(e.clone(), real.join(name))], tops: Vec::new() });
        }
    }
    if real == dest_rel {
        return Ok(Plan { items: plan.items.clone(), tops: plan.tops.clone() });
    }
    let moved = |t: &PathBuf| t.strip_prefix(&dest_rel).map_or_else(|_| t.clone(), |rest| real.join(rest));
    Ok(Plan {
        items: plan.items.iter().map(|(e, t)| (e.clone(), moved(t))).collect(),
        tops: plan.tops.iter().map(moved).collect(),
    })
}

/// Copies `plan` from `tree` into the root at `dest_root`.
pub fn copy(tree: &Tree, plan: &Plan, dest_root: &Path, attrs: Attrs) -> anyhow::Result<()> {
    use rustix::fs::FileType as T;
    let root = open_root(dest_root)?;
    for (e, target) in &plan.items {
        let mode = Mode::from_raw_mode(attrs.mode.unwrap_or(e.stat.st_mode & 0o7777));
        let what = || format!("copy {} to /{}", e.rel.display(), target.display());
        let (owner_uid, owner_gid) =
            if attrs.keep_owner { (e.stat.st_uid, e.stat.st_gid) } else { (attrs.uid, attrs.gid) };
        let (file_uid, file_gid) = (uid(owner_uid), gid(owner_gid));
        if kind(&e.stat) == T::Directory {
            let existed = plan.tops.contains(target) && dest_dir_exists(&root, target);
            let dir = dest_dir(&root, target, attrs).with_context(what)?;
            if existed {
                continue;
            }
            rustix::fs::fchmod(&dir, mode).with_context(what)?;
            rustix::fs::fchown(&dir, Some(file_uid), Some(file_gid)).with_context(what)?;
            continue;
        }
        let (parent, name) = match (target.parent(), target.file_name()) {
            (Some(p), Some(n)) => (p, n),
            _ => bail!("{}: cannot replace the root", what()),
        };
        let dir = dest_dir(&root, parent, attrs).with_context(what)?;
        // Whatever is there (not a directory) is replaced, never written through.
        match rustix::fs::unlinkat(&dir, name, AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => {}
            Err(e) => return Err(e).with_context(what),
        }
        match kind(&e.stat) {
            T::Symlink => {
                let link = e.link.clone().unwrap_or_default();
                rustix::fs::symlinkat(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&link), &dir, name)
                    .with_context(what)?;
                rustix::fs::chownat(&dir, name, Some(file_uid), Some(file_gid), AtFlags::SYMLINK_NOFOLLOW)
                    .with_context(what)?;
                continue;
            }
            T::RegularFile => {
                let fd = rustix::fs::openat(
                    &dir,
                    name,
                    OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    mode,
                )
                .with_context(what)?;
                let out = std::fs::File::from(fd);
                // Holes stay holes: a 4 GiB sparse file is not written out as zeros.
                let src = tree.open_file(&e.rel)?;
                let size = src.metadata().with_context(what)?.len();
                layers_store::sparse::copy_keeping_holes(&src, &out, size).with_context(what)?;
                rustix::fs::fchown(&out, Some(file_uid), Some(file_gid)).with_context(what)?;
                rustix::fs::fchmod(&out, mode).with_context(what)?;
                let t = rustix::fs::Timestamps { last_access: e.stat_time(), last_modification: e.stat_time() };
                rustix::fs::futimens(&out, &t).with_context(what)?;
            }
            // A named pipe is made anew, as Docker's copies make one (a volume filled
            // from an image directory holding one, `cp` of a directory with one).
            T::Fifo => {
                rustix::fs::mknodat(&dir, name, T::Fifo, mode, 0).with_context(what)?;
                rustix::fs::chownat(&dir, name, Some(file_uid), Some(file_gid), AtFlags::SYMLINK_NOFOLLOW)
                    .with_context(what)?;
            }
            other => bail!("{}: a {other:?} cannot be copied", what()),
        }
    }
    Ok(())
}

impl Entry {
    fn stat_time(&self) -> rustix::fs::Timespec {
        rustix::fs::Timespec { tv_sec: self.stat.st_mtime as _, tv_nsec: self.stat.st_mtime_nsec as _ }
    }
}
