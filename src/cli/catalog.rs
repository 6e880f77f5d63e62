//! `lifeboat catalog rebuild`

use lifeboat::{Catalog, policy, rebuild_catalog};

use super::{Env, print_json};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Recreate the catalog from the stores of every policy.
    Rebuild {
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(env: &Env, cmd: Command) -> lifeboat::Result<u8> {
    let Command::Rebuild { json } = cmd;
    let policies = policy::load_dir(&env.policies)?;
    let ids = env.identities()?;
    let catalog = Catalog::open(&env.state)?;
    let outcome = rebuild_catalog(&policies, &ids, &catalog)?;
    if json {
        print_json(&outcome);
    } else {
        for o in &outcome {
            println!(
                "{}: {} backups ({} private manifests checked)",
                o.policy, o.backups, o.private_checked
            );
        }
    }
    Ok(0)
}
