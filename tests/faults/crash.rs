//! Crashes: `kill -9` of `backup`, `restore` and `rotate` after a random delay (seeded), and
//! at every rename and at chosen unlinks and fsyncs (strace delivers SIGKILL as the syscall
//! is entered). Afterwards every backup the stores list verifies, earlier backups are
//! byte-for-byte untouched, a restore target holds the old data or the complete new data
//! (never a mix, never nothing), and the next runs clean up what the killed one left.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lifeboat::Level;

use crate::common::*;
use crate::substitution::backup_at;
use crate::support::*;

pub fn run() -> String {
    let mut rng = Rng::for_class("crash");
    let backup = backup_kills(&mut rng);
    let restore = restore_kills(&mut rng);
    let rotate = rotate_kills(&mut rng);
    format!("{backup}; {restore}; {rotate}")
}

/// Spawns `cmd`, SIGKILLs it after `delay`; whether it had finished first (exit 0).
fn kill_after(mut cmd: Command, delay: Duration) -> bool {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn lifeboat");
    std::thread::sleep(delay);
    let _ = child.kill();
    let status = child.wait().expect("wait");
    status.success()
}

/// Syscall counts of one run of `lifeboat ARGS…` under `strace -c`.
fn syscall_counts<S: AsRef<std::ffi::OsStr>>(sb: &Sandbox, args: &[S]) -> BTreeMap<String, usize> {
    require_strace();
    let out_file = sb.path("strace-counts.txt");
    let inner = sb.command();
    let out = Command::new("strace")
        .args(["-f", "-c", "-o"])
        .arg(&out_file)
        .arg(inner.get_program())
        .args(inner.get_args())
        .args(args)
        .current_dir(sb.path("work"))
        .stdin(Stdio::null())
        .output()
        .expect("strace -c");
    assert_exit(&out, 0, "strace -c lifeboat");
    let text = fs::read_to_string(&out_file).unwrap();
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() >= 5 && cols[0].parse::<f64>().is_ok() {
            let calls: usize = cols[3].parse().unwrap_or(0);
            counts.insert(cols[cols.len() - 1].to_string(), calls);
        }
    }
    counts
}

/// SIGKILL delivered by strace as the `when`-th `syscall` is entered.
fn kill_at_syscall<S: AsRef<std::ffi::OsStr>>(
    sb: &Sandbox,
    syscall: &str,
    when: usize,
    args: &[S],
) {
    let mut cmd = under_strace(
        sb,
        &[
            "-e",
            &format!("trace={syscall}"),
            "-e",
            &format!("inject={syscall}:signal=KILL:when={when}"),
        ],
    );
    let _ = cmd
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run strace");
}

/// Objects of a store by kind: complete backups (manifest ids), payloads, temporaries.
#[derive(Default, Debug)]
struct Objects {
    manifests: Vec<String>,
    payloads: Vec<String>,
    temps: Vec<String>,
}

fn objects(store: &Path) -> Objects {
    let mut o = Objects::default();
    for n in names(store) {
        if n.starts_with('.') {
            o.temps.push(n);
        } else if n.ends_with(".manifest.json") {
            o.manifests.push(n.split('.').next().unwrap().to_string());
        } else {
            o.payloads.push(n);
        }
    }
    o
}

/// Payloads with no manifest of the same stem.
fn orphans(store: &Path) -> Vec<String> {
    let o = objects(store);
    o.payloads
        .into_iter()
        .filter(|p| !o.manifests.iter().any(|m| p.starts_with(&format!("{m}."))))
        .collect()
}

/// Every backup the stores list for each policy verifies at checksum level, and each listed
/// manifest has all its payloads.
fn all_verify(libs: &[Lib], case: &str) -> usize {
    let mut n = 0;
    for lib in libs {
        let stores = lifeboat::inventory::open_stores(&lib.policy).unwrap();
        let found = lifeboat::inventory::backups(&lib.policy, &stores)
            .unwrap_or_else(|e| panic!("{case}: the store cannot be listed: {e}"));
        for f in &found {
            let id = f.manifest.backup_id.to_string();
            let code = lib.verify(Some(&id), Level::Checksum, &lifeboat::Identities::default());
            assert_eq!(
                code, 0,
                "{case}: backup {id} of {} does not verify",
                lib.policy.name
            );
            n += 1;
        }
    }
    n
}

/// Asserts every object of `before` is still there with the same bytes.
fn untouched(store: &Path, before: &BTreeMap<String, Vec<u8>>, case: &str) {
    for (n, bytes) in before.iter().filter(|(n, _)| !n.starts_with('.')) {
        let now = fs::read(store.join(n)).unwrap_or_else(|_| panic!("{case}: {n} disappeared"));
        assert!(&now == bytes, "{case}: {n} changed");
    }
}

/// Sets the mtime of `path` `secs` seconds into the past.
fn age_file(path: &Path, secs: u64) {
    let t = std::time::SystemTime::now() - Duration::from_secs(secs);
    let f = fs::File::open(path).unwrap();
    f.set_times(fs::FileTimes::new().set_modified(t).set_accessed(t))
        .unwrap();
}

// ---- backup ---------------------------------------------------------------------------

/// How long a run to be killed should last at least (the data grows until it does).
const MIN_RUN: Duration = Duration::from_millis(100);

fn backup_kills(rng: &mut Rng) -> String {
    let sb = Sandbox::new();
    let tree = sb.path("src/tree");
    fs::create_dir_all(&tree).unwrap();
    for i in 0..40 {
        fs::write(tree.join(format!("f{i:02}")), noise(rng, 6000)).unwrap();
    }
    PolicySpec::new(&sb, "w", "files", &tree)
        .with_openpgp(&key(OPENPGP_PUBLIC))
        .write(&sb);
    let db = sb.path("src/d.db");
    drop(create_db(&db, 1500, "CRASH"));
    PolicySpec::new(&sb, "d", "sqlite", &db).write(&sb);
    let libs = [Lib::load(&sb, "w"), Lib::load(&sb, "d")];
    let store = sb.store();

    // Enough data that a whole backup takes 100 ms or more here (the time is measured, to
    // spread the kills over it).
    let timed = |name: &str| {
        let started = Instant::now();
        sb.backup(name);
        started.elapsed()
    };
    let mut tw = timed("w");
    for round in 0..8 {
        if tw >= MIN_RUN {
            break;
        }
        for i in 0..40 {
            fs::write(
                tree.join(format!("g{round}-{i:02}")),
                noise(rng, 6000 << round),
            )
            .unwrap();
        }
        tw = timed("w");
    }
    let conn = rusqlite::Connection::open(&db).unwrap();
    let mut td = timed("d");
    for round in 0..8 {
        if td >= MIN_RUN {
            break;
        }
        let tx = conn.unchecked_transaction().unwrap();
        for i in 0..(5000 << round) {
            insert_row(&tx, i, "CRASH");
        }
        tx.commit().unwrap();
        td = timed("d");
    }
    drop(conn);

    let kills = cases(16);
    let mut finished = 0;
    // Distinct leftovers seen after the kills: store temporaries, scratch snapshots.
    let mut seen_tmp = std::collections::BTreeSet::new();
    let mut seen_scratch = std::collections::BTreeSet::new();
    for k in 0..kills {
        let (name, span) = if k % 2 == 0 { ("w", tw) } else { ("d", td) };
        let before = store_snapshot(&store);
        let delay = Duration::from_micros(rng.range(0, (span.as_micros() as u64).max(1)));
        let mut cmd = sb.command();
        cmd.args(["backup", name]);
        if kill_after(cmd, delay) {
            finished += 1;
        }
        let case = format!("backup {name} killed after {delay:?}");
        untouched(&store, &before, &case);
        all_verify(&libs, &case);
        let o = objects(&store);
        seen_tmp.extend(o.temps);
        seen_scratch.extend(names(&sb.state().join("tmp")));
        // The lock died with the process: the next backup runs (every few kills).
        if k % 4 == 3 {
            sb.backup(name);
        }
    }
    // Systematic: killed as it renames each object into place, and at its fsyncs (for the
    // SQLite policy the first ones are the snapshot's, in the scratch space).
    let mut systematic = 0;
    for name in ["w", "d"] {
        let counts = syscall_counts(&sb, &["backup", name]);
        for (syscall, limit) in [("rename", 4), ("fsync", 6)] {
            let n = counts.get(syscall).copied().unwrap_or(0).min(limit);
            assert!(n > 0, "backup makes no {syscall} call: {counts:?}");
            for when in 1..=n {
                let before = store_snapshot(&store);
                kill_at_syscall(&sb, syscall, when, &["backup", name]);
                let case = format!("backup {name} killed at {syscall} #{when}");
                untouched(&store, &before, &case);
                all_verify(&libs, &case);
                seen_tmp.extend(objects(&store).temps);
                seen_scratch.extend(names(&sb.state().join("tmp")));
                systematic += 1;
            }
        }
    }
    let verified = all_verify(&libs, "after the kills");
    let left_tmp = seen_tmp.len();
    let left_orphans = orphans(&store).len();
    let left_scratch = seen_scratch.len();

    // The next runs clean up: temporaries older than a day and snapshots of dead runs by
    // the next backup, payloads without a manifest by the next rotation (a day later).
    let young = store.join(".tmp.0123456789abcdef0123456789abcdef.in-progress");
    fs::write(&young, b"another writer").unwrap();
    for t in objects(&store).temps {
        if store.join(&t) != young {
            age_file(&store.join(&t), 2 * 86_400);
        }
    }
    sb.backup("w");
    sb.backup("d");
    let out = lb_cmd(
        sb.command()
            .env("LIFEBOAT_NOW", two_days_later())
            .args(["rotate", "--all"]),
    );
    assert_exit(&out, 0, "rotate after the kills");
    let o = objects(&store);
    assert_eq!(
        o.temps,
        vec![young.file_name().unwrap().to_str().unwrap().to_string()],
        "temporaries left after the next backup (a young one must stay)"
    );
    assert_eq!(
        orphans(&store),
        Vec::<String>::new(),
        "payloads without manifest left after rotate"
    );
    assert_eq!(
        names(&sb.state().join("tmp")),
        Vec::<String>::new(),
        "scratch left after the next backup"
    );
    // The catalog lists exactly what the stores hold, and all of it verifies.
    let mut in_store = o.manifests.clone();
    in_store.sort();
    assert_eq!(
        sb.listed_ids(),
        in_store,
        "catalog and stores differ after rotate"
    );
    all_verify(&libs, "after cleanup");
    fs::remove_file(&young).unwrap();

    format!(
        "backup ({} ms, {} ms for SQLite): {kills} kill -9 at random points ({finished} had \
         finished) + {systematic} at \
         renames/fsyncs: earlier backups untouched, {verified} listed backups all verify; \
         left behind {left_tmp} store temporaries, {left_orphans} payloads without manifest, \
         {left_scratch} scratch snapshots — removed by the next backup/rotate (a young \
         temporary of another writer kept)",
        tw.as_millis(),
        td.as_millis()
    )
}

fn two_days_later() -> String {
    (chrono::Utc::now() + chrono::TimeDelta::days(2)).to_rfc3339()
}

// ---- restore --------------------------------------------------------------------------

fn restore_kills(rng: &mut Rng) -> String {
    let sb = Sandbox::new();
    let tree = sb.path("src/tree");
    fs::create_dir_all(tree.join("sub")).unwrap();
    for i in 0..150 {
        fs::write(tree.join(format!("sub/f{i:03}")), noise(rng, 1500)).unwrap();
    }
    fs::write(tree.join("big"), noise(rng, 120_000)).unwrap();
    PolicySpec::new(&sb, "t", "files", &tree).write(&sb);
    // Enough data that a restore takes 100 ms or more here (timed with a policy of its own).
    let mut cal = PolicySpec::new(&sb, "cal", "files", &tree);
    cal.store = sb.path("store-cal");
    cal.write(&sb);
    for round in 0..8 {
        sb.backup("cal");
        let target = sb.path(&format!("cal-{round}"));
        let started = Instant::now();
        let out = lb(
            &sb,
            &[
                "--identity",
                s(&key(AGE_IDENTITY)),
                "restore",
                "cal",
                "--to",
                s(&target),
            ],
        );
        assert_exit(&out, 0, "calibration restore");
        fs::remove_dir_all(&target).unwrap();
        if started.elapsed() >= MIN_RUN {
            break;
        }
        fs::write(
            tree.join(format!("big{round}")),
            noise(rng, 400_000 << round),
        )
        .unwrap();
    }
    fs::remove_file(sb.policies().join("cal.toml")).unwrap();
    let v1 = read_tree(&tree);
    let id1 = backup_at(&sb, "t", "2026-04-01T00:00:00Z");
    for i in (0..150).step_by(3) {
        fs::write(tree.join(format!("sub/f{i:03}")), noise(rng, 1700)).unwrap();
    }
    fs::remove_file(tree.join("sub/f001")).unwrap();
    fs::write(tree.join("new-file"), b"only in the second backup").unwrap();
    let v2 = read_tree(&tree);
    let id2 = backup_at(&sb, "t", "2026-04-02T00:00:00Z");
    let versions = [(id1.clone(), v1), (id2.clone(), v2)];

    let parent = sb.path("restored");
    let target = parent.join("t");
    let restore = |id: &str, force: bool| -> Vec<String> {
        let mut args: Vec<String> = [
            "--identity",
            s(&key(AGE_IDENTITY)),
            "restore",
            "t",
            "--id",
            id,
            "--to",
            s(&target),
        ]
        .into_iter()
        .map(String::from)
        .collect();
        if force {
            args.push("--force".into());
        }
        args
    };
    let out = lb(&sb, &restore(&id1, false));
    assert_exit(&out, 0, "first restore");
    let started = Instant::now();
    let out = lb(&sb, &restore(&id2, true));
    assert_exit(&out, 0, "timed restore");
    let span = started.elapsed();
    let mut current = 1;

    let state_of = |case: &str| -> usize {
        assert!(
            target.exists(),
            "{case}: the target is gone (neither old nor new data)"
        );
        let now = read_tree(&target);
        versions
            .iter()
            .position(|(_, v)| *v == now)
            .unwrap_or_else(|| panic!("{case}: the target is a mix of old and new data"))
    };
    let kills = cases(16);
    let mut became_new = 0;
    let mut max_left = 0;
    for k in 0..kills {
        let next = 1 - current;
        let delay = Duration::from_micros(rng.range(0, span.as_micros() as u64 * 6 / 5));
        let mut cmd = sb.command();
        cmd.args(restore(&versions[next].0, true));
        kill_after(cmd, delay);
        let case = format!("restore kill #{k} after {delay:?}");
        let now = state_of(&case);
        if now == next {
            became_new += 1;
        }
        current = now;
        max_left = max_left.max(names(&parent).len() - 1);
    }
    // Systematic: killed at each rename and each directory sync of the swap.
    let counts = syscall_counts(&sb, &restore(&versions[1 - current].0, true));
    current = state_of("after the counted restore");
    let mut systematic = 0;
    for syscall in ["rename", "renameat2", "fsync", "mkdir"] {
        let n = counts.get(syscall).copied().unwrap_or(0).min(6);
        for when in 1..=n {
            let next = 1 - current;
            let args = restore(&versions[next].0, true);
            kill_at_syscall(&sb, syscall, when, &args);
            current = state_of(&format!("restore killed at {syscall} #{when}"));
            max_left = max_left.max(names(&parent).len() - 1);
            systematic += 1;
        }
    }
    // The next restore removes what killed ones left beside the target.
    let out = lb(&sb, &restore(&versions[1 - current].0, true));
    assert_exit(&out, 0, "restore after the kills");
    assert_eq!(
        names(&parent),
        vec!["t".to_string()],
        "leftovers beside the target after the next restore"
    );

    format!(
        "restore --force ({} ms): {kills} kill -9 at random points ({became_new} after the \
         swap) + \
         {systematic} at each rename/fsync/mkdir: the target always held the complete old or \
         the complete new tree; up to {max_left} staging leftovers beside it, removed by the \
         next restore",
        span.as_millis()
    )
}

// ---- rotate ---------------------------------------------------------------------------

fn rotate_kills(rng: &mut Rng) -> String {
    let sb = Sandbox::new();
    let tree = sb.path("src/tree");
    fs::create_dir_all(&tree).unwrap();
    fs::write(tree.join("a"), b"alpha").unwrap();
    let spec = PolicySpec::new(&sb, "r", "files", &tree);
    fs::write(
        sb.policies().join("r.toml"),
        spec.text() + "\n[retention]\nkeep_last = 2\n",
    )
    .unwrap();
    let lib = Lib::load(&sb, "r");
    let n = 60;
    let t0: chrono::DateTime<chrono::Utc> = "2026-05-01T00:00:00Z".parse().unwrap();
    {
        let catalog = lifeboat::Catalog::open(&lib.state).unwrap();
        for i in 0..n {
            let clock = lifeboat::Clock::fixed(t0 + chrono::TimeDelta::hours(i));
            lifeboat::backup(
                &lib.policy,
                &lib.state,
                &catalog,
                &clock,
                &Default::default(),
            )
            .expect("backup");
        }
    }
    let now = (t0 + chrono::TimeDelta::hours(n + 1)).to_rfc3339();
    let store = sb.store();
    let pristine = store_snapshot(&store);
    let pristine_state = sb.path("state-pristine");
    copy_dir(&sb.state(), &pristine_state);
    // Oldest first, by the time in the names.
    let mut ids = objects(&store).manifests;
    let time_of = |id: &String| {
        names(&store)
            .into_iter()
            .find(|n| n.starts_with(id.as_str()))
            .and_then(|n| n.split('.').nth(1).map(String::from))
            .unwrap()
    };
    ids.sort_by_key(time_of);
    let keep: Vec<String> = ids[ids.len() - 2..].to_vec();

    let reset = || {
        store_reset(&store, &pristine);
        fs::remove_dir_all(sb.state()).unwrap();
        copy_dir(&pristine_state, &sb.state());
    };
    let rotate_cmd = || {
        let mut c = sb.command();
        c.env("LIFEBOAT_NOW", &now).args(["rotate", "r"]);
        c
    };
    let started = Instant::now();
    let out = lb_cmd(&mut rotate_cmd());
    assert_exit(&out, 0, "timed rotate");
    let span = started.elapsed();

    let later = (t0 + chrono::TimeDelta::hours(n + 49)).to_rfc3339();
    let left_orphans = std::cell::Cell::new(0);
    let check = |case: &str| {
        // A manifest is only ever present with all its payloads; kept backups untouched.
        let found = all_verify(std::slice::from_ref(&lib), case);
        assert!(found >= 2, "{case}: kept backups lost");
        for id in &keep {
            assert!(
                objects(&store).manifests.contains(id),
                "{case}: kept backup {id} deleted"
            );
        }
        // The next rotation completes the plan and cleans up; payloads whose manifest was
        // deleted are swept once the time in their name is a day old, so it runs later.
        left_orphans.set(left_orphans.get() + orphans(&store).len());
        let out = lb_cmd(
            sb.command()
                .env("LIFEBOAT_NOW", &later)
                .args(["rotate", "r"]),
        );
        assert_exit(&out, 0, &format!("{case}: the next rotate"));
        let o = objects(&store);
        let mut m = o.manifests.clone();
        m.sort();
        let mut k = keep.clone();
        k.sort();
        assert_eq!(m, k, "{case}: after the next rotate");
        assert_eq!(
            o.payloads.len(),
            2,
            "{case}: payloads left after the next rotate: {:?}",
            o.payloads
        );
        let mut listed = sb.listed_ids();
        listed.sort();
        assert_eq!(listed, k, "{case}: catalog after the next rotate");
    };
    let kills = cases(10);
    let mut interrupted = 0;
    for k in 0..kills {
        reset();
        let delay = Duration::from_micros(rng.range(0, span.as_micros() as u64 * 6 / 5));
        if !kill_after(rotate_cmd(), delay) {
            interrupted += 1;
        }
        check(&format!("rotate kill #{k} after {delay:?}"));
    }
    // Systematic: killed as it deletes the first, a few random and the last object.
    reset();
    let counts = syscall_counts(&sb, &["rotate", "r"]);
    let unlinks = counts.get("unlink").copied().unwrap_or(0);
    assert!(
        unlinks >= 2 * (n as usize - 2),
        "rotate made {unlinks} unlink calls: {counts:?}"
    );
    let mut points = vec![1, 2, unlinks];
    for _ in 0..cases(6) {
        points.push(rng.range(1, unlinks as u64 + 1) as usize);
    }
    points.sort();
    points.dedup();
    for when in &points {
        reset();
        let mut cmd = under_strace(
            &sb,
            &[
                "-e",
                "trace=unlink",
                "-e",
                &format!("inject=unlink:signal=KILL:when={when}"),
            ],
        );
        let _ = cmd
            .env("LIFEBOAT_NOW", &now)
            .args(["rotate", "r"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        check(&format!("rotate killed at unlink #{when}"));
    }
    format!(
        "rotate ({} ms): {kills} kill -9 at random points ({interrupted} interrupted) + {} at \
         chosen unlinks of {} deletions: no manifest ever without its payloads, the 2 kept \
         backups intact; {} payloads left without manifest, swept by the next rotation a day \
         later, which also finished the plan and matched the catalog",
        span.as_millis(),
        points.len(),
        unlinks,
        left_orphans.get()
    )
}

fn copy_dir(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success(), "cp -a {} {}", from.display(), to.display());
}
