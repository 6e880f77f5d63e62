//! SQLite: a consistent snapshot taken with the online backup API in one step (a stepwise
//! copy restarts on every concurrent write and may never finish), while writers go on.
//!
//! An SQLCipher database is snapshotted through SQLCipher itself, into a destination keyed
//! the same (same key and settings): the snapshot, the archive and the restored file are
//! encrypted like the source, and no plaintext copy is ever written.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags, backup::StepResult};

use super::Captured;
use super::sqlcipher::{self, DbKey};
use crate::clock::Clock;
use crate::error::{Error, IoContext, Result};
use crate::manifest::TableCount;
use crate::policy::{SqlCipher, SqliteCheck};

/// A snapshot file in a private temporary directory (removed when dropped).
pub(super) struct Snapshot {
    dir: tempfile::TempDir,
    file: PathBuf,
    name: String,
    pub captured_at: DateTime<Utc>,
    tables: Vec<TableCount>,
}

/// How long to wait for writers holding an exclusive lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// Checks that the source can be snapshotted without writing anything: the database is
/// there and, for SQLCipher, its key opens it (a wrong key is a configuration error).
pub(super) fn preflight(path: &Path, cipher: Option<&SqlCipher>) -> Result<()> {
    exists(path)?;
    if cipher.is_none() && sqlcipher::is_encrypted(path) {
        return Err(Error::Config(format!(
            "SQLite database {} is not plain SQLite: if it is SQLCipher-encrypted, give the policy's [source] key_file or key_env",
            path.display()
        )));
    }
    if let Some(cipher) = cipher {
        let key = DbKey::load(&cipher.key)?;
        drop(sqlcipher::open(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE,
            cipher,
            &key,
        )?);
    }
    Ok(())
}

fn exists(path: &Path) -> Result<()> {
    if !path.is_file() {
        return Err(Error::Config(format!(
            "SQLite database {} does not exist or is not a file",
            path.display()
        )));
    }
    Ok(())
}

pub(super) fn snapshot(
    path: &Path,
    cipher: Option<&SqlCipher>,
    scratch: &Path,
    clock: &Clock,
) -> Result<Snapshot> {
    exists(path)?;
    // The source is opened (and an SQLCipher key proven) before anything is created.
    let key = cipher.map(|c| DbKey::load(&c.key)).transpose()?;
    let src = match (cipher, &key) {
        (Some(c), Some(k)) => sqlcipher::open(path, OpenFlags::SQLITE_OPEN_READ_WRITE, c, k)?,
        _ => Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)
            .map_err(|e| open_error(path, e))?,
    };
    src.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| open_error(path, e))?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("database.sqlite")
        .to_string();
    crate::state::create_private_dir(scratch)?;
    // Plaintext snapshots of backups killed before they could remove them.
    crate::state::sweep_dead(scratch, "snapshot-");
    let dir = tempfile::Builder::new()
        .prefix(&format!("snapshot-{}-", std::process::id()))
        .tempdir_in(scratch)
        .at("cannot create snapshot directory in", scratch)?;
    let file = dir.path().join(&name);

    let mut dst = match (cipher, &key) {
        (Some(c), Some(k)) => sqlcipher::create(&file, c, k)?,
        _ => Connection::open(&file).map_err(|e| open_error(&file, e))?,
    };
    drop(key);
    // The copy is scratch space, removed after the backup (swept if the backup dies): no
    // rollback journal, no fsync of a database-sized file (the snapshot of a 240 MB
    // database went from ~1.6 s to ~1.0-1.4 s; measured for benches/pipeline.rs).
    dst.execute_batch("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;")
        .map_err(|e| open_error(&file, e))?;
    let started = std::time::Instant::now();
    let captured_at;
    {
        let backup =
            rusqlite::backup::Backup::new(&src, &mut dst).map_err(|e| open_error(path, e))?;
        loop {
            let at = clock.now();
            // -1: all pages in one step, under one read transaction: a consistent snapshot.
            match backup.step(-1).map_err(|e| open_error(path, e))? {
                StepResult::Done => {
                    captured_at = at;
                    break;
                }
                StepResult::Busy | StepResult::Locked if started.elapsed() < BUSY_TIMEOUT => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                StepResult::More | StepResult::Busy | StepResult::Locked => {
                    return Err(Error::Runtime(format!(
                        "SQLite database {} stayed locked for {}s; snapshot not taken",
                        path.display(),
                        BUSY_TIMEOUT.as_secs()
                    )));
                }
                _ => {}
            }
        }
    }
    let tables = table_counts(&dst).map_err(|e| open_error(&file, e))?;
    drop(dst);
    Ok(Snapshot {
        dir,
        file,
        name,
        captured_at,
        tables,
    })
}

fn open_error(path: &Path, e: rusqlite::Error) -> Error {
    Error::Runtime(format!("SQLite {}: {e}", path.display()))
}

impl Snapshot {
    /// Writes a tar with the one snapshot file, then removes the snapshot.
    pub(super) fn write_tar(self, w: &mut dyn Write) -> Result<Captured> {
        let mut f = std::fs::File::open(&self.file).at("cannot open snapshot", &self.file)?;
        let meta = f.metadata().at("cannot stat snapshot", &self.file)?;
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(meta.len());
        header.set_mode(0o600);
        header.set_mtime(self.captured_at.timestamp().max(0) as u64);
        let mut builder = tar::Builder::new(w);
        builder
            .append_data(&mut header, &self.name, &mut f)
            .map_err(|e| Error::Runtime(format!("cannot stream snapshot: {e}")))?;
        builder
            .into_inner()
            .map_err(|e| Error::Runtime(format!("cannot stream snapshot: {e}")))?;
        drop(self.dir);
        Ok(Captured {
            tables: self.tables,
            ..Captured::default()
        })
    }
}

/// Every user table with its row count.
pub fn table_counts(conn: &Connection) -> rusqlite::Result<Vec<TableCount>> {
    let names: Vec<String> = conn
        .prepare(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    names
        .into_iter()
        .map(|name| {
            let sql = format!("SELECT count(*) FROM \"{}\"", name.replace('"', "\"\""));
            let rows: i64 = conn.query_row(&sql, [], |r| r.get(0))?;
            Ok(TableCount {
                name,
                rows: rows as u64,
            })
        })
        .collect()
}

/// Opens a restored database and checks `PRAGMA integrity_check` and that every table
/// recorded at backup time is there with its row count.
pub fn check_database(path: &Path, expected: &[TableCount]) -> Result<()> {
    check_restored_database(path, expected, None, SqliteCheck::Integrity)
}

/// Checks a restored database as [`check_database`] does; an SQLCipher database (`cipher`)
/// is opened with its key and passes `PRAGMA cipher_integrity_check` first. With
/// `restore_plaintext` it is then decrypted in place and checked again as plain SQLite.
pub fn check_restored_database(
    path: &Path,
    expected: &[TableCount],
    cipher: Option<&SqlCipher>,
    check: SqliteCheck,
) -> Result<()> {
    let conn = open_restored(path, cipher, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    if let Some(c) = cipher
        && sqlcipher::is_encrypted(path)
    {
        sqlcipher::integrity_check(&conn, c)?;
    }
    check_contents(&conn, expected, check)?;
    drop(conn);
    if let Some(c) = cipher
        && c.restore_plaintext
        && sqlcipher::is_encrypted(path)
    {
        let key = DbKey::load(&c.key)?;
        sqlcipher::decrypt_in_place(path, c, &key)?;
        let conn = open_restored(path, None, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
        check_contents(&conn, expected, check)?;
    }
    Ok(())
}

/// Opens a restored database: an SQLCipher file with the policy's key and settings (a
/// wrong key is a configuration error), a plain SQLite file as it is.
pub fn open_restored(
    path: &Path,
    cipher: Option<&SqlCipher>,
    flags: OpenFlags,
) -> Result<Connection> {
    if !sqlcipher::is_encrypted(path) {
        return Connection::open_with_flags(path, flags)
            .map_err(|e| Error::Check(format!("restored database cannot be opened: {e}")));
    }
    let Some(c) = cipher else {
        return Err(Error::Config(format!(
            "restored database {} is not plain SQLite: if the source is SQLCipher-encrypted, give the policy's [source] key_file or key_env",
            path.display()
        )));
    };
    let key = DbKey::load(&c.key)?;
    sqlcipher::open(path, flags, c, &key).map_err(|e| match e {
        Error::Runtime(m) => Error::Check(format!("restored database cannot be opened: {m}")),
        // Name the database, not the staging path it was checked in.
        Error::Config(_) => Error::Config(format!(
            "cannot open the restored database {}: wrong key or not a database (the policy's key{} does not open this backup)",
            path.file_name().unwrap_or_default().to_string_lossy(),
            if c.compat.is_none() {
                ", without cipher_compat,"
            } else {
                " and cipher_compat"
            }
        )),
        other => other,
    })
}

/// `check` (`PRAGMA integrity_check` or `quick_check`), then every table of `expected` with
/// its row count.
fn check_contents(conn: &Connection, expected: &[TableCount], check: SqliteCheck) -> Result<()> {
    let pragma = check.pragma();
    let verdict: String = conn
        .query_row(&format!("PRAGMA {pragma}"), [], |r| r.get(0))
        .map_err(|e| Error::Check(format!("restored database fails {pragma}: {e}")))?;
    if verdict != "ok" {
        return Err(Error::Check(format!(
            "restored database fails {pragma}: {verdict}"
        )));
    }
    let found = table_counts(conn)
        .map_err(|e| Error::Check(format!("restored database cannot be read: {e}")))?;
    for t in expected {
        match found.iter().find(|f| f.name == t.name) {
            None => {
                return Err(Error::Check(format!(
                    "restored database lacks table {:?}",
                    t.name
                )));
            }
            Some(f) if f.rows != t.rows => {
                return Err(Error::Check(format!(
                    "restored table {:?} has {} rows, backup recorded {}",
                    t.name, f.rows, t.rows
                )));
            }
            Some(_) => {}
        }
    }
    Ok(())
}
