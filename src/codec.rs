//! Codecs: compression (zstd, gzip) and encryption envelopes (age, OpenPGP), as streaming
//! writers with an explicit `finish`, and readers that detect the format by content.

use std::io::{self, BufRead, BufReader, Read, Write};

use openpgp::parse::Parse;
use openpgp::parse::stream::{
    DecryptionHelper, DecryptorBuilder, MessageStructure, VerificationHelper,
};
use openpgp::serialize::stream::{Encryptor, LiteralWriter, Message};
use sequoia_openpgp as openpgp;

use crate::error::{Error, Result};
use crate::keys::{Identities, OPENPGP_POLICY, Recipients, encryption_keys};

/// Size of a multithreaded zstd job (see [`Compression::writer`]).
const ZSTD_JOB_SIZE: u32 = 1 << 20;

/// How much plaintext sequoia's decryptor holds back (its default is 25 MiB, buffered at
/// every layer of the message: ~150-200 MB of RSS). Lifeboat never trusts plaintext before
/// the whole stream is authenticated and hashed (it goes to staging), so a small window
/// loses nothing.
const OPENPGP_BUFFER: usize = 256 * 1024;

/// Compression codec and level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Zstd(i32),
    Gzip(u32),
}

impl Compression {
    /// Validates a codec name and optional level (zstd 1–19, default 3; gzip 1–9, default 6).
    pub fn new(codec: &str, level: Option<i32>) -> Result<Self, String> {
        match codec {
            "zstd" => match level.unwrap_or(3) {
                l @ 1..=19 => Ok(Compression::Zstd(l)),
                l => Err(format!("zstd level must be 1–19, got {l}")),
            },
            "gzip" => match level.unwrap_or(6) {
                l @ 1..=9 => Ok(Compression::Gzip(l as u32)),
                l => Err(format!("gzip level must be 1–9, got {l}")),
            },
            other => Err(format!(
                "unknown codec {other:?}; expected \"zstd\" or \"gzip\""
            )),
        }
    }

    /// File-name extension: `zst` or `gz`.
    pub fn ext(self) -> &'static str {
        match self {
            Compression::Zstd(_) => "zst",
            Compression::Gzip(_) => "gz",
        }
    }

    /// Name in a manifest's format chain.
    pub fn name(self) -> &'static str {
        match self {
            Compression::Zstd(_) => "zstd",
            Compression::Gzip(_) => "gzip",
        }
    }

    /// Wraps `w` in a compressing writer; zstd uses one worker per core.
    pub fn writer<W: Write>(self, w: W) -> io::Result<CompressWriter<W>> {
        Ok(match self {
            Compression::Zstd(level) => {
                let mut enc = zstd::stream::write::Encoder::new(w, level)?;
                let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
                if workers > 1 {
                    enc.multithread(workers as u32)?;
                    // 1 MiB jobs instead of zstd's default (4x the window, 8 MiB at level
                    // 3): its buffers drop from ~55 MB to ~7-10 MB, so a backup stays well
                    // under 64 MiB RSS, for 0.4% of ratio and no loss of speed (measured
                    // for benches/pipeline.rs).
                    enc.set_parameter(zstd::stream::raw::CParameter::JobSize(ZSTD_JOB_SIZE))?;
                }
                CompressWriter::Zstd(enc)
            }
            Compression::Gzip(level) => CompressWriter::Gzip(flate2::write::GzEncoder::new(
                w,
                flate2::Compression::new(level),
            )),
        })
    }
}

/// A compressing writer; call [`CompressWriter::finish`] or the stream is truncated.
pub enum CompressWriter<W: Write> {
    Zstd(zstd::stream::write::Encoder<'static, W>),
    Gzip(flate2::write::GzEncoder<W>),
}

impl<W: Write> CompressWriter<W> {
    pub fn finish(self) -> io::Result<W> {
        match self {
            CompressWriter::Zstd(e) => e.finish(),
            CompressWriter::Gzip(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for CompressWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            CompressWriter::Zstd(e) => e.write(buf),
            CompressWriter::Gzip(e) => e.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            CompressWriter::Zstd(e) => e.flush(),
            CompressWriter::Gzip(e) => e.flush(),
        }
    }
}

/// Wraps `r` in a decompressor chosen by its first bytes (zstd, gzip), or passes it through
/// when it is neither (a plain tar).
pub fn decompress_reader<'a, R: BufRead + 'a>(mut r: R) -> io::Result<Box<dyn Read + 'a>> {
    let head = r.fill_buf()?;
    Ok(if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(r)?)
    } else if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::bufread::MultiGzDecoder::new(r))
    } else {
        Box::new(r)
    })
}

/// An encryption format; a backup has one payload per envelope its policy's recipients need.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Envelope {
    Age,
    #[serde(rename = "openpgp")]
    OpenPgp,
}

impl Envelope {
    /// File-name extension: `age` or `gpg`.
    pub fn ext(self) -> &'static str {
        match self {
            Envelope::Age => "age",
            Envelope::OpenPgp => "gpg",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Envelope::Age => "age",
            Envelope::OpenPgp => "openpgp",
        }
    }

    /// The envelopes needed to reach every recipient.
    pub fn for_recipients(r: &Recipients) -> Vec<Envelope> {
        let mut v = Vec::new();
        if !r.age.is_empty() {
            v.push(Envelope::Age);
        }
        if !r.openpgp.is_empty() {
            v.push(Envelope::OpenPgp);
        }
        v
    }

    /// The recipients' fingerprints for this envelope (age recipients, OpenPGP fingerprints).
    pub fn fingerprints(self, r: &Recipients) -> Vec<String> {
        match self {
            Envelope::Age => r.age_fingerprints(),
            Envelope::OpenPgp => r.openpgp_fingerprints(),
        }
    }

    /// Whether `ids` holds a key of this envelope's kind.
    pub fn usable_with(self, ids: &Identities) -> bool {
        match self {
            Envelope::Age => !ids.age.is_empty(),
            Envelope::OpenPgp => !ids.openpgp.is_empty(),
        }
    }

    /// Wraps `w` in an encrypting writer for `recipients`. With `armor`, the output is
    /// ASCII-armored (used for the private manifest).
    pub fn writer<'a, W: Write + Send + Sync + 'a>(
        self,
        recipients: &'a Recipients,
        w: W,
        armor: bool,
    ) -> Result<EncryptWriter<'a, W>> {
        match self {
            Envelope::Age => {
                let list: Vec<&dyn age::Recipient> = recipients
                    .age
                    .iter()
                    .map(|r| r as &dyn age::Recipient)
                    .collect();
                let enc = age::Encryptor::with_recipients(list.into_iter())
                    .map_err(|e| Error::Config(format!("cannot encrypt to age recipients: {e}")))?;
                if armor {
                    let armored =
                        age::armor::ArmoredWriter::wrap_output(w, age::armor::Format::AsciiArmor)
                            .map_err(|e| Error::Runtime(format!("cannot start age armor: {e}")))?;
                    let s = enc
                        .wrap_output(armored)
                        .map_err(|e| Error::Runtime(format!("cannot start age encryption: {e}")))?;
                    Ok(EncryptWriter::AgeArmored(s))
                } else {
                    let s = enc
                        .wrap_output(w)
                        .map_err(|e| Error::Runtime(format!("cannot start age encryption: {e}")))?;
                    Ok(EncryptWriter::Age(s))
                }
            }
            Envelope::OpenPgp => {
                let pgp = |e: anyhow_like::E| {
                    Error::Runtime(format!("cannot start OpenPGP encryption: {e}"))
                };
                let keys: Vec<_> = recipients
                    .openpgp
                    .iter()
                    .flat_map(encryption_keys)
                    .collect();
                let mut message = Message::new(w);
                if armor {
                    message = openpgp::serialize::stream::Armorer::new(message)
                        .build()
                        .map_err(pgp)?;
                }
                let message = Encryptor::for_recipients(message, keys)
                    .build()
                    .map_err(pgp)?;
                let message = LiteralWriter::new(message).build().map_err(pgp)?;
                Ok(EncryptWriter::OpenPgp(message))
            }
        }
    }
}

mod anyhow_like {
    /// sequoia's error type.
    pub type E = sequoia_openpgp::anyhow::Error;
}

/// An encrypting writer; call [`EncryptWriter::finish`] or the message is incomplete.
pub enum EncryptWriter<'a, W: Write> {
    Age(age::stream::StreamWriter<W>),
    AgeArmored(age::stream::StreamWriter<age::armor::ArmoredWriter<W>>),
    OpenPgp(Message<'a>),
}

impl<W: Write> EncryptWriter<'_, W> {
    pub fn finish(self) -> io::Result<()> {
        match self {
            EncryptWriter::Age(s) => s.finish().map(drop),
            EncryptWriter::AgeArmored(s) => s.finish()?.finish().map(drop),
            EncryptWriter::OpenPgp(m) => m.finalize().map_err(io::Error::other),
        }
    }
}

impl<W: Write> Write for EncryptWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            EncryptWriter::Age(s) => s.write(buf),
            EncryptWriter::AgeArmored(s) => s.write(buf),
            EncryptWriter::OpenPgp(m) => m.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            EncryptWriter::Age(s) => s.flush(),
            EncryptWriter::AgeArmored(s) => s.flush(),
            EncryptWriter::OpenPgp(m) => m.flush(),
        }
    }
}

/// Encrypts a small buffer to `recipients`, ASCII-armored (for private manifests).
pub fn encrypt_armored(envelope: Envelope, recipients: &Recipients, data: &[u8]) -> Result<String> {
    let mut out = Vec::new();
    let mut w = envelope.writer(recipients, &mut out, true)?;
    w.write_all(data)
        .and_then(|_| w.finish())
        .map_err(|e| Error::Runtime(format!("cannot encrypt: {e}")))?;
    String::from_utf8(out).map_err(|_| Error::Runtime("armored output is not UTF-8".into()))
}

/// What a decryption attempt found wrong.
#[derive(Debug)]
pub enum DecryptFailure {
    /// None of the identities is a recipient of this message.
    NoMatchingIdentity,
    /// The input is not an age or OpenPGP message, or fails authentication.
    Damaged(String),
}

impl DecryptFailure {
    /// Turns the failure into an error about `what` (e.g. "backup 3f6c…").
    pub fn into_error(self, what: &str) -> Error {
        match self {
            DecryptFailure::NoMatchingIdentity => Error::Config(format!(
                "none of the given identities can decrypt {what}; pass the right key with --identity or LIFEBOAT_IDENTITY_FILE"
            )),
            DecryptFailure::Damaged(m) => Error::Check(format!(
                "{what} cannot be decrypted: {m} (tampered, truncated or damaged)"
            )),
        }
    }
}

/// Detects the envelope of a stream by its first bytes; `None` if it is not encrypted.
pub fn detect_envelope(head: &[u8]) -> Option<Envelope> {
    if head.starts_with(b"age-encryption.org/")
        || head.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----")
    {
        Some(Envelope::Age)
    } else if head.starts_with(b"-----BEGIN PGP MESSAGE-----")
        || head.first().is_some_and(|b| b & 0x80 != 0)
    {
        Some(Envelope::OpenPgp)
    } else {
        None
    }
}

/// Wraps `r` in a decrypting reader chosen by content. Reads from the returned reader fail
/// (never yield bytes silently) when authentication fails; callers write the plaintext
/// only to staging until the whole stream has been read.
pub fn decrypt_reader<'a, R: Read + Send + Sync + 'a>(
    r: R,
    ids: &Identities,
) -> std::result::Result<Box<dyn Read + Send + 'a>, DecryptFailure> {
    let mut r = BufReader::with_capacity(64 * 1024, r);
    let head = r
        .fill_buf()
        .map_err(|e| DecryptFailure::Damaged(e.to_string()))?;
    match detect_envelope(head) {
        Some(Envelope::Age) => {
            let armored = head.starts_with(b"-----BEGIN");
            let input = age::armor::ArmoredReader::new(r);
            let dec = age::Decryptor::new_buffered(BufReader::new(input))
                .map_err(|e| DecryptFailure::Damaged(e.to_string()))?;
            let _ = armored;
            let list: Vec<&dyn age::Identity> = ids
                .age
                .iter()
                .map(|i| i.as_ref() as &dyn age::Identity)
                .collect();
            match dec.decrypt(list.into_iter()) {
                Ok(s) => Ok(Box::new(s)),
                Err(age::DecryptError::NoMatchingKeys) => Err(DecryptFailure::NoMatchingIdentity),
                Err(e) => Err(DecryptFailure::Damaged(e.to_string())),
            }
        }
        Some(Envelope::OpenPgp) => {
            let helper = PgpHelper {
                certs: ids.openpgp.clone(),
            };
            let decryptor = guard_openpgp(move || {
                DecryptorBuilder::from_reader(r).and_then(|b| {
                    b.buffer_size(OPENPGP_BUFFER)
                        .with_policy(&OPENPGP_POLICY, None, helper)
                })
            })
            .map_err(DecryptFailure::Damaged)?;
            match decryptor {
                Ok(d) => Ok(Box::new(PgpReader {
                    inner: d,
                    broken: false,
                })),
                Err(e) => {
                    let text = e.to_string();
                    if text.contains("no key to decrypt") || text.contains("No key to decrypt") {
                        Err(DecryptFailure::NoMatchingIdentity)
                    } else {
                        Err(DecryptFailure::Damaged(text))
                    }
                }
            }
        }
        None => Err(DecryptFailure::Damaged(
            "not an age or OpenPGP message".into(),
        )),
    }
}

/// sequoia's decryptor as a plain reader.
struct PgpReader<'a> {
    inner: openpgp::parse::stream::Decryptor<'a, PgpHelper>,
    /// The parser panicked: its state is unknown, every later read fails.
    broken: bool,
}

impl Read for PgpReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.broken {
            return Err(io::Error::new(io::ErrorKind::InvalidData, PARSER_GAVE_UP));
        }
        let inner = &mut self.inner;
        guard_openpgp(move || inner.read(buf)).unwrap_or_else(|m| {
            self.broken = true;
            Err(io::Error::new(io::ErrorKind::InvalidData, m))
        })
    }
}

const PARSER_GAVE_UP: &str = "malformed OpenPGP message (the parser gave up on it)";

std::thread_local! {
    /// How many [`guard_openpgp`] calls this thread is inside (their panics are not printed).
    static QUIET_PANICS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Runs sequoia's parsing of untrusted input, turning a panic into an error. sequoia-openpgp
/// 2.4 panics on some malformed messages (one cut a few bytes into its encrypted container
/// hits `data_consume_hard(..).unwrap()` in `parse.rs`); a damaged backup must be reported
/// as damaged (exit 1), never crash lifeboat. The panic message is kept off stderr; panics
/// anywhere else still print through the previous hook. (Needs `panic = "unwind"`.)
fn guard_openpgp<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if QUIET_PANICS.with(|q| q.get()) == 0 {
                previous(info);
            }
        }));
    });
    QUIET_PANICS.with(|q| q.set(q.get() + 1));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    QUIET_PANICS.with(|q| q.set(q.get() - 1));
    result.map_err(|_| PARSER_GAVE_UP.to_string())
}

struct PgpHelper {
    certs: Vec<openpgp::Cert>,
}

impl VerificationHelper for PgpHelper {
    fn get_certs(&mut self, _ids: &[openpgp::KeyHandle]) -> openpgp::Result<Vec<openpgp::Cert>> {
        Ok(Vec::new())
    }
    fn check(&mut self, _structure: MessageStructure) -> openpgp::Result<()> {
        // Backups are not signed; integrity comes from the MDC/AEAD and the manifest hash.
        Ok(())
    }
}

impl DecryptionHelper for PgpHelper {
    fn decrypt(
        &mut self,
        pkesks: &[openpgp::packet::PKESK],
        _skesks: &[openpgp::packet::SKESK],
        sym_algo: Option<openpgp::types::SymmetricAlgorithm>,
        decrypt: &mut dyn FnMut(
            Option<openpgp::types::SymmetricAlgorithm>,
            &openpgp::crypto::SessionKey,
        ) -> bool,
    ) -> openpgp::Result<Option<openpgp::Cert>> {
        for cert in &self.certs {
            for ka in cert
                .keys()
                .unencrypted_secret()
                .with_policy(&OPENPGP_POLICY, None)
                .supported()
                .for_storage_encryption()
                .for_transport_encryption()
            {
                let Ok(mut pair) = ka.key().clone().into_keypair() else {
                    continue;
                };
                for pkesk in pkesks {
                    let for_us = pkesk.recipient().is_none_or(|r| {
                        r.aliases(openpgp::KeyHandle::from(ka.key().fingerprint()))
                    });
                    if !for_us {
                        continue;
                    }
                    if let Some((algo, sk)) = pkesk.decrypt(&mut pair, sym_algo)
                        && decrypt(algo, &sk)
                    {
                        return Ok(Some(cert.clone()));
                    }
                }
            }
        }
        Err(openpgp::anyhow::anyhow!("no key to decrypt message"))
    }
}

/// Decrypts a small armored (or binary) message fully into memory.
pub fn decrypt_to_vec(
    data: &[u8],
    ids: &Identities,
) -> std::result::Result<Vec<u8>, DecryptFailure> {
    let mut r = decrypt_reader(io::Cursor::new(data.to_vec()), ids)?;
    let mut out = Vec::new();
    r.read_to_end(&mut out)
        .map_err(|e| DecryptFailure::Damaged(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_levels_are_validated() {
        assert_eq!(Compression::new("zstd", None), Ok(Compression::Zstd(3)));
        assert_eq!(Compression::new("gzip", Some(9)), Ok(Compression::Gzip(9)));
        assert!(Compression::new("zstd", Some(0)).is_err());
        assert!(Compression::new("lz4", None).is_err());
    }

    #[test]
    fn decompress_detects_each_codec() {
        let data = b"hello lifeboat ".repeat(1000);
        for c in [Compression::Zstd(3), Compression::Gzip(6)] {
            let mut w = c.writer(Vec::new()).unwrap();
            w.write_all(&data).unwrap();
            let packed = w.finish().unwrap();
            assert_ne!(packed, data);
            let mut out = Vec::new();
            decompress_reader(&packed[..])
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, data);
        }
    }
}
