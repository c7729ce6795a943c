//! The metadata database (SQLite, WAL). Every state change is one `BEGIN IMMEDIATE`
//! transaction; rows in state `pending` name content being moved into place and are
//! swept on the next exclusive open, rows in state `ready` are the only ones trusted.

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use crate::content::digest::{DiffId, Digest};
use crate::error::{Error, ErrorKind, Result};

/// The on-disk format this code reads and writes.
pub const FORMAT_VERSION: i64 = 12;

/// Settings of the store as a whole: `encoding`, how overlay state is written in its
/// layer dirs (`encoding.rs`). A store made before it was recorded is a root store.
const SETTINGS: &str = r#"
CREATE TABLE IF NOT EXISTS settings (
  name  TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
INSERT OR IGNORE INTO settings (name, value) VALUES ('encoding', 'trusted');
"#;

/// One module's part of the schema: statements that create or upgrade its tables,
/// idempotent, run when a store's format is older than this release's.
enum Tables {
    Sql(&'static str),
    /// An upgrade that must look at the database first.
    Upgrade(fn(&Transaction) -> rusqlite::Result<()>),
}

/// Every module's tables, in the order they are made: a table before those that
/// refer to it or are seeded from it. Each module owns its tables' statements.
const SCHEMA: &[(&str, Tables)] = &[
    ("content", Tables::Sql(crate::store::ingest::TABLES)),
    ("images", Tables::Sql(crate::images::catalog::TABLES)),
    ("layers", Tables::Sql(crate::layer::TABLES)),
    ("snapshots", Tables::Sql(crate::snapshots::containers::TABLES)),
    ("build cache", Tables::Sql(crate::build_cache::TABLES)),
    ("images: use and pins", Tables::Upgrade(crate::images::catalog::add_use_and_pins)),
    ("volumes", Tables::Sql(crate::volumes::TABLES)),
    ("settings", Tables::Sql(SETTINGS)),
];

/// An open metadata database.
pub struct Metadata {
    conn: Connection,
}

/// One stored image, as listed.
#[derive(Debug, Clone)]
pub struct ImageRow {
    /// Digest of the manifest (the image's identity in a registry).
    pub manifest: Digest,
    /// Digest of the config (the image ID, as Docker shows it).
    pub config: Digest,
    /// Manifest media type.
    pub media_type: String,
    /// Uncompressed size of all layers.
    pub size: u64,
    /// Creation time from the config, RFC 3339.
    pub created: String,
    /// Full names that point at it.
    pub tags: Vec<String>,
}

/// One layer of an image, in order.
#[derive(Debug, Clone)]
pub struct ImageLayerRow {
    /// The uncompressed identity; names the layer dir.
    pub diff_id: DiffId,
    /// The blob this image's manifest names.
    pub blob: Digest,
    /// Media type of that blob.
    pub media_type: String,
    /// Size of that blob.
    pub size: u64,
}

/// One stored layer.
#[derive(Debug, Clone)]
pub struct LayerRow {
    /// The uncompressed identity.
    pub diff_id: DiffId,
    /// The blob it was first unpacked from.
    pub blob: Digest,
    /// Size of that blob.
    pub compressed_size: u64,
    /// Size of the tar.
    pub uncompressed_size: u64,
    /// Tar entries.
    pub file_count: u64,
}

fn db_err(op: &'static str) -> impl Fn(rusqlite::Error) -> Error {
    move |e| Error::sql(op, "metadata database", e)
}

/// Seconds since the epoch: the one clock rows and state files are stamped with.
pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Nanoseconds since the epoch: an image's last use (a pull and a run in one second stay ordered).
pub(crate) fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

fn digest_col(s: String) -> rusqlite::Result<Digest> {
    Digest::parse(&s)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e)))
}

impl Metadata {
    /// Opens (creating if needed) the database and checks its format version.
    pub fn open(path: &Path) -> Result<Metadata> {
        let conn = Connection::open(path).map_err(|e| Error::sql("open", path.display(), e))?;
        conn.busy_timeout(Duration::from_secs(30)).map_err(db_err("open"))?;
        // Switching a new database to WAL takes an exclusive lock that the busy handler does
        // not wait for: processes opening a fresh store together retry here instead.
        let started = std::time::Instant::now();
        loop {
            match conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get::<_, String>(0)) {
                Ok(_) => break,
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::DatabaseBusy && started.elapsed() < Duration::from_secs(30) =>
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(Error::sql("open", path.display(), e)),
            }
        }
        conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;").map_err(db_err("open"))?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(db_err("open"))?;
        if version > FORMAT_VERSION {
            return Err(Error::new(
                ErrorKind::Corrupt,
                "open store",
                path.display(),
                format!("store format {version} is newer than this layers supports ({FORMAT_VERSION})"),
            ));
        }
        let mut md = Metadata { conn };
        if version < FORMAT_VERSION {
            md.write("create schema", |tx| {
                for (_, tables) in SCHEMA {
                    match tables {
                        Tables::Sql(sql) => tx.execute_batch(sql)?,
                        Tables::Upgrade(f) => f(tx)?,
                    }
                }
                tx.execute_batch(&format!("PRAGMA user_version = {FORMAT_VERSION}"))
            })?;
        }
        Ok(md)
    }

    /// How overlay state is written in this store's layer dirs, as recorded in it.
    pub fn encoding(&self) -> Result<crate::layer::encoding::Encoding> {
        let name: String = self
            .conn
            .query_row("SELECT value FROM settings WHERE name = 'encoding'", [], |r| r.get(0))
            .map_err(db_err("read the store's encoding"))?;
        crate::layer::encoding::Encoding::parse(&name).ok_or_else(|| {
            Error::new(ErrorKind::Corrupt, "open store", "settings", format!("unknown store encoding {name:?}"))
        })
    }

    /// The connection, for reads the modules that own a table make themselves.
    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Runs `f` in one immediate (write-locking) transaction.
    pub fn write<T>(&mut self, op: &'static str, f: impl FnOnce(&Transaction) -> rusqlite::Result<T>) -> Result<T> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db_err(op))?;
        let out = f(&tx).map_err(db_err(op))?;
        tx.commit().map_err(db_err(op))?;
        Ok(out)
    }

    /// Whether `blob` is known to decompress to `diff_id`, both stored and ready.
    pub fn layer_blob_known(&self, blob: &Digest, diff_id: &DiffId) -> Result<bool> {
        layer_blob_known(&self.conn, blob, diff_id).map_err(|e| Error::sql("look up layer blob", blob, e))
    }

    /// A layer's tree as recorded when it was made: `None` if none was (made before
    /// format 5), `Some(Err(digest))` if the record does not match its digest.
    pub fn layer_tree(
        &self,
        diff_id: &DiffId,
    ) -> Result<Option<std::result::Result<crate::layer::listing::Listing, String>>> {
        let row: Option<(String, Vec<u8>)> = self
            .conn
            .query_row("SELECT digest, listing FROM layer_trees WHERE diff_id = ?", [diff_id.to_string()], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
            .map_err(|e| Error::sql("read layer tree", diff_id, e))?;
        Ok(row.map(|(digest, packed)| {
            Digest::parse(&digest).ok().and_then(|d| crate::layer::listing::Listing::unpacked(d, &packed)).ok_or(digest)
        }))
    }

    /// Every (blob, diffID) pair recorded as belonging together.
    pub fn layer_blobs(&self) -> Result<Vec<(Digest, DiffId)>> {
        let err = |e| Error::sql("list layer blobs", "layer_blobs", e);
        let mut stmt =
            self.conn.prepare("SELECT blob_digest, diff_id FROM layer_blobs ORDER BY blob_digest").map_err(err)?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))).map_err(err)?;
        let mut out = Vec::new();
        for row in rows {
            let (b, d) = row.map_err(err)?;
            out.push((Digest::parse(&b)?, DiffId::parse(&d)?));
        }
        Ok(out)
    }

    /// Whether a ready layer with this diffID exists.
    pub fn layer(&self, diff_id: &DiffId) -> Result<Option<LayerRow>> {
        self.conn
            .query_row(
                "SELECT blob_digest, compressed_size, uncompressed_size, file_count FROM layers WHERE diff_id = ? AND state = 'ready'",
                [diff_id.to_string()],
                |r| {
                    Ok(LayerRow {
                        diff_id: *diff_id,
                        blob: digest_col(r.get(0)?)?,
                        compressed_size: r.get(1)?,
                        uncompressed_size: r.get(2)?,
                        file_count: r.get(3)?,
                    })
                },
            )
            .optional()
            .map_err(db_err("look up layer"))
    }

    /// Every ready layer.
    pub fn layers(&self) -> Result<Vec<LayerRow>> {
        let mut st = self
            .conn
            .prepare("SELECT diff_id, blob_digest, compressed_size, uncompressed_size, file_count FROM layers WHERE state = 'ready'")
            .map_err(db_err("list layers"))?;
        let rows = st
            .query_map([], |r| {
                Ok(LayerRow {
                    diff_id: DiffId::new(digest_col(r.get(0)?)?),
                    blob: digest_col(r.get(1)?)?,
                    compressed_size: r.get(2)?,
                    uncompressed_size: r.get(3)?,
                    file_count: r.get(4)?,
                })
            })
            .map_err(db_err("list layers"))?;
        rows.collect::<rusqlite::Result<_>>().map_err(db_err("list layers"))
    }

    /// Whether a ready blob with this digest exists; its size if so.
    pub fn blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
        blob_size(&self.conn, digest).map_err(db_err("look up blob"))
    }

    /// Every ready blob and its size.
    pub fn blobs(&self) -> Result<Vec<(Digest, u64)>> {
        let mut st =
            self.conn.prepare("SELECT digest, size FROM blobs WHERE state = 'ready'").map_err(db_err("list blobs"))?;
        let rows = st.query_map([], |r| Ok((digest_col(r.get(0)?)?, r.get(1)?))).map_err(db_err("list blobs"))?;
        rows.collect::<rusqlite::Result<_>>().map_err(db_err("list blobs"))
    }

    /// The digests a one-column query returns.
    fn digests(&self, op: &'static str, sql: &str) -> Result<Vec<Digest>> {
        let mut st = self.conn.prepare(sql).map_err(db_err(op))?;
        let rows = st.query_map([], |r| digest_col(r.get(0)?)).map_err(db_err(op))?;
        rows.collect::<rusqlite::Result<_>>().map_err(db_err(op))
    }

    /// Rows left `pending` by a process that died between staging and commit.
    pub fn pending(&self) -> Result<(Vec<Digest>, Vec<DiffId>)> {
        let blobs = self.digests("list pending", "SELECT digest FROM blobs WHERE state = 'pending'")?;
        let layers = self.digests("list pending", "SELECT diff_id FROM layers WHERE state = 'pending'")?;
        Ok((blobs, layers.into_iter().map(DiffId::new).collect()))
    }

    /// Every image with its tags, newest first.
    pub fn images(&self) -> Result<Vec<ImageRow>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT i.manifest_digest, i.config_digest, i.media_type, i.size, i.created,
                        (SELECT group_concat(name, char(10)) FROM (SELECT name FROM tags t WHERE t.manifest_digest = i.manifest_digest ORDER BY name))
                 FROM images i ORDER BY i.added DESC, i.manifest_digest",
            )
            .map_err(db_err("list images"))?;
        let rows = st.query_map([], image_row).map_err(db_err("list images"))?;
        rows.collect::<rusqlite::Result<_>>().map_err(db_err("list images"))
    }

    /// An image's layers, bottom first.
    pub fn image_layers(&self, manifest: &Digest) -> Result<Vec<ImageLayerRow>> {
        let mut st = self
            .conn
            .prepare("SELECT diff_id, blob_digest, media_type, size FROM image_layers WHERE manifest_digest = ? ORDER BY position")
            .map_err(db_err("list image layers"))?;
        let rows = st
            .query_map([manifest.to_string()], |r| {
                Ok(ImageLayerRow {
                    diff_id: DiffId::new(digest_col(r.get(0)?)?),
                    blob: digest_col(r.get(1)?)?,
                    media_type: r.get(2)?,
                    size: r.get(3)?,
                })
            })
            .map_err(db_err("list image layers"))?;
        rows.collect::<rusqlite::Result<_>>().map_err(db_err("list image layers"))
    }

    /// Leases holding an image.
    pub fn leases_on(&self, manifest: &Digest) -> Result<Vec<String>> {
        let mut st = self
            .conn
            .prepare("SELECT id FROM leases WHERE manifest_digest = ? ORDER BY id")
            .map_err(db_err("list leases"))?;
        let rows = st.query_map([manifest.to_string()], |r| r.get(0)).map_err(db_err("list leases"))?;
        rows.collect::<rusqlite::Result<_>>().map_err(db_err("list leases"))
    }

    /// Layers and blobs referenced by any image (what gc must keep).
    pub fn referenced(&self) -> Result<(Vec<Digest>, Vec<DiffId>)> {
        let blobs = self.digests(
            "list references",
            "SELECT manifest_digest FROM images UNION SELECT config_digest FROM images UNION SELECT blob_digest FROM image_layers",
        )?;
        let layers = self.digests("list references", "SELECT DISTINCT diff_id FROM image_layers")?;
        Ok((blobs, layers.into_iter().map(DiffId::new).collect()))
    }
}

fn image_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ImageRow> {
    let tags: Option<String> = r.get(5)?;
    Ok(ImageRow {
        manifest: digest_col(r.get(0)?)?,
        config: digest_col(r.get(1)?)?,
        media_type: r.get(2)?,
        size: r.get(3)?,
        created: r.get(4)?,
        tags: tags.map(|t| t.split('\n').map(str::to_string).collect()).unwrap_or_default(),
    })
}

/// Inserts or refreshes a blob row.
pub(crate) fn put_blob(
    tx: &Transaction,
    digest: &Digest,
    size: u64,
    media_type: &str,
    state: &str,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO blobs (digest, size, media_type, state, created) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(digest) DO UPDATE SET state = excluded.state",
        params![digest.to_string(), size, media_type, state, now()],
    )?;
    Ok(())
}

/// Whether `blob` is known to decompress to `diff_id`, both stored and ready (also
/// inside a transaction: a commit checks it where gc cannot interleave).
pub(crate) fn layer_blob_known(conn: &Connection, blob: &Digest, diff_id: &DiffId) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT 1 FROM layer_blobs p
           JOIN layers l ON l.diff_id = p.diff_id AND l.state = 'ready'
           JOIN blobs b ON b.digest = p.blob_digest AND b.state = 'ready'
          WHERE p.blob_digest = ?1 AND p.diff_id = ?2",
        [blob.to_string(), diff_id.to_string()],
        |_| Ok(()),
    )
    .optional()
    .map(|o| o.is_some())
}

/// The size of a ready blob, if there is one (inside a transaction too).
pub(crate) fn blob_size(conn: &Connection, d: &Digest) -> rusqlite::Result<Option<u64>> {
    conn.query_row("SELECT size FROM blobs WHERE digest = ? AND state = 'ready'", [d.to_string()], |r| r.get(0))
        .optional()
}

/// Records that `blob` decompresses to `diff_id` (a pair we verified).
pub(crate) fn put_layer_blob(tx: &Transaction, blob: &Digest, diff_id: &DiffId) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT OR IGNORE INTO layer_blobs (blob_digest, diff_id) VALUES (?1, ?2)",
        params![blob.to_string(), diff_id.to_string()],
    )?;
    Ok(())
}

/// Records a layer dir's tree as it was made.
pub(crate) fn put_layer_tree(
    tx: &Transaction,
    diff_id: &DiffId,
    tree: &crate::layer::listing::Listing,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT OR REPLACE INTO layer_trees (diff_id, digest, listing) VALUES (?1, ?2, ?3)",
        params![diff_id.to_string(), tree.digest.to_string(), tree.packed()],
    )?;
    Ok(())
}

/// Inserts or refreshes a layer row.
pub(crate) fn put_layer(tx: &Transaction, row: &LayerRow, state: &str) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO layers (diff_id, blob_digest, compressed_size, uncompressed_size, file_count, state, created)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT(diff_id) DO UPDATE SET state = excluded.state",
        params![
            row.diff_id.to_string(),
            row.blob.to_string(),
            row.compressed_size,
            row.uncompressed_size,
            row.file_count,
            state,
            now()
        ],
    )?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // tests make their files by path
mod tests {
    use super::*;

    #[test]
    fn a_format_1_store_gets_every_module_s_tables_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(crate::store::ingest::TABLES).unwrap();
            c.execute_batch(crate::images::catalog::TABLES).unwrap();
            c.execute_batch(
                "INSERT INTO images VALUES ('sha256:m', 'sha256:c', 't', 1, 'now', 7); PRAGMA user_version = 1;",
            )
            .unwrap();
        }
        let md = Metadata::open(&path).unwrap();
        let has = |table: &str| -> bool {
            md.conn.prepare("SELECT 1 FROM sqlite_master WHERE name = ?").unwrap().exists([table]).unwrap()
        };
        for t in [
            "containers",
            "layer_blobs",
            "build_cache",
            "build_step_inputs",
            "held_content",
            "volume_users",
            "settings",
        ] {
            assert!(has(t), "{t} made when a format-1 store is opened");
        }
        let used: i64 = md.conn.query_row("SELECT last_used FROM images", [], |r| r.get(0)).unwrap();
        assert_eq!(used, 7_000_000_000, "last use seeded from when it was added");
        assert_eq!(md.encoding().unwrap(), crate::layer::encoding::Encoding::Trusted);
    }

    #[test]
    fn the_encoding_is_recorded_and_an_unknown_one_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let mut md = Metadata::open(&path).unwrap();
        assert_eq!(md.encoding().unwrap(), crate::layer::encoding::Encoding::Trusted);
        md.write("test", |tx| tx.execute("UPDATE settings SET value = 'user-v9' WHERE name = 'encoding'", [])).unwrap();
        drop(md);
        let err = Metadata::open(&path).unwrap().encoding().unwrap_err();
        assert!(err.to_string().contains("unknown store encoding \"user-v9\""), "{err}");
    }
}
