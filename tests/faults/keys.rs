//! Keys: wrong, missing, unusable and damaged identities, and policies without recipients,
//! each a one-line error with exit 2 that writes nothing. Loose permissions on an identity
//! file are not checked (README says so; this pins it).

use std::fs;
use std::path::{Path, PathBuf};

use crate::common::*;
use crate::support::*;

pub fn run() -> String {
    let sb = Sandbox::new();
    let wallet = sb.path("src/wallet");
    make_wallet(&wallet, "KEYS");
    PolicySpec::new(&sb, "both", "files", &wallet)
        .with_openpgp(&key(OPENPGP_PUBLIC))
        .write(&sb);
    PolicySpec::new(&sb, "pgp", "files", &wallet)
        .openpgp_only(&key(OPENPGP_PUBLIC), "zstd")
        .write(&sb);
    sb.backup("both");
    sb.backup("pgp");
    let work = sb.path("work");

    let other_age = work.join("other-age.txt");
    assert_exit(
        &lb(&sb, &["keygen", "--age", s(&other_age)]),
        0,
        "keygen --age",
    );
    register_secret(&other_age);
    let other_pgp = work.join("other-pgp.asc");
    assert_exit(
        &lb(&sb, &["keygen", "--openpgp", s(&other_pgp)]),
        0,
        "keygen --openpgp",
    );
    register_secret(&other_pgp);
    let empty = work.join("empty.txt");
    fs::write(&empty, b"").unwrap();
    let garbage = work.join("garbage.bin");
    fs::write(&garbage, [0x99u8, 0x01, 0x02, 0xff, 0x00].repeat(50)).unwrap();
    let age_text = fs::read_to_string(key(AGE_IDENTITY)).unwrap();
    let bad_checksum = work.join("bad-checksum.txt");
    fs::write(
        &bad_checksum,
        age_text.replace("AGE-SECRET-KEY-1", "AGE-SECRET-KEY-1Q"),
    )
    .unwrap();
    let pgp_text = fs::read_to_string(key(OPENPGP_SECRET)).unwrap();
    let cut_pgp = work.join("cut.asc");
    fs::write(&cut_pgp, &pgp_text[..pgp_text.len() / 2]).unwrap();
    let missing = work.join("no-such-key.txt");
    let protected = protected_key(&sb);
    let (age_id, pgp_pub, age_rec) = (key(AGE_IDENTITY), key(OPENPGP_PUBLIC), key(AGE_RECIPIENT));

    let target = sb.path("restored/w");
    let restore = |policy: &str, ids: &[&Path]| {
        let mut args: Vec<String> = Vec::new();
        for i in ids {
            args.extend(["--identity".to_string(), s(i).to_string()]);
        }
        args.extend(["restore", policy, "--to", s(&target)].map(String::from));
        lb(&sb, &args)
    };
    let cases: Vec<(&str, &str, Vec<&Path>, &str)> = vec![
        ("another age key", "both", vec![&other_age], "identities"),
        (
            "another OpenPGP key",
            "both",
            vec![&other_pgp],
            "identities",
        ),
        (
            "both keys wrong",
            "both",
            vec![&other_age, &other_pgp],
            "identities",
        ),
        ("no key at all", "both", vec![], "--identity"),
        (
            "an age key for an OpenPGP-only backup",
            "pgp",
            vec![&age_id],
            "openpgp",
        ),
        (
            "the identity file does not exist",
            "both",
            vec![&missing],
            "no-such-key.txt",
        ),
        ("an empty identity file", "both", vec![&empty], "empty.txt"),
        (
            "a binary non-key file",
            "both",
            vec![&garbage],
            "garbage.bin",
        ),
        (
            "an age key with a broken checksum",
            "both",
            vec![&bad_checksum],
            "bad-checksum.txt",
        ),
        (
            "a cut OpenPGP secret key",
            "both",
            vec![&cut_pgp],
            "cut.asc",
        ),
        (
            "an OpenPGP public certificate",
            "both",
            vec![&pgp_pub],
            "public",
        ),
        (
            "an age recipient file",
            "both",
            vec![&age_rec],
            "age-recipient",
        ),
        (
            "a passphrase-protected OpenPGP key",
            "both",
            vec![&protected],
            "passphrase",
        ),
    ];
    let n = cases.len();
    for (label, policy, ids, says) in &cases {
        let out = restore(policy, ids);
        let line = assert_one_line_error(&out, 2, label);
        assert!(
            line.contains(says),
            "{label}: the error does not say {says:?}: {line}"
        );
        assert_nothing_written(&target, label);
    }
    // verify --level full and drill need a key as well.
    let out = lb(&sb, &["verify", "both", "--level", "full"]);
    assert_one_line_error(&out, 2, "verify --level full without a key");
    let out = lb(&sb, &["drill", "both"]);
    assert_one_line_error(&out, 2, "drill without a key");
    let out = lb(
        &sb,
        &[
            "--identity",
            s(&other_age),
            "verify",
            "both",
            "--level",
            "full",
        ],
    );
    assert_exit(&out, 2, "verify --level full with another key");

    // A policy without any recipient is refused when loaded, naming file, line and key.
    let text = PolicySpec::new(&sb, "norec", "files", &wallet).text();
    let text = text
        .lines()
        .map(|l| {
            if l.starts_with("age_recipients_file") {
                "age_recipients = []"
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    fs::write(sb.policies().join("norec.toml"), &text).unwrap();
    let out = lb(&sb, &["policy", "check"]);
    let line = assert_one_line_error(&out, 2, "policy without recipients");
    assert!(
        line.contains("norec.toml:") && line.contains("encryption"),
        "{line}"
    );
    fs::remove_file(sb.policies().join("norec.toml")).unwrap();

    // Loose permissions are accepted silently (documented).
    let loose = work.join("loose.txt");
    fs::copy(key(AGE_IDENTITY), &loose).unwrap();
    chmod(&loose, 0o644);
    let out = restore("both", &[&loose]);
    assert_exit(&out, 0, "restore with a 0644 identity file");
    assert!(
        out.stderr.is_empty(),
        "a loose identity file now warns: update README"
    );
    fs::remove_dir_all(&target).unwrap();

    format!(
        "{n}/{n} wrong, missing, unusable or damaged keys refused by restore with a one-line \
         exit 2 naming the problem, nothing written; verify --level full and drill without a \
         key exit 2; a policy without recipients: exit 2 with file:line: encryption; a 0644 \
         identity file is used without warning (documented)"
    )
}

/// An OpenPGP secret key protected by a passphrase, made with gpg.
fn protected_key(sb: &Sandbox) -> PathBuf {
    let home = GnupgHome::new();
    let pass = [
        "--passphrase",
        "correct horse",
        "--pinentry-mode",
        "loopback",
    ];
    let mut gen_args = pass.to_vec();
    gen_args.extend([
        "--quick-gen-key",
        "protected@example.org",
        "default",
        "default",
        "never",
    ]);
    home.gpg(&gen_args);
    let mut export = pass.to_vec();
    export.extend(["--armor", "--export-secret-keys", "protected@example.org"]);
    let path = sb.path("work/protected.asc");
    fs::write(&path, home.gpg(&export)).unwrap();
    path
}
