//! Running the PostgreSQL tools: finding them, passing credentials through the environment
//! only, a child's stdout as a reader whose non-zero exit is a read error at the end of the
//! stream, a `psql` session driven over pipes, and running server binaries as the server's
//! OS user.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;

use super::PgUrl;
use crate::error::{Error, Result};

/// Directory of the PostgreSQL binaries to prefer (e.g. `/usr/lib/postgresql/15/bin`).
const BINDIR_ENV: &str = "LIFEBOAT_PG_BINDIR";
/// Most of a child's stderr kept for the error message.
const STDERR_KEEP: usize = 16 * 1024;

/// Removes secrets (passwords) from text that is about to become a message.
#[derive(Clone, Default)]
pub(crate) struct Masker(Vec<String>);

impl Masker {
    pub(crate) fn for_urls(urls: &[&PgUrl]) -> Self {
        Masker(urls.iter().flat_map(|u| u.secrets()).collect())
    }

    pub(crate) fn mask(&self, text: &str) -> String {
        let mut s = text.to_string();
        for secret in &self.0 {
            s = s.replace(secret.as_str(), "***");
        }
        s
    }
}

/// A child's stderr as one line: trimmed lines joined, masked, shortened.
fn one_line(stderr: &str, masker: &Masker) -> String {
    let joined: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut line = masker.mask(&joined.join(" "));
    if line.chars().count() > 600 {
        line = line.chars().take(600).collect::<String>() + "…";
    }
    line
}

/// The directories where PostgreSQL binaries are looked for, best first: `$LIFEBOAT_PG_BINDIR`,
/// then the Debian/Ubuntu and PGDG layouts for `version` (or the newest installed).
fn bindirs(version: Option<&str>) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os(BINDIR_ENV).filter(|d| !d.is_empty()) {
        dirs.push(PathBuf::from(d));
    }
    let mut versioned: Vec<(u32, PathBuf)> = Vec::new();
    for (root, prefix, suffix) in [
        ("/usr/lib/postgresql", "", "bin"),
        ("/usr", "pgsql-", "bin"),
    ] {
        let Ok(entries) = std::fs::read_dir(root) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(v) = name.strip_prefix(prefix) else {
                continue;
            };
            let Ok(major) = v.parse::<u32>() else {
                continue;
            };
            if version.is_none_or(|want| want == v) {
                versioned.push((major, e.path().join(suffix)));
            }
        }
    }
    versioned.sort_by_key(|v| std::cmp::Reverse(v.0));
    dirs.extend(versioned.into_iter().map(|(_, d)| d));
    dirs
}

/// A client tool (`pg_dump`, `pg_restore`, `psql`, `pg_basebackup`): `$LIFEBOAT_PG_BINDIR`,
/// then `PATH`, then the newest installed PostgreSQL.
pub(crate) fn client_tool(name: &str) -> Result<PathBuf> {
    let env_dir = std::env::var_os(BINDIR_ENV).filter(|d| !d.is_empty());
    let path_dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    env_dir
        .map(PathBuf::from)
        .into_iter()
        .chain(path_dirs)
        .chain(bindirs(None))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::Config(format!(
                "{name} is not installed (not on PATH, nor in /usr/lib/postgresql/*/bin); install the PostgreSQL client tools, or set {BINDIR_ENV}"
            ))
        })
}

/// A server tool (`pg_ctl`, `postgres`) of major `version` (from a data directory's
/// `PG_VERSION`), which must match the data directory.
pub(crate) fn server_tool(name: &str, version: &str) -> Result<PathBuf> {
    bindirs(Some(version))
        .into_iter()
        .chain(
            std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
                .unwrap_or_default(),
        )
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::Config(format!(
                "{name} of PostgreSQL {version} is not installed (looked in /usr/lib/postgresql/{version}/bin, /usr/pgsql-{version}/bin and PATH); install the PostgreSQL {version} server, or set {BINDIR_ENV}"
            ))
        })
}

/// A command for a client tool connecting to `url`: the password (if the URL has one) goes
/// through `PGPASSWORD`, never the command line; no prompt (`-w` is added by callers); a
/// connection timeout unless the environment sets one.
pub(crate) fn client_command(tool: &Path, url: &PgUrl) -> Command {
    let mut cmd = Command::new(tool);
    if let Some(pw) = url.password() {
        cmd.env("PGPASSWORD", pw);
    }
    if std::env::var_os("PGCONNECT_TIMEOUT").is_none() {
        cmd.env("PGCONNECT_TIMEOUT", "15");
    }
    cmd.stdin(Stdio::null());
    cmd
}

fn spawn_error(cmd: &Command, e: io::Error) -> Error {
    Error::Config(format!(
        "cannot run {}: {e}",
        Path::new(cmd.get_program()).display()
    ))
}

/// Collects a child's stderr on its own thread (so the child never blocks on it), keeping
/// the last [`STDERR_KEEP`] bytes.
fn collect_stderr(stderr: Option<std::process::ChildStderr>) -> Option<JoinHandle<String>> {
    let mut stderr = stderr?;
    Some(std::thread::spawn(move || {
        let mut kept: Vec<u8> = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match stderr.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    kept.extend_from_slice(&buf[..n]);
                    if kept.len() > 2 * STDERR_KEEP {
                        kept.drain(..kept.len() - STDERR_KEEP);
                    }
                }
            }
        }
        String::from_utf8_lossy(&kept).into_owned()
    }))
}

fn failure(what: &str, status: ExitStatus, stderr: &str, masker: &Masker) -> String {
    let detail = one_line(stderr, masker);
    if detail.is_empty() {
        format!("{what} failed ({status})")
    } else {
        format!("{what} failed: {detail}")
    }
}

/// A running child whose stdout is read as a stream. A non-zero exit becomes a read error
/// at the end of the stream, carrying its (masked, one-line) stderr. Dropped early, the
/// child is killed.
pub(crate) struct ChildOutput {
    child: Child,
    stdout: ChildStdout,
    stderr: Option<JoinHandle<String>>,
    what: String,
    masker: Masker,
    finished: bool,
}

impl ChildOutput {
    pub(crate) fn spawn(mut cmd: Command, what: &str, masker: Masker) -> Result<Self> {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| spawn_error(&cmd, e))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = collect_stderr(child.stderr.take());
        Ok(ChildOutput {
            child,
            stdout,
            stderr,
            what: what.to_string(),
            masker,
            finished: false,
        })
    }

    /// Waits for the child; its failure as a one-line message.
    fn wait(&mut self) -> std::result::Result<(), String> {
        self.finished = true;
        let status = self
            .child
            .wait()
            .map_err(|e| format!("{}: cannot wait: {e}", self.what))?;
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        if status.success() {
            Ok(())
        } else {
            Err(failure(&self.what, status, &stderr, &self.masker))
        }
    }

    /// Reads nothing more; waits for the child and reports how it ended.
    pub(crate) fn finish(mut self) -> Result<()> {
        if self.finished {
            return Ok(());
        }
        self.wait().map_err(Error::Runtime)
    }
}

impl Read for ChildOutput {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.finished {
            return Ok(0);
        }
        let n = self.stdout.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.wait().map_err(io::Error::other)?;
        }
        Ok(n)
    }
}

impl Drop for ChildOutput {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A child fed through its stdin (`pg_restore` reading a dump). Dropped without
/// [`ChildInput::finish`], it is killed.
pub(crate) struct ChildInput {
    child: Child,
    stdin: Option<ChildStdin>,
    stderr: Option<JoinHandle<String>>,
    what: String,
    masker: Masker,
    finished: bool,
}

impl ChildInput {
    pub(crate) fn spawn(mut cmd: Command, what: &str, masker: Masker) -> Result<Self> {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| spawn_error(&cmd, e))?;
        let stdin = child.stdin.take();
        let stderr = collect_stderr(child.stderr.take());
        Ok(ChildInput {
            child,
            stdin,
            stderr,
            what: what.to_string(),
            masker,
            finished: false,
        })
    }

    /// Closes stdin, waits, and reports the child's failure (with its stderr) if any.
    pub(crate) fn finish(mut self) -> Result<()> {
        drop(self.stdin.take());
        self.finished = true;
        let status = self
            .child
            .wait()
            .map_err(|e| Error::Runtime(format!("{}: cannot wait: {e}", self.what)))?;
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        if status.success() {
            Ok(())
        } else {
            Err(Error::Runtime(failure(
                &self.what,
                status,
                &stderr,
                &self.masker,
            )))
        }
    }
}

impl Write for ChildInput {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.stdin.as_mut() {
            Some(s) => s.write(buf),
            None => Err(io::ErrorKind::BrokenPipe.into()),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self.stdin.as_mut() {
            Some(s) => s.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for ChildInput {
    fn drop(&mut self) {
        if !self.finished {
            drop(self.stdin.take());
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs a command to completion; returns its stdout, or its failure as one line.
pub(crate) fn run(mut cmd: Command, what: &str, masker: &Masker) -> Result<String> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let out = cmd.output().map_err(|e| spawn_error(&cmd, e))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(Error::Runtime(failure(
            what,
            out.status,
            &String::from_utf8_lossy(&out.stderr),
            masker,
        )))
    }
}

/// Marks the end of one query's output in a [`Psql`] session.
const END: &str = "__lifeboat_end_of_result__";

/// A `psql` session driven over pipes: one connection, statements sent one at a time, so a
/// transaction (and the snapshot it exported) stays open between them.
pub(crate) struct Psql {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    stderr: Option<JoinHandle<String>>,
    what: String,
    masker: Masker,
    closed: bool,
}

impl Psql {
    /// Connects to `url`; `what` names the server in errors (e.g. "PostgreSQL at …").
    pub(crate) fn open(url: &PgUrl, what: &str) -> Result<Self> {
        let mut cmd = client_command(&client_tool("psql")?, url);
        cmd.args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-w",
            "-v",
            "ON_ERROR_STOP=1",
            "-F",
            "\t",
        ])
        .arg("-d")
        .arg(url.conninfo())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| spawn_error(&cmd, e))?;
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let stderr = collect_stderr(child.stderr.take());
        let mut session = Psql {
            child,
            stdin,
            stdout,
            stderr,
            what: what.to_string(),
            masker: Masker::for_urls(&[url]),
            closed: false,
        };
        // Proves the connection (psql exits at once when it cannot connect).
        session.query("SELECT 1;")?;
        Ok(session)
    }

    /// The failure of a session that ended: psql's stderr as one line.
    fn ended(&mut self) -> Error {
        drop(self.stdin.take());
        self.closed = true;
        let status = self.child.wait();
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let detail = one_line(&stderr, &self.masker);
        let detail = detail
            .strip_prefix("psql: error: ")
            .unwrap_or(&detail)
            .to_string();
        match (detail.is_empty(), status) {
            (false, _) => Error::Runtime(format!("{}: {detail}", self.what)),
            (true, Ok(s)) => Error::Runtime(format!("{}: psql ended ({s})", self.what)),
            (true, Err(e)) => Error::Runtime(format!("{}: psql ended: {e}", self.what)),
        }
    }

    /// Runs `sql` (one or more statements) and returns the rows of its output, each split on
    /// tabs. An SQL error ends the session and is returned.
    pub(crate) fn query(&mut self, sql: &str) -> Result<Vec<Vec<String>>> {
        let script = format!("{sql}\n\\echo {END}\n");
        let sent = match self.stdin.as_mut() {
            Some(stdin) => stdin
                .write_all(script.as_bytes())
                .and_then(|_| stdin.flush()),
            None => Err(io::ErrorKind::BrokenPipe.into()),
        };
        if sent.is_err() {
            return Err(self.ended());
        }
        let mut rows = Vec::new();
        let mut line = String::new();
        loop {
            line.clear();
            match self.stdout.read_line(&mut line) {
                Ok(0) | Err(_) => return Err(self.ended()),
                Ok(_) => {}
            }
            let l = line.trim_end_matches(['\n', '\r']);
            if l == END {
                return Ok(rows);
            }
            if !l.is_empty() {
                rows.push(l.split('\t').map(str::to_string).collect());
            }
        }
    }

    /// The single value of a one-row, one-column query.
    pub(crate) fn value(&mut self, sql: &str) -> Result<String> {
        let rows = self.query(sql)?;
        rows.into_iter()
            .next()
            .and_then(|r| r.into_iter().next())
            .ok_or_else(|| Error::Runtime(format!("{}: no result from a query", self.what)))
    }

    /// Ends the session (any open transaction is rolled back).
    pub(crate) fn close(mut self) -> Result<()> {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"\\q\n");
        }
        self.closed = true;
        let _ = self.child.wait();
        Ok(())
    }
}

impl Drop for Psql {
    fn drop(&mut self) {
        if !self.closed {
            drop(self.stdin.take());
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Quotes `s` as an SQL string literal.
pub(crate) fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Quotes `s` as an SQL identifier.
pub(crate) fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// The OS user PostgreSQL server binaries run as: when lifeboat runs as root, the `postgres`
/// user (the server refuses to run as root); otherwise lifeboat's own user (`None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OsUser {
    pub uid: u32,
    pub gid: u32,
}

fn effective_uid() -> Option<u32> {
    if let Ok(m) = std::fs::metadata("/proc/self") {
        return Some(m.uid());
    }
    let out = Command::new("id").arg("-u").output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

pub(crate) fn server_user() -> Result<Option<OsUser>> {
    if effective_uid() != Some(0) {
        return Ok(None);
    }
    let out = Command::new("getent")
        .args(["passwd", "postgres"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::Runtime(format!("cannot run getent: {e}")))?;
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    let fields: Vec<&str> = line.trim().split(':').collect();
    match (
        fields.get(2).and_then(|f| f.parse().ok()),
        fields.get(3).and_then(|f| f.parse().ok()),
    ) {
        (Some(uid), Some(gid)) if out.status.success() => Ok(Some(OsUser { uid, gid })),
        _ => Err(Error::Config(
            "lifeboat runs as root, so PostgreSQL server files belong to the `postgres` OS user, which does not exist; install PostgreSQL or run lifeboat as the server's user".into(),
        )),
    }
}

/// A command running `tool` as `user` (via `setpriv`, no supplementary groups), or as
/// lifeboat's own user.
pub(crate) fn server_command(tool: &Path, user: Option<OsUser>) -> Command {
    match user {
        None => Command::new(tool),
        Some(u) => {
            let mut cmd = Command::new("setpriv");
            cmd.arg(format!("--reuid={}", u.uid))
                .arg(format!("--regid={}", u.gid))
                .arg("--clear-groups")
                .arg("--")
                .arg(tool);
            cmd
        }
    }
}

/// Gives `root` and everything under it to `user` (symlinks themselves, not their targets).
pub(crate) fn chown_tree(root: &Path, user: OsUser) -> Result<()> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        std::os::unix::fs::lchown(&path, Some(user.uid), Some(user.gid))
            .map_err(|e| Error::io("cannot change the owner of", &path, e))?;
        let meta =
            std::fs::symlink_metadata(&path).map_err(|e| Error::io("cannot stat", &path, e))?;
        if meta.is_dir() {
            for e in std::fs::read_dir(&path).map_err(|e| Error::io("cannot read", &path, e))? {
                stack.push(e.map_err(|e| Error::io("cannot read", &path, e))?.path());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_becomes_one_masked_line() {
        let url = PgUrl::parse("postgresql://u:hunter2@h/db").unwrap();
        let m = Masker::for_urls(&[&url]);
        let line = one_line(
            "pg_dump: error: connection failed\n\tpassword hunter2 rejected\n\n",
            &m,
        );
        assert_eq!(
            line,
            "pg_dump: error: connection failed password *** rejected"
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn child_failure_is_a_read_error_at_the_end() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "printf data; echo 'it broke' >&2; exit 3"]);
        let mut out = ChildOutput::spawn(cmd, "sh", Masker::default()).unwrap();
        let mut got = Vec::new();
        let err = out.read_to_end(&mut got).unwrap_err();
        assert_eq!(got, b"data");
        assert!(err.to_string().contains("sh failed: it broke"), "{err}");
    }
}
