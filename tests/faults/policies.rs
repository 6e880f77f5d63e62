//! Malformed policies (`tests/fixtures/bad-policies/`): syntax, types, unknown keys, bad
//! durations and cron expressions, empty recipients, duplicate names and ids, bytes that are
//! not UTF-8. Each must make `lifeboat policy check` exit 2 with one line naming
//! `FILE:LINE: KEY:`, as its `# expect: LINE KEY` line says; the library's parser agrees.

use std::fs;
use std::path::{Path, PathBuf};

use crate::common::*;
use crate::support::*;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bad-policies")
}

/// `(line, key)` from a file's `# expect: LINE KEY` line.
fn expectation(bytes: &[u8]) -> Option<(usize, String)> {
    let text = String::from_utf8_lossy(bytes);
    let line = text
        .lines()
        .find_map(|l| l.trim_start_matches('\u{feff}').strip_prefix("# expect: "))?;
    let (n, key) = line.trim().split_once(' ')?;
    Some((n.parse().ok()?, key.to_string()))
}

pub fn run() -> String {
    let mut entries: Vec<PathBuf> = fs::read_dir(corpus())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() || p.extension().is_some_and(|e| e == "toml"))
        .collect();
    entries.sort();
    let mut checked = 0;
    let mut library = 0;
    let mut wrong = Vec::new();
    for entry in &entries {
        let sb = Sandbox::new();
        let dir = sb.policies();
        let files: Vec<PathBuf> = if entry.is_dir() {
            let mut v: Vec<PathBuf> = fs::read_dir(entry)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            v.sort();
            v
        } else {
            vec![entry.clone()]
        };
        let mut expected = None;
        for f in &files {
            let bytes = fs::read(f).unwrap();
            let copy = dir.join(f.file_name().unwrap());
            fs::write(&copy, &bytes).unwrap();
            if let Some(e) = expectation(&bytes) {
                expected = Some((copy, e, bytes));
            }
        }
        let (file, (line, key), bytes) =
            expected.unwrap_or_else(|| panic!("{} has no `# expect:` line", entry.display()));
        let case = entry.file_name().unwrap().to_string_lossy().into_owned();
        let out = lb(&sb, &["policy", "check"]);
        let err = String::from_utf8_lossy(&out.stderr).trim_end().to_string();
        let want = format!("lifeboat: error: {}:{line}: {key}: ", file.display());
        if code(&out) != 2 || err.lines().count() != 1 || !err.starts_with(&want) {
            wrong.push(format!(
                "{case}: exit {}, expected {want:?}…, got {err:?}",
                code(&out)
            ));
            continue;
        }
        checked += 1;
        // The library says the same for a single file it can read as text.
        if let (false, Ok(text)) = (entry.is_dir(), std::str::from_utf8(&bytes)) {
            match lifeboat::policy::parse(&file, text) {
                Err(lifeboat::Error::Policy {
                    line: l, key: k, ..
                }) if (l, k.as_str()) == (line, key.as_str()) => {
                    library += 1;
                }
                other => wrong.push(format!(
                    "{case}: policy::parse returned {:?}",
                    other.map(|p| p.name)
                )),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} malformed policies not reported as expected:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    format!(
        "{checked}/{checked} malformed policies (syntax, types, unknown keys, durations, cron, \
         recipients, duplicate names and ids, not UTF-8, deep nesting) exit 2 with \
         file:line: key as expected; policy::parse agrees on {library}/{library}"
    )
}
