//! The DR report through the binary: backups and drills recorded at successive
//! `LIFEBOAT_NOW` times, then `report` as JSON, Markdown, self-contained HTML, with a growth
//! forecast, and signed with a key that real `gpg` verifies.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use chrono::{DateTime, Utc};
use common::{AGE_IDENTITY, AGE_RECIPIENT, GnupgHome, Sandbox, assert_exit, key, make_wallet, s};
use rusqlite::Connection;
use serde_json::Value;

// ---- helpers ----------------------------------------------------------------------------

const T0: &str = "2026-05-04T01:00:00Z";
const HOUR: i64 = 3600;
const DAY: i64 = 86400;
const MIB: f64 = 1024.0 * 1024.0;

/// `T0` plus `secs` seconds, as RFC 3339.
fn at(secs: i64) -> String {
    common::rfc3339_plus(T0, secs)
}

fn time(v: &Value) -> DateTime<Utc> {
    common::json_time(v)
}

fn f64_of(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// A stable policy id derived from the name.
fn policy_id(name: &str) -> String {
    let h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    }) & 0xffff_ffff_ffff;
    format!("2b7e4c19-3f5a-4d6e-8a9b-{h:012x}")
}

/// Writes `policies/NAME.toml` with absolute paths, encrypted to the fixture age
/// recipient, followed by the TOML in `extra`.
fn write_policy(sb: &Sandbox, name: &str, kind: &str, source: &Path, extra: &str) {
    let t = format!(
        "name = \"{name}\"\nid = \"{}\"\n\n[source]\nkind = \"{kind}\"\npath = \"{}\"\n\n\
         [[store]]\nkind = \"local\"\npath = \"{}\"\n\n[encryption]\nage_recipients_file = \"{}\"\n\n{extra}",
        policy_id(name),
        s(source),
        s(&sb.store()),
        s(&key(AGE_RECIPIENT)),
    );
    fs::write(sb.policies().join(format!("{name}.toml")), t).expect("write policy");
}

/// `lifeboat --identity <fixture age key> ARGS…` with the clock at `now`.
fn run_at(sb: &Sandbox, now: &str, args: &[&str]) -> Output {
    sb.command()
        .env("LIFEBOAT_NOW", now)
        .arg("--identity")
        .arg(key(AGE_IDENTITY))
        .args(args)
        .output()
        .expect("run lifeboat")
}

/// A backup of `name` at `now`, asserted to succeed.
fn backup_at(sb: &Sandbox, name: &str, now: &str) {
    let out = run_at(sb, now, &["backup", name, "--json"]);
    assert_exit(&out, 0, &format!("backup {name} at {now}"));
}

/// `drill NAME --json EXTRA…` at `now`, asserted to exit `code`; returns the result.
fn drill_at(sb: &Sandbox, name: &str, now: &str, extra: &[&str], code: i32) -> Value {
    let mut args = vec!["drill", name, "--json"];
    args.extend_from_slice(extra);
    let out = run_at(sb, now, &args);
    assert_exit(&out, code, &format!("drill {name} at {now}"));
    serde_json::from_slice(&out.stdout).expect("drill --json")
}

/// `report ARGS…` at `now`, asserted to succeed; returns stdout.
fn report_at(sb: &Sandbox, now: &str, args: &[&str]) -> String {
    let mut a = vec!["report"];
    a.extend_from_slice(args);
    let out = run_at(sb, now, &a);
    assert_exit(&out, 0, &format!("report {args:?}"));
    String::from_utf8(out.stdout).expect("UTF-8 report")
}

/// `report --format json` at `now`, parsed.
fn json_report(sb: &Sandbox, now: &str) -> Value {
    let text = report_at(sb, now, &["--format", "json"]);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("report JSON ({e}):\n{text}"))
}

/// The report of policy `name`.
fn policy<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["policies"]
        .as_array()
        .expect("policies array")
        .iter()
        .find(|p| p["policy"] == name)
        .unwrap_or_else(|| panic!("no policy {name} in the report: {report:#}"))
}

/// An SQLite database with table `orders` holding `rows` rows.
fn orders_db(path: &Path, rows: usize) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let conn = Connection::open(path).expect("create db");
    conn.execute_batch("CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT NOT NULL);")
        .unwrap();
    let tx = conn.unchecked_transaction().unwrap();
    for i in 0..rows {
        tx.execute(
            "INSERT INTO orders (item) VALUES (?1)",
            [format!("item {i}")],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

/// Grows (or creates) the database at `path` with incompressible 64 KiB random blobs until
/// it holds `blobs` of them (16 per MiB).
fn blob_db(path: &Path, blobs: i64) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let conn = Connection::open(path).expect("open db");
    conn.execute_batch("CREATE TABLE IF NOT EXISTS blobs (id INTEGER PRIMARY KEY, b BLOB);")
        .unwrap();
    let have: i64 = conn
        .query_row("SELECT count(*) FROM blobs", [], |r| r.get(0))
        .unwrap();
    let want = blobs;
    if want > have {
        conn.execute(
            "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < ?1)
             INSERT INTO blobs (b) SELECT randomblob(65536) FROM n",
            [want - have],
        )
        .unwrap();
    }
}

/// Least squares `y = a + b·x`; returns `(a, b)`.
fn fit(points: &[(f64, f64)]) -> (f64, f64) {
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let b = sxy / sxx;
    (my - b * mx, b)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1.0)
}

// ---- 9. drills and backups are recorded and reported ----------------------------------------

#[test]
fn report_covers_every_policy_with_measures_gaps_and_success_rate() {
    let sb = Sandbox::new();
    let db = sb.path("src/shop/shop.db");
    orders_db(&db, 200);
    let wallet = sb.path("src/wallet");
    make_wallet(&wallet, "REPORT");
    write_policy(
        &sb,
        "shop",
        "sqlite",
        &db,
        "[objectives]\nrto = \"10m\"\nrpo = \"6h\"\n",
    );
    write_policy(
        &sb,
        "wallet",
        "files",
        &wallet,
        "[objectives]\nrto = \"10m\"\nrpo = \"6h\"\n",
    );

    // In time order: shop backs up at 0h, 1h, 4h, 5h (widest spacing 3h) and fails once at
    // 2h; wallet backs up at 0h, 2h30 (widest spacing 2h30), 4h, 5h15; drills in between.
    let mut events: Vec<(i64, &str, &str)> = vec![
        (0, "backup", "shop"),
        (HOUR, "backup", "shop"),
        (2 * HOUR, "fail", "shop"),
        (4 * HOUR, "backup", "shop"),
        (5 * HOUR, "backup", "shop"),
        (0, "backup", "wallet"),
        (9000, "backup", "wallet"),
        (4 * HOUR, "backup", "wallet"),
        (5 * HOUR + 900, "backup", "wallet"),
        (1800, "drill", "shop"),
        (4 * HOUR + 1800, "drill", "shop"),
        (5 * HOUR + 600, "drill", "shop"),
        (HOUR + 60, "drill", "wallet"),
        (5 * HOUR + 1200, "drill", "wallet"),
    ];
    events.sort();
    let (mut shop_drills, mut wallet_drills) = (Vec::new(), Vec::new());
    for (t, what, name) in events {
        match (what, name) {
            ("backup", _) => backup_at(&sb, name, &at(t)),
            ("fail", _) => {
                let aside = sb.path("src/shop/moved-away.db");
                fs::rename(&db, &aside).unwrap();
                let out = run_at(&sb, &at(t), &["backup", name]);
                assert_ne!(out.status.code(), Some(0), "backup of a missing database");
                fs::rename(&aside, &db).unwrap();
            }
            ("drill", "shop") => shop_drills.push(drill_at(&sb, name, &at(t), &[], 0)),
            _ => wallet_drills.push(drill_at(&sb, name, &at(t), &["--each-identity"], 0)),
        }
    }
    let rpo = |drills: &[Value]| -> Vec<f64> {
        drills
            .iter()
            .map(|d| f64_of(&d["rpo"]["measured_seconds"]))
            .collect()
    };
    // RPO at each drill: the age of the newest backup then.
    assert_eq!(rpo(&shop_drills), [1800.0, 1800.0, 600.0]);
    assert_eq!(rpo(&wallet_drills), [3660.0, 300.0]);

    // 15 minutes after the last backups: the open gap is smaller than the widest spacing.
    let now = at(5 * HOUR + 1800);
    let r = json_report(&sb, &now);
    assert_eq!(time(&r["generated_at"]), time(&Value::from(now.clone())));
    let mut names: Vec<&str> = r["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["policy"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["shop", "wallet"], "every policy is reported");

    for (name, drills, gap, attempted, rate) in [
        ("shop", &shop_drills, 3.0 * 3600.0, 5, 0.8),
        ("wallet", &wallet_drills, 9000.0, 4, 1.0),
    ] {
        let p = policy(&r, name);
        assert_eq!(p["drills"], drills.len(), "{name}: {p:#}");
        assert_eq!(p["drills_passed"], drills.len(), "{name}");
        assert_eq!(p["last_drill_passed"], true, "{name}");
        assert_eq!(
            time(&p["last_drill"]),
            time(&drills.last().unwrap()["started_at"]),
            "{name}"
        );
        for o in ["rto", "rpo"] {
            let measured: Vec<f64> = drills
                .iter()
                .map(|d| f64_of(&d[o]["measured_seconds"]))
                .collect();
            let m = &p[o];
            assert_eq!(
                f64_of(&m["target_seconds"]),
                if o == "rto" { 600.0 } else { 21600.0 }
            );
            let points: Vec<f64> = m["points"]
                .as_array()
                .unwrap()
                .iter()
                .map(|pt| f64_of(&pt["value"]))
                .collect();
            assert_eq!(points, measured, "{name} {o} points");
            assert_eq!(f64_of(&m["last_seconds"]), *measured.last().unwrap());
            let worst = measured.iter().cloned().fold(f64::MIN, f64::max);
            assert_eq!(f64_of(&m["worst_seconds"]), worst, "{name} {o}");
            assert_eq!(m["last_grade"], "compliant", "{name} {o}");
        }
        assert_eq!(
            f64_of(&p["worst_backup_gap_seconds"]),
            gap,
            "{name}: worst gap between good backups"
        );
        assert_eq!(p["backups_attempted"], attempted, "{name}");
        assert_eq!(f64_of(&p["backup_success_rate"]), rate, "{name}");
    }
    let shop = policy(&r, "shop");
    assert!(
        shop["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f.as_str().unwrap().contains("1 of 5 backups failed")),
        "{shop:#}"
    );
    // Key custody: only wallet's drills proved the recipient alone.
    let custody = |name: &str| policy(&r, name)["custody"][0]["proven_in_period"].clone();
    assert_eq!(custody("wallet"), true);
    assert_eq!(custody("shop"), false);

    // Markdown: one table row per policy.
    let md = report_at(&sb, &now, &["--format", "md"]);
    let rows: Vec<&str> = md.lines().filter(|l| l.starts_with("| ")).collect();
    assert!(rows[0].starts_with("| policy |"), "{md}");
    assert!(md.lines().any(|l| l.starts_with("|---|")), "{md}");
    let body: Vec<&str> = rows[1..].to_vec();
    assert_eq!(body.len(), 2, "one row per policy:\n{md}");
    assert_eq!(
        body.iter().filter(|l| l.starts_with("| shop |")).count(),
        1,
        "{md}"
    );
    assert_eq!(
        body.iter().filter(|l| l.starts_with("| wallet |")).count(),
        1,
        "{md}"
    );
    assert!(body.iter().any(|l| l.contains("3/3")), "shop drills: {md}");

    // HTML: one self-contained page.
    let html_path = sb.path("report.html");
    let out = report_at(&sb, &now, &["--format", "html", "--out", s(&html_path)]);
    assert!(out.is_empty(), "--out prints nothing: {out}");
    let html = fs::read_to_string(&html_path).expect("HTML written");
    assert!(html.contains("<svg"), "inline SVG chart");
    assert!(html.contains("shop") && html.contains("wallet"));
    let lower = html.to_ascii_lowercase();
    for banned in [
        "src=",
        "href=\"http",
        "href='http",
        "href=http",
        "@import",
        "url(",
    ] {
        assert!(
            !lower.contains(banned),
            "the HTML report refers to an external resource ({banned})"
        );
    }
    assert!(!lower.contains("<link"), "no linked stylesheets");
}

// ---- 10. forecast ------------------------------------------------------------------------

#[test]
fn forecast_fits_growth_and_says_when_the_rto_breaks() {
    let sb = Sandbox::new();
    let db = sb.path("src/grow/grow.db");
    write_policy(
        &sb,
        "grow",
        "sqlite",
        &db,
        "[objectives]\nrto = \"1m\"\nrpo = \"2d\"\n",
    );
    let mut drills = Vec::new();
    // Stored size grows 256 KiB, 512 KiB, 768 KiB, 1 MiB, 2 MiB (random, incompressible).
    let step = |blobs: i64, t: i64| {
        blob_db(&db, blobs);
        backup_at(&sb, "grow", &at(t));
    };

    step(4, 0);
    drills.push(drill_at(&sb, "grow", &at(HOUR), &[], 0));
    step(8, DAY);
    drills.push(drill_at(&sb, "grow", &at(DAY + HOUR), &[], 0));
    step(12, DAY + 12 * HOUR);
    // Three backups but two drills: no forecast yet.
    let r = json_report(&sb, &at(DAY + 13 * HOUR));
    let p = policy(&r, "grow");
    assert_eq!(p["drills"], 2);
    assert_eq!(p["size_bytes"].as_array().unwrap().len(), 3);
    assert!(p["forecast"].is_null(), "forecast with two drills: {p:#}");

    step(16, 2 * DAY);
    drills.push(drill_at(&sb, "grow", &at(2 * DAY + HOUR), &[], 0));
    step(32, 3 * DAY);
    drills.push(drill_at(&sb, "grow", &at(3 * DAY + HOUR), &[], 0));

    let r = json_report(&sb, &at(3 * DAY + 2 * HOUR));
    let p = policy(&r, "grow");
    assert_eq!(p["drills"], 4);
    let f = &p["forecast"];
    assert!(f.is_object(), "forecast after four drills: {p:#}");
    let growth = f64_of(&f["growth_mib_per_day"]);
    let days = f64_of(&f["days_until_breach"]);
    let per_mib = f64_of(&f["seconds_per_mib"]);
    let breaking = f64_of(&f["breaking_size_mib"]);
    assert!(growth > 0.0, "growth {growth}");
    assert!(per_mib > 0.0, "restore seconds per MiB {per_mib}");
    assert!(days > 0.0, "days until breach {days}: {f:#}");
    let summary = f["summary"].as_str().unwrap();
    assert!(summary.starts_with("at the current growth"), "{summary}");
    assert!(summary.contains("RTO 1m"), "{summary}");
    assert!(
        p["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x == summary),
        "the forecast is a finding: {p:#}"
    );

    // The numbers are the fits of what was recorded.
    let sizes: Vec<(f64, f64)> = p["size_bytes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pt| {
            (
                time(&pt["at"]).timestamp() as f64 / 86400.0,
                f64_of(&pt["value"]) / MIB,
            )
        })
        .collect();
    assert_eq!(sizes.len(), 5);
    assert!(
        sizes[4].1 > 2.0 && sizes[0].1 < 0.3,
        "stored sizes {sizes:?}"
    );
    assert!(close(growth, fit(&sizes).1), "growth {growth} vs {sizes:?}");
    let timing: Vec<(f64, f64)> = drills
        .iter()
        .map(|d| {
            (
                f64_of(&d["bytes"]["stored"]) / MIB,
                f64_of(&d["rto"]["measured_seconds"]),
            )
        })
        .collect();
    let (a, b) = fit(&timing);
    assert!(close(per_mib, b), "seconds per MiB {per_mib} vs {timing:?}");
    assert!(close(f64_of(&f["intercept_seconds"]), a));
    assert!(close(breaking, (60.0 - a) / b), "breaking size {breaking}");
    assert!(breaking > sizes[4].1, "the RTO still holds at today's size");
    assert!(
        close(days, (breaking - sizes[4].1) / growth),
        "days {days} vs breaking {breaking}, growth {growth}"
    );
}

// ---- 11. signed report ------------------------------------------------------------------------

/// `gpg --verify SIG DATA` in `home` (not asserted).
fn gpg_verify(home: &GnupgHome, sig: &Path, data: &Path) -> Output {
    Command::new("gpg")
        .env("GNUPGHOME", home.path())
        .args(["--batch", "--verify"])
        .arg(sig)
        .arg(data)
        .stdin(Stdio::null())
        .output()
        .expect("run gpg --verify")
}

#[test]
fn signed_report_verifies_with_gpg_and_a_modified_one_does_not() {
    let sb = Sandbox::new();
    let db = sb.path("src/shop/shop.db");
    orders_db(&db, 100);
    write_policy(&sb, "shop", "sqlite", &db, "[objectives]\nrto = \"10m\"\n");
    backup_at(&sb, "shop", &at(0));
    drill_at(&sb, "shop", &at(600), &[], 0);

    let home = GnupgHome::new();
    let keys = sb.path("auditor");
    fs::create_dir(&keys).unwrap();
    let (_public, secret) = home.generate_key("Auditor <a@example.com>", &keys);

    let report = sb.path("report.json");
    let out = run_at(
        &sb,
        &at(900),
        &[
            "report",
            "--sign",
            s(&secret),
            "--format",
            "json",
            "--out",
            s(&report),
        ],
    );
    assert_exit(&out, 0, "report --sign");
    let sig = PathBuf::from(format!("{}.asc", s(&report)));
    let armored = fs::read_to_string(&sig).expect("signature written");
    assert!(
        armored.starts_with("-----BEGIN PGP SIGNATURE-----"),
        "{armored}"
    );
    let json: Value = serde_json::from_slice(&fs::read(&report).unwrap()).expect("JSON report");
    assert_eq!(json["policies"][0]["policy"], "shop");

    let ok = gpg_verify(&home, &sig, &report);
    assert!(
        ok.status.success(),
        "gpg rejected the signature: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        String::from_utf8_lossy(&ok.stderr).contains("Auditor <a@example.com>"),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    // Change one number in the report: the signature no longer matches.
    let text = fs::read_to_string(&report).unwrap();
    let forged = text.replacen("\"drills\": 1", "\"drills\": 9", 1);
    assert_ne!(forged, text, "report has a drill count");
    fs::write(&report, forged).unwrap();
    let bad = gpg_verify(&home, &sig, &report);
    assert!(
        !bad.status.success(),
        "gpg accepted a modified report: {}",
        String::from_utf8_lossy(&bad.stderr)
    );

    // Other formats sign the JSON written beside them.
    let md = sb.path("report.md");
    let out = run_at(
        &sb,
        &at(900),
        &["report", "--sign", s(&secret), "--out", s(&md)],
    );
    assert_exit(&out, 0, "report --format md --sign");
    let json_path = sb.path("report.md.json");
    let ok = gpg_verify(&home, &sb.path("report.md.json.asc"), &json_path);
    assert!(
        ok.status.success(),
        "gpg rejected the signature of {}: {}",
        s(&json_path),
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(fs::read_to_string(&md).unwrap().contains("| shop |"));
}
