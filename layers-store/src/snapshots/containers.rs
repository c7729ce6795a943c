//! Containers: a writable upper dir stacked on an image's layers, after
//! containerd's snapshotter (prepare an active snapshot, view a chain read-only,
//! commit an active one into a layer, remove). The store describes mounts
//! ([`MountSpec`]); [`crate::snapshots::mount`] makes them.
//!
//! ```text
//! containers/<id>/upper    the container's changes (overlay upper dir)
//!                 work     overlay's work dir
//!                 merged   where a host-visible mount goes
//! ```
//! A container holds a lease on its image, so neither `rmi` nor `gc` takes its layers.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rusqlite::{params, OptionalExtension};

use crate::content::digest::{DiffId, Digest};
use crate::error::{Error, ErrorKind, Result};
use crate::meta::now;
use crate::snapshots::mount::{self, MountSpec, MAX_LAYERS};
use crate::store::{remove_tree, Store};

/// The table containers live in (format 2, registered in `meta`): a writable upper dir
/// on an image each. `committing` names the layer a commit is moving the upper dir
/// into, until that commit is recorded.
pub(crate) const TABLES: &str = r#"
CREATE TABLE IF NOT EXISTS containers (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    manifest_digest TEXT NOT NULL REFERENCES images(manifest_digest),
    created         INTEGER NOT NULL,
    committing      TEXT
);
"#;

/// Marks a container removed by the next sweep: one whose creator ends it (a build
/// step, `run --rm`) and which outlives that creator only if it was killed.
const EPHEMERAL: &str = "ephemeral";

/// A read-only view of an image, mounted; unmounted when dropped.
pub struct MountedView(PathBuf);

impl MountedView {
    /// Where the view is mounted.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for MountedView {
    fn drop(&mut self) {
        let _ = crate::snapshots::mount::unmount_path(&self.0, true);
    }
}

/// How long a container is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// Until it is removed (`layers rm`).
    Kept,
    /// Until its creator removes it, or, should the creator die, the next sweep.
    Ephemeral,
}

/// One container, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRow {
    /// 64 hex digits.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// The image it was created from (or last committed to).
    pub image: Digest,
    /// Unix seconds.
    pub created: i64,
    /// A layer an interrupted commit was moving the upper dir into.
    pub committing: Option<DiffId>,
}

impl ContainerRow {
    /// The first 12 hex digits, as Docker shows IDs.
    pub fn short_id(&self) -> &str {
        &self.id[..12]
    }

    pub(crate) fn lease(&self) -> String {
        format!("container {}", self.name)
    }
}

fn container_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ContainerRow> {
    let image: String = r.get(2)?;
    let committing: Option<String> = r.get(4)?;
    let bad = |e: Error| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e));
    Ok(ContainerRow {
        id: r.get(0)?,
        name: r.get(1)?,
        image: Digest::parse(&image).map_err(bad)?,
        created: r.get(3)?,
        committing: committing.map(|c| DiffId::parse(&c)).transpose().map_err(bad)?,
    })
}

const COLUMNS: &str = "id, name, manifest_digest, created, committing";

/// Names Docker and Podman accept: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        && name.len() <= 128
}

/// Containers as snapshots: upper dirs on images' layers (a facet of [`Store`]).
pub struct Snapshots<'a> {
    pub(crate) store: &'a Store,
}

impl Store {
    /// Containers: prepare, mount, view, commit, remove.
    pub fn snapshots(&self) -> Snapshots<'_> {
        Snapshots { store: self }
    }

    /// Removes the ephemeral containers whose creator has ended without removing them
    /// (a `run --rm` or build killed): their creator lock is free.
    pub(crate) fn remove_abandoned_containers(&self) -> Result<()> {
        for c in self.snapshots().list()? {
            let marker = self.snapshots().dir(&c.id).join(EPHEMERAL);
            let Ok(f) = fs::File::open(&marker) else { continue };
            // Held by its creator, or by another process removing it right now.
            if f.try_lock().is_err() {
                continue;
            }
            let merged = self.snapshots().merged_dir(&c);
            if crate::snapshots::mount::is_mountpoint(&merged) {
                crate::snapshots::mount::unmount_path(&merged, true)?;
            }
            self.snapshots().remove(&c)?;
        }
        Ok(())
    }

    /// Crash recovery, under the exclusive store lock: container dirs without a row
    /// go, and an interrupted commit's upper dir moves back from the layer it was
    /// becoming (whose row is still pending) to its container.
    pub(crate) fn sweep_containers(&self) -> Result<()> {
        self.remove_abandoned_containers()?;
        let containers = self.snapshots().list()?;
        for c in containers.iter().filter(|c| c.committing.is_some()) {
            let layer = c.committing.map(|d| self.layers().path(&d)).unwrap_or_default();
            let upper = self.snapshots().dir(&c.id).join("upper");
            let pending = c.committing.map(|d| self.md().layer(&d)).transpose()?.flatten().is_none();
            if pending && !upper.exists() && layer.exists() {
                fs::rename(&layer, &upper).map_err(|e| Error::io("recover container", &c.name, e))?;
            }
            self.snapshots().set_committing(c, None)?;
        }
        let dir = self.root().join("containers");
        let Ok(entries) = fs::read_dir(&dir) else { return Ok(()) };
        let known: std::collections::HashSet<String> = containers.into_iter().map(|c| c.id).collect();
        for e in entries.flatten() {
            if !known.contains(e.file_name().to_string_lossy().as_ref()) {
                remove_tree(&e.path()).map_err(|err| Error::io("sweep", e.path().display(), err))?;
            }
        }
        Ok(())
    }
}

impl Snapshots<'_> {
    /// Path of a container's directory.
    pub fn dir(&self, id: &str) -> PathBuf {
        self.store.root().join("containers").join(id)
    }

    /// Where a container's host-visible mount goes.
    pub fn merged_dir(&self, c: &ContainerRow) -> PathBuf {
        self.dir(&c.id).join("merged")
    }

    /// Creates a container on `image`: empty upper and work dirs, a lease on the image.
    /// Without a name, `NAME-working-container[-N]` after the image's name, as buildah does.
    pub fn create(
        &self,
        image: &Digest,
        name: Option<&str>,
        base_name: &str,
        lifetime: Lifetime,
    ) -> Result<ContainerRow> {
        self.store.images().require_local(image)?;
        let layers = self.store.images().layers(image)?;
        if layers.len() > MAX_LAYERS {
            return Err(Error::new(
                ErrorKind::TooManyLayers,
                "create container",
                image,
                format!("the image has {} layers, over overlayfs's limit of {MAX_LAYERS}", layers.len()),
            ));
        }
        let name = match name {
            Some(n) if !valid_name(n) => {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    "create container",
                    n,
                    "invalid name: use letters, digits and _.- (starting with a letter or digit)",
                ))
            }
            Some(n) => n.to_string(),
            None => self.free_name(base_name)?,
        };
        let id = random_id("create container")?;

        // Made under tmp/ and renamed into place: a crash leaves tmp garbage or an
        // orphan dir the next sweep removes, never a row without its dirs.
        // The container's own dir is 0700 as well as `containers/`; upper and merged
        // are the root of its filesystem and keep a root filesystem's 0755.
        let staged = self.store.root().join("tmp").join(format!("container-{id}"));
        crate::store::private_dir("create container", &staged)?;
        for d in ["upper", "work", "merged"] {
            let p = staged.join(d);
            fs::create_dir(&p).map_err(|e| Error::io("create container", p.display(), e))?;
        }
        // Locked before it is visible: from then on, a free lock means its creator is gone.
        let creator = if lifetime == Lifetime::Ephemeral {
            let p = staged.join(EPHEMERAL);
            let f = fs::File::create(&p).map_err(|e| Error::io("create container", p.display(), e))?;
            f.try_lock().map_err(|e| Error::io("create container", p.display(), io::Error::other(e.to_string())))?;
            Some(f)
        } else {
            None
        };
        let dir = self.dir(&id);
        fs::rename(&staged, &dir).map_err(|e| Error::io("create container", dir.display(), e))?;
        if let Some(f) = creator {
            self.store.ephemeral.lock().unwrap_or_else(|p| p.into_inner()).push((id.clone(), f));
        }
        let row = ContainerRow { id, name, image: *image, created: now(), committing: None };
        let inserted = self.store.md().write("create container", |tx| {
            let taken: bool = tx
                .query_row("SELECT 1 FROM containers WHERE name = ?", [&row.name], |_| Ok(true))
                .optional()?
                .unwrap_or(false);
            if taken {
                return Ok(false);
            }
            tx.execute(
                &format!("INSERT INTO containers ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, NULL)"),
                params![row.id, row.name, row.image.to_string(), row.created],
            )?;
            crate::images::catalog::add_lease_tx(tx, &row.lease(), &row.image, row.created)?;
            // A container made from an image (run, create, a build step) is a use of it.
            crate::images::catalog::touch_tx(tx, &row.image)?;
            Ok(true)
        });
        match inserted {
            Ok(true) => Ok(row),
            Ok(false) => {
                let _ = self.store.discard(&dir);
                Err(Error::new(ErrorKind::AlreadyExists, "create container", &row.name, "the name is already in use"))
            }
            Err(e) => {
                let _ = self.store.discard(&dir);
                Err(e)
            }
        }
    }

    fn free_name(&self, base: &str) -> Result<String> {
        let base: String = base
            .rsplit('/')
            .next()
            .unwrap_or(base)
            .split([':', '@'])
            .next()
            .unwrap_or("")
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || "_.-".contains(*c))
            .collect();
        let base = if base.is_empty() || !valid_name(&base) { "scratch".to_string() } else { base };
        let taken: Vec<String> = self.list()?.into_iter().map(|c| c.name).collect();
        let first = format!("{base}-working-container");
        if !taken.contains(&first) {
            return Ok(first);
        }
        Ok((1..).map(|n| format!("{first}-{n}")).find(|n| !taken.contains(n)).unwrap_or(first))
    }

    /// Every container, oldest first.
    pub fn list(&self) -> Result<Vec<ContainerRow>> {
        let md = self.store.md();
        let mut st = md
            .conn()
            .prepare(&format!("SELECT {COLUMNS} FROM containers ORDER BY created, name"))
            .map_err(|e| Error::sql("list containers", "metadata database", e))?;
        let rows =
            st.query_map([], container_row).map_err(|e| Error::sql("list containers", "metadata database", e))?;
        rows.collect::<rusqlite::Result<_>>().map_err(|e| Error::sql("list containers", "metadata database", e))
    }

    /// A container by name, full ID or unique ID prefix.
    pub fn resolve(&self, name: &str) -> Result<ContainerRow> {
        let all = self.list()?;
        if let Some(c) = all.iter().find(|c| c.name == name || c.id == name) {
            return Ok(c.clone());
        }
        let hex = name.len() >= 3 && name.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase());
        let found: Vec<&ContainerRow> = all.iter().filter(|c| hex && c.id.starts_with(name)).collect();
        match found.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(Error::new(ErrorKind::NotFound, "find container", name, "no such container")),
            _ => Err(Error::new(ErrorKind::InvalidInput, "find container", name, "ambiguous ID prefix")),
        }
    }

    /// The mount of a container: its image's layers under its upper dir.
    pub fn mount_spec(&self, c: &ContainerRow) -> Result<MountSpec> {
        if let Some(d) = c.committing {
            return Err(Error::new(
                ErrorKind::Interrupted,
                "mount container",
                &c.name,
                format!("a commit into layer {d} was interrupted"),
            ));
        }
        let dir = self.dir(&c.id);
        let (upper, work) = (dir.join("upper"), dir.join("work"));
        // A crash right after a commit may leave the (new, empty) upper dir to be made.
        for d in [&upper, &work] {
            fs::create_dir_all(d).map_err(|e| Error::io("mount container", d.display(), e))?;
        }
        Ok(MountSpec { lowers: self.lower_dirs(&c.image)?, upper: Some((upper, work)) })
    }

    /// A read-only view of a container: its upper dir as the top layer.
    pub fn view(&self, c: &ContainerRow) -> Result<MountSpec> {
        Ok(self.mount_spec(c)?.view())
    }

    /// A read-only view of an image.
    pub fn image_view(&self, image: &Digest) -> Result<MountSpec> {
        Ok(MountSpec { lowers: self.lower_dirs(image)?, upper: None })
    }

    /// `image` mounted read-only at `at` (a dir made now, in a scratch dir of the
    /// caller's), unmounted when the view is dropped.
    pub fn mount_view(&self, image: &Digest, at: PathBuf) -> Result<MountedView> {
        fs::create_dir(&at).map_err(|e| Error::io("mount view", at.display(), e))?;
        crate::snapshots::mount::mount_spec(
            &self.image_view(image)?,
            &at,
            crate::snapshots::mount::MountOptions::default(),
        )?;
        Ok(MountedView(at))
    }

    /// An image's layer dirs, top first; a layer repeated higher up is kept only there
    /// (its second application covers everything the first did).
    pub fn lower_dirs(&self, image: &Digest) -> Result<Vec<PathBuf>> {
        self.store.images().require_local(image)?;
        let layers = self.store.images().layers(image)?;
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for l in layers.iter().rev() {
            if seen.insert(l.diff_id) {
                out.push(self.store.layers().path(&l.diff_id));
            }
        }
        Ok(out)
    }

    /// Whether a container's merged dir is mounted on the host.
    pub fn is_mounted(&self, c: &ContainerRow) -> bool {
        mount::is_mountpoint(&self.merged_dir(c))
    }

    /// Gives a container another name (unique, Docker's characters).
    pub fn rename(&self, c: &ContainerRow, name: &str) -> Result<()> {
        if !valid_name(name) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "rename container",
                name,
                "invalid name: letters, digits and _.- only, starting with a letter or digit",
            ));
        }
        let renamed = self.store.md().write("rename container", |tx| {
            let taken = tx
                .query_row("SELECT 1 FROM containers WHERE name = ?1 AND id != ?2", params![name, c.id], |_| Ok(true))
                .optional()?
                .unwrap_or(false);
            if taken {
                return Ok(false);
            }
            tx.execute("UPDATE containers SET name = ?1 WHERE id = ?2", params![name, c.id])?;
            Ok(true)
        })?;
        if !renamed {
            return Err(Error::new(ErrorKind::AlreadyExists, "rename container", name, "the name is already in use"));
        }
        Ok(())
    }

    /// Removes a container: its dirs, its row, its lease. Refuses while it is mounted.
    pub fn remove(&self, c: &ContainerRow) -> Result<()> {
        if self.is_mounted(c) {
            return Err(Error::new(
                ErrorKind::InUse,
                "remove container",
                &c.name,
                format!("mounted at {} (unmount it first, or use -f)", self.merged_dir(c).display()),
            ));
        }
        self.store.md().write("remove container", |tx| {
            tx.execute("DELETE FROM containers WHERE id = ?", [&c.id])?;
            crate::images::catalog::drop_lease_tx(tx, &c.lease())?;
            Ok(())
        })?;
        self.store.discard(&self.dir(&c.id))
    }

    /// Bytes in a container's upper dir.
    pub fn upper_size(&self, c: &ContainerRow) -> u64 {
        crate::gc::maintenance::disk_usage(&self.dir(&c.id).join("upper"))
    }

    /// The lock by which this handle shows it will remove ephemeral container `c`, to
    /// hand to the process that takes that over (a detached container's monitor): a
    /// descriptor of the same open file, so the lock holds while either has it.
    pub fn creator_lock(&self, c: &ContainerRow) -> Option<std::os::fd::OwnedFd> {
        let held = self.store.ephemeral.lock().unwrap_or_else(|p| p.into_inner());
        let (_, f) = held.iter().find(|(id, _)| *id == c.id)?;
        f.try_clone().ok().map(std::os::fd::OwnedFd::from)
    }

    /// Holds `lock` (another process's [`Store::creator_lock`] of `c`) while this handle lives.
    pub fn hold_creator_lock(&self, c: &ContainerRow, lock: std::os::fd::OwnedFd) {
        let f = fs::File::from(lock);
        self.store.ephemeral.lock().unwrap_or_else(|p| p.into_inner()).push((c.id.clone(), f));
    }
}

/// 32 random bytes as 64 hex digits: a container's ID, an anonymous volume's name.
pub(crate) fn random_id(op: &'static str) -> Result<String> {
    let mut raw = [0u8; 32];
    rustix::rand::getrandom(&mut raw, rustix::rand::GetRandomFlags::empty())
        .map_err(|e| Error::errno(op, "random id", e))?;
    Ok(raw.iter().map(|b| format!("{b:02x}")).collect())
}

/// In `tx`: whether a container is based on image `manifest`.
pub(crate) fn based_on_tx(tx: &rusqlite::Transaction, manifest: &str) -> rusqlite::Result<bool> {
    tx.prepare("SELECT 1 FROM containers WHERE manifest_digest = ?1")?.exists([manifest])
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_follow_dockers_rule() {
        for ok in ["a", "web-1", "x_y.z", "A9"] {
            assert!(super::valid_name(ok), "{ok}");
        }
        for bad in ["", "-a", ".a", "a/b", "a b", "ä"] {
            assert!(!super::valid_name(bad), "{bad}");
        }
    }
}
