//! Files and wallets: a PAX tar of a directory tree keeping modes, mtimes, symlinks (as
//! links) and empty directories; special files are refused. Each regular file is hashed as
//! it is read, and re-checked afterwards so a file rewritten mid-read is never stored torn.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::Captured;
use crate::error::{Error, IoContext, Result};
use crate::hash::{HashReader, sha256_of};
use crate::manifest::FileEntry;

pub(super) fn check_root(root: &Path) -> Result<()> {
    match fs::metadata(root) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(Error::Config(format!(
            "source {} is not a directory",
            root.display()
        ))),
        Err(e) => Err(Error::io("cannot read source directory", root, e)),
    }
}

/// All entries under `root`, depth-first, sorted by name so archives are reproducible.
fn walk(root: &Path) -> Result<Vec<(PathBuf, String, fs::Metadata)>> {
    let mut out = Vec::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel)) = stack.pop() {
        let mut entries: Vec<_> = fs::read_dir(&dir)
            .at("cannot read directory", &dir)?
            .collect::<io::Result<_>>()
            .at("cannot read directory", &dir)?;
        entries.sort_by_key(|e| e.file_name());
        let mut subdirs = Vec::new();
        for entry in entries {
            let path = entry.path();
            let name = entry.file_name().into_string().map_err(|_| {
                Error::Config(format!(
                    "{}: file name is not UTF-8; rename it or exclude it",
                    path.display()
                ))
            })?;
            let rel = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let meta = fs::symlink_metadata(&path).at("cannot stat", &path)?;
            let ft = meta.file_type();
            if ft.is_fifo() || ft.is_socket() || ft.is_block_device() || ft.is_char_device() {
                return Err(Error::Config(format!(
                    "{} is a special file (fifo, socket or device); lifeboat backs up regular files, directories and symlinks only",
                    path.display()
                )));
            }
            if ft.is_dir() {
                subdirs.push((path.clone(), rel.clone()));
            }
            out.push((path, rel, meta));
        }
        // Reverse so the stack pops them in name order.
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(out)
}

/// Streams a PAX tar of `root` into `w`.
pub(super) fn write_tar(root: &Path, w: &mut dyn Write) -> Result<Captured> {
    let mut builder = tar::Builder::new(w);
    let mut files = Vec::new();
    for (path, rel, meta) in walk(root)? {
        let mode = meta.permissions().mode() & 0o7777;
        let mut header = tar::Header::new_ustar();
        header.set_mode(mode);
        header.set_mtime(meta.mtime().max(0) as u64);
        header.set_uid(meta.uid() as u64);
        header.set_gid(meta.gid() as u64);
        let ft = meta.file_type();
        let stream_err =
            |e: io::Error| Error::Runtime(format!("cannot archive {}: {e}", path.display()));
        let mut pax: Vec<(&str, Vec<u8>)> = Vec::new();
        if ft.is_symlink() {
            let target = fs::read_link(&path).at("cannot read link", &path)?;
            let target = target.to_str().ok_or_else(|| {
                Error::Config(format!("{}: link target is not UTF-8", path.display()))
            })?;
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            if header.set_link_name(target).is_err() {
                pax.push(("linkpath", target.as_bytes().to_vec()));
            }
            set_name(&mut header, &rel, &mut pax);
            append_entry(&mut builder, &pax, &mut header, io::empty()).map_err(stream_err)?;
            files.push(FileEntry {
                path: rel,
                kind: "symlink".into(),
                mode,
                size: 0,
                sha256: None,
                target: Some(target.to_string()),
            });
        } else if ft.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            let dir_name = format!("{rel}/");
            set_name(&mut header, &dir_name, &mut pax);
            append_entry(&mut builder, &pax, &mut header, io::empty()).map_err(stream_err)?;
            files.push(FileEntry {
                path: rel,
                kind: "dir".into(),
                mode,
                size: 0,
                sha256: None,
                target: None,
            });
        } else {
            let (sha256, size) = append_file(&mut builder, &path, &rel, &meta, header, &mut pax)?;
            files.push(FileEntry {
                path: rel,
                kind: "file".into(),
                mode,
                size,
                sha256: Some(sha256),
                target: None,
            });
        }
    }
    builder
        .into_inner()
        .map_err(|e| Error::Runtime(format!("cannot finish archive: {e}")))?;
    Ok(Captured {
        files,
        ..Captured::default()
    })
}

/// Appends one regular file, failing if it changes (size, mtime, ctime, inode) while being
/// read, or is no longer the regular file the walk saw (`walked`) when it is opened.
fn append_file(
    builder: &mut tar::Builder<&mut dyn Write>,
    path: &Path,
    rel: &str,
    walked: &fs::Metadata,
    mut header: tar::Header,
    pax: &mut Vec<(&str, Vec<u8>)>,
) -> Result<(String, u64)> {
    let changed_error = || {
        Error::Runtime(format!(
            "{} changed while it was being read; run the backup again",
            path.display()
        ))
    };
    // Not following a symlink, nor waiting for a writer on a fifo, put there since the walk.
    use std::os::unix::fs::OpenOptionsExt;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => changed_error(),
            _ => Error::io("cannot open", path, e),
        })?;
    let before = file.metadata().at("cannot stat", path)?;
    if !before.is_file() || before.ino() != walked.ino() {
        return Err(changed_error());
    }
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(before.len());
    set_name(&mut header, rel, pax);
    let (mut reader, digest) = HashReader::new(file.take(before.len()));
    append_entry(builder, pax, &mut header, &mut reader)
        .map_err(|e| Error::Runtime(format!("cannot archive {}: {e}", path.display())))?;
    let (sha256, read) = digest.result();
    let after = fs::symlink_metadata(path).ok();
    let changed = read != before.len()
        || after.is_none_or(|a| {
            a.len() != before.len()
                || a.ino() != before.ino()
                || a.mtime() != before.mtime()
                || a.mtime_nsec() != before.mtime_nsec()
                // A writer can put the mtime back; nobody can set the ctime.
                || a.ctime() != before.ctime()
                || a.ctime_nsec() != before.ctime_nsec()
        });
    if changed {
        return Err(changed_error());
    }
    Ok((sha256, read))
}

/// Sets the ustar name, or, when it does not fit, a shortened one plus a PAX `path` record
/// (which every PAX reader uses instead).
fn set_name(header: &mut tar::Header, rel: &str, pax: &mut Vec<(&str, Vec<u8>)>) {
    if header.set_path(rel).is_err() {
        pax.push(("path", rel.as_bytes().to_vec()));
        let mut short: String = rel.chars().rev().take(90).collect();
        short = short
            .chars()
            .rev()
            .collect::<String>()
            .trim_start_matches('/')
            .to_string();
        let _ = header.set_path(short);
    }
}

/// Appends the PAX records (if any), then the entry with its header exactly as built.
fn append_entry(
    builder: &mut tar::Builder<&mut dyn Write>,
    pax: &[(&str, Vec<u8>)],
    header: &mut tar::Header,
    data: impl Read,
) -> io::Result<()> {
    if !pax.is_empty() {
        builder.append_pax_extensions(pax.iter().map(|(k, v)| (*k, v.as_slice())))?;
    }
    header.set_cksum();
    builder.append(header, data)
}

/// Compares a restored tree with the entries recorded at backup time: same set of paths,
/// kinds, modes, symlink targets, sizes and sha256 of every file.
pub fn check_tree(root: &Path, expected: &[FileEntry]) -> Result<()> {
    let found = walk(root)?;
    if found.len() != expected.len() {
        return Err(Error::Check(format!(
            "restored tree has {} entries, backup recorded {}",
            found.len(),
            expected.len()
        )));
    }
    for (path, rel, meta) in &found {
        let Some(e) = expected.iter().find(|e| &e.path == rel) else {
            return Err(Error::Check(format!(
                "restored tree has unexpected entry {rel}"
            )));
        };
        let mode = meta.permissions().mode() & 0o7777;
        let ft = meta.file_type();
        let ok = match e.kind.as_str() {
            "dir" => ft.is_dir() && mode == e.mode,
            "symlink" => {
                ft.is_symlink()
                    && fs::read_link(path)
                        .ok()
                        .and_then(|t| t.to_str().map(String::from))
                        == e.target
            }
            _ => {
                ft.is_file()
                    && mode == e.mode
                    && meta.len() == e.size
                    && fs::File::open(path)
                        .and_then(sha256_of)
                        .ok()
                        .map(|(h, _)| h)
                        == e.sha256
            }
        };
        if !ok {
            return Err(Error::Check(format!(
                "restored entry {rel} differs from the backup"
            )));
        }
    }
    Ok(())
}
