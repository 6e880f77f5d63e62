//! `lifeboat policy check`

use lifeboat::policy;

use super::{Env, print_json};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Validate every policy in the policies directory.
    Check {
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(env: &Env, cmd: Command) -> lifeboat::Result<u8> {
    let Command::Check { json } = cmd;
    let policies = policy::load_dir(&env.policies)?;
    if json {
        let list: Vec<_> = policies
            .iter()
            .map(|p| {
                serde_json::json!({
                    "name": p.name, "id": p.id, "file": p.file,
                    "source": p.source.kind(), "stores": p.stores.len()
                })
            })
            .collect();
        print_json(&list);
    } else {
        for p in &policies {
            println!("{}: ok ({}, {})", p.name, p.source.kind(), p.file.display());
        }
        println!("{} policies valid", policies.len());
    }
    Ok(0)
}
