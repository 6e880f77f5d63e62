//! `lifeboat report [--since 90d] [--format md|html|json] [--out FILE] [--sign KEY]`

use std::path::PathBuf;

use lifeboat::{Catalog, Error, policy, report};

use super::Env;

#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    Md,
    Html,
    Json,
}

#[derive(clap::Args)]
pub struct Args {
    /// The period covered, back from now.
    #[arg(long, default_value = "90d", value_parser = humantime::parse_duration)]
    since: std::time::Duration,
    #[arg(long, value_enum, default_value = "md")]
    format: Format,
    /// Write to FILE instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Sign the JSON report with this OpenPGP secret key: writes FILE.json (unless the
    /// format is json) and a detached armored signature FILE[.json].asc. Needs --out.
    #[arg(long, value_name = "KEY", requires = "out")]
    sign: Option<PathBuf>,
}

pub fn run(env: &Env, args: Args) -> lifeboat::Result<u8> {
    let policies = policy::load_dir(&env.policies)?;
    let catalog = Catalog::open(&env.state)?;
    let now = env.clock.now();
    let since = now
        - chrono::Duration::from_std(args.since)
            .map_err(|_| Error::Config("--since is too long".into()))?;
    let report = report::build(&policies, &catalog, since, now)?;
    let json = report::to_json(&report);
    let text = match args.format {
        Format::Md => report::to_markdown(&report),
        Format::Html => report::to_html(&report),
        Format::Json => json.clone(),
    };
    let Some(out) = args.out else {
        print!("{text}");
        return Ok(0);
    };
    write(&out, &text)?;
    if let Some(key) = &args.sign {
        let json_path = match args.format {
            Format::Json => out.clone(),
            _ => PathBuf::from(format!("{}.json", out.display())),
        };
        if !matches!(args.format, Format::Json) {
            write(&json_path, &json)?;
        }
        let sig = lifeboat::keys::sign_detached(key, json.as_bytes())?;
        let sig_path = PathBuf::from(format!("{}.asc", json_path.display()));
        write(&sig_path, &sig)?;
        eprintln!(
            "signed: gpg --verify {} {}",
            sig_path.display(),
            json_path.display()
        );
    }
    Ok(0)
}

fn write(path: &std::path::Path, text: &str) -> lifeboat::Result<()> {
    std::fs::write(path, text).map_err(|e| Error::io("cannot write", path, e))
}
