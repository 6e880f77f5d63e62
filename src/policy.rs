//! Policies: one TOML file per protected asset in `policies/`.
//!
//! Read → parse → validate: [`PolicyFile`] mirrors the TOML strictly (unknown keys are
//! errors), then [`Policy`] is the typed, checked form the rest of the library uses. Every
//! error names the file, the line and the key.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use uuid::Uuid;

use crate::codec::Compression;
use crate::error::{Error, IoContext, Result};
use crate::keys::Recipients;

/// A validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Unique name, used in the CLI and reports, never in object names.
    pub name: String,
    /// Opaque id, used in object names and public manifests.
    pub id: Uuid,
    /// The file this policy was read from.
    pub file: PathBuf,
    pub schedule: Option<String>,
    pub notify: Notify,
    /// IANA time zone of calendar periods in retention rules (`None`: UTC).
    pub timezone: Option<chrono_tz::Tz>,
    pub source: SourceSpec,
    pub stores: Vec<StoreSpec>,
    pub recipients: Recipients,
    pub compression: Compression,
    pub retention: Retention,
    pub objectives: Objectives,
    pub expectations: Expectations,
    pub drill: DrillSettings,
    pub signing: Signing,
}

/// What to back up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// An SQLite database file; `cipher` when it is SQLCipher-encrypted.
    Sqlite {
        path: PathBuf,
        cipher: Option<SqlCipher>,
    },
    /// A directory tree (wallets, config), archived as PAX tar.
    Files { path: PathBuf },
    /// A PostgreSQL server: logical dumps, or base backups plus archived WAL.
    Postgres(PgSource),
}

/// An SQLCipher-encrypted SQLite source (`key_file` or `key_env`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlCipher {
    /// Where the database key is read from when needed (never the key itself).
    pub key: DbKeySource,
    /// `PRAGMA cipher_compatibility` (1–4), for databases written by older SQLCipher versions.
    pub compat: Option<u8>,
    /// Restore a plain SQLite file instead of an SQLCipher database with the same key.
    pub restore_plaintext: bool,
}

/// Where an SQLCipher database key is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbKeySource {
    /// A file holding the passphrase (one trailing newline is ignored).
    File(PathBuf),
    /// An environment variable holding the passphrase.
    Env(String),
}

/// A PostgreSQL source (`kind = "postgres"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgSource {
    /// The server (and, for logical dumps, the database); a password in it is masked in
    /// every message and passed to the tools only through `PGPASSWORD`.
    pub url: crate::source::PgUrl,
    pub mode: PgMode,
    /// Logical only: dump and restore with this many jobs (directory format).
    pub jobs: Option<u32>,
}

/// How a PostgreSQL source is backed up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgMode {
    /// `pg_dump` of one database (custom format, or directory format with `jobs`).
    Logical,
    /// `pg_basebackup` of the cluster, with WAL archived by `lifeboat wal-push`.
    Physical,
}

impl SourceSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            SourceSpec::Sqlite { .. } => "sqlite",
            SourceSpec::Files { .. } => "files",
            SourceSpec::Postgres(_) => "postgres",
        }
    }
    /// What is backed up, for the private manifest: the path, or the URL without password.
    pub fn describe(&self) -> String {
        match self {
            SourceSpec::Postgres(pg) => pg.url.conninfo(),
            SourceSpec::Sqlite { path, .. } | SourceSpec::Files { path } => {
                path.display().to_string()
            }
        }
    }
    /// The file or directory backed up (empty for a PostgreSQL source: see [`Self::describe`]).
    pub fn path(&self) -> &Path {
        match self {
            SourceSpec::Postgres(_) => Path::new(""),
            SourceSpec::Sqlite { path, .. } | SourceSpec::Files { path } => path,
        }
    }
}

/// Where backups are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    /// A directory. `required = false`: a failure to write there is reported, but the
    /// backup still counts.
    Local { path: PathBuf, required: bool },
    /// An S3 bucket (AWS or S3-compatible).
    S3 {
        spec: Box<crate::store::S3Spec>,
        required: bool,
    },
}

impl StoreSpec {
    /// `local` or `s3`.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreSpec::Local { .. } => "local",
            StoreSpec::S3 { .. } => "s3",
        }
    }

    /// Whether a backup fails when this store cannot be written (default: yes).
    pub fn required(&self) -> bool {
        match self {
            StoreSpec::Local { required, .. } | StoreSpec::S3 { required, .. } => *required,
        }
    }
}

/// Retention rules (applied by rotation); absent rules keep everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retention {
    pub keep_last: Option<u32>,
    pub keep_hourly: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
    pub keep_yearly: Option<u32>,
    pub keep_within: Option<Duration>,
    pub max_age: Option<Duration>,
}

/// What a restored copy must contain beyond its own integrity (`[verify]`), checked by
/// restore-level verification and drills.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expectations {
    /// SQLite: tables that must exist.
    pub tables: Vec<String>,
    /// SQLite: minimum row counts per table.
    pub min_rows: Vec<(String, u64)>,
    /// Files: minimum number of regular files in the tree.
    pub files_min: Option<u64>,
    /// SQLite: which check every restore, verification and drill runs on the restored
    /// database (`sqlite_check`).
    pub sqlite_check: SqliteCheck,
}

/// The SQLite check run on a restored database. The restored bytes are already proven equal
/// to the backed-up ones (sha256 bound by the private manifest), so the check is about the
/// source's own health; `quick_check` skips the index-versus-table cross-check, which is
/// most of `integrity_check`'s time (about 3x faster), and so most of a database's RTO.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SqliteCheck {
    /// `PRAGMA integrity_check` (the default).
    #[default]
    Integrity,
    /// `PRAGMA quick_check`.
    Quick,
}

impl SqliteCheck {
    /// The pragma, which is also the policy value: `integrity_check` or `quick_check`.
    pub fn pragma(self) -> &'static str {
        match self {
            SqliteCheck::Integrity => "integrity_check",
            SqliteCheck::Quick => "quick_check",
        }
    }
}

/// Notifications (`[notify]`). The webhook URL is a secret: the policy names only the
/// environment variable that holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notify {
    pub webhook_url_env: Option<String>,
    /// Also notify successful runs (failures and breaches always notify).
    pub on_success: bool,
}

/// Drill settings (`[drill]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DrillSettings {
    /// Where drills restore to (default: the state directory's scratch space).
    pub scratch: Option<PathBuf>,
    /// PostgreSQL logical policies: the server drills restore into a scratch database on
    /// (created and dropped by each drill).
    pub scratch_url: Option<crate::source::PgUrl>,
    /// Cron expression for scheduled drills.
    pub schedule: Option<String>,
}

/// Recovery objectives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Objectives {
    pub rto: Option<Duration>,
    pub rpo: Option<Duration>,
}

// ---- the raw file, exactly as written -------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    name: Spanned<String>,
    id: Spanned<String>,
    schedule: Option<Spanned<String>>,
    timezone: Option<Spanned<String>>,
    source: SourceFile,
    #[serde(rename = "store")]
    stores: Spanned<Vec<StoreFile>>,
    encryption: Spanned<EncryptionFile>,
    #[serde(default)]
    compression: CompressionFile,
    #[serde(default)]
    retention: RetentionFile,
    #[serde(default)]
    objectives: ObjectivesFile,
    #[serde(default)]
    verify: VerifyFile,
    #[serde(default)]
    drill: DrillFile,
    #[serde(default)]
    signing: SigningFile,
    #[serde(default)]
    notify: NotifyFile,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NotifyFile {
    webhook_url_env: Option<Spanned<String>>,
    #[serde(default)]
    on_success: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct VerifyFile {
    #[serde(default)]
    tables: Vec<String>,
    #[serde(default)]
    min_rows: std::collections::BTreeMap<String, u64>,
    files_min: Option<u64>,
    sqlite_check: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DrillFile {
    scratch: Option<PathBuf>,
    scratch_url: Option<Spanned<String>>,
    schedule: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceFile {
    kind: Spanned<String>,
    path: Option<Spanned<PathBuf>>,
    url: Option<Spanned<String>>,
    mode: Option<Spanned<String>>,
    jobs: Option<Spanned<i64>>,
    key_file: Option<Spanned<PathBuf>>,
    key_env: Option<Spanned<String>>,
    cipher_compat: Option<Spanned<i64>>,
    restore_plaintext: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreFile {
    kind: Spanned<String>,
    path: Option<PathBuf>,
    required: Option<bool>,
    bucket: Option<Spanned<String>>,
    prefix: Option<Spanned<String>>,
    region: Option<Spanned<String>>,
    endpoint: Option<Spanned<String>>,
    credentials_env: Option<Spanned<String>>,
    storage_class: Option<Spanned<String>>,
    sse: Option<Spanned<String>>,
    kms_key_id: Option<Spanned<String>>,
    object_lock_days: Option<Spanned<i64>>,
    object_lock_mode: Option<Spanned<String>>,
    max_bandwidth: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EncryptionFile {
    #[serde(default)]
    age_recipients: Vec<Spanned<String>>,
    age_recipients_file: Option<Spanned<PathBuf>>,
    #[serde(default)]
    openpgp_certs: Vec<Spanned<PathBuf>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CompressionFile {
    codec: Option<Spanned<String>>,
    level: Option<Spanned<i32>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RetentionFile {
    keep_last: Option<u32>,
    keep_hourly: Option<u32>,
    keep_daily: Option<u32>,
    keep_weekly: Option<u32>,
    keep_monthly: Option<u32>,
    keep_yearly: Option<u32>,
    keep_within: Option<Spanned<String>>,
    max_age: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ObjectivesFile {
    rto: Option<Spanned<String>>,
    rpo: Option<Spanned<String>>,
}

// ---- loading ----------------------------------------------------------------------------

/// Loads and validates every `*.toml` in `dir`, sorted by file name; names and ids must be
/// unique across the directory.
pub fn load_dir(dir: &Path) -> Result<Vec<Policy>> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        Error::Config(format!(
            "cannot read policy directory {}: {e} (use --policies DIR)",
            dir.display()
        ))
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.at("cannot read policy directory", dir)?.path();
        if path.extension().is_some_and(|e| e == "toml") {
            files.push(path);
        }
    }
    files.sort();
    let mut policies: Vec<Policy> = Vec::new();
    let mut names: HashMap<String, PathBuf> = HashMap::new();
    let mut ids: HashMap<Uuid, PathBuf> = HashMap::new();
    for file in files {
        let policy = load_file(&file)?;
        if let Some(other) = names.insert(policy.name.clone(), file.clone()) {
            return Err(Error::Policy {
                line: top_level_line(&file, "name"),
                file,
                key: "name".into(),
                message: format!(
                    "policy name {:?} is already used by {}",
                    policy.name,
                    other.display()
                ),
            });
        }
        if let Some(other) = ids.insert(policy.id, file.clone()) {
            return Err(Error::Policy {
                line: top_level_line(&file, "id"),
                file,
                key: "id".into(),
                message: format!(
                    "policy id {} is already used by {}",
                    policy.id,
                    other.display()
                ),
            });
        }
        policies.push(policy);
    }
    Ok(policies)
}

/// Loads the policies named in `names` from `dir` (or all of them when `all`).
pub fn select(dir: &Path, names: &[String], all: bool) -> Result<Vec<Policy>> {
    let policies = load_dir(dir)?;
    if all {
        if policies.is_empty() {
            return Err(Error::Config(format!(
                "no policies (*.toml) in {}",
                dir.display()
            )));
        }
        return Ok(policies);
    }
    if names.is_empty() {
        return Err(Error::Config(
            "name at least one policy, or pass --all".into(),
        ));
    }
    names
        .iter()
        .map(|n| {
            policies
                .iter()
                .find(|p| &p.name == n)
                .cloned()
                .ok_or_else(|| Error::Config(format!("no policy named {n:?} in {}", dir.display())))
        })
        .collect()
}

/// Loads and validates one policy file.
pub fn load_file(file: &Path) -> Result<Policy> {
    let bytes = std::fs::read(file).at("cannot read policy", file)?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        Error::Policy {
            file: file.to_path_buf(),
            line: valid.iter().filter(|b| **b == b'\n').count() + 1,
            key: "(document)".into(),
            message: "not UTF-8 text".into(),
        }
    })?;
    parse(file, &text)
}

/// The line of the top-level `key = …` of a policy file (1 when it cannot be found).
fn top_level_line(file: &Path, key: &str) -> usize {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.lines()
        .take_while(|l| !l.trim_start().starts_with('['))
        .position(|l| {
            l.trim_start()
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map_or(1, |i| i + 1)
}

/// Parses and validates policy text; `file` is used in error messages only.
pub fn parse(file: &Path, text: &str) -> Result<Policy> {
    let raw: PolicyFile = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        let message = e.message().trim().to_string();
        let key = key_for_error(text, span.clone(), &message);
        Error::Policy {
            file: file.to_path_buf(),
            line: line_of(text, span.start),
            key,
            message,
        }
    })?;
    Validator { file, text }.validate(raw)
}

struct Validator<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Validator<'_> {
    fn err(&self, span: Range<usize>, key: &str, message: impl Into<String>) -> Error {
        Error::Policy {
            file: self.file.to_path_buf(),
            line: line_of(self.text, span.start),
            key: key.to_string(),
            message: message.into(),
        }
    }

    fn duration(&self, value: &Option<Spanned<String>>, key: &str) -> Result<Option<Duration>> {
        let Some(v) = value else { return Ok(None) };
        match humantime::parse_duration(v.get_ref()) {
            Ok(d) if !d.is_zero() => Ok(Some(d)),
            Ok(_) => Err(self.err(v.span(), key, "duration must be greater than zero")),
            Err(e) => Err(self.err(
                v.span(),
                key,
                format!(
                    "invalid duration {:?} ({e}); use e.g. \"30m\", \"1h\", \"7d\"",
                    v.get_ref()
                ),
            )),
        }
    }

    fn schedule(&self, value: &Option<Spanned<String>>, key: &str) -> Result<Option<String>> {
        let Some(v) = value else { return Ok(None) };
        crate::schedule::parse(v.get_ref()).map_err(|m| self.err(v.span(), key, m))?;
        Ok(Some(v.get_ref().trim().to_string()))
    }

    fn validate(&self, raw: PolicyFile) -> Result<Policy> {
        let name = raw.name.get_ref().trim().to_string();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(self.err(
                raw.name.span(),
                "name",
                "policy name must be non-empty and use only letters, digits, '-', '_' and '.'",
            ));
        }
        let id = Uuid::parse_str(raw.id.get_ref()).map_err(|_| {
            self.err(
                raw.id.span(),
                "id",
                "id must be a UUID (generate one with `uuidgen`); it names objects in the stores",
            )
        })?;

        let source = self.source(&raw.source)?;
        let scratch_url = self.scratch_url(&raw.drill.scratch_url, &source)?;

        if raw.stores.get_ref().is_empty() {
            return Err(self.err(
                raw.stores.span(),
                "store",
                "at least one [[store]] is required",
            ));
        }
        let mut stores = Vec::new();
        for s in raw.stores.get_ref() {
            match s.kind.get_ref().as_str() {
                "local" => {
                    let Some(path) = &s.path else {
                        return Err(self.err(
                            s.kind.span(),
                            "store.path",
                            "a local store needs `path`",
                        ));
                    };
                    self.no_s3_keys(s)?;
                    stores.push(StoreSpec::Local {
                        path: path.clone(),
                        required: s.required.unwrap_or(true),
                    });
                }
                "s3" => stores.push(self.s3_store(s)?),
                other => {
                    return Err(self.err(
                        s.kind.span(),
                        "store.kind",
                        format!("unknown store kind {other:?}; expected \"local\" or \"s3\""),
                    ));
                }
            }
        }

        let enc = raw.encryption.get_ref();
        let mut recipients = Recipients::default();
        for r in &enc.age_recipients {
            recipients
                .add_age(r.get_ref())
                .map_err(|m| self.err(r.span(), "encryption.age_recipients", m))?;
        }
        if let Some(f) = &enc.age_recipients_file {
            let text = std::fs::read_to_string(f.get_ref()).map_err(|e| {
                self.err(
                    f.span(),
                    "encryption.age_recipients_file",
                    format!("cannot read {}: {e}", f.get_ref().display()),
                )
            })?;
            for line in text.lines().map(str::trim) {
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                recipients
                    .add_age(line)
                    .map_err(|m| self.err(f.span(), "encryption.age_recipients_file", m))?;
            }
        }
        for c in &enc.openpgp_certs {
            recipients
                .add_openpgp_file(c.get_ref())
                .map_err(|m| self.err(c.span(), "encryption.openpgp_certs", m))?;
        }
        if recipients.is_empty() {
            return Err(self.err(
                raw.encryption.span(),
                "encryption",
                "at least one recipient is required (age_recipients, age_recipients_file or openpgp_certs)",
            ));
        }

        let codec = raw
            .compression
            .codec
            .as_ref()
            .map(|c| (c.get_ref().as_str(), c.span()))
            .unwrap_or(("zstd", 0..0));
        let level = raw.compression.level.as_ref();
        let compression = Compression::new(codec.0, level.map(|l| *l.get_ref())).map_err(|m| {
            let (span, key) = match (level, codec.0) {
                (Some(l), "zstd" | "gzip") => (l.span(), "compression.level"),
                _ => (codec.1, "compression.codec"),
            };
            self.err(span, key, m)
        })?;

        let r = &raw.retention;
        let retention = Retention {
            keep_last: r.keep_last,
            keep_hourly: r.keep_hourly,
            keep_daily: r.keep_daily,
            keep_weekly: r.keep_weekly,
            keep_monthly: r.keep_monthly,
            keep_yearly: r.keep_yearly,
            keep_within: self.duration(&r.keep_within, "retention.keep_within")?,
            max_age: self.duration(&r.max_age, "retention.max_age")?,
        };
        let timezone = match &raw.timezone {
            None => None,
            Some(tz) => Some(tz.get_ref().parse::<chrono_tz::Tz>().map_err(|_| {
                self.err(
                    tz.span(),
                    "timezone",
                    format!(
                        "unknown time zone {:?}; use an IANA name such as \"UTC\" or \"Europe/Paris\"",
                        tz.get_ref()
                    ),
                )
            })?),
        };
        let sqlite_check = self.sqlite_check(&raw.verify, &source)?;
        let objectives = Objectives {
            rto: self.duration(&raw.objectives.rto, "objectives.rto")?,
            rpo: self.duration(&raw.objectives.rpo, "objectives.rpo")?,
        };

        Ok(Policy {
            name,
            id,
            file: self.file.to_path_buf(),
            schedule: self.schedule(&raw.schedule, "schedule")?,
            notify: Notify {
                webhook_url_env: match &raw.notify.webhook_url_env {
                    Some(v) if v.get_ref().trim().is_empty() => {
                        return Err(self.err(
                            v.span(),
                            "notify.webhook_url_env",
                            "name the environment variable that holds the webhook URL",
                        ));
                    }
                    v => v.as_ref().map(|v| v.get_ref().clone()),
                },
                on_success: raw.notify.on_success,
            },
            timezone,
            source,
            stores,
            recipients,
            compression,
            retention,
            objectives,
            expectations: Expectations {
                tables: raw.verify.tables,
                min_rows: raw.verify.min_rows.into_iter().collect(),
                files_min: raw.verify.files_min,
                sqlite_check,
            },
            drill: DrillSettings {
                scratch: raw.drill.scratch,
                scratch_url,
                schedule: self.schedule(&raw.drill.schedule, "drill.schedule")?,
            },
            signing: self.signing(&raw.signing)?,
        })
    }

    fn sqlite_check(&self, raw: &VerifyFile, source: &SourceSpec) -> Result<SqliteCheck> {
        let Some(v) = &raw.sqlite_check else {
            return Ok(SqliteCheck::default());
        };
        let key = "verify.sqlite_check";
        if !matches!(source, SourceSpec::Sqlite { .. }) {
            return Err(self.err(
                v.span(),
                key,
                format!(
                    "sqlite_check applies to SQLite sources; this is a {} source",
                    source.kind()
                ),
            ));
        }
        match v.get_ref().as_str() {
            "integrity_check" => Ok(SqliteCheck::Integrity),
            "quick_check" => Ok(SqliteCheck::Quick),
            other => Err(self.err(
                v.span(),
                key,
                format!("unknown check {other:?}; expected \"integrity_check\" or \"quick_check\""),
            )),
        }
    }

    fn signing(&self, raw: &SigningFile) -> Result<Signing> {
        let mut trusted = Vec::new();
        for f in &raw.trusted {
            trusted.extend(
                crate::keys::load_signing_certs(f.get_ref())
                    .map_err(|m| self.err(f.span(), "signing.trusted", m))?,
            );
        }
        if let Some(k) = &raw.key_file
            && !k.get_ref().is_file()
        {
            return Err(self.err(
                k.span(),
                "signing.key_file",
                format!("{} does not exist or is not a file", k.get_ref().display()),
            ));
        }
        Ok(Signing {
            key_file: raw.key_file.as_ref().map(|k| k.get_ref().clone()),
            trusted,
        })
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SigningFile {
    key_file: Option<Spanned<PathBuf>>,
    #[serde(default)]
    trusted: Vec<Spanned<PathBuf>>,
}

/// Manifest signatures (`[signing]`): the backup host signs with `key_file` (an OpenPGP
/// secret key with a signing subkey); readers refuse manifests not signed by a `trusted`
/// certificate when any is listed.
#[derive(Debug, Clone, Default)]
pub struct Signing {
    pub key_file: Option<PathBuf>,
    pub trusted: Vec<sequoia_openpgp::Cert>,
}

impl Validator<'_> {
    /// Keys that only S3 stores take are errors on a local store.
    /// Fails on the first of `keys` that is written: it does not belong in that `table`.
    fn refuse_present(
        &self,
        table: &str,
        keys: &[(&str, Option<Range<usize>>)],
        why: &str,
    ) -> Result<()> {
        match keys
            .iter()
            .find_map(|(k, span)| span.clone().map(|s| (k, s)))
        {
            Some((key, span)) => {
                Err(self.err(span, &format!("{table}.{key}"), format!("`{key}` {why}")))
            }
            None => Ok(()),
        }
    }

    fn no_s3_keys(&self, s: &StoreFile) -> Result<()> {
        let keys = [
            ("bucket", s.bucket.as_ref().map(Spanned::span)),
            ("prefix", s.prefix.as_ref().map(Spanned::span)),
            ("region", s.region.as_ref().map(Spanned::span)),
            ("endpoint", s.endpoint.as_ref().map(Spanned::span)),
            (
                "credentials_env",
                s.credentials_env.as_ref().map(Spanned::span),
            ),
            ("storage_class", s.storage_class.as_ref().map(Spanned::span)),
            ("sse", s.sse.as_ref().map(Spanned::span)),
            ("kms_key_id", s.kms_key_id.as_ref().map(Spanned::span)),
            (
                "object_lock_days",
                s.object_lock_days.as_ref().map(Spanned::span),
            ),
            (
                "object_lock_mode",
                s.object_lock_mode.as_ref().map(Spanned::span),
            ),
            ("max_bandwidth", s.max_bandwidth.as_ref().map(Spanned::span)),
        ];
        self.refuse_present("store", &keys, "is for kind = \"s3\" stores only")
    }

    /// Validates a `kind = "s3"` store.
    fn s3_store(&self, s: &StoreFile) -> Result<StoreSpec> {
        use crate::store::s3::{S3Spec, STORAGE_CLASSES, parse_bandwidth};
        if s.path.is_some() {
            return Err(self.err(
                s.kind.span(),
                "store.path",
                "an s3 store has no `path`; use `bucket` and `prefix`",
            ));
        }
        let Some(bucket) = &s.bucket else {
            return Err(self.err(s.kind.span(), "store.bucket", "an s3 store needs `bucket`"));
        };
        let b = bucket.get_ref();
        if !(3..=63).contains(&b.len())
            || !b
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
            || !b.starts_with(|c: char| c.is_ascii_alphanumeric())
            || !b.ends_with(|c: char| c.is_ascii_alphanumeric())
        {
            return Err(self.err(
                bucket.span(),
                "store.bucket",
                format!(
                    "invalid bucket name {b:?}: 3 to 63 lowercase letters, digits, '-' and '.'"
                ),
            ));
        }
        let prefix = s
            .prefix
            .as_ref()
            .map_or(String::new(), |p| p.get_ref().clone());
        if let Some(p) = &s.prefix
            && (prefix.starts_with('/') || prefix.contains("//") || prefix.contains('\\'))
        {
            return Err(self.err(
                p.span(),
                "store.prefix",
                "prefix must not start with '/' nor contain '//' or '\\' (e.g. \"lifeboat/\")",
            ));
        }
        let Some(region) = &s.region else {
            return Err(self.err(
                s.kind.span(),
                "store.region",
                "an s3 store needs `region` (e.g. \"eu-west-1\"; any value for most S3-compatible services)",
            ));
        };
        if region.get_ref().is_empty()
            || !region
                .get_ref()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(self.err(
                region.span(),
                "store.region",
                format!("invalid region {:?}", region.get_ref()),
            ));
        }
        if let Some(e) = &s.endpoint {
            let url = e.get_ref();
            let rest = url
                .strip_prefix("http://")
                .or_else(|| url.strip_prefix("https://"));
            let authority = rest.map(|r| r.split('/').next().unwrap_or(""));
            match authority {
                None | Some("") => {
                    return Err(self.err(
                        e.span(),
                        "store.endpoint",
                        "endpoint must be an http:// or https:// URL, e.g. \"http://127.0.0.1:9000\"",
                    ));
                }
                Some(a) if a.contains('@') => {
                    return Err(self.err(
                        e.span(),
                        "store.endpoint",
                        "endpoint must not contain credentials; use credentials_env",
                    ));
                }
                Some(_) => {}
            }
        }
        if let Some(c) = &s.credentials_env {
            let v = c.get_ref();
            if v.is_empty()
                || !v
                    .chars()
                    .all(|ch| ch.is_ascii_uppercase() || ch.is_ascii_digit() || ch == '_')
            {
                return Err(self.err(
                    c.span(),
                    "store.credentials_env",
                    "credentials_env is the prefix of environment variables (e.g. \"AWS\" for AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY): uppercase letters, digits and '_'",
                ));
            }
        }
        if let Some(c) = &s.storage_class
            && !STORAGE_CLASSES.contains(&c.get_ref().as_str())
        {
            return Err(self.err(
                c.span(),
                "store.storage_class",
                format!(
                    "unsupported storage class {:?}; expected one of {} (archive classes need a restore request before any read)",
                    c.get_ref(),
                    STORAGE_CLASSES.join(", ")
                ),
            ));
        }
        let sse = s.sse.as_ref().map(|v| v.get_ref().clone());
        if let Some(v) = &s.sse
            && !matches!(v.get_ref().as_str(), "AES256" | "aws:kms")
        {
            return Err(self.err(
                v.span(),
                "store.sse",
                format!(
                    "unknown sse {:?}; expected \"AES256\" or \"aws:kms\"",
                    v.get_ref()
                ),
            ));
        }
        if let Some(k) = &s.kms_key_id
            && sse.as_deref() != Some("aws:kms")
        {
            return Err(self.err(
                k.span(),
                "store.kms_key_id",
                "kms_key_id needs sse = \"aws:kms\"",
            ));
        }
        let object_lock_days = match &s.object_lock_days {
            None => None,
            Some(d) if (1..=36_500).contains(d.get_ref()) => Some(*d.get_ref() as u32),
            Some(d) => {
                return Err(self.err(
                    d.span(),
                    "store.object_lock_days",
                    "object_lock_days must be between 1 and 36500",
                ));
            }
        };
        let object_lock_mode = match &s.object_lock_mode {
            None => "COMPLIANCE".to_string(),
            Some(m) if object_lock_days.is_none() => {
                return Err(self.err(
                    m.span(),
                    "store.object_lock_mode",
                    "object_lock_mode needs object_lock_days",
                ));
            }
            Some(m) if matches!(m.get_ref().as_str(), "COMPLIANCE" | "GOVERNANCE") => {
                m.get_ref().clone()
            }
            Some(m) => {
                return Err(self.err(
                    m.span(),
                    "store.object_lock_mode",
                    format!(
                        "unknown object_lock_mode {:?}; expected \"COMPLIANCE\" or \"GOVERNANCE\"",
                        m.get_ref()
                    ),
                ));
            }
        };
        let max_bandwidth = match &s.max_bandwidth {
            None => None,
            Some(b) => Some(
                parse_bandwidth(b.get_ref())
                    .map_err(|m| self.err(b.span(), "store.max_bandwidth", m))?,
            ),
        };
        Ok(StoreSpec::S3 {
            spec: Box::new(S3Spec {
                bucket: b.clone(),
                prefix,
                region: region.get_ref().clone(),
                endpoint: s.endpoint.as_ref().map(|e| e.get_ref().clone()),
                credentials_env: s.credentials_env.as_ref().map(|c| c.get_ref().clone()),
                storage_class: s.storage_class.as_ref().map(|c| c.get_ref().clone()),
                sse,
                kms_key_id: s.kms_key_id.as_ref().map(|k| k.get_ref().clone()),
                object_lock_days,
                object_lock_mode,
                max_bandwidth,
            }),
            required: s.required.unwrap_or(true),
        })
    }
}

impl Validator<'_> {
    /// `[source]`: `kind` with `path` (sqlite, files) or `url`, `mode`, `jobs` (postgres).
    fn source(&self, raw: &SourceFile) -> Result<SourceSpec> {
        let kind = raw.kind.get_ref().as_str();
        if kind != "postgres" {
            let pg_only = [
                ("url", raw.url.as_ref().map(Spanned::span)),
                ("mode", raw.mode.as_ref().map(Spanned::span)),
                ("jobs", raw.jobs.as_ref().map(Spanned::span)),
            ];
            self.refuse_present(
                "source",
                &pg_only,
                "is for kind = \"postgres\" sources only",
            )?;
        }
        if kind != "sqlite" {
            let sqlcipher_only = [
                ("key_file", raw.key_file.as_ref().map(Spanned::span)),
                ("key_env", raw.key_env.as_ref().map(Spanned::span)),
                (
                    "cipher_compat",
                    raw.cipher_compat.as_ref().map(Spanned::span),
                ),
                (
                    "restore_plaintext",
                    raw.restore_plaintext.as_ref().map(Spanned::span),
                ),
            ];
            self.refuse_present(
                "source",
                &sqlcipher_only,
                "is for kind = \"sqlite\" sources (SQLCipher) only",
            )?;
        }
        let path = || match &raw.path {
            Some(p) => Ok(p.get_ref().clone()),
            None => Err(self.err(
                raw.kind.span(),
                "source.path",
                format!("a {kind} source needs `path`"),
            )),
        };
        match kind {
            "sqlite" => Ok(SourceSpec::Sqlite {
                path: path()?,
                cipher: self.sqlcipher(raw)?,
            }),
            "files" => Ok(SourceSpec::Files { path: path()? }),
            "postgres" => {
                if let Some(p) = &raw.path {
                    return Err(self.err(
                        p.span(),
                        "source.path",
                        "a postgres source has no `path`; use `url = \"postgresql://user@host:port/dbname\"`",
                    ));
                }
                let Some(url) = &raw.url else {
                    return Err(self.err(
                        raw.kind.span(),
                        "source.url",
                        "a postgres source needs `url = \"postgresql://user@host:port/dbname\"`",
                    ));
                };
                let parsed = crate::source::PgUrl::parse(url.get_ref())
                    .map_err(|m| self.err(url.span(), "source.url", m))?;
                let mode = match raw.mode.as_ref().map(|m| (m.get_ref().as_str(), m.span())) {
                    None | Some(("logical", _)) => PgMode::Logical,
                    Some(("physical", _)) => PgMode::Physical,
                    Some((other, span)) => {
                        return Err(self.err(
                            span,
                            "source.mode",
                            format!(
                                "unknown mode {other:?}; expected \"logical\" (pg_dump) or \"physical\" (base backup and WAL archive)"
                            ),
                        ));
                    }
                };
                if mode == PgMode::Logical && parsed.dbname().is_none() {
                    return Err(self.err(
                        url.span(),
                        "source.url",
                        "a logical dump needs the database in the URL: postgresql://user@host:port/dbname",
                    ));
                }
                let jobs = match &raw.jobs {
                    None => None,
                    Some(j) if mode == PgMode::Physical => {
                        return Err(self.err(
                            j.span(),
                            "source.jobs",
                            "`jobs` is for mode = \"logical\" (parallel pg_dump and pg_restore)",
                        ));
                    }
                    Some(j) if (1..=64).contains(j.get_ref()) => Some(*j.get_ref() as u32),
                    Some(j) => {
                        return Err(self.err(
                            j.span(),
                            "source.jobs",
                            "jobs must be between 1 and 64",
                        ));
                    }
                };
                Ok(SourceSpec::Postgres(PgSource {
                    url: parsed,
                    mode,
                    jobs,
                }))
            }
            other => Err(self.err(
                raw.kind.span(),
                "source.kind",
                format!(
                    "unknown source kind {other:?}; expected \"sqlite\", \"files\" or \"postgres\""
                ),
            )),
        }
    }

    /// `[source]` of an SQLCipher database: `key_file` or `key_env`, optional
    /// `cipher_compat` (1–4) and `restore_plaintext`. The key itself is read only when needed.
    fn sqlcipher(&self, raw: &SourceFile) -> Result<Option<SqlCipher>> {
        let key = match (&raw.key_file, &raw.key_env) {
            (Some(_), Some(env)) => {
                return Err(self.err(
                    env.span(),
                    "source.key_env",
                    "give either key_file or key_env, not both",
                ));
            }
            (Some(file), None) => {
                if file.get_ref().as_os_str().is_empty() {
                    return Err(self.err(
                        file.span(),
                        "source.key_file",
                        "key_file must name the file holding the database key",
                    ));
                }
                Some(DbKeySource::File(file.get_ref().clone()))
            }
            (None, Some(env)) => {
                let name = env.get_ref();
                let valid = name
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !valid {
                    return Err(self.err(
                        env.span(),
                        "source.key_env",
                        "key_env names the environment variable holding the key (letters, digits and '_'), never the key itself",
                    ));
                }
                Some(DbKeySource::Env(name.clone()))
            }
            (None, None) => None,
        };
        let compat = match &raw.cipher_compat {
            None => None,
            Some(c) if (1..=4).contains(c.get_ref()) => Some(*c.get_ref() as u8),
            Some(c) => {
                return Err(self.err(
                    c.span(),
                    "source.cipher_compat",
                    "cipher_compat must be 1, 2, 3 or 4: the SQLCipher major version that wrote the database",
                ));
            }
        };
        let Some(key) = key else {
            let stray = [
                (
                    "cipher_compat",
                    raw.cipher_compat.as_ref().map(Spanned::span),
                ),
                (
                    "restore_plaintext",
                    raw.restore_plaintext.as_ref().map(Spanned::span),
                ),
            ];
            self.refuse_present(
                "source",
                &stray,
                "is for SQLCipher databases: give key_file or key_env too",
            )?;
            return Ok(None);
        };
        Ok(Some(SqlCipher {
            key,
            compat,
            restore_plaintext: raw.restore_plaintext.as_ref().is_some_and(|r| *r.get_ref()),
        }))
    }

    /// `[drill] scratch_url`: for PostgreSQL logical policies only.
    fn scratch_url(
        &self,
        raw: &Option<Spanned<String>>,
        source: &SourceSpec,
    ) -> Result<Option<crate::source::PgUrl>> {
        let Some(url) = raw else { return Ok(None) };
        if !matches!(
            source,
            SourceSpec::Postgres(PgSource {
                mode: PgMode::Logical,
                ..
            })
        ) {
            return Err(self.err(
                url.span(),
                "drill.scratch_url",
                "scratch_url is for postgres sources with mode = \"logical\" (a physical drill starts its own server)",
            ));
        }
        crate::source::PgUrl::parse(url.get_ref())
            .map(Some)
            .map_err(|m| self.err(url.span(), "drill.scratch_url", m))
    }
}

/// 1-based line number of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text[..char_floor(text, offset)].matches('\n').count() + 1
}

/// `offset` clamped to `text` and moved back to a character boundary.
fn char_floor(text: &str, offset: usize) -> usize {
    let mut at = offset.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// The dotted key a parse error is about: the field serde names, or the key written on the
/// error's line, prefixed by the enclosing `[table]` (the error's own line when it is a
/// table header, e.g. `[store]` where `[[store]]` belongs, or a table given twice).
fn key_for_error(text: &str, span: Range<usize>, message: &str) -> String {
    let start = char_floor(text, span.start);
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("").trim();
    // `[name]`, `[[name]]`, or `[name` left unclosed: `name`.
    let header = |l: &str| {
        l.trim_start_matches('[')
            .split(']')
            .next()
            .unwrap_or("")
            .trim()
            .to_string()
    };
    let named = message
        .split('`')
        .nth(1)
        .filter(|_| message.contains("field `"))
        .map(str::to_string);
    if span.is_empty() && span.start == 0 {
        // No position (a missing top-level key, a limit of the parser): the document.
        return named.unwrap_or_else(|| "(document)".into());
    }
    if line.starts_with('[') {
        let table = header(line);
        return match named {
            Some(k) if message.contains("missing field") && !table.is_empty() => {
                format!("{table}.{k}")
            }
            Some(k) if table.is_empty() => k,
            _ if !table.is_empty() => table,
            _ => "(document)".into(),
        };
    }
    let table = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(header)
        .filter(|t| !t.is_empty());
    let key = named.or_else(|| {
        line.split_once('=')
            .map(|(k, _)| k.trim().trim_matches('"').to_string())
            .filter(|k| !k.is_empty())
    });
    match (table, key) {
        (Some(t), Some(k)) => format!("{t}.{k}"),
        (Some(t), None) => t,
        (None, Some(k)) => k,
        (None, None) => "(document)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGE_PUB: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";

    fn policy(extra: &str) -> String {
        format!(
            "name = \"shop\"\nid = \"3f6c2a9e-9a3c-4c55-9a8e-0d1f5f0b6a11\"\n{extra}\n[source]\nkind = \"sqlite\"\npath = \"x.db\"\n[[store]]\nkind = \"local\"\npath = \"b\"\n[encryption]\nage_recipients = [\"{AGE_PUB}\"]\n"
        )
    }

    fn policy_err(text: &str) -> (usize, String, String) {
        match parse(Path::new("p.toml"), text) {
            Err(Error::Policy {
                line, key, message, ..
            }) => (line, key, message),
            other => panic!("expected a policy error, got {other:?}"),
        }
    }

    #[test]
    fn valid_policy_parses_with_defaults() {
        let p = parse(Path::new("p.toml"), &policy("")).unwrap();
        assert_eq!(p.name, "shop");
        assert_eq!(p.source.kind(), "sqlite");
        assert_eq!(p.compression, Compression::Zstd(3));
        assert_eq!(p.retention, Retention::default());
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let text = policy("").replace("path = \"x.db\"", "path = \"x.db\"\ncolour = 1");
        let (line, key, message) = policy_err(&text);
        assert_eq!(line, 7);
        assert_eq!(key, "source.colour");
        assert!(message.contains("unknown field"), "{message}");
    }

    #[test]
    fn unknown_top_level_key() {
        let (line, key, _) = policy_err(&policy("bogus = true"));
        assert_eq!((line, key.as_str()), (3, "bogus"));
    }

    #[test]
    fn wrong_type_names_key() {
        let text = policy("[compression]\nlevel = \"high\"");
        let text = text.replacen("[compression]\nlevel = \"high\"\n", "", 1)
            + "[compression]\nlevel = \"high\"\n";
        let (line, key, _) = policy_err(&text);
        assert_eq!(key, "compression.level");
        assert_eq!(line, text.lines().count());
    }

    #[test]
    fn missing_required_key() {
        let text = policy("").replace("name = \"shop\"\n", "");
        let (_, key, message) = policy_err(&text);
        assert_eq!(key, "name");
        assert!(message.contains("missing"), "{message}");
    }

    #[test]
    fn timezone_is_an_iana_name() {
        let p = parse(Path::new("p.toml"), &policy("timezone = \"Europe/Paris\"")).unwrap();
        assert_eq!(p.timezone, Some(chrono_tz::Europe::Paris));
        assert_eq!(
            parse(Path::new("p.toml"), &policy("")).unwrap().timezone,
            None
        );
        let (line, key, message) = policy_err(&policy("timezone = \"Mars/Olympus\""));
        assert_eq!((line, key.as_str()), (3, "timezone"));
        assert!(message.contains("Mars/Olympus"), "{message}");
    }

    #[test]
    fn bad_duration_and_level_and_recipient() {
        let (line, key, _) = policy_err(&(policy("") + "[objectives]\nrto = \"soon\"\n"));
        assert_eq!((line, key.as_str()), (13, "objectives.rto"));
        let (_, key, _) =
            policy_err(&(policy("") + "[compression]\ncodec = \"gzip\"\nlevel = 12\n"));
        assert_eq!(key, "compression.level");
        let (line, key, _) = policy_err(&policy("").replace(AGE_PUB, "age1nope"));
        assert_eq!((line, key.as_str()), (11, "encryption.age_recipients"));
    }

    fn pg_policy(source: &str, extra: &str) -> String {
        format!(
            "name = \"pg\"\nid = \"3f6c2a9e-9a3c-4c55-9a8e-0d1f5f0b6a11\"\n[source]\nkind = \"postgres\"\n{source}\n[[store]]\nkind = \"local\"\npath = \"b\"\n[encryption]\nage_recipients = [\"{AGE_PUB}\"]\n{extra}"
        )
    }

    #[test]
    fn postgres_source_keys_validate() {
        let p = parse(
            Path::new("p.toml"),
            &pg_policy(
                "url = \"postgresql://app:s3cret@db:5432/shop\"\njobs = 4",
                "[drill]\nscratch_url = \"postgresql://postgres@scratch/postgres\"\n",
            ),
        )
        .unwrap();
        let SourceSpec::Postgres(pg) = &p.source else {
            panic!("not a postgres source: {:?}", p.source)
        };
        assert_eq!((pg.mode, pg.jobs), (PgMode::Logical, Some(4)));
        assert_eq!(pg.url.dbname().as_deref(), Some("shop"));
        assert!(p.drill.scratch_url.is_some());
        assert!(
            !format!("{p:?}").contains("s3cret"),
            "Debug shows a password"
        );

        let phys = parse(
            Path::new("p.toml"),
            &pg_policy("url = \"postgresql://backup@db\"\nmode = \"physical\"", ""),
        )
        .unwrap();
        assert!(matches!(
            phys.source,
            SourceSpec::Postgres(PgSource {
                mode: PgMode::Physical,
                jobs: None,
                ..
            })
        ));
    }

    #[test]
    fn postgres_source_errors_name_file_line_and_key() {
        let cases = [
            (pg_policy("", ""), 4, "source.url"),
            (
                pg_policy("url = \"mysql://u:pw@h/db\"", ""),
                5,
                "source.url",
            ),
            (pg_policy("url = \"postgresql://h/\"", ""), 5, "source.url"),
            (pg_policy("path = \"x.db\"", ""), 5, "source.path"),
            (
                pg_policy("url = \"postgresql://h/db\"\nmode = \"snapshot\"", ""),
                6,
                "source.mode",
            ),
            (
                pg_policy("url = \"postgresql://h/db\"\njobs = 0", ""),
                6,
                "source.jobs",
            ),
            (
                pg_policy(
                    "url = \"postgresql://h/db\"\nmode = \"physical\"\njobs = 2",
                    "",
                ),
                7,
                "source.jobs",
            ),
            (
                pg_policy(
                    "url = \"postgresql://h/db\"\nmode = \"physical\"",
                    "[drill]\nscratch_url = \"postgresql://h/db\"\n",
                ),
                13,
                "drill.scratch_url",
            ),
            (
                pg_policy(
                    "url = \"postgresql://h/db\"",
                    "[drill]\nscratch_url = \"http://h\"\n",
                ),
                12,
                "drill.scratch_url",
            ),
            (
                policy("").replace(
                    "path = \"x.db\"",
                    "path = \"x.db\"\nurl = \"postgresql://h/d\"",
                ),
                7,
                "source.url",
            ),
            (
                policy("").replace("path = \"x.db\"\n", ""),
                5,
                "source.path",
            ),
        ];
        for (text, want_line, want_key) in cases {
            let (line, key, message) = policy_err(&text);
            assert_eq!(
                (line, key.as_str()),
                (want_line, want_key),
                "{message}\n{text}"
            );
            assert!(!message.contains("pw@"), "{message}");
        }
    }

    #[test]
    fn sqlcipher_source_keys_validate() {
        let with =
            |keys: &str| policy("").replace("path = \"x.db\"", &format!("path = \"x.db\"\n{keys}"));
        let p = parse(Path::new("p.toml"), &policy("")).unwrap();
        assert!(matches!(p.source, SourceSpec::Sqlite { cipher: None, .. }));
        let p = parse(
            Path::new("p.toml"),
            &with("key_file = \"db.key\"\ncipher_compat = 3\nrestore_plaintext = true"),
        )
        .unwrap();
        let SourceSpec::Sqlite {
            cipher: Some(c), ..
        } = &p.source
        else {
            panic!("no SQLCipher settings: {:?}", p.source)
        };
        assert_eq!(c.key, DbKeySource::File(PathBuf::from("db.key")));
        assert_eq!((c.compat, c.restore_plaintext), (Some(3), true));
        let p = parse(Path::new("p.toml"), &with("key_env = \"SHOP_DB_KEY\"")).unwrap();
        assert!(matches!(
            &p.source,
            SourceSpec::Sqlite { cipher: Some(SqlCipher { key: DbKeySource::Env(v), compat: None, restore_plaintext: false }), .. } if v == "SHOP_DB_KEY"
        ));
    }

    #[test]
    fn sqlcipher_source_errors_name_line_and_key() {
        let with =
            |keys: &str| policy("").replace("path = \"x.db\"", &format!("path = \"x.db\"\n{keys}"));
        let cases = [
            (
                with("key_file = \"k\"\nkey_env = \"K\""),
                8,
                "source.key_env",
            ),
            (with("key_env = \"it's the key\""), 7, "source.key_env"),
            (
                with("key_file = \"k\"\ncipher_compat = 5"),
                8,
                "source.cipher_compat",
            ),
            (with("cipher_compat = 3"), 7, "source.cipher_compat"),
            (
                with("restore_plaintext = true"),
                7,
                "source.restore_plaintext",
            ),
            (with("key_file = \"\""), 7, "source.key_file"),
            (
                policy("")
                    .replace("kind = \"sqlite\"", "kind = \"files\"")
                    .replace("path = \"x.db\"", "path = \"x\"\nkey_file = \"k\""),
                7,
                "source.key_file",
            ),
        ];
        for (text, want_line, want_key) in cases {
            let (line, key, message) = policy_err(&text);
            assert_eq!(
                (line, key.as_str()),
                (want_line, want_key),
                "{message}\n{text}"
            );
        }
    }

    #[test]
    fn example_policies_all_validate() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(cwd, dir, "tests run from the package root");
        let policies = load_dir(&dir.join("policies")).unwrap();
        assert!(policies.len() >= 2);
    }
}
