//! The metadata database (SQLite, WAL). Every state change is one `BEGIN IMMEDIATE`
//! transaction; rows in state `pending` name content being moved into place and are
//! swept on the next exclusive open, rows in state `ready` are the only ones trusted.
//! Writers queue on a lock file beside the database (`db.sqlite-writer`) before they
//! begin: a blocked flock wakes the moment it is free, where SQLite's own busy handler
//! polls with sleeps of up to 25 ms (20 `run`s started at once spent 31 ms each in them).

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::content::digest::{DiffId, Digest};
use crate::error::{Error, ErrorKind, Result};

/// The on-disk format this code reads and writes.
pub const FORMAT_VERSION: i64 = 14;

/// Settings of the store as a whole: `encoding`, how overlay state is written in its
/// layer dirs (`encoding.rs`), recorded by the process that makes the store (or
/// upgrades one from before it was recorded: only its owner can, and a rootless
/// user's store could hold no layer before rootless stores existed).
const SETTINGS: &str = r#"
CREATE TABLE IF NOT EXISTS settings (
  name  TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
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
    ("layers: blob variants", Tables::Sql(crate::layer::variants::TABLES)),
    ("images: remote", Tables::Upgrade(crate::images::remote::add_remote)),
];

/// An open metadata database.
pub struct Metadata {
    conn: Connection,
    writer: WriterLock,
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
    /// For an image whose layers were not all fetched: the repository
    /// (`HOST/NAME`) they are in.
    pub remote: Option<String>,
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

impl ImageLayerRow {
    /// The blob's descriptor, as a manifest names it.
    pub fn descriptor(&self) -> crate::images::oci::Descriptor {
        crate::images::oci::Descriptor {
            media_type: self.media_type.clone(),
            digest: self.blob,
            size: self.size,
            urls: None,
            annotations: None,
        }
    }
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

pub(crate) fn db_err(op: &'static str) -> impl Fn(rusqlite::Error) -> Error {
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

pub(crate) fn digest_col(s: String) -> rusqlite::Result<Digest> {
    Digest::parse(&s)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e)))
}

/// How often a connection of this process found the database locked and waited.
static BUSY_WAITS: AtomicU64 = AtomicU64::new(0);

/// SQLite's busy handler: waits 1 ms at a time, 30 s in all. Only a writer that does
/// not queue on our lock (another program) or a reader at a checkpoint gets here.
fn busy(attempt: i32) -> bool {
    BUSY_WAITS.fetch_add(1, Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(1));
    attempt < 30_000
}

/// The writers' queue: the lock file beside the database, held for one transaction.
struct WriterLock(Option<File>);

impl WriterLock {
    #[allow(clippy::disallowed_methods)] // the store's own file, beside its database
    fn open(db: &Path) -> WriterLock {
        let mut name = db.as_os_str().to_owned();
        name.push("-writer");
        // A store this user cannot write to has no writers to queue behind.
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&name);
        WriterLock(file.ok())
    }

    /// Waits for the lock; it is let go when the guard drops.
    fn hold(&self) -> Result<Held<'_>> {
        if let Some(f) = &self.0 {
            f.lock().map_err(|e| Error::io("lock the metadata database", "db.sqlite-writer", e))?;
        }
        Ok(Held(self.0.as_ref()))
    }
}

/// The writers' lock, held.
struct Held<'a>(Option<&'a File>);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if let Some(f) = self.0 {
            let _ = f.unlock();
        }
    }
}

impl Metadata {
    /// Opens (creating if needed) the database and checks its format version.
    pub fn open(path: &Path) -> Result<Metadata> {
        let mut conn = Connection::open(path).map_err(|e| Error::sql("open", path.display(), e))?;
        conn.busy_handler(Some(busy)).map_err(db_err("open"))?;
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
        let mut md = Metadata { conn, writer: WriterLock::open(path) };
        if version < FORMAT_VERSION {
            md.write("create schema", |tx| {
                for (_, tables) in SCHEMA {
                    match tables {
                        Tables::Sql(sql) => tx.execute_batch(sql)?,
                        Tables::Upgrade(f) => f(tx)?,
                    }
                }
                tx.execute(
                    "INSERT OR IGNORE INTO settings (name, value) VALUES ('encoding', ?1)",
                    [crate::layer::encoding::Encoding::of_process().name()],
                )?;
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
        let _held = self.writer.hold()?;
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db_err(op))?;
        let out = f(&tx).map_err(db_err(op))?;
        tx.commit().map_err(db_err(op))?;
        Ok(out)
    }

    /// The digests a one-column query returns.
    pub(crate) fn digests(&self, op: &'static str, sql: &str) -> Result<Vec<Digest>> {
        let mut st = self.conn.prepare(sql).map_err(db_err(op))?;
        let rows = st.query_map([], |r| digest_col(r.get(0)?)).map_err(db_err(op))?;
        rows.collect::<rusqlite::Result<_>>().map_err(db_err(op))
    }
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
    fn writers_from_many_connections_queue_on_the_lock_not_in_sqlites_busy_handler() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        Metadata::open(&path).unwrap();
        let before = BUSY_WAITS.load(Ordering::Relaxed);
        std::thread::scope(|s| {
            for t in 0..8 {
                let path = &path;
                s.spawn(move || {
                    let mut md = Metadata::open(path).unwrap();
                    for i in 0..50 {
                        md.write("test", |tx| {
                            tx.execute("INSERT INTO settings (name, value) VALUES (?1, 'x')", [format!("t{t}-{i}")])
                        })
                        .unwrap();
                    }
                });
            }
        });
        let md = Metadata::open(&path).unwrap();
        let rows: i64 = md.conn.query_row("SELECT count(*) FROM settings", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, 1 + 8 * 50);
        // Other tests of this process may wait meanwhile; 400 contended writes without
        // the lock wait hundreds of times.
        let waited = BUSY_WAITS.load(Ordering::Relaxed) - before;
        assert!(waited < 20, "writers waited in SQLite's busy handler {waited} times");
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
