//! lifeboat: backup, encrypt, rotate, verify and restore pipelines for SQLite databases and
//! wallet directories, with every restore timed.
//!
//! The CLI (`src/main.rs`, `src/cli/`) is a thin shell over this library; see
//! `docs/ARCHITECTURE.md` for the module map and the data flow.

pub mod backup;
pub mod catalog;
pub mod clock;
pub mod codec;
pub mod drill;
pub mod error;
pub mod fetch;
pub mod hash;
pub mod inventory;
pub mod keys;
pub mod manifest;
pub mod metrics;
pub mod notify;
pub mod pipe;
pub mod policy;
pub mod progress;
pub mod rebuild;
pub mod report;
pub mod restore;
pub mod retention;
pub mod rotate;
pub mod run;
pub mod schedule;
pub mod source;
pub mod state;
pub mod store;
pub mod verify;
pub mod wal;

pub use backup::{BackupOutcome, backup};
pub use catalog::{BackupRow, Catalog};
pub use clock::Clock;
pub use drill::{DrillOptions, DrillResult, drill};
pub use error::{Error, ErrorKind, Result};
pub use keys::{GeneratedKey, Identities, KeyKind, Recipients, keygen};
pub use manifest::{Manifest, Private};
pub use policy::Policy;
pub use rebuild::{RebuildOutcome, rebuild_catalog};
pub use restore::{RestoreOptions, RestoreOutcome, restore, restore_archive};
pub use retention::{BackupInfo, Deleted, Kept, Plan};
pub use rotate::{RotateOutcome, rotate};
pub use state::StateDir;
pub use verify::{Level, Verification, verify};
