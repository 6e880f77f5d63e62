//! Restore: fetch → check hash while streaming → decrypt → decompress → staging beside the
//! target → integrity check → atomic swap. The target is untouched until the new copy is
//! complete and verified; with `--force` the old data is kept until the swap succeeded.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;

use crate::clock::Clock;
use crate::error::{Error, IoContext, Result};
use crate::fetch;
use crate::inventory::{self, Found};
use crate::keys::Identities;
use crate::manifest::Private;
use crate::policy::{Policy, SourceSpec};
use crate::progress::Progress;
use crate::source;
use crate::store::Store;
use crate::store::sync_dir;

/// What `restore` should do.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// A path; for a PostgreSQL logical backup, the database URL (as given on the CLI).
    pub target: PathBuf,
    pub force: bool,
    pub dry_run: bool,
    pub progress: Progress,
    /// PostgreSQL physical backups: recover to this time (`--at`).
    pub at: Option<chrono::DateTime<chrono::Utc>>,
    /// The identity files given, written into a physical restore's `restore_command`.
    pub identity_files: Vec<PathBuf>,
    /// Room for temporary files (a directory-format dump); default: the system's.
    pub scratch: Option<PathBuf>,
    /// Fetch from one store only (see [`inventory::select_store`]); default: the first
    /// store holding the backup.
    pub store: Option<String>,
}

/// What a restore did (or, with `dry_run`, would do).
#[derive(Debug, Serialize)]
pub struct RestoreOutcome {
    pub policy: Option<String>,
    pub backup_id: Option<String>,
    pub object: String,
    pub store: Option<String>,
    pub target: PathBuf,
    /// The target existed and was (or would be) replaced.
    pub replaced: bool,
    pub dry_run: bool,
    pub seconds: f64,
}

/// Restores the newest backup of `policy` (or backup `id`) to `opts.target`.
pub fn restore(
    policy: &Policy,
    id: Option<&str>,
    ids: &Identities,
    opts: &RestoreOptions,
) -> Result<RestoreOutcome> {
    if let SourceSpec::Postgres(pg) = &policy.source {
        return source::postgres::restore(policy, pg, id, ids, opts);
    }
    if opts.at.is_some() {
        return Err(Error::Config(format!(
            "--at is for PostgreSQL physical policies (point-in-time recovery); {} is a {} policy",
            policy.name,
            policy.source.kind()
        )));
    }
    let started = Instant::now();
    let replaced = check_target(&opts.target, opts.force)?;
    let stores = inventory::open_selected(policy, opts.store.as_deref())?;
    let found = inventory::pick_readable(policy, &stores, id)?;
    let payload = found.manifest.payload_for(ids)?;
    // Reading the private part first proves the identity fits before anything is written.
    let private = found.manifest.read_private(ids)?;
    // So does reading an SQLCipher database key (it opens the restored copy).
    if let SourceSpec::Sqlite {
        cipher: Some(c), ..
    } = &policy.source
    {
        drop(source::DbKey::load(&c.key)?);
    }
    let store = &stores[found.stores[0]];
    let mut outcome = RestoreOutcome {
        policy: Some(policy.name.clone()),
        backup_id: Some(found.manifest.backup_id.to_string()),
        object: payload.object.clone(),
        store: Some(store.describe()),
        target: opts.target.clone(),
        replaced,
        dry_run: opts.dry_run,
        seconds: 0.0,
    };
    if opts.dry_run {
        return Ok(outcome);
    }
    let staging = Staging::beside(&opts.target)?;
    unpack_payload(
        &stores,
        &found,
        ids,
        &private,
        staging.path(),
        &opts.progress,
    )?;
    let item = std::thread::scope(|scope| {
        // The restored data goes to disk while the checks read it (a 600 MB database took
        // ~0.35 s more when written back only at promote); promote's own sync, which
        // decides, then finds little left to do.
        scope.spawn(|| drop(sync_tree(staging.path())));
        check_restored(policy, staging.path(), &private)
    })?;
    promote(&item, &opts.target)?;
    drop(staging);
    outcome.seconds = started.elapsed().as_secs_f64();
    Ok(outcome)
}

/// Restores an archive made by standard tools (`tar | gzip | gpg -e`, `tar | zstd | age`,
/// plain `.tar.gz` / `.tar.zst`), detected by content, into the directory `opts.target`.
pub fn restore_archive(
    archive: &Path,
    ids: &Identities,
    opts: &RestoreOptions,
    _clock: &Clock,
) -> Result<RestoreOutcome> {
    let started = Instant::now();
    let replaced = check_target(&opts.target, opts.force)?;
    let file = fs::File::open(archive).at("cannot open archive", archive)?;
    let mut outcome = RestoreOutcome {
        policy: None,
        backup_id: None,
        object: archive.display().to_string(),
        store: None,
        target: opts.target.clone(),
        replaced,
        dry_run: opts.dry_run,
        seconds: 0.0,
    };
    if opts.dry_run {
        return Ok(outcome);
    }
    let staging = Staging::beside(&opts.target)?;
    let what = format!("archive {}", archive.display());
    fetch::read_plaintext(Box::new(file), None, ids, true, &what, |r| {
        unpack_tar(r, staging.path(), &what)
    })?;
    promote(staging.path(), &opts.target)?;
    drop(staging);
    outcome.seconds = started.elapsed().as_secs_f64();
    Ok(outcome)
}

/// Unpacks a catalogued backup into the empty directory `dir` and checks it against its
/// private manifest; returns the restored item (the database file, or `dir` for a tree).
pub(crate) fn unpack_backup(
    policy: &Policy,
    stores: &[Box<dyn Store>],
    found: &Found,
    ids: &Identities,
    private: &Private,
    dir: &Path,
    progress: &Progress,
) -> Result<PathBuf> {
    unpack_payload(stores, found, ids, private, dir, progress)?;
    check_restored(policy, dir, private)
}

/// Streams the payload into `dir`: sha256 and size checked against the manifest, the
/// archive's sha256 against the private manifest. Returns the archive's size.
pub(crate) fn unpack_payload(
    stores: &[Box<dyn Store>],
    found: &Found,
    ids: &Identities,
    private: &Private,
    dir: &Path,
    progress: &Progress,
) -> Result<u64> {
    fetch::read_archive(stores, found, ids, private, progress, |r, what| {
        unpack_tar(r, dir, what)
    })
}

/// Checks a restored copy in `dir` against its private manifest (the policy's SQLite check
/// and row counts, or every entry of the tree); returns the restored item.
pub(crate) fn check_restored(policy: &Policy, dir: &Path, private: &Private) -> Result<PathBuf> {
    let what = format!("backup {}", private.backup_id);
    let check = policy.expectations.sqlite_check;
    match &policy.source {
        SourceSpec::Sqlite { cipher, .. } => {
            let db = single_file(dir, &what)?;
            fs::set_permissions(&db, fs::Permissions::from_mode(0o600)).at("cannot chmod", &db)?;
            // SQLCipher: opened with the key; decrypted only with `restore_plaintext`.
            source::check_restored_database(&db, &private.tables, cipher.as_ref(), check)?;
            // Opening the database may leave -wal/-shm beside it; keep only the file.
            for suffix in ["-wal", "-shm"] {
                let _ = fs::remove_file(format!("{}{suffix}", db.display()));
            }
            Ok(db)
        }
        SourceSpec::Files { .. } => {
            source::check_tree(dir, &private.files)?;
            Ok(dir.to_path_buf())
        }
        // Checked on a server (src/source/postgres.rs), never as files.
        SourceSpec::Postgres(_) => Err(Error::Runtime(format!(
            "{what}: a PostgreSQL backup is checked on a server, not in a directory"
        ))),
    }
}

/// The one regular file in `dir` (an SQLite backup holds exactly one).
fn single_file(dir: &Path, what: &str) -> Result<PathBuf> {
    let entries: Vec<PathBuf> = fs::read_dir(dir)
        .at("cannot read", dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    match entries.as_slice() {
        [one] if one.is_file() => Ok(one.clone()),
        _ => Err(Error::Check(format!(
            "{what}: expected one database file in the archive, found {} entries",
            entries.len()
        ))),
    }
}

/// Unpacks a tar stream into `dir`, refusing entries that are not files, directories or
/// symlinks and any path that would land outside `dir`. Directory modes are applied last,
/// so a read-only directory does not stop its own contents from being restored.
pub(crate) fn unpack_tar(r: &mut dyn Read, dir: &Path, what: &str) -> Result<()> {
    let bad = |e: std::io::Error| {
        Error::Check(format!(
            "{what} is not a valid archive: {}",
            with_causes(&e)
        ))
    };
    // Writing the restored files failed (disk full, permissions): not a damaged archive.
    let write_failed = |e: std::io::Error| {
        use std::io::ErrorKind::*;
        match e.kind() {
            StorageFull | QuotaExceeded | FileTooLarge | ReadOnlyFilesystem | PermissionDenied => {
                Error::Runtime(format!(
                    "cannot write the restored data into {}: {}",
                    dir.display(),
                    with_causes(&e)
                ))
            }
            _ => bad(e),
        }
    };
    let mut archive = tar::Archive::new(r);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(false);
    let mut dirs: Vec<(PathBuf, u32, u64)> = Vec::new();
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let kind = entry.header().entry_type();
        let path = entry.path().map_err(bad)?.into_owned();
        use tar::EntryType::*;
        match kind {
            Regular | Continuous | Directory | Symlink => {}
            other => {
                return Err(Error::Check(format!(
                    "{what}: entry {} is a {other:?}, which lifeboat does not restore",
                    clip(&path.display().to_string())
                )));
            }
        }
        let mode = entry.header().mode().map_err(bad)? & 0o7777;
        let mtime = entry.header().mtime().unwrap_or(0);
        if !entry.unpack_in(dir).map_err(write_failed)? {
            return Err(Error::Check(format!(
                "{what}: entry {} points outside the restore target; refused",
                clip(&path.display().to_string())
            )));
        }
        if kind == Directory {
            let on_disk = dir.join(&path);
            fs::set_permissions(&on_disk, fs::Permissions::from_mode(0o700))
                .at("cannot chmod", &on_disk)?;
            dirs.push((on_disk, mode, mtime));
        }
    }
    // Deepest first, so setting a parent's mtime comes after its children were touched.
    dirs.sort_by_key(|d| std::cmp::Reverse(d.0.components().count()));
    for (path, mode, mtime) in dirs {
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).at("cannot chmod", &path)?;
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime);
        if let Ok(f) = fs::File::open(&path) {
            let _ = f.set_times(fs::FileTimes::new().set_modified(t).set_accessed(t));
        }
    }
    Ok(())
}

/// An error with its causes (the tar reader wraps the OS error, e.g. "No space left on
/// device", in a message of its own).
fn with_causes(e: &std::io::Error) -> String {
    let mut text = clip(&e.to_string());
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let c_text = clip(&c.to_string());
        if !text.contains(&c_text) {
            text = format!("{text}: {c_text}");
        }
        cause = c.source();
    }
    text
}

/// At most 400 characters of `text`: names in a hostile archive can be megabytes long, and
/// an error is one line.
fn clip(text: &str) -> String {
    match text.char_indices().nth(400) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

/// Fails unless `target` may be written: absent, an empty directory, or `force`.
/// Returns whether something would be replaced.
pub(crate) fn check_target(target: &Path, force: bool) -> Result<bool> {
    let exists = match fs::symlink_metadata(target) {
        Ok(m) if m.is_dir() => fs::read_dir(target)
            .at("cannot read", target)?
            .next()
            .is_some(),
        Ok(_) => true,
        Err(_) => false,
    };
    if exists && !force {
        return Err(Error::Config(format!(
            "{} already exists; pass --force to replace it (the old data is kept until the new copy is in place)",
            target.display()
        )));
    }
    Ok(exists)
}

/// A private (0700) directory beside the target, removed with everything in it on drop.
pub(crate) struct Staging {
    path: PathBuf,
}

impl Staging {
    /// Creates the staging directory next to `target` (same filesystem, so the final move is
    /// an atomic rename), creating missing parent directories 0700.
    pub(crate) fn beside(target: &Path) -> Result<Self> {
        let (parent, name) = split(target)?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&parent)
            .at("cannot create directory", &parent)?;
        // Staging directories of restores killed before they could clean up (their
        // process is gone) hold partial new data or, after the swap, the replaced data.
        let prefix = format!(".{name}.lifeboat-staging-");
        crate::state::sweep_dead(&parent, &prefix);
        let path = parent.join(format!(
            "{prefix}{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .at("cannot create staging directory", &path)?;
        Ok(Staging { path })
    }

    /// A staging directory inside `parent` (for verification and drill restores into
    /// scratch space); `purpose` names it.
    pub(crate) fn inside(parent: &Path, purpose: &str) -> Result<Self> {
        crate::state::create_private_dir(parent)?;
        Self::beside(&parent.join(purpose))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Keeps the directory (for `drill --keep`) under a name that is no longer a staging
    /// name, so that no later sweep of dead staging directories takes it, and returns it.
    pub(crate) fn keep(self) -> PathBuf {
        let kept = self.path.with_file_name(format!(
            "kept-{}",
            self.path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.rsplit('-').next())
                .unwrap_or("copy")
        ));
        let path = match fs::rename(&self.path, &kept) {
            Ok(()) => kept,
            Err(_) => self.path.clone(),
        };
        std::mem::forget(self);
        path
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Makes everything under `path` durable: one `syncfs` of its filesystem, which also
/// covers files whose modes would not let them be opened.
fn sync_tree(path: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    // Its parent is always a directory of ours (the staging directory or the target's).
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let dir = fs::File::open(dir).at("cannot open", dir)?;
    // SAFETY: syncfs on a file descriptor we own and keep open for the call.
    if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
        return Err(Error::io(
            "cannot sync",
            path,
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

fn split(target: &Path) -> Result<(PathBuf, String)> {
    let name = target
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| {
            Error::Config(format!(
                "{} is not a usable restore target",
                target.display()
            ))
        })?
        .to_string();
    let parent = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((parent, name))
}

/// Moves `item` to `target`. An existing target is swapped with `item` in one atomic step
/// (`renameat2` with `RENAME_EXCHANGE`), so that even a `kill -9` leaves the old data or the
/// new at `target`, never neither; the old data, now at `item`, goes with the staging
/// directory. An SQLite database's `-wal`, `-shm` and `-journal` files belong to the old
/// data: they are moved aside first (back if the swap fails) and removed after it. Where
/// the filesystem cannot exchange, the old target is moved aside and renamed back on
/// failure.
pub(crate) fn promote(item: &Path, target: &Path) -> Result<()> {
    // The new copy is durable before it replaces anything: a power cut after the swap
    // cannot leave a target of half-written files.
    sync_tree(item)?;
    let (parent, name) = split(target)?;
    let prefix = format!(".{name}.lifeboat-old-");
    let old = parent.join(format!(
        "{prefix}{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    let mut moved: Vec<(PathBuf, PathBuf)> = Vec::new();
    for suffix in ["-wal", "-shm", "-journal"] {
        let side = PathBuf::from(format!("{}{suffix}", target.display()));
        if fs::symlink_metadata(&side).is_ok() {
            move_aside(&side, &old, &mut moved)?;
        }
    }
    let swapped = fs::symlink_metadata(target).is_ok()
        && match exchange(item, target) {
            Ok(true) => true,
            Ok(false) => {
                move_aside(target, &old, &mut moved)?;
                false
            }
            Err(e) => {
                undo(&moved);
                let _ = fs::remove_dir(&old);
                return Err(Error::io("cannot swap restored data into", target, e));
            }
        };
    if !swapped && let Err(e) = fs::rename(item, target) {
        undo(&moved);
        let _ = fs::remove_dir(&old);
        return Err(Error::io("cannot move restored data into", target, e));
    }
    sync_dir(&parent)?;
    if !moved.is_empty() {
        fs::remove_dir_all(&old).at("cannot remove the replaced data at", &old)?;
    }
    // Side files a killed restore moved aside are only removed once new data is in place.
    crate::state::sweep_dead(&parent, &prefix);
    Ok(())
}

/// Moves `path` into the directory `old` (created 0700 by the first move), recording it in
/// `moved`; on failure puts back everything moved so far.
fn move_aside(path: &Path, old: &Path, moved: &mut Vec<(PathBuf, PathBuf)>) -> Result<()> {
    if moved.is_empty() {
        fs::DirBuilder::new()
            .mode(0o700)
            .create(old)
            .at("cannot create", old)?;
    }
    let aside = old.join(path.file_name().expect("has a name"));
    if let Err(e) = fs::rename(path, &aside) {
        undo(moved);
        let _ = fs::remove_dir(old);
        return Err(Error::io("cannot move aside", path, e));
    }
    moved.push((path.to_path_buf(), aside));
    Ok(())
}

/// Swaps `a` and `b` atomically; `Ok(false)` when the filesystem cannot.
fn exchange(a: &Path, b: &Path) -> std::io::Result<bool> {
    use std::os::unix::ffi::OsStrExt;
    let a = std::ffi::CString::new(a.as_os_str().as_bytes())?;
    let b = std::ffi::CString::new(b.as_os_str().as_bytes())?;
    // SAFETY: both are valid NUL-terminated paths, relative paths resolve from the cwd.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if r == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP) => Ok(false),
        _ => Err(e),
    }
}

fn undo(moved: &[(PathBuf, PathBuf)]) {
    for (orig, aside) in moved.iter().rev() {
        let _ = fs::rename(aside, orig);
    }
}
