//! Drills through the binary: a restore into scratch space, timed phase by phase, measured
//! against the policy's RTO and RPO, with expectations, key custody proofs and JUnit output.
//! Time is placed with `LIFEBOAT_NOW`; every test has its own sandbox.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;

use chrono::{DateTime, Utc};
use common::{
    AGE_IDENTITY, AGE_RECIPIENT, OPENPGP_PUBLIC, OPENPGP_SECRET, Sandbox, assert_exit, key,
    make_wallet, s,
};
use rusqlite::Connection;
use serde_json::Value;

// ---- helpers ----------------------------------------------------------------------------

const T0: &str = "2026-03-02T03:00:00Z";

/// `T0` plus `secs` seconds, as RFC 3339.
fn at(secs: i64) -> String {
    common::rfc3339_plus(T0, secs)
}

fn time(v: &Value) -> DateTime<Utc> {
    common::json_time(v)
}

/// A stable policy id derived from the name, so a rewritten policy keeps its backups.
fn policy_id(name: &str) -> String {
    let h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    }) & 0xffff_ffff_ffff;
    format!("6c1f0b2a-7d3e-4a5b-9c8d-{h:012x}")
}

/// Writes `policies/NAME.toml` (absolute paths; the fixture age recipient, plus the
/// fixture OpenPGP certificate when `openpgp`), followed by the TOML in `extra`.
fn write_policy(sb: &Sandbox, name: &str, kind: &str, source: &Path, openpgp: bool, extra: &str) {
    let mut t = format!(
        "name = \"{name}\"\nid = \"{}\"\n\n[source]\nkind = \"{kind}\"\npath = \"{}\"\n\n\
         [[store]]\nkind = \"local\"\npath = \"{}\"\n\n[encryption]\nage_recipients_file = \"{}\"\n",
        policy_id(name),
        s(source),
        s(&sb.store()),
        s(&key(AGE_RECIPIENT)),
    );
    if openpgp {
        t += &format!("openpgp_certs = [\"{}\"]\n", s(&key(OPENPGP_PUBLIC)));
    }
    t += "\n";
    t += extra;
    fs::write(sb.policies().join(format!("{name}.toml")), t).expect("write policy");
}

/// `lifeboat ARGS…` with the clock at `now`.
fn run_at(sb: &Sandbox, now: &str, args: &[&str]) -> Output {
    sb.command()
        .env("LIFEBOAT_NOW", now)
        .args(args)
        .output()
        .expect("run lifeboat")
}

/// Writes the SQLite policy `shop` for `db` with an RTO of 10 minutes and `[verify]` `verify`.
fn shop_policy_verifying(sb: &Sandbox, db: &Path, verify: &str) {
    let extra = format!("[objectives]\nrto = \"10m\"\nrpo = \"1d\"\n\n[verify]\n{verify}");
    write_policy(sb, "shop", "sqlite", db, false, &extra);
}

/// `lifeboat backup NAME --json` at `now`, asserted to succeed; returns its one outcome.
fn backup_at(sb: &Sandbox, name: &str, now: &str) -> Value {
    let out = run_at(sb, now, &["backup", name, "--json"]);
    assert_exit(&out, 0, &format!("backup {name} at {now}"));
    let v: Value = serde_json::from_slice(&out.stdout).expect("backup --json");
    v[0].clone()
}

/// `lifeboat --identity ID… drill ARGS…` at `now`.
fn drill_at(sb: &Sandbox, now: &str, identities: &[PathBuf], args: &[&str]) -> Output {
    let mut cmd = sb.command();
    cmd.env("LIFEBOAT_NOW", now);
    for id in identities {
        cmd.arg("--identity").arg(id);
    }
    cmd.arg("drill")
        .args(args)
        .output()
        .expect("run lifeboat drill")
}

/// `drill ARGS… --json` with the fixture age identity; asserts the exit code, returns
/// the JSON.
fn drill_json(sb: &Sandbox, now: &str, args: &[&str], code: i32) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    let out = drill_at(sb, now, &[key(AGE_IDENTITY)], &a);
    assert_exit(&out, code, &format!("drill {args:?} at {now}"));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "drill --json printed invalid JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The names of a drill's phases, in order.
fn phase_names(d: &Value) -> Vec<&str> {
    d["phases"]
        .as_array()
        .expect("phases array")
        .iter()
        .map(|p| p["name"].as_str().expect("phase name"))
        .collect()
}

/// An SQLite database (rollback journal) with table `orders` holding `rows` rows.
fn orders_db(path: &Path, rows: usize) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let conn = Connection::open(path).expect("create db");
    conn.execute_batch(
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT NOT NULL, cents INTEGER);",
    )
    .unwrap();
    let tx = conn.unchecked_transaction().unwrap();
    for i in 0..rows {
        tx.execute(
            "INSERT INTO orders (item, cents) VALUES (?1, ?2)",
            (format!("item {i}"), i as i64 * 7),
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

/// Grows (or creates) the database at `path` with incompressible 64 KiB random blobs until
/// it holds `mib` MiB of them.
fn blob_db(path: &Path, mib: usize) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let conn = Connection::open(path).expect("open db");
    conn.execute_batch("CREATE TABLE IF NOT EXISTS blobs (id INTEGER PRIMARY KEY, b BLOB);")
        .unwrap();
    let have: i64 = conn
        .query_row("SELECT count(*) FROM blobs", [], |r| r.get(0))
        .unwrap();
    let want = (mib * 16) as i64;
    if want > have {
        conn.execute(
            "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < ?1)
             INSERT INTO blobs (b) SELECT randomblob(65536) FROM n",
            [want - have],
        )
        .unwrap();
    }
}

/// Every entry under `root` and `root` itself: path, kind, mode, size, inode, mtime and
/// ctime (ns), and the bytes (or link target); sorted by path.
fn snapshot(root: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    let mut first = true;
    while let Some(path) = stack.pop() {
        let m = fs::symlink_metadata(&path).expect("stat");
        let rel = path.strip_prefix(root).unwrap().display().to_string();
        let content = if m.file_type().is_symlink() {
            format!("-> {}", fs::read_link(&path).unwrap().display())
        } else if m.is_dir() {
            let mut names = Vec::new();
            for e in fs::read_dir(&path).expect("read dir") {
                let p = e.unwrap().path();
                names.push(p.file_name().unwrap().to_string_lossy().into_owned());
                stack.push(p);
            }
            names.sort();
            format!("dir {names:?}")
        } else {
            hex_sha256(&fs::read(&path).expect("read"))
        };
        out.push((
            if first { "/".into() } else { rel },
            format!(
                "{content} mode={:o} size={} ino={} mtime={}.{} ctime={}.{}",
                m.permissions().mode(),
                m.len(),
                m.ino(),
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec()
            ),
        ));
        first = false;
    }
    out.sort();
    out
}

fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Names in `dir`, including dot files, sorted (an absent directory has none).
fn names_in(dir: &Path) -> Vec<String> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<String> = rd
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The keys of a JSON object, sorted.
fn keys_of(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .cloned()
        .collect();
    k.sort();
    k
}

fn f64_of(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

// ---- 1. a drill within objectives ---------------------------------------------------------

#[test]
fn drill_within_objectives_passes_with_the_full_json_shape() {
    let sb = Sandbox::new();
    let db = sb.path("src/shop/shop.db");
    orders_db(&db, 500);
    write_policy(
        &sb,
        "shop",
        "sqlite",
        &db,
        false,
        "[objectives]\nrto = \"10m\"\nrpo = \"1h\"\n",
    );
    let b = backup_at(&sb, "shop", &at(0));
    let d = drill_json(&sb, &at(600), &["shop"], 0);

    let mut expected = [
        "policy",
        "backup_id",
        "started_at",
        "captured_at",
        "passed",
        "rto",
        "rpo",
        "phases",
        "sqlite_check",
        "bytes",
        "failure",
    ]
    .map(String::from)
    .to_vec();
    expected.sort();
    assert_eq!(keys_of(&d), expected, "drill --json keys: {d:#}");
    assert_eq!(d["policy"], "shop");
    assert_eq!(d["backup_id"], b["backup_id"]);
    assert_eq!(time(&d["started_at"]), time(&Value::from(at(600))));
    assert_eq!(time(&d["captured_at"]), time(&b["captured_at"]));
    assert_eq!(d["passed"], true);
    assert!(d["failure"].is_null(), "{d:#}");

    for (o, target) in [("rto", 600.0), ("rpo", 3600.0)] {
        let mut k = keys_of(&d[o]);
        k.sort();
        assert_eq!(k, ["measured_seconds", "passed", "target_seconds"], "{o}");
        assert_eq!(f64_of(&d[o]["target_seconds"]), target, "{o}");
        assert_eq!(d[o]["passed"], true, "{o}");
    }
    assert_eq!(f64_of(&d["rpo"]["measured_seconds"]), 600.0);

    let phases = d["phases"].as_array().expect("phases array");
    assert_eq!(
        phase_names(&d),
        [
            "fetch",
            "decrypt+decompress",
            "integrity_check",
            "expectations"
        ]
    );
    let sum: f64 = phases
        .iter()
        .map(|p| {
            assert_eq!(keys_of(p), ["name", "seconds"]);
            let secs = f64_of(&p["seconds"]);
            assert!(secs >= 0.0, "negative phase {p}");
            secs
        })
        .sum();
    let rto = f64_of(&d["rto"]["measured_seconds"]);
    assert!(rto > 0.0, "RTO measured as {rto}");
    assert!(
        (sum - rto).abs() < 1e-6,
        "phases add up to {sum}, RTO measured {rto}"
    );

    assert_eq!(keys_of(&d["bytes"]), ["restored", "stored"]);
    assert_eq!(
        d["bytes"]["stored"], b["payloads"][0]["size"],
        "stored bytes"
    );
    assert_eq!(d["bytes"]["restored"], b["archive_size"], "restored bytes");
}

#[test]
fn drill_all_json_prints_an_array_of_every_policy() {
    let sb = Sandbox::new();
    let db = sb.path("src/shop/shop.db");
    orders_db(&db, 50);
    let wallet = sb.path("src/wallet");
    make_wallet(&wallet, "ALL");
    let objectives = "[objectives]\nrto = \"10m\"\nrpo = \"1h\"\n";
    write_policy(&sb, "shop", "sqlite", &db, false, objectives);

    // One policy: --all is still an array, so scripts need not guess the shape.
    backup_at(&sb, "shop", &at(0));
    let one = drill_json(&sb, &at(60), &["--all"], 0);
    let one = one
        .as_array()
        .unwrap_or_else(|| panic!("drill --all --json with one policy is not an array: {one:#}"));
    assert_eq!(one.len(), 1);
    assert_eq!(one[0]["policy"], "shop");

    write_policy(&sb, "wallet", "files", &wallet, false, objectives);
    backup_at(&sb, "wallet", &at(0));
    let all = drill_json(&sb, &at(120), &["--all"], 0);
    let all = all.as_array().expect("drill --all --json is an array");
    let mut names: Vec<&str> = all.iter().map(|r| r["policy"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["shop", "wallet"]);
    for r in all {
        assert_eq!(r["passed"], true, "{r:#}");
        assert!(r["failure"].is_null());
        assert_eq!(r["phases"].as_array().unwrap().len(), 4);
    }
}

// ---- 2. breached objectives ---------------------------------------------------------------

#[test]
fn rto_of_one_millisecond_is_breached_by_a_real_restore() {
    let sb = Sandbox::new();
    let db = sb.path("src/big/big.db");
    blob_db(&db, 4);
    write_policy(
        &sb,
        "big",
        "sqlite",
        &db,
        false,
        "[objectives]\nrto = \"1ms\"\nrpo = \"1d\"\n",
    );
    backup_at(&sb, "big", &at(0));
    let d = drill_json(&sb, &at(60), &["big"], 1);
    assert_eq!(d["passed"], false, "{d:#}");
    assert_eq!(d["rto"]["passed"], false, "{d:#}");
    assert_eq!(f64_of(&d["rto"]["target_seconds"]), 0.001);
    assert!(f64_of(&d["rto"]["measured_seconds"]) > 0.001, "{d:#}");
    // The restore itself worked: the breach is the objective, not a failure.
    assert_eq!(d["rpo"]["passed"], true);
    assert!(d["failure"].is_null(), "{d:#}");
    assert!(f64_of(&d["bytes"]["stored"]) > 4.0 * 1024.0 * 1024.0);
}

#[test]
fn rpo_is_start_minus_captured_at_and_breaches_a_two_second_objective() {
    let sb = Sandbox::new();
    let db = sb.path("src/shop/shop.db");
    orders_db(&db, 20);
    write_policy(
        &sb,
        "shop",
        "sqlite",
        &db,
        false,
        "[objectives]\nrto = \"10m\"\nrpo = \"2s\"\n",
    );
    backup_at(&sb, "shop", &at(0));
    let d = drill_json(&sb, &at(3600), &["shop"], 1);
    assert_eq!(d["passed"], false);
    assert_eq!(d["rpo"]["passed"], false, "{d:#}");
    assert_eq!(f64_of(&d["rpo"]["measured_seconds"]), 3600.0);
    assert_eq!(f64_of(&d["rpo"]["target_seconds"]), 2.0);
    assert_eq!(d["rto"]["passed"], true, "{d:#}");
    assert!(d["failure"].is_null());

    // Within the objective one second after the backup.
    backup_at(&sb, "shop", &at(7200));
    let d = drill_json(&sb, &at(7201), &["shop"], 0);
    assert_eq!(f64_of(&d["rpo"]["measured_seconds"]), 1.0);
    assert_eq!(d["rpo"]["passed"], true);
}

// ---- 3. a tampered backup -----------------------------------------------------------------

#[test]
fn tampered_newest_backup_fails_the_drill_without_falling_back() {
    let sb = Sandbox::new();
    let db = sb.path("src/shop/shop.db");
    orders_db(&db, 2000);
    write_policy(
        &sb,
        "shop",
        "sqlite",
        &db,
        false,
        "[objectives]\nrto = \"10m\"\nrpo = \"1d\"\n",
    );
    let old = backup_at(&sb, "shop", &at(0));
    let new = backup_at(&sb, "shop", &at(3600));
    let new_id = new["backup_id"].as_str().unwrap();
    let old_id = old["backup_id"].as_str().unwrap();

    let payload: Vec<PathBuf> = names_in(&sb.store())
        .into_iter()
        .filter(|n| n.starts_with(new_id) && n.ends_with(".tar.zst.age"))
        .map(|n| sb.store().join(n))
        .collect();
    assert_eq!(payload.len(), 1, "one payload of the newest backup");
    let mut bytes = fs::read(&payload[0]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x20;
    fs::write(&payload[0], bytes).unwrap();

    let d = drill_json(&sb, &at(7200), &["shop"], 1);
    assert_eq!(d["passed"], false);
    assert_eq!(
        d["backup_id"], new_id,
        "the drill must report the newest backup, not fall back to {old_id}"
    );
    let failure = d["failure"].as_str().expect("failure is set");
    assert!(!failure.is_empty());
    assert!(
        d["rto"]["measured_seconds"].is_null() && d["rto"]["passed"] == false,
        "no RTO is measured for a failed restore: {d:#}"
    );
    let scratch = sb.state().join("tmp");
    assert_eq!(
        names_in(&scratch),
        Vec::<String>::new(),
        "failed drill left scratch data"
    );

    // The older backup is intact and drills fine when asked for explicitly.
    let d = drill_json(&sb, &at(7300), &["shop", "--id", old_id], 0);
    assert_eq!(d["backup_id"], old_id);
    assert_eq!(d["passed"], true);
}

// ---- 4. production is never touched ---------------------------------------------------------

#[test]
fn drills_leave_the_sources_byte_for_byte_untouched() {
    let sb = Sandbox::new();
    let db_dir = sb.path("src/shopdb");
    let db = db_dir.join("shop.db");
    orders_db(&db, 3000);
    let wallet = sb.path("src/wallet");
    make_wallet(&wallet, "UNTOUCHED");
    let objectives = "[objectives]\nrto = \"10m\"\nrpo = \"1d\"\n";
    write_policy(&sb, "shop", "sqlite", &db, false, objectives);
    write_policy(&sb, "wallet", "files", &wallet, false, objectives);
    backup_at(&sb, "shop", &at(0));
    backup_at(&sb, "wallet", &at(0));

    let before = (snapshot(&db_dir), snapshot(&wallet));
    assert!(before.0.iter().any(|(p, _)| p == "shop.db"));
    assert!(before.1.len() > 5, "wallet tree: {:?}", before.1);

    drill_json(&sb, &at(60), &["--all"], 0);
    let kept = drill_json(&sb, &at(120), &["--all", "--keep"], 0);
    let failed = drill_at(
        &sb,
        &at(180),
        &[key(AGE_IDENTITY), key(OPENPGP_SECRET)],
        &["--all", "--each-identity"],
    );
    // The OpenPGP key cannot open these age-only backups: reported, still nothing written.
    assert_exit(
        &failed,
        1,
        "drill --each-identity with a key that is no recipient",
    );

    let after = (snapshot(&db_dir), snapshot(&wallet));
    assert_eq!(
        before.0, after.0,
        "a drill changed the SQLite source directory"
    );
    assert_eq!(before.1, after.1, "a drill changed the files source tree");
    for r in kept.as_array().unwrap() {
        let k = PathBuf::from(r["kept_at"].as_str().expect("kept_at"));
        assert!(
            !k.starts_with(&db_dir) && !k.starts_with(&wallet),
            "restored into production: {}",
            k.display()
        );
    }
}

#[test]
fn drill_scratch_inside_the_source_is_refused_before_anything_is_written() {
    let sb = Sandbox::new();
    let wallet = sb.path("src/wallet");
    make_wallet(&wallet, "INSIDE");
    let set_scratch = |scratch: &Path| {
        write_policy(
            &sb,
            "wallet",
            "files",
            &wallet,
            false,
            &format!(
                "[objectives]\nrto = \"10m\"\n\n[drill]\nscratch = \"{}\"\n",
                s(scratch)
            ),
        )
    };
    set_scratch(&wallet.join("drill-scratch"));
    backup_at(&sb, "wallet", &at(0));
    let before = snapshot(&wallet);
    // Directly inside, and inside by way of a directory that does not exist yet and `..`.
    for (i, scratch) in [
        wallet.join("drill-scratch"),
        sb.path("src/not-yet/../wallet/deeper/scratch"),
    ]
    .iter()
    .enumerate()
    {
        set_scratch(scratch);
        let out = drill_at(
            &sb,
            &at(60 + i as i64),
            &[key(AGE_IDENTITY)],
            &["wallet", "--json"],
        );
        assert_exit(&out, 2, &format!("drill with scratch {}", s(scratch)));
        let d: Value = serde_json::from_slice(&out.stdout).expect("drill --json");
        let failure = d["failure"].as_str().expect("failure set");
        assert!(failure.contains("inside the source"), "{failure}");
        assert_eq!(
            before,
            snapshot(&wallet),
            "the refused drill (scratch {}) wrote into the source",
            s(scratch)
        );
        assert!(!sb.path("src/not-yet").exists());
    }

    // A scratch elsewhere is used, and left empty.
    let elsewhere = sb.path("drill-scratch");
    set_scratch(&elsewhere);
    let d = drill_json(&sb, &at(120), &["wallet"], 0);
    assert_eq!(d["passed"], true, "{d:#}");
    assert!(elsewhere.is_dir());
    assert_eq!(names_in(&elsewhere), Vec::<String>::new());
    assert_eq!(before, snapshot(&wallet));
}

// ---- 5. expectations ----------------------------------------------------------------------

#[test]
fn sqlite_expectations_fail_the_drill_naming_the_table() {
    let sb = Sandbox::new();
    let db = sb.path("src/shop/shop.db");
    orders_db(&db, 1234);
    let write = |verify: &str| shop_policy_verifying(&sb, &db, verify);
    write("tables = [\"orders\"]\nmin_rows = { orders = 1234 }\n");
    backup_at(&sb, "shop", &at(0));
    let d = drill_json(&sb, &at(60), &["shop"], 0);
    assert_eq!(d["passed"], true, "expectations that hold: {d:#}");

    write("tables = [\"orders\"]\nmin_rows = { orders = 1000000 }\n");
    let d = drill_json(&sb, &at(120), &["shop"], 1);
    assert_eq!(d["passed"], false);
    let failure = d["failure"].as_str().expect("failure set");
    assert!(
        failure.contains("orders") && failure.contains("1234") && failure.contains("1000000"),
        "failure should name the table and the counts: {failure}"
    );
    // The restore and its integrity check ran; only the expectations phase did not pass.
    assert_eq!(
        phase_names(&d),
        ["fetch", "decrypt+decompress", "integrity_check"]
    );

    write("tables = [\"orders\", \"refunds\"]\n");
    let d = drill_json(&sb, &at(180), &["shop"], 1);
    let failure = d["failure"].as_str().expect("failure set");
    assert!(failure.contains("refunds"), "{failure}");
}

/// `[verify] sqlite_check` decides which pragma restores and drills run: on a database whose
/// index disagrees with its table, `quick_check` (pages and b-trees only) passes where
/// `integrity_check` (also every index entry against its row) fails; the drill says which.
#[test]
fn sqlite_check_chooses_the_pragma_restores_and_drills_run() {
    let sb = Sandbox::new();
    let db = sb.path("src/shop/shop.db");
    orders_db(&db, 300);
    let conn = Connection::open(&db).unwrap();
    conn.execute_batch(
        "CREATE INDEX orders_cents ON orders(cents);
         PRAGMA writable_schema = ON;
         UPDATE sqlite_schema SET sql = 'CREATE INDEX orders_cents ON orders(item)'
           WHERE name = 'orders_cents';",
    )
    .unwrap();
    drop(conn);
    let write = |verify: &str| shop_policy_verifying(&sb, &db, verify);
    write("");
    backup_at(&sb, "shop", &at(0));

    let d = drill_json(&sb, &at(60), &["shop"], 1);
    assert_eq!(d["sqlite_check"], "integrity_check", "{d:#}");
    let failure = d["failure"].as_str().expect("failure set");
    assert!(
        failure.contains("fails integrity_check") && failure.contains("orders_cents"),
        "{failure}"
    );
    let target = sb.path("restored/shop.db");
    let restore = |code| {
        let out = sb
            .command()
            .args(["--identity", s(&key(AGE_IDENTITY)), "restore", "shop"])
            .arg("--to")
            .arg(&target)
            .output()
            .unwrap();
        assert_exit(&out, code, "restore shop");
    };
    restore(1);
    assert!(
        !target.exists(),
        "a restore that fails its check leaves nothing"
    );

    write("sqlite_check = \"quick_check\"\n");
    let d = drill_json(&sb, &at(120), &["shop"], 0);
    assert_eq!(d["sqlite_check"], "quick_check", "{d:#}");
    assert_eq!(d["passed"], true, "{d:#}");
    assert_eq!(
        phase_names(&d),
        [
            "fetch",
            "decrypt+decompress",
            "integrity_check",
            "expectations"
        ]
    );
    restore(0);
    let rows: i64 = Connection::open(&target)
        .unwrap()
        .query_row("SELECT count(*) FROM orders", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 300);
}

#[test]
fn files_min_fails_the_drill_of_a_tree() {
    let sb = Sandbox::new();
    let wallet = sb.path("src/wallet");
    make_wallet(&wallet, "FILESMIN");
    let write = |n: u64| {
        write_policy(
            &sb,
            "wallet",
            "files",
            &wallet,
            false,
            &format!("[objectives]\nrto = \"10m\"\n\n[verify]\nfiles_min = {n}\n"),
        )
    };
    // make_wallet writes five regular files (and a symlink, which does not count).
    write(5);
    backup_at(&sb, "wallet", &at(0));
    let d = drill_json(&sb, &at(60), &["wallet"], 0);
    assert_eq!(d["passed"], true, "{d:#}");

    write(6);
    let d = drill_json(&sb, &at(120), &["wallet"], 1);
    assert_eq!(d["passed"], false);
    let failure = d["failure"].as_str().expect("failure set");
    assert!(
        failure.contains("5 files") && failure.contains("6"),
        "failure should give the counts: {failure}"
    );
}

// ---- 6. --keep ----------------------------------------------------------------------------

#[test]
fn keep_leaves_the_restored_copy_and_without_it_scratch_is_empty() {
    let sb = Sandbox::new();
    let db = sb.path("src/shop/shop.db");
    orders_db(&db, 777);
    write_policy(
        &sb,
        "shop",
        "sqlite",
        &db,
        false,
        "[objectives]\nrto = \"10m\"\n",
    );
    backup_at(&sb, "shop", &at(0));
    let scratch = sb.state().join("tmp");

    let d = drill_json(&sb, &at(60), &["shop"], 0);
    assert!(d.get("kept_at").is_none(), "{d:#}");
    assert_eq!(
        names_in(&scratch),
        Vec::<String>::new(),
        "drill left scratch"
    );

    let d = drill_json(&sb, &at(120), &["shop", "--keep"], 0);
    let kept = PathBuf::from(d["kept_at"].as_str().expect("kept_at with --keep"));
    assert!(kept.is_absolute() && kept.is_dir(), "{}", kept.display());
    assert!(kept.starts_with(&scratch), "{}", kept.display());
    let copy = kept.join("shop.db");
    let conn = Connection::open_with_flags(&copy, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open kept copy");
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM orders", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 777);

    // The table output prints the path too.
    let out = drill_at(&sb, &at(180), &[key(AGE_IDENTITY)], &["shop", "--keep"]);
    assert_exit(&out, 0, "drill --keep");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.contains("kept at"))
        .unwrap_or_else(|| panic!("no kept path printed:\n{stdout}"));
    let printed = PathBuf::from(line.rsplit(' ').next().unwrap());
    assert!(printed.join("shop.db").is_file(), "{line}");
    assert_ne!(printed, kept);
    assert_eq!(names_in(&scratch).len(), 2, "two kept copies");
}

// ---- 7. JUnit ------------------------------------------------------------------------------

#[test]
fn junit_has_three_cases_per_policy_and_a_failure_on_a_breach() {
    let sb = Sandbox::new();
    let fast = sb.path("src/fast/fast.db");
    orders_db(&fast, 10);
    let slow = sb.path("src/slow/slow.db");
    blob_db(&slow, 2);
    write_policy(
        &sb,
        "fast",
        "sqlite",
        &fast,
        false,
        "[objectives]\nrto = \"10m\"\nrpo = \"1h\"\n",
    );
    write_policy(
        &sb,
        "slow",
        "sqlite",
        &slow,
        false,
        "[objectives]\nrto = \"1ms\"\nrpo = \"1h\"\n",
    );
    backup_at(&sb, "fast", &at(0));
    backup_at(&sb, "slow", &at(0));
    let junit = sb.path("junit.xml");
    let out = drill_at(
        &sb,
        &at(60),
        &[key(AGE_IDENTITY)],
        &["--all", "--junit", s(&junit)],
    );
    assert_exit(&out, 1, "drill --all --junit with a breach");
    let xml = fs::read_to_string(&junit).expect("JUnit file written");
    assert!(xml.starts_with("<?xml"), "{xml}");
    assert!(xml.contains("tests=\"6\""), "{xml}");
    assert!(xml.contains("failures=\"1\""), "{xml}");

    let cases: Vec<&str> = xml
        .split("<testcase ")
        .skip(1)
        .map(|c| &c[..c.find("</testcase>").expect("closed testcase")])
        .collect();
    assert_eq!(cases.len(), 6, "{xml}");
    for policy in ["fast", "slow"] {
        for name in ["restore", "rto", "rpo"] {
            let case = cases
                .iter()
                .find(|c| {
                    c.contains(&format!("classname=\"lifeboat.drill.{policy}\""))
                        && c.contains(&format!("name=\"{name}\""))
                })
                .unwrap_or_else(|| panic!("no testcase {policy}/{name} in\n{xml}"));
            let breached = policy == "slow" && name == "rto";
            assert_eq!(
                case.contains("<failure"),
                breached,
                "{policy}/{name}: {case}"
            );
            if breached {
                assert!(case.contains("RTO"), "{case}");
            }
        }
    }

    // All within objectives: no failure at all.
    let out = drill_at(
        &sb,
        &at(120),
        &[key(AGE_IDENTITY)],
        &["fast", "--junit", s(&junit)],
    );
    assert_exit(&out, 0, "drill fast --junit");
    let xml = fs::read_to_string(&junit).unwrap();
    assert_eq!(xml.matches("<testcase ").count(), 3, "{xml}");
    assert!(!xml.contains("<failure"), "{xml}");
}

// ---- 8. key custody -------------------------------------------------------------------------

#[test]
fn each_identity_proves_every_key_alone_and_reports_a_wrong_one() {
    let sb = Sandbox::new();
    let wallet = sb.path("src/wallet");
    make_wallet(&wallet, "CUSTODY");
    write_policy(
        &sb,
        "wallet",
        "files",
        &wallet,
        true,
        "[objectives]\nrto = \"10m\"\n",
    );
    let b = backup_at(&sb, "wallet", &at(0));
    let both = [key(AGE_IDENTITY), key(OPENPGP_SECRET)];

    let out = drill_at(
        &sb,
        &at(60),
        &both,
        &["wallet", "--each-identity", "--json"],
    );
    assert_exit(&out, 0, "drill --each-identity");
    let d: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(d["passed"], true, "{d:#}");
    let ids = d["identities"].as_array().expect("identities");
    assert_eq!(ids.len(), 2, "{d:#}");
    let recipient = fs::read_to_string(key(AGE_RECIPIENT)).unwrap();
    for (p, file) in ids.iter().zip(&both) {
        assert_eq!(p["file"], s(file));
        assert_eq!(p["ok"], true, "{p}");
        assert!(p["failure"].is_null());
        assert!(!p["fingerprints"].as_array().unwrap().is_empty(), "{p}");
    }
    assert!(
        ids[0]["fingerprints"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == recipient.trim()),
        "{ids:?}"
    );
    let pgp_fpr = "5B95765DB21653213EFF3309A2A0423576F3B4BA";
    assert!(
        ids[1]["fingerprints"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f.as_str().unwrap().eq_ignore_ascii_case(pgp_fpr)),
        "{ids:?}"
    );

    // A fresh age key that is not a recipient of the backup.
    let wrong = sb.path("wrong-age.txt");
    let out = sb.run(&["keygen", "--age", s(&wrong)]);
    assert_exit(&out, 0, "keygen --age");
    let three = [key(AGE_IDENTITY), key(OPENPGP_SECRET), wrong.clone()];
    let out = drill_at(
        &sb,
        &at(120),
        &three,
        &["wallet", "--each-identity", "--json"],
    );
    assert_exit(&out, 1, "drill --each-identity with a wrong key");
    let d: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(d["passed"], false);
    assert_eq!(d["backup_id"], b["backup_id"]);
    assert!(d["failure"].is_string(), "{d:#}");
    let ids = d["identities"].as_array().expect("identities");
    assert_eq!(ids.len(), 3);
    assert_eq!(ids[0]["ok"], true);
    assert_eq!(ids[1]["ok"], true);
    assert_eq!(ids[2]["file"], s(&wrong));
    assert_eq!(ids[2]["ok"], false, "{d:#}");
    assert!(ids[2]["failure"].is_string(), "{d:#}");

    // The text output says which one failed.
    let out = drill_at(&sb, &at(180), &three, &["wallet", "--each-identity"]);
    assert_exit(&out, 1, "drill --each-identity (table)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("identity {}: FAILED", s(&wrong))),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("identity {}: proven", s(&key(AGE_IDENTITY)))),
        "{stdout}"
    );
}
