//! `lifeboat wal-push NAME PATH` (PostgreSQL's `archive_command`, `%p`) and
//! `lifeboat wal-fetch NAME FILE PATH` (`restore_command`, `%f %p`). Silent on success;
//! any failure exits non-zero, so PostgreSQL keeps the segment and retries.

use std::path::PathBuf;

use lifeboat::Error;

use super::Env;

#[derive(clap::Args)]
pub struct PushArgs {
    /// Policy (a postgres source with mode = "physical").
    name: String,
    /// The WAL file to archive (`%p`).
    path: PathBuf,
}

#[derive(clap::Args)]
pub struct FetchArgs {
    /// Policy (a postgres source with mode = "physical").
    name: String,
    /// The WAL file's name (`%f`).
    file: String,
    /// Where to write it (`%p`).
    path: PathBuf,
}

pub fn push(env: &Env, args: PushArgs) -> lifeboat::Result<u8> {
    let policy = lifeboat::wal::load_policy(&env.policies, &args.name)?;
    lifeboat::wal::push(&policy, &args.path, &env.clock)?;
    Ok(0)
}

pub fn fetch(env: &Env, args: FetchArgs) -> lifeboat::Result<u8> {
    let ids = env.identities()?;
    if ids.is_empty() {
        return Err(Error::Config(
            "wal-fetch decrypts, so it needs a private key: pass --identity FILE".into(),
        ));
    }
    let policy = lifeboat::wal::load_policy(&env.policies, &args.name)?;
    lifeboat::wal::fetch(&policy, &ids, &args.file, &args.path)?;
    Ok(0)
}
