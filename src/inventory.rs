//! Inventory: the backups of a policy as its stores hold them (the stores are the truth;
//! the catalog is a cache of this).

use crate::error::{Error, Result};
use crate::manifest::{self, Manifest};
use crate::policy::Policy;
use crate::store::{self, Store};

/// A backup found in one or more of a policy's stores.
pub struct Found {
    pub manifest: Manifest,
    /// Indexes into the policy's stores that hold this backup's manifest.
    pub stores: Vec<usize>,
}

/// The opened stores of a policy, in policy order.
pub fn open_stores(policy: &Policy) -> Result<Vec<Box<dyn Store>>> {
    policy.stores.iter().map(store::open).collect()
}

/// Every backup of `policy` in `stores`, oldest first. Manifests of other policies sharing a
/// store are skipped; a manifest that cannot be parsed is an error naming it.
pub fn backups(policy: &Policy, stores: &[Box<dyn Store>]) -> Result<Vec<Found>> {
    let mut found: Vec<Found> = Vec::new();
    for (i, store) in stores.iter().enumerate() {
        for name in store.list()? {
            if !name.ends_with(manifest::SUFFIX) {
                continue;
            }
            let m = Manifest::parse(&name, &store.get_bytes(&name)?)?;
            if m.policy_id != policy.id {
                continue;
            }
            match found
                .iter_mut()
                .find(|f| f.manifest.backup_id == m.backup_id)
            {
                Some(f) => {
                    if f.manifest != m {
                        return Err(Error::Check(format!(
                            "backup {} has different manifests in {} and {}",
                            m.backup_id,
                            stores[f.stores[0]].describe(),
                            store.describe()
                        )));
                    }
                    f.stores.push(i);
                }
                None => found.push(Found {
                    manifest: m,
                    stores: vec![i],
                }),
            }
        }
    }
    found.sort_by(|a, b| {
        (a.manifest.created_at, a.manifest.backup_id)
            .cmp(&(b.manifest.created_at, b.manifest.backup_id))
    });
    Ok(found)
}

/// The backup `id` (a full UUID or a unique prefix), or the newest when `id` is `None`.
pub fn pick(policy: &Policy, mut found: Vec<Found>, id: Option<&str>) -> Result<Found> {
    match id {
        None => found.pop().ok_or_else(|| {
            Error::Config(format!(
                "policy {} has no backups in its stores; run `lifeboat backup {}` first",
                policy.name, policy.name
            ))
        }),
        Some(id) => {
            let mut matches: Vec<Found> = found
                .into_iter()
                .filter(|f| f.manifest.backup_id.to_string().starts_with(id))
                .collect();
            match matches.len() {
                1 => Ok(matches.remove(0)),
                0 => Err(Error::Config(format!(
                    "policy {} has no backup with id {id}",
                    policy.name
                ))),
                n => Err(Error::Config(format!(
                    "id {id} matches {n} backups of policy {}; give more characters",
                    policy.name
                ))),
            }
        }
    }
}
