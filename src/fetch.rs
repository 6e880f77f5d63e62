//! The read side of the pipeline: stored bytes → sha256 check → decrypt → decompress,
//! with decryption and decompression on their own thread. The consumer sees plaintext as it streams; callers
//! write it only to staging, and accept it only when this returns `Ok` (the whole stream
//! authenticated and, for a catalogued backup, its size and sha256 matched the manifest).

use std::io::{self, BufReader, Read, Write};

use crate::codec::{self, DecryptFailure};
use crate::error::{Error, ErrorKind, Result};
use crate::hash::{HashHandle, HashReader};
use crate::keys::Identities;
use crate::pipe;

/// What the stored object must hash to.
pub struct Expected<'a> {
    pub sha256: &'a str,
    pub size: u64,
}

/// Streams `input` through decryption and decompression into `consume`, then drains the
/// rest and checks everything. `what` names the object in errors. Unencrypted input is
/// accepted only when `allow_plain` (archives from old scripts: `.tar.gz`, `.tar.zst`).
pub fn read_plaintext<T>(
    input: Box<dyn Read + Send + Sync>,
    expected: Option<Expected<'_>>,
    ids: &Identities,
    allow_plain: bool,
    what: &str,
    consume: impl FnOnce(&mut dyn Read) -> Result<T>,
) -> Result<T> {
    let (hashing, digest) = HashReader::new(input);
    let (writer, reader) = pipe::channel();
    std::thread::scope(|scope| {
        let producer = scope.spawn(move || decrypt_into(hashing, ids, allow_plain, what, writer));
        let consumed = (|| {
            let mut plain = reader;
            let value = consume(&mut plain)?;
            // Read to the end so the whole stream is authenticated and hashed.
            io::copy(&mut plain, &mut io::sink()).map_err(|e| damaged(what, e))?;
            Ok(value)
        })();
        let produced = producer
            .join()
            .unwrap_or_else(|_| Err(Error::Runtime("decryption thread panicked".into())));
        // The producer's error is the root cause when both failed, except that a damaged
        // key-wrapping header reads as "no matching identity": the hash tells them apart.
        let value = match (produced, consumed) {
            (Err(e), _) if e.kind() == ErrorKind::Config => {
                return Err(expected
                    .and_then(|exp| mismatch(&digest, &exp, what))
                    .unwrap_or(e));
            }
            (Err(e), _) => return Err(e),
            (Ok(()), Err(e)) => return Err(e),
            (Ok(()), Ok(v)) => v,
        };
        if let Some(e) = expected.and_then(|exp| mismatch(&digest, &exp, what)) {
            return Err(e);
        }
        Ok(value)
    })
}

/// The error to report when what was read does not hash to `exp`.
fn mismatch(digest: &HashHandle, exp: &Expected<'_>, what: &str) -> Option<Error> {
    let (sha256, size) = digest.result();
    let why = if size != exp.size {
        format!("{size} bytes, the manifest says {}", exp.size)
    } else if sha256 != exp.sha256 {
        "its sha256 differs".to_string()
    } else {
        return None;
    };
    Some(Error::Check(format!(
        "{what} does not match its manifest ({why}); it was altered or damaged"
    )))
}

/// Producer side: decrypt `input` (or pass a plain archive through) into the pipe.
fn decrypt_into(
    input: HashReader<Box<dyn Read + Send + Sync>>,
    ids: &Identities,
    allow_plain: bool,
    what: &str,
    mut w: pipe::PipeWriter,
) -> Result<()> {
    let mut input = BufReader::with_capacity(256 * 1024, input);
    let encrypted = match io::BufRead::fill_buf(&mut input) {
        Ok(head) => codec::detect_envelope(head).is_some(),
        Err(e) => Err(Error::Runtime(format!("cannot read {what}: {e}")))?,
    };
    // Decompression runs here, decryption (with reading and hashing the payload) on a
    // thread of its own: three stages overlap on the cores, and the consumer's (unpack,
    // hash, write) is the longest.
    let result = if !encrypted && allow_plain {
        match codec::decompress_reader(&mut input) {
            Ok(mut plain) => copy_until_consumer_stops(&mut plain, &mut w, &|e| damaged(what, e)),
            Err(e) => Err(damaged(what, e)),
        }
    } else {
        let undecryptable = |e: io::Error| DecryptFailure::Damaged(e.to_string()).into_error(what);
        let copied = codec::decrypt_reader(&mut input, ids)
            .map(|plain| decompress_decrypted(plain, &mut w, &undecryptable));
        match copied {
            Ok(copied) => copied,
            Err(e) => {
                // Hash the whole object, so the caller can tell damage from a wrong key.
                let _ = io::copy(&mut input, &mut io::sink());
                Err(e.into_error(what))
            }
        }
    };
    match result {
        // The consumer stopped early and reports its own error.
        Ok(true) => Ok(()),
        // Everything was handed over, but the consumer may have stopped before taking the
        // end (it then reports its own error, e.g. a full disk): not this side's failure.
        Ok(false) => {
            let _ = w.finish();
            Ok(())
        }
        Err(e) => {
            w.fail(e.to_string());
            Err(e)
        }
    }
}

/// Decrypts `plain` on a thread of its own and decompresses what it yields here, into `w`;
/// `Ok(true)` means the consumer stopped reading.
fn decompress_decrypted(
    mut plain: Box<dyn Read + Send + '_>,
    w: &mut pipe::PipeWriter,
    read_error: &(dyn Fn(io::Error) -> Error + Sync),
) -> Result<bool> {
    std::thread::scope(|scope| {
        let (mut decrypted, compressed) = pipe::channel();
        let decrypting = scope.spawn(move || {
            let r = copy_until_consumer_stops(&mut plain, &mut decrypted, read_error);
            match &r {
                Ok(_) => drop(decrypted.finish()),
                Err(e) => decrypted.fail(e.to_string()),
            }
            r
        });
        let compressed = BufReader::with_capacity(256 * 1024, compressed);
        let decompressed = codec::decompress_reader(compressed)
            .map_err(read_error)
            .and_then(|mut plain| copy_until_consumer_stops(&mut plain, w, read_error));
        // A failed decryption is the root cause of whatever decompression then saw.
        match decrypting.join() {
            Ok(Err(e)) => Err(e),
            Ok(Ok(_)) => decompressed,
            Err(_) => Err(Error::Runtime("decryption thread panicked".into())),
        }
    })
}

/// Copies until the end of `r`. A read error fails (it is the decryptor's verdict on the
/// stream); `Ok(true)` means the consumer stopped reading.
fn copy_until_consumer_stops(
    r: &mut dyn Read,
    w: &mut pipe::PipeWriter,
    read_error: &dyn Fn(io::Error) -> Error,
) -> Result<bool> {
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(false),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_error(e)),
        };
        if w.write_all(&buf[..n]).is_err() {
            return Ok(true);
        }
    }
}

fn damaged(what: &str, e: io::Error) -> Error {
    Error::Check(format!("{what} is not a valid archive: {e}"))
}

/// Streams a stored payload (`payload.object` in `store`) through decryption and
/// decompression into `consume`, checked against the payload's size and sha256.
pub(crate) fn read_payload<T>(
    store: &dyn crate::store::Store,
    payload: &crate::manifest::Payload,
    ids: &Identities,
    what: &str,
    consume: impl FnOnce(&mut dyn Read) -> Result<T>,
) -> Result<T> {
    let expected = Expected {
        sha256: &payload.sha256,
        size: payload.size,
    };
    read_plaintext(
        store.get(&payload.object)?,
        Some(expected),
        ids,
        false,
        what,
        consume,
    )
}

/// Streams a catalogued backup's archive (the payload `ids` can open, from the first store
/// holding it) into `consume`, which reads the tar, not necessarily to its end. The rest is
/// drained, the payload checked against the manifest and the archive against the private
/// manifest. Returns the archive's size.
pub(crate) fn read_archive(
    stores: &[Box<dyn crate::store::Store>],
    found: &crate::inventory::Found,
    ids: &Identities,
    private: &crate::manifest::Private,
    progress: &crate::progress::Progress,
    consume: impl FnOnce(&mut dyn Read, &str) -> Result<()>,
) -> Result<u64> {
    progress.total(private.tar_size);
    let m = &found.manifest;
    let payload = m.payload_for(ids)?;
    let store = &stores[found.stores[0]];
    let what = format!(
        "backup {} ({} in {})",
        m.backup_id,
        payload.object,
        store.describe()
    );
    let (sha256, size) = read_payload(store.as_ref(), payload, ids, &what, |r| {
        let (mut hashing, digest) = HashReader::new(progress.reader(r));
        consume(&mut hashing, &what)?;
        io::copy(&mut hashing, &mut io::sink()).map_err(|e| damaged(&what, e))?;
        Ok(digest.result())
    })?;
    if sha256 != private.tar_sha256 {
        return Err(Error::Check(format!(
            "{what}: archive does not match the checksum in its private manifest"
        )));
    }
    Ok(size)
}
