//! Tampering and rot: one bit flipped at positions spread over the head, body and tail of
//! stored payloads (age and OpenPGP, zstd and gzip) and of manifests, truncations at many
//! lengths, bytes appended. Every case must fail `verify` (checksum level without a key for
//! payloads; full level with the key for everything) and be refused by `restore`, which
//! writes nothing at the target. Driven through the library (hundreds of cases), plus a
//! handful through the binary.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use lifeboat::{Identities, Level};

use crate::common::*;
use crate::support::*;

/// One stored object to damage, with the policy and the key that reads it.
struct Target {
    policy: &'static str,
    id: String,
    path: PathBuf,
    /// The keys to check with, each alone: the one of the damaged envelope for a payload,
    /// every key of the policy for a manifest.
    identities: Vec<PathBuf>,
    what: String,
}

/// What the three checks said about one damaged object.
#[derive(Default)]
struct Tally {
    cases: usize,
    checksum: Codes,
    full: Codes,
    restore: Codes,
    /// Cases no check caught, by manifest field.
    missed: BTreeMap<String, usize>,
    /// Fields whose damage restore refused with exit 2 rather than 1.
    exit2: BTreeMap<String, usize>,
}

impl Tally {
    fn caught_by(c: &Codes) -> usize {
        c.total() - c.count(0)
    }
}

pub fn run() -> String {
    let mut rng = Rng::for_class("tamper");
    let sb = Sandbox::new();
    let wallet = sb.path("src/wallet");
    make_wallet(&wallet, "TAMPER");
    PolicySpec::new(&sb, "wallet", "files", &wallet)
        .with_openpgp(&key(OPENPGP_PUBLIC))
        .write(&sb);
    let db = sb.path("src/ledger.db");
    drop(create_db(&db, 300, "TAMPER"));
    let mut ledger =
        PolicySpec::new(&sb, "ledger", "sqlite", &db).openpgp_only(&key(OPENPGP_PUBLIC), "gzip");
    ledger.store = sb.path("store-ledger");
    ledger.write(&sb);
    let wallet_id = sb.backup("wallet");
    let ledger_id = sb.backup("ledger");

    let libs: BTreeMap<&str, Lib> = [
        ("wallet", Lib::load(&sb, "wallet")),
        ("ledger", Lib::load(&sb, "ledger")),
    ]
    .into_iter()
    .collect();
    let age = key(AGE_IDENTITY);
    let pgp = key(OPENPGP_SECRET);
    let object = |store: &Path, suffix: &str| store_object(store, suffix);
    let payloads = [
        Target {
            policy: "wallet",
            id: wallet_id.clone(),
            path: object(&sb.store(), ".tar.zst.age"),
            identities: vec![age.clone()],
            what: "age/zstd payload".into(),
        },
        Target {
            policy: "wallet",
            id: wallet_id.clone(),
            path: object(&sb.store(), ".tar.zst.gpg"),
            identities: vec![pgp.clone()],
            what: "OpenPGP/zstd payload".into(),
        },
        Target {
            policy: "ledger",
            id: ledger_id.clone(),
            path: object(&sb.path("store-ledger"), ".tar.gz.gpg"),
            identities: vec![pgp.clone()],
            what: "OpenPGP/gzip payload".into(),
        },
    ];
    let manifests = vec![
        Target {
            policy: "wallet",
            id: wallet_id.clone(),
            path: manifest_of(&sb.store(), &wallet_id),
            identities: vec![age.clone(), pgp.clone()],
            what: "wallet manifest".into(),
        },
        Target {
            policy: "ledger",
            id: ledger_id.clone(),
            path: manifest_of(&sb.path("store-ledger"), &ledger_id),
            identities: vec![pgp.clone()],
            what: "ledger manifest".into(),
        },
    ];
    let target = sb.path("restored/t");

    // Every check passes before any damage: the failures below are the damage.
    for t in payloads.iter().chain(&manifests) {
        let lib = &libs[t.policy];
        for i in &t.identities {
            let ids = identities(std::slice::from_ref(i));
            assert_eq!(
                lib.verify(Some(&t.id), Level::Full, &ids),
                0,
                "{} before damage",
                t.what
            );
        }
    }

    let all_keys = identities(&[age.clone(), pgp.clone()]);
    let mut flips = Tally::default();
    let mut truncs = Tally::default();
    let mut appends = Tally::default();
    let mut mflips = Tally::default();
    let mut mother = Tally::default();
    let per_payload = cases(100);
    let per_manifest = cases(120);
    let truncations = cases(20);

    for (i, t) in payloads.iter().chain(&manifests).enumerate() {
        let is_manifest = i >= payloads.len();
        let lib = &libs[t.policy];
        let ids: Vec<Identities> = t
            .identities
            .iter()
            .map(|i| identities(std::slice::from_ref(i)))
            .collect();
        let original = fs::read(&t.path).unwrap();
        let text = String::from_utf8_lossy(&original).into_owned();
        let len = original.len();
        let check = |tally: &mut Tally, label: String, offset: usize| {
            let c = check(lib, &t.id, &ids, &target, &label);
            tally.cases += 1;
            tally.checksum.add(c.0);
            tally.full.add(c.1);
            tally.restore.add(c.2);
            if c.2 == 2 {
                *tally.exit2.entry(field_at(&text, offset)).or_default() += 1;
            }
            if c.1 == 0 || c.2 == 0 {
                let field = if is_manifest {
                    let damaged = fs::read(&t.path).unwrap();
                    let name = t.path.file_name().unwrap().to_str().unwrap();
                    classify_miss(
                        name,
                        &field_at(&text, offset),
                        &original,
                        &damaged,
                        &all_keys,
                    )
                } else {
                    "payload".into()
                };
                *tally.missed.entry(field).or_default() += 1;
            }
            fs::write(&t.path, &original).unwrap();
        };
        let n = if is_manifest {
            per_manifest
        } else {
            per_payload
        };
        for at in spread_positions(&mut rng, len, n) {
            let bit = rng.range(0, 8) as u32;
            flip_bit(&t.path, at, bit);
            let tally = if is_manifest { &mut mflips } else { &mut flips };
            check(
                tally,
                format!("{}: bit {bit} of byte {at}/{len} flipped", t.what),
                at,
            );
        }
        for cut in spread_positions(&mut rng, len, truncations) {
            fs::write(&t.path, &original[..cut]).unwrap();
            let tally = if is_manifest {
                &mut mother
            } else {
                &mut truncs
            };
            check(
                tally,
                format!("{}: truncated to {cut}/{len} bytes", t.what),
                cut,
            );
        }
        let junk: Vec<Vec<u8>> = vec![
            vec![0],
            b"x".to_vec(),
            noise(&mut rng, 17),
            noise(&mut rng, 4096),
            original.clone(),
        ];
        for extra in junk {
            let mut bytes = original.clone();
            bytes.extend_from_slice(&extra);
            fs::write(&t.path, &bytes).unwrap();
            let tally = if is_manifest {
                &mut mother
            } else {
                &mut appends
            };
            check(
                tally,
                format!("{}: {} bytes appended", t.what, extra.len()),
                len,
            );
        }
        for one in &ids {
            assert_eq!(
                lib.verify(Some(&t.id), Level::Full, one),
                0,
                "{} after undoing",
                t.what
            );
        }
    }

    // Payload damage: every level catches every case, and restore says exit 1.
    for (name, t) in [
        ("bit flip", &flips),
        ("truncation", &truncs),
        ("append", &appends),
    ] {
        assert_eq!(
            Tally::caught_by(&t.checksum),
            t.cases,
            "payload {name}: checksum level missed some: {}",
            t.checksum
        );
        assert_eq!(
            Tally::caught_by(&t.full),
            t.cases,
            "payload {name}: full level missed some: {}",
            t.full
        );
        assert_eq!(
            t.restore.count(1),
            t.cases,
            "payload {name}: restore codes {}",
            t.restore
        );
    }
    // Manifest damage: the full level and restore catch every case except the fields that
    // neither the name nor the private manifest binds (README: created_at below the second,
    // recipients, chain), and changes to the ASCII armor of a private part that decode to
    // the same message (OpenPGP readers ignore the armor checksum, RFC 9580).
    let unbound = [
        "created_at",
        "recipients",
        "chain",
        "age armor (same message once decoded)",
        "openpgp armor (same message once decoded)",
        "same manifest once parsed (letter case of a UUID)",
    ];
    for (name, t) in [("bit flip", &mflips), ("truncation/append", &mother)] {
        // Exit 2 only when the flip changed policy_id: the backup is then no longer the
        // policy's ("no backup with id").
        for (field, n) in &t.exit2 {
            assert_eq!(
                field, "policy_id",
                "manifest {name}: {n} case(s) in {field} refused with exit 2"
            );
        }
        for (field, n) in &t.missed {
            assert!(
                unbound.contains(&field.as_str()),
                "manifest {name}: {n} case(s) in field {field:?} went undetected"
            );
        }
        assert_eq!(
            t.full.total() - t.full.count(0),
            t.restore.total() - t.restore.count(0),
            "manifest {name}: full verify and restore disagree ({} vs {})",
            t.full,
            t.restore
        );
    }
    let missed_m: usize =
        mflips.missed.values().sum::<usize>() + mother.missed.values().sum::<usize>();
    let mut merged: BTreeMap<&str, usize> = BTreeMap::new();
    for (f, n) in mflips.missed.iter().chain(&mother.missed) {
        *merged.entry(f.as_str()).or_default() += n;
    }
    let missed_list: Vec<String> = merged.iter().map(|(f, n)| format!("{f}: {n}")).collect();

    let cli = cli_cases(&sb, &wallet_id);

    let payload_cases = flips.cases + truncs.cases + appends.cases;
    let manifest_cases = mflips.cases + mother.cases;
    format!(
        "{}/{} flipped payload bits ({} positions in each of age/zstd, OpenPGP/zstd, OpenPGP/gzip), \
         {}/{} truncations, {}/{} appends detected at checksum level without a key and at full \
         level, restore refused all (exit 1), nothing written; manifests: {}/{} bit flips and \
         {}/{} truncations/appends refused by restore ({}; exit 2 only for a changed policy_id: \
         \"no backup with id\"), checksum level without a key caught \
         {}/{}; {} manifest flips changed only unbound fields and went undetected ({}); CLI: {}",
        Tally::caught_by(&flips.full),
        flips.cases,
        per_payload,
        Tally::caught_by(&truncs.full),
        truncs.cases,
        Tally::caught_by(&appends.full),
        appends.cases,
        mflips.cases - mflips.restore.count(0),
        mflips.cases,
        mother.cases - mother.restore.count(0),
        mother.cases,
        codes_without_zero(&mflips.restore, &mother.restore),
        Tally::caught_by(&mflips.checksum) + Tally::caught_by(&mother.checksum),
        manifest_cases,
        missed_m,
        if missed_list.is_empty() {
            "none".to_string()
        } else {
            missed_list.join(", ")
        },
        cli,
    ) + &format!(" [{payload_cases} payload + {manifest_cases} manifest cases]")
}

fn codes_without_zero(a: &Codes, b: &Codes) -> String {
    let mut c = Codes::default();
    for (code, n) in a.0.iter().chain(&b.0) {
        if *code != 0 {
            for _ in 0..*n {
                c.add(*code);
            }
        }
    }
    c.to_string()
}

/// (checksum verify without a key, full verify, restore) exit codes for backup `id` as it
/// now is in the store. Full verify and restore run with each key alone; the worst code of
/// each is returned. A key whose full verify passes must restore (its envelope is intact);
/// one whose full verify fails must be refused by restore, which writes nothing.
fn check(lib: &Lib, id: &str, ids: &[Identities], target: &Path, case: &str) -> (u8, u8, u8) {
    let checksum = lib.verify(Some(id), Level::Checksum, &Identities::default());
    let (mut full, mut restore) = (0, 0);
    for one in ids {
        let f = lib.verify(Some(id), Level::Full, one);
        let r = lib.restore(Some(id), one, target, case);
        if r == 0 {
            let _ = fs::remove_dir_all(target);
            let _ = fs::remove_file(target);
        }
        assert_eq!(
            f == 0,
            r == 0,
            "{case}: full verify exit {f} but restore exit {r}"
        );
        full = full.max(f);
        restore = restore.max(r);
    }
    (checksum, full, restore)
}

/// Names a manifest change no check caught: its field, or, for a private part whose
/// armored text changed but still decodes to the same message, says so.
fn classify_miss(
    name: &str,
    field: &str,
    original: &[u8],
    damaged: &[u8],
    ids: &Identities,
) -> String {
    if let (Ok(a), Ok(b)) = (
        lifeboat::Manifest::parse(name, original),
        lifeboat::Manifest::parse(name, damaged),
    ) && a == b
    {
        return "same manifest once parsed (letter case of a UUID)".into();
    }
    if field == "age" || field == "openpgp" {
        let private = |b: &[u8]| {
            serde_json::from_slice::<serde_json::Value>(b)
                .ok()
                .and_then(|v| v["private"][field].as_str().map(String::from))
        };
        if let (Some(a), Some(b)) = (private(original), private(damaged)) {
            let da = lifeboat::codec::decrypt_to_vec(a.as_bytes(), ids).ok();
            let db = lifeboat::codec::decrypt_to_vec(b.as_bytes(), ids).ok();
            if da.is_some() && da == db {
                return format!("{field} armor (same message once decoded)");
            }
        }
    }
    field.to_string()
}

/// The manifest field whose line holds `offset` of a pretty-printed manifest: the key on
/// that line, or the last key above it (array elements).
fn field_at(text: &str, offset: usize) -> String {
    let mut key = "(document)".to_string();
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        let t = line.trim_start();
        if let Some(rest) = t.strip_prefix('"')
            && let Some((k, _)) = rest.split_once("\":")
        {
            key = k.to_string();
        }
        pos += line.len();
        if offset < pos {
            return key;
        }
    }
    key
}

/// A few cases through the binary: exit codes and one-line errors as a user sees them.
fn cli_cases(sb: &Sandbox, id: &str) -> String {
    let payload = store_object(&sb.store(), ".tar.zst.age");
    let manifest = manifest_of(&sb.store(), id);
    let original = fs::read(&payload).unwrap();
    let original_m = fs::read(&manifest).unwrap();
    let len = original.len();
    let target = sb.path("restored-cli/wallet");
    let mut n = 0;
    let cases: Vec<(String, Box<dyn Fn()>)> = vec![
        (
            "payload head".into(),
            Box::new(|| flip_bit(&payload, 20, 3)),
        ),
        (
            "payload body".into(),
            Box::new(|| flip_bit(&payload, len / 2, 6)),
        ),
        (
            "payload tail".into(),
            Box::new(|| flip_bit(&payload, len - 1, 0)),
        ),
        (
            "payload truncated".into(),
            Box::new(|| fs::write(&payload, &original[..len - 100]).unwrap()),
        ),
        (
            "manifest sha256 digit".into(),
            Box::new(|| {
                let text = String::from_utf8(original_m.clone()).unwrap();
                let at = text.find("\"sha256\": \"").unwrap() + 12;
                flip_bit(&manifest, at, 0);
            }),
        ),
    ];
    for (label, damage) in cases {
        damage();
        let out = lb(sb, &["verify", "wallet", "--level", "checksum"]);
        assert_exit(&out, 1, &format!("CLI {label}: verify --level checksum"));
        let out = lb(
            sb,
            &[
                "--identity",
                s(&key(AGE_IDENTITY)),
                "verify",
                "wallet",
                "--level",
                "full",
            ],
        );
        assert_exit(&out, 1, &format!("CLI {label}: verify --level full"));
        let out = lb(
            sb,
            &[
                "--identity",
                s(&key(AGE_IDENTITY)),
                "restore",
                "wallet",
                "--to",
                s(&target),
            ],
        );
        assert_one_line_error(&out, 1, &format!("CLI {label}: restore"));
        assert_nothing_written(&target, &format!("CLI {label}"));
        fs::write(&payload, &original).unwrap();
        fs::write(&manifest, &original_m).unwrap();
        n += 1;
    }
    format!(
        "{n}/{n} cases through the binary (verify checksum, verify full, restore: exit 1, one-line error)"
    )
}
