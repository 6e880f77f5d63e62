//! Errors: one enum for the library, each variant naming the object involved, and one
//! [`Error::kind`] that the CLI maps to an exit code.
//!
//! Rules: messages are one line, say what failed and what to do, and never carry a secret
//! (key material, database keys, credentials in URLs). I/O errors always say which path.

use std::io;
use std::path::{Path, PathBuf};

/// What kind of failure this is; decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A check failed: verification, tampered or unreadable backup, objective breached (exit 1).
    Check,
    /// Usage or configuration error: bad policy, wrong key, refused overwrite (exit 2).
    Config,
    /// Runtime failure: I/O, permissions, network (exit 3).
    Runtime,
    /// Another run holds the lock for a policy (exit 4).
    Locked,
}

impl ErrorKind {
    /// The documented process exit code for this kind.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::Check => 1,
            ErrorKind::Config => 2,
            ErrorKind::Runtime => 3,
            ErrorKind::Locked => 4,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A policy file is malformed; names file, line and key.
    #[error("{}:{line}: {key}: {message}", file.display())]
    Policy {
        file: PathBuf,
        line: usize,
        key: String,
        message: String,
    },
    /// Configuration or usage problem (exit 2).
    #[error("{0}")]
    Config(String),
    /// A check failed: the data is not what it should be (exit 1).
    #[error("{0}")]
    Check(String),
    /// An I/O operation on a named path failed (exit 3).
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Any other runtime failure (exit 3).
    #[error("{0}")]
    Runtime(String),
    /// Another process holds the policy's lock (exit 4).
    #[error("policy {0} is locked by another lifeboat run; try again when it has finished")]
    Locked(String),
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Policy { .. } | Error::Config(_) => ErrorKind::Config,
            Error::Check(_) => ErrorKind::Check,
            Error::Io { .. } | Error::Runtime(_) => ErrorKind::Runtime,
            Error::Locked(_) => ErrorKind::Locked,
        }
    }

    /// An I/O error on `path`; `action` is a verb phrase such as "cannot read".
    pub fn io(action: &'static str, path: impl AsRef<Path>, source: io::Error) -> Self {
        Error::Io {
            action,
            path: path.as_ref().to_path_buf(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Extension to attach a path and an action to `io::Result`s.
pub trait IoContext<T> {
    fn at(self, action: &'static str, path: impl AsRef<Path>) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, action: &'static str, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| Error::io(action, path, e))
    }
}
