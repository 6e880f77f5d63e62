//! `lifeboat run --due [--json]`

use lifeboat::{Catalog, Error, Identities, policy};

use super::{Env, print_json};

#[derive(clap::Args)]
pub struct Args {
    /// Run what the policies' schedules say is due (required: a bare `run` does nothing).
    #[arg(long, required = true)]
    due: bool,
    /// Print the results as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(env: &Env, args: Args) -> lifeboat::Result<u8> {
    debug_assert!(args.due);
    let policies = policy::load_dir(&env.policies)?;
    if policies.is_empty() {
        return Err(Error::Config(format!(
            "no policies (*.toml) in {}",
            env.policies.display()
        )));
    }
    // Identities are needed only for drills; a host without them still backs up.
    let ids = env.identities().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "identities not loaded; scheduled drills will fail");
        Identities::default()
    });
    let catalog = Catalog::open(&env.state)?;
    let outcome = lifeboat::run::run_due(&policies, &env.state, &catalog, &env.clock, &ids)?;
    if args.json {
        print_json(&outcome);
    } else {
        for r in &outcome.policies {
            for (name, step) in [
                ("backup", &r.backup),
                ("rotate", &r.rotate),
                ("drill", &r.drill),
            ] {
                if step.status != "skipped" {
                    println!("{} {name}: {} ({})", r.policy, step.status, step.detail);
                }
            }
        }
    }
    Ok(outcome.exit_code)
}
