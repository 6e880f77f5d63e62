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
    /// Where to restore: the database file, the directory of a tree, a PostgreSQL data
    /// directory, or postgresql://user@host:port/newdb for a PostgreSQL logical dump.
    #[arg(long, value_name = "PATH")]
    to: PathBuf,
    /// Fetch from one store only: KIND (the first of that kind, e.g. `s3`), KIND:N (the
    /// Nth of that kind) or N (the policy's Nth [[store]]), counting from 1.
    #[arg(long, value_name = "SEL", conflicts_with = "archive")]
    store: Option<String>,
    /// PostgreSQL physical policies: recover to this time (RFC 3339) from the newest base
    /// backup finished before it.
    #[arg(long, value_name = "RFC3339")]
    at: Option<String>,
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
    let at = match &args.at {
        None => None,
        Some(v) => Some(
            chrono::DateTime::parse_from_rfc3339(v)
                .map_err(|e| {
                    Error::Config(format!(
                        "--at {v:?} is not an RFC 3339 time ({e}); e.g. 2026-06-09T03:00:00Z"
                    ))
                })?
                .with_timezone(&chrono::Utc),
        ),
    };
    let opts = RestoreOptions {
        progress,
        target: args.to,
        force: args.force,
        dry_run: args.dry_run,
        at,
        identity_files: env.identity_files().to_vec(),
        scratch: Some(env.state.scratch()),
        store: args.store,
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
                let target = lifeboat::source::postgres::mask_target(&opts.target);
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
