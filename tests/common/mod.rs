//! Shared helpers for the integration tests: each test gets a [`Sandbox`] (temp policies,
//! state, store and working directory) and drives the built `lifeboat` binary.
//!
//! External tools (`age`, `gpg`, `zstd`, `sqlite3`, `tar`, `gzip`) are required: a missing
//! tool fails the test with a clear message, it never skips it.

// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use rusqlite::Connection;
use tempfile::TempDir;

// ---- fixtures -------------------------------------------------------------------------

pub const AGE_IDENTITY: &str = "TEST-ONLY-age-identity.txt";
pub const AGE_RECIPIENT: &str = "TEST-ONLY-age-recipient.txt";
pub const OPENPGP_SECRET: &str = "TEST-ONLY-openpgp-secret.asc";
pub const OPENPGP_PUBLIC: &str = "TEST-ONLY-openpgp-public.asc";

/// A fixture key file (absolute path).
pub fn key(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/keys")
        .join(name)
}

/// The fixture age recipient (`age1…`).
pub fn age_recipient() -> String {
    fs::read_to_string(key(AGE_RECIPIENT))
        .expect("read fixture age recipient")
        .trim()
        .to_string()
}

/// The fixture OpenPGP fingerprint (from the armor's `Comment:` line).
pub fn openpgp_fingerprint() -> String {
    let text = fs::read_to_string(key(OPENPGP_PUBLIC)).expect("read fixture OpenPGP cert");
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("Comment: "))
        .filter(|l| l.chars().any(|c| c.is_ascii_hexdigit()))
        .expect("fixture cert has a fingerprint comment");
    line.replace(' ', "")
}

/// `path` as `&str` (every path in these tests is UTF-8).
pub fn s(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

// ---- external tools -------------------------------------------------------------------

/// Fails the test (never skips it) when a required external tool is not on PATH.
pub fn require_tools(tools: &[&str]) {
    for tool in tools {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
            .unwrap_or(false);
        assert!(
            found,
            "required external tool `{tool}` is not installed (not on PATH); \
             install it to run this test — these tests fail rather than skip"
        );
    }
}

/// Runs `script` with `bash -euo pipefail`, its positional arguments `$1…` being `args`;
/// asserts it succeeds and returns its stdout.
pub fn shell(script: &str, args: &[&Path], envs: &[(&str, &Path)]) -> Vec<u8> {
    require_tools(&["bash"]);
    let mut cmd = Command::new("bash");
    cmd.args(["-euo", "pipefail", "-c", script, "bash"])
        .args(args)
        .stdin(Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run bash");
    assert!(
        out.status.success(),
        "shell pipeline failed ({}): {script}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

// ---- running lifeboat -----------------------------------------------------------------

/// Temp directories for one test: `policies/`, `state/`, `store/`, `work/` (the current
/// directory of every command) and room for sources and restore targets.
pub struct Sandbox {
    dir: TempDir,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("lifeboat-it-")
            .tempdir()
            .expect("create temp dir");
        for sub in ["policies", "work", "src"] {
            fs::create_dir(dir.path().join(sub)).expect("create sandbox dir");
        }
        Sandbox { dir }
    }

    /// A path inside the sandbox.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn policies(&self) -> PathBuf {
        self.path("policies")
    }

    pub fn state(&self) -> PathBuf {
        self.path("state")
    }

    pub fn store(&self) -> PathBuf {
        self.path("store")
    }

    /// `lifeboat` with this sandbox's `--policies` and `--state-dir`, run in `work/`, with
    /// no `LIFEBOAT_*` variables inherited.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lifeboat"));
        cmd.current_dir(self.path("work"))
            .env_remove("LIFEBOAT_STATE_DIR")
            .env_remove("LIFEBOAT_IDENTITY_FILE")
            .env_remove("LIFEBOAT_NOW")
            .stdin(Stdio::null())
            .arg("--policies")
            .arg(self.policies())
            .arg("--state-dir")
            .arg(self.state());
        cmd
    }

    /// Runs `lifeboat ARGS…`.
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        self.command().args(args).output().expect("run lifeboat")
    }

    /// `lifeboat backup NAME --json`, asserted to succeed; returns the backup id.
    pub fn backup(&self, name: &str) -> String {
        let out = self.run(&["backup", name, "--json"]);
        assert_exit(&out, 0, &format!("backup {name}"));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("backup --json");
        v[0]["backup_id"]
            .as_str()
            .expect("backup_id in backup --json")
            .to_string()
    }

    /// `lifeboat --identity ID restore NAME --to TARGET EXTRA…`.
    pub fn restore(&self, name: &str, identity: &Path, target: &Path, extra: &[&str]) -> Output {
        let mut args = vec![
            "--identity",
            s(identity),
            "restore",
            name,
            "--to",
            s(target),
        ];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    /// `lifeboat --identity ID restore --archive FILE --to TARGET`.
    pub fn restore_archive(&self, identity: &Path, archive: &Path, target: &Path) -> Output {
        self.run(&[
            "--identity",
            s(identity),
            "restore",
            "--archive",
            s(archive),
            "--to",
            s(target),
        ])
    }

    /// Backup ids listed by `lifeboat list --json`, sorted.
    pub fn listed_ids(&self) -> Vec<String> {
        let out = self.run(&["list", "--json"]);
        assert_exit(&out, 0, "list --json");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("list --json");
        let mut ids: Vec<String> = v
            .as_array()
            .expect("list --json is an array")
            .iter()
            .map(|r| r["id"].as_str().expect("id").to_string())
            .collect();
        ids.sort();
        ids
    }
}

/// Asserts the exit code, showing both output streams when it differs.
pub fn assert_exit(out: &Output, code: i32, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: expected exit {code}, got {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Asserts a failure with `code` whose stderr is exactly one `lifeboat: error: …` line;
/// returns that line.
pub fn assert_one_line_error(out: &Output, code: i32, what: &str) -> String {
    assert_exit(out, code, what);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{what}: stderr is not one line:\n{stderr}");
    assert!(
        lines[0].starts_with("lifeboat: error: "),
        "{what}: unexpected stderr: {stderr}"
    );
    lines[0].to_string()
}

// ---- policies -------------------------------------------------------------------------

/// A policy to write into the sandbox; every path is absolute.
pub struct PolicySpec {
    pub name: String,
    pub id: String,
    pub kind: &'static str,
    pub source: PathBuf,
    pub store: PathBuf,
    pub age_recipients_file: Option<PathBuf>,
    pub openpgp_certs: Vec<PathBuf>,
    pub codec: &'static str,
}

impl PolicySpec {
    /// A policy for `source` (kind `sqlite` or `files`) stored in the sandbox store,
    /// encrypted to the fixture age recipient with zstd.
    pub fn new(sb: &Sandbox, name: &str, kind: &'static str, source: &Path) -> Self {
        PolicySpec {
            name: name.into(),
            id: uuid::Uuid::new_v4().to_string(),
            kind,
            source: source.to_path_buf(),
            store: sb.store(),
            age_recipients_file: Some(key(AGE_RECIPIENT)),
            openpgp_certs: Vec::new(),
            codec: "zstd",
        }
    }

    /// Also encrypts to the OpenPGP certificate in `cert` (a second payload).
    pub fn with_openpgp(mut self, cert: &Path) -> Self {
        self.openpgp_certs.push(cert.to_path_buf());
        self
    }

    /// Encrypts to the OpenPGP certificate in `cert` only, compressed with `codec`.
    pub fn openpgp_only(mut self, cert: &Path, codec: &'static str) -> Self {
        self.age_recipients_file = None;
        self.codec = codec;
        self.with_openpgp(cert)
    }

    pub fn text(&self) -> String {
        let mut t = format!(
            "name = \"{}\"\nid = \"{}\"\n\n[source]\nkind = \"{}\"\npath = \"{}\"\n\n\
             [[store]]\nkind = \"local\"\npath = \"{}\"\n\n[encryption]\n",
            self.name,
            self.id,
            self.kind,
            s(&self.source),
            s(&self.store)
        );
        if let Some(f) = &self.age_recipients_file {
            t += &format!("age_recipients_file = \"{}\"\n", s(f));
        }
        if !self.openpgp_certs.is_empty() {
            let certs: Vec<String> = self
                .openpgp_certs
                .iter()
                .map(|c| format!("\"{}\"", s(c)))
                .collect();
            t += &format!("openpgp_certs = [{}]\n", certs.join(", "));
        }
        t += &format!("\n[compression]\ncodec = \"{}\"\n", self.codec);
        t
    }

    /// Writes `policies/<name>.toml`; returns `self` for the id.
    pub fn write(self, sb: &Sandbox) -> Self {
        fs::write(
            sb.policies().join(format!("{}.toml", self.name)),
            self.text(),
        )
        .expect("write policy");
        self
    }
}

// ---- SQLite ---------------------------------------------------------------------------

/// Creates a WAL-mode database with table `items(id, body)` holding `rows` rows, each body
/// containing `marker`; returns the open connection.
pub fn create_db(path: &Path, rows: usize, marker: &str) -> Connection {
    let conn = Connection::open(path).expect("create db");
    conn.busy_timeout(std::time::Duration::from_secs(30))
        .expect("busy timeout");
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .expect("WAL");
    assert_eq!(mode, "wal");
    conn.execute_batch("CREATE TABLE items (id INTEGER PRIMARY KEY, body TEXT NOT NULL);")
        .expect("create table");
    let tx = conn.unchecked_transaction().expect("tx");
    for i in 0..rows {
        insert_row(&tx, i, marker);
    }
    tx.commit().expect("commit");
    conn
}

/// Inserts one row whose body contains `marker`.
pub fn insert_row(conn: &Connection, i: usize, marker: &str) {
    conn.execute(
        "INSERT INTO items (body) VALUES (?1)",
        [format!("{marker} row {i} {}", "x".repeat(64))],
    )
    .expect("insert row");
}

/// Rows in `items`.
pub fn row_count(conn: &Connection) -> u64 {
    conn.query_row("SELECT count(*) FROM items", [], |r| r.get::<_, i64>(0))
        .expect("count rows") as u64
}

/// `PRAGMA integrity_check` of `path` according to the real `sqlite3` tool.
pub fn sqlite3_integrity_check(path: &Path) -> String {
    require_tools(&["sqlite3"]);
    let out = Command::new("sqlite3")
        .arg(path)
        .arg("PRAGMA integrity_check;")
        .stdin(Stdio::null())
        .output()
        .expect("run sqlite3");
    assert!(
        out.status.success(),
        "sqlite3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Opens `path` read-only and returns (`PRAGMA integrity_check`, rows in `items`).
pub fn inspect_db(path: &Path) -> (String, u64) {
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open restored db");
    let verdict: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check");
    (verdict, row_count(&conn))
}

// ---- trees ----------------------------------------------------------------------------

/// The relative path of the wallet file whose path is 150 characters long (a PAX name).
pub fn long_wallet_path() -> String {
    let dir = "nested/deeper/";
    format!("{dir}{}", "l".repeat(150 - dir.len()))
}

/// Builds a wallet tree at `root` (mode 0700): 0600 files, 0700 dirs, a 0640 file, a
/// symlink, an empty dir (0750, so a restore forcing 0700 is noticed), nested dirs and a
/// file with a 150-character path; file contents contain `marker`.
pub fn make_wallet(root: &Path, marker: &str) {
    let file = |rel: &str, body: &str, mode: u32| {
        let p = root.join(rel);
        fs::write(&p, body).expect("write wallet file");
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).expect("chmod");
    };
    let dir = |rel: &str, mode: u32| {
        let p = root.join(rel);
        fs::create_dir_all(&p).expect("create wallet dir");
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).expect("chmod");
    };
    dir("", 0o700);
    dir("keys", 0o700);
    dir("nested", 0o700);
    dir("nested/deeper", 0o700);
    dir("empty", 0o750);
    file(
        "seed.txt",
        &format!("seed words {marker} abandon ability\n"),
        0o600,
    );
    file("keys/main.key", &format!("main key {marker}\n"), 0o600);
    file("wallet.toml", "network = \"mainnet\"\n", 0o640);
    file(
        "nested/deeper/notes.bin",
        &format!("{marker}\n").repeat(200),
        0o600,
    );
    let long = long_wallet_path();
    assert_eq!(long.len(), 150);
    file(&long, &format!("long name {marker}\n"), 0o600);
    symlink("keys/main.key", root.join("current.key")).expect("symlink");
}

/// One entry of a tree, for comparison.
#[derive(Debug, PartialEq, Eq)]
pub enum Entry {
    Dir { mode: u32 },
    File { mode: u32, bytes: Vec<u8> },
    Symlink { target: PathBuf },
}

/// Every entry under `root` (not `root` itself), keyed by relative path, sorted.
pub fn read_tree(root: &Path) -> Vec<(String, Entry)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).expect("read dir") {
            let path = e.expect("dir entry").path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            let meta = fs::symlink_metadata(&path).expect("stat");
            let mode = meta.permissions().mode() & 0o7777;
            let entry = if meta.file_type().is_symlink() {
                Entry::Symlink {
                    target: fs::read_link(&path).expect("readlink"),
                }
            } else if meta.is_dir() {
                stack.push(path.clone());
                Entry::Dir { mode }
            } else {
                assert!(meta.is_file(), "{rel} is a special file");
                Entry::File {
                    mode,
                    bytes: fs::read(&path).expect("read file"),
                }
            };
            out.push((rel, entry));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Asserts both trees hold the same paths, kinds, modes, bytes and symlink targets.
pub fn assert_same_tree(expected: &Path, actual: &Path) {
    let (want, got) = (read_tree(expected), read_tree(actual));
    let names = |t: &[(String, Entry)]| t.iter().map(|e| e.0.clone()).collect::<Vec<_>>();
    assert_eq!(names(&want), names(&got), "tree entries differ");
    for ((path, w), (_, g)) in want.iter().zip(&got) {
        assert_eq!(w, g, "entry {path} differs");
    }
}

/// Permission bits of `path` (not following symlinks).
pub fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path)
        .expect("stat")
        .permissions()
        .mode()
        & 0o7777
}

/// Names in `dir` (not recursive), sorted.
pub fn dir_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

// ---- the store ------------------------------------------------------------------------

/// Every file in the store directory, sorted.
pub fn store_files(store: &Path) -> Vec<PathBuf> {
    dir_names(store).iter().map(|n| store.join(n)).collect()
}

/// The one store object whose name ends with `suffix`.
pub fn store_object(store: &Path, suffix: &str) -> PathBuf {
    let found: Vec<PathBuf> = store_files(store)
        .into_iter()
        .filter(|p| s(p).ends_with(suffix))
        .collect();
    assert_eq!(found.len(), 1, "expected one *{suffix} in the store");
    found.into_iter().next().unwrap()
}

/// Changes one byte of `path` at `offset` (flips its lowest bit).
pub fn flip_byte(path: &Path, offset: u64) {
    let mut bytes = fs::read(path).expect("read object");
    bytes[offset as usize] ^= 0x01;
    fs::write(path, bytes).expect("write object");
}

/// Whether `haystack` contains `needle`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

// ---- GnuPG ----------------------------------------------------------------------------

/// A throwaway GNUPGHOME; its agent is stopped when dropped.
pub struct GnupgHome {
    dir: TempDir,
}

impl Default for GnupgHome {
    fn default() -> Self {
        Self::new()
    }
}

impl GnupgHome {
    pub fn new() -> Self {
        require_tools(&["gpg", "gpgconf"]);
        // Short path: the agent's socket lives inside it.
        let dir = tempfile::Builder::new()
            .prefix("lbgpg")
            .tempdir_in("/tmp")
            .expect("create GNUPGHOME");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).expect("chmod");
        GnupgHome { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `gpg --batch ARGS…` in this home, asserting success; returns stdout.
    pub fn gpg(&self, args: &[&str]) -> Vec<u8> {
        let out = Command::new("gpg")
            .env("GNUPGHOME", self.path())
            .arg("--batch")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run gpg");
        assert!(
            out.status.success(),
            "gpg {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// A home with the fixture OpenPGP secret key imported.
    pub fn with_fixture_key() -> Self {
        let home = Self::new();
        home.gpg(&["--import", s(&key(OPENPGP_SECRET))]);
        home
    }

    /// Generates an unprotected key for `uid` with real gpg; writes its armored public
    /// certificate and secret key into `out_dir`; returns (public, secret) paths.
    pub fn generate_key(&self, uid: &str, out_dir: &Path) -> (PathBuf, PathBuf) {
        let nopass = ["--passphrase", "", "--pinentry-mode", "loopback"];
        let mut gen_args = nopass.to_vec();
        gen_args.extend(["--quick-gen-key", uid, "default", "default", "never"]);
        self.gpg(&gen_args);
        let public = out_dir.join("gpg-public.asc");
        let secret = out_dir.join("gpg-secret.asc");
        fs::write(&public, self.gpg(&["--armor", "--export", uid])).expect("write public");
        let mut export = nopass.to_vec();
        export.extend(["--armor", "--export-secret-keys", uid]);
        fs::write(&secret, self.gpg(&export)).expect("write secret");
        (public, secret)
    }
}

impl Drop for GnupgHome {
    fn drop(&mut self) {
        // Stops only the agent of this home.
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.path())
            .args(["--kill", "gpg-agent"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

// ---- time ------------------------------------------------------------------------------

/// `t0` (RFC 3339) plus `secs` seconds, as RFC 3339 (for `LIFEBOAT_NOW`).
pub fn rfc3339_plus(t0: &str, secs: i64) -> String {
    let t0 = chrono::DateTime::parse_from_rfc3339(t0)
        .unwrap_or_else(|e| panic!("not a time {t0}: {e}"))
        .with_timezone(&chrono::Utc);
    (t0 + chrono::Duration::seconds(secs)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A JSON string holding an RFC 3339 time.
pub fn json_time(v: &serde_json::Value) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap_or_else(|| panic!("not a time: {v}")))
        .unwrap_or_else(|e| panic!("not a time {v}: {e}"))
        .with_timezone(&chrono::Utc)
}
