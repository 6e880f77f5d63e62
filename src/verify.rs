//! Verification levels: `checksum` (objects present, size and sha256 match; no key needed),
//! `full` (decrypt and decompress the whole stream, check the inner checksum), `restore`
//! (restore into scratch space and run the integrity checks).

use serde::Serialize;

use crate::error::{Error, Result};
use crate::fetch;
use crate::hash::sha256_of;
use crate::inventory::Found;
use crate::keys::Identities;
use crate::policy::Policy;
use crate::restore::{Staging, unpack_backup};
use crate::state::StateDir;
use crate::store::Store;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Checksum,
    Full,
    Restore,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Checksum => "checksum",
            Level::Full => "full",
            Level::Restore => "restore",
        }
    }
}

/// The result of verifying one backup.
#[derive(Debug, Serialize)]
pub struct Verification {
    pub policy: String,
    pub id: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub level: Level,
    pub ok: bool,
    /// "ok", or the one-line reason it failed.
    pub detail: String,
}

/// Verifies one backup at `level`. A failed check is a result (`ok: false`), not an error;
/// errors are kept for what stops verification itself (missing identity, I/O on scratch).
pub fn verify(
    policy: &Policy,
    stores: &[Box<dyn Store>],
    found: &Found,
    level: Level,
    ids: &Identities,
    state: &StateDir,
) -> Result<Verification> {
    let outcome = match run(policy, stores, found, level, ids, state) {
        Ok(()) => Ok(()),
        Err(e @ Error::Check(_)) => Err(e.to_string()),
        Err(e) => return Err(e),
    };
    Ok(Verification {
        policy: policy.name.clone(),
        id: found.manifest.backup_id.to_string(),
        created_at: found.manifest.created_at,
        level,
        ok: outcome.is_ok(),
        detail: outcome.err().unwrap_or_else(|| "ok".into()),
    })
}

fn run(
    policy: &Policy,
    stores: &[Box<dyn Store>],
    found: &Found,
    level: Level,
    ids: &Identities,
    state: &StateDir,
) -> Result<()> {
    checksums(stores, found)?;
    let m = &found.manifest;
    match level {
        Level::Checksum => Ok(()),
        Level::Full => full_check(stores, found, ids),
        Level::Restore => {
            let private = m.read_private(ids)?;
            if let crate::policy::SourceSpec::Postgres(pg) = &policy.source {
                // Restored into a scratch database or by a temporary server, like a drill.
                return crate::source::postgres::verify_restore(
                    policy,
                    pg,
                    stores,
                    found,
                    ids,
                    &private,
                    &state.scratch(),
                );
            }
            let staging = Staging::inside(&state.scratch(), "verify")?;
            let item = unpack_backup(
                policy,
                stores,
                found,
                ids,
                &private,
                staging.path(),
                &crate::progress::Progress::default(),
            )?;
            check_expectations(policy, &item)
        }
    }
}

/// Decrypts and decompresses the whole payload that `ids` can open, checking the stored
/// object against the manifest and the archive against the private manifest.
pub(crate) fn full_check(stores: &[Box<dyn Store>], found: &Found, ids: &Identities) -> Result<()> {
    let private = found.manifest.read_private(ids)?;
    // Reading nothing: the whole archive is drained, hashed and checked.
    fetch::read_archive(stores, found, ids, &private, &Default::default(), |_, _| {
        Ok(())
    })?;
    Ok(())
}

/// Every payload present in every store that holds the manifest, with the recorded size
/// and sha256.
fn checksums(stores: &[Box<dyn Store>], found: &Found) -> Result<()> {
    for &i in &found.stores {
        let store = &stores[i];
        for p in &found.manifest.payloads {
            let what = format!("{} in {}", p.object, store.describe());
            match store.size(&p.object)? {
                None => return Err(Error::Check(format!("{what} is missing"))),
                Some(size) if size != p.size => {
                    return Err(Error::Check(format!(
                        "{what} has size {size}, its manifest says {}",
                        p.size
                    )));
                }
                Some(_) => {}
            }
            let (sha256, _) = sha256_of(store.get(&p.object)?)
                .map_err(|e| Error::Runtime(format!("cannot read {what}: {e}")))?;
            if sha256 != p.sha256 {
                return Err(Error::Check(format!(
                    "{what} does not match the sha256 in its manifest; it was altered or damaged"
                )));
            }
        }
    }
    Ok(())
}

/// Checks the policy's `[verify]` expectations on a restored item (the database file or
/// the tree's root).
pub fn check_expectations(policy: &Policy, item: &std::path::Path) -> Result<()> {
    let exp = &policy.expectations;
    match &policy.source {
        crate::policy::SourceSpec::Sqlite { cipher, .. } => {
            if exp.tables.is_empty() && exp.min_rows.is_empty() {
                return Ok(());
            }
            // An SQLCipher database is opened with its key.
            let conn = crate::source::open_restored(
                item,
                cipher.as_ref(),
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )?;
            let counts = crate::source::table_counts(&conn)
                .map_err(|e| Error::Check(format!("restored database cannot be read: {e}")))?;
            check_tables(exp, |t| counts.iter().find(|c| c.name == t).map(|c| c.rows))
        }
        crate::policy::SourceSpec::Files { .. } => {
            let Some(min) = exp.files_min else {
                return Ok(());
            };
            let n = count_files(item)?;
            if n < min {
                return Err(Error::Check(format!(
                    "expectation failed: {n} files restored, at least {min} expected"
                )));
            }
            Ok(())
        }
        // Checked on the restored server (src/source/postgres.rs).
        crate::policy::SourceSpec::Postgres(_) => Err(Error::Runtime(
            "PostgreSQL expectations are checked on a server, not on files".into(),
        )),
    }
}

fn count_files(dir: &std::path::Path) -> Result<u64> {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io("cannot read", dir, e))? {
        let entry = entry.map_err(|e| Error::io("cannot read", dir, e))?;
        let ft = entry
            .file_type()
            .map_err(|e| Error::io("cannot stat", entry.path(), e))?;
        if ft.is_dir() {
            n += count_files(&entry.path())?;
        } else if ft.is_file() {
            n += 1;
        }
    }
    Ok(n)
}

/// The `tables` and `min_rows` expectations against a restored database, given the row
/// count of each table by name (`None`: no such table).
pub(crate) fn check_tables(
    exp: &crate::policy::Expectations,
    rows: impl Fn(&str) -> Option<u64>,
) -> Result<()> {
    for t in exp.tables.iter().chain(exp.min_rows.iter().map(|(t, _)| t)) {
        if rows(t).is_none() {
            return Err(Error::Check(format!(
                "expectation failed: table {t:?} is missing"
            )));
        }
    }
    for (t, min) in &exp.min_rows {
        match rows(t) {
            Some(n) if n < *min => {
                return Err(Error::Check(format!(
                    "expectation failed: table {t:?} has {n} rows, at least {min} expected"
                )));
            }
            _ => {}
        }
    }
    Ok(())
}
