//! The DR report over a period, from the catalog's history: per policy, drills run and
//! passed, RTO and RPO measured against target (last, worst, trend) graded like an SLA, the
//! worst gap between consecutive good backups (the RPO actually had), backup success rate,
//! size trend, key custody, a forecast of when growth breaks the RTO, and a verdict.
//! Rendered as JSON (every number), Markdown (a row per policy) or one self-contained HTML
//! page with inline SVG charts.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::catalog::Catalog;
use crate::drill::DrillResult;
use crate::error::{Error, Result};
use crate::policy::Policy;

/// An SLA-style grade of a measurement against its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Grade {
    /// Within target.
    Compliant,
    /// Up to 2× the target.
    Exceeded,
    /// Up to 4× the target.
    Severe,
    /// Beyond 4× the target.
    Critical,
}

impl Grade {
    pub fn of(measured: f64, target: f64) -> Grade {
        let ratio = if target > 0.0 {
            measured / target
        } else {
            f64::INFINITY
        };
        if ratio <= 1.0 {
            Grade::Compliant
        } else if ratio <= 2.0 {
            Grade::Exceeded
        } else if ratio <= 4.0 {
            Grade::Severe
        } else {
            Grade::Critical
        }
    }

    fn name(self) -> &'static str {
        match self {
            Grade::Compliant => "compliant",
            Grade::Exceeded => "exceeded",
            Grade::Severe => "severe",
            Grade::Critical => "critical",
        }
    }
}

/// A measurement series against a target.
#[derive(Debug, Clone, Serialize)]
pub struct Measure {
    pub target_seconds: Option<f64>,
    pub last_seconds: Option<f64>,
    pub worst_seconds: Option<f64>,
    pub last_grade: Option<Grade>,
    pub worst_grade: Option<Grade>,
    /// Least-squares slope over the period, seconds per day (positive = getting slower).
    pub trend_seconds_per_day: Option<f64>,
    pub points: Vec<Point>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Point {
    pub at: DateTime<Utc>,
    pub value: f64,
}

/// A recipient and when it was last proven to decrypt a backup alone.
#[derive(Debug, Clone, Serialize)]
pub struct Custody {
    pub recipient: String,
    pub last_proven: Option<DateTime<Utc>>,
    pub proven_in_period: bool,
}

/// When growth is expected to break the RTO.
#[derive(Debug, Clone, Serialize)]
pub struct Forecast {
    /// Restore seconds per stored MiB, fitted over the drills.
    pub seconds_per_mib: f64,
    pub intercept_seconds: f64,
    /// Stored size growth, MiB per day, fitted over the backups.
    pub growth_mib_per_day: f64,
    /// Stored size at which the fitted restore time reaches the RTO target.
    pub breaking_size_mib: f64,
    /// Days from now until that size, at the current growth.
    pub days_until_breach: Option<f64>,
    pub summary: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PolicyReport {
    pub policy: String,
    /// "pass", "warn" or "fail".
    pub verdict: String,
    pub findings: Vec<String>,
    pub drills: usize,
    pub drills_passed: usize,
    pub last_drill: Option<DateTime<Utc>>,
    pub last_drill_passed: Option<bool>,
    pub rto: Measure,
    pub rpo: Measure,
    /// The longest time between consecutive good backups in the period (and from the last
    /// one to the end of the period).
    pub worst_backup_gap_seconds: Option<f64>,
    pub worst_gap_grade: Option<Grade>,
    pub backups_attempted: usize,
    pub backups_succeeded: usize,
    pub backup_success_rate: Option<f64>,
    pub size_bytes: Vec<Point>,
    pub custody: Vec<Custody>,
    pub forecast: Option<Forecast>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub generated_at: DateTime<Utc>,
    pub since: DateTime<Utc>,
    pub verdict: String,
    pub policies: Vec<PolicyReport>,
}

/// Builds the report of `policies` over `[since, now]`.
pub fn build(
    policies: &[Policy],
    catalog: &Catalog,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Report> {
    let mut out = Vec::new();
    for p in policies {
        out.push(policy_report(p, catalog, since, now)?);
    }
    let verdict = ["fail", "warn", "pass"]
        .into_iter()
        .find(|v| out.iter().any(|p| p.verdict == *v))
        .unwrap_or("pass")
        .to_string();
    Ok(Report {
        generated_at: now,
        since,
        verdict,
        policies: out,
    })
}

fn policy_report(
    p: &Policy,
    catalog: &Catalog,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<PolicyReport> {
    let drills: Vec<DrillResult> = catalog
        .drills(&p.name, since)?
        .into_iter()
        .map(serde_json::from_value)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::Runtime(format!("catalog: bad drill record: {e}")))?;
    let runs = catalog.backup_runs(&p.name, since)?;
    let mut findings = Vec::new();

    let rto_target = p.objectives.rto.map(|d| d.as_secs_f64());
    let rpo_target = p.objectives.rpo.map(|d| d.as_secs_f64());
    let series = |f: &dyn Fn(&DrillResult) -> Option<f64>| -> Vec<Point> {
        drills
            .iter()
            .filter_map(|d| {
                f(d).map(|v| Point {
                    at: d.started_at,
                    value: v,
                })
            })
            .collect()
    };
    let rto = measure(rto_target, series(&|d| d.rto.measured_seconds));
    let rpo = measure(rpo_target, series(&|d| d.rpo.measured_seconds));

    // Good backups: successful runs in the period, plus what the catalog lists (a rebuilt
    // catalog has backups but no run history).
    let mut captured: Vec<DateTime<Utc>> = runs
        .iter()
        .filter(|r| r.ok)
        .filter_map(|r| r.captured_at)
        .chain(
            catalog
                .list(Some(&p.name))?
                .into_iter()
                .filter(|b| {
                    b.captured_at >= since
                        && b.last_verification
                            .as_deref()
                            .is_none_or(|v| v.ends_with(" ok"))
                })
                .map(|b| b.captured_at),
        )
        .collect();
    captured.sort();
    captured.dedup();
    let worst_gap = captured
        .windows(2)
        .map(|w| (w[1] - w[0]).num_milliseconds() as f64 / 1000.0)
        .chain(
            captured
                .last()
                .map(|l| (now - *l).num_milliseconds() as f64 / 1000.0),
        )
        .fold(None, |m: Option<f64>, g| Some(m.map_or(g, |m| m.max(g))));
    let worst_gap_grade = worst_gap.zip(rpo_target).map(|(g, t)| Grade::of(g, t));

    let attempted = runs.len();
    let succeeded = runs.iter().filter(|r| r.ok).count();
    let size_bytes: Vec<Point> = runs
        .iter()
        .filter_map(|r| {
            r.size.map(|s| Point {
                at: r.at,
                value: s as f64,
            })
        })
        .collect();

    let mut custody = Vec::new();
    for recipient in p
        .recipients
        .age_fingerprints()
        .into_iter()
        .chain(p.recipients.openpgp_fingerprints())
    {
        let last = catalog.last_key_proof(&p.name, &recipient)?;
        let proven_in_period = last.is_some_and(|t| t >= since);
        if !proven_in_period {
            findings.push(format!("recipient {recipient} was not proven to decrypt a backup in the period (drill --each-identity)"));
        }
        custody.push(Custody {
            recipient,
            last_proven: last,
            proven_in_period,
        });
    }

    let last = drills.last();
    if drills.is_empty() {
        findings.push("no drill in the period".into());
    }
    if let Some(d) = last.filter(|d| !d.passed) {
        findings.push(format!(
            "last drill failed: {}",
            d.failure
                .clone()
                .unwrap_or_else(|| "objective breached".into())
        ));
    }
    if attempted > succeeded {
        findings.push(format!(
            "{} of {attempted} backups failed",
            attempted - succeeded
        ));
    }
    if let Some(g) = worst_gap_grade.filter(|g| *g != Grade::Compliant) {
        findings.push(format!(
            "worst gap between good backups is {} against the RPO",
            g.name()
        ));
    }
    if let Some(g) = rto.worst_grade.filter(|g| *g != Grade::Compliant) {
        findings.push(format!("worst RTO in the period is {}", g.name()));
    }
    let forecast = forecast(rto_target, &drills, &size_bytes);
    if let Some(f) = forecast.as_ref().filter(|f| f.days_until_breach.is_some()) {
        findings.push(f.summary.clone());
    }
    let verdict = if drills.is_empty() || last.is_some_and(|d| !d.passed) {
        "fail"
    } else if findings.is_empty() {
        "pass"
    } else {
        "warn"
    };
    Ok(PolicyReport {
        policy: p.name.clone(),
        verdict: verdict.into(),
        findings,
        drills: drills.len(),
        drills_passed: drills.iter().filter(|d| d.passed).count(),
        last_drill: last.map(|d| d.started_at),
        last_drill_passed: last.map(|d| d.passed),
        rto,
        rpo,
        worst_backup_gap_seconds: worst_gap,
        worst_gap_grade,
        backups_attempted: attempted,
        backups_succeeded: succeeded,
        backup_success_rate: (attempted > 0).then(|| succeeded as f64 / attempted as f64),
        size_bytes,
        custody,
        forecast,
    })
}

fn measure(target: Option<f64>, points: Vec<Point>) -> Measure {
    let last = points.last().map(|p| p.value);
    let worst = points
        .iter()
        .map(|p| p.value)
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
    let day = |p: &Point| p.at.timestamp() as f64 / 86400.0;
    let trend =
        fit(&points.iter().map(|p| (day(p), p.value)).collect::<Vec<_>>()).map(|(_, slope)| slope);
    Measure {
        target_seconds: target,
        last_seconds: last,
        worst_seconds: worst,
        last_grade: last.zip(target).map(|(m, t)| Grade::of(m, t)),
        worst_grade: worst.zip(target).map(|(m, t)| Grade::of(m, t)),
        trend_seconds_per_day: trend,
        points,
    }
}

/// Least squares `y = a + b·x`; `None` with fewer than 3 points or no spread in x.
fn fit(points: &[(f64, f64)]) -> Option<(f64, f64)> {
    if points.len() < 3 {
        return None;
    }
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx <= f64::EPSILON {
        return None;
    }
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let b = sxy / sxx;
    Some((my - b * mx, b))
}

/// Fits restore time against stored size over the drills, and size against time over the
/// backups; where both grow, says when the fitted restore time reaches the RTO.
fn forecast(rto_target: Option<f64>, drills: &[DrillResult], sizes: &[Point]) -> Option<Forecast> {
    const MIB: f64 = 1024.0 * 1024.0;
    let target = rto_target?;
    let timing: Vec<(f64, f64)> = drills
        .iter()
        .filter_map(|d| {
            d.rto
                .measured_seconds
                .map(|s| (d.bytes.stored as f64 / MIB, s))
        })
        .collect();
    let (intercept, per_mib) = fit(&timing)?;
    if per_mib <= 0.0 {
        return None;
    }
    let growth: Vec<(f64, f64)> = sizes
        .iter()
        .map(|p| (p.at.timestamp() as f64 / 86400.0, p.value / MIB))
        .collect();
    let (_, mib_per_day) = fit(&growth)?;
    let breaking = (target - intercept) / per_mib;
    let current = sizes.last()?.value / MIB;
    let days = (mib_per_day > 0.0).then(|| ((breaking - current) / mib_per_day).max(0.0));
    let target_text = humantime::format_duration(std::time::Duration::from_secs(target as u64));
    let summary = match days {
        Some(d) if d < 60.0 => format!(
            "at the current growth, RTO {target_text} is breached in about {:.0} days",
            d
        ),
        Some(d) => format!(
            "at the current growth, RTO {target_text} is breached in about {:.0} months",
            d / 30.44
        ),
        None => format!(
            "backups are not growing; RTO {target_text} holds up to about {breaking:.0} MiB"
        ),
    };
    Some(Forecast {
        seconds_per_mib: per_mib,
        intercept_seconds: intercept,
        growth_mib_per_day: mib_per_day,
        breaking_size_mib: breaking,
        days_until_breach: days,
        summary,
    })
}

// ---- rendering ---------------------------------------------------------------------------

pub fn to_json(report: &Report) -> String {
    let mut s = serde_json::to_string_pretty(report).expect("report serializes");
    s.push('\n');
    s
}

fn secs(v: Option<f64>) -> String {
    match v {
        None => "–".into(),
        Some(s) if s < 1.0 => format!("{:.0}ms", s * 1000.0),
        Some(s) if s < 60.0 => format!("{s:.2}s"),
        Some(s) => {
            humantime::format_duration(std::time::Duration::from_secs(s.round() as u64)).to_string()
        }
    }
}

fn grade(g: Option<Grade>) -> &'static str {
    g.map_or("–", Grade::name)
}

pub fn to_markdown(report: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# lifeboat DR report\n");
    let _ = writeln!(
        s,
        "Period {} – {}. Overall verdict: **{}**.\n",
        report.since.format("%Y-%m-%d %H:%M UTC"),
        report.generated_at.format("%Y-%m-%d %H:%M UTC"),
        report.verdict.to_uppercase()
    );
    let _ = writeln!(
        s,
        "| policy | verdict | drills passed | last drill | RTO last / worst / target | RTO grade | RPO last / target | worst backup gap | backups ok |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
    for p in &report.policies {
        let _ = writeln!(
            s,
            "| {} | {} | {}/{} | {} | {} / {} / {} | {} | {} / {} | {} ({}) | {} |",
            p.policy,
            p.verdict.to_uppercase(),
            p.drills_passed,
            p.drills,
            p.last_drill
                .map_or("never".into(), |t| t.format("%Y-%m-%d %H:%M").to_string()),
            secs(p.rto.last_seconds),
            secs(p.rto.worst_seconds),
            secs(p.rto.target_seconds),
            grade(p.rto.worst_grade),
            secs(p.rpo.last_seconds),
            secs(p.rpo.target_seconds),
            secs(p.worst_backup_gap_seconds),
            grade(p.worst_gap_grade),
            p.backup_success_rate
                .map_or("–".into(), |r| format!("{:.0}%", r * 100.0)),
        );
    }
    for p in report.policies.iter().filter(|p| !p.findings.is_empty()) {
        let _ = writeln!(s, "\n## {}\n", p.policy);
        for f in &p.findings {
            let _ = writeln!(s, "- {f}");
        }
    }
    s
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// An inline SVG line chart of `points`, with an optional dashed target line.
fn svg_chart(title: &str, points: &[Point], target: Option<f64>, unit: &str) -> String {
    let (w, h, pad) = (560.0, 180.0, 36.0);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"{}\">",
        esc(title)
    );
    let _ = write!(
        s,
        "<text x=\"{pad}\" y=\"16\" class=\"t\">{}</text>",
        esc(title)
    );
    if points.is_empty() {
        let _ = write!(
            s,
            "<text x=\"{pad}\" y=\"{}\">no data in the period</text></svg>",
            h / 2.0
        );
        return s;
    }
    let x0 = points
        .first()
        .map(|p| p.at.timestamp() as f64)
        .unwrap_or(0.0);
    let x1 = points
        .last()
        .map(|p| p.at.timestamp() as f64)
        .unwrap_or(1.0)
        .max(x0 + 1.0);
    let ymax = points
        .iter()
        .map(|p| p.value)
        .chain(target)
        .fold(0.0f64, f64::max)
        .max(f64::MIN_POSITIVE)
        * 1.1;
    let px = |t: f64| pad + (t - x0) / (x1 - x0) * (w - 2.0 * pad);
    let py = |v: f64| h - pad + 10.0 - v / ymax * (h - 2.0 * pad);
    let _ = write!(
        s,
        "<line x1=\"{pad}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" class=\"axis\"/>",
        py(0.0),
        w - pad,
        py(0.0)
    );
    let _ = write!(
        s,
        "<text x=\"2\" y=\"{}\" class=\"l\">{:.3} {unit}</text>",
        py(ymax / 1.1) + 4.0,
        ymax / 1.1
    );
    if let Some(t) = target {
        let _ = write!(
            s,
            "<line x1=\"{pad}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" class=\"target\"/><text x=\"{}\" y=\"{}\" class=\"l\">target</text>",
            w - pad,
            w - pad - 36.0,
            py(t) - 4.0,
            y = py(t)
        );
    }
    let path: Vec<String> = points
        .iter()
        .map(|p| format!("{:.1},{:.1}", px(p.at.timestamp() as f64), py(p.value)))
        .collect();
    let _ = write!(
        s,
        "<polyline points=\"{}\" class=\"series\"/>",
        path.join(" ")
    );
    for p in points {
        let _ = write!(
            s,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\" class=\"dot\"/>",
            px(p.at.timestamp() as f64),
            py(p.value)
        );
    }
    s.push_str("</svg>");
    s
}

/// One self-contained page: inline CSS and SVG, no external resources or scripts; the
/// report's JSON is embedded as data so the page carries the signed evidence.
pub fn to_html(report: &Report) -> String {
    let mut s = String::new();
    s.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>lifeboat DR report</title><style>");
    s.push_str("body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:4px 8px;text-align:left}.pass{color:#176d2c;font-weight:bold}.warn{color:#8a5a00;font-weight:bold}.fail{color:#b00020;font-weight:bold}svg{display:block;margin:.5em 0;border:1px solid #ddd}.t{font-weight:bold;font-size:12px}.l{font-size:10px;fill:#555}.axis{stroke:#888}.target{stroke:#b00020;stroke-dasharray:4 3}.series{fill:none;stroke:#1f5fa8;stroke-width:1.5}.dot{fill:#1f5fa8}section{page-break-inside:avoid}@media print{body{margin:0}}");
    s.push_str("</style></head><body>\n");
    let _ = writeln!(
        s,
        "<h1>lifeboat DR report</h1><p>Period {} – {}. Overall verdict: <span class=\"{v}\">{V}</span></p>",
        report.since.format("%Y-%m-%d %H:%M UTC"),
        report.generated_at.format("%Y-%m-%d %H:%M UTC"),
        v = esc(&report.verdict),
        V = esc(&report.verdict.to_uppercase())
    );
    s.push_str("<table><tr><th>policy</th><th>verdict</th><th>drills passed</th><th>RTO last / worst / target</th><th>RTO grade</th><th>RPO last / target</th><th>worst backup gap</th><th>backups ok</th></tr>\n");
    for p in &report.policies {
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td class=\"{v}\">{V}</td><td>{}/{}</td><td>{} / {} / {}</td><td>{}</td><td>{} / {}</td><td>{} ({})</td><td>{}</td></tr>",
            esc(&p.policy),
            p.drills_passed,
            p.drills,
            secs(p.rto.last_seconds),
            secs(p.rto.worst_seconds),
            secs(p.rto.target_seconds),
            grade(p.rto.worst_grade),
            secs(p.rpo.last_seconds),
            secs(p.rpo.target_seconds),
            secs(p.worst_backup_gap_seconds),
            grade(p.worst_gap_grade),
            p.backup_success_rate
                .map_or("–".into(), |r| format!("{:.0}%", r * 100.0)),
            v = esc(&p.verdict),
            V = esc(&p.verdict.to_uppercase()),
        );
    }
    s.push_str("</table>\n");
    for p in &report.policies {
        let _ = writeln!(s, "<section><h2>{}</h2>", esc(&p.policy));
        if !p.findings.is_empty() {
            s.push_str("<ul>");
            for f in &p.findings {
                let _ = write!(s, "<li>{}</li>", esc(f));
            }
            s.push_str("</ul>");
        }
        s.push_str(&svg_chart(
            "Restore time (RTO) per drill, seconds",
            &p.rto.points,
            p.rto.target_seconds,
            "s",
        ));
        s.push_str(&svg_chart(
            "Data age at drill (RPO), seconds",
            &p.rpo.points,
            p.rpo.target_seconds,
            "s",
        ));
        let mib: Vec<Point> = p
            .size_bytes
            .iter()
            .map(|pt| Point {
                at: pt.at,
                value: pt.value / (1024.0 * 1024.0),
            })
            .collect();
        s.push_str(&svg_chart("Stored backup size, MiB", &mib, None, "MiB"));
        if let Some(f) = &p.forecast {
            let _ = write!(s, "<p>Forecast: {}</p>", esc(&f.summary));
        }
        s.push_str("</section>\n");
    }
    let json = to_json(report).replace("</", "<\\/");
    let _ = writeln!(
        s,
        "<script type=\"application/json\" id=\"lifeboat-report\">{json}</script>"
    );
    s.push_str("</body></html>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grades_follow_the_sla_bands() {
        assert_eq!(Grade::of(10.0, 10.0), Grade::Compliant);
        assert_eq!(Grade::of(19.0, 10.0), Grade::Exceeded);
        assert_eq!(Grade::of(39.0, 10.0), Grade::Severe);
        assert_eq!(Grade::of(41.0, 10.0), Grade::Critical);
    }

    #[test]
    fn fit_recovers_a_line() {
        let pts: Vec<(f64, f64)> = (0..10).map(|x| (x as f64, 3.0 + 2.0 * x as f64)).collect();
        let (a, b) = fit(&pts).unwrap();
        assert!((a - 3.0).abs() < 1e-9 && (b - 2.0).abs() < 1e-9);
        assert!(fit(&pts[..2]).is_none());
    }
}
