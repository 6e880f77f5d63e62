//! Secrets: no identity content (`AGE-SECRET-KEY-…`, the armored OpenPGP secret key) ever
//! appears in stdout or stderr (every CLI run of the whole suite is scanned, see
//! `support::scan`), in object names or stored bytes, in the state directory, or in
//! `/proc/<pid>/cmdline` and `/proc/<pid>/environ` of a running lifeboat.

use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::support::*;

pub fn run() -> String {
    let mut rng = Rng::for_class("secrets");
    let sb = Sandbox::new();
    let wallet = sb.path("src/wallet");
    make_wallet(&wallet, "SECRETS");
    fs::write(wallet.join("bulk.bin"), noise(&mut rng, 2_000_000)).unwrap();
    PolicySpec::new(&sb, "wallet", "files", &wallet)
        .with_openpgp(&key(OPENPGP_PUBLIC))
        .write(&sb);
    let both = format!("{}:{}", s(&key(AGE_IDENTITY)), s(&key(OPENPGP_SECRET)));
    let mut runs = 0;
    let mut run = |args: &[&str], env_ids: bool| {
        let mut cmd = sb.command();
        if env_ids {
            cmd.env("LIFEBOAT_IDENTITY_FILE", &both);
        }
        let out = lb_cmd(cmd.args(args));
        runs += 1;
        out
    };
    assert_exit(&run(&["backup", "wallet"], false), 0, "backup");
    assert_exit(
        &run(&["--log-format", "json", "backup", "wallet"], false),
        0,
        "backup",
    );

    // Every command that reads keys, with keys given both ways, and JSON output.
    let target = sb.path("restored/w");
    let t = s(&target).to_string();
    for (args, env_ids) in [
        (
            vec![
                "--identity",
                s(&key(AGE_IDENTITY)),
                "restore",
                "wallet",
                "--to",
                &t,
            ],
            false,
        ),
        (
            vec!["restore", "wallet", "--to", &t, "--force", "--json"],
            true,
        ),
        (vec!["verify", "wallet", "--level", "full", "--json"], true),
        (
            vec![
                "--log-format",
                "json",
                "verify",
                "wallet",
                "--level",
                "restore",
            ],
            true,
        ),
        (
            vec![
                "drill",
                "wallet",
                "--json",
                "--each-identity",
                "--identity",
                s(&key(AGE_IDENTITY)),
                "--identity",
                s(&key(OPENPGP_SECRET)),
            ],
            false,
        ),
        (vec!["catalog", "rebuild"], true),
        (vec!["report", "--format", "json"], false),
        (vec!["list", "--json"], false),
    ] {
        let out = run(&args, env_ids);
        assert_exit(&out, 0, &format!("{args:?}"));
    }

    // Errors around keys: damaged identity files that still hold key material.
    let work = sb.path("work");
    let age_text = fs::read_to_string(key(AGE_IDENTITY)).unwrap();
    let pgp_text = fs::read_to_string(key(OPENPGP_SECRET)).unwrap();
    let damaged = [
        ("age-extra.txt", format!("{age_text}\nnot a key line\n")),
        (
            "age-broken.txt",
            age_text.replace("AGE-SECRET-KEY-1", "AGE-SECRET-KEY-2"),
        ),
        (
            "pgp-cut.asc",
            pgp_text[..pgp_text.len() * 3 / 4].to_string(),
        ),
        ("pgp-garbled.asc", pgp_text.replacen('A', "*", 3)),
    ];
    for (name, text) in &damaged {
        fs::write(work.join(name), text).unwrap();
        let out = run(
            &["--identity", name, "restore", "wallet", "--to", "elsewhere"],
            false,
        );
        assert!(!out.status.success(), "restore with {name} succeeded");
    }
    // A secret key where a recipient certificate belongs.
    let mut spec = PolicySpec::new(&sb, "leaky", "files", &wallet);
    spec.age_recipients_file = None;
    spec.openpgp_certs = vec![key(OPENPGP_SECRET)];
    let text = spec.text();
    fs::write(sb.policies().join("leaky.toml"), text).unwrap();
    let out = run(&["policy", "check"], false);
    assert_one_line_error(&out, 2, "a secret key given as a recipient");
    // An age identity given as a recipients file.
    spec.openpgp_certs = vec![];
    spec.age_recipients_file = Some(key(AGE_IDENTITY));
    fs::write(sb.policies().join("leaky.toml"), spec.text()).unwrap();
    let out = run(&["policy", "check"], false);
    assert_one_line_error(&out, 2, "an age identity given as a recipients file");
    fs::remove_file(sb.policies().join("leaky.toml")).unwrap();

    // The command line and environment of a running lifeboat.
    let proc_checks = running_process(&sb, &both, &target);

    // Object names, stored bytes and the state directory.
    let mut objects = 0;
    for dir in [sb.store(), sb.state()] {
        for (rel, entry) in read_tree(&dir) {
            assert!(
                find_secret(rel.as_bytes()).is_none(),
                "name {rel} holds a secret"
            );
            if let Entry::File { bytes, .. } = entry {
                assert!(
                    find_secret(&bytes).is_none(),
                    "{} holds key material",
                    dir.join(&rel).display()
                );
            }
            objects += 1;
        }
    }
    format!(
        "{runs} runs with keys (restore, verify, drill --each-identity, catalog rebuild, report, \
         JSON logs, damaged key files, secret keys given as recipients): no key material in \
         stdout/stderr; {proc_checks}; {objects} store objects and state files: no key \
         material in names or bytes"
    )
}

/// Reads `/proc/<pid>/cmdline` and `environ` of lifeboat while it restores (keys given as
/// `--identity` and in `LIFEBOAT_IDENTITY_FILE`).
fn running_process(sb: &Sandbox, both: &str, target: &Path) -> String {
    let mut samples = 0;
    for via_env in [false, true] {
        let mut cmd = sb.command();
        if via_env {
            cmd.env("LIFEBOAT_IDENTITY_FILE", both);
        } else {
            cmd.args(["--identity", s(&key(AGE_IDENTITY))]);
        }
        cmd.args(["restore", "wallet", "--to", s(target), "--force"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("spawn");
        let pid = child.id();
        let started = Instant::now();
        let mut seen = 0;
        while child.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(60) {
            let exe = fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
            if exe
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("lifeboat"))
            {
                for what in ["cmdline", "environ"] {
                    if let Ok(bytes) = fs::read(format!("/proc/{pid}/{what}")) {
                        assert!(
                            find_secret(&bytes).is_none(),
                            "/proc/{pid}/{what} of a running lifeboat holds key material"
                        );
                        seen += 1;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(
            child.wait().unwrap().success(),
            "restore under observation failed"
        );
        assert!(
            seen > 0,
            "lifeboat ended before its /proc entries could be read"
        );
        samples += seen;
    }
    format!("/proc/<pid>/cmdline and environ read {samples} times while lifeboat restored: clean")
}
