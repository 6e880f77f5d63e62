//! `lifeboat backup NAME… | --all`

use lifeboat::{Catalog, policy};

use super::{Env, human_size, print_json, report};

#[derive(clap::Args)]
pub struct Args {
    /// Policies to back up.
    names: Vec<String>,
    /// Back up every policy.
    #[arg(long, conflicts_with = "names")]
    all: bool,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
}

/// Backs up each policy in turn; one failing does not stop the others, and the exit code is
/// the worst outcome.
pub fn run(env: &Env, args: Args) -> lifeboat::Result<u8> {
    let policies = policy::select(&env.policies, &args.names, args.all)?;
    let catalog = Catalog::open(&env.state)?;
    let mut worst = 0;
    let mut results = Vec::new();
    for p in &policies {
        let (progress, bar) = super::progress(args.json, &p.name);
        let result = lifeboat::backup(p, &env.state, &catalog, &env.clock, &progress);
        super::release_freed_memory();
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        match result {
            Ok(outcome) => {
                if !args.json {
                    let stored: u64 = outcome.payloads.iter().map(|p| p.size).sum();
                    println!(
                        "{}: backup {} ({} archived, {} stored, {} store(s), {:.2}s)",
                        outcome.policy,
                        outcome.backup_id,
                        human_size(outcome.archive_size),
                        human_size(stored),
                        outcome.stores.len(),
                        outcome.seconds
                    );
                    if outcome.store_results.len() > 1 {
                        for r in &outcome.store_results {
                            match &r.error {
                                None => println!("  {}: ok", r.store),
                                Some(e) => println!("  {}: FAILED (not required): {e}", r.store),
                            }
                        }
                    }
                }
                for r in outcome.store_results.iter().filter(|r| !r.ok) {
                    eprintln!(
                        "lifeboat: warning: {}: store {} failed (not required; the backup counts): {}",
                        outcome.policy,
                        r.store,
                        r.error.as_deref().unwrap_or("").replace('\n', " ")
                    );
                }
                results.push(serde_json::to_value(&outcome).expect("json"));
            }
            Err(e) => {
                report(&e);
                worst = worst.max(e.kind().exit_code());
                results.push(serde_json::json!({
                    "policy": p.name, "error": e.to_string(), "exit_code": e.kind().exit_code()
                }));
            }
        }
    }
    if args.json {
        print_json(&results);
    }
    Ok(worst)
}
