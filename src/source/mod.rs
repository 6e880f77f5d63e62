//! Sources: each produces a consistent point-in-time tar stream of what a policy protects,
//! plus what the private manifest records about it (file list, table row counts).

mod files;
pub mod postgres;
mod sqlcipher;
mod sqlite;

use std::path::Path;
use std::thread::JoinHandle;

use chrono::{DateTime, Utc};

pub use files::check_tree;
pub use postgres::PgUrl;
pub use sqlcipher::DbKey;
pub use sqlite::{check_database, check_restored_database, open_restored, table_counts};

use crate::clock::Clock;
use crate::error::Result;
use crate::manifest::{FileEntry, TableCount};
use crate::pipe::{self, PipeReader};
use crate::policy::SourceSpec;

/// What a source recorded while producing its stream.
#[derive(Debug, Default)]
pub struct Captured {
    pub files: Vec<FileEntry>,
    pub tables: Vec<TableCount>,
    /// When the data is consistent, if only known at the end of the stream (a base
    /// backup); overrides [`Running::captured_at`].
    pub captured_at: Option<DateTime<Utc>>,
}

/// A running source: read the tar stream from `reader`, then `join` for what it recorded.
pub struct Running {
    pub reader: PipeReader,
    pub captured_at: DateTime<Utc>,
    handle: JoinHandle<Result<Captured>>,
}

impl Running {
    pub fn join(self) -> Result<Captured> {
        // Drop the reader first: a producer blocked on a full pipe then stops.
        drop(self.reader);
        self.handle
            .join()
            .unwrap_or_else(|_| Err(crate::Error::Runtime("source thread panicked".into())))
    }
}

/// Checks, before anything is written, what can be checked of a source without reading it
/// all: an SQLite database exists and an SQLCipher key opens it (a missing or wrong key is a
/// configuration error).
pub fn preflight(spec: &SourceSpec) -> Result<()> {
    match spec {
        SourceSpec::Sqlite { path, cipher } => sqlite::preflight(path, cipher.as_ref()),
        _ => Ok(()),
    }
}

/// Checks that every table recorded at backup time (`expected`) is among the tables of a
/// restored database (`found`) with the same row count.
fn compare_tables(expected: &[TableCount], found: &[TableCount]) -> Result<()> {
    for t in expected {
        match found.iter().find(|f| f.name == t.name) {
            None => {
                return Err(crate::Error::Check(format!(
                    "restored database lacks table {:?}",
                    t.name
                )));
            }
            Some(f) if f.rows != t.rows => {
                return Err(crate::Error::Check(format!(
                    "restored table {:?} has {} rows, backup recorded {}",
                    t.name, f.rows, t.rows
                )));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Starts producing the tar stream of `spec` on its own thread. Any temporary plaintext
/// (an SQLite snapshot) lives under `scratch` in a 0700 directory removed on every path.
pub fn start(spec: &SourceSpec, scratch: &Path, clock: &Clock) -> Result<Running> {
    match spec {
        SourceSpec::Sqlite { path, cipher } => {
            let snap = sqlite::snapshot(path, cipher.as_ref(), scratch, clock)?;
            let captured_at = snap.captured_at;
            let (reader, handle) = pipe::spawn(move |w: &mut pipe::PipeWriter| snap.write_tar(w));
            Ok(Running {
                reader,
                captured_at,
                handle,
            })
        }
        SourceSpec::Postgres(pg) => {
            let started = postgres::start(pg, scratch, clock)?;
            Ok(Running {
                reader: started.reader,
                captured_at: started.captured_at,
                handle: started.handle,
            })
        }
        SourceSpec::Files { path } => {
            let root = path.clone();
            files::check_root(&root)?;
            let captured_at = clock.now();
            let (reader, handle) =
                pipe::spawn(move |w: &mut pipe::PipeWriter| files::write_tar(&root, w));
            Ok(Running {
                reader,
                captured_at,
                handle,
            })
        }
    }
}
