//! Drills: restore the newest backup into scratch space (never production), time every
//! phase with a monotonic clock, measure RTO (start → verified copy) and RPO (start −
//! `captured_at`), compare them with the policy's objectives and record the result.
//!
//! A drill that fails to restore its backup reports that failure; it never falls back to
//! an older backup quietly.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::catalog::{Catalog, KeyProof};
use crate::clock::Clock;
use crate::error::{Error, ErrorKind, Result};
use crate::inventory::{self, Found};
use crate::keys::Identities;
use crate::manifest::Private;
use crate::policy::{PgMode, PgSource, Policy, SourceSpec};
use crate::restore::{Staging, check_restored, unpack_payload};
use crate::state::StateDir;
use crate::store::Store;
use crate::verify::{check_expectations, full_check};

/// One measured objective.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Objective {
    /// The policy's target, when it sets one.
    pub target_seconds: Option<f64>,
    /// What was measured; `None` when the drill failed before it could be.
    pub measured_seconds: Option<f64>,
    pub passed: bool,
}

impl Objective {
    fn new(target: Option<Duration>, measured: Option<f64>) -> Self {
        let target_seconds = target.map(|t| t.as_secs_f64());
        let passed = match (target_seconds, measured) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(t), Some(m)) => m <= t,
        };
        Objective {
            target_seconds,
            measured_seconds: measured,
            passed,
        }
    }
}

/// A timed phase of a drill.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Phase {
    pub name: String,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Bytes {
    /// Size of the stored payload.
    pub stored: u64,
    /// Size of the restored archive.
    pub restored: u64,
}

/// Proof that one identity alone decrypts the backup (`--each-identity`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IdentityProof {
    pub file: PathBuf,
    pub fingerprints: Vec<String>,
    pub ok: bool,
    pub failure: Option<String>,
}

/// The result of one drill, as printed by `drill --json` and kept in the catalog.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DrillResult {
    pub policy: String,
    pub backup_id: Option<String>,
    pub started_at: DateTime<Utc>,
    pub captured_at: Option<DateTime<Utc>>,
    pub passed: bool,
    pub rto: Objective,
    pub rpo: Objective,
    pub phases: Vec<Phase>,
    /// SQLite policies: the check the `integrity_check` phase ran (`[verify] sqlite_check`:
    /// `integrity_check` or `quick_check`), as it decides much of the RTO.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlite_check: Option<String>,
    pub bytes: Bytes,
    pub failure: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept_at: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identities: Vec<IdentityProof>,
    /// The kind of the failure, deciding the exit code (not part of the JSON).
    #[serde(skip)]
    pub failure_kind: Option<ErrorKind>,
}

impl DrillResult {
    /// 0 passed; 1 breach or failed check; 2 configuration; 3 runtime.
    pub fn exit_code(&self) -> u8 {
        match self.failure_kind {
            Some(k) => k.exit_code(),
            None if self.passed => 0,
            None => 1,
        }
    }
}

/// What `drill` should do.
#[derive(Debug, Clone, Default)]
pub struct DrillOptions {
    /// Drill this backup instead of the newest.
    pub id: Option<String>,
    /// Keep the scratch copy.
    pub keep: bool,
    /// Identity files to prove one by one (`--each-identity`).
    pub each_identity: Vec<PathBuf>,
    /// Fetch from this store only (`--store`: `s3`, `s3:2`, `1`; see
    /// [`inventory::select_store`]), e.g. to prove the off-site copy restores.
    pub store: Option<String>,
    pub progress: crate::progress::Progress,
}

/// Runs a drill of `policy` and records it in the catalog.
pub fn drill(
    policy: &Policy,
    ids: &Identities,
    state: &StateDir,
    catalog: &Catalog,
    clock: &Clock,
    opts: &DrillOptions,
) -> Result<DrillResult> {
    let started_at = clock.now();
    let start = Instant::now();
    let mut result = DrillResult {
        policy: policy.name.clone(),
        backup_id: None,
        started_at,
        captured_at: None,
        passed: false,
        rto: Objective::new(policy.objectives.rto, None),
        rpo: Objective::new(policy.objectives.rpo, None),
        phases: Vec::new(),
        sqlite_check: matches!(policy.source, crate::policy::SourceSpec::Sqlite { .. })
            .then(|| policy.expectations.sqlite_check.pragma().to_string()),
        bytes: Bytes::default(),
        failure: None,
        kept_at: None,
        identities: Vec::new(),
        failure_kind: None,
    };
    if let Err(e) = run(policy, ids, state, opts, start, &mut result) {
        result.passed = false;
        result.failure = Some(e.to_string());
        result.failure_kind = Some(e.kind());
    }
    if result.failure.is_none() && !opts.each_identity.is_empty() {
        prove_each_identity(policy, catalog, clock, opts, &mut result)?;
    }
    let json = serde_json::to_value(&result).expect("drill result serializes");
    catalog.record_drill(
        &policy.name,
        result.backup_id.as_deref(),
        started_at,
        result.passed,
        &json,
    )?;
    Ok(result)
}

fn run(
    policy: &Policy,
    ids: &Identities,
    state: &StateDir,
    opts: &DrillOptions,
    start: Instant,
    result: &mut DrillResult,
) -> Result<()> {
    if let SourceSpec::Postgres(pg) = &policy.source {
        return run_postgres(policy, pg, ids, state, opts, start, result);
    }
    let mut stopwatch = Stopwatch { start, last: start };
    let scratch = scratch_dir(policy, state)?;

    let Located {
        stores,
        found,
        private,
    } = locate(policy, ids, opts, result, |_, found| {
        Ok(found.manifest.captured_at)
    })?;
    let staging = Staging::inside(&scratch, "drill")?;
    result.phases.push(stopwatch.lap("fetch"));

    result.bytes.restored = unpack_payload(
        &stores,
        &found,
        ids,
        &private,
        staging.path(),
        &opts.progress,
    )?;
    result.phases.push(stopwatch.lap("decrypt+decompress"));

    let item = check_restored(policy, staging.path(), &private)?;
    result.phases.push(stopwatch.lap("integrity_check"));

    check_expectations(policy, &item)?;
    result.phases.push(stopwatch.lap("expectations"));

    stopwatch.conclude(policy, result);
    if opts.keep {
        result.kept_at = Some(staging.keep());
    }
    Ok(())
}

/// A PostgreSQL drill: a logical dump restored into a scratch database on `[drill]
/// scratch_url`, or a base backup run by a temporary server that replays the archived WAL
/// (see [`crate::source::postgres::drill`]). Dropping the database or stopping the server
/// comes after the last phase, outside the RTO.
fn run_postgres(
    policy: &Policy,
    pg: &PgSource,
    ids: &Identities,
    state: &StateDir,
    opts: &DrillOptions,
    start: Instant,
    result: &mut DrillResult,
) -> Result<()> {
    let mut stopwatch = Stopwatch { start, last: start };
    // A physical drill's server runs as the server's OS user, who cannot enter the private
    // scratch space: it makes its own directory (see the postgres module).
    let scratch = match pg.mode {
        PgMode::Logical => scratch_dir(policy, state)?,
        PgMode::Physical => state.scratch(),
    };
    let Located {
        stores,
        found,
        private,
    } = locate(policy, ids, opts, result, |stores, found| {
        crate::source::postgres::rpo_reference(policy, pg, stores, found)
    })?;
    let mut phases = Vec::new();
    let outcome = crate::source::postgres::drill(
        policy,
        pg,
        &stores,
        &found,
        ids,
        &private,
        &scratch,
        opts.keep,
        &opts.progress,
        &mut |name| phases.push(stopwatch.lap(name)),
    );
    result.phases.extend(phases);
    let outcome = outcome?;
    result.bytes.restored = outcome.restored;
    stopwatch.conclude(policy, result);
    result.kept_at = outcome.kept_at;
    Ok(())
}

/// The backup a drill restores, with what it needs to read it.
struct Located {
    stores: Vec<Box<dyn Store>>,
    found: Found,
    private: Private,
}

/// Finds the backup to drill (the newest, or `--id`) in the selected stores, records it in
/// `result` with the RPO measured from `rpo_from`, and reads its private manifest.
fn locate(
    policy: &Policy,
    ids: &Identities,
    opts: &DrillOptions,
    result: &mut DrillResult,
    rpo_from: impl FnOnce(&[Box<dyn Store>], &Found) -> Result<DateTime<Utc>>,
) -> Result<Located> {
    let stores = inventory::open_selected(policy, opts.store.as_deref())?;
    let found = inventory::pick_readable(policy, &stores, opts.id.as_deref())?;
    let m = &found.manifest;
    result.backup_id = Some(m.backup_id.to_string());
    result.captured_at = Some(m.captured_at);
    let reference = rpo_from(&stores, &found)?;
    let rpo = (result.started_at - reference).num_milliseconds().max(0) as f64 / 1000.0;
    result.rpo = Objective::new(policy.objectives.rpo, Some(rpo));
    result.bytes.stored = m.payload_for(ids)?.size;
    let private = m.read_private(ids)?;
    Ok(Located {
        stores,
        found,
        private,
    })
}

/// Where a drill restores: the policy's `[drill] scratch`, or the state's scratch space;
/// never inside the source it protects.
fn scratch_dir(policy: &Policy, state: &StateDir) -> Result<PathBuf> {
    let scratch = policy
        .drill
        .scratch
        .clone()
        .unwrap_or_else(|| state.scratch());
    // Checked before the directory is created, so a refused drill writes nothing there.
    if let SourceSpec::Files { path } = &policy.source
        && let (Some(s), Ok(p)) = (resolve(&scratch), path.canonicalize())
        && s.starts_with(&p)
    {
        return Err(Error::Config(format!(
            "drill scratch {} is inside the source {}; a drill never writes into production",
            scratch.display(),
            path.display()
        )));
    }
    crate::state::create_private_dir(&scratch)?;
    Ok(scratch)
}

/// `path` made absolute with its longest existing prefix canonicalized (symlinks resolved)
/// and the missing rest applied lexically; works for a path that does not exist yet.
fn resolve(path: &std::path::Path) -> Option<PathBuf> {
    use std::path::Component;
    let abs = std::path::absolute(path).ok()?;
    let mut base = abs.as_path();
    let mut rest = Vec::new();
    let mut out = loop {
        if let Ok(c) = base.canonicalize() {
            break c;
        }
        rest.push(base.components().next_back()?);
        base = base.parent()?;
    };
    for c in rest.into_iter().rev() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    Some(out)
}

/// Phase times from one monotonic clock, so the phases add up to the total.
struct Stopwatch {
    start: Instant,
    last: Instant,
}

impl Stopwatch {
    fn lap(&mut self, name: &str) -> Phase {
        let now = Instant::now();
        let seconds = (now - self.last).as_secs_f64();
        self.last = now;
        Phase {
            name: name.into(),
            seconds,
        }
    }

    fn total(&self) -> f64 {
        (self.last - self.start).as_secs_f64()
    }

    /// Records the measured RTO (start to the last lap) and the verdict.
    fn conclude(&self, policy: &Policy, result: &mut DrillResult) {
        result.rto = Objective::new(policy.objectives.rto, Some(self.total()));
        result.passed = result.rto.passed && result.rpo.passed;
    }
}

/// Proves that each identity file alone decrypts the drilled backup: the private manifest
/// (header) and the whole payload stream, checked against the manifest and the archive's
/// checksum. Every proven recipient is recorded with the time.
fn prove_each_identity(
    policy: &Policy,
    catalog: &Catalog,
    clock: &Clock,
    opts: &DrillOptions,
    result: &mut DrillResult,
) -> Result<()> {
    let stores = inventory::open_selected(policy, opts.store.as_deref())?;
    let found = inventory::pick_readable(policy, &stores, result.backup_id.as_deref())?;
    for file in &opts.each_identity {
        let one = Identities::load(std::slice::from_ref(file))?;
        let outcome = full_check(&stores, &found, &one);
        for fp in &one.fingerprints {
            catalog.record_key_proof(&KeyProof {
                policy: policy.name.clone(),
                fingerprint: fp.clone(),
                backup_id: found.manifest.backup_id.to_string(),
                at: clock.now(),
                ok: outcome.is_ok(),
            })?;
        }
        if outcome.is_err() {
            result.passed = false;
            result.failure_kind = Some(ErrorKind::Check);
        }
        result.identities.push(IdentityProof {
            file: file.clone(),
            fingerprints: one.fingerprints.clone(),
            ok: outcome.is_ok(),
            failure: outcome.err().map(|e| e.to_string()),
        });
    }
    if result.identities.iter().any(|p| !p.ok) {
        result.failure = Some("an identity could not decrypt the backup on its own".into());
    }
    Ok(())
}

/// A JUnit XML report of drills: one test case per policy and objective (restore, rto,
/// rpo), so drills run from a CI pipeline show in its dashboards.
pub fn junit_xml(results: &[DrillResult]) -> String {
    let mut cases = String::new();
    let mut failures = 0;
    for r in results {
        let restore_failure = r.failure.clone();
        let measured = |o: &Objective, what: &str| -> Option<String> {
            if o.passed {
                return None;
            }
            Some(match (o.measured_seconds, o.target_seconds) {
                (Some(m), Some(t)) => format!("{what} {m:.3}s exceeds the target {t:.3}s"),
                _ => format!("{what} not measured: the restore failed"),
            })
        };
        let cases_of = [
            (
                "restore",
                restore_failure,
                r.rto.measured_seconds.unwrap_or(0.0),
            ),
            (
                "rto",
                measured(&r.rto, "RTO"),
                r.rto.measured_seconds.unwrap_or(0.0),
            ),
            ("rpo", measured(&r.rpo, "RPO"), 0.0),
        ];
        for (name, failure, time) in cases_of {
            cases.push_str(&format!(
                "    <testcase classname=\"lifeboat.drill.{}\" name=\"{name}\" time=\"{time:.3}\">",
                xml_escape(&r.policy)
            ));
            if let Some(msg) = failure {
                failures += 1;
                cases.push_str(&format!("<failure message=\"{}\"/>", xml_escape(&msg)));
            }
            cases.push_str("</testcase>\n");
        }
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n  <testsuite name=\"lifeboat drill\" tests=\"{}\" failures=\"{failures}\">\n{cases}  </testsuite>\n</testsuites>\n",
        results.len() * 3
    )
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
