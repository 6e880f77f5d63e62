//! Rotation: carries out the [`crate::retention`] plan of a policy in every one of its
//! stores, then in the catalog, and sweeps payloads that crashed backups left behind.
//!
//! # Ordering, and why an interruption is always safe
//!
//! The invariant kept at every instant, in every store, is the one backups already rely on:
//! **a manifest is present only when all its payloads are**. A backup writes its payloads
//! first and its manifest last; rotation undoes that in reverse:
//!
//! 1. the policy's lock is taken (no backup of the policy runs meanwhile);
//! 2. the backups are read from the stores (the stores are the truth, the catalog a cache)
//!    and the plan is made at the clock's `now`, protecting the newest proven backup named by
//!    the catalog;
//! 3. for each deleted backup, oldest first, and for each store of the policy in turn: the
//!    **manifest is deleted first** (each deletion is durable, see the store), so the backup
//!    stops being listed there, **then its payloads**; then the backup is forgotten by the
//!    catalog;
//! 4. the catalog is reconciled with the stores: backups no longer in any store are
//!    forgotten, backups kept are refreshed (which stores hold them);
//! 5. orphan payloads — named like a payload, `<uuid>.<YYYYmmddTHHMMSSZ>.tar.<zst|gz>.<age|gpg>`,
//!    with no `<uuid>.<time>.manifest.json` beside them in the same store — whose name time is
//!    more than a day before `now` are deleted. They are what a backup that crashed before its
//!    manifest leaves, or what step 3 leaves when interrupted between a manifest and its
//!    payloads. The day of grace keeps payloads of a backup still being written (by any policy
//!    sharing the store, whose lock this run does not hold) out of reach.
//!
//! A rotation killed at any point (even `kill -9`) therefore leaves, in each store, backups
//! that are complete and payloads without a manifest. The next rotation lists only the
//! complete backups, deletes again whatever its plan deletes (deleting an absent object is
//! not an error), reconciles the catalog (step 4) and sweeps the leftovers (step 5). Between
//! the two runs a backup interrupted half-way may still be listed by the catalog (a cache),
//! never by the stores; `verify` and `restore` read the stores.
//!
//! Temporary objects of local stores (`.tmp.…`) are not swept here: the `Store` interface
//! does not list them.

use std::collections::HashSet;

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use uuid::Uuid;

use crate::catalog::Catalog;
use crate::clock::Clock;
use crate::error::Result;
use crate::inventory::{self, Found};
use crate::manifest;
use crate::policy::Policy;
use crate::retention::{self, BackupInfo, Plan};
use crate::state::StateDir;
use crate::store::Store;

/// How old (by the time in its name) a payload without manifest must be to be swept.
pub const ORPHAN_GRACE: TimeDelta = TimeDelta::hours(24);

/// What a rotation planned, and did unless it was a dry run.
#[derive(Debug, Clone, Serialize)]
pub struct RotateOutcome {
    pub policy: String,
    pub dry_run: bool,
    pub plan: Plan,
    /// Payloads without a manifest removed (or, for a dry run, to be removed).
    pub orphans: Vec<Orphan>,
    /// Backups (and orphans) the plan deletes but a store keeps under a retention lock
    /// (S3 Object Lock): left in place in that store, deleted by a later rotation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub locked: Vec<Locked>,
}

/// Something rotation did not delete from one store because it is locked until `until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Locked {
    pub store: String,
    /// The backup, or `None` for an orphan payload.
    pub backup_id: Option<String>,
    /// The object whose lock ends last (the manifest, for a backup).
    pub object: String,
    pub until: DateTime<Utc>,
}

/// A payload without a manifest in one store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Orphan {
    pub store: String,
    pub object: String,
}

/// Rotates `policy`: plans at `clock.now()` and, unless `dry_run`, deletes what the plan
/// deletes from every store and the catalog, and sweeps orphan payloads. Holds the policy's
/// lock throughout.
pub fn rotate(
    policy: &Policy,
    state: &StateDir,
    catalog: &Catalog,
    clock: &Clock,
    dry_run: bool,
) -> Result<RotateOutcome> {
    let _lock = state.lock(policy)?;
    let now = clock.now();
    let stores = inventory::open_stores(policy)?;
    let found = inventory::backups(policy, &stores)?;
    let protected = catalog.newest_proven_backup(&policy.name)?;
    let infos: Vec<BackupInfo> = found
        .iter()
        .map(|f| BackupInfo {
            id: f.manifest.backup_id.to_string(),
            created_at: f.manifest.created_at,
        })
        .collect();
    let plan = retention::plan(
        &infos,
        &policy.retention,
        policy.timezone.unwrap_or(Tz::UTC),
        now,
        protected.as_deref(),
    );

    let doomed: HashSet<&str> = plan.delete.iter().map(|d| d.id.as_str()).collect();
    let mut locked = Vec::new();
    // Backups the plan deletes that a locked store still holds, with those stores.
    let mut held: Vec<(&Found, Vec<usize>)> = Vec::new();
    // `found` is oldest first.
    for f in &found {
        let id = f.manifest.backup_id.to_string();
        if !doomed.contains(id.as_str()) {
            continue;
        }
        let locks = backup_locks(&stores, f)?;
        for (i, object, until) in &locks {
            locked.push(Locked {
                store: stores[*i].describe(),
                backup_id: Some(id.clone()),
                object: object.clone(),
                until: *until,
            });
        }
        let locked_in: Vec<usize> = locks.iter().map(|l| l.0).collect();
        if !dry_run {
            delete_backup(&stores, f, &locked_in)?;
            if locked_in.is_empty() {
                catalog.forget_backup(&id)?;
            }
        }
        if !locked_in.is_empty() {
            held.push((f, locked_in));
        }
    }
    if !dry_run {
        reconcile_catalog(policy, catalog, &stores, &found, &doomed, &held)?;
    }

    let mut orphans = Vec::new();
    for store in &stores {
        for object in orphan_payloads(store.as_ref(), now)? {
            if let Some(until) = store.locked_until(&object)? {
                locked.push(Locked {
                    store: store.describe(),
                    backup_id: None,
                    object,
                    until,
                });
                continue;
            }
            if !dry_run {
                store.delete(&object)?;
            }
            orphans.push(Orphan {
                store: store.describe(),
                object,
            });
        }
    }

    Ok(RotateOutcome {
        policy: policy.name.clone(),
        dry_run,
        plan,
        orphans,
        locked,
    })
}

/// The stores (by index) where some object of backup `f` is under a retention lock, each
/// with the object whose lock ends last and when. Deleting there would fail (and deleting
/// only part of a backup would break the manifest-last invariant), so rotation skips them.
fn backup_locks(
    stores: &[Box<dyn Store>],
    f: &Found,
) -> Result<Vec<(usize, String, DateTime<Utc>)>> {
    let mut out = Vec::new();
    let names = std::iter::once(f.manifest.object_name())
        .chain(f.manifest.payloads.iter().map(|p| p.object.clone()));
    let names: Vec<String> = names.collect();
    for (i, store) in stores.iter().enumerate() {
        let mut last: Option<(String, DateTime<Utc>)> = None;
        for name in &names {
            if let Some(until) = store.locked_until(name)?
                && last.as_ref().is_none_or(|(_, t)| until > *t)
            {
                last = Some((name.clone(), until));
            }
        }
        if let Some((object, until)) = last {
            out.push((i, object, until));
        }
    }
    Ok(out)
}

/// Deletes one backup from every store except the `locked` ones: in each, the manifest
/// first, then the payloads.
fn delete_backup(stores: &[Box<dyn Store>], f: &Found, locked: &[usize]) -> Result<()> {
    let name = f.manifest.object_name();
    for (i, store) in stores.iter().enumerate() {
        if locked.contains(&i) {
            continue;
        }
        store.delete(&name)?;
        for p in &f.manifest.payloads {
            store.delete(&p.object)?;
        }
    }
    Ok(())
}

/// Makes the catalog's backups of `policy` those the stores hold after the deletions.
fn reconcile_catalog(
    policy: &Policy,
    catalog: &Catalog,
    stores: &[Box<dyn Store>],
    found: &[Found],
    doomed: &HashSet<&str>,
    held: &[(&Found, Vec<usize>)],
) -> Result<()> {
    let mut present = HashSet::new();
    // Deleted elsewhere, still in the stores that lock it: listed there until it goes.
    for (f, locked_in) in held {
        let described: Vec<String> = locked_in.iter().map(|&i| stores[i].describe()).collect();
        catalog.record_backup(&policy.name, &f.manifest, &described)?;
        present.insert(f.manifest.backup_id.to_string());
    }
    for f in found {
        let id = f.manifest.backup_id.to_string();
        if doomed.contains(id.as_str()) {
            continue;
        }
        let described: Vec<String> = f.stores.iter().map(|&i| stores[i].describe()).collect();
        catalog.record_backup(&policy.name, &f.manifest, &described)?;
        present.insert(id);
    }
    for row in catalog.list(Some(&policy.name))? {
        if !present.contains(&row.id) {
            catalog.forget_backup(&row.id)?;
        }
    }
    Ok(())
}

/// Payloads in `store` with no manifest of the same stem, named with a time more than
/// [`ORPHAN_GRACE`] before `now`. Objects not named like a payload are never touched.
pub fn orphan_payloads(store: &dyn Store, now: DateTime<Utc>) -> Result<Vec<String>> {
    let names = store.list()?;
    let stems: HashSet<&str> = names
        .iter()
        .filter_map(|n| n.strip_suffix(manifest::SUFFIX))
        .collect();
    Ok(names
        .iter()
        .filter_map(|n| {
            let (stem, at) = payload_stem(n)?;
            (!stems.contains(stem) && at + ORPHAN_GRACE < now).then(|| n.clone())
        })
        .collect())
}

/// The stem and the time of a payload name `<uuid>.<YYYYmmddTHHMMSSZ>.tar.<zst|gz>.<age|gpg>`.
pub fn payload_stem(name: &str) -> Option<(&str, DateTime<Utc>)> {
    let parts: Vec<&str> = name.split('.').collect();
    let [id, time, "tar", "zst" | "gz", "age" | "gpg"] = parts.as_slice() else {
        return None;
    };
    Uuid::parse_str(id).ok()?;
    if id.len() != 36 {
        return None;
    }
    let at = NaiveDateTime::parse_from_str(time, "%Y%m%dT%H%M%SZ")
        .ok()?
        .and_utc();
    Some((&name[..id.len() + 1 + time.len()], at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_names_are_recognised() {
        let id = "5d0c7c4e-8a3b-4b8e-9a52-0f6f3b1f2a10";
        let name = format!("{id}.20260609T030000Z.tar.zst.age");
        let (stem, at) = payload_stem(&name).unwrap();
        assert_eq!(stem, format!("{id}.20260609T030000Z"));
        assert_eq!(at, "2026-06-09T03:00:00Z".parse::<DateTime<Utc>>().unwrap());
        assert!(payload_stem(&format!("{id}.20260609T030000Z.tar.gz.gpg")).is_some());
        for bad in [
            format!("{id}.20260609T030000Z.manifest.json"),
            format!("{id}.20260609T030000Z.tar.xz.age"),
            format!("{id}.2026-06-09.tar.zst.age"),
            "notes.txt".to_string(),
            "x.20260609T030000Z.tar.zst.age".to_string(),
            format!("{id}.20260609T030000Z.tar.zst.age.bak"),
        ] {
            assert!(payload_stem(&bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn orphans_are_swept_after_a_day_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::LocalStore::new(dir.path().to_path_buf());
        let now: DateTime<Utc> = "2026-06-10T12:00:00Z".parse().unwrap();
        let a = "5d0c7c4e-8a3b-4b8e-9a52-0f6f3b1f2a10";
        let b = "6e1d8d5f-9b4c-4c9f-8b63-1a7a4c2a3b21";
        let c = "7f2e9e6a-ac5d-4da0-9c74-2b8b5d3b4c32";
        for name in [
            format!("{a}.20260601T030000Z.tar.zst.age"), // old, with manifest: kept
            format!("{a}.20260601T030000Z.manifest.json"),
            format!("{b}.20260601T030000Z.tar.zst.age"), // old orphan: swept
            format!("{b}.20260601T030000Z.tar.zst.gpg"), // old orphan: swept
            format!("{c}.20260610T000000Z.tar.gz.age"),  // young orphan: kept
            "README".to_string(),
        ] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        let mut swept = orphan_payloads(&store, now).unwrap();
        swept.sort();
        assert_eq!(
            swept,
            [
                format!("{b}.20260601T030000Z.tar.zst.age"),
                format!("{b}.20260601T030000Z.tar.zst.gpg"),
            ]
        );
    }
}
