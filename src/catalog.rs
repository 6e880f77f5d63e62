//! The catalog: a local SQLite index of backups, verifications and restores. It is a cache;
//! `lifeboat catalog rebuild` recreates the backup index from the stores alone.

use std::path::Path;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};
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
}
