//! `lifeboat verify NAME [--id ID | --all] [--level checksum|full|restore]`

use lifeboat::{Catalog, Identities, Level, Verification, inventory, policy};

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
    // With --all, a damaged manifest is one failed result among the others.
    let (targets, damaged) = if args.all {
        inventory::scan(&policy, &stores)?
    } else {
        let one = inventory::pick_readable(&policy, &stores, args.id.as_deref())?;
        (vec![one], Vec::new())
    };
    let catalog = Catalog::open(&env.state)?;
    let mut verdicts: Vec<lifeboat::Result<Verification>> = targets
        .iter()
        .map(|found| lifeboat::verify(&policy, &stores, found, args.level, &ids, &env.state))
        .collect();
    verdicts.extend(damaged.into_iter().map(|d| {
        Ok(Verification {
            policy: policy.name.clone(),
            id: d.name.split('.').next().unwrap_or(&d.name).to_string(),
            created_at: d.named_time().unwrap_or(chrono::DateTime::UNIX_EPOCH),
            level: args.level,
            ok: false,
            detail: format!("{} in {}: {}", d.name, d.store, d.error),
        })
    }));
    let mut results = Vec::new();
    for v in verdicts {
        let v = v?;
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
