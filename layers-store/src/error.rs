//! The store's one error type: `operation: subject: cause`, with a coarse kind.

use std::fmt;
use std::io;

/// What went wrong, coarsely; callers branch on this, users read the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The named thing does not exist in the store.
    NotFound,
    /// The named thing exists and the operation would replace it.
    AlreadyExists,
    /// Input that does not parse or breaks a rule (a bad reference, a malformed tar).
    InvalidInput,
    /// Content hashed to something other than what was expected.
    DigestMismatch,
    /// Input that tried to escape its root or otherwise act outside its bounds.
    Unsafe,
    /// A configured cap (bytes, entries, header size) was exceeded.
    LimitExceeded,
    /// An image has more layers than overlayfs stacks: only a squashed copy mounts.
    TooManyLayers,
    /// Work another process left half done (an interrupted commit): the store's
    /// recovery (`gc`, or the next process with the store to itself) finishes it.
    Interrupted,
    /// The thing is in use (an image by a container, a lock by a process).
    InUse,
    /// An image whose layers are in a registry, not fetched yet (`build --push`'s):
    /// fetch them first.
    Remote,
    /// The store itself is inconsistent or from an unknown format version.
    Corrupt,
    /// The operating system refused.
    Io,
    /// The metadata database refused.
    Database,
}

/// An error from the store: an operation, the thing it was applied to, and why.
#[derive(Debug, thiserror::Error)]
#[error("{op}: {subject}: {detail}")]
pub struct Error {
    kind: ErrorKind,
    op: &'static str,
    subject: String,
    detail: Detail,
}

#[derive(Debug, thiserror::Error)]
enum Detail {
    #[error("{0}")]
    Message(String),
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("{0} ({1})")]
    IoNoted(io::Error, String),
    #[error(transparent)]
    Sql(#[from] rusqlite::Error),
}

impl Error {
    /// An error with a message of our own.
    pub fn new(kind: ErrorKind, op: &'static str, subject: impl fmt::Display, msg: impl Into<String>) -> Self {
        Error { kind, op, subject: subject.to_string(), detail: Detail::Message(msg.into()) }
    }

    /// Content that hashed to `got` where `want` was expected; names both.
    pub fn mismatch(op: &'static str, want: impl fmt::Display, got: impl fmt::Display) -> Self {
        Self::new(ErrorKind::DigestMismatch, op, want, format!("content has digest {got}"))
    }

    /// An error caused by the operating system.
    pub fn io(op: &'static str, subject: impl fmt::Display, err: io::Error) -> Self {
        let kind = match err.kind() {
            io::ErrorKind::NotFound => ErrorKind::NotFound,
            io::ErrorKind::AlreadyExists => ErrorKind::AlreadyExists,
            _ => ErrorKind::Io,
        };
        Error { kind, op, subject: subject.to_string(), detail: Detail::Io(err) }
    }

    /// An error from a raw errno, as rustix reports them.
    pub fn errno(op: &'static str, subject: impl fmt::Display, err: rustix::io::Errno) -> Self {
        Self::io(op, subject, err.into())
    }

    /// An error from the metadata database.
    pub fn sql(op: &'static str, subject: impl fmt::Display, err: rusqlite::Error) -> Self {
        Error { kind: ErrorKind::Database, op, subject: subject.to_string(), detail: Detail::Sql(err) }
    }

    /// Adds what else is known of an OS error (the kernel's own message); empty adds nothing.
    pub fn with_detail(mut self, note: String) -> Self {
        if note.is_empty() {
            return self;
        }
        self.detail = match self.detail {
            Detail::Io(e) => Detail::IoNoted(e, note),
            Detail::Message(m) => Detail::Message(format!("{m} ({note})")),
            other => other,
        };
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The thing the failed operation was applied to (a path, digest, entry or name).
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Whether the underlying cause is this errno (used to tell ENOSPC and friends apart).
    pub fn raw_os_error(&self) -> Option<i32> {
        match &self.detail {
            Detail::Io(e) | Detail::IoNoted(e, _) => e.raw_os_error(),
            _ => None,
        }
    }
}

/// Shorthand used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
