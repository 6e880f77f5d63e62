//! `lifeboat restore NAME [--id ID] --to PATH [--force] [--dry-run]`
//! `lifeboat restore --archive FILE --to DIR`

use std::path::PathBuf;

use lifeboat::{Catalog, Error, RestoreOptions, policy};

use super::{Env, print_json};

#[derive(clap::Args)]
pub struct Args {
    /// Policy whose backup to restore.
    #[arg(required_unless_present = "archive", conflicts_with = "archive")]
    name: Option<String>,
    /// Restore this backup (full id or unique prefix) instead of the newest.
    #[arg(long)]
    id: Option<String>,
    /// Restore an archive made by standard tools (tar|gzip|gpg, tar|zstd|age, .tar.gz, .tar.zst).
    #[arg(long, value_name = "FILE")]
    archive: Option<PathBuf>,
    /// Where to restore: the database file, or the directory of a tree.
    #[arg(long, value_name = "PATH")]
    to: PathBuf,
    /// Replace an existing target (kept until the new copy is in place).
    #[arg(long)]
    force: bool,
    /// Say what would be done, change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(env: &Env, args: Args) -> lifeboat::Result<u8> {
    let ids = env.identities()?;
    // A plain archive needs no key; an encrypted one fails with a clear message without it.
    if ids.is_empty() && args.archive.is_none() {
        return Err(Error::Config(
            "restore needs a private key: pass --identity FILE or set LIFEBOAT_IDENTITY_FILE"
                .into(),
        ));
    }
    let (progress, bar) = super::progress(args.json || args.dry_run, "restore");
    let opts = RestoreOptions {
        progress,
        target: args.to,
        force: args.force,
        dry_run: args.dry_run,
    };
    let outcome = match (&args.archive, &args.name) {
        (Some(archive), _) => lifeboat::restore_archive(archive, &ids, &opts, &env.clock)?,
        (None, Some(name)) => {
            let policy =
                policy::select(&env.policies, std::slice::from_ref(name), false)?.remove(0);
            let catalog = Catalog::open(&env.state)?;
            let at = env.clock.now();
            let result = lifeboat::restore(&policy, args.id.as_deref(), &ids, &opts);
            if !opts.dry_run {
                let (id, ok, detail, seconds) = match &result {
                    Ok(o) => (
                        o.backup_id.clone().unwrap_or_default(),
                        true,
                        "ok".to_string(),
                        o.seconds,
                    ),
                    Err(e) => (
                        args.id.clone().unwrap_or_default(),
                        false,
                        e.to_string(),
                        0.0,
                    ),
                };
                let target = opts.target.display().to_string();
                catalog.record_restore(&policy.name, &id, at, &target, seconds, ok, &detail)?;
            }
            result?
        }
        (None, None) => unreachable!("clap requires a policy name or --archive"),
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if args.json {
        print_json(&outcome);
    } else if outcome.dry_run {
        println!(
            "would restore {} to {}{}",
            outcome.object,
            outcome.target.display(),
            if outcome.replaced {
                " (replacing what is there)"
            } else {
                ""
            }
        );
    } else {
        println!(
            "restored {} to {} in {:.3}s",
            outcome.object,
            outcome.target.display(),
            outcome.seconds
        );
    }
    Ok(0)
}
