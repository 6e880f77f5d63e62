//! Operations through the binary: `run --due` driven by `LIFEBOAT_NOW` over a simulated
//! week, time zones, locks, a failing policy among good ones, Prometheus metrics checked by
//! the real `promtool`, webhooks received by a real HTTP listener on 127.0.0.1 (retries
//! included), JSON logs, secrets kept out of every output, no progress noise off a TTY, and
//! the crontab line / systemd units of `schedule`, which are executed to prove them.
//!
//! Every test has its own sandbox (policies, state, stores) with absolute paths.

mod common;
mod ops_support;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use chrono::DateTime;
use common::{
    AGE_IDENTITY, AGE_RECIPIENT, Sandbox, assert_exit, contains, create_db, key, make_wallet,
    require_tools, s,
};
use ops_support::{Hook, Request};
use serde_json::Value;

// ---- helpers ----------------------------------------------------------------------------

const WEBHOOK_VAR: &str = "LIFEBOAT_WEBHOOK";

/// Writes `policies/NAME.toml` with absolute paths: `top` holds top-level keys (schedule,
/// timezone), `tables` any further tables. Returns the policy id.
fn write_policy(
    sb: &Sandbox,
    name: &str,
    kind: &str,
    source: &Path,
    stores: &[PathBuf],
    top: &str,
    tables: &str,
) -> String {
    let id = uuid::Uuid::new_v4().to_string();
    let mut t = format!(
        "name = \"{name}\"\nid = \"{id}\"\n{top}\n\n[source]\nkind = \"{kind}\"\npath = \"{}\"\n\n",
        s(source)
    );
    for store in stores {
        t += &format!("[[store]]\nkind = \"local\"\npath = \"{}\"\n\n", s(store));
    }
    t += &format!(
        "[encryption]\nage_recipients_file = \"{}\"\n\n{tables}\n",
        s(&key(AGE_RECIPIENT))
    );
    fs::write(sb.policies().join(format!("{name}.toml")), t).expect("write policy");
    id
}

/// A wallet tree `src/NAME` (a `files` source).
fn wallet(sb: &Sandbox, name: &str) -> PathBuf {
    let p = sb.path(&format!("src/{name}"));
    make_wallet(&p, name);
    p
}

/// An SQLite database `src/NAME.db`.
fn database(sb: &Sandbox, name: &str) -> PathBuf {
    let p = sb.path(&format!("src/{name}.db"));
    drop(create_db(&p, 20, name));
    p
}

/// `lifeboat` in the sandbox with the clock at `now`, the fixture identity, and no
/// `LIFEBOAT_*` setting inherited from the environment.
fn lifeboat(sb: &Sandbox, now: &str) -> Command {
    let mut cmd = sb.command();
    // The webhook listener is on 127.0.0.1: no proxy in between.
    for var in [
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("LIFEBOAT_NOW", now)
        .env_remove("LIFEBOAT_LOG_FORMAT")
        .env_remove("LIFEBOAT_METRICS_FILE")
        .env_remove(WEBHOOK_VAR)
        .arg("--identity")
        .arg(key(AGE_IDENTITY));
    cmd
}

/// Parses stdout as JSON, showing both streams when it is not.
fn json_of(out: &Output, what: &str) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{what}: stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// `run --due --json` at `now` through `cmd` (made by [`lifeboat`]); asserts the exit code.
fn run_due(mut cmd: Command, now: &str, code: i32) -> (Output, Value) {
    let out = cmd
        .args(["run", "--due", "--json"])
        .output()
        .expect("run lifeboat");
    assert_exit(&out, code, &format!("run --due at {now}"));
    let v = json_of(&out, &format!("run --due --json at {now}"));
    assert_eq!(
        v["exit_code"], code,
        "exit_code in the JSON at {now}: {v:#}"
    );
    (out, v)
}

/// The run of `policy` in a `run --due --json` result.
fn policy_run<'a>(v: &'a Value, policy: &str) -> &'a Value {
    v["policies"]
        .as_array()
        .expect("policies array")
        .iter()
        .find(|r| r["policy"] == policy)
        .unwrap_or_else(|| panic!("no run of {policy} in {v:#}"))
}

/// The (backup, rotate, drill) statuses of `policy`.
fn steps(v: &Value, policy: &str) -> [String; 3] {
    let r = policy_run(v, policy);
    ["backup", "rotate", "drill"].map(|k| {
        r[k]["status"]
            .as_str()
            .unwrap_or_else(|| panic!("no {k} status for {policy}: {r:#}"))
            .to_string()
    })
}

/// Backups of `policy` listed by `list --json`.
fn listed(sb: &Sandbox, policy: &str) -> usize {
    let out = sb.run(&["list", "--json"]);
    assert_exit(&out, 0, "list --json");
    json_of(&out, "list --json")
        .as_array()
        .expect("list --json is an array")
        .iter()
        .filter(|r| r["policy"] == policy)
        .count()
}

/// Manifests in a local store directory (one per complete backup).
fn manifests(store: &Path) -> usize {
    if !store.exists() {
        return 0;
    }
    fs::read_dir(store)
        .expect("read store")
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".manifest.json")
        })
        .count()
}

/// Seconds since the epoch of an RFC 3339 time.
fn epoch(t: &str) -> f64 {
    DateTime::parse_from_rfc3339(t)
        .expect("RFC 3339")
        .timestamp() as f64
}

/// The (event, policy) of each webhook request.
fn events(reqs: &[Request]) -> Vec<(String, String)> {
    reqs.iter()
        .map(|r| {
            let v = r.json();
            (
                v["event"].as_str().unwrap_or("?").to_string(),
                v["policy"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect()
}

/// The secret lines of the fixture identity file (`AGE-SECRET-KEY-…`).
fn identity_secrets() -> Vec<String> {
    let text = fs::read_to_string(key(AGE_IDENTITY)).expect("read fixture identity");
    let secrets: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    assert!(!secrets.is_empty(), "fixture identity holds a secret key");
    secrets
}

/// Asserts that none of `secrets` appears in any of `outputs` (either case).
fn assert_no_secrets(outputs: &[(&str, &[u8])], secrets: &[String]) {
    for (what, bytes) in outputs {
        let lower = String::from_utf8_lossy(bytes).to_lowercase();
        for secret in secrets {
            assert!(
                !contains(bytes, secret.as_bytes()) && !lower.contains(&secret.to_lowercase()),
                "a secret ({}…) appears in {what}",
                &secret[..secret.len().min(12)]
            );
        }
    }
}

/// Asserts that an output meant for a pipe has no carriage return (progress bars redraw
/// with it) and no ANSI escape.
fn assert_plain(what: &str, bytes: &[u8]) {
    assert!(
        !bytes.contains(&b'\r'),
        "{what}: carriage return in non-TTY output:\n{}",
        String::from_utf8_lossy(bytes)
    );
    assert!(
        !bytes.contains(&0x1b),
        "{what}: ANSI escape in non-TTY output:\n{}",
        String::from_utf8_lossy(bytes)
    );
}

/// Asserts every line of `stderr` is a JSON object with a level; returns them.
fn json_lines(what: &str, stderr: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{what}: stderr line is not JSON ({e}): {l}"));
            assert!(v.is_object(), "{what}: not a JSON object: {l}");
            assert!(v["level"].is_string(), "{what}: no level: {l}");
            v
        })
        .collect()
}

/// Runs `promtool check metrics` on `file`; fails (never skips) when promtool is missing.
fn promtool_check(file: &Path) {
    require_tools(&["promtool"]);
    let out = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(fs::File::open(file).expect("open metrics file"))
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool check metrics failed ({}):\n{}{}\nfile:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        fs::read_to_string(file).unwrap_or_default()
    );
}

/// The samples of a Prometheus text file, by (metric, policy label); asserts every sample
/// has exactly the one `policy` label.
fn samples(text: &str) -> HashMap<(String, String), f64> {
    let mut out = HashMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (name, rest) = line
            .split_once("{policy=\"")
            .unwrap_or_else(|| panic!("sample without a policy label: {line}"));
        let (policy, value) = rest
            .split_once("\"} ")
            .unwrap_or_else(|| panic!("sample with other labels: {line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|e| panic!("bad value in {line}: {e}"));
        let dup = out.insert((name.to_string(), policy.to_string()), value);
        assert!(dup.is_none(), "duplicate sample {line}");
    }
    out
}

fn sample(m: &HashMap<(String, String), f64>, name: &str, policy: &str) -> Option<f64> {
    m.get(&(name.to_string(), policy.to_string())).copied()
}

fn must(m: &HashMap<(String, String), f64>, name: &str, policy: &str) -> f64 {
    sample(m, name, policy).unwrap_or_else(|| panic!("no sample {name}{{policy=\"{policy}\"}}"))
}

// ---- run --due over a simulated week ----------------------------------------------------

/// One `run --due` call of the week: the time, the exit code, (backup, rotate, drill) per
/// policy, and the webhook events it must send.
struct Call {
    now: &'static str,
    exit: i32,
    daily: [&'static str; 3],
    hourly: [&'static str; 3],
    drilled: [&'static str; 3],
    events: &'static [(&'static str, &'static str)],
}

const IDLE: [&str; 3] = ["not_due", "skipped", "not_due"];
const BACKED_UP: [&str; 3] = ["ok", "ok", "not_due"];

#[test]
fn run_due_over_a_simulated_week() {
    let sb = Sandbox::new();
    let hook = Hook::start(&[]);
    let url = hook.url("/hook/SECRET-TOKEN-week");
    let daily_stores = [sb.path("store-daily-a"), sb.path("store-daily-b")];
    let hourly_store = sb.path("store-hourly");
    let drilled_store = sb.path("store-drilled");
    write_policy(
        &sb,
        "daily",
        "files",
        &wallet(&sb, "daily"),
        &daily_stores,
        "schedule = \"0 3 * * *\"",
        "[notify]\nwebhook_url_env = \"LIFEBOAT_WEBHOOK\"\non_success = true\n",
    );
    write_policy(
        &sb,
        "hourly",
        "sqlite",
        &database(&sb, "hourly"),
        std::slice::from_ref(&hourly_store),
        "schedule = \"0 * * * *\"",
        "[retention]\nkeep_last = 3\n",
    );
    write_policy(
        &sb,
        "drilled",
        "files",
        &wallet(&sb, "drilled"),
        std::slice::from_ref(&drilled_store),
        "schedule = \"0 3 * * *\"",
        "[drill]\nschedule = \"30 4 * * *\"\n\n[objectives]\nrto = \"30m\"\nrpo = \"1h\"\n\n\
         [notify]\nwebhook_url_env = \"LIFEBOAT_WEBHOOK\"\n",
    );

    let week = [
        // Never run: everything is due at once, the drill too (after the backup).
        Call {
            now: "2026-06-08T10:00:00Z",
            exit: 0,
            daily: BACKED_UP,
            hourly: BACKED_UP,
            drilled: ["ok", "ok", "ok"],
            events: &[("success", "daily")],
        },
        // Before any next slot: nothing runs, nothing is notified.
        Call {
            now: "2026-06-08T10:59:59Z",
            exit: 0,
            daily: IDLE,
            hourly: IDLE,
            drilled: IDLE,
            events: &[],
        },
        // On the hourly slot: only the hourly policy.
        Call {
            now: "2026-06-08T11:00:00Z",
            exit: 0,
            daily: IDLE,
            hourly: BACKED_UP,
            drilled: IDLE,
            events: &[],
        },
        // Next day 03:00: the daily ones; the hourly one once for its 16 missed slots.
        Call {
            now: "2026-06-09T03:00:00Z",
            exit: 0,
            daily: BACKED_UP,
            hourly: BACKED_UP,
            drilled: BACKED_UP,
            events: &[("success", "daily")],
        },
        // 04:30: the drill is due alone; its backup is 1h30 old, the RPO is 1h: a breach.
        Call {
            now: "2026-06-09T04:30:00Z",
            exit: 1,
            daily: IDLE,
            hourly: BACKED_UP,
            drilled: ["not_due", "skipped", "breach"],
            events: &[("breach", "drilled")],
        },
        Call {
            now: "2026-06-09T04:45:00Z",
            exit: 0,
            daily: IDLE,
            hourly: IDLE,
            drilled: IDLE,
            events: &[],
        },
        // The machine was off for three days: one run each, not one per missed slot.
        Call {
            now: "2026-06-12T12:00:00Z",
            exit: 0,
            daily: BACKED_UP,
            hourly: BACKED_UP,
            drilled: ["ok", "ok", "ok"],
            events: &[("success", "daily")],
        },
        Call {
            now: "2026-06-12T12:00:30Z",
            exit: 0,
            daily: IDLE,
            hourly: IDLE,
            drilled: IDLE,
            events: &[],
        },
        // A week after the first call.
        Call {
            now: "2026-06-15T03:00:00Z",
            exit: 0,
            daily: BACKED_UP,
            hourly: BACKED_UP,
            drilled: ["ok", "ok", "ok"],
            events: &[("success", "daily")],
        },
    ];

    let mut made: BTreeMap<&str, usize> = BTreeMap::new();
    let mut seen_requests = 0;
    for call in &week {
        let mut cmd = lifeboat(&sb, call.now);
        cmd.env(WEBHOOK_VAR, &url);
        let (out, v) = run_due(cmd, call.now, call.exit);
        assert_plain("run --due stdout", &out.stdout);
        assert_plain("run --due stderr", &out.stderr);
        assert_eq!(v["policies"].as_array().unwrap().len(), 3, "{v:#}");
        for (name, want) in [
            ("daily", call.daily),
            ("hourly", call.hourly),
            ("drilled", call.drilled),
        ] {
            assert_eq!(steps(&v, name), want, "{name} at {}: {v:#}", call.now);
            if want[0] == "ok" {
                *made.entry(name).or_default() += 1;
            }
        }

        // Backups, counted in the catalog and in every store.
        let n = |p: &str| made.get(p).copied().unwrap_or(0);
        assert_eq!(listed(&sb, "daily"), n("daily"), "daily at {}", call.now);
        for store in &daily_stores {
            assert_eq!(manifests(store), n("daily"), "{} at {}", s(store), call.now);
        }
        assert_eq!(listed(&sb, "drilled"), n("drilled"), "at {}", call.now);
        assert_eq!(manifests(&drilled_store), n("drilled"), "at {}", call.now);
        // Rotation ran after each hourly backup: keep_last = 3.
        let kept = n("hourly").min(3);
        assert_eq!(listed(&sb, "hourly"), kept, "hourly at {}", call.now);
        assert_eq!(manifests(&hourly_store), kept, "hourly at {}", call.now);
        if call.hourly[0] == "ok" {
            let deleted = usize::from(n("hourly") > 3);
            assert_eq!(
                policy_run(&v, "hourly")["rotate"]["detail"],
                format!("kept {kept}, deleted {deleted}"),
                "at {}",
                call.now
            );
        }

        // Webhooks: success only where on_success = true, breaches always.
        let reqs = hook.requests();
        let new = events(&reqs[seen_requests..]);
        let want: Vec<(String, String)> = call
            .events
            .iter()
            .map(|(e, p)| (e.to_string(), p.to_string()))
            .collect();
        assert_eq!(new, want, "webhook events at {}", call.now);
        seen_requests = reqs.len();
    }
    assert_eq!(
        made,
        BTreeMap::from([("daily", 4), ("drilled", 4), ("hourly", 6)])
    );

    // The breach notification carries the drill's verdict.
    let breach = hook
        .requests()
        .into_iter()
        .map(|r| r.json())
        .find(|v| v["event"] == "breach")
        .unwrap();
    assert_eq!(breach["exit_code"], 1);
    assert_eq!(breach["details"]["drill"]["status"], "breach");
    assert!(
        breach["text"].as_str().unwrap().contains("drilled"),
        "{breach:#}"
    );
}

#[test]
fn not_due_says_when_the_next_slot_is() {
    let sb = Sandbox::new();
    write_policy(
        &sb,
        "daily",
        "files",
        &wallet(&sb, "daily"),
        &[sb.store()],
        "schedule = \"0 3 * * *\"",
        "",
    );
    write_policy(
        &sb,
        "unscheduled",
        "files",
        &wallet(&sb, "unscheduled"),
        &[sb.store()],
        "",
        "",
    );
    let (_, v) = run_due(lifeboat(&sb, "2026-06-08T10:00:00Z"), "first", 0);
    assert_eq!(steps(&v, "daily"), BACKED_UP);
    // A policy without a schedule is never run by `run --due`.
    assert_eq!(steps(&v, "unscheduled"), IDLE);
    assert_eq!(
        policy_run(&v, "unscheduled")["backup"]["detail"],
        "no schedule in the policy"
    );
    let (_, v) = run_due(lifeboat(&sb, "2026-06-09T02:59:59Z"), "before", 0);
    assert_eq!(steps(&v, "daily"), IDLE);
    assert_eq!(
        policy_run(&v, "daily")["backup"]["detail"],
        "next at 2026-06-09T03:00:00+00:00"
    );

    // The human form says the same, one line per step that was considered.
    let out = lifeboat(&sb, "2026-06-09T02:59:59Z")
        .args(["run", "--due"])
        .output()
        .unwrap();
    assert_exit(&out, 0, "run --due (human)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("daily backup: not_due (next at 2026-06-09T03:00:00+00:00)"),
        "{stdout}"
    );
    assert_eq!(listed(&sb, "daily"), 1);
    assert_eq!(listed(&sb, "unscheduled"), 0);
}

#[test]
fn timezone_moves_the_slot_to_the_right_utc_instant() {
    let sb = Sandbox::new();
    write_policy(
        &sb,
        "paris",
        "files",
        &wallet(&sb, "paris"),
        &[sb.store()],
        "schedule = \"0 3 * * *\"\ntimezone = \"Europe/Paris\"",
        "",
    );
    write_policy(
        &sb,
        "utc",
        "files",
        &wallet(&sb, "utc"),
        &[sb.store()],
        "schedule = \"0 3 * * *\"",
        "",
    );
    let check = |now: &str, paris: [&str; 3], utc: [&str; 3]| {
        let (_, v) = run_due(lifeboat(&sb, now), now, 0);
        assert_eq!(steps(&v, "paris"), paris, "paris at {now}: {v:#}");
        assert_eq!(steps(&v, "utc"), utc, "utc at {now}: {v:#}");
        v
    };
    // Summer (UTC+2): 03:00 in Paris is 01:00 UTC.
    check("2026-06-09T00:00:00Z", BACKED_UP, BACKED_UP);
    let v = check("2026-06-09T00:59:59Z", IDLE, IDLE);
    assert_eq!(
        policy_run(&v, "paris")["backup"]["detail"],
        "next at 2026-06-09T01:00:00+00:00"
    );
    check("2026-06-09T01:00:00Z", BACKED_UP, IDLE);
    check("2026-06-09T02:59:59Z", IDLE, IDLE);
    check("2026-06-09T03:00:00Z", IDLE, BACKED_UP);
    // Winter (UTC+1, after the change of 25 October): 03:00 in Paris is 02:00 UTC.
    check("2026-11-02T00:00:00Z", BACKED_UP, BACKED_UP);
    let v = check("2026-11-02T01:59:59Z", IDLE, IDLE);
    assert_eq!(
        policy_run(&v, "paris")["backup"]["detail"],
        "next at 2026-11-02T02:00:00+00:00"
    );
    check("2026-11-02T02:00:00Z", BACKED_UP, IDLE);
    assert_eq!(listed(&sb, "paris"), 4);
    assert_eq!(listed(&sb, "utc"), 3);
}

// ---- locks ------------------------------------------------------------------------------

#[test]
fn a_locked_policy_is_skipped_and_exit_4_only_when_nothing_else_ran() {
    let sb = Sandbox::new();
    let daily = "schedule = \"0 3 * * *\"";
    write_policy(
        &sb,
        "a",
        "files",
        &wallet(&sb, "a"),
        &[sb.store()],
        daily,
        "",
    );
    write_policy(
        &sb,
        "b",
        "sqlite",
        &database(&sb, "b"),
        &[sb.store()],
        daily,
        "",
    );
    let c_id = write_policy(
        &sb,
        "c",
        "files",
        &wallet(&sb, "c"),
        &[sb.store()],
        daily,
        "[drill]\nschedule = \"0 4 * * *\"\n",
    );

    // Another run holds c's lock.
    let locks = sb.state().join("locks");
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&locks)
        .unwrap();
    let held = fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(locks.join(format!("{c_id}.lock")))
        .unwrap();
    held.try_lock().expect("take the policy lock");

    let t1 = "2026-06-10T12:00:00Z";
    let (_, v) = run_due(lifeboat(&sb, t1), t1, 0);
    assert_eq!(steps(&v, "a"), BACKED_UP);
    assert_eq!(steps(&v, "b"), BACKED_UP);
    // The whole policy is skipped: no backup, no rotation, no drill.
    assert_eq!(steps(&v, "c"), ["locked", "skipped", "skipped"], "{v:#}");
    assert_eq!(policy_run(&v, "c")["backup"]["exit_code"], 4);
    assert!(
        policy_run(&v, "c")["backup"]["detail"]
            .as_str()
            .unwrap()
            .contains("locked by another lifeboat run"),
        "{v:#}"
    );
    assert_eq!(listed(&sb, "c"), 0);

    // Nothing else is due now: only the lock stopped something, so exit 4; and it says so.
    let t2 = "2026-06-10T12:01:00Z";
    let out = lifeboat(&sb, t2).args(["run", "--due"]).output().unwrap();
    assert_exit(&out, 4, "run --due with only a locked policy due");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("c backup: locked (policy c is locked by another lifeboat run"),
        "{stdout}"
    );
    assert!(stdout.contains("a backup: not_due"), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("another lifeboat run holds the lock"),
        "{stderr}"
    );
    let (_, v) = run_due(lifeboat(&sb, t2), t2, 4);
    assert_eq!(steps(&v, "a"), IDLE);
    assert_eq!(steps(&v, "c"), ["locked", "skipped", "skipped"]);

    // Once the other run has finished, c runs (it has never succeeded, so it is due).
    drop(held);
    let t3 = "2026-06-10T12:02:00Z";
    let (_, v) = run_due(lifeboat(&sb, t3), t3, 0);
    assert_eq!(steps(&v, "a"), IDLE);
    assert_eq!(steps(&v, "c"), ["ok", "ok", "ok"], "{v:#}");
    assert_eq!(listed(&sb, "c"), 1);
    assert_eq!(listed(&sb, "a"), 1);
}

// ---- a failing policy, metrics, webhooks, JSON logs, secrets -----------------------------

#[test]
fn a_failing_policy_does_not_stop_the_others_and_is_reported_everywhere() {
    let sb = Sandbox::new();
    let hook = Hook::start(&[]);
    let token = format!("SECRET-TOKEN-{}", uuid::Uuid::new_v4().simple());
    let url = hook.url(&format!("/hook/{token}"));
    let notify = |on_success: bool| {
        format!("[notify]\nwebhook_url_env = \"{WEBHOOK_VAR}\"\non_success = {on_success}\n")
    };
    let (good_store, quiet_store) = (sb.path("store-good"), sb.path("store-quiet"));
    write_policy(
        &sb,
        "good",
        "files",
        &wallet(&sb, "good"),
        std::slice::from_ref(&good_store),
        "schedule = \"0 3 * * *\"",
        &format!(
            "[drill]\nschedule = \"0 3 * * *\"\n\n[objectives]\nrto = \"30m\"\nrpo = \"1d\"\n\n{}",
            notify(true)
        ),
    );
    write_policy(
        &sb,
        "quiet",
        "sqlite",
        &database(&sb, "quiet"),
        std::slice::from_ref(&quiet_store),
        "schedule = \"0 3 * * *\"",
        &format!(
            "[retention]\nkeep_last = 5\n\n[objectives]\nrto = \"1h\"\nrpo = \"2h\"\n\n{}",
            notify(false)
        ),
    );
    // Its source is missing: an I/O error (exit 3).
    write_policy(
        &sb,
        "broken",
        "files",
        &sb.path("src/missing"),
        &[sb.path("store-broken")],
        "schedule = \"0 * * * *\"",
        &format!(
            "[objectives]\nrto = \"10m\"\nrpo = \"30m\"\n\n{}",
            notify(false)
        ),
    );
    fs::create_dir(sb.path("metrics")).unwrap();
    let prom = sb.path("metrics/lifeboat.prom");
    let full_run = |now: &str| {
        let mut cmd = lifeboat(&sb, now);
        cmd.env(WEBHOOK_VAR, &url)
            .args(["--log-format", "json", "--metrics-file"])
            .arg(&prom);
        run_due(cmd, now, 3)
    };

    let t = "2026-06-10T03:00:00Z";
    let (out1, v) = full_run(t);
    assert_eq!(steps(&v, "good"), ["ok", "ok", "ok"], "{v:#}");
    assert_eq!(steps(&v, "quiet"), BACKED_UP);
    assert_eq!(steps(&v, "broken"), ["failed", "skipped", "not_due"]);
    let broken = policy_run(&v, "broken");
    assert_eq!(broken["exit_code"], 3);
    assert_eq!(broken["backup"]["exit_code"], 3);
    assert!(
        broken["backup"]["detail"]
            .as_str()
            .unwrap()
            .contains(s(&sb.path("src/missing"))),
        "{broken:#}"
    );
    assert_eq!(policy_run(&v, "good")["exit_code"], 0);
    assert_eq!(policy_run(&v, "quiet")["exit_code"], 0);
    assert_eq!(listed(&sb, "good"), 1);
    assert_eq!(listed(&sb, "quiet"), 1);
    assert_eq!(listed(&sb, "broken"), 0);

    // JSON logs on stderr, the failure among them, attributed to its policy.
    let logs = json_lines("run --due", &out1.stderr);
    assert!(
        logs.iter().any(|l| l["level"] == "ERROR"
            && l.to_string().contains("broken")
            && l["message"] == "backup failed"),
        "no error line for broken:\n{}",
        String::from_utf8_lossy(&out1.stderr)
    );

    // Webhooks: the failure, and the success of the only policy with on_success = true
    // (policies run in file name order).
    let reqs = hook.requests();
    assert_eq!(
        events(&reqs),
        [
            ("failure".to_string(), "broken".to_string()),
            ("success".to_string(), "good".to_string())
        ]
    );
    for r in &reqs {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, format!("/hook/{token}"));
        assert!(
            r.header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "{:?}",
            r.headers
        );
    }
    let failure = reqs[0].json();
    let fields: Vec<&str> = failure
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for f in ["text", "event", "policy", "exit_code", "details"] {
        assert!(fields.contains(&f), "no {f} in {failure:#}");
    }
    assert_eq!(failure["exit_code"], 3);
    assert_eq!(failure["details"]["backup"]["status"], "failed");
    let text = failure["text"].as_str().unwrap();
    assert!(
        text.contains("failure") && text.contains("broken") && text.contains("cannot read"),
        "{text}"
    );
    let success = reqs[1].json();
    assert_eq!(success["exit_code"], 0);
    assert_eq!(success["details"]["drill"]["status"], "ok");

    // Metrics: valid for promtool, and the values are the run's.
    promtool_check(&prom);
    let text1 = fs::read_to_string(&prom).unwrap();
    let m = samples(&text1);
    let at = epoch(t);
    for p in ["good", "quiet"] {
        assert_eq!(
            must(&m, "lifeboat_backup_last_success_timestamp_seconds", p),
            at
        );
        assert_eq!(
            must(&m, "lifeboat_backup_last_attempt_timestamp_seconds", p),
            at
        );
        assert_eq!(
            must(&m, "lifeboat_backup_last_captured_timestamp_seconds", p),
            at
        );
        assert_eq!(must(&m, "lifeboat_backup_failures_total", p), 0.0);
        assert_eq!(must(&m, "lifeboat_backups_kept", p), 1.0);
        let d = must(&m, "lifeboat_backup_last_duration_seconds", p);
        assert!(d > 0.0 && d < 60.0, "{p} duration {d}");
    }
    // The size of the last backup is its stored payload's.
    let payload = fs::read_dir(&good_store)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| s(p).ends_with(".tar.zst.age"))
        .expect("payload in the store");
    assert_eq!(
        must(&m, "lifeboat_backup_last_size_bytes", "good"),
        fs::metadata(&payload).unwrap().len() as f64
    );
    assert_eq!(
        sample(
            &m,
            "lifeboat_backup_last_success_timestamp_seconds",
            "broken"
        ),
        None
    );
    assert_eq!(
        must(
            &m,
            "lifeboat_backup_last_attempt_timestamp_seconds",
            "broken"
        ),
        at
    );
    assert_eq!(must(&m, "lifeboat_backup_failures_total", "broken"), 1.0);
    assert_eq!(must(&m, "lifeboat_backups_kept", "broken"), 0.0);
    // Targets are the policies'.
    for (p, rto, rpo) in [
        ("good", 1800.0, 86400.0),
        ("quiet", 3600.0, 7200.0),
        ("broken", 600.0, 1800.0),
    ] {
        assert_eq!(must(&m, "lifeboat_rto_target_seconds", p), rto, "{p}");
        assert_eq!(must(&m, "lifeboat_rpo_target_seconds", p), rpo, "{p}");
    }
    // The drill of good: passed, measured RTO within target, RPO zero (same instant).
    assert_eq!(must(&m, "lifeboat_drill_last_passed", "good"), 1.0);
    assert_eq!(
        must(&m, "lifeboat_drill_last_timestamp_seconds", "good"),
        at
    );
    let rto = must(&m, "lifeboat_rto_measured_seconds", "good");
    assert!(rto > 0.0 && rto < 1800.0, "rto {rto}");
    assert_eq!(must(&m, "lifeboat_rpo_measured_seconds", "good"), 0.0);
    assert_eq!(sample(&m, "lifeboat_drill_last_passed", "quiet"), None);

    // An hour later: only broken is due (it never succeeded); it fails again.
    let t2 = "2026-06-10T04:00:00Z";
    let (out2, v) = full_run(t2);
    assert_eq!(steps(&v, "good"), IDLE);
    assert_eq!(steps(&v, "quiet"), IDLE);
    assert_eq!(steps(&v, "broken"), ["failed", "skipped", "not_due"]);
    json_lines("second run --due", &out2.stderr);
    assert_eq!(
        events(&hook.requests()[2..]),
        [("failure".into(), "broken".into())]
    );
    promtool_check(&prom);
    let text2 = fs::read_to_string(&prom).unwrap();
    let m = samples(&text2);
    assert_eq!(must(&m, "lifeboat_backup_failures_total", "broken"), 2.0);
    assert_eq!(
        must(
            &m,
            "lifeboat_backup_last_attempt_timestamp_seconds",
            "broken"
        ),
        epoch(t2)
    );
    assert_eq!(
        must(&m, "lifeboat_backup_last_success_timestamp_seconds", "good"),
        at
    );
    // Written atomically: nothing but the file is left beside it.
    assert_eq!(common::dir_names(&sb.path("metrics")), ["lifeboat.prom"]);

    // No secret in any output of the runs, nor in the metrics or the catalog listing.
    let list = sb.run(&["list", "--json"]);
    let mut secrets = identity_secrets();
    secrets.push(url.clone());
    secrets.push(token.clone());
    assert_no_secrets(
        &[
            ("stdout of run 1", &out1.stdout),
            ("stderr of run 1", &out1.stderr),
            ("stdout of run 2", &out2.stdout),
            ("stderr of run 2", &out2.stderr),
            ("metrics", text2.as_bytes()),
            ("list --json", &list.stdout),
        ],
        &secrets,
    );
    for (what, bytes) in [
        ("stdout", &out1.stdout),
        ("stderr", &out1.stderr),
        ("stdout", &out2.stdout),
        ("stderr", &out2.stderr),
    ] {
        assert_plain(what, bytes);
    }
}

// ---- webhooks: retries, and never blocking a backup ---------------------------------------

/// One policy (a wallet) that notifies successes, for the webhook tests.
fn notifying_sandbox() -> Sandbox {
    let sb = Sandbox::new();
    write_policy(
        &sb,
        "wallet",
        "files",
        &wallet(&sb, "wallet"),
        &[sb.store()],
        "schedule = \"0 3 * * *\"",
        "[notify]\nwebhook_url_env = \"LIFEBOAT_WEBHOOK\"\non_success = true\n",
    );
    sb
}

#[test]
fn webhook_is_retried_until_it_is_accepted() {
    let sb = notifying_sandbox();
    let hook = Hook::start(&[500, 500]);
    let now = "2026-06-10T03:00:00Z";
    let mut cmd = lifeboat(&sb, now);
    cmd.env(WEBHOOK_VAR, hook.url("/hook/SECRET-TOKEN-retry"));
    let (out, v) = run_due(cmd, now, 0);
    assert_eq!(steps(&v, "wallet"), BACKED_UP);
    let reqs = hook.requests();
    assert_eq!(reqs.len(), 3, "two refusals, then accepted");
    assert!(
        reqs.iter().all(|r| r.json() == reqs[0].json()),
        "every attempt sends the same event"
    );
    assert_eq!(reqs[0].json()["event"], "success");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("not delivered"), "{stderr}");
}

#[test]
fn a_failing_webhook_never_blocks_the_backup_nor_leaks_its_url() {
    let sb = notifying_sandbox();
    let hook = Hook::start(&[500; 100]);
    let token = format!("SECRET-TOKEN-{}", uuid::Uuid::new_v4().simple());
    let url = hook.url(&format!("/hook/{token}"));
    let now = "2026-06-10T03:00:00Z";
    let started = Instant::now();
    let mut cmd = lifeboat(&sb, now);
    cmd.env(WEBHOOK_VAR, &url);
    let (out, v) = run_due(cmd, now, 0);
    let took = started.elapsed();
    assert_eq!(steps(&v, "wallet"), BACKED_UP);
    assert_eq!(listed(&sb, "wallet"), 1);
    let attempts = hook.requests().len();
    assert!((2..=10).contains(&attempts), "{attempts} attempts");
    assert!(took < Duration::from_secs(30), "notification took {took:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("notification not delivered") && stderr.contains("500"),
        "{stderr}"
    );
    let mut secrets = identity_secrets();
    secrets.push(url);
    secrets.push(token);
    assert_no_secrets(
        &[("stdout", &out.stdout), ("stderr", &out.stderr)],
        &secrets,
    );

    // The variable named by the policy is unset: said once, without failing the run.
    let later = "2026-06-11T03:00:00Z";
    let (out, v) = run_due(lifeboat(&sb, later), later, 0);
    assert_eq!(steps(&v, "wallet"), BACKED_UP);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("LIFEBOAT_WEBHOOK"), "{stderr}");
}

// ---- no progress noise off a TTY ---------------------------------------------------------

#[test]
fn no_carriage_returns_or_ansi_escapes_off_a_tty() {
    let sb = Sandbox::new();
    let db = database(&sb, "shop");
    write_policy(
        &sb,
        "shop",
        "sqlite",
        &db,
        &[sb.store()],
        "schedule = \"0 3 * * *\"",
        "[drill]\nschedule = \"0 4 * * *\"\n\n[objectives]\nrto = \"30m\"\nrpo = \"1d\"\n",
    );
    write_policy(
        &sb,
        "gone",
        "sqlite",
        &sb.path("src/gone.db"),
        &[sb.path("store-gone")],
        "schedule = \"0 3 * * *\"",
        "",
    );
    let now = "2026-06-10T03:00:00Z";
    let restored = sb.path("restored.db");
    let cases: Vec<(&str, Vec<&str>, i32)> = vec![
        ("backup", vec!["backup", "shop"], 0),
        ("backup (failing)", vec!["backup", "gone"], 2),
        ("restore", vec!["restore", "shop", "--to", s(&restored)], 0),
        ("drill", vec!["drill", "shop"], 0),
        ("run --due", vec!["run", "--due"], 2),
        ("run --due (later)", vec!["run", "--due"], 2),
    ];
    for (i, (what, args, code)) in cases.into_iter().enumerate() {
        let at = if i < 5 { now } else { "2026-06-11T04:00:00Z" };
        let out = lifeboat(&sb, at).args(&args).output().unwrap();
        assert_exit(&out, code, what);
        assert_plain(&format!("{what} stdout"), &out.stdout);
        assert_plain(&format!("{what} stderr"), &out.stderr);
    }
    assert!(restored.is_file());
}

// ---- schedule ---------------------------------------------------------------------------

/// `lifeboat ARGS…` in `dir` with relative `--policies policies --state-dir state`.
fn schedule_in(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .current_dir(dir)
        .env_remove("LIFEBOAT_STATE_DIR")
        .env_remove("LIFEBOAT_IDENTITY_FILE")
        .env_remove("LIFEBOAT_NOW")
        .env_remove("LIFEBOAT_METRICS_FILE")
        .env_remove("LIFEBOAT_LOG_FORMAT")
        .stdin(Stdio::null())
        .args(["--policies", "policies", "--state-dir", "state", "schedule"])
        .args(args)
        .output()
        .expect("run lifeboat schedule");
    assert_exit(&out, 0, &format!("schedule {args:?}"));
    String::from_utf8(out.stdout).expect("UTF-8")
}

#[test]
fn schedule_prints_working_crontab_and_systemd_units_with_absolute_paths() {
    let sb = Sandbox::new();
    write_policy(
        &sb,
        "wallet",
        "files",
        &wallet(&sb, "wallet"),
        &[sb.store()],
        "schedule = \"0 3 * * *\"",
        "",
    );
    let root = fs::canonicalize(sb.policies().parent().unwrap()).unwrap();
    let exe = fs::canonicalize(env!("CARGO_BIN_EXE_lifeboat")).unwrap();
    let (policies, state) = (root.join("policies"), root.join("state"));
    let env_file = root.join("lifeboat.env");
    let command = format!(
        "{} --policies {} --state-dir {} --log-format json --metrics-file {} run --due",
        s(&exe),
        s(&policies),
        s(&state),
        s(&state.join("lifeboat.prom"))
    );

    // crontab: one line, every 15 minutes here, all paths absolute although given relative.
    let crontab = schedule_in(
        &root,
        &["--crontab", "--every", "15", "--env-file", "lifeboat.env"],
    );
    let lines: Vec<&str> = crontab
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .collect();
    assert_eq!(lines.len(), 1, "{crontab}");
    let line = lines[0];
    assert!(!line.contains('%'), "cron turns % into newlines: {line}");
    let fields: Vec<&str> = line.splitn(6, ' ').collect();
    assert_eq!(fields[..5], ["*/15", "*", "*", "*", "*"], "{line}");
    let cmd = fields[5];
    assert!(cmd.starts_with(&format!("cd {} && ", s(&root))), "{cmd}");
    assert!(cmd.contains(&command), "{cmd}\nwants {command}");
    assert!(
        cmd.contains(&format!(". {}", s(&env_file))),
        "the environment file is read by its absolute path: {cmd}"
    );
    assert!(
        cmd.ends_with(&format!(">> {} 2>&1", s(&state.join("run.log")))),
        "{cmd}"
    );
    assert_eq!(
        schedule_in(&root, &[]),
        schedule_in(&root, &["--crontab"]),
        "crontab is the default"
    );

    // The line works as cron would run it (sh, from another directory, nothing inherited):
    // it reads the environment file, backs up what is due, logs JSON and writes metrics.
    fs::write(
        &env_file,
        format!(
            "LIFEBOAT_NOW=2026-06-10T03:00:00Z\nLIFEBOAT_IDENTITY_FILE={}\n",
            s(&key(AGE_IDENTITY))
        ),
    )
    .unwrap();
    let status = Command::new("sh")
        .args(["-c", cmd])
        .current_dir("/")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(Stdio::null())
        .status()
        .expect("run the crontab command");
    assert!(status.success(), "crontab command failed: {status}");
    // The log holds the JSON log lines (stderr) and the one-line summary (stdout).
    let log = fs::read_to_string(state.join("run.log")).expect("run.log written");
    let (json, summary): (Vec<&str>, Vec<&str>) = log.lines().partition(|l| l.starts_with('{'));
    let logs = json_lines("run.log", json.join("\n").as_bytes());
    assert!(logs.iter().any(|l| l["message"] == "backup done"), "{log}");
    assert!(
        summary.iter().any(|l| l.starts_with("wallet backup: ok")),
        "{log}"
    );
    let prom = fs::read_to_string(state.join("lifeboat.prom")).expect("metrics written");
    let m = samples(&prom);
    assert_eq!(
        must(
            &m,
            "lifeboat_backup_last_success_timestamp_seconds",
            "wallet"
        ),
        epoch("2026-06-10T03:00:00Z")
    );
    assert_eq!(listed(&sb, "wallet"), 1);

    // systemd: a oneshot service running the same command, and its timer.
    let units = schedule_in(&root, &["--systemd", "--env-file", "lifeboat.env"]);
    let value = |key: &str| -> &str {
        units
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in\n{units}"))
    };
    assert_eq!(value("ExecStart="), command);
    assert_eq!(value("WorkingDirectory="), s(&root));
    assert_eq!(value("EnvironmentFile="), format!("-{}", s(&env_file)));
    assert_eq!(value("Type="), "oneshot");
    assert_eq!(value("OnCalendar="), "*:0/5");
    assert_eq!(value("Persistent="), "true");
    assert!(units.contains("# /etc/systemd/system/lifeboat.service"));
    assert!(units.contains("# /etc/systemd/system/lifeboat.timer"));
    for path in value("ExecStart=")
        .split_whitespace()
        .filter(|w| w.contains('/'))
    {
        assert!(Path::new(path).is_absolute(), "{path} in ExecStart");
    }
}
