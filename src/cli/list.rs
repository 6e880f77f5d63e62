//! `lifeboat list [NAME]`

use lifeboat::{Catalog, policy};

use super::{Env, human_size, print_json};

#[derive(clap::Args)]
pub struct Args {
    /// Only this policy's backups.
    name: Option<String>,
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(env: &Env, args: Args) -> lifeboat::Result<u8> {
    if let Some(name) = &args.name {
        // An unknown name is a usage error, not an empty list.
        policy::select(&env.policies, std::slice::from_ref(name), false)?;
    }
    let rows = Catalog::open(&env.state)?.list(args.name.as_deref())?;
    if args.json {
        print_json(&rows);
        return Ok(0);
    }
    if rows.is_empty() {
        println!(
            "no backups in the catalog (run `lifeboat catalog rebuild` to read them from the stores)"
        );
        return Ok(0);
    }
    println!(
        "{:<16} {:<36} {:<20} {:>10}  VERIFIED",
        "POLICY", "ID", "CREATED (UTC)", "SIZE"
    );
    for r in rows {
        println!(
            "{:<16} {:<36} {:<20} {:>10}  {}",
            r.policy,
            r.id,
            r.created_at.format("%Y-%m-%d %H:%M:%S"),
            human_size(r.size),
            r.last_verification.as_deref().unwrap_or("-")
        );
    }
    Ok(0)
}
