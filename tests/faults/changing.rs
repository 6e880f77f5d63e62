//! Files changing while the files source reads them. lifeboat is stopped (SIGSTOP, injected
//! by strace) right after its first read of the file, or just before it opens it; the test
//! changes the file, then lets lifeboat go on. Every change must fail the backup naming the
//! file, and nothing may be stored. Unreadable and special files fail the backup too.

use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;
use crate::support::*;

/// Runs `lifeboat backup w` stopped at the `when`-th `syscall` on `file`, applies `change`,
/// resumes it; returns its output. Fails if lifeboat never stops there or hangs after.
/// A signal injected by strace arrives when the syscall returns, so the syscall has run;
/// to stop *before* an `openat`, it is failed with EINTR as well, which std retries.
fn backup_with_change(
    sb: &Sandbox,
    file: &Path,
    syscall: &str,
    when: usize,
    change: &dyn Fn(&Path),
) -> Result<std::process::Output, String> {
    let extra = if syscall == "openat" {
        "error=EINTR:"
    } else {
        ""
    };
    let mut cmd = under_strace(
        sb,
        &[
            "-P",
            s(file),
            "-e",
            &format!("trace={syscall}"),
            "-e",
            &format!("inject={syscall}:{extra}signal=STOP:when={when}"),
        ],
    );
    cmd.args(["backup", "w"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn strace");
    let pid =
        lifeboat_child_of(child.id(), Duration::from_secs(10)).expect("lifeboat under strace");
    if !wait_stopped(pid, Duration::from_secs(30)) {
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        panic!(
            "lifeboat never reached {syscall} #{when} of {}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    change(file);
    resume(pid);
    let started = std::time::Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if started.elapsed() > Duration::from_secs(20) {
            signal(pid, libc::SIGKILL);
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "backup hangs after {} was changed (killed after 20 s)",
                file.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = child.wait_with_output().expect("output");
    scan(&out, "backup with a changing file");
    Ok(out)
}

fn write_at(path: &Path, offset: u64, bytes: &[u8]) {
    let mut f = fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(bytes).unwrap();
}

pub fn run() -> String {
    let mut rng = Rng::for_class("changing-files");
    let sb = Sandbox::new();
    let tree = sb.path("src/tree");
    fs::create_dir_all(tree.join("sub")).unwrap();
    let big = tree.join("big.bin");
    let big_bytes = noise(&mut rng, 600_000);
    fs::write(&big, &big_bytes).unwrap();
    fs::write(tree.join("sub/small.txt"), b"small file\n").unwrap();
    fs::write(tree.join("sub/other.txt"), b"other file\n").unwrap();
    fs::write(sb.path("src/outside-secret"), b"NOT-PART-OF-THE-TREE\n").unwrap();
    PolicySpec::new(&sb, "w", "files", &tree).write(&sb);
    sb.backup("w");
    let store = sb.store();
    let before = store_snapshot(&store);

    let reset = |path: &Path, bytes: &[u8]| {
        let _ = fs::remove_file(path);
        let _ = fs::remove_dir_all(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, bytes).unwrap();
    };
    let stored_nothing = |case: &str| {
        let now = store_snapshot(&store);
        store_reset(&store, &before);
        if now == before {
            Ok(())
        } else {
            Err(format!("{case}: something was stored"))
        }
    };
    let mut wrong: Vec<String> = Vec::new();
    let expect =
        |out: &std::process::Output, code: i32, case: &str, says: &[&str]| -> Option<String> {
            let err = String::from_utf8_lossy(&out.stderr).trim_end().to_string();
            let ok = crate::support::code(out) == code
                && err.lines().count() == 1
                && err.starts_with("lifeboat: error: ")
                && says.iter().all(|w| err.contains(w))
                && !err.contains("NOT-PART-OF-THE-TREE");
            (!ok).then(|| {
                format!(
                    "{case}: exit {}, expected {code} saying {says:?}: {err}",
                    crate::support::code(out)
                )
            })
        };

    // Changes while the file is being read (stopped after its first read).
    let half = big_bytes.len() as u64 / 2;
    let other_big = noise(&mut rng, big_bytes.len());
    let during: Vec<(&str, Change<'_, Path>)> = vec![
        (
            "rewritten in place, same size",
            Box::new(|p: &Path| write_at(p, half, b"TORN")),
        ),
        (
            "rewritten in place, same size, mtime put back",
            Box::new(|p: &Path| {
                let m = fs::metadata(p).unwrap();
                write_at(p, half, b"TORN");
                let t =
                    std::time::UNIX_EPOCH + Duration::new(m.mtime() as u64, m.mtime_nsec() as u32);
                let f = fs::File::options().write(true).open(p).unwrap();
                f.set_times(fs::FileTimes::new().set_modified(t)).unwrap();
            }),
        ),
        (
            "appended to",
            Box::new(|p: &Path| {
                let mut f = fs::OpenOptions::new().append(true).open(p).unwrap();
                f.write_all(b"more").unwrap();
            }),
        ),
        (
            "truncated to half",
            Box::new(|p: &Path| {
                fs::File::options()
                    .write(true)
                    .open(p)
                    .unwrap()
                    .set_len(half)
                    .unwrap()
            }),
        ),
        (
            "truncated to zero",
            Box::new(|p: &Path| {
                fs::File::options()
                    .write(true)
                    .open(p)
                    .unwrap()
                    .set_len(0)
                    .unwrap()
            }),
        ),
        (
            "renamed away",
            Box::new(|p: &Path| fs::rename(p, p.with_extension("moved")).unwrap()),
        ),
        (
            "replaced by rename (atomic save)",
            Box::new(|p: &Path| {
                let tmp = p.with_extension("new");
                fs::write(&tmp, &other_big).unwrap();
                fs::rename(&tmp, p).unwrap();
            }),
        ),
        ("deleted", Box::new(|p: &Path| fs::remove_file(p).unwrap())),
        (
            "deleted and recreated, same size",
            Box::new(|p: &Path| {
                fs::remove_file(p).unwrap();
                fs::write(p, &other_big).unwrap();
            }),
        ),
        (
            "replaced by a symlink",
            Box::new(|p: &Path| {
                fs::remove_file(p).unwrap();
                std::os::unix::fs::symlink("sub/small.txt", p).unwrap();
            }),
        ),
    ];
    let mut detected_during = 0;
    for (label, change) in &during {
        let out = backup_with_change(&sb, &big, "read", 2, change.as_ref());
        let miss = out.as_ref().err().cloned().or_else(|| {
            expect(
                out.as_ref().unwrap(),
                3,
                &format!("file {label} while read"),
                &["big.bin", "changed while it was being read"],
            )
        });
        let ok = miss.is_none();
        wrong.extend(miss);
        let stored = stored_nothing(label);
        if let Err(e) = &stored {
            wrong.push(e.clone());
        }
        let _ = fs::remove_file(big.with_extension("moved"));
        reset(&big, &big_bytes);
        if ok && stored.is_ok() {
            detected_during += 1;
        }
    }

    // Changes between the walk (which saw a regular file) and the open.
    let small = tree.join("sub/small.txt");
    let outside = sb.path("src/outside-secret");
    let before_open: Vec<(&str, Change<'_, Path>, &str)> = vec![
        (
            "deleted",
            Box::new(|p: &Path| fs::remove_file(p).unwrap()),
            "small.txt",
        ),
        (
            "replaced by a fifo",
            Box::new(|p: &Path| {
                fs::remove_file(p).unwrap();
                let c = std::ffi::CString::new(s(p)).unwrap();
                // SAFETY: a valid NUL-terminated path.
                assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
            }),
            "small.txt",
        ),
        (
            "replaced by a symlink to a file outside the tree",
            Box::new(|p: &Path| {
                fs::remove_file(p).unwrap();
                std::os::unix::fs::symlink(&outside, p).unwrap();
            }),
            "small.txt",
        ),
        (
            "its directory removed",
            Box::new(|p: &Path| fs::remove_dir_all(p.parent().unwrap()).unwrap()),
            "small.txt",
        ),
    ];
    let mut detected_before_open = 0;
    for (label, change, name) in &before_open {
        let out = backup_with_change(&sb, &small, "openat", 1, change.as_ref());
        let miss = out.as_ref().err().cloned().or_else(|| {
            expect(
                out.as_ref().unwrap(),
                3,
                &format!("file {label} before it was opened"),
                &[name],
            )
        });
        let ok = miss.is_none();
        wrong.extend(miss);
        let stored = stored_nothing(label);
        if let Err(e) = &stored {
            wrong.push(e.clone());
        }
        reset(&small, b"small file\n");
        fs::write(tree.join("sub/other.txt"), b"other file\n").unwrap();
        if ok && stored.is_ok() {
            detected_before_open += 1;
        }
    }

    // Special and unreadable files.
    let fifo = tree.join("sub/pipe");
    let c = std::ffi::CString::new(s(&fifo)).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let out = lb(&sb, &["backup", "w"]);
    wrong.extend(expect(
        &out,
        2,
        "fifo in the tree",
        &["sub/pipe", "special file"],
    ));
    if let Err(e) = stored_nothing("fifo") {
        wrong.push(e);
    }
    fs::remove_file(&fifo).unwrap();
    assert!(
        wrong.is_empty(),
        "{} cases not detected as expected:\n{}",
        wrong.len(),
        wrong.join("\n")
    );

    let unreadable = unreadable_file(&sb, &tree);
    stored_nothing("unreadable").unwrap();

    format!(
        "{detected_during}/{} changes while a file was read (rewrite, rewrite with mtime put \
         back, append, truncate, rename, atomic replace, delete, recreate, symlink) and \
         {detected_before_open}/{} between the walk and the open (delete, fifo, symlink out \
         of the tree, directory removed) failed the backup naming the file (exit 3), nothing \
         stored; a fifo in the tree: exit 2 naming it; {unreadable}",
        during.len(),
        before_open.len()
    )
}

/// A file lifeboat may not read: mode 000, the backup run as another user (as root, which
/// reads anything, it runs as `nobody`).
fn unreadable_file(sb: &Sandbox, tree: &Path) -> String {
    let locked = tree.join("locked.key");
    fs::write(&locked, b"no access").unwrap();
    chmod(&locked, 0o000);
    let mut cmd = sb.command();
    cmd.args(["backup", "w"]);
    let who = if is_root() {
        use std::os::unix::process::CommandExt;
        let nobody = 65534;
        // Everything the run needs must be reachable by that user: the sandbox, the binary
        // and the fixture keys (world-readable in the checkout).
        let root = sb.path("");
        chown_tree(&root, nobody);
        chmod(&locked, 0o000);
        for dir in root.ancestors().skip(1) {
            let mode = fs::metadata(dir).unwrap().permissions().mode();
            assert!(
                mode & 0o001 != 0,
                "{} is not searchable by other users; cannot run the unreadable-file case",
                dir.display()
            );
        }
        cmd.uid(nobody).gid(nobody);
        "as nobody, "
    } else {
        ""
    };
    let out = lb_cmd(&mut cmd);
    let line = assert_one_line_error(&out, 3, "unreadable file");
    assert!(
        line.contains("locked.key") && line.contains("ermission denied"),
        "{line}"
    );
    if is_root() {
        chown_tree(&sb.path(""), 0);
    }
    fs::remove_file(&locked).unwrap();
    let _ = Command::new("true").status();
    format!("a mode-000 file ({who}the test runs as root): exit 3 naming it")
}
