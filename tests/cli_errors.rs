//! The CLI's edges: one-line errors that never carry a secret, policy errors naming file,
//! line and key, and the per-policy lock.

mod common;

use std::fs;
use std::process::Output;

use common::*;

/// 20-character pieces of the OpenPGP secret key file that are not in the public
/// certificate (the armored secret key material).
fn openpgp_secret_pieces() -> Vec<String> {
    let public = fs::read_to_string(key(OPENPGP_PUBLIC)).unwrap();
    let secret = fs::read_to_string(key(OPENPGP_SECRET)).unwrap();
    let body: Vec<&str> = secret
        .lines()
        .filter(|l| !l.starts_with("-----") && !l.contains(':') && !l.starts_with('='))
        .filter(|l| l.len() >= 20 && !public.contains(*l))
        .collect();
    assert!(!body.is_empty(), "fixture secret key has no secret lines");
    body.iter()
        .flat_map(|l| {
            let chars: Vec<char> = l.chars().collect();
            chars
                .windows(20)
                .map(|w| w.iter().collect::<String>())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Asserts that neither output stream carries age or OpenPGP secret key material.
fn assert_no_secret(out: &Output, pieces: &[String], case: &str) {
    for (stream, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let text = String::from_utf8_lossy(bytes);
        assert!(
            !text.to_ascii_uppercase().contains("AGE-SECRET-KEY-"),
            "{case}: {stream} contains an age secret key:\n{text}"
        );
        assert!(
            !text.contains("PRIVATE KEY BLOCK"),
            "{case}: {stream} contains an OpenPGP key block:\n{text}"
        );
        for p in pieces {
            assert!(
                !text.contains(p.as_str()),
                "{case}: {stream} contains OpenPGP secret key material {p:?}:\n{text}"
            );
        }
    }
}

#[test]
fn restore_output_and_errors_never_contain_secret_keys() {
    let pieces = openpgp_secret_pieces();
    let sb = Sandbox::new();
    let wallet = sb.path("src/wallet");
    make_wallet(&wallet, "MARK");
    PolicySpec::new(&sb, "wallet", "files", &wallet)
        .with_openpgp(&key(OPENPGP_PUBLIC))
        .write(&sb);
    sb.backup("wallet");
    let both = format!("{}:{}", s(&key(AGE_IDENTITY)), s(&key(OPENPGP_SECRET)));
    let target = sb.path("restored/wallet");

    // A successful restore, with both keys given through the environment.
    let out = sb
        .command()
        .env("LIFEBOAT_IDENTITY_FILE", &both)
        .args(["restore", "wallet", "--to", s(&target)])
        .output()
        .unwrap();
    assert_exit(&out, 0, "restore");
    assert_no_secret(&out, &pieces, "successful restore");

    // The target now exists: refused.
    let out = sb
        .command()
        .env("LIFEBOAT_IDENTITY_FILE", &both)
        .args(["--identity", s(&key(OPENPGP_SECRET))])
        .args(["restore", "wallet", "--to", s(&target)])
        .output()
        .unwrap();
    assert_one_line_error(&out, 2, "restore onto an existing target");
    assert_no_secret(&out, &pieces, "refused restore");

    // Damaged identity files: an age key with a broken checksum, a cut OpenPGP key.
    let age_text = fs::read_to_string(key(AGE_IDENTITY)).unwrap();
    let broken_age = sb.path("work/broken-age.txt");
    fs::write(
        &broken_age,
        age_text.replace("AGE-SECRET-KEY-1", "AGE-SECRET-KEY-1Q"),
    )
    .unwrap();
    let pgp_text = fs::read_to_string(key(OPENPGP_SECRET)).unwrap();
    let broken_pgp = sb.path("work/broken-pgp.asc");
    fs::write(&broken_pgp, &pgp_text[..pgp_text.len() * 2 / 3]).unwrap();
    for broken in [&broken_age, &broken_pgp] {
        let out = sb.restore("wallet", broken, &sb.path("restored/other"), &[]);
        assert_one_line_error(&out, 2, &format!("restore with {}", s(broken)));
        assert_no_secret(&out, &pieces, s(broken));
    }

    // A tampered payload, restored with each key.
    let payload = store_object(&sb.store(), ".tar.zst.age");
    flip_byte(&payload, 40);
    let payload = store_object(&sb.store(), ".tar.zst.gpg");
    flip_byte(&payload, 40);
    for identity in [key(AGE_IDENTITY), key(OPENPGP_SECRET)] {
        let out = sb.restore("wallet", &identity, &sb.path("restored/other"), &[]);
        assert_one_line_error(&out, 1, "restore of a tampered payload");
        assert_no_secret(&out, &pieces, "tampered payload");
    }
}

#[test]
fn unknown_policy_key_names_file_line_and_key() {
    let sb = Sandbox::new();
    let spec = PolicySpec::new(&sb, "p", "files", &sb.path("src"));
    let text = spec
        .text()
        .replacen("\n\n[[store]]", "\ncolour = \"red\"\n\n[[store]]", 1);
    let line = text
        .lines()
        .position(|l| l.starts_with("colour"))
        .expect("colour line")
        + 1;
    assert_eq!(
        line, 7,
        "the policy layout changed; fix the test's expectation"
    );
    fs::write(sb.policies().join("p.toml"), text).unwrap();

    let out = sb.run(&["policy", "check"]);
    let err = assert_one_line_error(&out, 2, "policy check");
    assert!(
        err.contains(&format!("p.toml:{line}: source.colour: ")),
        "error does not name file, line and key: {err}"
    );
    assert!(err.contains("unknown field"), "{err}");
}

#[test]
fn backup_exits_4_while_another_process_holds_the_policy_lock() {
    let sb = Sandbox::new();
    let wallet = sb.path("src/wallet");
    make_wallet(&wallet, "MARK");
    let spec = PolicySpec::new(&sb, "wallet", "files", &wallet).write(&sb);
    let locks = sb.state().join("locks");
    fs::create_dir_all(&locks).unwrap();
    let lock = fs::File::create(locks.join(format!("{}.lock", spec.id))).unwrap();
    lock.try_lock().expect("the test takes the lock");

    let out = sb.run(&["backup", "wallet"]);
    let err = assert_one_line_error(&out, 4, "backup while locked");
    assert!(err.contains("locked"), "{err}");
    assert!(
        !sb.store().exists() || store_files(&sb.store()).is_empty(),
        "a locked-out backup wrote to the store"
    );

    drop(lock);
    sb.backup("wallet");
}
