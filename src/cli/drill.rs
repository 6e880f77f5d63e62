//! `lifeboat drill NAME… | --all [--id ID] [--store SEL] [--keep] [--each-identity] [--junit FILE]`

use std::io::IsTerminal;
use std::path::PathBuf;

use lifeboat::drill::junit_xml;
use lifeboat::{Catalog, DrillOptions, DrillResult, Error, policy};

use super::{Env, print_json};

#[derive(clap::Args)]
pub struct Args {
    /// Policies to drill.
    names: Vec<String>,
    /// Drill every policy.
    #[arg(long, conflicts_with = "names")]
    all: bool,
    /// Drill this backup (full id or unique prefix) instead of the newest.
    #[arg(long)]
    id: Option<String>,
    /// Fetch from one store only: KIND (the first of that kind, e.g. `s3`), KIND:N (the
    /// Nth of that kind) or N (the policy's Nth [[store]]), counting from 1.
    #[arg(long, value_name = "SEL")]
    store: Option<String>,
    /// Keep the restored scratch copy and print where it is.
    #[arg(long)]
    keep: bool,
    /// Also prove that each --identity alone decrypts the backup (key custody).
    #[arg(long)]
    each_identity: bool,
    /// Also write a JUnit XML report to FILE.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(env: &Env, args: Args) -> lifeboat::Result<u8> {
    let policies = policy::select(&env.policies, &args.names, args.all)?;
    let ids = env.identities()?;
    if ids.is_empty() {
        return Err(Error::Config(
            "a drill restores, so it needs a private key: pass --identity FILE or set LIFEBOAT_IDENTITY_FILE".into(),
        ));
    }
    if args.id.is_some() && policies.len() > 1 {
        return Err(Error::Config("--id needs exactly one policy".into()));
    }
    if let Some(sel) = &args.store {
        for p in &policies {
            lifeboat::inventory::select_store(p, sel)?;
        }
    }
    let catalog = Catalog::open(&env.state)?;
    let opts = DrillOptions {
        progress: Default::default(),
        store: args.store,
        id: args.id,
        keep: args.keep,
        each_identity: if args.each_identity {
            env.identity_files().to_vec()
        } else {
            Vec::new()
        },
    };
    let mut results = Vec::new();
    for p in &policies {
        let (progress, bar) = super::progress(args.json, &p.name);
        let opts = DrillOptions {
            progress,
            ..opts.clone()
        };
        let result = lifeboat::drill(p, &ids, &env.state, &catalog, &env.clock, &opts);
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        results.push(result?);
    }
    if let Some(path) = &args.junit {
        std::fs::write(path, junit_xml(&results))
            .map_err(|e| Error::io("cannot write JUnit report", path, e))?;
    }
    if args.json {
        // --all is always an array, whatever the number of policies.
        if !args.all && results.len() == 1 {
            print_json(&results[0]);
        } else {
            print_json(&results);
        }
    } else {
        print_table(&results);
    }
    Ok(results
        .iter()
        .map(DrillResult::exit_code)
        .max()
        .unwrap_or(0))
}

fn print_table(results: &[DrillResult]) {
    let color = std::io::stdout().is_terminal();
    println!(
        "{:<16} {:>12} {:>21} {:>21}  RESULT",
        "POLICY", "BACKUP AGE", "RTO measured/target", "RPO measured/target"
    );
    for r in results {
        let pair = |o: &lifeboat::drill::Objective| {
            format!(
                "{}/{}",
                o.measured_seconds.map_or("-".into(), fmt_seconds),
                o.target_seconds.map_or("-".into(), fmt_seconds)
            )
        };
        let verdict = if r.passed { "PASS" } else { "FAIL" };
        let verdict = match (color, r.passed) {
            (true, true) => format!("\x1b[32m{verdict}\x1b[0m"),
            (true, false) => format!("\x1b[31m{verdict}\x1b[0m"),
            _ => verdict.to_string(),
        };
        println!(
            "{:<16} {:>12} {:>21} {:>21}  {verdict}",
            r.policy,
            r.rpo.measured_seconds.map_or("-".into(), fmt_seconds),
            pair(&r.rto),
            pair(&r.rpo)
        );
        if let Some(f) = &r.failure {
            println!("  failure: {f}");
        }
        if let Some(k) = &r.kept_at {
            println!("  restored copy kept at {}", k.display());
        }
        for p in &r.identities {
            let status = if p.ok { "proven" } else { "FAILED" };
            println!("  identity {}: {status}", p.file.display());
        }
    }
}

/// "4ms", "2.41s", "8m32s", "3h05m", "2d04h".
pub fn fmt_seconds(s: f64) -> String {
    let whole = s.round() as u64;
    if s < 1.0 {
        format!("{:.0}ms", s * 1000.0)
    } else if s < 60.0 {
        format!("{s:.2}s")
    } else if whole < 3600 {
        format!("{}m{:02}s", whole / 60, whole % 60)
    } else if whole < 86400 {
        format!("{}h{:02}m", whole / 3600, (whole % 3600) / 60)
    } else {
        format!("{}d{:02}h", whole / 86400, (whole % 86400) / 3600)
    }
}
