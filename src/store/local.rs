//! A store in a local directory: write to a temporary name, fsync, rename, fsync the
//! directory, so an object is either absent or complete.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::PathBuf;

use super::{ObjectWriter, Store};
use crate::error::{Error, IoContext, Result};

/// Prefix of in-progress objects; never listed.
const TEMP_PREFIX: &str = ".tmp.";

/// A temporary untouched for this long was left by a writer that crashed; the next write
/// to the store removes it. (Writers on other hosts may share the store, so the age of the
/// file decides, not whether a process is alive.)
const STALE_TEMP: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

pub struct LocalStore {
    dir: PathBuf,
}

impl LocalStore {
    pub fn new(dir: PathBuf) -> Self {
        LocalStore { dir }
    }

    /// Removes temporaries older than [`STALE_TEMP`]; failures are left for the next time.
    fn sweep_stale_temps(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        let now = std::time::SystemTime::now();
        for entry in entries.flatten() {
            let stale = entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(TEMP_PREFIX))
                && entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| now.duration_since(t).ok())
                    .is_some_and(|age| age > STALE_TEMP);
            if stale {
                let _ = fs::remove_file(entry.path());
            }
        }
    }

    fn path(&self, name: &str) -> Result<PathBuf> {
        if name.is_empty() || name.starts_with('.') || name.contains('/') {
            return Err(Error::Check(format!("invalid object name {name:?}")));
        }
        Ok(self.dir.join(name))
    }
}

impl Store for LocalStore {
    fn describe(&self) -> String {
        format!("local:{}", self.dir.display())
    }

    fn put(&self, name: &str) -> Result<Box<dyn ObjectWriter>> {
        let path = self.path(name)?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .at("cannot create store directory", &self.dir)?;
        self.sweep_stale_temps();
        let tmp = self.dir.join(format!(
            "{TEMP_PREFIX}{}.{name}",
            uuid::Uuid::new_v4().simple()
        ));
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .at("cannot create", &tmp)?;
        Ok(Box::new(LocalWriter {
            file: Some(BufWriter::with_capacity(256 * 1024, file)),
            tmp,
            path,
            dir: self.dir.clone(),
            written: 0,
            flushing_from: 0,
        }))
    }

    fn get(&self, name: &str) -> Result<Box<dyn Read + Send + Sync>> {
        let path = self.path(name)?;
        match File::open(&path) {
            Ok(f) => Ok(Box::new(f)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::Check(format!(
                "object {name} is missing from {}",
                self.describe()
            ))),
            Err(e) => Err(Error::io("cannot open", &path, e)),
        }
    }

    fn size(&self, name: &str) -> Result<Option<u64>> {
        let path = self.path(name)?;
        match fs::metadata(&path) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("cannot stat", &path, e)),
        }
    }

    fn list(&self) -> Result<Vec<String>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("cannot list", &self.dir, e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.at("cannot list", &self.dir)?;
            if let Some(name) = entry.file_name().to_str()
                && !name.starts_with('.')
            {
                names.push(name.to_string());
            }
        }
        names.sort();
        Ok(names)
    }

    fn delete(&self, name: &str) -> Result<()> {
        let path = self.path(name)?;
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.dir),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("cannot delete", &path, e)),
        }
    }
}

struct LocalWriter {
    file: Option<BufWriter<File>>,
    tmp: PathBuf,
    path: PathBuf,
    dir: PathBuf,
    /// Bytes handed to the writer so far.
    written: u64,
    /// Where the range not yet sent to the disk starts.
    flushing_from: u64,
}

/// How much written data may wait in the page cache before its writeback is started.
const WRITEBACK_STEP: u64 = 8 << 20;

impl Write for LocalWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let file = self.file.as_mut().expect("writer open");
        let n = file.write(buf)?;
        self.written += n as u64;
        // Start writing back what the file already holds, so that the fsync at commit
        // waits for the tail only, not for the whole object (~0.14 s less per 280 MB here).
        let in_file = self.written - file.buffer().len() as u64;
        if in_file - self.flushing_from >= WRITEBACK_STEP {
            start_writeback(
                file.get_ref(),
                self.flushing_from,
                in_file - self.flushing_from,
            );
            self.flushing_from = in_file;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().expect("writer open").flush()
    }
}

/// Asks the kernel to start writing `len` bytes at `offset` of `file` to disk, without
/// waiting. Durability still comes from the fsync at commit; this only starts it early.
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: sync_file_range on a file descriptor we own; it touches no memory of ours.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

impl ObjectWriter for LocalWriter {
    fn commit(mut self: Box<Self>) -> Result<()> {
        let file = self.file.take().expect("writer open");
        let durable = file
            .into_inner()
            .map_err(|e| Error::io("cannot write", &self.tmp, e.into_error()))
            .and_then(|f| f.sync_all().at("cannot sync", &self.tmp));
        if let Err(e) = durable {
            let _ = fs::remove_file(&self.tmp);
            return Err(e);
        }
        if let Err(e) = fs::rename(&self.tmp, &self.path) {
            let _ = fs::remove_file(&self.tmp);
            return Err(Error::io("cannot rename into place", &self.path, e));
        }
        sync_dir(&self.dir)
    }
}

impl Drop for LocalWriter {
    fn drop(&mut self) {
        // Not committed (error or early return): discard the partial object.
        if self.file.is_some() {
            self.file = None;
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// fsyncs a directory so a rename or removal in it is durable.
pub(crate) fn sync_dir(dir: &std::path::Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .at("cannot sync directory", dir)
}
