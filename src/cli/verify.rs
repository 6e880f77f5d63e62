//! `lifeboat verify NAME [--id ID | --all] [--level checksum|full|restore]`

use lifeboat::{Catalog, Identities, Level, inventory, policy};

use super::{Env, print_json};

#[derive(clap::Args)]
pub struct Args {
    /// Policy whose backups to verify.
    name: String,
    /// Verify this backup (full id or unique prefix) instead of the newest.
    #[arg(long, conflicts_with = "all")]
    id: Option<String>,
    /// Verify every backup of the policy.
    #[arg(long)]
    all: bool,
    /// How deep to check: checksum needs no key; full and restore need --identity.
    #[arg(long, value_enum, default_value = "checksum")]
    level: Level,
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(env: &Env, args: Args) -> lifeboat::Result<u8> {
    let policy = policy::select(&env.policies, std::slice::from_ref(&args.name), false)?.remove(0);
    let ids = if args.level == Level::Checksum {
        Identities::default()
    } else {
        env.identities()?
    };
    let stores = inventory::open_stores(&policy)?;
    let all = inventory::backups(&policy, &stores)?;
    let targets = if args.all {
        all
    } else {
        vec![inventory::pick(&policy, all, args.id.as_deref())?]
    };
    let catalog = Catalog::open(&env.state)?;
    let mut results = Vec::new();
    for found in &targets {
        let v = lifeboat::verify(&policy, &stores, found, args.level, &ids, &env.state)?;
        catalog.record_verification(
            &v.policy,
            &v.id,
            env.clock.now(),
            v.level.name(),
            v.ok,
            &v.detail,
        )?;
        if !args.json {
            let mark = if v.ok { "ok" } else { "FAILED" };
            println!(
                "{} {} {}: {mark} ({})",
                v.policy,
                v.id,
                v.level.name(),
                v.detail
            );
        }
        results.push(v);
    }
    if args.json {
        print_json(&results);
    }
    Ok(if results.iter().all(|v| v.ok) { 0 } else { 1 })
}
