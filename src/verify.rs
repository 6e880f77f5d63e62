//! Verification levels: `checksum` (objects present, size and sha256 match; no key needed),
//! `full` (decrypt and decompress the whole stream, check the inner checksum), `restore`
//! (restore into scratch space and run the integrity checks).

use serde::Serialize;

use crate::error::{Error, Result};
use crate::fetch::{self, Expected};
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
        Level::Full => {
            let private = m.read_private(ids)?;
            let payload = m.payload_for(ids)?;
            let store = &stores[found.stores[0]];
            let what = format!(
                "backup {} ({} in {})",
                m.backup_id,
                payload.object,
                store.describe()
            );
            let expected = Expected {
                sha256: &payload.sha256,
                size: payload.size,
            };
            let (tar_sha256, _) = fetch::read_plaintext(
                store.get(&payload.object)?,
                Some(expected),
                ids,
                false,
                &what,
                |r| sha256_of(r).map_err(|e| Error::Check(format!("{what}: {e}"))),
            )?;
            if tar_sha256 != private.tar_sha256 {
                return Err(Error::Check(format!(
                    "{what}: archive does not match the checksum in its private manifest"
                )));
            }
            Ok(())
        }
        Level::Restore => {
            let private = m.read_private(ids)?;
            let staging = Staging::inside(&state.scratch())?;
            unpack_backup(&policy.source, stores, found, ids, &private, staging.path())?;
            Ok(())
        }
    }
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
