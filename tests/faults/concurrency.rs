//! Concurrent runs: two and ten simultaneous `backup` of one policy (one runs, the others
//! exit 4 at once), `rotate` racing a backup, and ten policies sharing a store and a
//! catalog backed up at the same moment (all run). The catalog ends up listing exactly what
//! the store holds, and everything verifies.

use std::fs;
use std::process::{Child, Stdio};

use lifeboat::Level;

use crate::common::*;
use crate::support::*;

fn spawn(sb: &Sandbox, args: &[&str]) -> Child {
    sb.command()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn lifeboat")
}

/// Starts `n` copies of `lifeboat ARGS…` together; their outputs in start order.
fn together(sb: &Sandbox, n: usize, args: &[&str]) -> Vec<std::process::Output> {
    let children: Vec<Child> = (0..n).map(|_| spawn(sb, args)).collect();
    children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().expect("wait");
            scan(&out, "concurrent run");
            out
        })
        .collect()
}

fn manifests(store: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = names(store)
        .into_iter()
        .filter(|n| n.ends_with(".manifest.json"))
        .map(|n| n.split('.').next().unwrap().to_string())
        .collect();
    v.sort();
    v
}

/// (ran, locked out) of a batch; asserts every other outcome is absent.
fn tally(outs: &[std::process::Output], case: &str) -> (usize, usize) {
    let mut ran = 0;
    let mut locked = 0;
    for out in outs {
        match code(out) {
            0 => ran += 1,
            4 => {
                let line = assert_one_line_error(out, 4, case);
                assert!(line.contains("locked"), "{case}: {line}");
                locked += 1;
            }
            c => panic!("{case}: exit {c}: {}", stderr_line(out)),
        }
    }
    assert!(ran >= 1, "{case}: none ran");
    (ran, locked)
}

pub fn run() -> String {
    let mut rng = Rng::for_class("concurrency");
    let sb = Sandbox::new();
    let tree = sb.path("src/tree");
    fs::create_dir_all(&tree).unwrap();
    // Large enough that a backup lasts longer than starting ten processes.
    fs::write(tree.join("big.bin"), noise(&mut rng, 1_200_000)).unwrap();
    let spec = PolicySpec::new(&sb, "c", "files", &tree).with_openpgp(&key(OPENPGP_PUBLIC));
    fs::write(
        sb.policies().join("c.toml"),
        spec.text() + "\n[retention]\nkeep_last = 100\n",
    )
    .unwrap();
    let store = sb.store();
    let lib = Lib::load(&sb, "c");

    let mut figures = Vec::new();
    for n in [2, 10] {
        let before = manifests(&store).len();
        let outs = together(&sb, n, &["backup", "c"]);
        let (ran, locked) = tally(&outs, &format!("{n} simultaneous backups"));
        assert_eq!(
            manifests(&store).len(),
            before + ran,
            "{n} at once: backups in the store"
        );
        figures.push(format!("{n} at once: {ran} ran, {locked} exit 4"));
    }

    // A rotation racing a backup of the same policy: one waits for nobody, it exits 4.
    let backup = spawn(&sb, &["backup", "c"]);
    std::thread::sleep(std::time::Duration::from_millis(30));
    let rotate = spawn(&sb, &["rotate", "c"]);
    let outs: Vec<_> = [backup, rotate]
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    for o in &outs {
        scan(o, "backup racing rotate");
    }
    let (ran, locked) = tally(&outs, "backup racing rotate");
    figures.push(format!("backup racing rotate: {ran} ran, {locked} exit 4"));

    // The catalog lists exactly the store's backups, which all verify.
    assert_eq!(
        sb.listed_ids(),
        manifests(&store),
        "catalog and store differ"
    );
    for id in manifests(&store) {
        assert_eq!(
            lib.verify(Some(&id), Level::Checksum, &Default::default()),
            0,
            "{id}"
        );
    }

    // Ten policies sharing a store and a catalog, all at once: no lock between them.
    let sb2 = Sandbox::new();
    for i in 0..10 {
        let t = sb2.path(&format!("src/t{i}"));
        fs::create_dir_all(&t).unwrap();
        fs::write(t.join("data.bin"), noise(&mut rng, 100_000)).unwrap();
        PolicySpec::new(&sb2, &format!("p{i}"), "files", &t).write(&sb2);
    }
    let children: Vec<Child> = (0..10)
        .map(|i| spawn(&sb2, &["backup", &format!("p{i}")]))
        .collect();
    let mut ok = 0;
    for (i, c) in children.into_iter().enumerate() {
        let out = c.wait_with_output().unwrap();
        scan(&out, "ten policies");
        assert_exit(&out, 0, &format!("policy p{i} backed up with nine others"));
        ok += 1;
    }
    assert_eq!(
        sb2.listed_ids(),
        manifests(&sb2.store()),
        "shared catalog and store differ"
    );
    figures.push(format!(
        "{ok}/10 policies sharing a store and catalog ran together"
    ));
    format!(
        "{}; the catalog lists exactly what the store holds, all verify",
        figures.join("; ")
    )
}
