//! Argument parsing (clap derive) and dispatch to one file per verb. Nothing here knows how
//! a tar or a manifest is built; it calls `lifeboat::…` and prints.

mod backup;
mod catalog;
mod drill;
mod keygen;
mod list;
mod policy;
mod report;
mod restore;
mod rotate;
mod run;
mod schedule;
mod verify;
mod wal;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use lifeboat::{Clock, Error, Identities, StateDir};

/// Backup and disaster recovery that proves, with a stopwatch, that restores work.
#[derive(Parser)]
#[command(name = "lifeboat", version, about, long_about = None)]
#[command(
    after_help = "Exit codes: 0 ok, 1 a check failed, 2 usage or configuration error, \
3 runtime failure (I/O, network), 4 another run holds the policy's lock."
)]
pub struct Cli {
    /// Directory of policy files (*.toml).
    #[arg(long, global = true, default_value = "policies", value_name = "DIR")]
    policies: PathBuf,
    /// State directory (catalog, locks, scratch) [default: $XDG_STATE_HOME/lifeboat].
    #[arg(long, global = true, env = "LIFEBOAT_STATE_DIR", value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Identity file (age identity or OpenPGP secret key) for restore and verification;
    /// repeatable. LIFEBOAT_IDENTITY_FILE may list several, separated by ':'.
    #[arg(
        long,
        global = true,
        env = "LIFEBOAT_IDENTITY_FILE",
        value_delimiter = ':',
        value_name = "FILE",
        hide_env_values = true
    )]
    identity: Vec<PathBuf>,
    /// Log format on stderr: human, or json (one object per line, for cron logs).
    #[arg(
        long,
        global = true,
        env = "LIFEBOAT_LOG_FORMAT",
        value_enum,
        default_value = "human"
    )]
    log_format: LogFormat,
    /// After backup, rotate, drill and run: write Prometheus metrics to FILE (atomically),
    /// for node_exporter's textfile collector.
    #[arg(
        long,
        global = true,
        env = "LIFEBOAT_METRICS_FILE",
        value_name = "FILE"
    )]
    metrics_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a key pair (private file 0600, public beside it as FILE.pub).
    Keygen(keygen::Args),
    /// Back up the named policies now.
    Backup(backup::Args),
    /// List backups known to the catalog.
    List(list::Args),
    /// Verify backups: checksum (no key needed), full, or restore.
    Verify(verify::Args),
    /// Restore a backup (the newest by default), or an archive made by standard tools.
    Restore(restore::Args),
    /// Restore into scratch space, time it, and check RTO/RPO against the policy.
    Drill(drill::Args),
    /// Apply the policies' retention rules: delete old backups from every store.
    Rotate(rotate::Args),
    /// The DR report over a period: RTO/RPO measured vs target, gaps, trends, verdicts.
    Report(report::Args),
    /// Back up, rotate and drill whatever policy is due (the one job cron calls).
    Run(run::Args),
    /// Print the crontab line or the systemd units that drive `run --due`.
    Schedule(schedule::Args),
    /// Policy files.
    #[command(subcommand)]
    Policy(policy::Command),
    /// The local catalog.
    #[command(subcommand)]
    Catalog(catalog::Command),
    /// Archive one PostgreSQL WAL file: archive_command = 'lifeboat --policies DIR wal-push NAME %p'.
    WalPush(wal::PushArgs),
    /// Bring back one archived WAL file: restore_command = 'lifeboat … wal-fetch NAME %f %p'.
    WalFetch(wal::FetchArgs),
}

/// What every verb gets from the edge: clock, state directory, policies dir, identities.
pub struct Env {
    pub clock: Clock,
    pub state: StateDir,
    pub policies: PathBuf,
    identity_files: Vec<PathBuf>,
}

impl Env {
    /// Loads the identity files (only verbs that decrypt call this).
    pub fn identities(&self) -> lifeboat::Result<Identities> {
        Identities::load(&self.identity_files)
    }

    /// The identity files given (for proving each one alone).
    pub fn identity_files(&self) -> &[PathBuf] {
        &self.identity_files
    }
}

/// Gives memory freed by one policy's run back to the system before the next policy's, so
/// that a run over many policies peaks no higher than its largest one (about 2 MiB lower
/// for the benchmark's three, benches/pipeline.rs).
fn release_freed_memory() {
    // SAFETY: malloc_trim only returns free heap pages to the kernel.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::malloc_trim(0);
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            report(&e);
            ExitCode::from(e.kind().exit_code())
        }
    }
}

/// Whether logs are JSON lines (set once at start-up).
static JSON_LOGS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

fn init_logging(format: LogFormat) {
    let json = format == LogFormat::Json;
    let _ = JSON_LOGS.set(json);
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    // The S3 client's stack logs connection churn (retried by lifeboat) at INFO; lifeboat
    // reports failures itself, as one line, so only its errors get through.
    let quiet = tracing_subscriber::filter::Targets::new()
        .with_default(tracing::Level::TRACE)
        .with_target("aws", tracing::Level::ERROR)
        .with_target("hyper", tracing::Level::ERROR)
        .with_target("h2", tracing::Level::ERROR)
        .with_target("rustls", tracing::Level::ERROR);
    if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .finish()
            .with(quiet)
            .init();
    } else {
        builder.finish().with(quiet).init();
    }
}

/// Prints an error as one line on stderr (a JSON object with `--log-format json`).
pub fn report(e: &Error) {
    let line = e.to_string().replace('\n', " ");
    if JSON_LOGS.get().copied().unwrap_or(false) {
        tracing::error!(exit_code = e.kind().exit_code(), "{line}");
    } else {
        let _ = writeln!(std::io::stderr(), "lifeboat: error: {line}");
    }
}

fn run(cli: Cli) -> lifeboat::Result<u8> {
    let env = Env {
        clock: Clock::from_env()?,
        state: StateDir::resolve(cli.state_dir)?,
        policies: cli.policies,
        identity_files: cli.identity,
    };
    let writes_metrics = matches!(
        cli.command,
        Command::Backup(_) | Command::Drill(_) | Command::Rotate(_) | Command::Run(_)
    );
    let code = dispatch(&env, cli.command)?;
    if let (Some(path), true) = (&cli.metrics_file, writes_metrics) {
        let policies = lifeboat::policy::load_dir(&env.policies)?;
        let catalog = lifeboat::Catalog::open(&env.state)?;
        lifeboat::metrics::write(path, &policies, &catalog)?;
    }
    Ok(code)
}

fn dispatch(env: &Env, command: Command) -> lifeboat::Result<u8> {
    match command {
        Command::Keygen(a) => keygen::run(env, a),
        Command::Backup(a) => backup::run(env, a),
        Command::List(a) => list::run(env, a),
        Command::Verify(a) => verify::run(env, a),
        Command::Restore(a) => restore::run(env, a),
        Command::WalPush(a) => wal::push(env, a),
        Command::WalFetch(a) => wal::fetch(env, a),
        Command::Drill(a) => drill::run(env, a),
        Command::Rotate(a) => rotate::run(env, a),
        Command::Report(a) => report::run(env, a),
        Command::Run(a) => run::run(env, a),
        Command::Schedule(a) => schedule::run(env, a),
        Command::Policy(c) => policy::run(env, c),
        Command::Catalog(c) => catalog::run(env, c),
    }
}

/// Prints a value as pretty JSON on stdout.
pub fn print_json<T: serde::Serialize>(value: &T) {
    let text = serde_json::to_string_pretty(value).expect("serializable");
    println!("{text}");
}

/// Formats a byte count for humans.
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A progress bar on stderr when it is a terminal and the output is not JSON; otherwise a
/// silent handle. Call `finish` on the returned bar (if any) when done.
pub fn progress(
    json: bool,
    label: &str,
) -> (lifeboat::progress::Progress, Option<indicatif::ProgressBar>) {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    if json || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return (lifeboat::progress::Progress::default(), None);
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{prefix} {spinner} {bytes} {binary_bytes_per_sec}")
            .expect("valid template"),
    );
    bar.set_prefix(label.to_string());
    struct Sink(ProgressBar);
    impl lifeboat::progress::ProgressSink for Sink {
        fn total(&self, bytes: u64) {
            self.0.set_length(bytes);
            self.0.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
        }
        fn advance(&self, bytes: u64) {
            self.0.inc(bytes);
        }
    }
    let progress = lifeboat::progress::Progress::new(std::sync::Arc::new(Sink(bar.clone())));
    (progress, Some(bar))
}
