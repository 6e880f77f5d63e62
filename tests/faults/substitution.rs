//! Substitution and rollback without signing: an older valid backup put under a newer name,
//! two backups' payloads or manifests swapped, a backup of another policy copied in. Each
//! is refused by `restore` and by `verify --level full`; the checksum level (no key) also
//! catches what the names and sequence numbers alone give away. Two attacks the stores
//! alone cannot reveal are shown to succeed, as the README documents: deleting the newest
//! backup, and a whole new backup forged by someone holding the public recipient keys.

use std::fs;
use std::path::Path;

use lifeboat::{Identities, Level};
use serde_json::Value;

use crate::common::*;
use crate::support::*;

pub const T0: &str = "2026-03-01T03:00:00Z";
pub const T1: &str = "2026-03-01T04:00:00Z";
pub const T2: &str = "2026-03-01T05:00:00Z";

/// `lifeboat backup NAME` at `now`; returns the backup id.
pub fn backup_at(sb: &Sandbox, name: &str, now: &str) -> String {
    let out = lb_cmd(
        sb.command()
            .env("LIFEBOAT_NOW", now)
            .args(["backup", name, "--json"]),
    );
    assert_exit(&out, 0, &format!("backup {name} at {now}"));
    let v: Value = serde_json::from_slice(&out.stdout).expect("backup --json");
    v[0]["backup_id"].as_str().expect("backup_id").to_string()
}

/// Renames every object of backup `id` in `store` to a new stem (`new_id`, `new_time` as
/// `YYYYmmddTHHMMSSZ`) and rewrites the manifest to match, as an attacker would so that the
/// names check out; `edit` changes the manifest further. Returns the new manifest path.
pub fn restem(
    store: &Path,
    id: &str,
    new_id: &str,
    new_created: &str,
    edit: impl FnOnce(&mut Value),
) -> std::path::PathBuf {
    let manifest = manifest_of(store, id);
    let mut m = read_json(&manifest);
    let old_stem = manifest
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .trim_end_matches(".manifest.json")
        .to_string();
    let t: chrono::DateTime<chrono::Utc> = new_created.parse().unwrap();
    let new_stem = format!("{new_id}.{}", t.format("%Y%m%dT%H%M%SZ"));
    m["backup_id"] = Value::from(new_id);
    m["created_at"] = Value::from(new_created);
    for p in m["payloads"].as_array_mut().unwrap() {
        let old = p["object"].as_str().unwrap().to_string();
        let new = old.replacen(&old_stem, &new_stem, 1);
        fs::rename(store.join(&old), store.join(&new)).unwrap();
        p["object"] = Value::from(new);
    }
    edit(&mut m);
    fs::remove_file(&manifest).unwrap();
    let path = store.join(format!("{new_stem}.manifest.json"));
    write_json(&path, &m);
    path
}

/// What one substitution did to the three checks.
struct Outcome {
    label: &'static str,
    /// `verify` of the newest backup, checksum level, no key.
    checksum: u8,
    /// `verify --level full` of the newest backup with each key.
    full: u8,
    /// `restore` of the newest backup with each key.
    restore: u8,
}

pub fn run() -> String {
    let sb = Sandbox::new();
    let wallet = sb.path("src/wallet");
    make_wallet(&wallet, "OLD-CONTENT");
    PolicySpec::new(&sb, "p", "files", &wallet)
        .with_openpgp(&key(OPENPGP_PUBLIC))
        .write(&sb);
    let other = sb.path("src/other");
    make_wallet(&other, "OTHER-POLICY");
    let mut q = PolicySpec::new(&sb, "q", "files", &other).with_openpgp(&key(OPENPGP_PUBLIC));
    q.store = sb.path("store-q");
    let q = q.write(&sb);

    let a = backup_at(&sb, "p", T0);
    fs::write(wallet.join("seed.txt"), "seed words NEW-CONTENT\n").unwrap();
    let b = backup_at(&sb, "p", T1);
    let c = backup_at(&sb, "q", T0);
    let store = sb.store();
    let store_q = sb.path("store-q");
    let pristine = store_snapshot(&store);
    let lib = Lib::load(&sb, "p");
    let p_id = lib.policy.id.to_string();
    let keys = [
        identities(&[key(AGE_IDENTITY)]),
        identities(&[key(OPENPGP_SECRET)]),
    ];
    let target = sb.path("restored/p");
    let none = Identities::default();

    // The undamaged store: everything passes.
    assert_eq!(lib.verify(None, Level::Checksum, &none), 0);
    for k in &keys {
        assert_eq!(lib.verify(None, Level::Full, k), 0);
    }

    let check = |label: &'static str| -> Outcome {
        let checksum = lib.verify(None, Level::Checksum, &none);
        let mut full = 0;
        let mut restore = 0;
        for k in &keys {
            full = full.max(lib.verify(None, Level::Full, k));
            let r = lib.restore(None, k, &target, label);
            if r == 0 {
                let _ = fs::remove_dir_all(&target);
            }
            restore = restore.max(r);
        }
        Outcome {
            label,
            checksum,
            full,
            restore,
        }
    };
    let swap = |x: &Path, y: &Path| {
        let (bx, by) = (fs::read(x).unwrap(), fs::read(y).unwrap());
        fs::write(x, by).unwrap();
        fs::write(y, bx).unwrap();
    };
    let payload = |id: &str, ext: &str| {
        payloads_of(&store, id)
            .into_iter()
            .find(|p| s(p).ends_with(ext))
            .unwrap()
    };
    let set_digest = |manifest: &Path| {
        // Makes the manifest's size and sha256 match the payload bytes now stored.
        let mut m = read_json(manifest);
        for p in m["payloads"].as_array_mut().unwrap() {
            let bytes = fs::read(store.join(p["object"].as_str().unwrap())).unwrap();
            p["size"] = Value::from(bytes.len());
            p["sha256"] = Value::from(hex_sha256(&bytes));
        }
        write_json(manifest, &m);
    };

    let mut refused = Vec::new();
    let mut record = |o: Outcome, expect_checksum: bool| {
        assert_ne!(o.full, 0, "{}: verify --level full passed", o.label);
        assert_eq!(o.restore, 1, "{}: restore exit {}", o.label, o.restore);
        if expect_checksum {
            assert_eq!(
                o.checksum, 1,
                "{}: checksum verify exit {}",
                o.label, o.checksum
            );
        }
        refused.push((o.label, o.checksum != 0));
        store_reset(&store, &pristine);
    };

    // Payload bytes swapped between the two backups (names kept).
    swap(&payload(&a, ".age"), &payload(&b, ".age"));
    swap(&payload(&a, ".gpg"), &payload(&b, ".gpg"));
    record(check("payloads of two backups swapped"), true);

    // Swapped, and the manifests' sizes and sha256 edited to match: only the private
    // manifests (which repeat them) can tell.
    swap(&payload(&a, ".age"), &payload(&b, ".age"));
    swap(&payload(&a, ".gpg"), &payload(&b, ".gpg"));
    set_digest(&manifest_of(&store, &a));
    set_digest(&manifest_of(&store, &b));
    record(
        check("payloads swapped, public digests edited to match"),
        false,
    );

    // Manifests swapped, or one replaced by another backup's.
    swap(&manifest_of(&store, &a), &manifest_of(&store, &b));
    record(check("manifests of two backups swapped"), true);
    fs::copy(manifest_of(&store, &a), manifest_of(&store, &b)).unwrap();
    record(check("manifest replaced by another backup's"), true);

    // The older backup put back under a newer name: its sequence number gives it away
    // without a key.
    restem(&store, &a, &a, T2, |_| {});
    record(check("older backup renamed newer (rollback)"), true);

    // The same with its sequence number raised: only the private manifest tells.
    restem(&store, &a, &a, T2, |m| m["sequence"] = Value::from(99));
    record(check("older backup renamed newer, sequence raised"), false);

    // The same under a new backup id.
    let fresh = uuid::Uuid::new_v4().to_string();
    restem(&store, &a, &fresh, T2, |m| m["sequence"] = Value::from(99));
    record(check("older backup under a new id and time"), false);

    // A backup of another policy (same keys) copied into this policy's store: not this
    // policy's (its policy_id), so ignored; relabelled, the private manifest refuses it.
    for n in names(&store_q) {
        fs::copy(store_q.join(&n), store.join(&n)).unwrap();
    }
    assert_eq!(lib.verify(None, Level::Checksum, &none), 0);
    assert_eq!(
        lib.restore(None, &keys[0], &target, "foreign copy"),
        0,
        "another policy's backup in the store stopped the restore"
    );
    let restored = fs::read_to_string(target.join("seed.txt")).unwrap();
    assert!(restored.contains("NEW-CONTENT"), "restored {restored:?}");
    fs::remove_dir_all(&target).unwrap();
    let copied = manifest_of(&store, &c);
    let mut m = read_json(&copied);
    assert_eq!(m["policy_id"].as_str(), Some(q.id.as_str()));
    m["policy_id"] = Value::from(p_id.as_str());
    write_json(&copied, &m);
    restem(&store, &c, &c, T2, |m| m["sequence"] = Value::from(99));
    record(
        check("another policy's backup copied in, relabelled"),
        false,
    );

    // Not protected without signing (README): the newest backup deleted (restore falls back
    // to the previous one, which is genuine) ...
    for p in payloads_of(&store, &b) {
        fs::remove_file(p).unwrap();
    }
    fs::remove_file(manifest_of(&store, &b)).unwrap();
    assert_eq!(lib.restore(None, &keys[0], &target, "newest deleted"), 0);
    let restored = fs::read_to_string(target.join("seed.txt")).unwrap();
    assert!(restored.contains("OLD-CONTENT"));
    fs::remove_dir_all(&target).unwrap();
    store_reset(&store, &pristine);

    // ... and a whole backup forged with the public keys only: a policy file with the same
    // id and recipients, pointing at the same store, backing up the attacker's data.
    let forged = forge(&sb, "p", &p_id, "FORGED-CONTENT", "");
    let out = lb(
        &sb,
        &[
            "--identity",
            s(&key(AGE_IDENTITY)),
            "restore",
            "p",
            "--to",
            s(&target),
        ],
    );
    assert_exit(
        &out,
        0,
        "restore of a forged backup without signing (documented)",
    );
    let restored = fs::read_to_string(target.join("seed.txt")).unwrap();
    assert!(
        restored.contains("FORGED-CONTENT"),
        "the forged backup {forged} was not the one restored"
    );
    fs::remove_dir_all(&target).unwrap();
    store_reset(&store, &pristine);

    let without_key = refused.iter().filter(|r| r.1).count();
    format!(
        "{}/{} substitutions refused by restore (exit 1) and verify --level full; {} of them \
         also by verify --level checksum without a key (names, sequence) [{}]; another \
         policy's backup copied in is ignored; not protected without signing, as documented: \
         the newest backup deleted (restore takes the previous genuine one), a whole backup \
         forged with the public keys (restored)",
        refused.len(),
        refused.len(),
        without_key,
        refused.iter().map(|r| r.0).collect::<Vec<_>>().join("; ")
    )
}

/// Makes a backup of policy `name` (id `id`) in this sandbox's store from another machine:
/// its own policies and state, the same public keys, a wallet holding `marker`. `extra` is
/// appended to the policy (e.g. a `[signing]` table). Returns the forged backup's id.
pub fn forge(sb: &Sandbox, name: &str, id: &str, marker: &str, extra: &str) -> String {
    let evil = Sandbox::new();
    let data = evil.path("src/wallet");
    make_wallet(&data, marker);
    let mut spec = PolicySpec::new(&evil, name, "files", &data).with_openpgp(&key(OPENPGP_PUBLIC));
    spec.id = id.to_string();
    spec.store = sb.store();
    let text = spec.text() + extra;
    fs::write(evil.policies().join(format!("{name}.toml")), text).unwrap();
    let out = lb_cmd(
        evil.command()
            .env("LIFEBOAT_NOW", "2026-03-02T00:00:00Z")
            .args(["backup", name, "--json"]),
    );
    assert_exit(&out, 0, "forged backup");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v[0]["backup_id"].as_str().unwrap().to_string()
}

/// Lowercase hex SHA-256.
pub fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}
