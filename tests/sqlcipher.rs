//! SQLCipher sources: an encrypted database backed up under a live writer, restored as an
//! SQLCipher file with the same key (or as plain SQLite with `restore_plaintext`), checked
//! by verify and drill; no plaintext of the data in the store, the archive or the restored
//! file; a database written by Debian's `sqlcipher` 3.4.1 CLI (`cipher_compat = 3`); and a
//! wrong or missing key failing in one line with exit 2, writing nothing.
//!
//! SQLCipher 4 databases are made with rusqlite (the same SQLCipher build as lifeboat), the
//! SQLCipher 3 one with the `sqlcipher` CLI, its key fed on stdin (never in argv).

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};

use common::*;
use rusqlite::Connection;

/// The database key: quotes and a semicolon, so quoting mistakes show.
const PASSPHRASE: &str = "correct horse 'battery'; staple";
/// In every row's body: must never be readable outside SQLCipher.
const MARKER: &str = "PLAINTEXT-MARKER-7f3a";

// ---- helpers --------------------------------------------------------------------------

/// Opens `path` keyed with `key` (and `cipher_compatibility`), with a busy timeout.
fn keyed(path: &Path, key: &str, compat: Option<u8>) -> Connection {
    let conn = Connection::open(path).expect("open SQLCipher db");
    conn.execute_batch(&format!(
        "PRAGMA cipher_log_level = NONE; PRAGMA key = '{}';",
        key.replace('\'', "''")
    ))
    .expect("PRAGMA key");
    if let Some(n) = compat {
        conn.execute_batch(&format!("PRAGMA cipher_compatibility = {n};"))
            .expect("cipher_compatibility");
    }
    conn.busy_timeout(std::time::Duration::from_secs(30))
        .expect("busy timeout");
    conn
}

/// One transaction's worth: a row in `items` and `tally.n` counting it, so a consistent
/// snapshot always has `count(items) = tally.n`.
fn commit_one(conn: &Connection, i: usize) {
    let tx = conn.unchecked_transaction().expect("tx");
    tx.execute(
        "INSERT INTO items (body) VALUES (?1)",
        [format!("{MARKER} row {i} {}", "x".repeat(64))],
    )
    .expect("insert");
    tx.execute("UPDATE tally SET n = n + 1", [])
        .expect("update tally");
    tx.commit().expect("commit");
}

/// Creates an SQLCipher 4 database (WAL) with `rows` rows; returns its open connection.
fn create_cipher_db(path: &Path, rows: usize) -> Connection {
    let conn = keyed(path, PASSPHRASE, None);
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .expect("WAL");
    assert_eq!(mode, "wal");
    conn.execute_batch(
        "CREATE TABLE items (id INTEGER PRIMARY KEY, body TEXT NOT NULL);
         CREATE TABLE tally (n INTEGER NOT NULL); INSERT INTO tally VALUES (0);",
    )
    .expect("schema");
    let tx = conn.unchecked_transaction().expect("tx");
    for i in 0..rows {
        tx.execute(
            "INSERT INTO items (body) VALUES (?1)",
            [format!("{MARKER} row {i} {}", "x".repeat(64))],
        )
        .expect("insert");
    }
    tx.execute("UPDATE tally SET n = ?1", [rows as i64])
        .expect("tally");
    tx.commit().expect("commit");
    conn
}

/// (`count(items)`, `tally.n`).
fn counts(conn: &Connection) -> (u64, u64) {
    let items: i64 = conn
        .query_row("SELECT count(*) FROM items", [], |r| r.get(0))
        .expect("count items");
    let tally: i64 = conn
        .query_row("SELECT n FROM tally", [], |r| r.get(0))
        .expect("tally");
    (items as u64, tally as u64)
}

/// (`PRAGMA cipher_integrity_check` rows, `PRAGMA integrity_check`).
fn integrity(conn: &Connection) -> (Vec<String>, String) {
    let cipher: Vec<String> = conn
        .prepare("PRAGMA cipher_integrity_check")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    let plain: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    (cipher, plain)
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Writes a 0600 key file holding `key` and a trailing newline.
fn key_file(sb: &Sandbox, name: &str, key: &str) -> PathBuf {
    let path = sb.path(name);
    fs::write(&path, format!("{key}\n")).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// Writes policy `name` for the SQLite database `db` with `source_keys` added under
/// `[source]` and `tail` (more tables) at the end.
fn cipher_policy(sb: &Sandbox, name: &str, db: &Path, source_keys: &str, tail: &str) {
    let spec = PolicySpec::new(sb, name, "sqlite", db);
    let path_line = format!("path = \"{}\"\n", s(db));
    let text = spec
        .text()
        .replacen(&path_line, &format!("{path_line}{source_keys}\n"), 1)
        + tail;
    assert!(text.contains(source_keys));
    fs::write(sb.policies().join(format!("{name}.toml")), text).unwrap();
}

/// The decrypted, decompressed tar stream of every age payload in the store, by the real
/// `age` and `zstd`.
fn archives_in_store(sb: &Sandbox) -> Vec<Vec<u8>> {
    require_tools(&["age", "zstd"]);
    let mut out = Vec::new();
    for name in dir_names(&sb.store()) {
        if name.ends_with(".tar.zst.age") {
            out.push(shell(
                r#"age -d -i "$1" "$2" | zstd -d"#,
                &[&key(AGE_IDENTITY), &sb.store().join(&name)],
                &[],
            ));
        }
    }
    assert!(!out.is_empty(), "no payload in the store");
    out
}

/// Every byte lifeboat printed and every file in the store, for secrets and plaintext.
fn assert_nowhere(sb: &Sandbox, outputs: &[&Output], needles: &[&str]) {
    let names = if sb.store().exists() {
        dir_names(&sb.store())
    } else {
        Vec::new()
    };
    for name in names {
        let bytes = fs::read(sb.store().join(&name)).unwrap();
        for n in needles {
            assert!(!contains(&bytes, n), "store object {name} contains {n:?}");
        }
    }
    for out in outputs {
        for bytes in [&out.stdout, &out.stderr] {
            for n in needles {
                assert!(
                    !contains(bytes, n),
                    "lifeboat printed {n:?}:\n{}",
                    String::from_utf8_lossy(bytes)
                );
            }
        }
    }
}

/// Runs Debian's `sqlcipher` CLI on `db` with `sql` (which starts with the key) on stdin.
fn sqlcipher_cli(db: &Path, sql: &str) -> String {
    assert!(
        Command::new("sh")
            .args(["-c", "command -v sqlcipher"])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success()),
        "required external tool `sqlcipher` (Debian's SQLCipher 3 CLI) is not installed; \
         run scripts/setup.sh (apt-get install sqlcipher) — this test fails rather than skips"
    );
    let mut child = Command::new("sqlcipher")
        .arg("-batch")
        .arg(db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sqlcipher");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(sql.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "sqlcipher failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The SQL literal of `key` for `PRAGMA key`.
fn quoted(key: &str) -> String {
    format!("'{}'", key.replace('\'', "''"))
}

// ---- tests ----------------------------------------------------------------------------

#[test]
fn sqlcipher_backup_under_a_live_writer_restores_an_encrypted_consistent_copy() {
    let sb = Sandbox::new();
    let db = sb.path("src/wallet.db");
    drop(create_cipher_db(&db, 5_000));
    let keyf = key_file(&sb, "wallet.key", PASSPHRASE);
    cipher_policy(
        &sb,
        "wallet",
        &db,
        &format!("key_file = \"{}\"", s(&keyf)),
        "\n[verify]\ntables = [\"items\", \"tally\"]\nmin_rows = { items = 5000 }\n",
    );

    // The writer commits one row (and its tally) per transaction until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let (started_tx, started_rx) = mpsc::channel();
    let writer = {
        let (db, stop) = (db.clone(), stop.clone());
        std::thread::spawn(move || {
            let conn = keyed(&db, PASSPHRASE, None);
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                commit_one(&conn, i);
                i += 1;
                if i == 100 {
                    started_tx.send(()).unwrap();
                }
            }
            i
        })
    };
    started_rx.recv().expect("writer started committing");
    let reader = keyed(&db, PASSPHRASE, None);
    let before = counts(&reader).0;
    let backup = sb.run(&["backup", "wallet", "--json"]);
    let after = counts(&reader).0;
    stop.store(true, Ordering::SeqCst);
    let written = writer.join().expect("writer thread");
    assert_exit(&backup, 0, "backup wallet");
    assert!(written > 100);
    assert!(
        after > before,
        "the writer must have committed during the backup ({before} → {after})"
    );

    // The archive holds the database encrypted: no plaintext row, no SQLite header.
    for tar in archives_in_store(&sb) {
        assert!(!contains(&tar, MARKER), "the archive holds plaintext rows");
        assert!(
            !contains(&tar, "SQLite format 3"),
            "the archive holds a plain SQLite file"
        );
    }

    let target = sb.path("restored/wallet.db");
    let restore = sb.restore("wallet", &key(AGE_IDENTITY), &target, &[]);
    assert_exit(&restore, 0, "restore wallet");
    assert_eq!(dir_names(&sb.path("restored")), ["wallet.db"]);
    assert_eq!(mode(&target), 0o600);
    let raw = fs::read(&target).unwrap();
    assert!(
        !raw.starts_with(b"SQLite format 3"),
        "restored file is plain"
    );
    assert!(
        !contains(&raw, MARKER),
        "restored file holds plaintext rows"
    );

    // Opened with the same key: integrity and a consistent snapshot.
    let conn = keyed(&target, PASSPHRASE, None);
    assert_eq!(integrity(&conn), (vec![], "ok".to_string()));
    let (items, tally) = counts(&conn);
    assert_eq!(
        items, tally,
        "restored rows are not one consistent snapshot"
    );
    assert!(
        (before..=after).contains(&items),
        "restored {items} rows, expected between {before} and {after}"
    );
    drop(conn);
    // Not without it.
    let nokey = Connection::open(&target).unwrap();
    assert!(
        nokey
            .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r
                .get::<_, i64>(0))
            .is_err()
    );

    let id = key(AGE_IDENTITY);
    let verify = sb.run(&[
        "--identity",
        s(&id),
        "verify",
        "wallet",
        "--level",
        "restore",
        "--json",
    ]);
    assert_exit(&verify, 0, "verify --level restore");
    let v: serde_json::Value = serde_json::from_slice(&verify.stdout).unwrap();
    assert_eq!(v[0]["ok"], true, "{v}");
    let drill = sb.run(&["--identity", s(&id), "drill", "wallet", "--json"]);
    assert_exit(&drill, 0, "drill wallet");
    let d: serde_json::Value = serde_json::from_slice(&drill.stdout).unwrap();
    assert_eq!(d["passed"], true, "{d}");
    assert!(d["failure"].is_null(), "{d}");

    // The key never shows: not in any output, not in the store.
    assert_nowhere(
        &sb,
        &[&backup, &restore, &verify, &drill],
        &[PASSPHRASE, "battery", MARKER],
    );
}

#[test]
fn restore_plaintext_gives_a_plain_sqlite_file_while_the_backup_stays_encrypted() {
    require_tools(&["sqlite3"]);
    let sb = Sandbox::new();
    let db = sb.path("src/shop.db");
    let conn = create_cipher_db(&db, 300);
    let expected = counts(&conn);
    drop(conn);
    // The key from the environment this time.
    cipher_policy(
        &sb,
        "shop",
        &db,
        "key_env = \"SHOP_DB_KEY\"\nrestore_plaintext = true",
        "",
    );
    let run = |args: &[&str]| {
        sb.command()
            .env("SHOP_DB_KEY", PASSPHRASE)
            .args(args)
            .output()
            .unwrap()
    };
    let backup = run(&["backup", "shop"]);
    assert_exit(&backup, 0, "backup shop");
    for tar in archives_in_store(&sb) {
        assert!(!contains(&tar, MARKER), "the archive holds plaintext rows");
    }

    let target = sb.path("restored/shop.db");
    let id = key(AGE_IDENTITY);
    let restore = run(&["--identity", s(&id), "restore", "shop", "--to", s(&target)]);
    assert_exit(&restore, 0, "restore shop");
    assert_eq!(dir_names(&sb.path("restored")), ["shop.db"]);
    assert!(fs::read(&target).unwrap().starts_with(b"SQLite format 3\0"));
    assert_eq!(sqlite3_integrity_check(&target), "ok");
    let plain = Connection::open(&target).unwrap();
    assert_eq!(counts(&plain), expected);
    let mode: String = plain
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal", "the journal mode is kept");

    let verify = run(&["--identity", s(&id), "verify", "shop", "--level", "restore"]);
    assert_exit(&verify, 0, "verify --level restore");
    assert_nowhere(&sb, &[&backup, &restore, &verify], &[PASSPHRASE, MARKER]);

    // Without the variable: one line, exit 2, naming the variable and not the key.
    let out = sb.run(&[
        "--identity",
        s(&id),
        "restore",
        "shop",
        "--to",
        s(&sb.path("again.db")),
    ]);
    let line = assert_one_line_error(&out, 2, "restore without SHOP_DB_KEY");
    assert!(line.contains("SHOP_DB_KEY"), "{line}");
    assert!(!sb.path("again.db").exists());
}

#[test]
fn sqlcipher3_database_from_the_debian_cli_needs_cipher_compat_3() {
    let sb = Sandbox::new();
    let db = sb.path("src/legacy.db");
    let key = "legacy 'v3' key";
    let mut sql = format!(
        "PRAGMA key = {};\nCREATE TABLE items (id INTEGER PRIMARY KEY, body TEXT NOT NULL);\n\
         CREATE TABLE tally (n INTEGER NOT NULL);\nBEGIN;\n",
        quoted(key)
    );
    for i in 0..200 {
        sql += &format!("INSERT INTO items (body) VALUES ('{MARKER} row {i}');\n");
    }
    sql += "INSERT INTO tally VALUES (200);\nCOMMIT;\n";
    sqlcipher_cli(&db, &sql);
    assert!(!fs::read(&db).unwrap().starts_with(b"SQLite format 3"));
    let keyf = key_file(&sb, "legacy.key", key);

    // SQLCipher 4 defaults do not open it: exit 2, one line, with the hint.
    cipher_policy(
        &sb,
        "legacy",
        &db,
        &format!("key_file = \"{}\"", s(&keyf)),
        "",
    );
    let out = sb.run(&["backup", "legacy"]);
    let line = assert_one_line_error(&out, 2, "backup without cipher_compat");
    assert!(line.contains("wrong key or not a database"), "{line}");
    assert!(line.contains("cipher_compat"), "{line}");
    assert!(!sb.store().exists(), "a failed backup wrote to the store");

    cipher_policy(
        &sb,
        "legacy",
        &db,
        &format!("key_file = \"{}\"\ncipher_compat = 3", s(&keyf)),
        "",
    );
    let backup = sb.run(&["backup", "legacy"]);
    assert_exit(&backup, 0, "backup with cipher_compat = 3");
    let target = sb.path("restored/legacy.db");
    let restore = sb.restore("legacy", &common::key(AGE_IDENTITY), &target, &[]);
    assert_exit(&restore, 0, "restore legacy");
    assert!(!contains(&fs::read(&target).unwrap(), MARKER));

    // Still an SQLCipher 3 database: the same old CLI opens it with the key.
    let out = sqlcipher_cli(
        &target,
        &format!(
            "PRAGMA key = {};\nPRAGMA integrity_check;\nSELECT count(*) FROM items;\nSELECT n FROM tally;\n",
            quoted(key)
        ),
    );
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["ok", "200", "200"]
    );
    let conn = keyed(&target, key, Some(3));
    assert_eq!(integrity(&conn), (vec![], "ok".to_string()));
    assert_eq!(counts(&conn), (200, 200));
    assert_nowhere(&sb, &[&backup, &restore], &[key, MARKER]);
}

#[test]
fn a_wrong_or_missing_key_fails_in_one_line_with_exit_2_and_writes_nothing() {
    let sb = Sandbox::new();
    let db = sb.path("src/wallet.db");
    drop(create_cipher_db(&db, 50));
    let wrong = "not the 'right' key";
    let keyf = key_file(&sb, "wallet.key", wrong);
    cipher_policy(
        &sb,
        "wallet",
        &db,
        &format!("key_file = \"{}\"", s(&keyf)),
        "",
    );

    let out = sb.run(&["backup", "wallet"]);
    let line = assert_one_line_error(&out, 2, "backup with a wrong key");
    assert!(
        line.contains(&format!(
            "cannot open {}: wrong key or not a database",
            s(&db)
        )),
        "{line}"
    );
    assert!(!sb.store().exists(), "a failed backup wrote to the store");
    let scratch = sb.state().join("scratch");
    assert!(
        !scratch.exists() || dir_names(&scratch).is_empty(),
        "a failed backup left a snapshot: {:?}",
        dir_names(&scratch)
    );
    assert_nowhere(&sb, &[&out], &[wrong, PASSPHRASE, "right"]);

    // A missing key file: exit 2, one line, naming the file.
    fs::remove_file(&keyf).unwrap();
    let out = sb.run(&["backup", "wallet"]);
    let line = assert_one_line_error(&out, 2, "backup with no key file");
    assert!(line.contains(s(&keyf)), "{line}");

    // A backup made with the right key, restored once the key file is wrong again: the
    // target is never created and nothing is left beside it.
    key_file(&sb, "wallet.key", PASSPHRASE);
    sb.backup("wallet");
    key_file(&sb, "wallet.key", wrong);
    let target = sb.path("restored/wallet.db");
    let out = sb.restore("wallet", &key(AGE_IDENTITY), &target, &[]);
    let line = assert_one_line_error(&out, 2, "restore with a wrong key");
    assert!(line.contains("wrong key or not a database"), "{line}");
    assert!(!target.exists());
    assert!(
        !sb.path("restored").exists() || dir_names(&sb.path("restored")).is_empty(),
        "a failed restore left {:?}",
        dir_names(&sb.path("restored"))
    );
    let id = key(AGE_IDENTITY);
    let out = sb.run(&[
        "--identity",
        s(&id),
        "verify",
        "wallet",
        "--level",
        "restore",
    ]);
    assert_one_line_error(&out, 2, "verify with a wrong key");
    assert_nowhere(&sb, &[&out], &[wrong, PASSPHRASE]);

    // A plain policy on an SQLCipher database says what is missing.
    let plain = sb.path("policies/wallet.toml");
    PolicySpec::new(&sb, "wallet", "sqlite", &db).write(&sb);
    assert!(plain.is_file());
    let out = sb.run(&["backup", "wallet"]);
    let line = assert_one_line_error(&out, 2, "backup of SQLCipher db without a key");
    assert!(line.contains("key_file"), "{line}");
}
