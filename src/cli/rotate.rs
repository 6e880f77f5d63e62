//! `lifeboat rotate NAME… | --all [--dry-run] [--json]`

use lifeboat::{Catalog, RotateOutcome, policy};

use super::{Env, print_json, report};

#[derive(clap::Args)]
pub struct Args {
    /// Policies to rotate.
    names: Vec<String>,
    /// Rotate every policy.
    #[arg(long, conflicts_with = "names")]
    all: bool,
    /// Print the plan without deleting anything.
    #[arg(long)]
    dry_run: bool,
    /// Print the plan as JSON: an object for one NAME, an array otherwise.
    #[arg(long)]
    json: bool,
}

/// Rotates each policy in turn; one failing does not stop the others, and the exit code is
/// the worst outcome.
pub fn run(env: &Env, args: Args) -> lifeboat::Result<u8> {
    let policies = policy::select(&env.policies, &args.names, args.all)?;
    let catalog = Catalog::open(&env.state)?;
    let mut worst = 0;
    let mut results = Vec::new();
    for p in &policies {
        match lifeboat::rotate(p, &env.state, &catalog, &env.clock, args.dry_run) {
            Ok(outcome) => {
                if !args.json {
                    print_human(&outcome);
                }
                results.push(serde_json::json!({
                    "policy": outcome.policy,
                    "keep": outcome.plan.keep,
                    "delete": outcome.plan.delete,
                    "locked": outcome.locked,
                }));
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
        if !args.all && results.len() == 1 {
            print_json(&results[0]);
        } else {
            print_json(&results);
        }
    }
    Ok(worst)
}

fn print_human(o: &RotateOutcome) {
    let time =
        |t: &chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for k in &o.plan.keep {
        println!(
            "keep {} {} ({})",
            k.id,
            time(&k.created_at),
            k.reasons.join(", ")
        );
    }
    for d in &o.plan.delete {
        println!("delete {} {}", d.id, time(&d.created_at));
    }
    for orphan in &o.orphans {
        println!(
            "{} orphan {} in {}",
            if o.dry_run { "would remove" } else { "removed" },
            orphan.object,
            orphan.store
        );
    }
    for l in &o.locked {
        let what = match &l.backup_id {
            Some(id) => format!("backup {id}"),
            None => format!("orphan {}", l.object),
        };
        println!(
            "{what} is locked until {} in {}; {}",
            time(&l.until),
            l.store,
            if o.dry_run {
                "it would stay there"
            } else {
                "left there for a later rotation"
            }
        );
    }
    println!(
        "{}: {} kept, {} {}{}",
        o.policy,
        o.plan.keep.len(),
        o.plan.delete.len(),
        if o.dry_run { "to delete" } else { "deleted" },
        if o.dry_run { " (dry run)" } else { "" }
    );
}
