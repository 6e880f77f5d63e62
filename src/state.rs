//! The state directory: catalog, per-policy locks and scratch space for snapshots and
//! verification restores. Everything in it is private (0700).

use std::fs::{self, File};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::policy::Policy;

#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// `dir` if given, else `$XDG_STATE_HOME/lifeboat`, else `~/.local/state/lifeboat`.
    pub fn resolve(dir: Option<PathBuf>) -> Result<Self> {
        let root = match dir {
            Some(d) => d,
            None => match std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
                Some(x) => PathBuf::from(x).join("lifeboat"),
                None => match std::env::var_os("HOME") {
                    Some(h) => PathBuf::from(h).join(".local/state/lifeboat"),
                    None => {
                        return Err(Error::Config(
                            "no state directory: set --state-dir, LIFEBOAT_STATE_DIR or HOME"
                                .into(),
                        ));
                    }
                },
            },
        };
        Ok(StateDir { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates the directory (0700) if needed.
    pub fn ensure(&self) -> Result<()> {
        create_private_dir(&self.root)
    }

    pub fn catalog_path(&self) -> PathBuf {
        self.root.join("catalog.sqlite")
    }

    /// Scratch space for snapshots and verification restores.
    pub fn scratch(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Takes the policy's lock, or fails with [`Error::Locked`] if another run holds it.
    pub fn lock(&self, policy: &Policy) -> Result<PolicyLock> {
        let dir = self.root.join("locks");
        create_private_dir(&dir)?;
        let path = dir.join(format!("{}.lock", policy.id));
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .at("cannot open lock file", &path)?;
        match file.try_lock() {
            Ok(()) => Ok(PolicyLock { file }),
            Err(fs::TryLockError::WouldBlock) => Err(Error::Locked(policy.name.clone())),
            Err(fs::TryLockError::Error(e)) => Err(Error::io("cannot lock", &path, e)),
        }
    }
}

/// Held while a policy is being worked on; released when dropped (or the process dies).
pub struct PolicyLock {
    file: File,
}

impl Drop for PolicyLock {
    fn drop(&mut self) {
        // Unlock explicitly rather than by closing: a child forked by another thread in the
        // meantime shares the open file and, until it execs, would keep the lock held.
        let _ = self.file.unlock();
    }
}

/// Removes the entries of `dir` named `<prefix><pid>-…` whose process is gone: what a run
/// killed with SIGKILL left there (staging copies of a restore, SQLite snapshots). Entries
/// of live processes, and names without a pid, are left alone.
pub(crate) fn sweep_dead(dir: &Path, prefix: &str) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix))
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        if pid <= 0 || pid_alive(pid) {
            continue;
        }
        let path = entry.path();
        let _ = match entry.file_type() {
            Ok(t) if t.is_dir() => fs::remove_dir_all(&path),
            _ => fs::remove_file(&path),
        };
    }
}

/// Whether a process `pid` exists (signal 0 checks without sending anything).
fn pid_alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 has no effect beyond the existence and permission check.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Creates `dir` and any missing parents with mode 0700; an existing directory is checked
/// to be private.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .at("cannot create directory", dir)?;
    let meta = fs::metadata(dir).at("cannot stat", dir)?;
    if meta.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).at("cannot chmod 0700", dir)?;
    }
    Ok(())
}
