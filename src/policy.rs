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
}

/// What to back up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// An SQLite database file.
    Sqlite { path: PathBuf },
    /// A directory tree (wallets, config), archived as PAX tar.
    Files { path: PathBuf },
}

impl SourceSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            SourceSpec::Sqlite { .. } => "sqlite",
            SourceSpec::Files { .. } => "files",
        }
    }
    pub fn path(&self) -> &Path {
        match self {
            SourceSpec::Sqlite { path } | SourceSpec::Files { path } => path,
        }
    }
}

/// Where backups are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    Local { path: PathBuf },
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
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DrillFile {
    scratch: Option<PathBuf>,
    schedule: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceFile {
    kind: Spanned<String>,
    path: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreFile {
    kind: Spanned<String>,
    path: Option<PathBuf>,
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
            return Err(Error::Config(format!(
                "{}: name: policy name {:?} is already used by {}",
                file.display(),
                policy.name,
                other.display()
            )));
        }
        if let Some(other) = ids.insert(policy.id, file.clone()) {
            return Err(Error::Config(format!(
                "{}: id: policy id {} is already used by {}",
                file.display(),
                policy.id,
                other.display()
            )));
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
    let text = std::fs::read_to_string(file).at("cannot read policy", file)?;
    parse(file, &text)
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

        let source = match raw.source.kind.get_ref().as_str() {
            "sqlite" => SourceSpec::Sqlite {
                path: raw.source.path,
            },
            "files" => SourceSpec::Files {
                path: raw.source.path,
            },
            other => {
                return Err(self.err(
                    raw.source.kind.span(),
                    "source.kind",
                    format!("unknown source kind {other:?}; expected \"sqlite\" or \"files\""),
                ));
            }
        };

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
                    stores.push(StoreSpec::Local { path: path.clone() });
                }
                other => {
                    return Err(self.err(
                        s.kind.span(),
                        "store.kind",
                        format!("unknown store kind {other:?}; expected \"local\""),
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
            },
            drill: DrillSettings {
                scratch: raw.drill.scratch,
                schedule: self.schedule(&raw.drill.schedule, "drill.schedule")?,
            },
        })
    }
}

/// 1-based line number of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The dotted key a parse error is about: the field serde names, or the key written on the
/// error's line, prefixed by the enclosing `[table]`.
fn key_for_error(text: &str, span: Range<usize>, message: &str) -> String {
    let start = span.start.min(text.len());
    let table = text[..start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("").trim();
    let named = message
        .split('`')
        .nth(1)
        .filter(|_| message.contains("field `"))
        .map(str::to_string);
    let key = named.or_else(|| {
        line.split_once('=')
            .map(|(k, _)| k.trim().trim_matches('"').to_string())
            .filter(|k| !k.is_empty())
    });
    match (table, key) {
        (Some(t), Some(k)) if !line.starts_with('[') || message.contains("missing field") => {
            format!("{t}.{k}")
        }
        (Some(t), None) => t,
        (_, Some(k)) => k,
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

    #[test]
    fn example_policies_all_validate() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(cwd, dir, "tests run from the package root");
        let policies = load_dir(&dir.join("policies")).unwrap();
        assert!(policies.len() >= 2);
    }
}
