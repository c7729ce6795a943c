//! A container's dir: the one place its files are named (the layout is drawn in
//! `container/mod.rs`).

use std::path::{Path, PathBuf};

use layers_store::Store;

/// The attach socket's name, for `run/attach.rs`.
pub const ATTACH_SOCKET: &str = "attach.sock";
/// The current log file's name, for `run/log.rs` (which rotates it to `.1`, `.2`…).
pub const LOG: &str = "log.json";

/// A file (or dir) in a container's dir.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum File {
    /// What it was created with (`config.rs`).
    Config,
    /// What the release before `config.json` kept instead: the flags as typed.
    LegacyOptions,
    /// While it runs: its process and what `exec` needs.
    Running,
    /// How its last run ended.
    Exited,
    /// Times its restart policy started it again since `start`.
    Restarts,
    /// The process that runs it and records how it ends, while that lives.
    Monitor,
    /// What a detached container's monitor said.
    MonitorLog,
    /// A stop was asked for: its restart policy does not start it again.
    StopRequested,
    /// The lower dir under its upper dir holding the mount points `run` needs.
    InitLayer,
    /// Mounted on its `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf`.
    Hostname,
    Hosts,
    ResolvConf,
}

impl File {
    /// Its name in the dir.
    pub fn name(self) -> &'static str {
        match self {
            File::Config => "config.json",
            File::LegacyOptions => "options.json",
            File::Running => "running.json",
            File::Exited => "exited.json",
            File::Restarts => "restarts.json",
            File::Monitor => "monitor.json",
            File::MonitorLog => "monitor.log",
            File::StopRequested => "stop-requested",
            File::InitLayer => "init",
            File::Hostname => "hostname",
            File::Hosts => "hosts",
            File::ResolvConf => "resolv.conf",
        }
    }
}

/// The largest record read back (they are ours, yet bounded like any file read).
const MAX_RECORD: u64 = 1 << 20;

/// The dir of one container.
#[derive(Debug, Clone)]
pub struct ContainerDir {
    path: PathBuf,
}

impl ContainerDir {
    /// The dir of container `id` in `store`.
    pub fn of(store: &Store, id: &str) -> ContainerDir {
        ContainerDir { path: store.snapshots().dir(id) }
    }

    /// The dir itself.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where `f` is.
    pub fn file(&self, f: File) -> PathBuf {
        self.path.join(f.name())
    }

    /// Writes `value` as `f`, whole (renamed into place).
    pub fn write_json<T: serde::Serialize>(&self, f: File, value: &T) -> std::io::Result<()> {
        let tmp = self.path.join(format!(".{}.tmp", f.name()));
        std::fs::write(&tmp, serde_json::to_vec(value)?)?;
        std::fs::rename(&tmp, self.file(f))
    }

    /// `f`, if it is there: `Err` when it is there but unreadable or not what `T` is.
    pub fn try_read_json<T: serde::de::DeserializeOwned>(&self, f: File) -> std::io::Result<Option<T>> {
        let file = match std::fs::File::open(self.file(f)) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let reader = std::io::Read::take(std::io::BufReader::new(file), MAX_RECORD);
        serde_json::from_reader(reader).map(Some).map_err(std::io::Error::other)
    }

    /// `f`, if it is there and readable.
    pub fn read_json<T: serde::de::DeserializeOwned>(&self, f: File) -> Option<T> {
        self.try_read_json(f).ok().flatten()
    }

    /// Writes the new record whole (renamed into place), then removes the old one: a
    /// reader in between sees both, never neither (`wait` would say "has not run").
    pub fn replace<T: serde::Serialize>(&self, (new, value): (File, &T), old: File) {
        let _ = self.write_json(new, value);
        self.remove(old);
    }

    /// Removes `f` (gone already is fine).
    pub fn remove(&self, f: File) {
        let _ = std::fs::remove_file(self.file(f));
    }

    /// Whether `f` is there.
    pub fn has(&self, f: File) -> bool {
        self.file(f).exists()
    }

    /// Creates `f` empty (a flag file).
    pub fn touch(&self, f: File) {
        let _ = std::fs::write(self.file(f), b"");
    }
}
