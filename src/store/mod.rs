//! Stores: where objects live. Every backend offers the same small interface (streaming
//! atomic put, streaming get, list, delete), so the pipeline never knows which it writes to.

mod local;
mod retry;
pub mod s3;

use std::io::{Read, Write};

pub use local::LocalStore;
pub(crate) use local::sync_dir;
pub use s3::{S3Spec, S3Store};

use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::policy::StoreSpec;

/// A place objects are kept.
pub trait Store: Send + Sync {
    /// Human-readable location, e.g. `local:/var/backups/lifeboat` (no credentials).
    fn describe(&self) -> String;
    /// Starts writing `name`; the object appears only when [`ObjectWriter::commit`] returns.
    fn put(&self, name: &str) -> Result<Box<dyn ObjectWriter>>;
    /// Streams `name`; a missing object is an [`crate::Error::Check`] failure.
    fn get(&self, name: &str) -> Result<Box<dyn Read + Send + Sync>>;
    /// The size of `name`, or `None` when absent.
    fn size(&self, name: &str) -> Result<Option<u64>>;
    /// All object names (complete objects only, never in-progress uploads).
    fn list(&self) -> Result<Vec<String>>;
    /// Removes `name`; removing an absent object is not an error.
    fn delete(&self, name: &str) -> Result<()>;

    /// Like [`Store::put`], for an object expected to be about `expected_size` bytes (a
    /// hint: stores that upload in parts choose their part size from it).
    fn put_expecting(
        &self,
        name: &str,
        expected_size: Option<u64>,
    ) -> Result<Box<dyn ObjectWriter>> {
        let _ = expected_size;
        self.put(name)
    }

    /// When `name` is under a retention lock (S3 Object Lock), the time the lock ends;
    /// `None` when it can be deleted now. Deleting a locked object fails, so rotation asks
    /// first and leaves locked objects for a later run.
    fn locked_until(&self, name: &str) -> Result<Option<DateTime<Utc>>> {
        let _ = name;
        Ok(None)
    }

    /// Writes a small object in one go.
    fn put_bytes(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let mut w = self.put(name)?;
        w.write_all(bytes).map_err(|e| {
            crate::Error::Runtime(format!("cannot write {name} to {}: {e}", self.describe()))
        })?;
        w.commit()
    }

    /// Reads a small object in one go.
    fn get_bytes(&self, name: &str) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.get(name)?.read_to_end(&mut out).map_err(|e| {
            crate::Error::Runtime(format!("cannot read {name} from {}: {e}", self.describe()))
        })?;
        Ok(out)
    }
}

/// An object being written. Dropping it without `commit` discards it.
pub trait ObjectWriter: Write + Send + Sync {
    /// Makes the object durable and visible under its name.
    fn commit(self: Box<Self>) -> Result<()>;
}

/// Opens the store a policy names.
pub fn open(spec: &StoreSpec) -> Result<Box<dyn Store>> {
    match spec {
        StoreSpec::Local { path, .. } => Ok(Box::new(LocalStore::new(path.clone()))),
        StoreSpec::S3 { spec, .. } => Ok(Box::new(S3Store::open(spec)?)),
    }
}
