//! The WAL archive of a PostgreSQL physical policy: `lifeboat wal-push` (the server's
//! `archive_command`) stores each WAL file compressed and encrypted to the policy's
//! recipients (public keys only on the database host), like any object; `lifeboat
//! wal-fetch` (a `restore_command`) brings one back, checked.
//!
//! Objects, per WAL file `F` (e.g. `000000010000000A000000FE`, `00000002.history`), named by
//! the policy's id and never its name:
//!
//! - `<policy-id>.F.wal.<zst|gz>.<age|gpg>`: one payload per envelope, like a backup's;
//! - `<policy-id>.F.wal.json`: the record ([`WalRecord`]), written last: the commit point.
//!
//! Neither matches a backup's `*.manifest.json` or `<uuid>.<time>.tar.…`, so listing,
//! inventory and rotation never take them for backups.
//!
//! `wal-push` is idempotent: PostgreSQL retries a segment whose archiving it did not see
//! succeed, and a record with the same size and sha256 means it is already archived (exit
//! 0). A record with different content is refused (non-zero exit: PostgreSQL keeps the
//! segment), as is every other failure.

use std::fs;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::clock::Clock;
use crate::codec::Envelope;
use crate::error::{Error, IoContext, Result};
use crate::fetch;
use crate::hash::{HashWriter, sha256_of};
use crate::inventory;
use crate::keys::Identities;
use crate::manifest::Payload;
use crate::policy::{PgMode, PgSource, Policy, SourceSpec};
use crate::store::{ObjectWriter, Store};

/// Format tag of WAL records.
pub const FORMAT: &str = "lifeboat-wal/1";
/// Suffix of WAL record objects.
pub const RECORD_SUFFIX: &str = ".wal.json";

/// The record of one archived WAL file (public: no key needed to read it).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WalRecord {
    pub format: String,
    pub policy_id: Uuid,
    /// The WAL file's name, as PostgreSQL gives it (`%f`).
    pub file: String,
    /// Size and sha256 of the WAL file itself (checked by `wal-fetch`, and by a repeated
    /// `wal-push` to tell a retry from a conflict).
    pub size: u64,
    pub sha256: String,
    pub pushed_at: DateTime<Utc>,
    /// One payload per envelope; chain `["wal", "zstd"|"gzip", "age"|"openpgp"]`.
    pub payloads: Vec<Payload>,
}

/// Loads only the policy named `name` from `dir`, so that an unrelated policy the
/// server's OS user cannot read never stops WAL archiving.
pub fn load_policy(dir: &Path, name: &str) -> Result<Policy> {
    let entries = fs::read_dir(dir).map_err(|e| {
        Error::Config(format!(
            "cannot read policy directory {}: {e} (use --policies DIR)",
            dir.display()
        ))
    })?;
    let mut files: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    for file in files {
        let Ok(text) = fs::read_to_string(&file) else {
            continue;
        };
        let named = toml::from_str::<toml::Table>(&text)
            .ok()
            .and_then(|t| t.get("name").and_then(|n| n.as_str()).map(str::to_string));
        if named.as_deref().map(str::trim) == Some(name) {
            return crate::policy::parse(&file, &text);
        }
    }
    Err(Error::Config(format!(
        "no policy named {name:?} in {}",
        dir.display()
    )))
}

/// The object name of `file`'s record.
pub fn record_name(policy: &Policy, file: &str) -> String {
    format!("{}.{file}{RECORD_SUFFIX}", policy.id)
}

/// The WAL file a record object is about, if `name` is a record of `policy`.
fn record_file<'a>(policy: &Policy, name: &'a str) -> Option<&'a str> {
    name.strip_prefix(&format!("{}.", policy.id))?
        .strip_suffix(RECORD_SUFFIX)
}

/// A WAL segment name: 24 hex digits (timeline, log, segment).
fn is_segment(file: &str) -> bool {
    file.len() == 24 && file.bytes().all(|b| b.is_ascii_hexdigit())
}

fn physical(policy: &Policy) -> Result<&PgSource> {
    match &policy.source {
        SourceSpec::Postgres(pg) if pg.mode == PgMode::Physical => Ok(pg),
        _ => Err(Error::Config(format!(
            "policy {} is not a PostgreSQL policy with mode = \"physical\"; only those archive WAL",
            policy.name
        ))),
    }
}

fn check_file_name(file: &str) -> Result<()> {
    if file.is_empty()
        || file.starts_with('.')
        || !file
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return Err(Error::Config(format!(
            "{file:?} is not a WAL file name (as PostgreSQL passes %f)"
        )));
    }
    Ok(())
}

fn read_record(store: &dyn Store, name: &str) -> Result<WalRecord> {
    let bytes = store.get_bytes(name)?;
    let r: WalRecord = serde_json::from_slice(&bytes).map_err(|e| {
        Error::Check(format!(
            "WAL record {name} in {} is not valid: {e}",
            store.describe()
        ))
    })?;
    if r.format != FORMAT {
        return Err(Error::Check(format!(
            "WAL record {name} has unknown format {:?}",
            r.format
        )));
    }
    Ok(r)
}

/// Writes the same bytes to several stores' objects.
struct Fanout(Vec<Box<dyn ObjectWriter>>);

impl Write for Fanout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        for w in &mut self.0 {
            w.write_all(buf)?;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.iter_mut().try_for_each(|w| w.flush())
    }
}

/// Archives the WAL file at `path` (`%p`, relative to the server's data directory) for
/// `policy`. Returns its record (the existing one when it was already archived).
pub fn push(policy: &Policy, path: &Path, clock: &Clock) -> Result<WalRecord> {
    physical(policy)?;
    let file = path
        .file_name()
        .and_then(|f| f.to_str())
        .ok_or_else(|| Error::Config(format!("{} is not a WAL file", path.display())))?
        .to_string();
    check_file_name(&file)?;
    let open = || fs::File::open(path).at("cannot open WAL file", path);
    let (sha256, size) = sha256_of(open()?).at("cannot read WAL file", path)?;
    let stores = inventory::open_stores(policy)?;
    let name = record_name(policy, &file);

    // Stores that already hold it (a retry) are done; a different content is a conflict.
    let mut existing = None;
    let mut missing = Vec::new();
    for (i, store) in stores.iter().enumerate() {
        if store.size(&name)?.is_none() {
            missing.push(i);
            continue;
        }
        let r = read_record(store.as_ref(), &name)?;
        if r.sha256 != sha256 || r.size != size {
            return Err(Error::Check(format!(
                "WAL file {file} is already archived in {} with different content; refusing to overwrite it (is another cluster archiving to policy {}?)",
                store.describe(),
                policy.name
            )));
        }
        existing.get_or_insert(r);
    }
    if missing.is_empty()
        && let Some(r) = existing
    {
        return Ok(r);
    }

    let compression = policy.compression;
    let write_err = |e: io::Error| Error::Runtime(format!("cannot archive WAL file {file}: {e}"));
    let mut payloads = Vec::new();
    for envelope in Envelope::for_recipients(&policy.recipients) {
        let object = format!(
            "{}.{file}.wal.{}.{}",
            policy.id,
            compression.ext(),
            envelope.ext()
        );
        let writers = missing
            .iter()
            .map(|&i| stores[i].put(&object))
            .collect::<Result<Vec<_>>>()?;
        let mut sink = HashWriter::new(Fanout(writers));
        {
            let encryptor = envelope.writer(&policy.recipients, &mut sink, false)?;
            let mut compressor = compression.writer(encryptor).map_err(write_err)?;
            io::copy(&mut open()?, &mut compressor).map_err(write_err)?;
            compressor
                .finish()
                .and_then(|e| e.finish())
                .map_err(write_err)?;
        }
        let (fanout, object_sha256, object_size) = sink.finish();
        for w in fanout.0 {
            w.commit()?;
        }
        payloads.push(Payload {
            object,
            chain: vec![
                "wal".into(),
                compression.name().into(),
                envelope.name().into(),
            ],
            envelope,
            size: object_size,
            sha256: object_sha256,
            recipients: envelope.fingerprints(&policy.recipients),
        });
    }
    let record = WalRecord {
        format: FORMAT.into(),
        policy_id: policy.id,
        file,
        size,
        sha256,
        pushed_at: clock.now(),
        payloads,
    };
    let mut json = serde_json::to_vec_pretty(&record).expect("WAL record serializes");
    json.push(b'\n');
    // The record, last, is the commit point.
    for &i in &missing {
        stores[i].put_bytes(&name, &json)?;
    }
    Ok(record)
}

/// Finds `file`'s record in the first store that holds it.
fn find(policy: &Policy, stores: &[Box<dyn Store>], file: &str) -> Result<(usize, WalRecord)> {
    let name = record_name(policy, file);
    for (i, store) in stores.iter().enumerate() {
        if store.size(&name)?.is_some() {
            return Ok((i, read_record(store.as_ref(), &name)?));
        }
    }
    Err(Error::Check(format!(
        "WAL file {file} is not in the archive of policy {} (normal at the end of recovery)",
        policy.name
    )))
}

/// Decrypts `record`'s WAL file from `store` into `dest`, through a temporary file beside
/// it, checked against the record before it is renamed into place.
fn fetch_record(
    store: &dyn Store,
    record: &WalRecord,
    ids: &Identities,
    dest: &Path,
) -> Result<()> {
    let payload = record
        .payloads
        .iter()
        .find(|p| p.envelope.usable_with(ids))
        .ok_or_else(|| {
            Error::Config(format!(
                "WAL file {} is encrypted with {}; no identity of that kind was given (--identity)",
                record.file,
                record
                    .payloads
                    .iter()
                    .map(|p| p.envelope.name())
                    .collect::<Vec<_>>()
                    .join(" and ")
            ))
        })?;
    let dest_name = dest
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::Config(format!("{} is not a file path", dest.display())))?;
    let tmp = dest.with_file_name(format!("{dest_name}.lifeboat-tmp"));
    let what = format!(
        "WAL file {} ({} in {})",
        record.file,
        payload.object,
        store.describe()
    );
    let result = (|| {
        let out = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .at("cannot create", &tmp)?;
        let (sha256, size) = fetch::read_payload(store, payload, ids, &what, |r| {
            let mut w = HashWriter::new(BufWriter::new(out));
            io::copy(r, &mut w).map_err(|e| Error::Check(format!("{what}: {e}")))?;
            let (buffered, sha256, size) = w.finish();
            buffered
                .into_inner()
                .map_err(|e| e.into_error())
                .and_then(|f| f.sync_all())
                .at("cannot write", &tmp)?;
            Ok((sha256, size))
        })?;
        if sha256 != record.sha256 || size != record.size {
            return Err(Error::Check(format!(
                "{what} does not match its record (size {size} vs {}); it was altered or damaged",
                record.size
            )));
        }
        fs::rename(&tmp, dest).at("cannot move WAL file into", dest)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Brings back the WAL file `file` (`%f`) of `policy` into `dest` (`%p`). A file that is
/// not archived is an error (PostgreSQL asks for files past the end of the archive).
pub fn fetch(policy: &Policy, ids: &Identities, file: &str, dest: &Path) -> Result<()> {
    physical(policy)?;
    check_file_name(file)?;
    let stores = inventory::open_stores(policy)?;
    let (i, record) = find(policy, &stores, file)?;
    fetch_record(stores[i].as_ref(), &record, ids, dest)
}

/// The WAL files of `policy` in `stores` (union, sorted), each with the first store
/// holding it.
fn list(policy: &Policy, stores: &[Box<dyn Store>]) -> Result<Vec<(String, usize)>> {
    let mut files: Vec<(String, usize)> = Vec::new();
    for (i, store) in stores.iter().enumerate() {
        for name in store.list()? {
            if let Some(f) = record_file(policy, &name)
                && !files.iter().any(|(g, _)| g == f)
            {
                files.push((f.to_string(), i));
            }
        }
    }
    files.sort();
    Ok(files)
}

/// The record of the newest archived WAL segment (the highest timeline and position).
pub fn newest(policy: &Policy, stores: &[Box<dyn Store>]) -> Result<Option<WalRecord>> {
    let newest = list(policy, stores)?
        .into_iter()
        .filter(|(f, _)| is_segment(f))
        .max_by(|a, b| a.0.cmp(&b.0));
    match newest {
        None => Ok(None),
        Some((file, i)) => read_record(stores[i].as_ref(), &record_name(policy, &file)).map(Some),
    }
}

/// Fetches into `dir` what recovery from a base backup starting in segment `start` needs:
/// every segment at or after it (on its timeline or a later one) and every timeline history
/// file. Returns how many files were fetched.
pub(crate) fn fetch_for_recovery(
    policy: &Policy,
    stores: &[Box<dyn Store>],
    ids: &Identities,
    start: &str,
    dir: &Path,
) -> Result<usize> {
    let needed = |f: &str| {
        f.ends_with(".history")
            || (is_segment(f) && is_segment(start) && f[..8] >= start[..8] && f[8..] >= start[8..])
    };
    let mut n = 0;
    for (file, i) in list(policy, stores)? {
        if !needed(&file) {
            continue;
        }
        let record = read_record(stores[i].as_ref(), &record_name(policy, &file))?;
        fetch_record(stores[i].as_ref(), &record, ids, &dir.join(&file))?;
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names() {
        assert!(is_segment("000000010000000A000000FE"));
        assert!(!is_segment("00000002.history"));
        assert!(!is_segment("000000010000000000000002.00000028.backup"));
        assert!(check_file_name("00000002.history").is_ok());
        assert!(check_file_name("../x").is_err());
        assert!(check_file_name(".hidden").is_err());
    }
}
