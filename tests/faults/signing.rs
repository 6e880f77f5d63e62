//! Signed manifests (`[signing] key_file` / `trusted`, the key made by `lifeboat keygen
//! --openpgp`): every field of a manifest edited (the names kept consistent, as an attacker
//! would), the signature removed, replaced, or made by an untrusted key, and whole backups
//! forged with the public keys — all refused by `verify` without any key, by `restore` and
//! by `drill`.

use std::fs;
use std::path::{Path, PathBuf};

use lifeboat::{Identities, Level};
use serde_json::Value;

use crate::common::*;
use crate::substitution::{T0, T1, backup_at, forge, restem};
use crate::support::*;

/// An edit of a manifest's JSON.
type Edit<'a> = Box<dyn Fn(&mut Value) + 'a>;

#[derive(Clone, Debug)]
enum Seg {
    Key(String),
    Idx(usize),
}

/// Paths of every leaf of `v` (strings, numbers; arrays of strings count as leaves too).
fn leaves(v: &Value, path: Vec<Seg>, out: &mut Vec<Vec<Seg>>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let mut p = path.clone();
                p.push(Seg::Key(k.clone()));
                leaves(x, p, out);
            }
        }
        Value::Array(a) => {
            if a.iter().all(Value::is_string) {
                out.push(path.clone());
            }
            for (i, x) in a.iter().enumerate() {
                let mut p = path.clone();
                p.push(Seg::Idx(i));
                leaves(x, p, out);
            }
        }
        _ => out.push(path),
    }
}

fn at<'a>(v: &'a mut Value, path: &[Seg]) -> &'a mut Value {
    path.iter().fold(v, |v, s| match s {
        Seg::Key(k) => &mut v[k.as_str()],
        Seg::Idx(i) => &mut v[*i],
    })
}

fn show(path: &[Seg]) -> String {
    path.iter()
        .map(|s| match s {
            Seg::Key(k) => k.clone(),
            Seg::Idx(i) => i.to_string(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// A different character of the same kind, so the value stays well-formed.
fn other_char(c: char) -> char {
    match c {
        '0'..='8' | 'a'..='e' | 'A'..='E' => (c as u8 + 1) as char,
        '9' => '0',
        'f' => 'a',
        'F' => 'A',
        'g'..='y' | 'G'..='Y' => (c as u8 + 1) as char,
        'z' => 'g',
        'Z' => 'G',
        _ => 'x',
    }
}

/// Changes one character in the middle of `s`.
fn mutate_str(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut i = chars.len() / 2;
    while i < chars.len() && !chars[i].is_ascii_alphanumeric() {
        i += 1;
    }
    let i = i.min(chars.len().saturating_sub(1));
    let mut out = chars.clone();
    if out.is_empty() {
        return "x".into();
    }
    out[i] = other_char(out[i]);
    out.into_iter().collect()
}

pub fn run() -> String {
    let sb = Sandbox::new();
    let signer = sb.path("work/host-signing.asc");
    let out = lb(&sb, &["keygen", "--openpgp", s(&signer)]);
    assert_exit(&out, 0, "keygen --openpgp");
    register_secret(&signer);
    let untrusted = sb.path("work/intruder.asc");
    assert_exit(
        &lb(&sb, &["keygen", "--openpgp", s(&untrusted)]),
        0,
        "keygen",
    );
    register_secret(&untrusted);
    let trusted = PathBuf::from(format!("{}.pub", s(&signer)));

    let wallet = sb.path("src/wallet");
    make_wallet(&wallet, "SIGNED-CONTENT");
    let spec = PolicySpec::new(&sb, "p", "files", &wallet).with_openpgp(&key(OPENPGP_PUBLIC));
    let signing = format!(
        "\n[signing]\nkey_file = \"{}\"\ntrusted = [\"{}\"]\n",
        s(&signer),
        s(&trusted)
    );
    fs::write(sb.policies().join("p.toml"), spec.text() + &signing).unwrap();
    let p_id = spec.id.clone();
    let a = backup_at(&sb, "p", T0);
    let b = backup_at(&sb, "p", T1);
    let store = sb.store();
    let pristine = store_snapshot(&store);
    let lib = Lib::load(&sb, "p");
    let age = identities(&[key(AGE_IDENTITY)]);
    let none = Identities::default();
    let target = sb.path("restored/p");
    assert!(read_json(&manifest_of(&store, &b))["signature"].is_string());
    assert_eq!(lib.verify(None, Level::Checksum, &none), 0);
    assert_eq!(lib.verify(None, Level::Full, &age), 0);

    let mut refused = 0;
    let mut total = 0;
    let mut by_id_blocked = 0;
    let mut check = |label: String| {
        total += 1;
        let checksum = lib.verify(None, Level::Checksum, &none);
        assert_eq!(
            checksum, 1,
            "{label}: verify --level checksum (no key) exit {checksum}"
        );
        let r = lib.restore(None, &age, &target, &label);
        assert_eq!(r, 1, "{label}: restore exit {r}");
        // The untouched older backup, asked for by id: refused as well while an unverifiable
        // manifest of the policy is in the store (the stores are read whole).
        if lib.restore(Some(&a), &age, &target, &label) != 0 {
            by_id_blocked += 1;
        } else {
            let _ = fs::remove_dir_all(&target);
        }
        refused += 1;
        store_reset(&store, &pristine);
    };

    // Every field of the newest manifest, one at a time.
    let original = read_json(&manifest_of(&store, &b));
    let mut paths = Vec::new();
    leaves(&original, Vec::new(), &mut paths);
    let mut fields = 0;
    for path in paths {
        let name = show(&path);
        if name.starts_with("signature") {
            continue;
        }
        let manifest = manifest_of(&store, &b);
        if name == "policy_id" {
            // The manifest is then another policy's: ignored, as if deleted (README).
            let mut m = read_json(&manifest);
            m["policy_id"] = Value::from(uuid::Uuid::new_v4().to_string());
            write_json(&manifest, &m);
            assert_eq!(lib.verify(None, Level::Checksum, &none), 0);
            let stores = lifeboat::inventory::open_stores(&lib.policy).unwrap();
            let found = lifeboat::inventory::backups(&lib.policy, &stores).unwrap();
            assert_eq!(found.len(), 1, "a manifest of another policy was listed");
            store_reset(&store, &pristine);
            continue;
        }
        fields += 1;
        match name.as_str() {
            "backup_id" => {
                let fresh = uuid::Uuid::new_v4().to_string();
                restem(&store, &b, &fresh, T1, |_| {});
            }
            "created_at" => {
                restem(&store, &b, &b, "2026-03-01T04:30:00Z", |_| {});
            }
            n if n.starts_with("payloads.") && n.ends_with(".object") => {
                // Another extension, the object renamed to match.
                let mut m = read_json(&manifest);
                let v = at(&mut m, &path);
                let old = v.as_str().unwrap().to_string();
                let new = if old.contains(".tar.zst.") {
                    old.replace(".tar.zst.", ".tar.gz.")
                } else {
                    old.replace(".tar.gz.", ".tar.zst.")
                };
                fs::rename(store.join(&old), store.join(&new)).unwrap();
                *v = Value::from(new);
                write_json(&manifest, &m);
            }
            _ => {
                let mut m = read_json(&manifest);
                let v = at(&mut m, &path);
                *v = match v.clone() {
                    Value::String(s) => Value::from(mutate_str(&s)),
                    Value::Number(n) => Value::from(n.as_u64().unwrap_or(0) + 1),
                    Value::Array(mut a) => {
                        if name.ends_with("recipients") {
                            a.push(Value::from(age_recipient().replace('q', "p")));
                        } else {
                            a.reverse();
                        }
                        Value::Array(a)
                    }
                    other => panic!("unexpected leaf {name}: {other}"),
                };
                write_json(&manifest, &m);
            }
        }
        check(format!("field {name} edited"));
    }
    // Whole payload entries removed or duplicated.
    let manifest = manifest_of(&store, &b);
    let mut m = read_json(&manifest);
    m["payloads"].as_array_mut().unwrap().pop();
    m["private"].as_object_mut().unwrap().remove("openpgp");
    write_json(&manifest, &m);
    check("OpenPGP payload and its private part removed".into());

    // The signature itself.
    let signature_cases: Vec<(&str, Edit<'_>)> = vec![
        (
            "signature removed (unsigned manifest)",
            Box::new(|m: &mut Value| {
                m.as_object_mut().unwrap().remove("signature");
            }),
        ),
        (
            "signature of the older backup",
            Box::new(|m: &mut Value| {
                m["signature"] = read_json(&manifest_of(&store, &a))["signature"].clone();
            }),
        ),
        (
            "signature not armored",
            Box::new(|m: &mut Value| {
                m["signature"] = Value::from("not a signature");
            }),
        ),
        (
            "signature body altered",
            Box::new(|m: &mut Value| {
                let sig = m["signature"].as_str().unwrap().to_string();
                m["signature"] = Value::from(mutate_str(&sig));
            }),
        ),
    ];
    for (label, edit) in &signature_cases {
        let manifest = manifest_of(&store, &b);
        let mut m = read_json(&manifest);
        edit(&mut m);
        write_json(&manifest, &m);
        check((*label).into());
    }
    // Edited, then signed again by a key that is not trusted.
    let manifest = manifest_of(&store, &b);
    let name = manifest.file_name().unwrap().to_str().unwrap().to_string();
    let mut parsed = lifeboat::Manifest::parse(&name, &fs::read(&manifest).unwrap()).unwrap();
    parsed.captured_at += chrono::TimeDelta::seconds(1);
    parsed.signature =
        Some(lifeboat::keys::sign_detached(&untrusted, &parsed.signed_bytes()).unwrap());
    fs::write(&manifest, parsed.to_json()).unwrap();
    check("edited and signed by an untrusted key".into());

    // Whole backups forged with the public keys: unsigned, or signed by an untrusted key.
    forge(&sb, "p", &p_id, "FORGED", "");
    check("forged backup, unsigned".into());
    forge(
        &sb,
        "p",
        &p_id,
        "FORGED",
        &format!("\n[signing]\nkey_file = \"{}\"\n", s(&untrusted)),
    );
    check("forged backup signed by an untrusted key".into());

    // Through the binary: restore and drill refuse, with one-line errors.
    let cli = cli_cases(&sb, &b);

    // Whoever holds the host's signing key can still sign a forgery (README).
    forge(
        &sb,
        "p",
        &p_id,
        "FORGED-WITH-HOST-KEY",
        &signing.replace("trusted", "#trusted"),
    );
    let r = lib.restore(None, &age, &target, "forged with the host key");
    assert_eq!(r, 0, "a backup signed by the trusted key is accepted");
    fs::remove_dir_all(&target).unwrap();
    store_reset(&store, &pristine);

    format!(
        "{refused}/{total} edited, unsigned, re-signed or forged manifests refused by verify \
         --level checksum without any key and by restore (exit 1) — {fields} fields edited one \
         at a time, 5 signature cases, 2 forged backups; {cli}; while one is in the store, \
         restoring another backup by id is refused too ({by_id_blocked}/{total}); policy_id \
         edited: the manifest becomes another policy's and is ignored (like a deletion); a \
         forgery signed with the host's own key is accepted (the key must be kept safe)"
    )
}

/// Restore and drill through the binary on three damaged manifests.
fn cli_cases(sb: &Sandbox, b: &str) -> String {
    let store = sb.store();
    let pristine = store_snapshot(&store);
    let target = sb.path("restored-cli/p");
    let edits: Vec<(&str, Change<'_, Path>)> = vec![
        (
            "captured_at",
            Box::new(|m: &Path| {
                let mut v = read_json(m);
                v["captured_at"] = Value::from("2026-03-01T04:00:00.5Z");
                write_json(m, &v);
            }),
        ),
        (
            "unsigned",
            Box::new(|m: &Path| {
                let mut v = read_json(m);
                v.as_object_mut().unwrap().remove("signature");
                write_json(m, &v);
            }),
        ),
        (
            "sequence",
            Box::new(|m: &Path| {
                let mut v = read_json(m);
                v["sequence"] = Value::from(7);
                write_json(m, &v);
            }),
        ),
    ];
    let n = edits.len();
    for (label, edit) in edits {
        edit(&manifest_of(&store, b));
        let out = lb(
            sb,
            &[
                "--identity",
                s(&key(AGE_IDENTITY)),
                "restore",
                "p",
                "--to",
                s(&target),
            ],
        );
        let line = assert_one_line_error(&out, 1, &format!("CLI restore, {label}"));
        assert!(line.contains("sign"), "{label}: {line}");
        assert_nothing_written(&target, label);
        let out = lb(sb, &["--identity", s(&key(AGE_IDENTITY)), "drill", "p"]);
        assert_exit(&out, 1, &format!("CLI drill, {label}"));
        let out = lb(sb, &["verify", "p"]);
        assert_exit(&out, 1, &format!("CLI verify, {label}"));
        store_reset(&store, &pristine);
    }
    format!("through the binary {n}/{n} refused by restore, drill and verify (exit 1)")
}
