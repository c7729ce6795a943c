//! Named volumes, a facet of the store (`store.volumes()`): directories kept apart
//! from any container (`volumes/<name>/_data`, as Docker lays them out, beneath the
//! store's 0700 root), recorded with their labels and the containers that mount them.
//! This module owns the `volumes` and `volume_users` tables: their schema and every
//! statement on them.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use rusqlite::{params, OptionalExtension};

use crate::error::{Error, ErrorKind, Result};
use crate::meta::now;
use crate::snapshots::containers::ContainerRow;
use crate::store::Store;

/// One volume.
#[derive(Debug, Clone)]
pub struct VolumeRow {
    /// Its name (64 hex digits for an anonymous one).
    pub name: String,
    /// Unix seconds.
    pub created: i64,
    /// `--label`s given when it was made.
    pub labels: BTreeMap<String, String>,
    /// Made without a name (`volume create` alone): what `volume prune` takes by default.
    pub anonymous: bool,
}

/// Docker's rule for volume names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn valid_volume_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() >= 2
        && name.len() <= 255
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// The tables this module owns, created (idempotently) when a store is opened by a
/// release whose format is newer than the store's (registered in `meta`).
pub(crate) const TABLES: &str = r#"
CREATE TABLE IF NOT EXISTS volumes (
    name      TEXT PRIMARY KEY,
    created   INTEGER NOT NULL,
    labels    TEXT NOT NULL DEFAULT '{}',
    anonymous INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS volume_users (
    container_id TEXT NOT NULL REFERENCES containers(id) ON DELETE CASCADE,
    name         TEXT NOT NULL REFERENCES volumes(name),
    PRIMARY KEY (container_id, name)
);
CREATE INDEX IF NOT EXISTS volume_users_name ON volume_users(name);
"#;

/// The store's named volumes.
pub struct Volumes<'a> {
    store: &'a Store,
}

impl Store {
    /// Named volumes.
    pub fn volumes(&self) -> Volumes<'_> {
        Volumes { store: self }
    }

    /// Crash recovery, under the exclusive store lock: a volume dir without a row (made
    /// and then the process died before recording it, or removed from the metadata and
    /// then died before its dir went) is discarded.
    pub(crate) fn sweep_volumes(&self) -> Result<()> {
        let dir = self.root().join("volumes");
        let Ok(entries) = fs::read_dir(&dir) else { return Ok(()) };
        let known: std::collections::HashSet<String> = self.volumes().list()?.into_iter().map(|v| v.name).collect();
        for e in entries.flatten() {
            if !known.contains(e.file_name().to_string_lossy().as_ref()) {
                self.discard(&e.path())?;
            }
        }
        Ok(())
    }
}

impl Volumes<'_> {
    /// The directory a volume's content lives in.
    pub fn path(&self, name: &str) -> PathBuf {
        self.store.root().join("volumes").join(name).join("_data")
    }

    /// Bytes in a volume.
    pub fn size(&self, name: &str) -> u64 {
        crate::gc::maintenance::disk_usage(&self.path(name))
    }

    /// Makes the volume `name` (`None`: an anonymous one, named by 32 random bytes),
    /// or returns it if it exists; `true` with it when it was made now.
    pub fn create(&self, name: Option<&str>, labels: &BTreeMap<String, String>) -> Result<(VolumeRow, bool)> {
        let name = match name {
            Some(n) if !valid_volume_name(n) => {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    "create volume",
                    n,
                    "invalid name: letters, digits and _.- only, at least 2, starting with a letter or digit",
                ))
            }
            Some(n) => n.to_string(),
            None => crate::snapshots::containers::random_id("create volume")?,
        };
        if let Some(v) = self.get(&name)? {
            return Ok((v, false));
        }
        // The dir first (under tmp/, renamed into place), then the row: a crash leaves
        // a dir no row names (which the next sweep removes), never a row without its dir.
        let staged = self.store.scratch_dir("volume")?;
        let data = staged.join("_data");
        fs::create_dir(&data).map_err(|e| Error::io("create volume", data.display(), e))?;
        let dir = self.store.root().join("volumes").join(&name);
        match fs::rename(&staged, &dir) {
            Ok(()) => {}
            // Made meanwhile by another process: theirs stands.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists || e.raw_os_error() == Some(39) => {
                let _ = fs::remove_dir_all(&staged);
            }
            Err(e) => return Err(Error::io("create volume", dir.display(), e)),
        }
        let row = VolumeRow { name: name.clone(), created: now(), labels: labels.clone(), anonymous: name.len() == 64 };
        let labels_json = serde_json::to_string(labels).unwrap_or_else(|_| "{}".into());
        let made = self.store.md().write("create volume", |tx| {
            tx.execute(
                "INSERT OR IGNORE INTO volumes (name, created, labels, anonymous) VALUES (?1, ?2, ?3, ?4)",
                params![row.name, row.created, labels_json, row.anonymous],
            )
        })?;
        Ok((row, made == 1))
    }

    /// The volume `name`, if there is one.
    pub fn get(&self, name: &str) -> Result<Option<VolumeRow>> {
        let md = self.store.md();
        md.conn()
            .query_row("SELECT name, created, labels, anonymous FROM volumes WHERE name = ?", [name], volume_row)
            .optional()
            .map_err(|e| Error::sql("read volume", name, e))
    }

    /// Every volume, by name.
    pub fn list(&self) -> Result<Vec<VolumeRow>> {
        let md = self.store.md();
        let mut stmt = md
            .conn()
            .prepare("SELECT name, created, labels, anonymous FROM volumes ORDER BY name")
            .map_err(|e| Error::sql("list volumes", "volumes", e))?;
        let rows = stmt.query_map([], volume_row).map_err(|e| Error::sql("list volumes", "volumes", e))?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(|e| Error::sql("list volumes", "volumes", e))
    }

    /// The containers (IDs) that mount volume `name`.
    pub fn users(&self, name: &str) -> Result<Vec<String>> {
        let md = self.store.md();
        let mut stmt = md
            .conn()
            .prepare("SELECT container_id FROM volume_users WHERE name = ? ORDER BY container_id")
            .map_err(|e| Error::sql("read volume", name, e))?;
        let rows = stmt.query_map([name], |r| r.get(0)).map_err(|e| Error::sql("read volume", name, e))?;
        rows.collect::<rusqlite::Result<Vec<String>>>().map_err(|e| Error::sql("read volume", name, e))
    }

    /// Records that container `c` mounts volume `name` (which exists).
    pub fn attach(&self, c: &ContainerRow, name: &str) -> Result<()> {
        self.store.md().write("attach volume", |tx| {
            tx.execute("INSERT OR IGNORE INTO volume_users (container_id, name) VALUES (?1, ?2)", params![c.id, name])
                .map(|_| ())
        })
    }

    /// Removes volume `name` and its content; refused while a container mounts it.
    pub fn remove(&self, name: &str) -> Result<()> {
        let removed = self.store.md().write("remove volume", |tx| {
            let mut st = tx.prepare("SELECT container_id FROM volume_users WHERE name = ? ORDER BY container_id")?;
            let users: Vec<String> = st.query_map([name], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
            if !users.is_empty() {
                return Ok(Err(users));
            }
            Ok(Ok(tx.execute("DELETE FROM volumes WHERE name = ?", [name])?))
        })?;
        match removed {
            Err(ids) => {
                // Named as Docker names them, by container (here with its name too).
                let all = self.store.snapshots().list()?;
                let named: Vec<String> = ids
                    .iter()
                    .map(|id| {
                        let short = &id[..id.len().min(12)];
                        match all.iter().find(|c| c.id == *id) {
                            Some(c) => format!("{} ({short})", c.name),
                            None => short.to_string(),
                        }
                    })
                    .collect();
                Err(Error::new(
                    ErrorKind::InUse,
                    "remove volume",
                    name,
                    format!("volume is in use by container {} (remove it first)", named.join(", ")),
                ))
            }
            Ok(0) => Err(Error::new(ErrorKind::NotFound, "remove volume", name, "no such volume")),
            Ok(_) => self.store.discard(&self.store.root().join("volumes").join(name)),
        }
    }
}

fn volume_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<VolumeRow> {
    let labels: String = r.get(2)?;
    Ok(VolumeRow {
        name: r.get(0)?,
        created: r.get(1)?,
        labels: serde_json::from_str(&labels).unwrap_or_default(),
        anonymous: r.get(3)?,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_follow_dockers_rule() {
        for ok in ["ab", "data", "web-1.cache_2", "0x"] {
            assert!(super::valid_volume_name(ok), "{ok}");
        }
        for bad in ["a", "", "-a", ".a", "a/b", "a b", "../x", "ä1"] {
            assert!(!super::valid_volume_name(bad), "{bad}");
        }
    }
}
