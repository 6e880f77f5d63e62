//! Catalog rebuild: recreate the backup index from the stores alone, because in a disaster
//! the host that held the catalog is gone.

use serde::Serialize;

use crate::catalog::Catalog;
use crate::error::Result;
use crate::inventory;
use crate::keys::Identities;
use crate::policy::Policy;

#[derive(Debug, Serialize)]
pub struct RebuildOutcome {
    pub policy: String,
    pub backups: usize,
    /// Backups whose private manifest was decrypted and checked with the given identities.
    pub private_checked: usize,
}

/// Forgets the catalog's backups and re-reads every policy's stores. With identities, each
/// private manifest is decrypted and checked to belong to its backup and policy.
pub fn rebuild_catalog(
    policies: &[Policy],
    ids: &Identities,
    catalog: &Catalog,
) -> Result<Vec<RebuildOutcome>> {
    catalog.clear_backups()?;
    let mut out = Vec::new();
    for policy in policies {
        let stores = inventory::open_stores(policy)?;
        let found = inventory::backups(policy, &stores)?;
        let mut private_checked = 0;
        for f in &found {
            if f.manifest.payload_for(ids).is_ok() {
                // Checks that the private part decrypts and repeats the public ids.
                f.manifest.read_private(ids)?;
                private_checked += 1;
            }
            let described: Vec<String> = f.stores.iter().map(|&i| stores[i].describe()).collect();
            catalog.record_backup(&policy.name, &f.manifest, &described)?;
        }
        out.push(RebuildOutcome {
            policy: policy.name.clone(),
            backups: found.len(),
            private_checked,
        });
    }
    Ok(out)
}
