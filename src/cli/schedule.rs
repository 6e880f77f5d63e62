//! `lifeboat schedule [--crontab | --systemd]`: prints what to install so that
//! `lifeboat run --due` runs every few minutes, with absolute paths.

use std::path::{Path, PathBuf};

use lifeboat::Error;

use super::Env;

#[derive(clap::Args)]
pub struct Args {
    /// Print a crontab line (the default).
    #[arg(long, conflicts_with = "systemd")]
    crontab: bool,
    /// Print a systemd service and timer.
    #[arg(long)]
    systemd: bool,
    /// Minutes between runs.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=59))]
    every: u32,
    /// Environment file with LIFEBOAT_IDENTITY_FILE, webhook URLs, credentials (0600).
    #[arg(long, default_value = "/etc/lifeboat/env", value_name = "FILE")]
    env_file: PathBuf,
}

fn absolute(p: &Path) -> lifeboat::Result<PathBuf> {
    std::path::absolute(p).map_err(|e| Error::io("cannot resolve", p, e))
}

pub fn run(env: &Env, args: Args) -> lifeboat::Result<u8> {
    let exe = std::env::current_exe()
        .map_err(|e| Error::Runtime(format!("cannot find own path: {e}")))?;
    let workdir = std::env::current_dir()
        .map_err(|e| Error::Runtime(format!("cannot read working directory: {e}")))?;
    let policies = absolute(&env.policies)?;
    let state = absolute(env.state.root())?;
    // The crontab line appends to <state>/run.log: the shell cannot open it, and so never
    // runs lifeboat, while the directory does not exist.
    env.state.ensure()?;
    let metrics = state.join("lifeboat.prom");
    // systemd wants an absolute EnvironmentFile=, and sh's `.` searches PATH for a bare name.
    let env_file = absolute(&args.env_file)?;
    let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
    let command = format!(
        "{} --policies {} --state-dir {} --log-format json --metrics-file {} run --due",
        exe.display(),
        policies.display(),
        state.display(),
        metrics.display()
    );
    if args.systemd {
        println!("# /etc/systemd/system/lifeboat.service");
        println!(
            "[Unit]\nDescription=lifeboat: back up, rotate and drill what is due\nAfter=network-online.target\n"
        );
        println!(
            "[Service]\nType=oneshot\nUser={user}\nWorkingDirectory={}\nEnvironmentFile=-{}\nExecStart={command}\nNice=10\nIOSchedulingClass=best-effort\n",
            workdir.display(),
            env_file.display()
        );
        println!("# /etc/systemd/system/lifeboat.timer");
        println!(
            "[Unit]\nDescription=Run lifeboat every {} minutes\n",
            args.every
        );
        println!(
            "[Timer]\nOnCalendar=*:0/{}\nPersistent=true\nRandomizedDelaySec=30\n\n[Install]\nWantedBy=timers.target",
            args.every
        );
        println!("\n# then: systemctl daemon-reload && systemctl enable --now lifeboat.timer");
    } else {
        println!("# crontab -e (user {user}); output goes to a log file cron does not mail");
        println!(
            "*/{} * * * * cd {} && {{ [ -r {env} ] && set -a && . {env} && set +a; }}; {command} >> {} 2>&1",
            args.every,
            workdir.display(),
            state.join("run.log").display(),
            env = env_file.display()
        );
    }
    Ok(0)
}
