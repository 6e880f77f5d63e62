//! `lifeboat rotate` through the binary: hundreds of backups made at `LIFEBOAT_NOW` times over
//! months, checked against an expectation computed here independently of the library's
//! planner; a rotation interrupted at every kind of point (simulated) and by a real
//! `kill -9`, completed by the next rotation.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, TimeDelta, Timelike, Utc};
use chrono_tz::Tz;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_lifeboat");
const MANIFEST: &str = ".manifest.json";

/// An isolated world: policies dir, state dir, stores, a tiny files source.
struct World {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl World {
    /// In the target directory (a real disk, so store fsyncs take real time).
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("rotate-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap();
        let root = dir.path().to_path_buf();
        fs::create_dir_all(root.join("policies")).unwrap();
        fs::create_dir_all(root.join("source/sub")).unwrap();
        fs::write(root.join("source/a.txt"), "alpha\n").unwrap();
        fs::write(root.join("source/sub/b.txt"), "beta\n").unwrap();
        World { _dir: dir, root }
    }

    fn store(&self, name: &str) -> PathBuf {
        self.root.join("stores").join(name)
    }

    /// Writes a files policy with absolute paths; `top` goes before the tables.
    fn policy(&self, name: &str, id: &str, stores: &[&str], top: &str, retention: &str) {
        let key =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/keys/TEST-ONLY-age-recipient.txt");
        let mut text = format!(
            "name = \"{name}\"\nid = \"{id}\"\n{top}\n[source]\nkind = \"files\"\npath = \"{}\"\n",
            self.root.join("source").display()
        );
        for s in stores {
            text += &format!(
                "[[store]]\nkind = \"local\"\npath = \"{}\"\n",
                self.store(s).display()
            );
        }
        text += &format!(
            "[encryption]\nage_recipients_file = \"{}\"\n[compression]\ncodec = \"zstd\"\nlevel = 1\n{retention}\n",
            key.display()
        );
        fs::write(self.root.join(format!("policies/{name}.toml")), text).unwrap();
    }

    fn command(&self, now: DateTime<Utc>, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--policies")
            .arg(self.root.join("policies"))
            .arg("--state-dir")
            .arg(self.root.join("state"))
            .args(args)
            .env("LIFEBOAT_NOW", now.to_rfc3339())
            .env_remove("LIFEBOAT_STATE_DIR")
            .env_remove("LIFEBOAT_IDENTITY_FILE")
            .stdin(Stdio::null());
        c
    }

    fn run(&self, now: DateTime<Utc>, args: &[&str]) -> Output {
        self.command(now, args).output().unwrap()
    }

    /// Runs and expects exit 0; returns stdout.
    fn ok(&self, now: DateTime<Utc>, args: &[&str]) -> String {
        let out = self.run(now, args);
        assert!(
            out.status.success(),
            "lifeboat {args:?} at {now}: {:?}\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, now: DateTime<Utc>, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(now, args)).unwrap()
    }

    /// Backs up every policy at `now`; returns (policy, id, created_at) of each backup.
    fn backup_all(&self, now: DateTime<Utc>) -> Vec<(String, String, DateTime<Utc>)> {
        let v = self.json(now, &["backup", "--all", "--json"]);
        v.as_array()
            .unwrap()
            .iter()
            .map(|b| {
                (
                    b["policy"].as_str().unwrap().to_string(),
                    b["backup_id"].as_str().unwrap().to_string(),
                    b["created_at"].as_str().unwrap().parse().unwrap(),
                )
            })
            .collect()
    }
}

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// Store contents: backup ids with a manifest of `policy_id`, and every payload object.
struct StoreView {
    /// backup id → payload objects named by its manifest.
    manifests: BTreeMap<String, Vec<String>>,
    payloads: BTreeSet<String>,
    others: BTreeSet<String>,
}

fn view(store: &Path, policy_id: Option<&str>) -> StoreView {
    let mut v = StoreView {
        manifests: BTreeMap::new(),
        payloads: BTreeSet::new(),
        others: BTreeSet::new(),
    };
    let Ok(entries) = fs::read_dir(store) else {
        return v;
    };
    for e in entries {
        let name = e.unwrap().file_name().into_string().unwrap();
        if name.starts_with('.') {
            continue;
        }
        if name.ends_with(MANIFEST) {
            // Deleted since listed (a rotation is running): not there.
            let Ok(bytes) = fs::read(store.join(&name)) else {
                continue;
            };
            let m: Value = serde_json::from_slice(&bytes).unwrap();
            if policy_id.is_none_or(|p| m["policy_id"] == p) {
                let objects = m["payloads"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p["object"].as_str().unwrap().to_string())
                    .collect();
                v.manifests
                    .insert(m["backup_id"].as_str().unwrap().to_string(), objects);
            }
        } else if name.contains(".tar.") {
            v.payloads.insert(name);
        } else {
            v.others.insert(name);
        }
    }
    v
}

/// The invariant at every instant: each manifest's payloads are all present.
fn assert_no_manifest_without_payloads(store: &Path) {
    let v = view(store, None);
    for (id, objects) in &v.manifests {
        for o in objects {
            assert!(
                v.payloads.contains(o),
                "{}: manifest of {id} names {o}, which is missing",
                store.display()
            );
        }
    }
}

/// Payloads in `store` that no manifest names.
fn orphans(store: &Path) -> BTreeSet<String> {
    let v = view(store, None);
    let named: BTreeSet<&String> = v.manifests.values().flatten().collect();
    v.payloads
        .iter()
        .filter(|p| !named.contains(p))
        .cloned()
        .collect()
}

// ---- an independent expectation ---------------------------------------------------------

/// Retention rules as this test writes them into the policy.
#[derive(Default, Clone)]
struct Rules {
    last: Option<usize>,
    hourly: Option<usize>,
    daily: Option<usize>,
    weekly: Option<usize>,
    monthly: Option<usize>,
    yearly: Option<usize>,
    within_days: Option<i64>,
    max_age_days: Option<i64>,
}

impl Rules {
    fn toml(&self) -> String {
        let mut s = String::from("[retention]\n");
        let mut put = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                s += &format!("{k} = {v}\n");
            }
        };
        put("keep_last", self.last.map(|n| n.to_string()));
        put("keep_hourly", self.hourly.map(|n| n.to_string()));
        put("keep_daily", self.daily.map(|n| n.to_string()));
        put("keep_weekly", self.weekly.map(|n| n.to_string()));
        put("keep_monthly", self.monthly.map(|n| n.to_string()));
        put("keep_yearly", self.yearly.map(|n| n.to_string()));
        put("keep_within", self.within_days.map(|d| format!("\"{d}d\"")));
        put("max_age", self.max_age_days.map(|d| format!("\"{d}d\"")));
        s
    }
}

/// Which backups should be kept, computed the plain way: for each period rule, the distinct
/// periods (as local calendar tuples) newest first, the first n of them, and the newest
/// backup of each.
fn expect(
    backups: &[(String, DateTime<Utc>)],
    rules: &Rules,
    tz: Tz,
    now: DateTime<Utc>,
    protected: Option<&str>,
) -> BTreeSet<String> {
    let mut newest_first: Vec<&(String, DateTime<Utc>)> = backups.iter().collect();
    newest_first.sort_by(|a, b| (b.1, &b.0).cmp(&(a.1, &a.0)));
    let mut keep = BTreeSet::new();
    if let Some(n) = rules.last {
        keep.extend(newest_first.iter().take(n).map(|b| b.0.clone()));
    }
    type Period = (i32, u32, u32, u32);
    type Key = fn(DateTime<Tz>) -> Period;
    let periods: [(Option<usize>, Key); 5] = [
        (rules.hourly, |l| (l.year(), l.month(), l.day(), l.hour())),
        (rules.daily, |l| (l.year(), l.month(), l.day(), 0)),
        (rules.weekly, |l| {
            (l.iso_week().year(), l.iso_week().week(), 0, 0)
        }),
        (rules.monthly, |l| (l.year(), l.month(), 0, 0)),
        (rules.yearly, |l| (l.year(), 0, 0, 0)),
    ];
    for (n, key) in periods {
        let Some(n) = n else { continue };
        let mut by_period: BTreeMap<Period, Vec<&(String, DateTime<Utc>)>> = BTreeMap::new();
        for b in backups {
            by_period
                .entry(key(b.1.with_timezone(&tz)))
                .or_default()
                .push(b);
        }
        for (_, members) in by_period.iter().rev().take(n) {
            let newest = members.iter().max_by_key(|b| (b.1, &b.0)).unwrap();
            keep.insert(newest.0.clone());
        }
    }
    if let Some(d) = rules.within_days {
        for b in backups {
            if b.1 > now - TimeDelta::days(d) {
                keep.insert(b.0.clone());
            }
        }
    }
    if let Some(d) = rules.max_age_days {
        let limit = now - TimeDelta::days(d);
        keep.retain(|id| backups.iter().find(|b| &b.0 == id).unwrap().1 >= limit);
    }
    if let Some(b) = newest_first.first() {
        keep.insert(b.0.clone());
    }
    if let Some(p) = protected
        && backups.iter().any(|b| b.0 == p)
    {
        keep.insert(p.to_string());
    }
    keep
}

/// (keep ids, delete ids) of one policy's entry in `rotate --json` output.
fn plan_ids(entry: &Value) -> (BTreeSet<String>, BTreeSet<String>) {
    let ids = |k: &str| {
        entry[k]
            .as_array()
            .unwrap_or_else(|| panic!("no {k} in {entry}"))
            .iter()
            .map(|b| b["id"].as_str().unwrap().to_string())
            .collect()
    };
    (ids("keep"), ids("delete"))
}

fn entry<'a>(plans: &'a Value, policy: &str) -> &'a Value {
    plans
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["policy"] == policy)
        .unwrap()
}

const ID_A: &str = "0a5b6c7d-1111-4e0a-b6d3-2a7f9c1e4b58";
const ID_B: &str = "0b5b6c7d-2222-4e0a-b6d3-2a7f9c1e4b58";

#[test]
fn hundreds_of_backups_over_months_match_an_independent_expectation() {
    let w = World::new();
    let rules_a = Rules {
        last: Some(5),
        hourly: Some(6),
        daily: Some(10),
        weekly: Some(6),
        monthly: Some(4),
        within_days: Some(2),
        max_age_days: Some(100),
        ..Rules::default()
    };
    let rules_b = Rules {
        daily: Some(14),
        weekly: Some(8),
        monthly: Some(3),
        yearly: Some(2),
        ..Rules::default()
    };
    // A: UTC, two stores. B: Paris time, sharing A's first store (its manifests must be
    // left alone by A's rotation and the other way round).
    w.policy("alpha", ID_A, &["one", "two"], "", &rules_a.toml());
    w.policy(
        "bravo",
        ID_B,
        &["one"],
        "timezone = \"Europe/Paris\"",
        &rules_b.toml(),
    );
    let paris: Tz = "Europe/Paris".parse().unwrap();

    // Backups from December to mid-May (across the new year and Paris's switch to summer
    // time) every 5 to 13 hours, with a ten-day outage in February: about 400 runs.
    let started = Instant::now();
    let mut made: BTreeMap<String, Vec<(String, DateTime<Utc>)>> = BTreeMap::new();
    let mut at = t("2025-12-01T21:17:00Z");
    let end = t("2026-05-15T00:00:00Z");
    let mid = t("2026-03-10T12:00:00Z");
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut mid_done = false;
    let mut protected = None;
    while at < end {
        if !mid_done && at > mid {
            // A cron-like rotation half-way; the expectation below accounts for it.
            let plans = w.json(mid, &["rotate", "--all", "--json"]);
            for (policy, rules, tz) in [("alpha", &rules_a, Tz::UTC), ("bravo", &rules_b, paris)] {
                let before = made[policy].clone();
                let p = if policy == "alpha" {
                    protected.as_deref()
                } else {
                    None
                };
                let keep = expect(&before, rules, tz, mid, p);
                let (got_keep, got_delete) = plan_ids(entry(&plans, policy));
                assert_eq!(got_keep, keep, "{policy} at the mid-way rotation");
                assert_eq!(got_keep.len() + got_delete.len(), before.len());
                made.get_mut(policy)
                    .unwrap()
                    .retain(|b| keep.contains(&b.0));
            }
            mid_done = true;
        }
        let outage = at > t("2026-02-03T00:00:00Z") && at < t("2026-02-13T00:00:00Z");
        if !outage {
            for (policy, id, created) in w.backup_all(at) {
                made.entry(policy).or_default().push((id, created));
            }
        }
        if protected.is_none() && made.get("alpha").is_some_and(|v| v.len() == 7) {
            // A verified old backup: kept whatever the rules say.
            let id = made["alpha"][2].0.clone();
            w.ok(at, &["verify", "alpha", "--id", &id, "--level", "checksum"]);
            protected = Some(id);
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        at += TimeDelta::minutes(300 + (seed % 480) as i64);
    }
    let total: usize = made.values().map(Vec::len).sum();
    eprintln!(
        "made {total} backups left after the mid-way rotation in {:?}",
        started.elapsed()
    );
    assert!(made["alpha"].len() > 150, "{}", made["alpha"].len());

    let now = t("2026-05-16T08:00:00Z");
    let expected_a = expect(&made["alpha"], &rules_a, Tz::UTC, now, protected.as_deref());
    let expected_b = expect(&made["bravo"], &rules_b, paris, now, None);
    // The rules really do delete, and the protected backup is among the kept.
    assert!(expected_a.len() < made["alpha"].len() / 3);
    assert!(expected_a.contains(protected.as_ref().unwrap()));

    // The dry run's plan.
    let plans = w.json(now, &["rotate", "--all", "--dry-run", "--json"]);
    for (policy, expected) in [("alpha", &expected_a), ("bravo", &expected_b)] {
        let e = entry(&plans, policy);
        let (keep, delete) = plan_ids(e);
        assert_eq!(&keep, expected, "{policy}: kept");
        let all: BTreeSet<String> = made[policy].iter().map(|b| b.0.clone()).collect();
        assert_eq!(delete, &all - expected, "{policy}: deleted");
        for k in e["keep"].as_array().unwrap() {
            assert!(!k["reasons"].as_array().unwrap().is_empty(), "{k}");
            assert!(k["created_at"].is_string());
        }
        for d in e["delete"].as_array().unwrap() {
            assert_eq!(
                d.as_object().unwrap().len(),
                2,
                "delete: id and created_at: {d}"
            );
        }
    }
    let alpha = entry(&plans, "alpha");
    let reasons = |id: &str| -> Vec<String> {
        alpha["keep"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["id"] == id)
            .unwrap()["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(reasons(protected.as_ref().unwrap()), ["newest verified"]);
    let newest = &alpha["keep"][0];
    assert!(reasons(newest["id"].as_str().unwrap()).contains(&"newest".to_string()));
    // A dry run deleted nothing.
    assert_eq!(
        view(&w.store("one"), Some(ID_A)).manifests.len(),
        made["alpha"].len()
    );

    // One NAME prints one object, in the same shape.
    let single = w.json(now, &["rotate", "bravo", "--dry-run", "--json"]);
    assert_eq!(single["policy"], "bravo");
    assert_eq!(plan_ids(&single).0, expected_b);

    // The human output: one line per backup.
    let human = w.ok(now, &["rotate", "alpha", "--dry-run"]);
    let keep_lines = human.lines().filter(|l| l.starts_with("keep ")).count();
    let delete_lines = human.lines().filter(|l| l.starts_with("delete ")).count();
    assert_eq!(keep_lines, expected_a.len());
    assert_eq!(delete_lines, made["alpha"].len() - expected_a.len());
    let protected_id = protected.as_ref().unwrap();
    let protected_at = made["alpha"]
        .iter()
        .find(|b| &b.0 == protected_id)
        .unwrap()
        .1;
    let protected_line = format!(
        "keep {protected_id} {} (newest verified)",
        protected_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    assert!(human.contains(&protected_line), "{human}");

    // The real rotation: the stores hold exactly the kept backups, complete, and nothing
    // else; the catalog lists exactly them.
    w.ok(now, &["rotate", "--all"]);
    for (store, policy, id, expected) in [
        ("one", "alpha", ID_A, &expected_a),
        ("two", "alpha", ID_A, &expected_a),
        ("one", "bravo", ID_B, &expected_b),
    ] {
        let v = view(&w.store(store), Some(id));
        let ids: BTreeSet<String> = v.manifests.keys().cloned().collect();
        assert_eq!(&ids, expected, "{policy} in store {store}");
        assert_no_manifest_without_payloads(&w.store(store));
        assert!(orphans(&w.store(store)).is_empty(), "{store}");
        let listed: BTreeSet<String> = w
            .json(now, &["list", policy, "--json"])
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(&listed, expected, "{policy} in the catalog");
    }

    // Idempotent: the next rotation, at the same time, deletes nothing.
    let again = w.json(now, &["rotate", "--all", "--dry-run", "--json"]);
    for policy in ["alpha", "bravo"] {
        assert!(plan_ids(entry(&again, policy)).1.is_empty(), "{policy}");
    }

    // Every kept backup is complete; once they are all verified, the newest verified is the
    // newest, and the old verified one is no longer protected.
    let v = w.json(now, &["verify", "alpha", "--all", "--json"]);
    assert_eq!(v.as_array().unwrap().len(), expected_a.len());
    assert!(v.as_array().unwrap().iter().all(|v| v["ok"] == true));
    let later = w.json(now, &["rotate", "alpha", "--dry-run", "--json"]);
    assert_eq!(plan_ids(&later).1, BTreeSet::from([protected_id.clone()]));
}

#[test]
fn no_retention_table_keeps_everything() {
    let w = World::new();
    w.policy("alpha", ID_A, &["one"], "", "");
    let start = t("2026-01-01T03:00:00Z");
    for d in 0..5 {
        w.backup_all(start + TimeDelta::days(d * 40));
    }
    let now = t("2027-06-01T00:00:00Z");
    let plan = w.json(now, &["rotate", "alpha", "--json"]);
    assert_eq!(plan["keep"].as_array().unwrap().len(), 5);
    assert!(plan["delete"].as_array().unwrap().is_empty());
    assert_eq!(view(&w.store("one"), Some(ID_A)).manifests.len(), 5);
}

/// Five daily backups in two stores, `keep_last = 2`; returns them oldest first.
fn small_world() -> (World, Vec<(String, DateTime<Utc>)>) {
    let w = World::new();
    let rules = Rules {
        last: Some(2),
        ..Rules::default()
    };
    w.policy("alpha", ID_A, &["one", "two"], "", &rules.toml());
    let backups = (0..5)
        .map(|d| {
            let b = w.backup_all(t("2026-06-01T03:00:00Z") + TimeDelta::days(d));
            (b[0].1.clone(), b[0].2)
        })
        .collect();
    (w, backups)
}

#[test]
fn an_interrupted_rotation_is_completed_by_the_next() {
    let (w, backups) = small_world();
    let now = t("2026-06-08T12:00:00Z");
    let one = w.store("one");
    let two = w.store("two");
    let manifest_of = |store: &Path, i: usize| {
        let (id, at) = &backups[i];
        store.join(format!("{id}.{}{MANIFEST}", at.format("%Y%m%dT%H%M%SZ")))
    };
    let payloads_of =
        |store: &Path, i: usize| view(store, Some(ID_A)).manifests[&backups[i].0].clone();

    // Backup 0: killed between its manifest and its payloads in store one, before store two.
    let p0 = payloads_of(&one, 0);
    fs::remove_file(manifest_of(&one, 0)).unwrap();
    // Backup 1: killed after both stores, before the catalog forgot it.
    for s in [&one, &two] {
        let p = payloads_of(s, 1);
        fs::remove_file(manifest_of(s, 1)).unwrap();
        for o in p {
            fs::remove_file(s.join(o)).unwrap();
        }
    }
    // Backup 2: manifests gone from both stores, payloads left, still in the catalog.
    let p2 = payloads_of(&one, 2);
    for s in [&one, &two] {
        fs::remove_file(manifest_of(s, 2)).unwrap();
    }
    // A backup that crashed before its manifest, two days ago (swept), and one an hour ago
    // (perhaps still running: left alone); an unrelated file (never touched).
    let old = format!(
        "5d0c7c4e-8a3b-4b8e-9a52-0f6f3b1f2a10.{}.tar.zst.age",
        (now - TimeDelta::days(2)).format("%Y%m%dT%H%M%SZ")
    );
    let young = format!(
        "6e1d8d5f-9b4c-4c9f-8b63-1a7a4c2a3b21.{}.tar.gz.gpg",
        (now - TimeDelta::hours(1)).format("%Y%m%dT%H%M%SZ")
    );
    fs::write(one.join(&old), b"partial").unwrap();
    fs::write(one.join(&young), b"partial").unwrap();
    fs::write(one.join("NOTES.txt"), b"do not touch").unwrap();
    // Every state above keeps the invariant.
    assert_no_manifest_without_payloads(&one);
    assert_no_manifest_without_payloads(&two);
    // The stale catalog still lists what is gone.
    assert_eq!(
        w.json(now, &["list", "--json"]).as_array().unwrap().len(),
        5
    );

    let human = w.ok(now, &["rotate", "alpha"]);
    assert!(human.contains(&format!("removed orphan {old}")), "{human}");
    for (id, _) in backups.iter().take(3) {
        assert!(!human.contains(&format!("keep {id}")), "{human}");
    }

    let kept: BTreeSet<String> = backups[3..].iter().map(|b| b.0.clone()).collect();
    for s in [&one, &two] {
        let v = view(s, Some(ID_A));
        assert_eq!(v.manifests.keys().cloned().collect::<BTreeSet<_>>(), kept);
        assert_no_manifest_without_payloads(s);
    }
    assert_eq!(orphans(&one), BTreeSet::from([young.clone()]));
    assert!(orphans(&two).is_empty());
    for o in p0.iter().chain(&p2) {
        assert!(!one.join(o).exists() && !two.join(o).exists(), "{o} left");
    }
    assert!(one.join("NOTES.txt").exists());
    let listed: BTreeSet<String> = w
        .json(now, &["list", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, kept);
    let verified = w.json(now, &["verify", "alpha", "--all", "--json"]);
    assert_eq!(verified.as_array().unwrap().len(), 2);
    assert!(verified.as_array().unwrap().iter().all(|v| v["ok"] == true));

    // The young orphan goes once it is more than a day old.
    w.ok(now + TimeDelta::days(1), &["rotate", "alpha"]);
    assert!(orphans(&one).is_empty());
}

#[test]
fn rotate_needs_a_known_policy_or_all() {
    let (w, _) = small_world();
    let out = w.run(t("2026-06-08T12:00:00Z"), &["rotate", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    let out = w.run(t("2026-06-08T12:00:00Z"), &["rotate"]);
    assert_eq!(out.status.code(), Some(2), "a name or --all is required");
}

#[test]
fn kill_9_in_the_middle_of_a_large_rotation() {
    let w = World::new();
    let rules = Rules {
        last: Some(1),
        ..Rules::default()
    };
    w.policy("alpha", ID_A, &["one", "two", "three"], "", &rules.toml());
    let start = t("2026-06-01T00:00:00Z");
    let n = 150;
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(w.backup_all(start + TimeDelta::minutes(7 * i))[0].1.clone());
    }
    let now = t("2026-06-05T00:00:00Z");
    let stores: Vec<PathBuf> = ["one", "two", "three"].iter().map(|s| w.store(s)).collect();
    let count = |s: &Path| view(s, Some(ID_A)).manifests.len();

    let mut interrupted = 0;
    for attempt in 1..=4 {
        let before = count(&stores[0]);
        let mut child = w
            .command(now, &["rotate", "alpha"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Wait until the rotation has deleted some backups, then kill -9 (SIGKILL).
        let target = before.saturating_sub(5 * attempt);
        let deadline = Instant::now() + Duration::from_secs(60);
        while count(&stores[0]) > target && Instant::now() < deadline {
            if child.try_wait().unwrap().is_some() {
                break;
            }
        }
        if child.try_wait().unwrap().is_none() {
            let _ = child.kill();
            interrupted += 1;
        }
        child.wait().unwrap();
        // Whatever the point, no manifest names a missing payload.
        for s in &stores {
            assert_no_manifest_without_payloads(s);
        }
        // Verification (which reads the stores) passes for every listed backup.
        let v = w.json(now, &["verify", "alpha", "--all", "--json"]);
        assert!(v.as_array().unwrap().iter().all(|v| v["ok"] == true));
    }
    eprintln!("{interrupted} of 4 rotations killed while running");
    assert!(interrupted > 0, "no rotation was still running when killed");

    w.ok(now, &["rotate", "alpha"]);
    let newest = ids.last().unwrap();
    for s in &stores {
        let v = view(s, Some(ID_A));
        assert_eq!(v.manifests.keys().collect::<Vec<_>>(), [newest]);
        assert!(orphans(s).is_empty(), "{}", s.display());
        assert_eq!(v.payloads.len(), 1);
    }
    let listed = w.json(now, &["list", "--json"]);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["id"], newest.as_str());
}
