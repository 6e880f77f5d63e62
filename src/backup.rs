//! Backup: source → compress → encrypt (one payload per envelope) → sha256 → every store,
//! then the manifest, written last as the commit point.

use std::io::{self, Write};
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
    pub stores: Vec<String>,
    pub seconds: f64,
}

/// Writes the same bytes to every store's object.
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
    let stores = inventory::open_stores(policy)?;
    let created_at = clock.now();
    let backup_id = Uuid::new_v4();
    let stem = manifest::stem(backup_id, created_at);
    let envelopes = Envelope::for_recipients(&policy.recipients);
    let compression = policy.compression;
    let names: Vec<String> = envelopes
        .iter()
        .map(|e| format!("{stem}.tar.{}.{}", compression.ext(), e.ext()))
        .collect();

    let mut sinks = Vec::new();
    for name in &names {
        let writers = stores
            .iter()
            .map(|s| s.put(name))
            .collect::<Result<Vec<_>>>()?;
        sinks.push(HashWriter::new(Fanout(writers)));
    }

    let mut running = source::start(&policy.source, &state.scratch(), clock)?;
    let captured_at = running.captured_at;
    let streamed = stream(
        &mut progress.reader(&mut running.reader),
        &mut sinks,
        &envelopes,
        policy,
    );
    // The source's own error explains a broken stream better than the stream's.
    let (captured, (tar_sha256, tar_size)) = match (running.join(), streamed) {
        (Err(e), _) | (Ok(_), Err(e)) => return Err(e),
        (Ok(c), Ok(v)) => (c, v),
    };

    let mut payloads = Vec::new();
    for ((sink, name), envelope) in sinks.into_iter().zip(&names).zip(&envelopes) {
        let (fanout, sha256, size) = sink.finish();
        for w in fanout.0 {
            w.commit()?;
        }
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

    let private = Private {
        backup_id,
        policy_id: policy.id,
        policy_name: policy.name.clone(),
        source_kind: policy.source.kind().into(),
        source_path: policy.source.path().display().to_string(),
        captured_at,
        lifeboat_version: env!("CARGO_PKG_VERSION").into(),
        tar_size,
        tar_sha256,
        files: captured.files,
        tables: captured.tables,
    };
    let private_json = serde_json::to_vec(&private).expect("private manifest serializes");
    let mut sealed = std::collections::BTreeMap::new();
    for e in &envelopes {
        sealed.insert(*e, encrypt_armored(*e, &policy.recipients, &private_json)?);
    }
    let manifest = Manifest {
        format: manifest::FORMAT.into(),
        backup_id,
        policy_id: policy.id,
        created_at,
        captured_at: private.captured_at,
        payloads,
        private: sealed,
    };
    let json = manifest.to_json();
    for s in &stores {
        s.put_bytes(&manifest.object_name(), &json)?;
    }
    let described: Vec<String> = stores.iter().map(|s| s.describe()).collect();
    catalog.record_backup(&policy.name, &manifest, &described)?;
    Ok(BackupOutcome {
        policy: policy.name.clone(),
        backup_id,
        created_at,
        captured_at: manifest.captured_at,
        archive_size: tar_size,
        payloads: manifest.payloads,
        stores: described,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Compresses the source stream once and encrypts it for each envelope; returns the sha256
/// and size of the archive (the tar stream).
fn stream(
    source: &mut dyn io::Read,
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
    let compressor = policy
        .compression
        .writer(Tee(encryptors))
        .map_err(write_err)?;
    let mut archive = HashWriter::new(compressor);
    io::copy(source, &mut archive).map_err(write_err)?;
    let (compressor, sha256, size) = archive.finish();
    let tee = compressor.finish().map_err(write_err)?;
    for enc in tee.0 {
        enc.finish().map_err(write_err)?;
    }
    Ok((sha256, size))
}
