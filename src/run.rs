//! `run --due`: the one job cron calls. For each policy whose schedule has come due since
//! its last successful backup: back up, rotate, and (when `[drill] schedule` is due) drill;
//! then notify. One policy failing does not stop the others.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::catalog::Catalog;
use crate::clock::Clock;
use crate::drill::{DrillOptions, drill};
use crate::error::{Error, Result};
use crate::keys::Identities;
use crate::notify::{self, Event};
use crate::policy::Policy;
use crate::state::StateDir;
use crate::{backup, rotate, schedule};

/// What happened to one step of a policy's run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Step {
    /// `ok`, `failed`, `breach`, `not_due`, `locked` or `skipped`.
    pub status: String,
    pub detail: String,
    pub exit_code: u8,
}

impl Step {
    fn new(status: &str, detail: impl Into<String>, exit_code: u8) -> Self {
        Step {
            status: status.into(),
            detail: detail.into(),
            exit_code,
        }
    }
    fn from_error(e: &Error) -> Self {
        match e {
            Error::Locked(_) => Step::new("locked", e.to_string(), 4),
            _ => Step::new("failed", e.to_string(), e.kind().exit_code()),
        }
    }
    fn ran(&self) -> bool {
        !matches!(self.status.as_str(), "not_due" | "locked" | "skipped")
    }
}

/// One policy's run.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyRun {
    pub policy: String,
    pub backup: Step,
    pub rotate: Step,
    pub drill: Step,
    /// The worst exit code of the steps that ran (0 when none ran or all passed).
    pub exit_code: u8,
}

/// The result of `run --due` over every policy.
#[derive(Debug, Clone, Serialize)]
pub struct RunOutcome {
    pub started_at: DateTime<Utc>,
    pub policies: Vec<PolicyRun>,
    /// The worst outcome; 4 only when a lock stopped something and nothing else ran.
    pub exit_code: u8,
}

/// Runs whatever is due. `ids` are needed only by drills.
pub fn run_due(
    policies: &[Policy],
    state: &StateDir,
    catalog: &Catalog,
    clock: &Clock,
    ids: &Identities,
) -> Result<RunOutcome> {
    let started_at = clock.now();
    let mut runs = Vec::new();
    for p in policies {
        let run = run_policy(p, state, catalog, clock, ids)?;
        notify_run(p, &run);
        runs.push(run);
    }
    let worst = runs
        .iter()
        .flat_map(|r| [&r.backup, &r.rotate, &r.drill])
        .filter(|s| s.ran())
        .map(|s| s.exit_code)
        .max()
        .unwrap_or(0);
    let anything_ran = runs
        .iter()
        .any(|r| [&r.backup, &r.rotate, &r.drill].iter().any(|s| s.ran()));
    let locked = runs.iter().any(|r| {
        [&r.backup, &r.rotate, &r.drill]
            .iter()
            .any(|s| s.status == "locked")
    });
    let exit_code = if locked && !anything_ran { 4 } else { worst };
    Ok(RunOutcome {
        started_at,
        policies: runs,
        exit_code,
    })
}

fn tz(p: &Policy) -> Tz {
    p.timezone.unwrap_or(Tz::UTC)
}

fn run_policy(
    p: &Policy,
    state: &StateDir,
    catalog: &Catalog,
    clock: &Clock,
    ids: &Identities,
) -> Result<PolicyRun> {
    let now = clock.now();
    let span = tracing::info_span!("policy", policy = %p.name);
    let _enter = span.enter();

    let last_success = catalog
        .backup_runs(&p.name, DateTime::<Utc>::MIN_UTC)?
        .into_iter()
        .filter(|r| r.ok)
        .map(|r| r.at)
        .max();
    let backup_due = p
        .schedule
        .as_deref()
        .is_some_and(|s| schedule::is_due(s, tz(p), last_success, now));

    let (backup, rotate) = if !backup_due {
        let why = match &p.schedule {
            None => "no schedule in the policy".to_string(),
            Some(s) => format!(
                "next at {}",
                last_success
                    .and_then(|l| schedule::next_after(s, tz(p), l))
                    .map_or("-".into(), |t| t.to_rfc3339())
            ),
        };
        (
            Step::new("not_due", why, 0),
            Step::new("skipped", "no backup ran", 0),
        )
    } else {
        match backup::backup(
            p,
            state,
            catalog,
            clock,
            &crate::progress::Progress::default(),
        ) {
            Ok(o) => {
                tracing::info!(backup_id = %o.backup_id, seconds = o.seconds, "backup done");
                let b = Step::new("ok", format!("backup {}", o.backup_id), 0);
                let r = match rotate::rotate(p, state, catalog, clock, false) {
                    Ok(o) => Step::new(
                        "ok",
                        format!(
                            "kept {}, deleted {}",
                            o.plan.keep.len(),
                            o.plan.delete.len()
                        ),
                        0,
                    ),
                    Err(e) => {
                        tracing::error!(error = %e, "rotation failed");
                        Step::from_error(&e)
                    }
                };
                (b, r)
            }
            Err(e) => {
                if matches!(e, Error::Locked(_)) {
                    tracing::warn!("skipped: another lifeboat run holds the lock");
                } else {
                    tracing::error!(error = %e, "backup failed");
                }
                (
                    Step::from_error(&e),
                    Step::new("skipped", "no backup ran", 0),
                )
            }
        }
    };

    // A policy another run holds is skipped whole: its drill waits too.
    let drill = if backup.status == "locked" {
        Step::new("skipped", "policy locked by another run", 0)
    } else {
        drill_step(p, state, catalog, clock, ids, now)?
    };
    let exit_code = [&backup, &rotate, &drill]
        .iter()
        .filter(|s| s.ran())
        .map(|s| s.exit_code)
        .max()
        .unwrap_or(0);
    Ok(PolicyRun {
        policy: p.name.clone(),
        backup,
        rotate,
        drill,
        exit_code,
    })
}

fn drill_step(
    p: &Policy,
    state: &StateDir,
    catalog: &Catalog,
    clock: &Clock,
    ids: &Identities,
    now: DateTime<Utc>,
) -> Result<Step> {
    let Some(expr) = &p.drill.schedule else {
        return Ok(Step::new("not_due", "no [drill] schedule", 0));
    };
    let last = catalog
        .drills(&p.name, DateTime::<Utc>::MIN_UTC)?
        .last()
        .and_then(|d| d.get("started_at")?.as_str()?.parse::<DateTime<Utc>>().ok());
    if !schedule::is_due(expr, tz(p), last, now) {
        return Ok(Step::new("not_due", "drill not due", 0));
    }
    if ids.is_empty() {
        tracing::error!("drill due but no identity given (LIFEBOAT_IDENTITY_FILE)");
        return Ok(Step::new(
            "failed",
            "drill due but no identity was given; set LIFEBOAT_IDENTITY_FILE",
            2,
        ));
    }
    Ok(
        match drill(p, ids, state, catalog, clock, &DrillOptions::default()) {
            Ok(r) if r.passed => {
                tracing::info!(rto = ?r.rto.measured_seconds, rpo = ?r.rpo.measured_seconds, "drill passed");
                Step::new("ok", "drill passed", 0)
            }
            Ok(r) => {
                let detail = r
                    .failure
                    .clone()
                    .unwrap_or_else(|| "objective breached".into());
                tracing::error!(failure = %detail, "drill failed");
                let status = if r.failure.is_none() {
                    "breach"
                } else {
                    "failed"
                };
                Step::new(status, detail, r.exit_code())
            }
            Err(e) => {
                tracing::error!(error = %e, "drill failed");
                Step::from_error(&e)
            }
        },
    )
}

/// Sends the policy's webhook: failures and breaches always, successes when asked.
fn notify_run(p: &Policy, run: &PolicyRun) {
    let Some(var) = &p.notify.webhook_url_env else {
        return;
    };
    let steps = [&run.backup, &run.rotate, &run.drill];
    let event = if steps.iter().any(|s| s.status == "failed") {
        "failure"
    } else if steps.iter().any(|s| s.status == "breach") {
        "breach"
    } else if steps.iter().any(|s| s.status == "ok") && p.notify.on_success {
        "success"
    } else {
        return;
    };
    let detail = steps
        .iter()
        .filter(|s| s.status != "not_due" && s.status != "skipped")
        .map(|s| s.detail.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    let e = Event {
        event: event.into(),
        policy: p.name.clone(),
        exit_code: run.exit_code,
        text: format!("lifeboat {event}: policy {}: {detail}", p.name),
        details: serde_json::to_value(run).unwrap_or_default(),
    };
    if let Err(msg) = notify::send(var, &e) {
        tracing::warn!(error = %msg, "notification not delivered");
    }
}
