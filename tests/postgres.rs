//! PostgreSQL sources against real clusters these tests create: `initdb` into a temporary
//! directory (as the `postgres` OS user when the tests run as root), `pg_ctl` on a free
//! loopback port, and a Drop guard that stops the server even when a test fails.
//!
//! Logical: a pgbench database backs up, drills, and restores into a new database with the
//! same row count in every table (and with standard tools); the same with `jobs = 2`.
//! Physical: WAL archived through `lifeboat wal-push` with no archiver failure, a
//! point-in-time restore between two committed rows, and a drill. Errors: a wrong URL or a
//! stopped server is a one-line error, exit 3, with the password masked.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use tempfile::TempDir;

/// The password of the clusters' `postgres` role (TCP connections need it).
const PASSWORD: &str = "Lb-t3st-Pw";

// ---- clusters ---------------------------------------------------------------------------

/// The PostgreSQL binaries: `$LIFEBOAT_PG_BINDIR`, or the newest `/usr/lib/postgresql/*/bin`.
fn bindir() -> PathBuf {
    if let Some(d) = std::env::var_os("LIFEBOAT_PG_BINDIR") {
        return PathBuf::from(d);
    }
    let mut found: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, d)| d)
        .expect("PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin; run scripts/setup.sh (these tests fail rather than skip)")
}

/// The `postgres` OS user's uid and gid when the tests run as root (servers refuse root).
fn server_user() -> Option<(u32, u32)> {
    if fs::metadata("/proc/self").ok()?.uid() != 0 {
        return None;
    }
    let out = Command::new("getent")
        .args(["passwd", "postgres"])
        .output()
        .expect("run getent");
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    let f: Vec<&str> = line.trim().split(':').collect();
    assert!(
        f.len() > 3,
        "running as root needs the `postgres` OS user; run scripts/setup.sh"
    );
    Some((f[2].parse().unwrap(), f[3].parse().unwrap()))
}

/// `tool` run as the server's OS user.
fn as_server(tool: &Path) -> Command {
    match server_user() {
        None => Command::new(tool),
        Some((uid, gid)) => {
            let mut cmd = Command::new("setpriv");
            cmd.arg(format!("--reuid={uid}"))
                .arg(format!("--regid={gid}"))
                .args(["--clear-groups", "--"])
                .arg(tool);
            cmd
        }
    }
}

/// Gives `path` to the server's OS user (when running as root).
fn give(path: &Path) {
    if let Some((uid, gid)) = server_user() {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown");
    }
}

fn run_ok(mut cmd: Command, what: &str) -> String {
    let out = cmd.stdin(Stdio::null()).output().expect(what);
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A PostgreSQL server on a data directory; stopped when dropped (also on panic).
struct Cluster {
    /// The temporary directory holding the data directory, when this cluster made it.
    _root: Option<TempDir>,
    data: PathBuf,
    port: u16,
    log: PathBuf,
    /// Extra `postgres` options at start (`pg_ctl -o`).
    options: String,
    running: bool,
}

impl Cluster {
    /// `initdb` of a new cluster (trust on its private socket, scram on loopback TCP with
    /// [`PASSWORD`]), with `conf` appended to its `postgresql.conf`; not started.
    fn init(conf: &str) -> Cluster {
        require_tools(&["setpriv", "getent"]);
        let bin = bindir();
        // A short path: the socket lives in it.
        let root = tempfile::Builder::new()
            .prefix("lbpg")
            .tempdir_in("/tmp")
            .expect("cluster dir");
        fs::set_permissions(root.path(), fs::Permissions::from_mode(0o700)).unwrap();
        give(root.path());
        let pwfile = root.path().join("pw");
        fs::write(&pwfile, format!("{PASSWORD}\n")).unwrap();
        give(&pwfile);
        let data = root.path().join("data");
        let mut initdb = as_server(&bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--no-sync",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .current_dir("/");
        run_ok(initdb, "initdb");
        let port = free_port();
        let mut text = fs::read_to_string(data.join("postgresql.conf")).unwrap();
        text += &format!(
            "\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nfsync = off\n{conf}\n",
            root.path().display()
        );
        fs::write(data.join("postgresql.conf"), text).unwrap();
        Cluster {
            log: root.path().join("server.log"),
            _root: Some(root),
            data,
            port,
            options: String::new(),
            running: false,
        }
    }

    /// A new cluster, started.
    fn start_new(conf: &str) -> Cluster {
        let mut c = Cluster::init(conf);
        c.start();
        c
    }

    /// A server on an existing data directory (a restored one), on a free port.
    fn adopt(data: &Path, log: &Path) -> Cluster {
        let port = free_port();
        Cluster {
            _root: None,
            data: data.to_path_buf(),
            port,
            log: log.to_path_buf(),
            options: format!("-p {port} -c archive_mode=off"),
            running: false,
        }
    }

    fn pg_ctl(&self) -> Command {
        let mut cmd = as_server(&bindir().join("pg_ctl"));
        cmd.arg("-D").arg(&self.data).current_dir("/");
        cmd
    }

    fn start(&mut self) {
        let mut cmd = self.pg_ctl();
        cmd.arg("-l").arg(&self.log).args(["-w", "-t", "120"]);
        if !self.options.is_empty() {
            cmd.args(["-o", &self.options]);
        }
        cmd.arg("start");
        self.running = true;
        let out = cmd.stdin(Stdio::null()).output().expect("pg_ctl start");
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    fn stop(&mut self) {
        if self.running {
            let mut cmd = self.pg_ctl();
            cmd.args(["-m", "fast", "-w", "stop"]);
            run_ok(cmd, "pg_ctl stop");
            self.running = false;
        }
    }

    /// `postgresql://postgres:PASSWORD@127.0.0.1:PORT/db`.
    fn url(&self, db: &str) -> String {
        format!(
            "postgresql://postgres:{PASSWORD}@127.0.0.1:{}/{db}",
            self.port
        )
    }

    /// Runs `sql` with psql on `db` (over TCP, password from the environment); returns the
    /// unaligned, tuples-only output.
    fn psql(&self, db: &str, sql: &str) -> String {
        let mut cmd = Command::new(bindir().join("psql"));
        cmd.env("PGPASSWORD", PASSWORD)
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(format!(
                "postgresql://postgres@127.0.0.1:{}/{db}",
                self.port
            ))
            .args(["-c", sql]);
        run_ok(cmd, &format!("psql {sql}"))
    }

    /// Waits until the server has left recovery (a restored cluster promoted).
    fn wait_promoted(&self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let mut cmd = Command::new(bindir().join("psql"));
            cmd.env("PGPASSWORD", PASSWORD)
                .args(["-X", "-A", "-t", "-d"])
                .arg(format!(
                    "postgresql://postgres@127.0.0.1:{}/postgres",
                    self.port
                ))
                .args(["-c", "SELECT pg_is_in_recovery()"])
                .stdin(Stdio::null());
            if let Ok(out) = cmd.output()
                && String::from_utf8_lossy(&out.stdout).trim() == "f"
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the restored server did not finish recovery; log:\n{}",
                fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.running {
            let mut cmd = self.pg_ctl();
            cmd.args(["-m", "immediate", "-w", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let _ = cmd.status();
        }
    }
}

// ---- helpers ----------------------------------------------------------------------------

/// Row counts of the pgbench tables in `db`.
fn pgbench_counts(c: &Cluster, db: &str) -> Vec<(String, u64)> {
    [
        "pgbench_accounts",
        "pgbench_branches",
        "pgbench_history",
        "pgbench_tellers",
    ]
    .iter()
    .map(|t| {
        let n = c.psql(db, &format!("SELECT count(*) FROM {t}"));
        (t.to_string(), n.parse().unwrap())
    })
    .collect()
}

/// `pgbench -i -s SCALE` into a new database `db`, then some transactions (history rows).
fn pgbench(c: &Cluster, db: &str, scale: u32) {
    c.psql("postgres", &format!("CREATE DATABASE {db}"));
    for args in [
        vec![
            "-i".to_string(),
            "-q".into(),
            "-s".into(),
            scale.to_string(),
        ],
        vec!["-t".into(), "200".into(), "-c".into(), "2".into()],
    ] {
        let mut cmd = Command::new(bindir().join("pgbench"));
        cmd.env("PGPASSWORD", PASSWORD)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &c.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(&args)
            .arg(db);
        run_ok(cmd, "pgbench");
    }
}

/// The fixture age recipient, inline (the server's user may not reach the fixtures).
fn recipient_line() -> String {
    format!("age_recipients = [\"{}\"]", age_recipient())
}

/// Writes `policies/<name>.toml` with a postgres `[source]` (`source` is its body).
fn write_policy(sb: &Sandbox, name: &str, source: &str, extra: &str) {
    let text = format!(
        "name = \"{name}\"\nid = \"{}\"\n\n[source]\nkind = \"postgres\"\n{source}\n\n[[store]]\nkind = \"local\"\npath = \"{}\"\n\n[encryption]\n{}\n\n{extra}\n",
        uuid::Uuid::new_v4(),
        s(&sb.store()),
        recipient_line()
    );
    let path = sb.policies().join(format!("{name}.toml"));
    fs::write(&path, text).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
}

/// Asserts no output stream shows the password.
fn assert_masked(out: &Output, what: &str) {
    for (stream, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        assert!(
            !contains(bytes, PASSWORD.as_bytes()),
            "{what}: the password appears on {stream}:\n{}",
            String::from_utf8_lossy(bytes)
        );
    }
}

/// Asserts no file under `dir` contains the password.
fn assert_no_password_under(dir: &Path) {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = fs::read(&p) {
                assert!(
                    !contains(&bytes, PASSWORD.as_bytes()),
                    "{} contains the password",
                    p.display()
                );
            }
        }
    }
}

fn drill_json(sb: &Sandbox, name: &str) -> serde_json::Value {
    let out = sb.run(&["--identity", s(&key(AGE_IDENTITY)), "drill", name, "--json"]);
    assert_masked(&out, "drill");
    assert_exit(&out, 0, &format!("drill {name}"));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("drill --json");
    assert_eq!(v["passed"], true, "drill {name}: {v:#}");
    v
}

fn phase_names(v: &serde_json::Value) -> Vec<String> {
    v["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect()
}

/// The newest payload object of the store (for standard-tool recovery).
fn newest_payload(store: &Path) -> PathBuf {
    let mut manifests: Vec<(String, PathBuf)> = store_files(store)
        .into_iter()
        .filter(|p| s(p).ends_with(".manifest.json"))
        .map(|p| {
            let m: serde_json::Value = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
            (
                m["created_at"].as_str().unwrap().to_string(),
                store.join(m["payloads"][0]["object"].as_str().unwrap()),
            )
        })
        .collect();
    manifests.sort();
    manifests.pop().expect("a backup in the store").1
}

// ---- logical ----------------------------------------------------------------------------

#[test]
fn logical_pgbench_backs_up_drills_and_restores_with_equal_row_counts() {
    let mut c = Cluster::start_new("");
    pgbench(&c, "bench", 2);
    let source_counts = pgbench_counts(&c, "bench");
    assert!(source_counts[0].1 == 200_000 && source_counts[2].1 > 0);

    let sb = Sandbox::new();
    write_policy(
        &sb,
        "bench",
        &format!("url = \"{}\"\nmode = \"logical\"", c.url("bench")),
        &format!(
            "[drill]\nscratch_url = \"{}\"\n\n[verify]\ntables = [\"pgbench_accounts\", \"public.pgbench_tellers\"]\nmin_rows = {{ pgbench_accounts = 200000 }}\n\n[objectives]\nrto = \"10m\"\nrpo = \"1h\"\n",
            c.url("postgres")
        ),
    );
    let out = sb.run(&["backup", "bench", "--json"]);
    assert_masked(&out, "backup");
    assert_exit(&out, 0, "backup bench");

    // The drill restores into a scratch database it creates and drops.
    let v = drill_json(&sb, "bench");
    let phases = phase_names(&v);
    assert!(
        phases.contains(&"decrypt+decompress+pg_restore (server-bound)".to_string()),
        "{phases:?}"
    );
    assert!(v["rpo"]["measured_seconds"].as_f64().unwrap() < 600.0);
    assert_eq!(
        c.psql(
            "postgres",
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'lifeboat%'"
        ),
        "0",
        "the drill left a scratch database behind"
    );

    // Restore into a new database: the same rows in every table.
    let out = sb.restore(
        "bench",
        &key(AGE_IDENTITY),
        Path::new(&c.url("restored")),
        &[],
    );
    assert_masked(&out, "restore");
    assert_exit(&out, 0, "restore into a new database");
    assert!(String::from_utf8_lossy(&out.stdout).contains("postgres:***@"));
    assert_eq!(pgbench_counts(&c, "restored"), source_counts);

    // An existing non-empty database is refused without --force, replaced with it.
    c.psql("bench", "DELETE FROM pgbench_history");
    let out = sb.restore(
        "bench",
        &key(AGE_IDENTITY),
        Path::new(&c.url("restored")),
        &[],
    );
    let line = assert_one_line_error(&out, 2, "restore over a non-empty database");
    assert!(line.contains("--force") && line.contains("***"), "{line}");
    assert_masked(&out, "refused restore");
    c.psql("restored", "DELETE FROM pgbench_tellers");
    let out = sb.restore(
        "bench",
        &key(AGE_IDENTITY),
        Path::new(&c.url("restored")),
        &["--force"],
    );
    assert_exit(&out, 0, "restore --force");
    assert_eq!(pgbench_counts(&c, "restored"), source_counts);
    assert_eq!(
        c.psql(
            "postgres",
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'lifeboat%'"
        ),
        "0",
        "a staging or replaced database was left behind"
    );

    // Standard tools alone: age | zstd | tar -xO (the parts in order) | pg_restore.
    c.psql("postgres", "CREATE DATABASE by_hand");
    require_tools(&["age", "zstd", "tar"]);
    let payload = newest_payload(&sb.store());
    shell(
        "age -d -i \"$1\" \"$2\" | zstd -d | tar -xO | \"$3\" -w -d \"$4\"",
        &[
            &key(AGE_IDENTITY),
            &payload,
            &bindir().join("pg_restore"),
            Path::new(&format!(
                "postgresql://postgres@127.0.0.1:{}/by_hand",
                c.port
            )),
        ],
        &[("PGPASSWORD", Path::new(PASSWORD))],
    );
    assert_eq!(pgbench_counts(&c, "by_hand"), source_counts);

    // Nothing written by lifeboat holds the password.
    assert_no_password_under(&sb.store());
    assert_no_password_under(&sb.state());
    c.stop();
}

#[test]
fn logical_parallel_jobs_use_the_directory_format_and_leave_no_temp_files() {
    let mut c = Cluster::start_new("");
    pgbench(&c, "bench", 1);
    let source_counts = pgbench_counts(&c, "bench");
    let sb = Sandbox::new();
    write_policy(
        &sb,
        "jobs",
        &format!("url = \"{}\"\njobs = 2", c.url("bench")),
        &format!("[drill]\nscratch_url = \"{}\"\n", c.url("postgres")),
    );
    sb.backup("jobs");
    drill_json(&sb, "jobs");
    let out = sb.restore("jobs", &key(AGE_IDENTITY), Path::new(&c.url("copy")), &[]);
    assert_exit(&out, 0, "restore with jobs");
    assert_eq!(pgbench_counts(&c, "copy"), source_counts);

    // The payload is a tar of pg_dump's directory format.
    let listing = shell(
        "age -d -i \"$1\" \"$2\" | zstd -d | tar -t",
        &[&key(AGE_IDENTITY), &newest_payload(&sb.store())],
        &[],
    );
    let listing = String::from_utf8(listing).unwrap();
    assert!(
        listing.lines().any(|l| l == "dump.pgdir/toc.dat"),
        "{listing}"
    );

    // The dump and restore directories were removed.
    let tmp = sb.state().join("tmp");
    let left: Vec<String> = fs::read_dir(&tmp)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("pg"))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "temporary dump directories left: {left:?}");
    c.stop();
}

// ---- physical ---------------------------------------------------------------------------

/// The `lifeboat` binary at a path the server's OS user can execute (copied into `dir` when
/// the build directory is out of its reach).
fn lifeboat_for_server(dir: &Path) -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_lifeboat"));
    let reachable = server_user().is_none()
        || exe
            .ancestors()
            .skip(1)
            .all(|d| fs::metadata(d).is_ok_and(|m| m.permissions().mode() & 0o001 != 0));
    if reachable {
        return exe;
    }
    let copy = dir.join("lifeboat");
    fs::copy(&exe, &copy).unwrap();
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).unwrap();
    copy
}

/// Makes the sandbox reachable by the server's OS user: the archive command reads the
/// policies and writes the store.
fn share_sandbox(sb: &Sandbox) {
    fs::set_permissions(sb.path(""), fs::Permissions::from_mode(0o711)).unwrap();
    fs::set_permissions(sb.policies(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::create_dir_all(sb.store()).unwrap();
    fs::set_permissions(sb.store(), fs::Permissions::from_mode(0o700)).unwrap();
    give(&sb.store());
}

/// Switches to a new WAL file and waits until the one just closed is archived.
fn archive_current_wal(c: &Cluster) -> String {
    let closed = c.psql("postgres", "SELECT pg_walfile_name(pg_switch_wal())");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let last = c.psql(
            "postgres",
            "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver",
        );
        if last.as_str() >= closed.as_str() {
            return closed;
        }
        assert!(
            Instant::now() < deadline,
            "WAL {closed} was not archived (last {last}); log:\n{}",
            fs::read_to_string(&c.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn physical_wal_archive_point_in_time_restore_and_drill() {
    let sb = Sandbox::new();
    share_sandbox(&sb);
    let mut c = Cluster::init("");
    let exe = lifeboat_for_server(c._root.as_ref().unwrap().path());
    let conf = format!(
        "wal_level = replica\narchive_mode = on\narchive_command = '{} --policies {} wal-push main %p'\n",
        exe.display(),
        sb.policies().display()
    );
    let mut text = fs::read_to_string(c.data.join("postgresql.conf")).unwrap();
    text += &conf;
    fs::write(c.data.join("postgresql.conf"), text).unwrap();
    write_policy(
        &sb,
        "main",
        &format!("url = \"{}\"\nmode = \"physical\"", c.url("postgres")),
        "[verify]\ntables = [\"t\"]\nmin_rows = { t = 1 }\n\n[objectives]\nrto = \"10m\"\nrpo = \"1h\"\n",
    );
    c.start();
    c.psql("postgres", "CREATE TABLE t (v text PRIMARY KEY)");
    c.psql("postgres", "INSERT INTO t VALUES ('before the backup')");

    let out = sb.run(&["backup", "main", "--json"]);
    assert_masked(&out, "physical backup");
    assert_exit(&out, 0, "physical backup");

    // Two committed rows, with the target time between them.
    c.psql("postgres", "INSERT INTO t VALUES ('first')");
    std::thread::sleep(Duration::from_millis(1100));
    let target = c.psql(
        "postgres",
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
    );
    std::thread::sleep(Duration::from_millis(1100));
    c.psql("postgres", "INSERT INTO t VALUES ('second')");
    let last = archive_current_wal(&c);
    let archiver = c.psql(
        "postgres",
        "SELECT archived_count, failed_count FROM pg_stat_archiver",
    );
    let (archived, failed) = archiver.split_once('|').unwrap();
    assert!(archived.parse::<u32>().unwrap() >= 3, "{archiver}");
    assert_eq!(failed, "0", "pg_stat_archiver shows failures");

    // WAL objects are named by the policy's id, never its name, and are no backups.
    let names = dir_names(&sb.store());
    assert!(
        names
            .iter()
            .any(|n| n.ends_with(&format!("{last}.wal.json")))
    );
    assert!(names.iter().all(|n| !n.contains("main")));
    assert_eq!(sb.listed_ids().len(), 1);

    // wal-push of an archived segment again (PostgreSQL retries) succeeds; a different
    // content under the same name is refused.
    // (The segment comes back through wal-fetch, checked against its record.)
    fs::create_dir(sb.path("fetched")).unwrap();
    let seg = sb.path("fetched").join(&last);
    let out = sb.run(&[
        "--identity",
        s(&key(AGE_IDENTITY)),
        "wal-fetch",
        "main",
        &last,
        s(&seg),
    ]);
    assert_exit(&out, 0, "wal-fetch");
    assert_eq!(fs::metadata(&seg).unwrap().len(), 16 << 20);
    for _ in 0..2 {
        let out = sb.run(&["wal-push", "main", s(&seg)]);
        assert_exit(&out, 0, "wal-push of an archived segment");
    }
    let altered = sb.path("altered");
    fs::create_dir(&altered).unwrap();
    let altered = altered.join(&last);
    fs::copy(&seg, &altered).unwrap();
    flip_byte(&altered, 4096);
    let out = sb.run(&["wal-push", "main", s(&altered)]);
    let line = assert_one_line_error(&out, 1, "wal-push of different content");
    assert!(line.contains("refusing to overwrite"), "{line}");
    let out = sb.run(&[
        "--identity",
        s(&key(AGE_IDENTITY)),
        "wal-fetch",
        "main",
        "0000000100000000000000FF",
        s(&sb.path("fetched/missing")),
    ]);
    assert_one_line_error(&out, 1, "wal-fetch of a segment not archived");

    // Point-in-time restore: the identity must be readable by the server's user, which
    // runs restore_command (lifeboat wal-fetch).
    let identity = sb.path("server-identity.txt");
    fs::copy(key(AGE_IDENTITY), &identity).unwrap();
    give(&identity);
    let restores = sb.path("restores");
    fs::create_dir(&restores).unwrap();
    fs::set_permissions(&restores, fs::Permissions::from_mode(0o755)).unwrap();
    give(&restores);
    let pitr = restores.join("pitr");
    let out = sb.restore("main", &identity, &pitr, &["--at", &target]);
    assert_exit(&out, 0, "restore --at");
    assert!(pitr.join("recovery.signal").is_file());
    let mut restored = Cluster::adopt(&pitr, &restores.join("pitr.log"));
    restored.start();
    restored.wait_promoted();
    let rows = restored.psql("postgres", "SELECT string_agg(v, ',' ORDER BY v) FROM t");
    assert_eq!(
        rows, "before the backup,first",
        "point-in-time restore to {target}"
    );
    restored.stop();

    // A time before the base backup finished has no base backup to start from.
    let out = sb.restore(
        "main",
        &identity,
        &restores.join("too-early"),
        &["--at", "2000-01-01T00:00:00Z"],
    );
    assert_one_line_error(&out, 2, "restore --at before every backup");

    // The drill: a temporary server on a free loopback port replays the archive.
    let v = drill_json(&sb, "main");
    let phases = phase_names(&v);
    assert!(
        phases.contains(&"server start+WAL replay".to_string()),
        "{phases:?}"
    );
    assert!(v["rpo"]["measured_seconds"].as_f64().unwrap() < 600.0);
    c.stop();
}

// ---- errors -----------------------------------------------------------------------------

#[test]
fn wrong_url_or_stopped_server_is_a_one_line_error_with_exit_3() {
    let mut c = Cluster::start_new("");
    let sb = Sandbox::new();
    let nobody = free_port();
    write_policy(
        &sb,
        "wrongport",
        &format!("url = \"postgresql://postgres:{PASSWORD}@127.0.0.1:{nobody}/postgres\""),
        "",
    );
    write_policy(
        &sb,
        "nodb",
        &format!("url = \"{}\"", c.url("no_such_database")),
        "",
    );
    write_policy(
        &sb,
        "badpassword",
        &format!(
            "url = \"postgresql://postgres:wrong-{PASSWORD}@127.0.0.1:{}/postgres\"",
            c.port
        ),
        "",
    );
    write_policy(&sb, "ok", &format!("url = \"{}\"", c.url("postgres")), "");
    write_policy(
        &sb,
        "phys",
        &format!("url = \"{}\"\nmode = \"physical\"", c.url("postgres")),
        "",
    );
    for name in ["wrongport", "nodb", "badpassword"] {
        let out = sb.run(&["backup", name]);
        let line = assert_one_line_error(&out, 3, &format!("backup {name}"));
        assert!(line.contains("***"), "{line}");
        assert_masked(&out, name);
    }
    // A physical policy needs archive_mode on.
    let out = sb.run(&["backup", "phys"]);
    let line = assert_one_line_error(&out, 2, "physical backup without archiving");
    assert!(line.contains("archive_mode"), "{line}");

    sb.backup("ok");
    c.stop();
    for args in [
        vec!["backup", "ok"],
        vec!["backup", "phys"],
        vec![
            "--identity",
            s(&key(AGE_IDENTITY)),
            "restore",
            "ok",
            "--to",
            &c.url("new"),
        ],
    ] {
        let out = sb.run(&args);
        let line = assert_one_line_error(&out, 3, &format!("{args:?} with the server stopped"));
        assert!(line.contains("***") && line.contains("refused"), "{line}");
        assert_masked(&out, "stopped server");
    }

    // A malformed URL is a policy error naming file, line and key.
    write_policy(&sb, "malformed", "url = \"mysql://u@h/db\"", "");
    let out = sb.run(&["policy", "check"]);
    let line = assert_one_line_error(&out, 2, "policy check");
    assert!(line.contains("malformed.toml:6: source.url:"), "{line}");
}
