//! SQLCipher: encrypted SQLite databases (`[source] kind = "sqlite"` with `key_file` or
//! `key_env`).
//!
//! The key is read from its file or environment variable only when a database is opened,
//! kept in memory that is zeroed when dropped, and handed to SQLCipher only as a quoted SQL
//! string literal (`PRAGMA key = '…'`): never in argv (lifeboat's or a child's), never in a
//! message or a log line. SQLCipher's own logging (stderr by default) is switched off, so a
//! failure is the one line lifeboat reports.

use std::fmt;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, ErrorCode, OpenFlags};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::policy::{DbKeySource, SqlCipher};

/// The first 16 bytes of every plain SQLite database file. An SQLCipher file starts with a
/// random salt instead.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// An SQLCipher database key (the passphrase, or `x'…'` for a raw key). Zeroed when
/// dropped; its `Debug` shows nothing of it.
pub struct DbKey(Zeroizing<String>);

impl fmt::Debug for DbKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DbKey(<redacted>)")
    }
}

impl DbKey {
    /// Reads the key from its file (one trailing newline ignored) or environment variable.
    /// Every failure is a configuration error (exit 2) naming the file or variable only.
    pub fn load(source: &DbKeySource) -> Result<Self> {
        let (key, what) = match source {
            DbKeySource::File(path) => {
                let what = format!("database key file {}", path.display());
                let mut file = fs::File::open(path)
                    .map_err(|e| Error::Config(format!("cannot read {what}: {e}")))?;
                let mut bytes = Zeroizing::new(Vec::with_capacity(256));
                file.read_to_end(&mut bytes)
                    .map_err(|e| Error::Config(format!("cannot read {what}: {e}")))?;
                let text = std::str::from_utf8(&bytes)
                    .map_err(|_| Error::Config(format!("{what} is not UTF-8 text")))?;
                let text = text
                    .strip_suffix('\n')
                    .map(|t| t.strip_suffix('\r').unwrap_or(t))
                    .unwrap_or(text);
                (Zeroizing::new(text.to_owned()), what)
            }
            DbKeySource::Env(name) => {
                let what = format!("environment variable {name} (source.key_env)");
                let value = std::env::var(name).map_err(|e| match e {
                    std::env::VarError::NotPresent => {
                        Error::Config(format!("{what} is not set; it must hold the database key"))
                    }
                    std::env::VarError::NotUnicode(_) => {
                        Error::Config(format!("{what} is not UTF-8 text"))
                    }
                })?;
                (Zeroizing::new(value), what)
            }
        };
        if key.is_empty() {
            return Err(Error::Config(format!("{what} holds an empty database key")));
        }
        if key.contains('\0') {
            return Err(Error::Config(format!("{what} holds a NUL byte")));
        }
        Ok(DbKey(key))
    }
}

/// Keys `conn` (a freshly opened connection, before anything reads it): SQLCipher logging
/// off, `PRAGMA key` as a quoted literal, then `PRAGMA cipher_compatibility` if set.
fn apply_key(conn: &Connection, key: &DbKey, compat: Option<u8>) -> rusqlite::Result<()> {
    conn.execute_batch("PRAGMA cipher_log_level = NONE;")?;
    // Room for every quote doubled: the buffer never reallocates, so no stray copy of the
    // key is left in freed memory by this code.
    let mut sql = Zeroizing::new(String::with_capacity(key.0.len() * 2 + 16));
    sql.push_str("PRAGMA key = '");
    for c in key.0.chars() {
        if c == '\'' {
            sql.push('\'');
        }
        sql.push(c);
    }
    sql.push_str("';");
    conn.execute_batch(&sql)?;
    if let Some(n) = compat {
        conn.execute_batch(&format!("PRAGMA cipher_compatibility = {n};"))?;
    }
    Ok(())
}

/// The one error for a key that does not open a database.
pub(crate) fn wrong_key(path: &Path, cipher: &SqlCipher) -> Error {
    let hint = if is_plain(path) {
        " (it is a plain SQLite database: remove key_file/key_env from the policy)"
    } else if cipher.compat.is_none() {
        " (a database written by SQLCipher 3 or older also needs cipher_compat)"
    } else {
        ""
    };
    Error::Config(format!(
        "cannot open {}: wrong key or not a database{hint}",
        path.display()
    ))
}

/// Opens an SQLCipher database with its key and settings, and proves the key fits by
/// reading the schema: a wrong key is a configuration error (exit 2).
pub(crate) fn open(
    path: &Path,
    flags: OpenFlags,
    cipher: &SqlCipher,
    key: &DbKey,
) -> Result<Connection> {
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| Error::Runtime(format!("SQLite {}: {e}", path.display())))?;
    // The statement's own error could quote it: report none of it.
    apply_key(&conn, key, cipher.compat).map_err(|_| {
        Error::Runtime(format!(
            "cannot set the key of SQLCipher database {}",
            path.display()
        ))
    })?;
    conn.busy_timeout(std::time::Duration::from_secs(60))
        .map_err(|e| Error::Runtime(format!("SQLite {}: {e}", path.display())))?;
    match conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
        r.get::<_, i64>(0)
    }) {
        Ok(_) => Ok(conn),
        Err(e) if e.sqlite_error_code() == Some(ErrorCode::NotADatabase) => {
            Err(wrong_key(path, cipher))
        }
        Err(e) => Err(Error::Runtime(format!("SQLite {}: {e}", path.display()))),
    }
}

/// Creates a new, empty SQLCipher database at `path` keyed like the source (same key and
/// settings), ready to be the destination of the online backup API.
pub(crate) fn create(path: &Path, cipher: &SqlCipher, key: &DbKey) -> Result<Connection> {
    let conn = Connection::open(path)
        .map_err(|e| Error::Runtime(format!("SQLite {}: {e}", path.display())))?;
    apply_key(&conn, key, cipher.compat).map_err(|_| {
        Error::Runtime(format!(
            "cannot set the key of SQLCipher database {}",
            path.display()
        ))
    })?;
    Ok(conn)
}

/// Whether `path` is a plain SQLite database file (or empty, which SQLite also opens as
/// one), as opposed to an SQLCipher file, which has no readable header.
pub(crate) fn is_plain(path: &Path) -> bool {
    let mut head = Vec::with_capacity(16);
    fs::File::open(path)
        .and_then(|f| f.take(16).read_to_end(&mut head))
        .is_ok()
        && (head.is_empty() || head == SQLITE_MAGIC)
}

/// Whether `path` looks like an SQLCipher file: readable, at least a header long, and
/// without the plain SQLite header.
pub(crate) fn is_encrypted(path: &Path) -> bool {
    let mut head = [0u8; 16];
    fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && &head != SQLITE_MAGIC
}

/// `PRAGMA cipher_integrity_check` (every page's HMAC): `Ok` when it reports nothing.
/// SQLCipher 1 databases have no HMAC, so there is nothing to check.
pub(crate) fn integrity_check(conn: &Connection, cipher: &SqlCipher) -> Result<()> {
    if cipher.compat == Some(1) {
        return Ok(());
    }
    let problems: Vec<String> = conn
        .prepare("PRAGMA cipher_integrity_check")
        .and_then(|mut st| {
            st.query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<_>>()
        })
        .map_err(|e| {
            Error::Check(format!(
                "restored database fails cipher_integrity_check: {e}"
            ))
        })?;
    match problems.first() {
        None => Ok(()),
        Some(first) => Err(Error::Check(format!(
            "restored database fails cipher_integrity_check: {first}{}",
            if problems.len() > 1 {
                format!(" (and {} more)", problems.len() - 1)
            } else {
                String::new()
            }
        ))),
    }
}

/// Decrypts the SQLCipher database `db` in place (`restore_plaintext = true`): exported with
/// `sqlcipher_export` into a plain database beside it (in the same private staging
/// directory), which then replaces it. The journal mode (WAL or not) is kept.
pub(crate) fn decrypt_in_place(db: &Path, cipher: &SqlCipher, key: &DbKey) -> Result<()> {
    let name = db
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("database.sqlite");
    let plain: PathBuf = db.with_file_name(format!(".{name}.plaintext"));
    let failed = |e: rusqlite::Error| {
        Error::Runtime(format!(
            "cannot export {} to a plain SQLite database: {e}",
            db.display()
        ))
    };
    // With CREATE: ATTACH opens the new plain file with the connection's flags.
    let conn = open(db, OpenFlags::default(), cipher, key)?;
    let wal = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get::<_, String>(0))
        .map_err(failed)?
        .eq_ignore_ascii_case("wal");
    conn.execute_batch(&format!(
        "ATTACH DATABASE {} AS plaintext KEY ''; SELECT sqlcipher_export('plaintext'); DETACH DATABASE plaintext;",
        sql_literal(&plain.to_string_lossy())
    ))
    .map_err(failed)?;
    drop(conn);
    if wal {
        let conn = Connection::open(&plain).map_err(failed)?;
        conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))
            .map_err(failed)?;
    }
    for suffix in ["-wal", "-shm"] {
        let _ = fs::remove_file(format!("{}{suffix}", db.display()));
        let _ = fs::remove_file(format!("{}{suffix}", plain.display()));
    }
    fs::rename(&plain, db).map_err(|e| Error::io("cannot replace", db, e))
}

/// `s` as an SQL string literal.
fn sql_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cipher(compat: Option<u8>) -> SqlCipher {
        SqlCipher {
            key: DbKeySource::Env("UNUSED".into()),
            compat,
            restore_plaintext: false,
        }
    }

    #[test]
    fn key_with_quotes_opens_and_wrong_key_is_a_config_error() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("c.db");
        let key = DbKey(Zeroizing::new("it's a 'quoted' key; --".into()));
        let c = cipher(None);
        let conn = create(&db, &c, &key).unwrap();
        conn.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES ('SECRETROW');")
            .unwrap();
        drop(conn);
        assert!(!is_plain(&db));
        let raw = fs::read(&db).unwrap();
        assert!(!raw.windows(9).any(|w| w == b"SECRETROW"));

        let conn = open(&db, OpenFlags::SQLITE_OPEN_READ_WRITE, &c, &key).unwrap();
        integrity_check(&conn, &c).unwrap();
        drop(conn);

        let wrong = DbKey(Zeroizing::new("it's a 'quoted' key".into()));
        let err = open(&db, OpenFlags::SQLITE_OPEN_READ_WRITE, &c, &wrong).unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::Config);
        let msg = err.to_string();
        assert!(msg.contains("wrong key or not a database"), "{msg}");
        assert!(!msg.contains("quoted"), "{msg}");
    }

    #[test]
    fn a_raw_key_in_x_quote_form_is_used_as_a_raw_key() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("raw.db");
        let c = cipher(None);
        let lower = DbKey(Zeroizing::new(format!("x'{}'", "2d".repeat(32))));
        let conn = create(&db, &c, &lower).unwrap();
        conn.execute_batch("CREATE TABLE t (x);").unwrap();
        drop(conn);
        // The same bytes in upper-case hex open it: the key was decoded, not taken as a
        // passphrase (which would differ).
        let upper = DbKey(Zeroizing::new(format!("x'{}'", "2D".repeat(32))));
        open(&db, OpenFlags::SQLITE_OPEN_READ_WRITE, &c, &upper).unwrap();
    }

    #[test]
    fn decrypt_in_place_gives_a_plain_database() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("c.db");
        let key = DbKey(Zeroizing::new("k".into()));
        let c = cipher(Some(3));
        let conn = create(&db, &c, &key).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; CREATE TABLE t (x); INSERT INTO t VALUES (1), (2);",
        )
        .unwrap();
        drop(conn);
        decrypt_in_place(&db, &c, &key).unwrap();
        assert!(is_plain(&db));
        let conn = Connection::open(&db).unwrap();
        let n: i64 = conn
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!((n, mode.as_str()), (2, "wal"));
    }

    #[test]
    fn key_file_loses_one_trailing_newline_only() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("k");
        fs::write(&f, "pass phrase \n\n").unwrap();
        let k = DbKey::load(&DbKeySource::File(f.clone())).unwrap();
        assert_eq!(k.0.as_str(), "pass phrase \n");
        assert_eq!(format!("{k:?}"), "DbKey(<redacted>)");
        fs::write(&f, "\n").unwrap();
        let e = DbKey::load(&DbKeySource::File(f)).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Config);
        let e = DbKey::load(&DbKeySource::File(dir.path().join("missing"))).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Config);
    }
}
