//! Backup: source → compress → encrypt (one payload per envelope) → sha256 → every store,
//! then the manifest, written last as the commit point.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::catalog::{BackupRun, Catalog};
use crate::clock::Clock;
use crate::codec::{EncryptWriter, Envelope, encrypt_armored};
use crate::error::{Error, Result};
use crate::hash::HashWriter;
use crate::inventory;
use crate::manifest::{self, Manifest, Payload, Private};
use crate::policy::Policy;
use crate::progress::Progress;
use crate::source;
use crate::state::StateDir;
use crate::store::ObjectWriter;

/// What a backup wrote.
#[derive(Debug, Serialize)]
pub struct BackupOutcome {
    pub policy: String,
    pub backup_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub captured_at: DateTime<Utc>,
    /// Size of the uncompressed archive.
    pub archive_size: u64,
    pub payloads: Vec<Payload>,
    /// The stores that hold the backup.
    pub stores: Vec<String>,
    /// Every store of the policy, in policy order, with how writing to it went.
    pub store_results: Vec<StoreResult>,
    pub seconds: f64,
}

/// How writing one backup to one store went.
#[derive(Debug, Clone, Serialize)]
pub struct StoreResult {
    pub store: String,
    pub required: bool,
    pub ok: bool,
    pub error: Option<String>,
}

/// The first failure of each store (by policy index), shared by every payload's fanout: a
/// store that failed for one payload is dropped for all of them.
#[derive(Clone)]
struct Failures {
    required: Arc<[bool]>,
    described: Arc<[String]>,
    first: Arc<Mutex<Vec<Option<String>>>>,
    /// The failure of a required store, which fails the backup.
    fatal: Arc<Mutex<Option<String>>>,
}

impl Failures {
    fn failed(&self, i: usize) -> bool {
        self.first.lock().unwrap_or_else(|p| p.into_inner())[i].is_some()
    }

    /// Records that store `i` failed; `Err` when the store is required (the backup fails).
    fn record(&self, i: usize, error: String) -> Result<()> {
        if self.required[i] {
            let error = if error.contains(&self.described[i]) {
                error
            } else {
                format!("{}: {error}", self.described[i])
            };
            let mut fatal = self.fatal.lock().unwrap_or_else(|p| p.into_inner());
            fatal.get_or_insert(error.clone());
            return Err(Error::Runtime(error));
        }
        let mut first = self.first.lock().unwrap_or_else(|p| p.into_inner());
        first[i].get_or_insert(error);
        Ok(())
    }

    fn get(&self, i: usize) -> Option<String> {
        self.first.lock().unwrap_or_else(|p| p.into_inner())[i].clone()
    }

    /// The failure of a required store, if one failed.
    fn fatal(&self) -> Option<Error> {
        let fatal = self.fatal.lock().unwrap_or_else(|p| p.into_inner());
        fatal.clone().map(Error::Runtime)
    }
}

/// Writes the same bytes to every store's object. A store that is not required is dropped
/// on its first failure (its partial object discarded); the others go on.
struct Fanout {
    writers: Vec<Option<Box<dyn ObjectWriter>>>,
    failures: Failures,
}

impl Write for Fanout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        for (i, slot) in self.writers.iter_mut().enumerate() {
            if self.failures.failed(i) {
                *slot = None;
            }
            let Some(w) = slot else { continue };
            if let Err(e) = w.write_all(buf) {
                *slot = None;
                self.failures
                    .record(i, e.to_string())
                    .map_err(|e| io::Error::other(e.to_string()))?;
            }
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Fanout {
    /// Commits every object still being written.
    fn commit(self) -> Result<()> {
        for (i, slot) in self.writers.into_iter().enumerate() {
            let Some(w) = slot else { continue };
            if self.failures.failed(i) {
                continue;
            }
            if let Err(e) = w.commit() {
                self.failures.record(i, e.to_string())?;
            }
        }
        Ok(())
    }
}

/// Feeds the compressed stream to every envelope's encryptor.
struct Tee<'a, W: Write>(Vec<EncryptWriter<'a, W>>);

impl<W: Write> Write for Tee<'_, W> {
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

/// Backs up `policy` once, holding its lock, and records the attempt (success or failure)
/// in the catalog's history. A run skipped because another holds the lock is not recorded.
pub fn backup(
    policy: &Policy,
    state: &StateDir,
    catalog: &Catalog,
    clock: &Clock,
    progress: &Progress,
) -> Result<BackupOutcome> {
    let at = clock.now();
    let started = Instant::now();
    let result = backup_once(policy, state, catalog, clock, progress);
    let run = match &result {
        Err(Error::Locked(_)) => return result,
        Ok(o) => BackupRun {
            policy: policy.name.clone(),
            at,
            ok: true,
            backup_id: Some(o.backup_id.to_string()),
            captured_at: Some(o.captured_at),
            size: Some(o.payloads.iter().map(|p| p.size).max().unwrap_or(0)),
            seconds: o.seconds,
            error: None,
        },
        Err(e) => BackupRun {
            policy: policy.name.clone(),
            at,
            ok: false,
            backup_id: None,
            captured_at: None,
            size: None,
            seconds: started.elapsed().as_secs_f64(),
            error: Some(e.to_string()),
        },
    };
    catalog.record_backup_run(&run)?;
    result
}

fn backup_once(
    policy: &Policy,
    state: &StateDir,
    catalog: &Catalog,
    clock: &Clock,
    progress: &Progress,
) -> Result<BackupOutcome> {
    let _lock = state.lock(policy)?;
    let started = Instant::now();
    // A missing source or a wrong database key fails here, before any store is touched.
    source::preflight(&policy.source)?;
    let stores = inventory::open_stores(policy)?;
    let failures = Failures {
        required: policy.stores.iter().map(|s| s.required()).collect(),
        described: stores.iter().map(|s| s.describe()).collect(),
        first: Arc::new(Mutex::new(vec![None; stores.len()])),
        fatal: Arc::default(),
    };
    // One more than any backup of this policy in any store (see Manifest::sequence). A
    // store that is not required and cannot be read is left out of this backup.
    let mut sequence = 0;
    for (i, s) in stores.iter().enumerate() {
        match inventory::max_sequence(policy, std::slice::from_ref(s)) {
            Ok(n) => sequence = sequence.max(n),
            Err(e) => failures.record(i, e.to_string())?,
        }
    }
    let sequence = sequence + 1;
    let created_at = clock.now();
    let backup_id = Uuid::new_v4();
    let stem = manifest::stem(backup_id, created_at);
    let envelopes = Envelope::for_recipients(&policy.recipients);
    let compression = policy.compression;
    let names: Vec<String> = envelopes
        .iter()
        .map(|e| format!("{stem}.tar.{}.{}", compression.ext(), e.ext()))
        .collect();

    // A hint for stores that upload in parts: the source file's size, when it is one.
    let size_hint = std::fs::metadata(policy.source.path())
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len());
    let mut sinks = Vec::new();
    for name in &names {
        let mut writers = Vec::new();
        for (i, s) in stores.iter().enumerate() {
            if failures.failed(i) {
                writers.push(None);
                continue;
            }
            match s.put_expecting(name, size_hint) {
                Ok(w) => writers.push(Some(w)),
                Err(e) => {
                    failures.record(i, e.to_string())?;
                    writers.push(None);
                }
            }
        }
        sinks.push(HashWriter::new(Fanout {
            writers,
            failures: failures.clone(),
        }));
    }

    let mut running = source::start(&policy.source, &state.scratch(), clock)?;
    let captured_at = running.captured_at;
    let streamed = stream(
        &mut progress.reader(&mut running.reader),
        &mut sinks,
        &envelopes,
        policy,
    );
    // A store that failed stopped the stream (the source then only saw its reader go);
    // otherwise the source's own error explains a broken stream better than the stream's.
    let joined = running.join();
    if let Some(e) = failures.fatal() {
        return Err(e);
    }
    let (captured, (tar_sha256, tar_size)) = match (joined, streamed) {
        (Err(e), _) | (Ok(_), Err(e)) => return Err(e),
        (Ok(c), Ok(v)) => (c, v),
    };
    // A base backup is consistent only once it ends.
    let captured_at = captured.captured_at.unwrap_or(captured_at);

    let mut payloads = Vec::new();
    for ((sink, name), envelope) in sinks.into_iter().zip(&names).zip(&envelopes) {
        let (fanout, sha256, size) = sink.finish();
        fanout.commit()?;
        payloads.push(Payload {
            object: name.clone(),
            chain: vec![
                "tar".into(),
                compression.name().into(),
                envelope.name().into(),
            ],
            envelope: *envelope,
            size,
            sha256,
            recipients: envelope.fingerprints(&policy.recipients),
        });
    }

    let mut manifest = Manifest {
        format: manifest::FORMAT.into(),
        backup_id,
        policy_id: policy.id,
        created_at,
        captured_at,
        sequence,
        payloads,
        private: Default::default(),
        signature: None,
    };
    // The private part repeats the public one (its digest, ids, sequence, payloads), so any
    // edit of the public part is caught by whoever can read the private part.
    let private = Private {
        backup_id,
        policy_id: policy.id,
        policy_name: policy.name.clone(),
        source_kind: policy.source.kind().into(),
        source_path: policy.source.describe(),
        captured_at,
        sequence,
        payloads: manifest.digests(),
        public_sha256: manifest.public_digest(),
        lifeboat_version: env!("CARGO_PKG_VERSION").into(),
        tar_size,
        tar_sha256,
        files: captured.files,
        tables: captured.tables,
    };
    let private_json = serde_json::to_vec(&private).expect("private manifest serializes");
    for e in &envelopes {
        let sealed = encrypt_armored(*e, &policy.recipients, &private_json)?;
        manifest.private.insert(*e, sealed);
    }
    if let Some(key) = &policy.signing.key_file {
        manifest.signature = Some(crate::keys::sign_detached(key, &manifest.signed_bytes())?);
    }
    let json = manifest.to_json();
    for (i, s) in stores.iter().enumerate() {
        if failures.failed(i) {
            continue;
        }
        if let Err(e) = s.put_bytes(&manifest.object_name(), &json) {
            failures.record(i, e.to_string())?;
        }
    }
    let store_results: Vec<StoreResult> = stores
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let error = failures.get(i);
            StoreResult {
                store: s.describe(),
                required: failures.required[i],
                ok: error.is_none(),
                error,
            }
        })
        .collect();
    let described: Vec<String> = store_results
        .iter()
        .filter(|r| r.ok)
        .map(|r| r.store.clone())
        .collect();
    if described.is_empty() {
        let why: Vec<String> = store_results
            .iter()
            .map(|r| format!("{}: {}", r.store, r.error.as_deref().unwrap_or("?")))
            .collect();
        return Err(Error::Runtime(format!(
            "backup of {} failed in every store ({})",
            policy.name,
            why.join("; ")
        )));
    }
    catalog.record_backup(&policy.name, &manifest, &described)?;
    Ok(BackupOutcome {
        policy: policy.name.clone(),
        backup_id,
        created_at,
        captured_at: manifest.captured_at,
        archive_size: tar_size,
        payloads: manifest.payloads,
        stores: described,
        store_results,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Compresses the source stream once and encrypts it for each envelope; returns the sha256
/// and size of the archive (the tar stream). Compression (hashing the archive, feeding
/// zstd's workers) runs on a thread of its own, so it never waits for encryption, hashing
/// and writing the payloads, which stay on the calling thread.
fn stream(
    source: &mut (dyn io::Read + Send),
    sinks: &mut [HashWriter<Fanout>],
    envelopes: &[Envelope],
    policy: &Policy,
) -> Result<(String, u64)> {
    let write_err =
        |e: io::Error| Error::Runtime(format!("cannot write backup of {}: {e}", policy.name));
    let encryptors = sinks
        .iter_mut()
        .zip(envelopes)
        .map(|(sink, e)| e.writer(&policy.recipients, sink, false))
        .collect::<Result<Vec<_>>>()?;
    std::thread::scope(|scope| {
        let (compressed, to_encrypt) = crate::pipe::channel();
        let compressing = scope.spawn(move || -> io::Result<(String, u64)> {
            let mut archive = HashWriter::new(policy.compression.writer(compressed)?);
            // Large writes: io::copy alone would feed zstd 8 KiB at a time, ~20% slower
            // than the pipe's 256 KiB chunks (benches/pipeline.rs).
            let mut source = io::BufReader::with_capacity(256 * 1024, source);
            io::copy(&mut source, &mut archive)?;
            let (compressor, sha256, size) = archive.finish();
            compressor.finish()?.finish()?;
            Ok((sha256, size))
        });
        let encrypted = (|| -> Result<()> {
            let mut tee = Tee(encryptors);
            let mut to_encrypt = io::BufReader::with_capacity(256 * 1024, to_encrypt);
            io::copy(&mut to_encrypt, &mut tee).map_err(write_err)?;
            for enc in tee.0 {
                enc.finish().map_err(write_err)?;
            }
            Ok(())
        })();
        let compressed = compressing
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("compression thread panicked")));
        match (compressed, encrypted) {
            (Ok(v), Ok(())) => Ok(v),
            // The encrypting side stopped first (a store failed): its error is the cause.
            (Err(c), Err(e)) if c.kind() == io::ErrorKind::BrokenPipe => Err(e),
            (Err(c), _) => Err(write_err(c)),
            (Ok(_), Err(e)) => Err(e),
        }
    })
}
