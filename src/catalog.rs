//! The catalog: a local SQLite index of backups, verifications and restores. It is a cache;
//! `lifeboat catalog rebuild` recreates the backup index from the stores alone.

use std::path::Path;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::state::StateDir;

pub struct Catalog {
    conn: Connection,
}

/// A backup as listed by `lifeboat list`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BackupRow {
    pub policy: String,
    pub id: String,
    pub created_at: DateTime<Utc>,
    pub captured_at: DateTime<Utc>,
    pub size: u64,
    pub stores: Vec<String>,
    pub objects: Vec<String>,
    /// The newest verification result, if any: `"<level> ok"` or `"<level> failed"`.
    pub last_verification: Option<String>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS backups (
    backup_id   TEXT PRIMARY KEY,
    policy_id   TEXT NOT NULL,
    policy_name TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    captured_at TEXT NOT NULL,
    size        INTEGER NOT NULL,
    stores      TEXT NOT NULL,
    manifest    TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS verifications (
    id          INTEGER PRIMARY KEY,
    backup_id   TEXT NOT NULL,
    policy_name TEXT NOT NULL,
    at          TEXT NOT NULL,
    level       TEXT NOT NULL,
    ok          INTEGER NOT NULL,
    detail      TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS restores (
    id          INTEGER PRIMARY KEY,
    backup_id   TEXT NOT NULL,
    policy_name TEXT NOT NULL,
    at          TEXT NOT NULL,
    target      TEXT NOT NULL,
    seconds     REAL NOT NULL,
    ok          INTEGER NOT NULL,
    detail      TEXT NOT NULL
);
";

fn db_err(path: &Path) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |e| Error::Runtime(format!("catalog {}: {e}", path.display()))
}

impl Catalog {
    pub fn open(state: &StateDir) -> Result<Self> {
        state.ensure()?;
        let path = state.catalog_path();
        let conn = Connection::open(&path).map_err(db_err(&path))?;
        conn.busy_timeout(std::time::Duration::from_secs(30))
            .map_err(db_err(&path))?;
        conn.execute_batch(SCHEMA).map_err(db_err(&path))?;
        conn.execute_batch(HISTORY_SCHEMA).map_err(db_err(&path))?;
        Ok(Catalog { conn })
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> Error {
        |e| Error::Runtime(format!("catalog: {e}"))
    }

    /// Records (or refreshes) a backup found in `stores`.
    pub fn record_backup(&self, policy_name: &str, m: &Manifest, stores: &[String]) -> Result<()> {
        let size: u64 = m.payloads.iter().map(|p| p.size).sum();
        self.conn
            .execute(
                "INSERT OR REPLACE INTO backups VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    m.backup_id.to_string(),
                    m.policy_id.to_string(),
                    policy_name,
                    m.created_at.to_rfc3339(),
                    m.captured_at.to_rfc3339(),
                    size as i64,
                    serde_json::to_string(stores).expect("json"),
                    String::from_utf8(m.to_json()).expect("json is utf-8"),
                ],
            )
            .map_err(self.err())?;
        Ok(())
    }

    pub fn record_verification(
        &self,
        policy_name: &str,
        backup_id: &str,
        at: DateTime<Utc>,
        level: &str,
        ok: bool,
        detail: &str,
    ) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO verifications (backup_id, policy_name, at, level, ok, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![backup_id, policy_name, at.to_rfc3339(), level, ok, detail],
            )
            .map_err(self.err())?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub fn record_restore(
        &self,
        policy_name: &str,
        backup_id: &str,
        at: DateTime<Utc>,
        target: &str,
        seconds: f64,
        ok: bool,
        detail: &str,
    ) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO restores (backup_id, policy_name, at, target, seconds, ok, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![backup_id, policy_name, at.to_rfc3339(), target, seconds, ok, detail],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Backups, newest first, optionally of one policy.
    pub fn list(&self, policy_name: Option<&str>) -> Result<Vec<BackupRow>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT b.policy_name, b.backup_id, b.created_at, b.captured_at, b.size, b.stores, b.manifest,
                        (SELECT v.level || CASE v.ok WHEN 1 THEN ' ok' ELSE ' failed' END
                           FROM verifications v WHERE v.backup_id = b.backup_id ORDER BY v.id DESC LIMIT 1)
                   FROM backups b WHERE ?1 IS NULL OR b.policy_name = ?1
                  ORDER BY b.created_at DESC, b.backup_id",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map(params![policy_name], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, Option<String>>(7)?,
                ))
            })
            .map_err(self.err())?;
        let mut out = Vec::new();
        for row in rows {
            let (policy, id, created, captured, size, stores, manifest, last) =
                row.map_err(self.err())?;
            let time = |s: &str| {
                DateTime::parse_from_rfc3339(s)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|e| Error::Runtime(format!("catalog: bad time {s:?}: {e}")))
            };
            let m: Manifest = serde_json::from_str(&manifest)
                .map_err(|e| Error::Runtime(format!("catalog: bad manifest: {e}")))?;
            out.push(BackupRow {
                policy,
                id,
                created_at: time(&created)?,
                captured_at: time(&captured)?,
                size: size as u64,
                stores: serde_json::from_str(&stores).unwrap_or_default(),
                objects: m.payloads.iter().map(|p| p.object.clone()).collect(),
                last_verification: last,
            });
        }
        Ok(out)
    }

    /// Forgets every backup (before a rebuild); verification and restore history is kept.
    pub fn clear_backups(&self) -> Result<()> {
        self.conn
            .execute("DELETE FROM backups", [])
            .map_err(self.err())?;
        Ok(())
    }

    /// Forgets one backup (after rotation deleted it from the stores); its verification,
    /// restore and drill history is kept.
    pub fn forget_backup(&self, backup_id: &str) -> Result<()> {
        self.conn
            .execute(
                "DELETE FROM backups WHERE backup_id = ?1",
                params![backup_id],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// The id of the newest backup of `policy_name` in the catalog that is proven: its most
    /// recent check, a verification or a drill, passed. Rotation always keeps it. (Drills are
    /// counted here as they are recorded in the `drills` table; any new kind of proof is to
    /// be added to this query.)
    pub fn newest_proven_backup(&self, policy_name: &str) -> Result<Option<String>> {
        self.conn
            .query_row(
                "SELECT b.backup_id FROM backups b
                  WHERE b.policy_name = ?1
                    AND (SELECT ok FROM (
                            SELECT v.ok AS ok, v.at AS t, v.id AS n FROM verifications v
                             WHERE v.backup_id = b.backup_id
                            UNION ALL
                            SELECT d.passed, d.started_at, d.id FROM drills d
                             WHERE d.backup_id = b.backup_id)
                          ORDER BY t DESC, n DESC LIMIT 1) = 1
                  ORDER BY b.created_at DESC, b.backup_id DESC LIMIT 1",
                params![policy_name],
                |r| r.get::<_, String>(0),
            )
            .optional()
            .map_err(self.err())
    }
}

/// History kept for reports: every backup attempt, every drill, every key proven.
const HISTORY_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS backup_runs (
    id          INTEGER PRIMARY KEY,
    policy_name TEXT NOT NULL,
    at          TEXT NOT NULL,
    ok          INTEGER NOT NULL,
    backup_id   TEXT,
    captured_at TEXT,
    size        INTEGER,
    seconds     REAL NOT NULL,
    error       TEXT
);
CREATE TABLE IF NOT EXISTS drills (
    id          INTEGER PRIMARY KEY,
    policy_name TEXT NOT NULL,
    backup_id   TEXT,
    started_at  TEXT NOT NULL,
    passed      INTEGER NOT NULL,
    result      TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS key_proofs (
    id          INTEGER PRIMARY KEY,
    policy_name TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    backup_id   TEXT NOT NULL,
    at          TEXT NOT NULL,
    ok          INTEGER NOT NULL
);
";

/// One backup attempt, successful or not.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct BackupRun {
    pub policy: String,
    pub at: DateTime<Utc>,
    pub ok: bool,
    pub backup_id: Option<String>,
    pub captured_at: Option<DateTime<Utc>>,
    pub size: Option<u64>,
    pub seconds: f64,
    pub error: Option<String>,
}

/// A recipient proven (or not) to decrypt a backup.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct KeyProof {
    pub policy: String,
    pub fingerprint: String,
    pub backup_id: String,
    pub at: DateTime<Utc>,
    pub ok: bool,
}

fn parse_time(s: &str) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
        })
}

impl Catalog {
    pub fn record_backup_run(&self, run: &BackupRun) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO backup_runs (policy_name, at, ok, backup_id, captured_at, size, seconds, error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    run.policy,
                    run.at.to_rfc3339(),
                    run.ok,
                    run.backup_id,
                    run.captured_at.map(|t| t.to_rfc3339()),
                    run.size.map(|s| s as i64),
                    run.seconds,
                    run.error
                ],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Backup attempts of `policy_name` at or after `since`, oldest first.
    pub fn backup_runs(&self, policy_name: &str, since: DateTime<Utc>) -> Result<Vec<BackupRun>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT policy_name, at, ok, backup_id, captured_at, size, seconds, error FROM backup_runs
                  WHERE policy_name = ?1 AND at >= ?2 ORDER BY at, id",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map(params![policy_name, since.to_rfc3339()], |r| {
                Ok(BackupRun {
                    policy: r.get(0)?,
                    at: parse_time(&r.get::<_, String>(1)?)?,
                    ok: r.get(2)?,
                    backup_id: r.get(3)?,
                    captured_at: r
                        .get::<_, Option<String>>(4)?
                        .map(|s| parse_time(&s))
                        .transpose()?,
                    size: r.get::<_, Option<i64>>(5)?.map(|s| s as u64),
                    seconds: r.get(6)?,
                    error: r.get(7)?,
                })
            })
            .map_err(self.err())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.err())
    }

    /// Records a drill; `result` is the drill's JSON as printed by `drill --json`.
    pub fn record_drill(
        &self,
        policy_name: &str,
        backup_id: Option<&str>,
        started_at: DateTime<Utc>,
        passed: bool,
        result: &serde_json::Value,
    ) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO drills (policy_name, backup_id, started_at, passed, result) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![policy_name, backup_id, started_at.to_rfc3339(), passed, result.to_string()],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Drills of `policy_name` started at or after `since`, oldest first, as recorded JSON.
    pub fn drills(
        &self,
        policy_name: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<serde_json::Value>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT result FROM drills WHERE policy_name = ?1 AND started_at >= ?2 ORDER BY started_at, id",
            )
            .map_err(self.err())?;
        let rows = stmt
            .query_map(params![policy_name, since.to_rfc3339()], |r| {
                r.get::<_, String>(0)
            })
            .map_err(self.err())?;
        let mut out = Vec::new();
        for row in rows {
            let text = row.map_err(self.err())?;
            out.push(
                serde_json::from_str(&text)
                    .map_err(|e| Error::Runtime(format!("catalog: bad drill record: {e}")))?,
            );
        }
        Ok(out)
    }

    pub fn record_key_proof(&self, proof: &KeyProof) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO key_proofs (policy_name, fingerprint, backup_id, at, ok) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![proof.policy, proof.fingerprint, proof.backup_id, proof.at.to_rfc3339(), proof.ok],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// When `fingerprint` was last proven to decrypt a backup of `policy_name`.
    pub fn last_key_proof(
        &self,
        policy_name: &str,
        fingerprint: &str,
    ) -> Result<Option<DateTime<Utc>>> {
        let at: Option<String> = self
            .conn
            .query_row(
                "SELECT max(at) FROM key_proofs WHERE policy_name = ?1 AND fingerprint = ?2 AND ok = 1",
                params![policy_name, fingerprint],
                |r| r.get(0),
            )
            .map_err(self.err())?;
        at.map(|s| parse_time(&s).map_err(self.err())).transpose()
    }
}
