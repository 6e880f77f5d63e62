//! Resources: a full disk under the store and under the restore target (a 1 MiB tmpfs when
//! the suite runs as root, and `ENOSPC` injected by strace into the Nth write or fsync
//! everywhere), and store directories that are missing, not directories, or not writable.
//! A full disk must give a clear one-line error and exit 3, leave nothing half-written that
//! looks complete, and leave earlier backups and an existing target untouched.

use std::fs;
use std::process::Stdio;

use lifeboat::Level;

use crate::common::*;
use crate::support::*;

fn no_space(line: &str) -> bool {
    line.contains("No space left on device") || line.contains("os error 28")
}

/// Asserts a one-line `exit 3` error saying the disk is full.
fn assert_disk_full(out: &std::process::Output, case: &str) -> String {
    let line = assert_one_line_error(out, 3, case);
    assert!(
        no_space(&line),
        "{case}: the error does not say the disk is full: {line}"
    );
    line
}

pub fn disk_full() -> String {
    let mut rng = Rng::for_class("disk-full");
    let tmpfs = if is_root() {
        tmpfs_cases(&mut rng)
    } else {
        Err("not root".to_string())
    };
    let injected = injected_cases(&mut rng);
    match tmpfs {
        Ok(t) => format!("{t}; {injected}"),
        Err(why) => format!(
            "tmpfs cases NOT RUN ({why}: mounting needs root) — covered by injection only; {injected}"
        ),
    }
}

/// A store and a restore target on a 1 MiB tmpfs.
fn tmpfs_cases(rng: &mut Rng) -> Result<String, String> {
    let sb = Sandbox::new();
    let small = SmallFs::mount(&sb.path("small"), "1m")?;
    let tree = sb.path("src/tree");
    fs::create_dir_all(&tree).unwrap();
    fs::write(tree.join("a.txt"), b"fits\n").unwrap();
    let mut spec = PolicySpec::new(&sb, "w", "files", &tree).with_openpgp(&key(OPENPGP_PUBLIC));
    spec.store = small.path().join("store");
    spec.write(&sb);
    let store = small.path().join("store");
    sb.backup("w");
    let before = store_snapshot(&store);

    // The store fills up.
    fs::write(tree.join("big.bin"), noise(rng, 1_500_000)).unwrap();
    let out = lb(&sb, &["backup", "w"]);
    let line = assert_disk_full(&out, "backup onto a full store");
    assert_eq!(
        store_snapshot(&store),
        before,
        "a failed backup left objects in the store"
    );
    let lib = Lib::load(&sb, "w");
    assert_eq!(lib.verify(None, Level::Checksum, &Default::default()), 0);
    // Room again: the next backup works (nothing was left taking space).
    fs::remove_file(tree.join("big.bin")).unwrap();
    sb.backup("w");
    let store_line = line;

    // The restore target fills up: nothing left on it, an existing target untouched.
    let sb2 = Sandbox::new();
    let tree2 = sb2.path("src/tree");
    fs::create_dir_all(&tree2).unwrap();
    fs::write(tree2.join("big.bin"), noise(rng, 1_500_000)).unwrap();
    PolicySpec::new(&sb2, "w", "files", &tree2).write(&sb2);
    sb2.backup("w");
    let target = small.path().join("restored/w");
    let out = lb(
        &sb2,
        &[
            "--identity",
            s(&key(AGE_IDENTITY)),
            "restore",
            "w",
            "--to",
            s(&target),
        ],
    );
    assert_disk_full(&out, "restore onto a full disk");
    assert_nothing_written(&target, "restore onto a full disk");
    // An existing target is kept when the new copy does not fit.
    fs::create_dir_all(&target).unwrap();
    fs::write(target.join("old.txt"), b"old data").unwrap();
    let out = lb(
        &sb2,
        &[
            "--identity",
            s(&key(AGE_IDENTITY)),
            "restore",
            "w",
            "--to",
            s(&target),
            "--force",
        ],
    );
    assert_disk_full(&out, "restore --force onto a full disk");
    assert_eq!(
        dir_names(&target),
        vec!["old.txt".to_string()],
        "the old target changed"
    );
    assert_eq!(
        names(target.parent().unwrap()),
        vec!["w".to_string()],
        "leftovers beside the target"
    );
    drop(small);
    Ok(format!(
        "1 MiB tmpfs: backup onto a full store and restore (new and --force) onto a full disk \
         exit 3 with \"No space left on device\" ({}), nothing left behind, earlier backups and \
         the old target untouched",
        store_line.split(": ").last().unwrap_or("")
    ))
}

/// ENOSPC injected into the Nth write or fsync of backup and restore.
fn injected_cases(rng: &mut Rng) -> String {
    require_strace();
    let sb = Sandbox::new();
    let tree = sb.path("src/tree");
    fs::create_dir_all(&tree).unwrap();
    fs::write(tree.join("big.bin"), noise(rng, 700_000)).unwrap();
    fs::write(tree.join("small.txt"), b"small\n").unwrap();
    PolicySpec::new(&sb, "w", "files", &tree)
        .with_openpgp(&key(OPENPGP_PUBLIC))
        .write(&sb);
    sb.backup("w");
    let store = sb.store();
    let lib = Lib::load(&sb, "w");

    // Count the writes and fsyncs of one backup, then fail each chosen one in turn. The
    // last write is the summary on stdout: not a disk.
    let (writes, fsyncs) = count(&sb, &["backup", "w"]);
    let mut points: Vec<(&str, usize)> = Vec::new();
    for _ in 0..cases(8) {
        points.push(("write", rng.range(1, writes as u64) as usize));
    }
    for n in 1..=fsyncs.min(4) {
        points.push(("fsync", n));
    }
    points.sort();
    points.dedup();
    let mut backups = 0;
    let mut backups_committed = 0;
    for (syscall, n) in &points {
        let before = store_snapshot(&store);
        let out = lb_cmd(
            under_strace(
                &sb,
                &[
                    "-e",
                    &format!("trace={syscall}"),
                    "-e",
                    &format!("inject={syscall}:error=ENOSPC:when={n}"),
                ],
            )
            .args(["backup", "w"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
        );
        let case = format!("backup with ENOSPC at {syscall} #{n}");
        let line = assert_one_line_error(&out, 3, &case);
        // Earlier objects the same, no temporary left; a new manifest only if the failure
        // came after the commit point (recording it in the catalog), and then complete.
        let after = store_snapshot(&store);
        for (name, bytes) in &before {
            assert_eq!(after.get(name), Some(bytes), "{case}: {name} changed");
        }
        let new: Vec<&String> = after.keys().filter(|n| !before.contains_key(*n)).collect();
        assert!(
            !new.iter().any(|n| n.starts_with('.')),
            "{case}: left {new:?}"
        );
        if new.iter().any(|n| n.ends_with(".manifest.json")) {
            assert!(
                line.contains("catalog"),
                "{case}: a manifest was written, then: {line}"
            );
            backups_committed += 1;
        } else {
            assert!(
                no_space(&line),
                "{case}: the error does not say the disk is full: {line}"
            );
        }
        assert_eq!(
            lib.verify(None, Level::Checksum, &Default::default()),
            0,
            "{case}"
        );
        backups += 1;
    }

    // Restore: fail each chosen write or fsync; nothing may be left at or beside the target.
    let target = sb.path("restored/w");
    let age_id = key(AGE_IDENTITY);
    let restore_args = ["--identity", s(&age_id), "restore", "w", "--to", s(&target)];
    let (writes, fsyncs) = count(&sb, &restore_args);
    fs::remove_dir_all(&target).unwrap();
    let mut points: Vec<(&str, usize)> = Vec::new();
    for _ in 0..cases(8) {
        points.push(("write", rng.range(1, writes as u64) as usize));
    }
    // The fsync of the target's directory after the swap (SQLite's own fsyncs of the
    // catalog are not the restore's, and it ignores some of their failures).
    assert!(fsyncs >= 1, "restore made no fsync");
    points.push(("fsync", 1));
    points.sort();
    points.dedup();
    let mut restores = 0;
    let mut after_swap = 0;
    let parent = target.parent().unwrap().to_path_buf();
    for (syscall, n) in &points {
        let trace = format!("trace={syscall}");
        let inject = format!("inject={syscall}:error=ENOSPC:when={n}");
        let mut strace_args = vec!["-e", trace.as_str(), "-e", inject.as_str()];
        if *syscall == "fsync" {
            strace_args.extend(["-P", s(&parent)]);
        }
        let out = lb_cmd(
            under_strace(&sb, &strace_args)
                .args(restore_args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        );
        let case = format!("restore with ENOSPC at {syscall} #{n}");
        let line = assert_one_line_error(&out, 3, &case);
        if fs::symlink_metadata(&target).is_ok() {
            // After the swap (syncing the directory, recording the restore in the catalog):
            // the complete new copy is in place, and the error says what failed after it.
            assert!(
                line.contains("sync") || line.contains("catalog"),
                "{case}: {line}"
            );
            assert_same_tree(&tree, &target);
            assert_eq!(
                names(target.parent().unwrap()),
                vec!["w".to_string()],
                "{case}"
            );
            fs::remove_dir_all(&target).unwrap();
            after_swap += 1;
        } else {
            assert!(
                no_space(&line),
                "{case}: the error does not say the disk is full: {line}"
            );
            assert_nothing_written(&target, &case);
        }
        restores += 1;
    }
    format!(
        "ENOSPC injected at {backups} write/fsync points of backup and {restores} of restore: \
         all exit 3 with a one-line error; before the commit point it names the full disk and \
         leaves no manifest, no temporary, nothing at or beside the target; after it ({} \
         backups, {after_swap} restores: directory sync, catalog) the complete backup or copy \
         is in place and the error says what failed",
        backups_committed
    )
}

/// (writes, fsyncs) of one run of `lifeboat ARGS…`, from `strace -c`.
fn count(sb: &Sandbox, args: &[&str]) -> (usize, usize) {
    let file = sb.path("counts.txt");
    let inner = sb.command();
    let out = std::process::Command::new("strace")
        .args(["-f", "-c", "-o"])
        .arg(&file)
        .arg(inner.get_program())
        .args(inner.get_args())
        .args(args)
        .current_dir(sb.path("work"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_exit(&out, 0, &format!("counting syscalls of {args:?}"));
    let text = fs::read_to_string(&file).unwrap();
    let calls = |name: &str| {
        text.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|c| c.len() >= 5 && c[c.len() - 1] == name)
            .map(|c| c[3].parse::<usize>().unwrap_or(0))
            .unwrap_or(0)
    };
    let writes = calls("write");
    assert!(writes >= 2, "{args:?} made {writes} writes");
    (writes, calls("fsync"))
}

/// Missing, misplaced and unwritable store directories.
pub fn store_dir() -> String {
    let sb = Sandbox::new();
    let tree = sb.path("src/tree");
    fs::create_dir_all(&tree).unwrap();
    fs::write(tree.join("a.txt"), b"a\n").unwrap();
    let mut results = Vec::new();

    // A store whose directory (and parents) do not exist yet: created, private.
    let mut spec = PolicySpec::new(&sb, "w", "files", &tree);
    spec.store = sb.path("not/yet/there");
    let spec = spec.write(&sb);
    sb.backup("w");
    assert_eq!(mode(&sb.path("not/yet/there")), 0o700);
    results.push("missing store directory: created (0700) by backup".to_string());

    // The store directory vanishes (an unmounted disk): verify and restore say there is no
    // backup (exit 2), and the next backup recreates it.
    fs::remove_dir_all(sb.path("not")).unwrap();
    let out = lb(&sb, &["verify", "w"]);
    let line = assert_one_line_error(&out, 2, "verify with the store gone");
    assert!(line.contains("no backups"), "{line}");
    let out = lb(
        &sb,
        &[
            "--identity",
            s(&key(AGE_IDENTITY)),
            "restore",
            "w",
            "--to",
            s(&sb.path("r")),
        ],
    );
    assert_one_line_error(&out, 2, "restore with the store gone");
    results.push("store directory gone: verify/restore exit 2 \"no backups\"".to_string());

    // The store path is a file.
    let mut spec2 = PolicySpec::new(&sb, "w", "files", &tree);
    spec2.id = spec.id.clone();
    spec2.store = sb.path("a-file");
    fs::write(sb.path("a-file"), b"not a directory").unwrap();
    let spec2 = spec2.write(&sb);
    let out = lb(&sb, &["backup", "w"]);
    let line = assert_one_line_error(&out, 3, "store path is a file");
    assert!(line.contains("a-file"), "{line}");
    results.push("store path is a file: exit 3 naming it".to_string());

    // The store directory is not writable (as root, the backup runs as nobody).
    let mut spec3 = PolicySpec::new(&sb, "w", "files", &tree);
    spec3.id = spec2.id.clone();
    spec3.store = sb.path("read-only-store");
    spec3.write(&sb);
    fs::create_dir_all(sb.path("read-only-store")).unwrap();
    let mut cmd = sb.command();
    cmd.args(["backup", "w"]);
    if is_root() {
        use std::os::unix::process::CommandExt;
        chown_tree(&sb.path(""), 65534);
        chown_tree(&sb.path("read-only-store"), 0);
        cmd.uid(65534).gid(65534);
    }
    chmod(&sb.path("read-only-store"), 0o555);
    let out = lb_cmd(&mut cmd);
    let line = assert_one_line_error(&out, 3, "read-only store");
    assert!(
        line.contains("read-only-store") && line.contains("ermission denied"),
        "{line}"
    );
    if is_root() {
        chown_tree(&sb.path(""), 0);
    }
    results.push("store not writable: exit 3 \"Permission denied\" naming it".to_string());
    results.join("; ")
}
