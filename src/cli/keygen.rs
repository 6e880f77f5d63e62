//! `lifeboat keygen --age OUT | --openpgp OUT`

use std::path::PathBuf;

use lifeboat::{KeyKind, keygen};

use super::{Env, print_json};

#[derive(clap::Args)]
#[group(required = true, multiple = false)]
pub struct Args {
    /// Write a new age X25519 identity to FILE (and its recipient to FILE.pub).
    #[arg(long, value_name = "FILE")]
    age: Option<PathBuf>,
    /// Write a new OpenPGP key to FILE (and its public certificate to FILE.pub).
    #[arg(long, value_name = "FILE")]
    openpgp: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(env: &Env, args: Args) -> lifeboat::Result<u8> {
    let (kind, out) = match (args.age, args.openpgp) {
        (Some(p), _) => (KeyKind::Age, p),
        (_, Some(p)) => (KeyKind::OpenPgp, p),
        _ => unreachable!("clap requires one of --age and --openpgp"),
    };
    let key = keygen(kind, &out, env.clock.now())?;
    if args.json {
        print_json(&key);
    } else {
        println!(
            "private key: {} (0600; keep it offline)",
            key.private.display()
        );
        println!("public key:  {}", key.public.display());
        println!("recipient:   {}", key.recipient);
    }
    Ok(0)
}
