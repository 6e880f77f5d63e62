//! Backup and restore round trips through the CLI: SQLite under a concurrent writer, wallet
//! trees with their modes and links, overwrite protection, and catalog rebuild.

mod common;

use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};

use common::*;

#[test]
fn sqlite_backup_while_a_writer_commits_restores_a_consistent_snapshot() {
    require_tools(&["sqlite3"]);
    let sb = Sandbox::new();
    let db = sb.path("src/shop.db");
    let conn = create_db(&db, 20_000, "MARK");
    let initial = row_count(&conn);
    drop(conn);
    PolicySpec::new(&sb, "shop", "sqlite", &db).write(&sb);

    // The writer commits one row per transaction until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let (started_tx, started_rx) = mpsc::channel();
    let writer = {
        let (db, stop) = (db.clone(), stop.clone());
        std::thread::spawn(move || {
            let conn = rusqlite::Connection::open(&db).expect("writer opens db");
            conn.busy_timeout(std::time::Duration::from_secs(30))
                .unwrap();
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                insert_row(&conn, i, "MARK");
                i += 1;
                if i == 100 {
                    started_tx.send(()).unwrap();
                }
            }
            i
        })
    };
    started_rx.recv().expect("writer started committing");

    // Rows only grow, so the snapshot lies between what a reader sees just before and just
    // after the backup.
    let reader = rusqlite::Connection::open(&db).unwrap();
    let before = row_count(&reader);
    sb.backup("shop");
    let after = row_count(&reader);
    stop.store(true, Ordering::SeqCst);
    let written = writer.join().expect("writer thread");
    assert!(before > initial && written > 100);
    assert!(
        after > before,
        "the writer must have committed during the backup ({before} → {after})"
    );

    let target = sb.path("restored/shop.db");
    let out = sb.restore("shop", &key(AGE_IDENTITY), &target, &[]);
    assert_exit(&out, 0, "restore shop");
    let (verdict, rows) = inspect_db(&target);
    assert_eq!(verdict, "ok");
    assert!(
        (before..=after).contains(&rows),
        "restored {rows} rows, expected between {before} and {after}"
    );
    assert_eq!(mode(&target), 0o600, "restored database must be 0600");
    assert_eq!(sqlite3_integrity_check(&target), "ok");
}

#[test]
fn wallet_tree_restores_byte_identical_with_modes_links_and_long_names() {
    let sb = Sandbox::new();
    let wallet = sb.path("src/wallet");
    make_wallet(&wallet, "MARK");
    // A second link whose target is longer than a ustar link name (PAX linkpath).
    std::os::unix::fs::symlink(long_wallet_path(), wallet.join("long.link")).unwrap();
    PolicySpec::new(&sb, "wallet", "files", &wallet).write(&sb);
    sb.backup("wallet");

    let target = sb.path("restored/wallet");
    let out = sb.restore("wallet", &key(AGE_IDENTITY), &target, &[]);
    assert_exit(&out, 0, "restore wallet");

    assert_same_tree(&wallet, &target);
    assert_eq!(mode(&target), 0o700, "restored root must be 0700");
    assert_eq!(mode(&target.join("wallet.toml")), 0o640);
    assert_eq!(mode(&target.join("keys")), 0o700);
    assert_eq!(
        fs::read_link(target.join("current.key")).unwrap(),
        std::path::Path::new("keys/main.key")
    );
    assert!(target.join(long_wallet_path()).is_file());
    assert!(dir_names(&target.join("empty")).is_empty());
}

#[test]
fn existing_tree_target_is_kept_without_force_and_replaced_with_force() {
    let sb = Sandbox::new();
    let wallet = sb.path("src/wallet");
    make_wallet(&wallet, "MARK");
    PolicySpec::new(&sb, "wallet", "files", &wallet).write(&sb);
    sb.backup("wallet");

    let target = sb.path("restored/wallet");
    fs::create_dir_all(&target).unwrap();
    fs::write(target.join("old.txt"), "old data").unwrap();

    let out = sb.restore("wallet", &key(AGE_IDENTITY), &target, &[]);
    let line = assert_one_line_error(&out, 2, "restore onto an existing target");
    assert!(line.contains("--force"), "{line}");
    assert_eq!(dir_names(&target), ["old.txt"]);
    assert_eq!(
        fs::read_to_string(target.join("old.txt")).unwrap(),
        "old data"
    );

    let out = sb.restore("wallet", &key(AGE_IDENTITY), &target, &["--force"]);
    assert_exit(&out, 0, "restore --force");
    assert_same_tree(&wallet, &target);
    // Nothing left beside the target: no staging, no moved-aside old copy.
    assert_eq!(dir_names(&sb.path("restored")), ["wallet"]);
}

#[test]
fn forced_sqlite_restore_does_not_pair_the_new_db_with_a_stale_wal() {
    let sb = Sandbox::new();
    let db = sb.path("src/shop.db");
    drop(create_db(&db, 10, "MARK"));
    PolicySpec::new(&sb, "shop", "sqlite", &db).write(&sb);
    sb.backup("shop");

    // An old database at the target with un-checkpointed WAL frames beside it: the WAL
    // file is kept while the connection is closed, as after a crash.
    let target = sb.path("restored/shop.db");
    fs::create_dir_all(target.parent().unwrap()).unwrap();
    let old = create_db(&target, 10, "OLD");
    old.execute_batch("PRAGMA wal_autocheckpoint=0;").unwrap();
    for i in 0..500 {
        insert_row(&old, i, "STALE");
    }
    let wal = sb.path("restored/shop.db-wal");
    let stale_wal = fs::read(&wal).expect("old db has a WAL");
    assert!(!stale_wal.is_empty());
    drop(old);
    fs::write(&wal, &stale_wal).unwrap();
    let old_db = fs::read(&target).unwrap();

    let out = sb.restore("shop", &key(AGE_IDENTITY), &target, &[]);
    assert_one_line_error(&out, 2, "restore onto an existing db");
    assert_eq!(fs::read(&target).unwrap(), old_db, "old db must be intact");
    assert_eq!(fs::read(&wal).unwrap(), stale_wal, "old WAL must be intact");

    let out = sb.restore("shop", &key(AGE_IDENTITY), &target, &["--force"]);
    assert_exit(&out, 0, "restore --force");
    // Only the new database: no -wal/-shm/-journal, staging or moved-aside copy.
    assert_eq!(dir_names(&sb.path("restored")), ["shop.db"]);
    assert!(
        fs::read(&wal).is_err(),
        "the stale -wal of the old database is still beside the new one"
    );
    let (verdict, rows) = inspect_db(&target);
    assert_eq!((verdict.as_str(), rows), ("ok", 10));
    let conn = rusqlite::Connection::open(&target).unwrap();
    let stale: i64 = conn
        .query_row(
            "SELECT count(*) FROM items WHERE body LIKE 'STALE%' OR body LIKE 'OLD%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stale, 0, "old rows leaked into the restored database");
}

#[test]
fn catalog_rebuild_after_losing_the_state_dir_lists_every_backup_again() {
    let sb = Sandbox::new();
    let db = sb.path("src/shop.db");
    drop(create_db(&db, 10, "MARK"));
    let wallet = sb.path("src/wallet");
    make_wallet(&wallet, "MARK");
    PolicySpec::new(&sb, "shop", "sqlite", &db).write(&sb);
    PolicySpec::new(&sb, "wallet", "files", &wallet).write(&sb);
    let mut made = vec![sb.backup("shop"), sb.backup("shop"), sb.backup("wallet")];
    made.sort();
    assert_eq!(sb.listed_ids(), made);

    fs::remove_dir_all(sb.state()).unwrap();
    assert!(sb.listed_ids().is_empty(), "catalog should be empty now");

    let out = sb.run(&["catalog", "rebuild"]);
    assert_exit(&out, 0, "catalog rebuild");
    assert_eq!(sb.listed_ids(), made);
}
