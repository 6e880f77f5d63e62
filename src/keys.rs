//! Keys: recipients (public keys a backup is encrypted to), identities (private keys that
//! decrypt), and key generation. Age X25519 and OpenPGP (interoperable with GnuPG 2.2).
//!
//! A backup host needs only recipients. Identities are read from files given with
//! `--identity` / `LIFEBOAT_IDENTITY_FILE`; their contents never appear in any message.

use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use openpgp::cert::prelude::*;
use openpgp::parse::Parse;
use openpgp::policy::StandardPolicy;
use openpgp::serialize::Serialize;
use openpgp::types::{Features, KeyFlags};
use sequoia_openpgp as openpgp;

use crate::error::{Error, IoContext, Result};

/// The OpenPGP policy used everywhere (a static so decryptors need no borrowed policy).
pub(crate) static OPENPGP_POLICY: StandardPolicy<'static> = StandardPolicy::new();

/// Public keys a backup is encrypted to.
#[derive(Clone, Default)]
pub struct Recipients {
    pub age: Vec<age::x25519::Recipient>,
    pub openpgp: Vec<openpgp::Cert>,
}

impl fmt::Debug for Recipients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recipients")
            .field("age", &self.age_fingerprints())
            .field("openpgp", &self.openpgp_fingerprints())
            .finish()
    }
}

impl Recipients {
    pub fn is_empty(&self) -> bool {
        self.age.is_empty() && self.openpgp.is_empty()
    }

    /// Adds an age X25519 recipient (`age1…`).
    pub fn add_age(&mut self, text: &str) -> Result<(), String> {
        let r = age::x25519::Recipient::from_str(text.trim())
            .map_err(|e| format!("not an age X25519 recipient ({e}); expected \"age1…\""))?;
        self.age.push(r);
        Ok(())
    }

    /// Adds the OpenPGP certificate(s) in `path` (armored or binary); each must have a valid
    /// encryption subkey and must not carry secret key material.
    pub fn add_openpgp_file(&mut self, path: &Path) -> Result<(), String> {
        let parser = CertParser::from_file(path)
            .map_err(|e| format!("cannot read OpenPGP certificate {}: {e}", path.display()))?;
        let mut found = false;
        for cert in parser {
            let cert = cert.map_err(|e| {
                format!("{} is not a valid OpenPGP certificate: {e}", path.display())
            })?;
            if cert.is_tsk() {
                return Err(format!(
                    "{} contains a secret key; give the public certificate only (the backup host needs no private key)",
                    path.display()
                ));
            }
            if encryption_keys(&cert).is_empty() {
                return Err(format!(
                    "OpenPGP certificate {} has no valid encryption subkey",
                    cert.fingerprint()
                ));
            }
            self.openpgp.push(cert);
            found = true;
        }
        if !found {
            return Err(format!("no OpenPGP certificate in {}", path.display()));
        }
        Ok(())
    }

    pub fn age_fingerprints(&self) -> Vec<String> {
        self.age.iter().map(|r| r.to_string()).collect()
    }

    pub fn openpgp_fingerprints(&self) -> Vec<String> {
        self.openpgp
            .iter()
            .map(|c| c.fingerprint().to_hex())
            .collect()
    }
}

/// The encryption-capable keys of a certificate under the standard policy.
pub(crate) fn encryption_keys(
    cert: &openpgp::Cert,
) -> Vec<
    openpgp::cert::amalgamation::key::ValidErasedKeyAmalgamation<
        '_,
        openpgp::packet::key::PublicParts,
    >,
> {
    cert.keys()
        .with_policy(&OPENPGP_POLICY, None)
        .supported()
        .alive()
        .revoked(false)
        .key_flags(
            KeyFlags::empty()
                .set_storage_encryption()
                .set_transport_encryption(),
        )
        .collect()
}

/// Private keys that can decrypt backups.
#[derive(Default)]
pub struct Identities {
    pub age: Vec<Box<dyn age::Identity + Send + Sync>>,
    pub openpgp: Vec<openpgp::Cert>,
    /// The recipient each identity answers to (age recipient, OpenPGP fingerprint), in the
    /// same form as the manifest's `recipients`; used to report which key was proven.
    pub fingerprints: Vec<String>,
}

impl Identities {
    /// Reads identity files: age identity files (as written by `age-keygen` or
    /// `lifeboat keygen --age`) and OpenPGP secret keys (armored or binary, unprotected).
    pub fn load(paths: &[PathBuf]) -> Result<Self> {
        let mut ids = Identities::default();
        for path in paths {
            let bytes = match fs::read(path) {
                // A key that is not there is a usage error (exit 2), like a wrong one.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(Error::Config(format!(
                        "identity file {} does not exist",
                        path.display()
                    )));
                }
                other => other.at("cannot read identity file", path)?,
            };
            if bytes.windows(15).any(|w| w == b"AGE-SECRET-KEY-") {
                let file = age::IdentityFile::from_buffer(&bytes[..]).map_err(|_| {
                    Error::Config(format!(
                        "{} is not a valid age identity file",
                        path.display()
                    ))
                })?;
                let list = file.into_identities().map_err(|_| {
                    Error::Config(format!(
                        "{} holds an age identity lifeboat cannot use (plugin identities are not supported)",
                        path.display()
                    ))
                })?;
                ids.age.extend(list);
                let text = String::from_utf8_lossy(&bytes);
                ids.fingerprints.extend(
                    text.lines()
                        .filter_map(|l| age::x25519::Identity::from_str(l.trim()).ok())
                        .map(|i| i.to_public().to_string()),
                );
                continue;
            }
            let parser = CertParser::from_bytes(&bytes).map_err(|_| not_an_identity(path))?;
            let mut found = false;
            for cert in parser {
                let cert = cert.map_err(|_| not_an_identity(path))?;
                if !cert.is_tsk() {
                    return Err(Error::Config(format!(
                        "{} holds a public OpenPGP certificate, not a secret key",
                        path.display()
                    )));
                }
                if cert
                    .keys()
                    .secret()
                    .any(|k| k.key().secret().is_encrypted())
                {
                    return Err(Error::Config(format!(
                        "the OpenPGP key in {} is passphrase-protected; export an unprotected copy for restores (keep it offline)",
                        path.display()
                    )));
                }
                ids.fingerprints.push(cert.fingerprint().to_hex());
                ids.openpgp.push(cert);
                found = true;
            }
            if !found {
                return Err(not_an_identity(path));
            }
        }
        Ok(ids)
    }

    pub fn is_empty(&self) -> bool {
        self.age.is_empty() && self.openpgp.is_empty()
    }
}

fn not_an_identity(path: &Path) -> Error {
    Error::Config(format!(
        "{} is neither an age identity file nor an OpenPGP secret key",
        path.display()
    ))
}

/// Which kind of key pair to generate.
#[derive(Debug, Clone, Copy)]
pub enum KeyKind {
    Age,
    OpenPgp,
}

/// The files written by [`keygen`].
#[derive(Debug, serde::Serialize)]
pub struct GeneratedKey {
    pub private: PathBuf,
    pub public: PathBuf,
    /// The age recipient or the OpenPGP fingerprint.
    pub recipient: String,
}

/// Generates a new key pair: the private key in `out` (created 0600, never overwritten) and
/// the public key in `out.pub`.
pub fn keygen(
    kind: KeyKind,
    out: &Path,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<GeneratedKey> {
    let public = PathBuf::from(format!("{}.pub", out.display()));
    for p in [out, public.as_path()] {
        if p.exists() {
            return Err(Error::Config(format!(
                "{} already exists; lifeboat never overwrites a key file",
                p.display()
            )));
        }
    }
    let (private_text, public_text, recipient) = match kind {
        KeyKind::Age => {
            let id = age::x25519::Identity::generate();
            let recipient = id.to_public().to_string();
            use age::secrecy::ExposeSecret;
            let private = format!(
                "# created: {}\n# public key: {recipient}\n{}\n",
                now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                id.to_string().expose_secret()
            );
            (
                private.into_bytes(),
                format!("{recipient}\n").into_bytes(),
                recipient,
            )
        }
        KeyKind::OpenPgp => {
            let (cert, _) = CertBuilder::new()
                .add_userid("lifeboat backup key")
                .set_cipher_suite(CipherSuite::Cv25519)
                .set_creation_time(std::time::SystemTime::from(now))
                // GnuPG 2.2 cannot read SEIPDv2 messages: advertise v1 only.
                .set_features(Features::empty().set_seipdv1())
                .map_err(|e| Error::Runtime(format!("cannot build OpenPGP key: {e}")))?
                .add_subkey(
                    KeyFlags::empty()
                        .set_storage_encryption()
                        .set_transport_encryption(),
                    None,
                    None,
                )
                // Lets the same kind of key sign manifests (`[signing]`) and reports.
                .add_signing_subkey()
                .generate()
                .map_err(|e| Error::Runtime(format!("cannot generate OpenPGP key: {e}")))?;
            let mut private = Vec::new();
            cert.as_tsk()
                .armored()
                .serialize(&mut private)
                .map_err(|e| Error::Runtime(format!("cannot serialize OpenPGP key: {e}")))?;
            let mut public = Vec::new();
            cert.armored()
                .serialize(&mut public)
                .map_err(|e| Error::Runtime(format!("cannot serialize OpenPGP key: {e}")))?;
            (private, public, cert.fingerprint().to_hex())
        }
    };
    write_new(out, &private_text, 0o600)?;
    write_new(&public, &public_text, 0o644)?;
    Ok(GeneratedKey {
        private: out.to_path_buf(),
        public,
        recipient,
    })
}

/// Creates `path` with `mode`, failing if it exists, and syncs it.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .at("cannot create", path)?;
    f.write_all(bytes).at("cannot write", path)?;
    f.sync_all().at("cannot sync", path)
}

/// A detached, ASCII-armored OpenPGP signature over `data` with the signing key in
/// `key_file` (an unprotected secret key), verifiable with `gpg --verify SIG DATA`.
pub fn sign_detached(key_file: &Path, data: &[u8]) -> Result<String> {
    use openpgp::serialize::stream::{Armorer, Message, Signer};
    let ids = Identities::load(&[key_file.to_path_buf()])?;
    let keypair = ids
        .openpgp
        .iter()
        .flat_map(|c| {
            c.keys()
                .unencrypted_secret()
                .with_policy(&OPENPGP_POLICY, None)
                .supported()
                .alive()
                .revoked(false)
                .for_signing()
                .filter_map(|k| k.key().clone().into_keypair().ok())
                .collect::<Vec<_>>()
        })
        .next()
        .ok_or_else(|| {
            Error::Config(format!(
                "{} has no usable OpenPGP signing key",
                key_file.display()
            ))
        })?;
    let sign_err = |e: openpgp::anyhow::Error| Error::Runtime(format!("cannot sign: {e}"));
    let mut out = Vec::new();
    {
        let message = Message::new(&mut out);
        let message = Armorer::new(message)
            .kind(openpgp::armor::Kind::Signature)
            .build()
            .map_err(sign_err)?;
        let mut signer = Signer::new(message, keypair)
            .map_err(sign_err)?
            .detached()
            .build()
            .map_err(sign_err)?;
        signer
            .write_all(data)
            .map_err(|e| Error::Runtime(format!("cannot sign: {e}")))?;
        signer.finalize().map_err(sign_err)?;
    }
    String::from_utf8(out).map_err(|_| Error::Runtime("signature is not UTF-8".into()))
}

/// Checks a detached armored signature over `data` against `trusted` certificates.
pub fn verify_detached(
    trusted: &[openpgp::Cert],
    signature: &str,
    data: &[u8],
) -> Result<(), String> {
    use openpgp::parse::stream::{
        DetachedVerifierBuilder, MessageLayer, MessageStructure, VerificationHelper,
    };
    struct Helper<'a>(&'a [openpgp::Cert]);
    impl VerificationHelper for Helper<'_> {
        fn get_certs(&mut self, _: &[openpgp::KeyHandle]) -> openpgp::Result<Vec<openpgp::Cert>> {
            Ok(self.0.to_vec())
        }
        fn check(&mut self, structure: MessageStructure) -> openpgp::Result<()> {
            for layer in structure.into_iter() {
                if let MessageLayer::SignatureGroup { results } = layer
                    && results.iter().any(|r| r.is_ok())
                {
                    return Ok(());
                }
            }
            Err(openpgp::anyhow::anyhow!(
                "no valid signature by a trusted key"
            ))
        }
    }
    let mut verifier = DetachedVerifierBuilder::from_bytes(signature.as_bytes())
        .map_err(|e| format!("unreadable signature: {e}"))?
        .with_policy(&OPENPGP_POLICY, None, Helper(trusted))
        .map_err(|e| e.to_string())?;
    verifier.verify_bytes(data).map_err(|e| e.to_string())
}

/// Reads OpenPGP certificates that may verify signatures (`[signing] trusted`).
pub fn load_signing_certs(path: &Path) -> Result<Vec<openpgp::Cert>, String> {
    let parser = CertParser::from_file(path)
        .map_err(|e| format!("cannot read OpenPGP certificate {}: {e}", path.display()))?;
    let mut certs = Vec::new();
    for cert in parser {
        let cert = cert
            .map_err(|e| format!("{} is not a valid OpenPGP certificate: {e}", path.display()))?;
        let can_sign = cert
            .keys()
            .with_policy(&OPENPGP_POLICY, None)
            .supported()
            .alive()
            .revoked(false)
            .for_signing()
            .next()
            .is_some();
        if !can_sign {
            return Err(format!(
                "certificate {} has no valid signing key",
                cert.fingerprint()
            ));
        }
        certs.push(cert.strip_secret_key_material());
    }
    if certs.is_empty() {
        return Err(format!("no OpenPGP certificate in {}", path.display()));
    }
    Ok(certs)
}
