//! Bounded fuzzing with proptest (cargo-fuzz needs a nightly toolchain): arbitrary and
//! mutated input into the policy parser, the manifest parser, the decryptors and the
//! archive reader behind `restore --archive`. No input may panic; parsers return errors
//! that name a line (policies) or keep their invariants (manifests); archives never write
//! outside their target and a refused one leaves nothing behind.
//!
//! `LIFEBOAT_FUZZ_CASES` sets the cases per target (default 300 × `LIFEBOAT_FAULTS_SCALE`).
//! Crashes found are kept below as named regression cases.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use crate::common::*;
use crate::support::*;

fn fuzz_cases() -> u32 {
    match std::env::var("LIFEBOAT_FUZZ_CASES") {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("LIFEBOAT_FUZZ_CASES={v:?} is not a number")),
        Err(_) => cases(300) as u32,
    }
}

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: fuzz_cases(),
        failure_persistence: None,
        max_shrink_iters: 2000,
        rng_algorithm: proptest::test_runner::RngAlgorithm::ChaCha,
        ..Config::default()
    })
}

/// Runs one fuzz target; a failure is reported with the minimal input proptest found.
fn fuzz<S: Strategy>(name: &str, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    let mut r = runner();
    if let Err(e) = r.run(&strategy, test) {
        panic!("fuzz target {name} failed: {e}");
    }
}

/// One edit of a byte string; indexes wrap around its length.
#[derive(Debug, Clone)]
enum Edit {
    Flip(prop::sample::Index, u8),
    Set(prop::sample::Index, u8),
    Delete(prop::sample::Index, usize),
    Insert(prop::sample::Index, Vec<u8>),
    Truncate(prop::sample::Index),
    Repeat(prop::sample::Index, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        3 => (any::<prop::sample::Index>(), 0u8..8).prop_map(|(i, b)| Edit::Flip(i, b)),
        2 => (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
        1 => (any::<prop::sample::Index>(), 1usize..64).prop_map(|(i, n)| Edit::Delete(i, n)),
        1 => (any::<prop::sample::Index>(), prop::collection::vec(any::<u8>(), 1..32))
            .prop_map(|(i, b)| Edit::Insert(i, b)),
        1 => any::<prop::sample::Index>().prop_map(Edit::Truncate),
        1 => (any::<prop::sample::Index>(), 1usize..600).prop_map(|(i, n)| Edit::Repeat(i, n)),
    ]
}

fn apply(seed: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for e in edits {
        if v.is_empty() {
            break;
        }
        match e {
            Edit::Flip(i, b) => {
                let i = i.index(v.len());
                v[i] ^= 1 << b;
            }
            Edit::Set(i, b) => {
                let i = i.index(v.len());
                v[i] = *b;
            }
            Edit::Delete(i, n) => {
                let i = i.index(v.len());
                let end = (i + n).min(v.len());
                v.drain(i..end);
            }
            Edit::Insert(i, b) => {
                let i = i.index(v.len());
                v.splice(i..i, b.iter().copied());
            }
            Edit::Truncate(i) => {
                let i = i.index(v.len());
                v.truncate(i);
            }
            Edit::Repeat(i, n) => {
                let i = i.index(v.len());
                let end = (i + n).min(v.len());
                let chunk = v[i..end].to_vec();
                v.splice(end..end, chunk);
            }
        }
    }
    v
}

/// A seed chosen among `seeds`, then edited.
fn mutated(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(seeds),
        prop::collection::vec(edit(), 1..6),
    )
        .prop_map(|(seed, edits)| apply(&seed, &edits))
}

fn arbitrary_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..2048)
}

pub fn run() -> String {
    let n = fuzz_cases();
    let sb = Sandbox::new();
    let wallet = sb.path("src/wallet");
    make_wallet(&wallet, "FUZZ");
    PolicySpec::new(&sb, "wallet", "files", &wallet)
        .with_openpgp(&key(OPENPGP_PUBLIC))
        .write(&sb);
    let id = sb.backup("wallet");

    let policies = policy_targets(&sb);
    let manifests = manifest_targets(&sb, &id);
    let decrypt = decrypt_targets(&sb, &id);
    let archives = archive_targets(&sb, &wallet);
    regressions(&sb, &id);
    format!(
        "{n} cases per target, no panic: policy parser ({policies}); manifest parser \
         ({manifests}); decryptors ({decrypt}); restore --archive ({archives}); regression \
         cases kept: {}",
        REGRESSIONS.join(", ")
    )
}

// ---- policies -------------------------------------------------------------------------

fn policy_targets(sb: &Sandbox) -> String {
    let path = sb.path("policies/wallet.toml");
    let valid = fs::read(&path).unwrap();
    let shop = fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/shop.toml")).unwrap();
    let check = |text: &str| -> Result<(), TestCaseError> {
        match lifeboat::policy::parse(&path, text) {
            Ok(_) => Ok(()),
            Err(lifeboat::Error::Policy { line, key, .. }) => {
                let lines = text.split('\n').count().max(1);
                prop_assert!(line >= 1 && line <= lines, "line {line} of {lines}");
                prop_assert!(!key.is_empty());
                Ok(())
            }
            Err(e) => {
                // Errors other than Policy must still be one clear line.
                prop_assert!(!e.to_string().is_empty());
                Ok(())
            }
        }
    };
    fuzz(
        "policy::parse (arbitrary text)",
        "\\PC{0,400}",
        |t: String| check(&t),
    );
    fuzz(
        "policy::parse (mutated policies)",
        mutated(vec![valid, shop]).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        |t: String| check(&t),
    );
    "arbitrary text and mutated valid policies; errors always name a line within the file".into()
}

// ---- manifests ------------------------------------------------------------------------

fn manifest_targets(sb: &Sandbox, id: &str) -> String {
    let path = manifest_of(&sb.store(), id);
    let name = path.file_name().unwrap().to_str().unwrap().to_string();
    let valid = fs::read(&path).unwrap();
    let check = |bytes: &[u8]| -> Result<(), TestCaseError> {
        if let Ok(m) = lifeboat::Manifest::parse(&name, bytes) {
            prop_assert_eq!(m.object_name(), name.clone());
            let stem = name.trim_end_matches(".manifest.json");
            for p in &m.payloads {
                let prefix = format!("{stem}.");
                prop_assert!(p.object.starts_with(&prefix) && !p.object.contains('/'));
            }
            let again = lifeboat::Manifest::parse(&name, &m.to_json());
            prop_assert!(again.as_ref().is_ok_and(|a| *a == m), "does not round-trip");
        }
        Ok(())
    };
    fuzz(
        "Manifest::parse (arbitrary bytes)",
        arbitrary_bytes(),
        |b| check(&b),
    );
    fuzz(
        "Manifest::parse (mutated manifests)",
        mutated(vec![valid]),
        |b| check(&b),
    );
    "arbitrary bytes and mutated real manifests; whatever parses is self-consistent and round-trips"
        .into()
}

// ---- decryption -----------------------------------------------------------------------

fn decrypt_targets(sb: &Sandbox, id: &str) -> String {
    let m = read_json(&manifest_of(&sb.store(), id));
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    for env in ["age", "openpgp"] {
        seeds.push(m["private"][env].as_str().unwrap().as_bytes().to_vec());
    }
    for p in payloads_of(&sb.store(), id) {
        seeds.push(fs::read(p).unwrap());
    }
    let ids = identities(&[key(AGE_IDENTITY), key(OPENPGP_SECRET)]);
    let check = |bytes: Vec<u8>| -> Result<(), TestCaseError> {
        if let Ok(mut r) = lifeboat::codec::decrypt_reader(std::io::Cursor::new(bytes), &ids) {
            let mut sink = Vec::new();
            let _ = r.read_to_end(&mut sink);
        }
        Ok(())
    };
    fuzz(
        "decrypt (mutated private manifests and payloads)",
        mutated(seeds),
        check,
    );
    "mutated armored private manifests and binary payloads, age and OpenPGP".into()
}

// ---- archives -------------------------------------------------------------------------

fn archive_targets(sb: &Sandbox, wallet: &Path) -> String {
    // Seeds: the wallet as tar, tar.gz, tar.zst and age-encrypted tar.zst.
    let seeds_dir = sb.path("seeds");
    fs::create_dir_all(&seeds_dir).unwrap();
    let tar_path = seeds_dir.join("w.tar");
    let out = std::process::Command::new("tar")
        .arg("-cf")
        .arg(&tar_path)
        .arg("-C")
        .arg(wallet)
        .arg(".")
        .output()
        .unwrap();
    assert!(out.status.success(), "tar -c");
    let tar_bytes = fs::read(&tar_path).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar_bytes).unwrap();
    let gz = gz.finish().unwrap();
    let zst = zstd::encode_all(&tar_bytes[..], 3).unwrap();
    let age_path = seeds_dir.join("w.tar.zst.age");
    fs::write(seeds_dir.join("w.tar.zst"), &zst).unwrap();
    let out = std::process::Command::new("age")
        .arg("-r")
        .arg(age_recipient())
        .arg("-o")
        .arg(&age_path)
        .arg(seeds_dir.join("w.tar.zst"))
        .output()
        .unwrap();
    assert!(out.status.success(), "age -r");
    let aged = fs::read(&age_path).unwrap();

    let outside = sb.path("outside");
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("sentinel"), b"untouched").unwrap();
    let jail = sb.path("jail");
    fs::create_dir_all(&jail).unwrap();
    let ids = identities(&[key(AGE_IDENTITY)]);
    let clock = lifeboat::Clock::system();
    let counter = std::cell::Cell::new(0usize);
    let accepted = std::cell::Cell::new(0usize);
    let check = |bytes: Vec<u8>| -> Result<(), TestCaseError> {
        let i = counter.get();
        counter.set(i + 1);
        let file = sb.path("work/fuzz-archive");
        fs::write(&file, &bytes).unwrap();
        let target = jail.join("t");
        let opts = lifeboat::RestoreOptions {
            target: target.clone(),
            ..Default::default()
        };
        let result = lifeboat::restore_archive(&file, &ids, &opts, &clock);
        prop_assert_eq!(read_tree(&outside).len(), 1, "case {}: written outside", i);
        match result {
            Ok(_) => {
                accepted.set(accepted.get() + 1);
                let _ = fs::remove_dir_all(&target);
            }
            Err(_) => {
                prop_assert!(
                    fs::symlink_metadata(&target).is_err(),
                    "refused but wrote the target"
                );
            }
        }
        prop_assert_eq!(names(&jail), Vec::<String>::new(), "leftovers in the jail");
        Ok(())
    };
    let check = &check;
    fuzz(
        "restore --archive (arbitrary bytes)",
        arbitrary_bytes(),
        check,
    );
    fuzz(
        "restore --archive (mutated tar, tar.gz, tar.zst, tar.zst.age)",
        mutated(vec![tar_bytes, gz, zst, aged]),
        check,
    );
    format!(
        "arbitrary bytes and mutated tar/tar.gz/tar.zst/age archives: {} restored, the rest \
         refused, nothing outside the target, no leftovers",
        accepted.get()
    )
}

// ---- regressions ----------------------------------------------------------------------

/// Crashes the fuzzing and the tamper class found, kept as named cases.
const REGRESSIONS: &[&str] = &["openpgp_message_truncated_in_mdc_reserve"];

fn regressions(sb: &Sandbox, id: &str) {
    openpgp_message_truncated_in_mdc_reserve(sb, id);
}

/// sequoia-openpgp 2.4 panics (`parse.rs`: `data_consume_hard(..).unwrap()`) on a message
/// cut within the 22 bytes after the header of its encrypted container. lifeboat must
/// report such a payload or private manifest as damaged (exit 1), never crash.
fn openpgp_message_truncated_in_mdc_reserve(sb: &Sandbox, id: &str) {
    let ids = identities(&[key(OPENPGP_SECRET)]);
    let payload = payloads_of(&sb.store(), id)
        .into_iter()
        .find(|p| s(p).ends_with(".gpg"))
        .unwrap();
    let bytes = fs::read(&payload).unwrap();
    // Every cut: none may panic, each is an error.
    for cut in 0..bytes.len() {
        let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            match lifeboat::codec::decrypt_reader(std::io::Cursor::new(bytes[..cut].to_vec()), &ids)
            {
                Ok(mut r) => {
                    let mut sink = Vec::new();
                    r.read_to_end(&mut sink).is_err()
                }
                Err(_) => true,
            }
        }));
        match got {
            Ok(failed) => assert!(failed, "an OpenPGP payload cut to {cut} bytes decrypted"),
            Err(_) => panic!("decrypting an OpenPGP payload cut to {cut} bytes panicked"),
        }
    }
    // Through the binary: a restore of such a payload is a damaged backup, one line, exit 1.
    let original = bytes.clone();
    let container = encrypted_container_at(&bytes);
    let target: PathBuf = sb.path("restored-regression/w");
    for extra in [20, 25, 30, 35, 40] {
        fs::write(&payload, &bytes[..container + extra]).unwrap();
        let case = format!("OpenPGP payload cut {extra} bytes into its encrypted container");
        let out = lb(
            sb,
            &[
                "--identity",
                s(&key(OPENPGP_SECRET)),
                "restore",
                "wallet",
                "--to",
                s(&target),
            ],
        );
        assert_one_line_error(&out, 1, &format!("restore of an {case}"));
        let out = lb(
            sb,
            &[
                "--identity",
                s(&key(OPENPGP_SECRET)),
                "verify",
                "wallet",
                "--level",
                "full",
            ],
        );
        assert_exit(&out, 1, &format!("verify --level full of an {case}"));
    }
    fs::write(&payload, &original).unwrap();
}

/// Where the encrypted container (SEIPD, tag 18) of an OpenPGP message starts; sequoia 2.4
/// panicked on cuts some 20 to 45 bytes after it.
fn encrypted_container_at(message: &[u8]) -> usize {
    // Walk the packets: new-format headers (0xC0 | tag), as lifeboat's encryptor writes.
    let mut at = 0;
    while at < message.len() {
        let tag = message[at] & 0x3f;
        let (len, hdr) = match message[at + 1] {
            l @ 0..=191 => (l as usize, 2),
            l @ 192..=223 => (
                (((l as usize) - 192) << 8) + message[at + 2] as usize + 192,
                3,
            ),
            255 => (
                u32::from_be_bytes(message[at + 2..at + 6].try_into().unwrap()) as usize,
                6,
            ),
            _ => (0, 2), // partial body length: the container itself
        };
        if tag == 18 {
            return at;
        }
        at += hdr + len;
    }
    panic!("no encrypted container in the OpenPGP message")
}
