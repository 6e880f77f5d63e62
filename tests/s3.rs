//! S3 stores against a real S3-compatible server (`moto_server` from `.venv`, started on a
//! free port of 127.0.0.1 per test), with a fault-injecting proxy in between where a test
//! needs faults: streaming multipart uploads with per-part checksums and bounded memory,
//! retries through 5xx bursts, dropped connections and lost answers, aborted uploads that
//! leave no parts, anonymous keys, Object Lock against deletion and rotation, optional
//! stores, and disaster recovery from the bucket alone.

mod common;
mod s3_support;

use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{
    AGE_IDENTITY, Sandbox, assert_exit, assert_one_line_error, create_db, inspect_db, key, s,
};
use s3_support::proxy::{Fault, Proxy, Rule};
use s3_support::{
    ACCESS_KEY_ID, CREDS_PREFIX, Moto, S3, SECRET_ACCESS_KEY, local_store, policy_text,
    random_file, s3_store,
};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_lifeboat");

/// `lifeboat` in the sandbox with the test credentials and `envs`.
fn command(sb: &Sandbox, envs: &[(&str, &str)]) -> Command {
    let mut cmd = sb.command();
    cmd.env(format!("{CREDS_PREFIX}_ACCESS_KEY_ID"), ACCESS_KEY_ID)
        .env(
            format!("{CREDS_PREFIX}_SECRET_ACCESS_KEY"),
            SECRET_ACCESS_KEY,
        )
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd
}

/// Runs lifeboat; asserts the secret key never shows in its output.
fn run(sb: &Sandbox, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let out = command(sb, envs).args(args).output().expect("run lifeboat");
    for stream in [&out.stdout, &out.stderr] {
        assert!(
            !String::from_utf8_lossy(stream).contains(SECRET_ACCESS_KEY),
            "the secret key leaked into lifeboat's output"
        );
    }
    out
}

fn identity() -> String {
    s(&key(AGE_IDENTITY)).to_string()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn write_policy(sb: &Sandbox, name: &str, text: &str) {
    fs::write(sb.policies().join(format!("{name}.toml")), text).expect("write policy");
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Runs `lifeboat ARGS…` under GNU time; returns the output and the peak RSS in KiB.
fn run_measured(sb: &Sandbox, args: &[&str], envs: &[(&str, &str)]) -> (Output, u64) {
    let time = Path::new("/usr/bin/time");
    assert!(
        time.is_file(),
        "/usr/bin/time (GNU time) is missing: run scripts/setup.sh; these tests fail rather than skip"
    );
    let report = sb.path("rss.txt");
    let inner = command(sb, envs);
    let mut cmd = Command::new(time);
    cmd.args(["-f", "%M", "-o", s(&report), BIN])
        .args(inner.get_args())
        .args(args)
        .current_dir(sb.path("work"))
        .stdin(Stdio::null());
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let out = cmd.output().expect("run lifeboat under /usr/bin/time");
    let text = fs::read_to_string(&report).expect("GNU time report");
    let kib = text
        .lines()
        .filter_map(|l| l.trim().parse::<u64>().ok())
        .next_back()
        .unwrap_or_else(|| panic!("no RSS in {text:?}"));
    (out, kib)
}

/// Keys of `bucket` under the lifeboat prefix are only anonymous object names.
fn assert_anonymous_keys(s3: &S3, bucket: &str, policy_name: &str) {
    let keys = s3.keys(bucket);
    assert!(!keys.is_empty());
    for k in &keys {
        assert!(!k.contains(policy_name), "{k} reveals the policy name");
        let name = k.strip_prefix("lifeboat/").expect("under the prefix");
        let (id, rest) = name.split_once('.').unwrap();
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{k}");
        let (time, suffix) = rest.split_once('.').unwrap();
        assert!(
            time.len() == 16 && time.ends_with('Z') && time.as_bytes()[8] == b'T',
            "{k}"
        );
        assert!(
            ["tar.zst.age", "tar.zst.gpg", "manifest.json"].contains(&suffix),
            "{k}"
        );
        let head = s3
            .block(s3.client.head_object().bucket(bucket).key(k).send())
            .expect("head");
        assert!(
            head.metadata().is_none_or(|m| m.is_empty()),
            "{k} has metadata"
        );
        let tags = s3
            .block(s3.client.get_object_tagging().bucket(bucket).key(k).send())
            .expect("tagging");
        assert!(tags.tag_set().is_empty(), "{k} has tags");
    }
}

#[test]
fn large_upload_streams_in_checksummed_parts_with_bounded_memory() {
    let moto = Moto::start();
    let proxy = Proxy::start(moto.port);
    let s3 = S3::new(&moto.endpoint());
    s3.create_bucket("big-offsite", false);
    let sb = Sandbox::new();
    let src = sb.path("src/big");
    fs::create_dir_all(&src).unwrap();
    const MIB: usize = 1024 * 1024;
    for i in 0..4 {
        random_file(&src.join(format!("blob{i}.bin")), 64 * MIB, 7 + i as u64);
    }
    let store = s3_store(&proxy.endpoint(), "big-offsite", "");
    write_policy(
        &sb,
        "big",
        &policy_text("big", &new_id(), "files", &src, &[store]),
    );

    let started = Instant::now();
    let (out, rss_kib) = run_measured(&sb, &["backup", "big", "--json"], &[]);
    assert_exit(&out, 0, "backup big");
    let backup_secs = started.elapsed().as_secs_f64();
    let v = json(&out);
    let payload = &v[0]["payloads"][0];
    let size = payload["size"].as_u64().unwrap();
    let object = payload["object"].as_str().unwrap().to_string();
    assert!(size > 256 * MIB as u64, "payload is {size} bytes");
    eprintln!("backup peak RSS {rss_kib} KiB");
    // The object is 256 MiB; the process holds a few 8 MiB parts at most.
    assert!(
        rss_kib < 160 * 1024,
        "peak RSS {rss_kib} KiB while uploading {size} bytes"
    );

    // Multipart, one SHA-256 per part, all parts accounted for.
    let log = proxy.log();
    let key = format!("lifeboat/{object}");
    let parts: Vec<_> = log
        .iter()
        .filter(|r| r.method == "PUT" && r.target.contains("partNumber="))
        .collect();
    assert!(parts.len() >= 32, "{} parts", parts.len());
    for p in &parts {
        let sum = p.header("x-amz-checksum-sha256").expect("part checksum");
        assert_eq!(sum.len(), 44, "base64 SHA-256: {sum}");
        assert_eq!(p.header("x-amz-sdk-checksum-algorithm"), Some("SHA256"));
    }
    let creates: Vec<_> = log
        .iter()
        .filter(|r| r.method == "POST" && r.target.contains("?uploads"))
        .collect();
    assert_eq!(creates.len(), 1);
    assert_eq!(
        creates[0].header("x-amz-checksum-algorithm"),
        Some("SHA256")
    );
    let head = s3
        .block(
            s3.client
                .head_object()
                .bucket("big-offsite")
                .key(&key)
                .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
                .send(),
        )
        .expect("head");
    assert_eq!(head.content_length(), Some(size as i64));
    assert!(
        head.e_tag()
            .unwrap()
            .trim_matches('"')
            .ends_with(&format!("-{}", parts.len())),
        "multipart ETag {:?}",
        head.e_tag()
    );
    assert!(head.checksum_sha256().is_some(), "composite checksum");
    assert!(s3.uploads("big-offsite").is_empty());

    // Streaming download, checked against the manifest's sha256, in bounded memory too.
    let (out, rss_kib) = run_measured(&sb, &["verify", "big", "--level", "checksum"], &[]);
    assert_exit(&out, 0, "verify big --level checksum");
    assert!(
        rss_kib < 160 * 1024,
        "peak RSS {rss_kib} KiB while verifying"
    );
    eprintln!("backup of 256 MiB took {backup_secs:.1}s; verify peak RSS {rss_kib} KiB");
}

#[test]
fn transient_errors_are_retried_to_a_complete_verified_object() {
    let moto = Moto::start();
    let proxy = Proxy::start(moto.port);
    let s3 = S3::new(&moto.endpoint());
    s3.create_bucket("flaky-offsite", false);
    s3.enable_versioning("flaky-offsite");
    let sb = Sandbox::new();
    let src = sb.path("src/data");
    fs::create_dir_all(&src).unwrap();
    random_file(&src.join("blob.bin"), 20 * 1024 * 1024, 42);
    let store = s3_store(&proxy.endpoint(), "flaky-offsite", "");
    write_policy(
        &sb,
        "flaky",
        &policy_text("flaky", &new_id(), "files", &src, &[store]),
    );
    let part = &["partNumber="][..];
    // UploadPart: a 5xx burst, a connection dropped mid-body, an answer lost, a stall.
    proxy.add(Rule::new("PUT", part, Fault::Status(503), 2));
    proxy.add(Rule::new("PUT", part, Fault::Status(500), 1));
    proxy.add(Rule::new("PUT", part, Fault::DropRequest(1 << 20), 1));
    proxy.add(Rule::new("PUT", part, Fault::DropResponse(0), 1));
    proxy.add(Rule::new(
        "PUT",
        part,
        Fault::Delay(Duration::from_secs(7)),
        1,
    ));
    // CreateMultipartUpload: throttled once…
    proxy.add(Rule::new("POST", &["?uploads"], Fault::Status(503), 1));
    // …and once created with its answer lost: that stray upload is aborted at the end.
    proxy.add(Rule::new("POST", &["?uploads"], Fault::DropResponse(0), 1));
    // CompleteMultipartUpload: an error inside a 200, then an answer lost after it applied.
    proxy.add(Rule::new("POST", &["uploadId="], Fault::ErrorIn200, 1));
    proxy.add(Rule::new("POST", &["uploadId="], Fault::DropResponse(0), 1));
    // The manifest's PutObject applied with its answer lost: state unknown, checked by HEAD
    // (itself throttled once), never written twice.
    proxy.add(
        Rule::new("PUT", &["manifest.json"], Fault::DropResponse(0), 1).excluding(&["partNumber"]),
    );
    proxy.add(Rule::new("HEAD", &["manifest.json"], Fault::Status(503), 1));
    let envs = [
        ("LIFEBOAT_S3_RETRY_SECONDS", "60"),
        ("LIFEBOAT_S3_ATTEMPT_TIMEOUT", "5"),
    ];

    let out = run(&sb, &["backup", "flaky", "--json"], &envs);
    assert_exit(&out, 0, "backup through faults");
    let unfired = proxy.unfired();
    assert!(unfired.is_empty(), "faults not exercised: {unfired:?}");
    assert!(s3.uploads("flaky-offsite").is_empty(), "parts left behind");
    let versions = s3.versions("flaky-offsite");
    let mut keys: Vec<&str> = versions.iter().map(|(k, _)| k.as_str()).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 2, "payload and manifest: {versions:?}");
    assert_eq!(versions.len(), 2, "each object written once: {versions:?}");

    // Reading back through faults: a throttled listing, a download cut mid-body (resumed
    // where it stopped), then the pipeline's sha256 proves the object.
    proxy.clear();
    proxy.add(Rule::new("GET", &["list-type=2"], Fault::Status(503), 1));
    proxy.add(
        Rule::new("GET", &[".tar.zst.age"], Fault::DropResponse(3 << 20), 1)
            .excluding(&["list-type"]),
    );
    let out = run(
        &sb,
        &["--identity", &identity(), "drill", "flaky", "--json"],
        &envs,
    );
    assert_exit(&out, 0, "drill through faults");
    assert_eq!(json(&out)["passed"], Value::Bool(true));
    assert!(proxy.unfired().is_empty(), "{:?}", proxy.unfired());
    let resumed = proxy
        .log()
        .iter()
        .any(|r| r.method == "GET" && r.header("range").is_some_and(|v| v.starts_with("bytes=")));
    assert!(resumed, "the cut download was resumed with a range");
}

#[test]
fn a_failed_upload_is_aborted_and_leaves_nothing() {
    let moto = Moto::start();
    let proxy = Proxy::start(moto.port);
    let s3 = S3::new(&moto.endpoint());
    s3.create_bucket("broken-offsite", false);
    let sb = Sandbox::new();
    let src = sb.path("src/data");
    fs::create_dir_all(&src).unwrap();
    random_file(&src.join("blob.bin"), 20 * 1024 * 1024, 9);
    let store = s3_store(&proxy.endpoint(), "broken-offsite", "");
    write_policy(
        &sb,
        "broken",
        &policy_text("broken", &new_id(), "files", &src, &[store]),
    );
    proxy.add(Rule::new(
        "PUT",
        &["partNumber=2"],
        Fault::Status(500),
        usize::MAX,
    ));

    let started = Instant::now();
    let out = run(
        &sb,
        &["backup", "broken"],
        &[("LIFEBOAT_S3_RETRY_SECONDS", "2")],
    );
    let line = assert_one_line_error(&out, 3, "backup through a dead server");
    assert!(line.contains("gave up after"), "{line}");
    assert!(line.contains("s3://broken-offsite/lifeboat/"), "{line}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "retries are bounded"
    );
    assert!(
        s3.uploads("broken-offsite").is_empty(),
        "the failed multipart upload was aborted"
    );
    assert!(
        s3.keys("broken-offsite").is_empty(),
        "no object, no manifest"
    );

    // A server that is not there at all: the same one-line runtime error.
    drop(proxy);
    let out = run(
        &sb,
        &["backup", "broken"],
        &[("LIFEBOAT_S3_RETRY_SECONDS", "1")],
    );
    assert_one_line_error(&out, 3, "backup with the server gone");
}

#[test]
fn object_lock_blocks_deletion_and_rotation_waits_for_it() {
    let moto = Moto::start();
    let s3 = S3::new(&moto.endpoint());
    s3.create_bucket("locked-offsite", true);
    let sb = Sandbox::new();
    // Over one part: the payload goes up as a multipart upload, the manifest in one put.
    let src = sb.path("src/ledger");
    fs::create_dir_all(&src).unwrap();
    random_file(&src.join("ledger.bin"), 9 * 1024 * 1024, 3);
    let stores = [
        local_store(&sb.store(), ""),
        s3_store(&moto.endpoint(), "locked-offsite", "object_lock_days = 1"),
    ];
    let text =
        policy_text("ledger", &new_id(), "files", &src, &stores) + "\n[retention]\nkeep_last = 1\n";
    write_policy(&sb, "ledger", &text);
    let first = {
        let out = run(&sb, &["backup", "ledger", "--json"], &[]);
        assert_exit(&out, 0, "first backup");
        json(&out)[0]["backup_id"].as_str().unwrap().to_string()
    };
    let out = run(&sb, &["backup", "ledger", "--json"], &[]);
    assert_exit(&out, 0, "second backup");

    // Every object carries its retention; the server refuses to delete a locked version.
    let versions = s3.versions("locked-offsite");
    assert_eq!(versions.len(), 4);
    for (k, v) in &versions {
        let head = s3
            .block(
                s3.client
                    .head_object()
                    .bucket("locked-offsite")
                    .key(k)
                    .version_id(v)
                    .send(),
            )
            .expect("head");
        let until = head
            .object_lock_retain_until_date()
            .expect("retention date");
        let days = (until.secs() - chrono::Utc::now().timestamp()) as f64 / 86_400.0;
        assert!((0.9..=1.01).contains(&days), "{k} locked for {days} days");
        assert_eq!(
            head.object_lock_mode().map(|m| m.as_str()),
            Some("COMPLIANCE")
        );
        if k.ends_with(".age") {
            let etag = head.e_tag().unwrap().trim_matches('"');
            assert!(etag.ends_with("-2"), "{k} is a 2-part upload: {etag}");
        }
    }
    let (k, v) = versions
        .iter()
        .find(|(k, _)| k.contains(&first) && k.ends_with(".manifest.json"))
        .unwrap();
    let denied = s3.block(
        s3.client
            .delete_object()
            .bucket("locked-offsite")
            .key(k)
            .version_id(v)
            .send(),
    );
    let err = denied.expect_err("deleting a locked version must fail");
    assert_eq!(
        aws_sdk_s3::error::ProvideErrorMetadata::code(&err),
        Some("AccessDenied")
    );

    // Rotation deletes the old backup from the local store, leaves it in the bucket and
    // says until when.
    let out = run(&sb, &["rotate", "ledger"], &[]);
    assert_exit(&out, 0, "rotate with a locked store");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("backup {first} is locked until ")),
        "{stdout}"
    );
    assert!(stdout.contains("s3://locked-offsite/lifeboat/"), "{stdout}");
    assert_eq!(s3.versions("locked-offsite").len(), 4, "nothing deleted");
    let local: Vec<String> = common::dir_names(&sb.store());
    assert!(
        !local.iter().any(|n| n.starts_with(&first)),
        "the unlocked copy is gone: {local:?}"
    );
    let out = run(&sb, &["list", "--json"], &[]);
    let listed = json(&out);
    let row = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == first.as_str())
        .expect("still listed while the bucket holds it");
    assert_eq!(
        row["stores"],
        serde_json::json!(["s3://locked-offsite/lifeboat/"])
    );
    let out = run(&sb, &["rotate", "ledger", "--json"], &[]);
    assert_exit(&out, 0, "rotate again");
    let v = json(&out);
    assert_eq!(v["locked"][0]["backup_id"], first.as_str(), "{v}");
}

#[test]
fn disaster_recovery_from_the_bucket_alone() {
    let moto = Moto::start();
    let s3 = S3::new(&moto.endpoint());
    s3.create_bucket("dr-offsite", false);
    let id = new_id();
    let origin = Sandbox::new();
    let db = origin.path("src/shop.db");
    let conn = create_db(&db, 300, "DR-MARKER");
    drop(conn);
    let store_s3 = s3_store(
        &moto.endpoint(),
        "dr-offsite",
        "storage_class = \"STANDARD_IA\"\nsse = \"AES256\"",
    );
    let text = policy_text(
        "shop",
        &id,
        "sqlite",
        &db,
        &[local_store(&origin.store(), ""), store_s3.clone()],
    );
    write_policy(&origin, "shop", &text);
    let out = run(&origin, &["backup", "shop"], &[]);
    assert_exit(&out, 0, "backup to local and s3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("  s3://dr-offsite/lifeboat/: ok"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("  local:{}: ok", s(&origin.store()))),
        "{stdout}"
    );
    assert_anonymous_keys(&s3, "dr-offsite", "shop");
    let payload = s3
        .keys("dr-offsite")
        .into_iter()
        .find(|k| k.ends_with(".age"))
        .unwrap();
    assert!(!common::contains(
        &s3.get("dr-offsite", &payload),
        b"DR-MARKER"
    ));
    let head = s3
        .block(
            s3.client
                .head_object()
                .bucket("dr-offsite")
                .key(&payload)
                .send(),
        )
        .expect("head payload");
    assert_eq!(
        head.storage_class().map(|c| c.as_str()),
        Some("STANDARD_IA")
    );
    assert_eq!(
        head.server_side_encryption().map(|c| c.as_str()),
        Some("AES256")
    );

    // The off-site copy alone restores, on the original machine.
    let out = run(
        &origin,
        &[
            "--identity",
            &identity(),
            "drill",
            "shop",
            "--store",
            "s3",
            "--json",
        ],
        &[],
    );
    assert_exit(&out, 0, "drill --store s3");
    assert_eq!(json(&out)["passed"], Value::Bool(true));
    let out = run(
        &origin,
        &["--identity", &identity(), "drill", "shop", "--store", "ftp"],
        &[],
    );
    assert_one_line_error(&out, 2, "drill --store with no such store");

    // A fresh machine: the policy file and the private key, no catalog, no local store.
    let fresh = Sandbox::new();
    let text = policy_text(
        "shop",
        &id,
        "sqlite",
        &fresh.path("src/shop.db"),
        &[local_store(&fresh.store(), ""), store_s3],
    );
    write_policy(&fresh, "shop", &text);
    let out = run(
        &fresh,
        &["--identity", &identity(), "catalog", "rebuild"],
        &[],
    );
    assert_exit(&out, 0, "catalog rebuild");
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("shop: 1 backups (1 private manifests checked)"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = run(&fresh, &["list", "--json"], &[]);
    let listed = json(&out);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(
        listed[0]["stores"],
        serde_json::json!(["s3://dr-offsite/lifeboat/"])
    );

    let target = fresh.path("restored/shop.db");
    let out = run(
        &fresh,
        &[
            "--identity",
            &identity(),
            "restore",
            "shop",
            "--to",
            s(&target),
        ],
        &[],
    );
    assert_exit(&out, 0, "restore from the bucket");
    assert_eq!(inspect_db(&target), ("ok".to_string(), 300));

    let out = run(
        &fresh,
        &[
            "--identity",
            &identity(),
            "drill",
            "shop",
            "--store",
            "s3",
            "--json",
        ],
        &[],
    );
    assert_exit(&out, 0, "drill on the fresh machine");
    let v = json(&out);
    assert_eq!(v["passed"], Value::Bool(true));
    assert_eq!(v["phases"][0]["name"], "fetch");
}

#[test]
fn an_optional_store_may_fail_and_credentials_stay_secret() {
    let moto = Moto::start();
    let s3 = S3::new(&moto.endpoint());
    s3.create_bucket("spare-offsite", false);
    let sb = Sandbox::new();
    let db = sb.path("src/shop.db");
    create_db(&db, 20, "OPT-MARKER");
    // The bucket does not exist: the optional store fails, the backup counts.
    let stores = [
        local_store(&sb.store(), ""),
        s3_store(&moto.endpoint(), "no-such-bucket", "required = false"),
    ];
    write_policy(
        &sb,
        "opt",
        &policy_text("opt", &new_id(), "sqlite", &db, &stores),
    );
    let out = run(&sb, &["backup", "opt"], &[]);
    assert_exit(&out, 0, "backup with a failing optional store");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("  s3://no-such-bucket/lifeboat/: FAILED (not required): "),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("lifeboat: warning: opt: store s3://no-such-bucket/lifeboat/ failed"),
        "{stderr}"
    );
    let out = run(&sb, &["list", "--json"], &[]);
    assert_eq!(
        json(&out)[0]["stores"],
        serde_json::json!([format!("local:{}", s(&sb.store()))])
    );

    // Required (the default): the same failure fails the backup, in one line, exit 3.
    let stores = [
        local_store(&sb.store(), ""),
        s3_store(&moto.endpoint(), "no-such-bucket", ""),
    ];
    write_policy(
        &sb,
        "opt",
        &policy_text("opt", &new_id(), "sqlite", &db, &stores),
    );
    let out = run(&sb, &["backup", "opt"], &[]);
    let line = assert_one_line_error(&out, 3, "backup with a failing required store");
    assert!(line.contains("NoSuchBucket"), "{line}");

    // Credentials named by credentials_env but not set: a configuration error naming the
    // variables, never their values.
    let stores = [s3_store(&moto.endpoint(), "spare-offsite", "")];
    write_policy(
        &sb,
        "opt",
        &policy_text("opt", &new_id(), "sqlite", &db, &stores),
    );
    let out = sb
        .command()
        .env_remove(format!("{CREDS_PREFIX}_ACCESS_KEY_ID"))
        .env_remove(format!("{CREDS_PREFIX}_SECRET_ACCESS_KEY"))
        .args(["backup", "opt"])
        .output()
        .unwrap();
    let line = assert_one_line_error(&out, 2, "backup without credentials");
    assert!(line.contains("LBTEST_ACCESS_KEY_ID"), "{line}");
    let out = run(&sb, &["backup", "opt"], &[]);
    assert_exit(&out, 0, "backup with credentials");
}
