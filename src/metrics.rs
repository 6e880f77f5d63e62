//! Prometheus text exposition for node_exporter's textfile collector, written atomically
//! (temp file + rename) so the collector never reads half a file. One `policy` label (the
//! policy name), nothing secret.

use std::fmt::Write as _;
use std::path::Path;

use chrono::{DateTime, Utc};

use crate::catalog::Catalog;
use crate::drill::DrillResult;
use crate::error::{Error, IoContext, Result};
use crate::policy::Policy;

struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    samples: Vec<(String, f64)>,
}

const FAMILIES: [(&str, &str, &str); 13] = [
    (
        "lifeboat_backup_last_success_timestamp_seconds",
        "gauge",
        "Time of the last successful backup.",
    ),
    (
        "lifeboat_backup_last_attempt_timestamp_seconds",
        "gauge",
        "Time of the last backup attempt.",
    ),
    (
        "lifeboat_backup_last_captured_timestamp_seconds",
        "gauge",
        "Point in time captured by the last successful backup.",
    ),
    (
        "lifeboat_backup_last_duration_seconds",
        "gauge",
        "Duration of the last successful backup.",
    ),
    (
        "lifeboat_backup_last_size_bytes",
        "gauge",
        "Stored size of the last successful backup.",
    ),
    (
        "lifeboat_backups_kept",
        "gauge",
        "Backups currently listed in the catalog.",
    ),
    (
        "lifeboat_backup_failures_total",
        "counter",
        "Failed backup attempts recorded.",
    ),
    (
        "lifeboat_drill_last_timestamp_seconds",
        "gauge",
        "Start of the last drill.",
    ),
    (
        "lifeboat_drill_last_passed",
        "gauge",
        "1 when the last drill passed, 0 when it failed.",
    ),
    (
        "lifeboat_rto_measured_seconds",
        "gauge",
        "RTO measured by the last drill.",
    ),
    (
        "lifeboat_rto_target_seconds",
        "gauge",
        "RTO objective of the policy.",
    ),
    (
        "lifeboat_rpo_measured_seconds",
        "gauge",
        "RPO measured by the last drill.",
    ),
    (
        "lifeboat_rpo_target_seconds",
        "gauge",
        "RPO objective of the policy.",
    ),
];

fn ts(t: DateTime<Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

/// Renders the metrics of `policies` from the catalog.
pub fn render(policies: &[Policy], catalog: &Catalog) -> Result<String> {
    let mut families: Vec<Family> = FAMILIES
        .iter()
        .map(|(name, kind, help)| Family {
            name,
            kind,
            help,
            samples: Vec::new(),
        })
        .collect();
    let mut put = |name: &str, policy: &str, v: Option<f64>| {
        if let (Some(v), Some(f)) = (v, families.iter_mut().find(|f| f.name == name)) {
            f.samples.push((policy.to_string(), v));
        }
    };
    for p in policies {
        let runs = catalog.backup_runs(&p.name, DateTime::<Utc>::MIN_UTC)?;
        let last_ok = runs.iter().rev().find(|r| r.ok);
        put(
            "lifeboat_backup_last_success_timestamp_seconds",
            &p.name,
            last_ok.map(|r| ts(r.at)),
        );
        put(
            "lifeboat_backup_last_attempt_timestamp_seconds",
            &p.name,
            runs.last().map(|r| ts(r.at)),
        );
        put(
            "lifeboat_backup_last_captured_timestamp_seconds",
            &p.name,
            last_ok.and_then(|r| r.captured_at).map(ts),
        );
        put(
            "lifeboat_backup_last_duration_seconds",
            &p.name,
            last_ok.map(|r| r.seconds),
        );
        put(
            "lifeboat_backup_last_size_bytes",
            &p.name,
            last_ok.and_then(|r| r.size).map(|s| s as f64),
        );
        put(
            "lifeboat_backups_kept",
            &p.name,
            Some(catalog.list(Some(&p.name))?.len() as f64),
        );
        put(
            "lifeboat_backup_failures_total",
            &p.name,
            Some(runs.iter().filter(|r| !r.ok).count() as f64),
        );
        let last_drill: Option<DrillResult> = catalog
            .drills(&p.name, DateTime::<Utc>::MIN_UTC)?
            .pop()
            .and_then(|v| serde_json::from_value(v).ok());
        if let Some(d) = &last_drill {
            put(
                "lifeboat_drill_last_timestamp_seconds",
                &p.name,
                Some(ts(d.started_at)),
            );
            put(
                "lifeboat_drill_last_passed",
                &p.name,
                Some(if d.passed { 1.0 } else { 0.0 }),
            );
            put(
                "lifeboat_rto_measured_seconds",
                &p.name,
                d.rto.measured_seconds,
            );
            put(
                "lifeboat_rpo_measured_seconds",
                &p.name,
                d.rpo.measured_seconds,
            );
        }
        put(
            "lifeboat_rto_target_seconds",
            &p.name,
            p.objectives.rto.map(|d| d.as_secs_f64()),
        );
        put(
            "lifeboat_rpo_target_seconds",
            &p.name,
            p.objectives.rpo.map(|d| d.as_secs_f64()),
        );
    }
    let mut out = String::new();
    for f in families.iter().filter(|f| !f.samples.is_empty()) {
        let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
        let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind);
        for (policy, v) in &f.samples {
            let _ = writeln!(out, "{}{{policy=\"{}\"}} {}", f.name, escape(policy), v);
        }
    }
    Ok(out)
}

/// Label value escaping of the text format.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Writes the metrics file atomically.
pub fn write(path: &Path, policies: &[Policy], catalog: &Catalog) -> Result<()> {
    let text = render(policies, catalog)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::Config(format!("{} is not a usable metrics file", path.display())))?;
    let tmp = dir.join(format!(".{name}.tmp.{}", uuid::Uuid::new_v4().simple()));
    std::fs::write(&tmp, text).at("cannot write metrics", &tmp)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io("cannot write metrics", path, e)
    })
}
