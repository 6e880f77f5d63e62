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

/// The index of the store a selector names among the policy's stores: `KIND` (the first
/// store of that kind, e.g. `s3`), `KIND:N` (the Nth of that kind) or `N` (the Nth
/// `[[store]]` of the policy), counting from 1.
pub fn select_store(policy: &Policy, selector: &str) -> Result<usize> {
    let bad = |why: String| {
        Error::Config(format!(
            "--store {selector:?}: {why} (policy {} has: {})",
            policy.name,
            policy
                .stores
                .iter()
                .enumerate()
                .map(|(i, s)| format!("{} = {}", i + 1, s.kind()))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    };
    let (kind, nth) = match selector.split_once(':') {
        Some((k, n)) => (Some(k), Some(n)),
        None if selector.chars().all(|c| c.is_ascii_digit()) => (None, Some(selector)),
        None => (Some(selector), None),
    };
    let nth = match nth {
        None => 1,
        Some(n) => match n.parse::<usize>() {
            Ok(n) if n >= 1 => n,
            _ => return Err(bad("the number counts from 1".into())),
        },
    };
    let candidates: Vec<usize> = (0..policy.stores.len())
        .filter(|&i| kind.is_none_or(|k| policy.stores[i].kind() == k))
        .collect();
    match candidates.get(nth - 1) {
        Some(&i) => Ok(i),
        None => Err(bad(match kind {
            Some(k) if candidates.is_empty() => format!("no store of kind {k:?}"),
            _ => "no such store".to_string(),
        })),
    }
}

/// The policy's stores, or only the one `selector` names (see [`select_store`]).
pub fn open_selected(policy: &Policy, selector: Option<&str>) -> Result<Vec<Box<dyn Store>>> {
    match selector {
        None => open_stores(policy),
        Some(sel) => Ok(vec![store::open(
            &policy.stores[select_store(policy, sel)?],
        )?]),
    }
}

/// A manifest that could not be read, parsed or verified.
pub struct Damaged {
    pub store: String,
    pub name: String,
    pub error: Error,
}

impl Damaged {
    /// The time in the manifest's name (`<uuid>.<YYYYmmddTHHMMSSZ>.manifest.json`), if any.
    pub fn named_time(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        let time = self.name.split('.').nth(1)?;
        chrono::NaiveDateTime::parse_from_str(time, "%Y%m%dT%H%M%SZ")
            .ok()
            .map(|t| t.and_utc())
    }
}

/// Every backup of `policy` in `stores`, oldest first. Manifests of other policies sharing a
/// store are skipped; a manifest that cannot be parsed or verified is an error naming it
/// (see [`scan`] to go on past it).
pub fn backups(policy: &Policy, stores: &[Box<dyn Store>]) -> Result<Vec<Found>> {
    let (found, mut damaged) = scan(policy, stores)?;
    match damaged.pop() {
        Some(d) => Err(d.error),
        None => Ok(found),
    }
}

/// Like [`backups`], but returns damaged manifests beside the good backups instead of
/// failing on the first, so that one bad manifest does not block every restore.
pub fn scan(policy: &Policy, stores: &[Box<dyn Store>]) -> Result<(Vec<Found>, Vec<Damaged>)> {
    let mut found: Vec<Found> = Vec::new();
    let mut damaged = Vec::new();
    for (i, store) in stores.iter().enumerate() {
        for name in store.list()? {
            if !name.ends_with(manifest::SUFFIX) {
                continue;
            }
            let read = store
                .get_bytes(&name)
                .and_then(|bytes| Manifest::parse(&name, &bytes));
            let m = match read {
                Ok(m) if m.policy_id != policy.id => continue,
                Ok(m) => m,
                Err(error) => {
                    damaged.push(Damaged {
                        store: store.describe(),
                        name,
                        error,
                    });
                    continue;
                }
            };
            if let Err(error) = check_signature(policy, &m) {
                damaged.push(Damaged {
                    store: store.describe(),
                    name,
                    error,
                });
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
    Ok((found, damaged))
}

/// Picks a backup to restore past damaged manifests that cannot be the one asked for: with
/// an id, those whose name does not start with it; for the newest, those whose name says
/// they are older than the newest good backup. Anything else fails closed, naming the
/// damaged manifest (it may be the backup wanted, or a newer one).
pub fn pick_readable(
    policy: &Policy,
    stores: &[Box<dyn Store>],
    id: Option<&str>,
) -> Result<Found> {
    let (found, damaged) = scan(policy, stores)?;
    let newest = found.last().map(|f| f.manifest.created_at);
    let blocks = |d: &Damaged| match id {
        Some(id) => d.name.starts_with(id),
        None => match (d.named_time(), newest) {
            // Same second: it could be the newer one; fail closed.
            (Some(t), Some(n)) => t.timestamp() >= n.timestamp(),
            _ => true,
        },
    };
    let (blocking, skipped): (Vec<Damaged>, Vec<Damaged>) = damaged.into_iter().partition(blocks);
    if let Some(d) = blocking.into_iter().next() {
        return Err(d.error);
    }
    for d in skipped {
        tracing::warn!(store = %d.store, manifest = %d.name, error = %d.error, "skipping a damaged manifest of another backup");
    }
    pick(policy, found, id)
}

/// The highest sequence number among `policy`'s manifests in `stores` (0 when none).
/// Unreadable or foreign manifests are skipped: a damaged old backup must not stop new ones.
pub fn max_sequence(policy: &Policy, stores: &[Box<dyn Store>]) -> Result<u64> {
    let mut max = 0;
    for store in stores {
        for name in store.list()? {
            if !name.ends_with(manifest::SUFFIX) {
                continue;
            }
            let Ok(bytes) = store.get_bytes(&name) else {
                continue;
            };
            if let Ok(m) = Manifest::parse(&name, &bytes)
                && m.policy_id == policy.id
            {
                max = max.max(m.sequence);
            }
        }
    }
    Ok(max)
}

/// With `[signing] trusted` keys, a manifest must carry a valid signature by one of them.
fn check_signature(policy: &Policy, m: &Manifest) -> Result<()> {
    if policy.signing.trusted.is_empty() {
        return Ok(());
    }
    let name = m.object_name();
    let Some(sig) = &m.signature else {
        return Err(Error::Check(format!(
            "manifest {name} is not signed, but policy {} requires a signature by a trusted key",
            policy.name
        )));
    };
    crate::keys::verify_detached(&policy.signing.trusted, sig, &m.signed_bytes()).map_err(|why| {
        Error::Check(format!(
            "manifest {name} is not signed by a trusted key ({why}); refusing it"
        ))
    })
}

/// The backup `id` (a full UUID or a unique prefix), or the newest when `id` is `None`.
/// The newest must also carry the highest sequence number: otherwise an older backup was
/// put back under a newer name (rollback), and the newest cannot be trusted.
pub fn pick(policy: &Policy, mut found: Vec<Found>, id: Option<&str>) -> Result<Found> {
    match id {
        None => {
            let newest = found.pop().ok_or_else(|| {
                Error::Config(format!(
                    "policy {} has no backups in its stores; run `lifeboat backup {}` first",
                    policy.name, policy.name
                ))
            })?;
            if let Some(f) = found
                .iter()
                .find(|f| f.manifest.sequence >= newest.manifest.sequence)
            {
                return Err(Error::Check(format!(
                    "newest backup {} has sequence {} but older backup {} has {}: a backup was rolled back or substituted",
                    newest.manifest.backup_id,
                    newest.manifest.sequence,
                    f.manifest.backup_id,
                    f.manifest.sequence
                )));
            }
            Ok(newest)
        }
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
