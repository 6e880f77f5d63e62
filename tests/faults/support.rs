//! What every fault class shares: the scale knob, a seeded random generator, the figures
//! table (printed with `--nocapture`, written to `target/faults-summary.txt`), the secret
//! scanner every CLI run goes through, and helpers for disk-full and syscall injection.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::common::*;

/// A change applied to a file or a manifest by a fault case.
pub type Change<'a, T> = Box<dyn Fn(&T) + 'a>;

// ---- knobs ----------------------------------------------------------------------------

/// `LIFEBOAT_FAULTS_SCALE` (default 1): multiplies every case count, for longer runs.
pub fn scale() -> f64 {
    static SCALE: OnceLock<f64> = OnceLock::new();
    *SCALE.get_or_init(|| match std::env::var("LIFEBOAT_FAULTS_SCALE") {
        Ok(v) => v
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|s| *s > 0.0 && s.is_finite())
            .unwrap_or_else(|| panic!("LIFEBOAT_FAULTS_SCALE={v:?} is not a positive number")),
        Err(_) => 1.0,
    })
}

/// `base` cases at scale 1, at least 1.
pub fn cases(base: usize) -> usize {
    ((base as f64 * scale()).ceil() as usize).max(1)
}

/// `LIFEBOAT_FAULTS_SEED` (default a fixed value): the seed of every random choice, so a
/// failure is reproduced by running again with the seed the summary prints.
pub fn seed() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    *SEED.get_or_init(|| match std::env::var("LIFEBOAT_FAULTS_SEED") {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("LIFEBOAT_FAULTS_SEED={v:?} is not an integer")),
        Err(_) => 0x11FE_B0A7,
    })
}

/// SplitMix64: small, seeded, good enough to spread fault points.
pub struct Rng(u64);

impl Rng {
    /// A generator for one class: the suite seed mixed with the class name.
    pub fn for_class(class: &str) -> Self {
        let mut h = seed() ^ 0x9E37_79B9_7F4A_7C15;
        for b in class.bytes() {
            h = (h ^ b as u64).wrapping_mul(0x0100_0000_01B3);
        }
        Rng(h)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi` (`hi > lo`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        assert!(hi > lo, "empty range {lo}..{hi}");
        lo + self.next_u64() % (hi - lo)
    }
}

/// `n` offsets in `0..len` spread over the head (first 512 bytes), the body and the tail
/// (last 64 bytes): a third each, every one distinct, the first and last byte included.
pub fn spread_positions(rng: &mut Rng, len: usize, n: usize) -> Vec<usize> {
    let n = n.min(len);
    let mut set = std::collections::BTreeSet::new();
    set.insert(0);
    set.insert(len - 1);
    let head = len.min(512);
    let tail_start = len.saturating_sub(64);
    let mut i = 0u64;
    while set.len() < n {
        let at = match i % 3 {
            0 => rng.range(0, head as u64),
            1 => rng.range(0, len as u64),
            _ => rng.range(tail_start as u64, len as u64),
        };
        set.insert(at as usize);
        i += 1;
    }
    set.into_iter().collect()
}

// ---- the figures table ----------------------------------------------------------------

/// Every class, in the order of the table.
pub const CLASSES: &[&str] = &[
    "tamper",
    "substitution",
    "signing",
    "crash",
    "changing-files",
    "disk-full",
    "store-dir",
    "concurrency",
    "hostile-archives",
    "keys",
    "bad-policies",
    "fuzz",
    "secrets",
];

fn figures() -> &'static Mutex<BTreeMap<&'static str, String>> {
    static FIGURES: OnceLock<Mutex<BTreeMap<&'static str, String>>> = OnceLock::new();
    FIGURES.get_or_init(|| Mutex::new(BTreeMap::new()))
}

/// `target/faults-summary.txt` (the target directory of this build).
pub fn summary_path() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("faults-summary.txt")
}

/// Runs one class, records its figure (or its failure) in the table, and re-raises a
/// failure. When every class has reported, prints the table and writes it to
/// [`summary_path`]; until then the file shows the classes not yet done as pending.
pub fn class(name: &'static str, body: impl FnOnce() -> String) {
    assert!(CLASSES.contains(&name), "unknown class {name}");
    let started = Instant::now();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
    let secs = started.elapsed().as_secs_f64();
    let line = match &result {
        Ok(figure) => format!("{name}: {figure} [{secs:.1}s]"),
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| p.downcast_ref::<&str>().copied())
                .unwrap_or("panic");
            let first = msg.lines().take(4).collect::<Vec<_>>().join(" | ");
            format!("{name}: FAILED ({first}) [{secs:.1}s]")
        }
    };
    println!("{line}");
    let table = {
        let mut f = figures().lock().unwrap_or_else(|p| p.into_inner());
        f.insert(name, line);
        let done = CLASSES.iter().all(|c| f.contains_key(c));
        let mut text = format!(
            "lifeboat fault-injection suite (LIFEBOAT_FAULTS_SCALE={}, LIFEBOAT_FAULTS_SEED={})\n",
            scale(),
            seed()
        );
        for c in CLASSES {
            match f.get(c) {
                Some(l) => text += &format!("{l}\n"),
                None => text += &format!("{c}: (not run in this invocation)\n"),
            }
        }
        text += &format!(
            "secrets scan: {} outputs of CLI runs across the suite scanned, none held key material\n",
            SCANNED.load(Ordering::SeqCst)
        );
        (text, done)
    };
    let (text, done) = table;
    let _ = fs::write(summary_path(), &text);
    if done {
        println!("\n{text}");
    }
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

// ---- secrets --------------------------------------------------------------------------

static SCANNED: AtomicUsize = AtomicUsize::new(0);

fn secrets() -> &'static Mutex<Vec<String>> {
    static SECRETS: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    SECRETS.get_or_init(|| {
        let mut v = Vec::new();
        v.extend(secret_pieces_of(&key(AGE_IDENTITY)));
        v.extend(secret_pieces_of(&key(OPENPGP_SECRET)));
        Mutex::new(v)
    })
}

/// The secret parts of an identity file: each age secret key (without its prefix, which
/// is checked separately), and 24-character windows of every line of an armored OpenPGP
/// secret key block body.
pub fn secret_pieces_of(path: &Path) -> Vec<String> {
    let text = fs::read_to_string(path).expect("read identity file");
    let mut out = Vec::new();
    for l in text.lines().map(str::trim) {
        if let Some(rest) = l.strip_prefix("AGE-SECRET-KEY-") {
            out.push(rest.to_string());
        }
    }
    if text.contains("PRIVATE KEY BLOCK") {
        for l in text.lines() {
            let l = l.trim();
            if l.starts_with("-----") || l.contains(':') || l.starts_with('=') || l.len() < 24 {
                continue;
            }
            let chars: Vec<char> = l.chars().collect();
            for w in chars.windows(24).step_by(12) {
                out.push(w.iter().collect());
            }
        }
    }
    out
}

/// Adds the secrets of a key generated by a test to the scanner.
pub fn register_secret(path: &Path) {
    let pieces = secret_pieces_of(path);
    secrets()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .extend(pieces);
}

/// The first secret `bytes` contains, if any.
pub fn find_secret(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    if text.to_ascii_uppercase().contains("AGE-SECRET-KEY-") {
        return Some("AGE-SECRET-KEY-".into());
    }
    if text.contains("PRIVATE KEY BLOCK") {
        return Some("PRIVATE KEY BLOCK".into());
    }
    let list = secrets().lock().unwrap_or_else(|p| p.into_inner());
    list.iter().find(|p| text.contains(p.as_str())).cloned()
}

/// Asserts that neither stream of `out` holds key material; counts the scan.
pub fn scan(out: &Output, what: &str) {
    for (stream, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        if let Some(s) = find_secret(bytes) {
            panic!(
                "{what}: {stream} contains secret key material ({} chars matching {:?}…)",
                s.len(),
                &s[..s.len().min(6)]
            );
        }
    }
    SCANNED.fetch_add(1, Ordering::SeqCst);
}

/// `lifeboat ARGS…` in the sandbox, its output scanned for secrets.
pub fn lb<S: AsRef<std::ffi::OsStr>>(sb: &Sandbox, args: &[S]) -> Output {
    let out = sb.run(args);
    scan(&out, "lifeboat");
    out
}

/// Like [`lb`] for a prepared command.
pub fn lb_cmd(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run lifeboat");
    scan(&out, "lifeboat");
    out
}

// ---- files ----------------------------------------------------------------------------

/// `len` pseudo-random (incompressible) bytes.
pub fn noise(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        v.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Names in `dir` (empty when it does not exist).
pub fn names(dir: &Path) -> Vec<String> {
    if dir.exists() {
        dir_names(dir)
    } else {
        Vec::new()
    }
}

/// Flips bit `bit` of the byte at `offset` in `path`.
pub fn flip_bit(path: &Path, offset: usize, bit: u32) {
    let mut bytes = fs::read(path).expect("read object");
    bytes[offset] ^= 1 << (bit % 8);
    fs::write(path, bytes).expect("write object");
}

// ---- external tools -------------------------------------------------------------------

/// Fails (never skips) unless `strace` is installed and may trace here.
pub fn require_strace() {
    require_tools(&["strace"]);
    static WORKS: OnceLock<Result<(), String>> = OnceLock::new();
    let works = WORKS.get_or_init(|| {
        let out = Command::new("strace")
            .args(["-f", "-qq", "-o", "/dev/null", "-e", "trace=write", "true"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    });
    if let Err(e) = works {
        panic!(
            "strace is installed but cannot trace here ({e}); the fault suite needs ptrace \
             (e.g. docker --cap-add SYS_PTRACE) — it fails rather than skips"
        );
    }
}

/// `strace -f -qq -o /dev/null EXPR… lifeboat ARGS…` for the sandbox: lifeboat with a
/// syscall fault injected.
pub fn under_strace(sb: &Sandbox, strace_args: &[&str]) -> Command {
    require_strace();
    let inner = sb.command();
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-qq", "-o", "/dev/null"])
        .args(strace_args)
        .arg(inner.get_program())
        .args(inner.get_args())
        .current_dir(sb.path("work"))
        .env_remove("LIFEBOAT_STATE_DIR")
        .env_remove("LIFEBOAT_IDENTITY_FILE")
        .env_remove("LIFEBOAT_NOW")
        .stdin(Stdio::null());
    cmd
}

/// A small tmpfs mounted at `dir` (root only), unmounted when dropped; `None` with the
/// reason when mounting is not permitted here.
pub struct SmallFs {
    dir: PathBuf,
}

impl SmallFs {
    pub fn mount(dir: &Path, size: &str) -> Result<SmallFs, String> {
        fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(SmallFs {
            dir: dir.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .status();
    }
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Makes `path` and everything under it owned by `uid` (as root).
pub fn chown_tree(path: &Path, uid: u32) {
    let st = Command::new("chown")
        .arg("-R")
        .arg(format!("{uid}:{uid}"))
        .arg(path)
        .status()
        .expect("run chown");
    assert!(st.success(), "chown -R {uid} {}", path.display());
}

/// Sets the permission bits of `path`.
pub fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Whether every thread of `pid` is stopped (`None` when the process is gone).
fn all_stopped(pid: u32) -> Option<bool> {
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    Some(tasks.flatten().all(|t| {
        let stat = fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        // The state is the field after the parenthesised command name.
        stat.rsplit_once(')')
            .and_then(|x| x.1.trim_start().chars().next())
            .is_some_and(|c| c == 't' || c == 'T')
    }))
}

/// Waits until every thread of `pid` has stayed stopped for 150 ms (a group stop, as by
/// SIGSTOP; the brief stops of tracing do not count), or `limit` passes.
pub fn wait_stopped(pid: u32, limit: Duration) -> bool {
    let started = Instant::now();
    let mut since: Option<Instant> = None;
    while started.elapsed() < limit {
        match (all_stopped(pid), since) {
            (None, _) => return false,
            (Some(true), None) => since = Some(Instant::now()),
            (Some(true), Some(t)) if t.elapsed() > Duration::from_millis(150) => return true,
            (Some(true), Some(_)) => {}
            (Some(false), _) => since = None,
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

/// Sends SIGCONT to `pid` until it runs again (a SIGCONT that arrives while the tracer is
/// still delivering the SIGSTOP is lost under load), or it is gone.
pub fn resume(pid: u32) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        signal(pid, libc::SIGCONT);
        std::thread::sleep(Duration::from_millis(20));
        if all_stopped(pid) != Some(true) {
            return;
        }
    }
}

/// The pid of the lifeboat process started by `parent` (e.g. strace, which also forks
/// short-lived helpers of its own).
pub fn lifeboat_child_of(parent: u32, limit: Duration) -> Option<u32> {
    let started = Instant::now();
    while started.elapsed() < limit {
        let path = format!("/proc/{parent}/task/{parent}/children");
        for pid in fs::read_to_string(path)
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse::<u32>().ok())
        {
            let exe = fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
            if exe
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("lifeboat"))
            {
                return Some(pid);
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}

/// Sends `sig` to `pid`.
pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill has no memory preconditions; pid is a child this test started.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// The exit code of `out`, or 128 + signal when it was killed.
pub fn code(out: &Output) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    out.status
        .code()
        .unwrap_or_else(|| 128 + out.status.signal().unwrap_or(0))
}

/// One line of stderr, for messages.
pub fn stderr_line(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

// ---- the library, driven directly -----------------------------------------------------

/// A policy of a sandbox, loaded through the library, to run hundreds of checks without
/// spawning the binary for each.
pub struct Lib {
    pub policy: lifeboat::Policy,
    pub state: lifeboat::StateDir,
}

impl Lib {
    pub fn load(sb: &Sandbox, name: &str) -> Self {
        let file = sb.policies().join(format!("{name}.toml"));
        Lib {
            policy: lifeboat::policy::load_file(&file)
                .unwrap_or_else(|e| panic!("load {}: {e}", file.display())),
            state: lifeboat::StateDir::resolve(Some(sb.state())).expect("state dir"),
        }
    }

    /// What `lifeboat verify NAME [--id ID] --level LEVEL` would exit with: 0 when the
    /// backup verifies, 1 when a check fails, else the error's code.
    pub fn verify(
        &self,
        id: Option<&str>,
        level: lifeboat::Level,
        ids: &lifeboat::Identities,
    ) -> u8 {
        use lifeboat::inventory;
        let run = || -> lifeboat::Result<bool> {
            let stores = inventory::open_stores(&self.policy)?;
            let found =
                inventory::pick(&self.policy, inventory::backups(&self.policy, &stores)?, id)?;
            Ok(lifeboat::verify(&self.policy, &stores, &found, level, ids, &self.state)?.ok)
        };
        match run() {
            Ok(true) => 0,
            Ok(false) => 1,
            Err(e) => e.kind().exit_code(),
        }
    }

    /// What `lifeboat restore NAME [--id ID] --to TARGET` would exit with. On failure,
    /// asserts that nothing was written: no target, nothing beside it.
    pub fn restore(
        &self,
        id: Option<&str>,
        ids: &lifeboat::Identities,
        target: &Path,
        case: &str,
    ) -> u8 {
        let opts = lifeboat::RestoreOptions {
            target: target.to_path_buf(),
            force: false,
            ..Default::default()
        };
        match lifeboat::restore(&self.policy, id, ids, &opts) {
            Ok(_) => 0,
            Err(e) => {
                assert_nothing_written(target, case);
                e.kind().exit_code()
            }
        }
    }
}

/// Asserts that a refused restore left no `target` and nothing else in its parent.
pub fn assert_nothing_written(target: &Path, case: &str) {
    assert!(
        fs::symlink_metadata(target).is_err(),
        "{case}: a refused restore wrote {}",
        target.display()
    );
    let parent = target.parent().expect("target has a parent");
    assert_eq!(
        names(parent),
        Vec::<String>::new(),
        "{case}: a refused restore left files beside {}",
        target.display()
    );
}

/// Identities from fixture or generated key files.
pub fn identities(files: &[PathBuf]) -> lifeboat::Identities {
    lifeboat::Identities::load(files).expect("load identities")
}

/// A count of exit codes, printed like `exit 1: 40, exit 2: 2`.
#[derive(Default, Debug)]
pub struct Codes(pub BTreeMap<u8, usize>);

impl Codes {
    pub fn add(&mut self, code: u8) {
        *self.0.entry(code).or_default() += 1;
    }
    pub fn total(&self) -> usize {
        self.0.values().sum()
    }
    pub fn count(&self, code: u8) -> usize {
        self.0.get(&code).copied().unwrap_or(0)
    }
}

impl std::fmt::Display for Codes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(c, n)| format!("exit {c}: {n}"))
            .collect();
        write!(f, "{}", parts.join(", "))
    }
}

/// Every object of a store directory by name (hidden temporaries included).
pub fn store_snapshot(store: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for n in names(store) {
        out.insert(n.clone(), fs::read(store.join(&n)).expect("read object"));
    }
    out
}

/// Puts a store directory back exactly as `snap` (removing anything else).
pub fn store_reset(store: &Path, snap: &BTreeMap<String, Vec<u8>>) {
    for n in names(store) {
        if !snap.contains_key(&n) {
            fs::remove_file(store.join(&n)).expect("remove object");
        }
    }
    for (n, bytes) in snap {
        let p = store.join(n);
        if fs::read(&p).ok().as_deref() != Some(bytes.as_slice()) {
            fs::write(&p, bytes).expect("write object");
        }
    }
}

/// The manifest object of backup `id` in `store`.
pub fn manifest_of(store: &Path, id: &str) -> PathBuf {
    let name = names(store)
        .into_iter()
        .find(|n| n.starts_with(&format!("{id}.")) && n.ends_with(".manifest.json"))
        .unwrap_or_else(|| panic!("no manifest of {id} in {}", store.display()));
    store.join(name)
}

/// The payload objects of backup `id` in `store`, sorted.
pub fn payloads_of(store: &Path, id: &str) -> Vec<PathBuf> {
    names(store)
        .into_iter()
        .filter(|n| n.starts_with(&format!("{id}.")) && !n.ends_with(".manifest.json"))
        .map(|n| store.join(n))
        .collect()
}

/// A manifest as JSON.
pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(path).expect("read manifest")).expect("manifest JSON")
}

/// Writes a manifest as lifeboat does: pretty JSON and a newline.
pub fn write_json(path: &Path, v: &serde_json::Value) {
    let mut bytes = serde_json::to_vec_pretty(v).expect("serialize");
    bytes.push(b'\n');
    fs::write(path, bytes).expect("write manifest");
}
