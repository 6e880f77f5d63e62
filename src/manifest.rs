//! Manifests: one small JSON object per backup, written after its payloads are durable (the
//! commit point). The public part is readable without any key; the private part is
//! encrypted to the same recipients as the payload.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::codec::{DecryptFailure, Envelope, decrypt_to_vec};
use crate::error::{Error, Result};
use crate::keys::Identities;

/// Format tag of manifests written by this version.
pub const FORMAT: &str = "lifeboat-manifest/1";
/// Suffix of manifest object names.
pub const SUFFIX: &str = ".manifest.json";

/// The public manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub backup_id: Uuid,
    pub policy_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub captured_at: DateTime<Utc>,
    /// Per-policy sequence number, one more than the highest in the stores at backup time:
    /// a newer backup with a lower number is an older one put back (rollback).
    pub sequence: u64,
    /// One payload per envelope (age, OpenPGP); each is a complete backup on its own.
    pub payloads: Vec<Payload>,
    /// The private manifest, ASCII-armored, keyed by envelope name.
    pub private: BTreeMap<Envelope, String>,
    /// Detached armored OpenPGP signature over the manifest without this field, by the
    /// backup host's `[signing] key_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// What the private manifest repeats of each payload, binding it to the public part.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PayloadDigest {
    pub object: String,
    pub size: u64,
    pub sha256: String,
}

/// One stored payload object.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Payload {
    pub object: String,
    /// Outermost last: `["tar", "zstd", "age"]`.
    pub chain: Vec<String>,
    pub envelope: Envelope,
    pub size: u64,
    pub sha256: String,
    /// age recipients or OpenPGP fingerprints this payload is encrypted to.
    pub recipients: Vec<String>,
}

/// The private manifest: what is inside, readable only with an identity.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Private {
    pub backup_id: Uuid,
    pub policy_id: Uuid,
    pub policy_name: String,
    pub source_kind: String,
    pub source_path: String,
    pub captured_at: DateTime<Utc>,
    /// Repeats the public manifest's sequence and payloads.
    #[serde(default)]
    pub sequence: u64,
    #[serde(default)]
    pub payloads: Vec<PayloadDigest>,
    /// sha256 of the public manifest without its `private` and `signature` fields
    /// ([`Manifest::public_digest`]): binds every public field, down to recipients and the
    /// format chain.
    #[serde(default)]
    pub public_sha256: String,
    pub lifeboat_version: String,
    /// Size and sha256 of the tar stream inside the payloads.
    pub tar_size: u64,
    pub tar_sha256: String,
    /// Files source: every entry of the tree.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileEntry>,
    /// SQLite source: every table with its row count at capture time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<TableCount>,
}

/// One entry of an archived tree.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileEntry {
    /// Relative path with `/` separators.
    pub path: String,
    /// `file`, `dir` or `symlink`.
    pub kind: String,
    pub mode: u32,
    #[serde(default)]
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// A table and its row count.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TableCount {
    pub name: String,
    pub rows: u64,
}

/// The common stem of a backup's object names: `<uuid>.<YYYYmmddTHHMMSSZ>`.
pub fn stem(backup_id: Uuid, created_at: DateTime<Utc>) -> String {
    format!("{}.{}", backup_id, created_at.format("%Y%m%dT%H%M%SZ"))
}

impl Manifest {
    /// The manifest's object name.
    pub fn object_name(&self) -> String {
        format!("{}{SUFFIX}", stem(self.backup_id, self.created_at))
    }

    /// Parses a manifest object and checks that it is self-consistent: the name it was read
    /// under matches its id and time, and every payload name belongs to the same backup.
    pub fn parse(name: &str, bytes: &[u8]) -> Result<Self> {
        let m: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| Error::Check(format!("manifest {name} is not valid: {e}")))?;
        if m.format != FORMAT {
            return Err(Error::Check(format!(
                "manifest {name} has unknown format {:?}",
                m.format
            )));
        }
        if m.object_name() != name {
            return Err(Error::Check(format!(
                "manifest {name} does not match its own id and time (moved or substituted)"
            )));
        }
        let stem = stem(m.backup_id, m.created_at);
        for p in &m.payloads {
            if !p.object.starts_with(&format!("{stem}.")) || p.object.contains('/') {
                return Err(Error::Check(format!(
                    "manifest {name} names a payload {} of another backup",
                    p.object
                )));
            }
        }
        if m.payloads.is_empty() {
            return Err(Error::Check(format!("manifest {name} lists no payload")));
        }
        Ok(m)
    }

    /// The payloads as the private manifest repeats them.
    pub fn digests(&self) -> Vec<PayloadDigest> {
        self.payloads
            .iter()
            .map(|p| PayloadDigest {
                object: p.object.clone(),
                size: p.size,
                sha256: p.sha256.clone(),
            })
            .collect()
    }

    /// sha256 (hex) of the manifest without `private` and `signature`: what the private
    /// manifest binds.
    pub fn public_digest(&self) -> String {
        let bare = Manifest {
            private: BTreeMap::new(),
            signature: None,
            ..self.clone()
        };
        crate::hash::sha256_of(&bare.to_json()[..])
            .map(|(h, _)| h)
            .unwrap_or_default()
    }

    /// The bytes a signature covers: the manifest without its signature.
    pub fn signed_bytes(&self) -> Vec<u8> {
        Manifest {
            signature: None,
            ..self.clone()
        }
        .to_json()
    }

    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("manifest serializes");
        v.push(b'\n');
        v
    }

    /// The payload to use with these identities (the first whose envelope they can open).
    /// Prefers a payload addressed to one of the identities' own keys, so a wrong age key
    /// given next to the right OpenPGP key still restores from the OpenPGP payload.
    pub fn payload_for(&self, ids: &Identities) -> Result<&Payload> {
        let addressed = |p: &&Payload| p.recipients.iter().any(|r| ids.fingerprints.contains(r));
        self.payloads
            .iter()
            .filter(|p| p.envelope.usable_with(ids))
            .find(addressed)
            .or_else(|| self.payloads.iter().find(|p| p.envelope.usable_with(ids)))
            .ok_or_else(|| {
                Error::Config(format!(
                    "backup {} is encrypted with {}; no identity of that kind was given (--identity or LIFEBOAT_IDENTITY_FILE)",
                    self.backup_id,
                    self.payloads
                        .iter()
                        .map(|p| p.envelope.name())
                        .collect::<Vec<_>>()
                        .join(" and ")
                ))
            })
    }

    /// Decrypts the private part and checks that it repeats this manifest's ids and time.
    pub fn read_private(&self, ids: &Identities) -> Result<Private> {
        let what = format!("the private manifest of backup {}", self.backup_id);
        let mut last = None;
        for (envelope, armored) in &self.private {
            if !envelope.usable_with(ids) {
                continue;
            }
            match decrypt_to_vec(armored.as_bytes(), ids) {
                Ok(bytes) => {
                    let p: Private = serde_json::from_slice(&bytes)
                        .map_err(|e| Error::Check(format!("{what} is not valid: {e}")))?;
                    if p.backup_id != self.backup_id
                        || p.policy_id != self.policy_id
                        || p.captured_at != self.captured_at
                        || p.sequence != self.sequence
                        || p.payloads != self.digests()
                        || p.public_sha256 != self.public_digest()
                    {
                        return Err(Error::Check(format!(
                            "{what} does not match the public manifest (edited or substituted)"
                        )));
                    }
                    return Ok(p);
                }
                // A key the backup names as a recipient that cannot open the private part:
                // the part was altered (e.g. its wrapped key), not the wrong key given.
                Err(DecryptFailure::NoMatchingIdentity) if self.addressed_to(*envelope, ids) => {
                    last = Some(DecryptFailure::Damaged(
                        "it does not open with a key it is addressed to".into(),
                    ));
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last
            .unwrap_or(DecryptFailure::NoMatchingIdentity)
            .into_error(&what))
    }

    /// Whether this backup's `envelope` payload lists one of `ids` among its recipients.
    fn addressed_to(&self, envelope: Envelope, ids: &Identities) -> bool {
        self.payloads
            .iter()
            .filter(|p| p.envelope == envelope)
            .any(|p| p.recipients.iter().any(|r| ids.fingerprints.contains(r)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        let id = Uuid::new_v4();
        let t = "2026-06-09T03:00:00Z".parse().unwrap();
        Manifest {
            format: FORMAT.into(),
            backup_id: id,
            policy_id: Uuid::new_v4(),
            created_at: t,
            captured_at: t,
            sequence: 1,
            signature: None,
            payloads: vec![Payload {
                object: format!("{}.tar.zst.age", stem(id, t)),
                chain: vec!["tar".into(), "zstd".into(), "age".into()],
                envelope: Envelope::Age,
                size: 1,
                sha256: "00".into(),
                recipients: vec![],
            }],
            private: BTreeMap::new(),
        }
    }

    #[test]
    fn round_trips_under_its_own_name() {
        let m = sample();
        let parsed = Manifest::parse(&m.object_name(), &m.to_json()).unwrap();
        assert_eq!(parsed, m);
    }

    #[test]
    fn refuses_a_manifest_under_another_name() {
        let m = sample();
        let other = sample();
        assert!(matches!(
            Manifest::parse(&other.object_name(), &m.to_json()),
            Err(Error::Check(_))
        ));
    }

    #[test]
    fn refuses_a_payload_of_another_backup() {
        let mut m = sample();
        m.payloads[0].object = sample().payloads[0].object.clone();
        assert!(Manifest::parse(&m.object_name(), &m.to_json()).is_err());
    }
}
