//! Interoperability with standard tools: payloads open with `age`, `gpg`, `zstd`, `gzip`
//! and `tar`; archives made by those tools restore with `lifeboat restore --archive`; keys
//! made by real `gpg` work as recipients and identities.

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// Backs up a fresh wallet with `spec` and returns (wallet dir, the payload ending with
/// `suffix`).
fn backed_up_wallet(
    sb: &Sandbox,
    spec: impl FnOnce(PolicySpec) -> PolicySpec,
    suffix: &str,
) -> (PathBuf, PathBuf) {
    let wallet = sb.path("src/wallet");
    make_wallet(&wallet, "MARK");
    spec(PolicySpec::new(sb, "wallet", "files", &wallet)).write(sb);
    sb.backup("wallet");
    let payload = store_object(&sb.store(), suffix);
    (wallet, payload)
}

#[test]
fn age_payload_opens_with_age_zstd_and_tar() {
    require_tools(&["age", "zstd", "tar"]);
    let sb = Sandbox::new();
    let (wallet, payload) = backed_up_wallet(&sb, |p| p, ".tar.zst.age");
    let out = sb.path("extracted");
    std::fs::create_dir(&out).unwrap();
    shell(
        r#"age -d -i "$1" "$2" | zstd -d | tar -x -C "$3""#,
        &[&key(AGE_IDENTITY), &payload, &out],
        &[],
    );
    assert_same_tree(&wallet, &out);
}

#[test]
fn openpgp_payload_opens_with_gpg_gzip_and_tar() {
    require_tools(&["gpg", "gzip", "tar"]);
    let sb = Sandbox::new();
    let (wallet, payload) = backed_up_wallet(
        &sb,
        |p| p.openpgp_only(&key(OPENPGP_PUBLIC), "gzip"),
        ".tar.gz.gpg",
    );
    let gnupg = GnupgHome::with_fixture_key();
    let out = sb.path("extracted");
    std::fs::create_dir(&out).unwrap();
    shell(
        r#"gpg --batch -q -d "$1" | gzip -d | tar -x -C "$2""#,
        &[&payload, &out],
        &[("GNUPGHOME", gnupg.path())],
    );
    assert_same_tree(&wallet, &out);
}

/// Makes `archive` from `wallet` with the shell pipeline `script` ($1 wallet, $2 archive),
/// restores it with `lifeboat restore --archive --identity IDENTITY` and compares the trees.
fn archive_restores(script: &str, name: &str, identity: &Path, envs: &[(&str, &Path)]) {
    let sb = Sandbox::new();
    let wallet = sb.path("src/wallet");
    make_wallet(&wallet, "MARK");
    let archive = sb.path(name);
    shell(script, &[&wallet, &archive], envs);
    let target = sb.path("restored/wallet");
    let out = sb.restore_archive(identity, &archive, &target);
    assert_exit(&out, 0, &format!("restore --archive {name}"));
    assert_same_tree(&wallet, &target);
    assert_eq!(dir_names(&sb.path("restored")), ["wallet"]);
}

#[test]
fn archive_from_tar_gzip_gpg_restores() {
    require_tools(&["tar", "gzip", "gpg"]);
    let gnupg = GnupgHome::with_fixture_key();
    archive_restores(
        &format!(
            r#"tar -C "$1" -cf - . | gzip | gpg --batch --trust-model always -e -r {} -o "$2""#,
            openpgp_fingerprint()
        ),
        "wallet.tar.gz.gpg",
        &key(OPENPGP_SECRET),
        &[("GNUPGHOME", gnupg.path())],
    );
}

#[test]
fn archive_from_tar_zstd_age_restores() {
    require_tools(&["tar", "zstd", "age"]);
    archive_restores(
        &format!(
            r#"tar -C "$1" -cf - . | zstd -q | age -r {} -o "$2""#,
            age_recipient()
        ),
        "wallet.tar.zst.age",
        &key(AGE_IDENTITY),
        &[],
    );
}

#[test]
fn archive_plain_tar_gz_restores() {
    require_tools(&["tar", "gzip"]);
    archive_restores(
        r#"tar -C "$1" -czf "$2" ."#,
        "wallet.tar.gz",
        &key(AGE_IDENTITY),
        &[],
    );
}

#[test]
fn archive_plain_tar_zst_restores() {
    require_tools(&["tar", "zstd"]);
    archive_restores(
        r#"tar -C "$1" -cf - . | zstd -q -o "$2""#,
        "wallet.tar.zst",
        &key(AGE_IDENTITY),
        &[],
    );
}

#[test]
fn gpg_generated_key_works_as_recipient_and_identity() {
    require_tools(&["gpg"]);
    let sb = Sandbox::new();
    let gnupg = GnupgHome::new();
    let (public, secret) = gnupg.generate_key("x", &sb.path("work"));
    let (wallet, _) = backed_up_wallet(&sb, |p| p.openpgp_only(&public, "zstd"), ".tar.zst.gpg");
    let target = sb.path("restored/wallet");
    let out = sb.restore("wallet", &secret, &target, &[]);
    assert_exit(&out, 0, "restore with a gpg-made secret key");
    assert_same_tree(&wallet, &target);
}
