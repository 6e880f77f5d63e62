//! Damaged, tampered and misused backups: every case is caught, nothing is written at the
//! target, and what is stored reveals neither names nor plaintext.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;

/// A wallet backed up to the fixture age and OpenPGP keys (one payload each).
fn wallet_backup(sb: &Sandbox) -> PathBuf {
    let wallet = sb.path("src/wallet");
    make_wallet(&wallet, "MARK");
    PolicySpec::new(sb, "wallet", "files", &wallet)
        .with_openpgp(&key(OPENPGP_PUBLIC))
        .write(sb);
    sb.backup("wallet");
    wallet
}

/// Asserts that the damaged backup fails `verify --level checksum` (no identity),
/// `verify --level full` and `restore` with exit 1, and that the restore leaves nothing
/// behind: no target, no staging directory.
fn assert_damage_caught(sb: &Sandbox, identity: &Path, case: &str) {
    let out = sb.run(&["verify", "wallet", "--level", "checksum"]);
    assert_exit(&out, 1, &format!("{case}: verify --level checksum"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("FAILED"), "{case}: {stdout}");

    let out = sb.run(&[
        "--identity",
        s(identity),
        "verify",
        "wallet",
        "--level",
        "full",
    ]);
    assert_exit(&out, 1, &format!("{case}: verify --level full"));

    let restored = sb.path("restored");
    let target = restored.join("wallet");
    let out = sb.restore("wallet", identity, &target, &[]);
    assert_one_line_error(&out, 1, &format!("{case}: restore"));
    assert!(!target.exists(), "{case}: restore left a target behind");
    if restored.exists() {
        assert_eq!(
            dir_names(&restored),
            Vec::<String>::new(),
            "{case}: restore left staging data behind"
        );
    }
}

#[test]
fn flipped_byte_in_a_payload_fails_verify_and_restore_and_writes_nothing() {
    let sb = Sandbox::new();
    wallet_backup(&sb);
    for (suffix, identity) in [
        (".tar.zst.age", key(AGE_IDENTITY)),
        (".tar.zst.gpg", key(OPENPGP_SECRET)),
    ] {
        let payload = store_object(&sb.store(), suffix);
        let original = fs::read(&payload).unwrap();
        let len = original.len();
        // Inside the key-wrapping header (age recipient stanza, OpenPGP PKESK), in the
        // middle of the encrypted stream, and in its final authentication tag.
        let header = original
            .windows(10)
            .position(|w| w == b"-> X25519 ")
            .map_or(12, |stanza| stanza + 12);
        for offset in [header, len / 2, len - 1] {
            flip_byte(&payload, offset as u64);
            assert_damage_caught(&sb, &identity, &format!("{suffix} byte {offset} flipped"));
            fs::write(&payload, &original).unwrap();
        }
    }
    // The undamaged backup still verifies: the failures above were the damage.
    let out = sb.run(&["verify", "wallet", "--level", "checksum"]);
    assert_exit(&out, 0, "verify after undoing the damage");
}

#[test]
fn truncated_payload_fails_verify_and_restore_and_writes_nothing() {
    let sb = Sandbox::new();
    wallet_backup(&sb);
    for (suffix, identity) in [
        (".tar.zst.age", key(AGE_IDENTITY)),
        (".tar.zst.gpg", key(OPENPGP_SECRET)),
    ] {
        let payload = store_object(&sb.store(), suffix);
        let original = fs::read(&payload).unwrap();
        fs::write(&payload, &original[..original.len() / 2]).unwrap();
        assert_damage_caught(&sb, &identity, &format!("{suffix} truncated"));
        fs::write(&payload, &original).unwrap();
    }
}

#[test]
fn wrong_age_identity_is_a_usage_error_and_writes_nothing() {
    let sb = Sandbox::new();
    wallet_backup(&sb);
    let other = sb.path("work/other.key");
    let out = sb.run(&["keygen", "--age", s(&other)]);
    assert_exit(&out, 0, "keygen --age");

    let restored = sb.path("restored");
    let target = restored.join("wallet");
    let out = sb.restore("wallet", &other, &target, &[]);
    let line = assert_one_line_error(&out, 2, "restore with another identity");
    assert!(line.contains("identities"), "{line}");
    assert!(
        !target.exists(),
        "restore with a wrong key wrote the target"
    );
    assert!(
        !restored.exists() || dir_names(&restored).is_empty(),
        "restore with a wrong key wrote {:?}",
        dir_names(&restored)
    );
}

#[test]
fn store_reveals_no_names_and_no_plaintext() {
    const MARKER: &str = "ZEBRA-PLAINTEXT-MARKER-4711";
    let sb = Sandbox::new();
    let db = sb.path("src/customer-ledger.db");
    drop(create_db(&db, 50, MARKER));
    let wallet = sb.path("src/alice-hot-wallet");
    make_wallet(&wallet, MARKER);
    PolicySpec::new(&sb, "ledger-prod-7", "sqlite", &db).write(&sb);
    PolicySpec::new(&sb, "alice-wallet-9", "files", &wallet)
        .with_openpgp(&key(OPENPGP_PUBLIC))
        .write(&sb);
    sb.backup("ledger-prod-7");
    sb.backup("alice-wallet-9");

    let mut names = vec![
        "ledger-prod-7".to_string(),
        "alice-wallet-9".to_string(),
        "customer-ledger".to_string(),
        "alice-hot-wallet".to_string(),
    ];
    names.extend(
        read_tree(&wallet)
            .into_iter()
            .map(|(rel, _)| rel.rsplit('/').next().unwrap().to_string()),
    );
    let files = store_files(&sb.store());
    // 2 backups: the db (1 payload) and the wallet (2 payloads), each with a manifest.
    assert_eq!(files.len(), 5, "{files:?}");
    for f in &files {
        let object = f.file_name().unwrap().to_str().unwrap();
        for n in &names {
            assert!(
                !object.contains(n.as_str()),
                "object {object} contains {n:?}"
            );
        }
        let bytes = fs::read(f).unwrap();
        // Names short enough to occur by chance in base64 are checked in object names only.
        for needle in names
            .iter()
            .filter(|n| n.len() >= 8)
            .chain([&MARKER.to_string()])
        {
            assert!(
                !contains(&bytes, needle.as_bytes()),
                "stored object {object} contains {needle:?}"
            );
        }
    }
}

/// Backs up the wallet at `at` (RFC 3339) and returns the new backup's id.
fn backup_at(sb: &Sandbox, at: &str) -> String {
    let out = sb
        .command()
        .env("LIFEBOAT_NOW", at)
        .args(["backup", "wallet", "--json"])
        .output()
        .expect("run lifeboat");
    assert_exit(&out, 0, &format!("backup at {at}"));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("backup --json");
    v[0]["backup_id"].as_str().expect("backup_id").to_string()
}

fn manifest_of(sb: &Sandbox, id: &str) -> PathBuf {
    store_files(&sb.store())
        .into_iter()
        .find(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            name.starts_with(id) && name.ends_with(".manifest.json")
        })
        .expect("manifest in the store")
}

#[test]
fn a_damaged_older_manifest_does_not_block_restoring_the_others() {
    let sb = Sandbox::new();
    let wallet = sb.path("src/wallet");
    make_wallet(&wallet, "MARK");
    PolicySpec::new(&sb, "wallet", "files", &wallet).write(&sb);
    let old = backup_at(&sb, "2026-06-01T03:00:00Z");
    let middle = backup_at(&sb, "2026-06-02T03:00:00Z");
    let newest = backup_at(&sb, "2026-06-03T03:00:00Z");
    fs::write(manifest_of(&sb, &old), b"{ not json").unwrap();

    // The newest and an older intact backup still restore, with a warning naming the damage.
    let out = sb.restore("wallet", &key(AGE_IDENTITY), &sb.path("r1"), &[]);
    assert_exit(&out, 0, "restore newest past an older damaged manifest");
    assert_same_tree(&wallet, &sb.path("r1"));
    let out = sb.restore(
        "wallet",
        &key(AGE_IDENTITY),
        &sb.path("r2"),
        &["--id", &middle],
    );
    assert_exit(&out, 0, "restore --id of an intact backup");

    // The damaged one itself fails closed, naming it.
    let out = sb.restore(
        "wallet",
        &key(AGE_IDENTITY),
        &sb.path("r3"),
        &["--id", &old],
    );
    let line = assert_one_line_error(&out, 1, "restore --id of the damaged backup");
    assert!(line.contains(&old), "{line}");
    assert!(!sb.path("r3").exists());

    // verify --all reports the damaged manifest as one failure among passing backups.
    let out = sb.run(&["verify", "wallet", "--all", "--json"]);
    assert_exit(&out, 1, "verify --all with one damaged manifest");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let results = v.as_array().unwrap();
    assert_eq!(results.len(), 3);
    let failed: Vec<&str> = results
        .iter()
        .filter(|r| r["ok"] == false)
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(failed, vec![old.as_str()]);

    // A damaged manifest newer than every intact one blocks restoring "the newest".
    fs::write(manifest_of(&sb, &newest), b"{ not json").unwrap();
    let line = assert_one_line_error(
        &sb.restore("wallet", &key(AGE_IDENTITY), &sb.path("r4"), &[]),
        1,
        "restore newest when the newest manifest is damaged",
    );
    assert!(line.contains(&newest), "{line}");
    assert!(!sb.path("r4").exists());
}

#[test]
fn restore_store_selects_an_intact_copy_when_the_first_store_is_damaged() {
    let sb = Sandbox::new();
    let wallet = sb.path("src/wallet");
    make_wallet(&wallet, "MARK");
    let second = sb.path("store2");
    let spec = PolicySpec::new(&sb, "wallet", "files", &wallet);
    let text = spec.text().replacen(
        "\n\n[encryption]",
        &format!(
            "\n\n[[store]]\nkind = \"local\"\npath = \"{}\"\n\n[encryption]",
            s(&second)
        ),
        1,
    );
    fs::write(sb.policies().join("wallet.toml"), text).unwrap();
    sb.backup("wallet");
    let payload = store_object(&sb.store(), ".tar.zst.age");
    let len = fs::metadata(&payload).unwrap().len();
    flip_byte(&payload, len / 2);

    // The first store's copy is damaged: the default restore refuses it.
    let out = sb.restore("wallet", &key(AGE_IDENTITY), &sb.path("r1"), &[]);
    assert_one_line_error(&out, 1, "restore from the damaged first store");
    assert!(!sb.path("r1").exists());

    // The second store's copy restores, byte-identical.
    let out = sb.restore(
        "wallet",
        &key(AGE_IDENTITY),
        &sb.path("r2"),
        &["--store", "2"],
    );
    assert_exit(&out, 0, "restore --store 2");
    assert_same_tree(&wallet, &sb.path("r2"));

    // An unknown selector is a usage error.
    let out = sb.restore(
        "wallet",
        &key(AGE_IDENTITY),
        &sb.path("r3"),
        &["--store", "s3"],
    );
    assert_one_line_error(&out, 2, "restore --store s3 without an s3 store");
}
