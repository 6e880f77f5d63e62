//! PostgreSQL: logical dumps and physical base backups with archived WAL.
//!
//! **Logical** (`mode = "logical"`): a `psql` session opens a repeatable-read transaction and
//! exports its snapshot; `pg_dump --snapshot` dumps exactly that state while the same session
//! counts every table's rows in it (the counts the private manifest records), and the
//! snapshot's time is `captured_at`. The dump is uncompressed (`-Z0`: pg_dump's zlib runs at
//! 32–51 MB/s, the uncompressed stream at ~320 MB/s) and lifeboat's zstd stage compresses it.
//! The custom format streams, with no temporary file, as numbered tar entries
//! `dump.pgcustom.000001`, `…000002`, … (a tar entry needs its size up front, so the stream is
//! cut in parts; concatenated in order they are the dump). With `jobs = N` the directory
//! format is dumped in parallel into a private temporary directory, then archived as
//! `dump.pgdir/…`.
//!
//! **Physical** (`mode = "physical"`): `pg_basebackup -Ft -D - -X none` streams the cluster
//! as a tar (the payload's tar is exactly that); the WAL comes from the archive that
//! `lifeboat wal-push` fills (see [`crate::wal`]). `pg_basebackup` returns once the WAL the
//! backup needs is archived, so `captured_at` is the end of the base backup.
//!
//! Credentials never reach a command line or a message: a password in a URL goes to the
//! tools as `PGPASSWORD`, URLs are shown masked, and the tools' stderr is masked too.

mod proc;
mod url;

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

pub use url::PgUrl;

use self::proc::{
    ChildInput, ChildOutput, Masker, OsUser, Psql, chown_tree, client_command, client_tool, ident,
    literal, run, server_command, server_tool, server_user,
};
use super::Captured;
use crate::clock::Clock;
use crate::error::{Error, IoContext, Result};
use crate::inventory::{self, Found};
use crate::keys::Identities;
use crate::manifest::{Private, TableCount};
use crate::pipe::{self, PipeReader, PipeWriter};
use crate::policy::{PgMode, PgSource, Policy};
use crate::progress::Progress;
use crate::restore::{RestoreOptions, RestoreOutcome, Staging};
use crate::store::Store;

/// Prefix of the tar entries of a custom-format dump (`dump.pgcustom.000001`, …).
pub const CUSTOM_ENTRY: &str = "dump.pgcustom";
/// The directory of a directory-format dump in the tar.
pub const DIR_ENTRY: &str = "dump.pgdir";
/// Size of one tar entry of a streamed custom-format dump (held in memory once).
const PART: usize = 16 << 20;

/// A started source: its time, its tar stream, and the thread producing it.
pub(super) struct Started {
    pub captured_at: DateTime<Utc>,
    pub reader: PipeReader,
    pub handle: JoinHandle<Result<Captured>>,
}

fn server_what(url: &PgUrl) -> String {
    format!("PostgreSQL at {url}")
}

/// The same server, a database to connect to for administration (create, drop, rename).
fn admin_url(url: &PgUrl, avoid: Option<&str>) -> PgUrl {
    match url.dbname() {
        Some(db) if Some(db.as_str()) != avoid => url.clone(),
        _ if avoid == Some("postgres") => url.with_dbname("template1"),
        _ => url.with_dbname("postgres"),
    }
}

/// Starts a backup of `pg`; temporary files (a directory-format dump) go under `scratch`.
pub(super) fn start(pg: &PgSource, scratch: &Path, clock: &Clock) -> Result<Started> {
    match pg.mode {
        PgMode::Logical => start_logical(pg, scratch),
        PgMode::Physical => start_physical(pg, clock),
    }
}

// ---- logical backup -----------------------------------------------------------------------

/// Lists one `SELECT 'schema.table', count(*) FROM …` per user table (not those of
/// extensions, which `pg_dump` does not dump).
const COUNT_STATEMENTS: &str = "SELECT format('SELECT %L::text, count(*) FROM %I.%I', \
n.nspname || '.' || c.relname, n.nspname, c.relname) \
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%' \
AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass \
AND d.objid = c.oid AND d.deptype = 'e') ORDER BY n.nspname, c.relname;";

/// Every user table of the session's database (`schema.table`) with its row count, in the
/// session's snapshot.
fn table_counts(session: &mut Psql) -> Result<Vec<TableCount>> {
    let statements: Vec<String> = session
        .query(COUNT_STATEMENTS)?
        .into_iter()
        .filter_map(|r| r.into_iter().next())
        .collect();
    let mut tables = Vec::new();
    for chunk in statements.chunks(200) {
        let sql = chunk.join("\nUNION ALL\n") + ";";
        for row in session.query(&sql)? {
            if let [name, rows] = row.as_slice() {
                let rows = rows.parse().map_err(|_| {
                    Error::Runtime(format!("unexpected row count {rows:?} for table {name:?}"))
                })?;
                tables.push(TableCount {
                    name: name.clone(),
                    rows,
                });
            }
        }
    }
    tables.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(tables)
}

fn parse_epoch(text: &str) -> Result<DateTime<Utc>> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| Error::Runtime(format!("unexpected server time {text:?}")))?;
    DateTime::from_timestamp_micros((secs * 1e6).round() as i64)
        .ok_or_else(|| Error::Runtime(format!("unexpected server time {text:?}")))
}

fn start_logical(pg: &PgSource, scratch: &Path) -> Result<Started> {
    let url = pg.url.clone();
    let what = server_what(&url);
    let mut session = Psql::open(&url, &what)?;
    session.query("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;")?;
    // The snapshot is taken by this statement: its start is the data's time.
    let rows = session
        .query("SELECT pg_export_snapshot(), extract(epoch FROM statement_timestamp())::text;")?;
    let (snapshot, captured_at) = match rows.first().map(Vec::as_slice) {
        Some([snap, epoch]) => (snap.clone(), parse_epoch(epoch)?),
        _ => {
            return Err(Error::Runtime(format!("{what}: cannot export a snapshot")));
        }
    };
    let masker = Masker::for_urls(&[&url]);
    let mut cmd = client_command(&client_tool("pg_dump")?, &url);
    // -Z0: lifeboat's zstd stage compresses, far faster than pg_dump's zlib.
    cmd.args(["-w", "-Z0", "--snapshot", &snapshot]);
    let (reader, handle) = match pg.jobs {
        None => {
            cmd.args(["-Fc", "-d", &url.conninfo()]);
            let dump = ChildOutput::spawn(cmd, "pg_dump", masker)?;
            pipe::spawn(move |w: &mut PipeWriter| {
                let counter = spawn_counts(session);
                let streamed = write_custom_tar(dump, captured_at, w);
                let counted = join_counts(counter);
                streamed?;
                Ok(Captured {
                    tables: counted?,
                    ..Captured::default()
                })
            })
        }
        Some(jobs) => {
            crate::state::create_private_dir(scratch)?;
            // 0700, removed when dropped, on every path.
            let tmp = tempfile::Builder::new()
                .prefix("pgdump-")
                .tempdir_in(scratch)
                .at("cannot create a dump directory in", scratch)?;
            cmd.args(["-Fd", "-j", &jobs.to_string(), "-f"])
                .arg(tmp.path().join(DIR_ENTRY))
                .args(["-d", &url.conninfo()]);
            pipe::spawn(move |w: &mut PipeWriter| {
                let counter = spawn_counts(session);
                let dumped = run(cmd, "pg_dump", &masker);
                let counted = join_counts(counter);
                dumped?;
                let tables = counted?;
                write_dir_tar(&tmp.path().join(DIR_ENTRY), captured_at, w)?;
                drop(tmp);
                Ok(Captured {
                    tables,
                    ..Captured::default()
                })
            })
        }
    };
    Ok(Started {
        captured_at,
        reader,
        handle,
    })
}

type Counts = JoinHandle<(Psql, Result<Vec<TableCount>>)>;

/// Counts rows in the exporting session (its snapshot) while the dump runs.
fn spawn_counts(mut session: Psql) -> Counts {
    std::thread::spawn(move || {
        let counts = table_counts(&mut session);
        (session, counts)
    })
}

/// The counts; the session (and the transaction holding the snapshot) ends here, after
/// `pg_dump` finished.
fn join_counts(counter: Counts) -> Result<Vec<TableCount>> {
    let (session, counts) = counter
        .join()
        .map_err(|_| Error::Runtime("row counting thread panicked".into()))?;
    session.close()?;
    counts
}

fn entry_header(size: u64, mode: u32, mtime: DateTime<Utc>) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(size);
    header.set_mode(mode);
    header.set_mtime(mtime.timestamp().max(0) as u64);
    header
}

fn stream_err(e: io::Error) -> Error {
    Error::Runtime(format!("cannot stream the dump: {e}"))
}

/// Reads until `buf` is full or the stream ends; returns how much was read.
fn fill(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Streams a custom-format dump as tar entries of [`PART`] bytes (the last shorter). A
/// failed `pg_dump` fails the stream (its exit is a read error at the end).
fn write_custom_tar(mut dump: ChildOutput, mtime: DateTime<Utc>, w: &mut dyn Write) -> Result<()> {
    let mut builder = tar::Builder::new(w);
    let mut buf = vec![0u8; PART];
    let mut part = 0u32;
    loop {
        let n = fill(&mut dump, &mut buf).map_err(|e| Error::Runtime(e.to_string()))?;
        if n == 0 && part > 0 {
            break;
        }
        part += 1;
        let mut header = entry_header(n as u64, 0o600, mtime);
        builder
            .append_data(&mut header, format!("{CUSTOM_ENTRY}.{part:06}"), &buf[..n])
            .map_err(stream_err)?;
        if n < PART {
            break;
        }
    }
    dump.finish()?;
    builder.into_inner().map_err(stream_err)?;
    Ok(())
}

/// Archives a directory-format dump (flat: `toc.dat`, `NNNN.dat`, …) as `dump.pgdir/…`.
fn write_dir_tar(dir: &Path, mtime: DateTime<Utc>, w: &mut dyn Write) -> Result<()> {
    let mut builder = tar::Builder::new(w);
    let mut header = entry_header(0, 0o700, mtime);
    header.set_entry_type(tar::EntryType::Directory);
    builder
        .append_data(&mut header, format!("{DIR_ENTRY}/"), io::empty())
        .map_err(stream_err)?;
    let mut names: Vec<_> = fs::read_dir(dir)
        .at("cannot read dump directory", dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()
        .at("cannot read dump directory", dir)?;
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let file = fs::File::open(&path).at("cannot open", &path)?;
        let meta = file.metadata().at("cannot stat", &path)?;
        if !meta.is_file() {
            return Err(Error::Runtime(format!(
                "{} is not a file; pg_dump's directory format is flat",
                path.display()
            )));
        }
        let mut header = entry_header(meta.len(), 0o600, mtime);
        let name = name.to_string_lossy();
        builder
            .append_data(&mut header, format!("{DIR_ENTRY}/{name}"), file)
            .map_err(stream_err)?;
    }
    builder.into_inner().map_err(stream_err)?;
    Ok(())
}

// ---- physical backup ----------------------------------------------------------------------

fn start_physical(pg: &PgSource, clock: &Clock) -> Result<Started> {
    let url = pg.url.clone();
    let what = server_what(&url);
    let mut session = Psql::open(&admin_url(&url, None), &what)?;
    let archive_mode = session.value("SHOW archive_mode;")?;
    session.close()?;
    if archive_mode == "off" {
        return Err(Error::Config(format!(
            "{what} has archive_mode = off; a physical backup needs its WAL archived: set archive_mode = on and archive_command = 'lifeboat --policies DIR wal-push NAME %p', then restart the server"
        )));
    }
    let mut cmd = client_command(&client_tool("pg_basebackup")?, &url);
    // -X none: the WAL comes from the archive, and pg_basebackup returns only once the WAL
    // this backup needs is archived.
    cmd.args([
        "-w",
        "-D",
        "-",
        "-Ft",
        "-X",
        "none",
        "--checkpoint=fast",
        "-l",
        "lifeboat",
        "-d",
        &url.conninfo(),
    ]);
    let started = clock.now();
    let mut child = ChildOutput::spawn(cmd, "pg_basebackup", Masker::for_urls(&[&url]))?;
    let clock = *clock;
    let (reader, handle) = pipe::spawn(move |w: &mut PipeWriter| {
        io::copy(&mut child, w).map_err(|e| Error::Runtime(e.to_string()))?;
        child.finish()?;
        Ok(Captured {
            captured_at: Some(clock.now()),
            ..Captured::default()
        })
    });
    Ok(Started {
        captured_at: started,
        reader,
        handle,
    })
}

// ---- restoring a logical dump -------------------------------------------------------------

fn bad_archive(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Check(format!("{what} is not a valid archive: {e}"))
}

/// The name in a ustar header block.
fn entry_name(block: &[u8; 512]) -> String {
    let name = &block[..100];
    let end = name.iter().position(|&b| b == 0).unwrap_or(100);
    String::from_utf8_lossy(&name[..end]).into_owned()
}

/// Restores the logical dump in lifeboat's tar stream `r` into the (empty) database `url`:
/// a custom-format dump streams into `pg_restore`; a directory-format dump is unpacked into
/// a private temporary directory under `scratch` and restored with `jobs` jobs.
fn restore_dump(
    r: &mut dyn Read,
    url: &PgUrl,
    jobs: Option<u32>,
    scratch: &Path,
    what: &str,
) -> Result<()> {
    let mut head = [0u8; 512];
    r.read_exact(&mut head).map_err(|e| bad_archive(what, e))?;
    let name = entry_name(&head);
    let mut r = io::Cursor::new(head).chain(r);
    if name.starts_with(CUSTOM_ENTRY) {
        restore_custom(&mut r, url, what)
    } else if name.starts_with(DIR_ENTRY) {
        restore_directory(&mut r, url, jobs.unwrap_or(1), scratch, what)
    } else {
        Err(Error::Check(format!(
            "{what} holds {name:?}, not a PostgreSQL logical dump"
        )))
    }
}

fn restore_custom(r: &mut dyn Read, url: &PgUrl, what: &str) -> Result<()> {
    let mut cmd = client_command(&client_tool("pg_restore")?, url);
    cmd.args(["-w", "-Fc", "--exit-on-error", "-d", &url.conninfo()]);
    let mut input = ChildInput::spawn(cmd, "pg_restore", Masker::for_urls(&[url]))?;
    let mut archive = tar::Archive::new(r);
    let mut buf = vec![0u8; 256 * 1024];
    for (i, entry) in archive
        .entries()
        .map_err(|e| bad_archive(what, e))?
        .enumerate()
    {
        let mut entry = entry.map_err(|e| bad_archive(what, e))?;
        let path = entry.path().map_err(|e| bad_archive(what, e))?;
        let expected = format!("{CUSTOM_ENTRY}.{:06}", i + 1);
        if path.to_str() != Some(expected.as_str()) {
            return Err(Error::Check(format!(
                "{what}: entry {} where {expected} was expected",
                path.display()
            )));
        }
        loop {
            let n = match entry.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(bad_archive(what, e)),
            };
            if input.write_all(&buf[..n]).is_err() {
                // pg_restore stopped: its exit status and stderr say why.
                return Err(input.finish().err().unwrap_or_else(|| {
                    Error::Runtime("pg_restore stopped reading the dump".into())
                }));
            }
        }
    }
    input.finish()
}

fn restore_directory(
    r: &mut dyn Read,
    url: &PgUrl,
    jobs: u32,
    scratch: &Path,
    what: &str,
) -> Result<()> {
    crate::state::create_private_dir(scratch)?;
    let tmp = tempfile::Builder::new()
        .prefix("pgrestore-")
        .tempdir_in(scratch)
        .at("cannot create a restore directory in", scratch)?;
    crate::restore::unpack_tar(r, tmp.path(), what)?;
    let dir = tmp.path().join(DIR_ENTRY);
    if !dir.join("toc.dat").is_file() {
        return Err(Error::Check(format!(
            "{what}: {DIR_ENTRY}/toc.dat is missing; not a directory-format dump"
        )));
    }
    let mut cmd = client_command(&client_tool("pg_restore")?, url);
    cmd.args([
        "-w",
        "-Fd",
        "--exit-on-error",
        "-j",
        &jobs.to_string(),
        "-d",
        &url.conninfo(),
    ])
    .arg(&dir);
    run(cmd, "pg_restore", &Masker::for_urls(&[url]))?;
    Ok(())
}

/// Runs `sql` on `url` in a session of its own.
fn exec(url: &PgUrl, sql: &str) -> Result<Vec<Vec<String>>> {
    let mut s = Psql::open(url, &server_what(url))?;
    let rows = s.query(sql)?;
    s.close()?;
    Ok(rows)
}

fn short_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

/// A database lifeboat created (restore staging, drill scratch), dropped when this is
/// dropped unless kept or promoted.
struct TempDatabase {
    admin: PgUrl,
    name: String,
    armed: bool,
}

impl TempDatabase {
    fn create(admin: &PgUrl, prefix: &str) -> Result<Self> {
        let name = format!("{prefix}_{}", short_id());
        exec(
            admin,
            &format!("CREATE DATABASE {} TEMPLATE template0;", ident(&name)),
        )?;
        Ok(TempDatabase {
            admin: admin.clone(),
            name,
            armed: true,
        })
    }

    fn url(&self) -> PgUrl {
        self.admin.with_dbname(&self.name)
    }

    fn drop_now(mut self) -> Result<()> {
        self.armed = false;
        exec(
            &self.admin,
            &format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE);",
                ident(&self.name)
            ),
        )
        .map(drop)
    }

    fn disarm(mut self) -> String {
        self.armed = false;
        std::mem::take(&mut self.name)
    }
}

impl Drop for TempDatabase {
    fn drop(&mut self) {
        if self.armed {
            let _ = exec(
                &self.admin,
                &format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE);",
                    ident(&self.name)
                ),
            );
        }
    }
}

/// Counts user relations (tables, views, sequences…) in the database at `url`.
fn user_relations(url: &PgUrl) -> Result<u64> {
    let rows = exec(
        url,
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') \
         AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
         AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%';",
    )?;
    Ok(rows
        .first()
        .and_then(|r| r.first())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

/// Checks that every table recorded at backup time is in the database at `url` with its
/// row count; returns the tables found.
fn check_tables(url: &PgUrl, expected: &[TableCount]) -> Result<Vec<TableCount>> {
    let mut s = Psql::open(url, &server_what(url))?;
    let found = table_counts(&mut s)?;
    s.close()?;
    super::compare_tables(expected, &found)?;
    Ok(found)
}

/// The policy's `[verify]` expectations on the tables of a restored database. A table
/// named without a schema is in `public`.
fn check_expectations(policy: &Policy, found: &[TableCount]) -> Result<()> {
    crate::verify::check_tables(&policy.expectations, |t| {
        let name = if t.contains('.') {
            t.to_string()
        } else {
            format!("public.{t}")
        };
        found.iter().find(|c| c.name == name).map(|c| c.rows)
    })
}

// ---- `lifeboat restore` -------------------------------------------------------------------

/// A restore target as it may be shown or recorded: a database URL with its password
/// masked, or the path.
pub fn mask_target(target: &Path) -> String {
    match target.to_str().map(PgUrl::parse) {
        Some(Ok(url)) => url.masked(),
        _ => target.display().to_string(),
    }
}

/// Restores a PostgreSQL backup: a logical dump into the database `--to URL` (created;
/// an existing non-empty one only with `--force`), or a base backup into the data
/// directory `--to DIR`, set to recover with archived WAL (to `--at` when given).
pub(crate) fn restore(
    policy: &Policy,
    pg: &PgSource,
    id: Option<&str>,
    ids: &Identities,
    opts: &RestoreOptions,
) -> Result<RestoreOutcome> {
    match pg.mode {
        PgMode::Logical => restore_logical(policy, pg, id, ids, opts),
        PgMode::Physical => restore_physical(policy, id, ids, opts),
    }
}

fn restore_logical(
    policy: &Policy,
    pg: &PgSource,
    id: Option<&str>,
    ids: &Identities,
    opts: &RestoreOptions,
) -> Result<RestoreOutcome> {
    let started = Instant::now();
    if opts.at.is_some() {
        return Err(Error::Config(format!(
            "--at is for physical PostgreSQL policies (point-in-time recovery); policy {} is a logical dump, restored as it was at its snapshot",
            policy.name
        )));
    }
    let target = opts
        .target
        .to_str()
        .and_then(|t| PgUrl::parse(t).ok())
        .ok_or_else(|| {
            Error::Config(format!(
                "policy {} restores into a database: --to postgresql://user@host:port/newdb",
                policy.name
            ))
        })?;
    let Some(dbname) = target.dbname() else {
        return Err(Error::Config(format!(
            "--to {target} names no database; add it: postgresql://user@host:port/newdb"
        )));
    };
    let stores = inventory::open_selected(policy, opts.store.as_deref())?;
    let found = inventory::pick(policy, inventory::backups(policy, &stores)?, id)?;
    let payload = found.manifest.payload_for(ids)?;
    let private = found.manifest.read_private(ids)?;
    let admin = admin_url(&target, Some(&dbname));
    let exists = exec(
        &admin,
        &format!(
            "SELECT count(*) FROM pg_database WHERE datname = {};",
            literal(&dbname)
        ),
    )?
    .first()
    .and_then(|r| r.first())
    .is_some_and(|v| v != "0");
    let replaced = exists && user_relations(&target)? > 0;
    if replaced && !opts.force {
        return Err(Error::Config(format!(
            "database {dbname:?} on {target} exists and is not empty; pass --force to replace it (the old database is kept until the new copy is in place)"
        )));
    }
    let mut outcome = RestoreOutcome {
        policy: Some(policy.name.clone()),
        backup_id: Some(found.manifest.backup_id.to_string()),
        object: payload.object.clone(),
        store: Some(stores[found.stores[0]].describe()),
        target: PathBuf::from(target.masked()),
        replaced,
        dry_run: opts.dry_run,
        seconds: 0.0,
    };
    if opts.dry_run {
        return Ok(outcome);
    }
    let scratch = opts.scratch.clone().unwrap_or_else(std::env::temp_dir);
    let staging = TempDatabase::create(&admin, "lifeboat_restore")?;
    let url = staging.url();
    crate::fetch::read_archive(&stores, &found, ids, &private, &opts.progress, |r, what| {
        restore_dump(r, &url, pg.jobs, &scratch, what)
    })?;
    check_tables(&url, &private.tables)?;
    promote_database(&admin, staging, &dbname, exists)?;
    outcome.seconds = started.elapsed().as_secs_f64();
    Ok(outcome)
}

/// Renames the checked staging database to `target`; an existing `target` is renamed
/// aside first (put back if the swap fails) and dropped only once the new one is in place.
fn promote_database(
    admin: &PgUrl,
    staging: TempDatabase,
    target: &str,
    exists: bool,
) -> Result<()> {
    let rename = |from: &str, to: &str| {
        exec(
            admin,
            &format!("ALTER DATABASE {} RENAME TO {};", ident(from), ident(to)),
        )
    };
    if !exists {
        rename(&staging.name, target)?;
        staging.disarm();
        return Ok(());
    }
    let old = format!("lifeboat_old_{}", short_id());
    rename(target, &old).map_err(|e| {
        Error::Runtime(format!(
            "cannot move database {target:?} aside (disconnect its clients first): {e}"
        ))
    })?;
    if let Err(e) = rename(&staging.name, target) {
        let _ = rename(&old, target);
        return Err(e);
    }
    staging.disarm();
    exec(
        admin,
        &format!("DROP DATABASE {} WITH (FORCE);", ident(&old)),
    )
    .map_err(|e| {
        Error::Runtime(format!(
            "restored {target:?}, but the replaced database is still there as {old:?}: {e}"
        ))
    })?;
    Ok(())
}

/// The base backup to restore: `id`, or the newest, or with `at` the newest that finished
/// (was consistent) at or before `at`.
fn pick_base_backup(
    policy: &Policy,
    found: Vec<Found>,
    id: Option<&str>,
    at: Option<DateTime<Utc>>,
) -> Result<Found> {
    let Some(at) = at else {
        return inventory::pick(policy, found, id);
    };
    if id.is_some() {
        let f = inventory::pick(policy, found, id)?;
        if f.manifest.captured_at > at {
            return Err(Error::Config(format!(
                "base backup {} finished at {}, after --at {}; pick an older backup or a later time",
                f.manifest.backup_id,
                f.manifest.captured_at.to_rfc3339(),
                at.to_rfc3339()
            )));
        }
        return Ok(f);
    }
    let oldest = found.first().map(|f| f.manifest.captured_at);
    found
        .into_iter()
        .rfind(|f| f.manifest.captured_at <= at)
        .ok_or_else(|| {
            Error::Config(match oldest {
                Some(t) => format!(
                    "policy {} has no base backup finished before {}; the oldest finished at {}",
                    policy.name,
                    at.to_rfc3339(),
                    t.to_rfc3339()
                ),
                None => format!(
                    "policy {} has no backups in its stores; run `lifeboat backup {}` first",
                    policy.name, policy.name
                ),
            })
        })
}

/// Quotes `s` for `sh` (PostgreSQL runs `restore_command` with the shell).
fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Quotes `s` as a value in `postgresql.conf`.
fn conf_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn absolute(p: &Path) -> Result<PathBuf> {
    p.canonicalize().at("cannot resolve", p)
}

/// `lifeboat --policies DIR --identity FILE… wal-fetch NAME %f %p`, with absolute paths.
fn wal_fetch_command(policy: &Policy, identity_files: &[PathBuf]) -> Result<String> {
    let exe = std::env::current_exe()
        .map_err(|e| Error::Runtime(format!("cannot find the lifeboat executable: {e}")))?;
    let dir = policy
        .file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut words = vec![
        absolute(&exe)?.display().to_string(),
        "--policies".into(),
        absolute(dir)?.display().to_string(),
    ];
    for f in identity_files {
        words.push("--identity".into());
        words.push(absolute(f)?.display().to_string());
    }
    words.extend(["wal-fetch".into(), policy.name.clone()]);
    let mut cmd: Vec<String> = words.iter().map(|w| sh_quote(w)).collect();
    cmd.extend(["%f".into(), "%p".into()]);
    Ok(cmd.join(" "))
}

/// Appends `settings` to the data directory's `postgresql.auto.conf` (read last, so they
/// win) and creates `recovery.signal`.
fn write_recovery(data: &Path, comment: &str, settings: &[(&str, String)]) -> Result<()> {
    let auto = data.join("postgresql.auto.conf");
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&auto)
        .at("cannot open", &auto)?;
    let mut text = format!("\n# {comment}\n");
    for (k, v) in settings {
        text.push_str(&format!("{k} = {}\n", conf_quote(v)));
    }
    f.write_all(text.as_bytes()).at("cannot write", &auto)?;
    let _ = fs::remove_file(data.join("standby.signal"));
    let signal = data.join("recovery.signal");
    fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&signal)
        .at("cannot create", &signal)?;
    Ok(())
}

/// The major version in a restored base backup, checking it is one (`PG_VERSION` and
/// `backup_label` present).
fn base_backup_version(data: &Path, what: &str) -> Result<String> {
    let version = fs::read_to_string(data.join("PG_VERSION"))
        .map(|v| v.trim().to_string())
        .map_err(|_| Error::Check(format!("{what}: PG_VERSION is missing; not a base backup")))?;
    if !data.join("backup_label").is_file() {
        return Err(Error::Check(format!(
            "{what}: backup_label is missing; not a base backup"
        )));
    }
    Ok(version)
}

/// The WAL file a base backup starts in, from its `backup_label`.
fn start_wal_file(data: &Path) -> Result<String> {
    let label = fs::read_to_string(data.join("backup_label"))
        .at("cannot read", data.join("backup_label"))?;
    label
        .lines()
        .find_map(|l| l.strip_prefix("START WAL LOCATION:"))
        .and_then(|l| l.split("(file ").nth(1))
        .map(|l| l.trim_end_matches(')').trim().to_string())
        .filter(|f| f.len() == 24)
        .ok_or_else(|| Error::Check("backup_label has no START WAL LOCATION".into()))
}

fn restore_physical(
    policy: &Policy,
    id: Option<&str>,
    ids: &Identities,
    opts: &RestoreOptions,
) -> Result<RestoreOutcome> {
    let started = Instant::now();
    let target = &opts.target;
    if target.to_str().is_some_and(|t| t.starts_with("postgres")) {
        return Err(Error::Config(format!(
            "policy {} is a physical backup: restore it into a data directory (--to DIR [--at TIME]), then start the server",
            policy.name
        )));
    }
    if target.join("postmaster.pid").exists() {
        return Err(Error::Config(format!(
            "a server is running on {} (postmaster.pid); stop it first",
            target.display()
        )));
    }
    let replaced = crate::restore::check_target(target, opts.force)?;
    let stores = inventory::open_selected(policy, opts.store.as_deref())?;
    let found = pick_base_backup(policy, inventory::backups(policy, &stores)?, id, opts.at)?;
    let payload = found.manifest.payload_for(ids)?;
    let private = found.manifest.read_private(ids)?;
    let mut outcome = RestoreOutcome {
        policy: Some(policy.name.clone()),
        backup_id: Some(found.manifest.backup_id.to_string()),
        object: payload.object.clone(),
        store: Some(stores[found.stores[0]].describe()),
        target: target.clone(),
        replaced,
        dry_run: opts.dry_run,
        seconds: 0.0,
    };
    if opts.dry_run {
        return Ok(outcome);
    }
    let user = server_user()?;
    let restore_command = wal_fetch_command(policy, &opts.identity_files)?;
    let staging = Staging::beside(target)?;
    crate::restore::unpack_payload(
        &stores,
        &found,
        ids,
        &private,
        staging.path(),
        &opts.progress,
    )?;
    base_backup_version(staging.path(), &format!("backup {}", private.backup_id))?;
    let mut settings = vec![
        ("restore_command", restore_command),
        ("recovery_target_timeline", "latest".to_string()),
    ];
    if let Some(at) = opts.at {
        settings.push((
            "recovery_target_time",
            at.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string(),
        ));
        settings.push(("recovery_target_action", "promote".to_string()));
    }
    write_recovery(
        staging.path(),
        &format!(
            "Recovery settings written by lifeboat restore of backup {}",
            private.backup_id
        ),
        &settings,
    )?;
    if let Some(u) = user {
        chown_tree(staging.path(), u)?;
    }
    crate::restore::promote(staging.path(), target)?;
    drop(staging);
    outcome.seconds = started.elapsed().as_secs_f64();
    Ok(outcome)
}

// ---- drills -------------------------------------------------------------------------------

/// What a PostgreSQL drill measured beyond its phases.
pub(crate) struct DrillRun {
    /// Size of the restored archive.
    pub restored: u64,
    /// With `keep`: the scratch database (masked URL) or data directory.
    pub kept_at: Option<PathBuf>,
}

/// Restores `found` into scratch (a database on `[drill] scratch_url`, or a data directory
/// with a temporary server) and checks it; `lap` is called at the end of each phase.
/// Teardown (dropping the database, stopping the server) comes after the last lap, so it
/// is not part of the measured RTO.
#[allow(clippy::too_many_arguments)]
pub(crate) fn drill(
    policy: &Policy,
    pg: &PgSource,
    stores: &[Box<dyn Store>],
    found: &Found,
    ids: &Identities,
    private: &Private,
    scratch: &Path,
    keep: bool,
    progress: &Progress,
    lap: &mut dyn FnMut(&str),
) -> Result<DrillRun> {
    let ctx = DrillContext {
        policy,
        pg,
        stores,
        found,
        ids,
        private,
        progress,
    };
    match pg.mode {
        PgMode::Logical => drill_logical(&ctx, scratch, keep, lap),
        PgMode::Physical => drill_physical(&ctx, keep, lap),
    }
}

/// What every drill step needs.
struct DrillContext<'a> {
    policy: &'a Policy,
    pg: &'a PgSource,
    stores: &'a [Box<dyn Store>],
    found: &'a Found,
    ids: &'a Identities,
    private: &'a Private,
    progress: &'a Progress,
}

/// When the data a drill of `found` recovers is from: a logical dump's snapshot; for a
/// physical policy, the newest archived WAL file (recovery replays up to it) or the base
/// backup's end, whichever is later.
pub(crate) fn rpo_reference(
    policy: &Policy,
    pg: &PgSource,
    stores: &[Box<dyn Store>],
    found: &Found,
) -> Result<DateTime<Utc>> {
    let captured = found.manifest.captured_at;
    if pg.mode == PgMode::Logical {
        return Ok(captured);
    }
    Ok(crate::wal::newest(policy, stores)?
        .map(|w| w.pushed_at)
        .filter(|t| *t > captured)
        .unwrap_or(captured))
}

fn drill_logical(
    ctx: &DrillContext<'_>,
    scratch: &Path,
    keep: bool,
    lap: &mut dyn FnMut(&str),
) -> Result<DrillRun> {
    let (policy, private) = (ctx.policy, ctx.private);
    let scratch_url = policy.drill.scratch_url.as_ref().ok_or_else(|| {
        Error::Config(format!(
            "a drill of {} restores into a scratch database: set [drill] scratch_url = \"postgresql://user@host:port/postgres\" in {}",
            policy.name,
            policy.file.display()
        ))
    })?;
    lap("fetch");
    let admin = admin_url(scratch_url, None);
    let db = TempDatabase::create(&admin, "lifeboat_drill")?;
    let url = db.url();
    lap("create scratch database");
    let restored = crate::fetch::read_archive(
        ctx.stores,
        ctx.found,
        ctx.ids,
        private,
        ctx.progress,
        |r, what| restore_dump(r, &url, ctx.pg.jobs, scratch, what),
    )?;
    lap("decrypt+decompress+pg_restore (server-bound)");
    let tables = check_tables(&url, &private.tables)?;
    lap("integrity_check");
    check_expectations(policy, &tables)?;
    lap("expectations");
    let kept_at = if keep {
        db.disarm();
        Some(PathBuf::from(url.masked()))
    } else {
        db.drop_now()?;
        None
    };
    Ok(DrillRun { restored, kept_at })
}

/// A server started by a drill on a restored data directory, as the server's OS user;
/// stopped when dropped.
struct TempServer {
    pg_ctl: PathBuf,
    data: PathBuf,
    log: PathBuf,
    user: Option<OsUser>,
    running: bool,
}

impl TempServer {
    fn command(&self) -> std::process::Command {
        let mut cmd = server_command(&self.pg_ctl, self.user);
        cmd.arg("-D")
            .arg(&self.data)
            .current_dir(self.data.parent().unwrap_or(Path::new("/")))
            .stdin(std::process::Stdio::null());
        cmd
    }

    fn start(
        data: &Path,
        log: &Path,
        version: &str,
        user: Option<OsUser>,
        wait: Duration,
    ) -> Result<Self> {
        let mut server = TempServer {
            pg_ctl: server_tool("pg_ctl", version)?,
            data: data.to_path_buf(),
            log: log.to_path_buf(),
            user,
            running: true,
        };
        let mut cmd = server.command();
        cmd.arg("-l")
            .arg(log)
            .args(["-w", "-t", &wait.as_secs().max(60).to_string(), "start"]);
        if let Err(e) = run(cmd, "pg_ctl start", &Masker::default()) {
            let detail = server.log_tail();
            server.stop_quietly();
            return Err(Error::Runtime(match detail {
                Some(d) => format!("the drill's server did not start: {d}"),
                None => format!("the drill's server did not start: {e}"),
            }));
        }
        Ok(server)
    }

    /// The server log's last errors, as one line.
    fn log_tail(&self) -> Option<String> {
        let text = fs::read_to_string(&self.log).ok()?;
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("FATAL") || l.contains("PANIC") || l.contains("ERROR"))
            .collect();
        let tail = lines[lines.len().saturating_sub(2)..].join(" ");
        (!tail.is_empty()).then_some(tail)
    }

    fn alive(&self) -> bool {
        let mut cmd = self.command();
        cmd.arg("status")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        cmd.status().is_ok_and(|s| s.success())
    }

    fn stop(&mut self) -> Result<()> {
        if !self.running {
            return Ok(());
        }
        let mut cmd = self.command();
        cmd.args(["-m", "fast", "-w", "stop"]);
        let result = run(cmd, "pg_ctl stop", &Masker::default());
        if result.is_err() {
            self.stop_quietly();
        }
        self.running = false;
        result.map(drop)
    }

    fn stop_quietly(&mut self) {
        for mode in ["fast", "immediate"] {
            let mut cmd = self.command();
            cmd.args(["-m", mode, "-w", "-t", "60", "stop"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            if cmd.status().is_ok_and(|s| s.success()) || !self.alive() {
                break;
            }
        }
        self.running = false;
    }
}

impl Drop for TempServer {
    fn drop(&mut self) {
        if self.running {
            self.stop_quietly();
        }
    }
}

/// Fails unless `user` can enter `dir` (every directory on the way must let it through).
fn check_reachable(dir: &Path, user: OsUser) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let dir = absolute(dir)?;
    for d in dir.ancestors() {
        let m = fs::metadata(d).at("cannot stat", d)?;
        let mode = m.mode();
        let through = mode & 0o001 != 0
            || (m.uid() == user.uid && mode & 0o100 != 0)
            || (m.gid() == user.gid && mode & 0o010 != 0);
        if !through {
            return Err(Error::Config(format!(
                "the drill's server runs as uid {}, which cannot enter {} (mode {:o}); set [drill] scratch to a directory it can reach",
                user.uid,
                d.display(),
                mode & 0o7777
            )));
        }
    }
    Ok(())
}

fn free_loopback_port() -> Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| Error::Runtime(format!("cannot find a free loopback port: {e}")))
}

/// Waits until the server at `url` has finished recovery (promoted), or `wait` passed.
fn wait_recovered(server: &TempServer, url: &PgUrl, wait: Duration) -> Result<()> {
    let deadline = Instant::now() + wait;
    loop {
        let state = exec(url, "SELECT pg_is_in_recovery();");
        if let Ok(rows) = &state
            && rows.first().and_then(|r| r.first()).map(String::as_str) == Some("f")
        {
            return Ok(());
        }
        if !server.alive() {
            return Err(Error::Runtime(format!(
                "the drill's server stopped during recovery: {}",
                server
                    .log_tail()
                    .unwrap_or_else(|| "see its log".to_string())
            )));
        }
        if Instant::now() > deadline {
            return Err(Error::Runtime(format!(
                "the drill's server was still recovering after {}s",
                wait.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn drill_physical(
    ctx: &DrillContext<'_>,
    keep: bool,
    lap: &mut dyn FnMut(&str),
) -> Result<DrillRun> {
    let (policy, pg, stores, ids, private) = (ctx.policy, ctx.pg, ctx.stores, ctx.ids, ctx.private);
    let user = server_user()?;
    let what = format!("backup {}", private.backup_id);
    // The server's user must reach the directory: the state's scratch is private to
    // lifeboat's user, so the default is the system's temporary directory.
    let base = policy
        .drill
        .scratch
        .clone()
        .unwrap_or_else(std::env::temp_dir);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&base)
        .at("cannot create directory", &base)?;
    if let Some(u) = user {
        check_reachable(&base, u)?;
    }
    let dir = tempfile::Builder::new()
        .prefix("lifeboat-drill-")
        .tempdir_in(&base)
        .at("cannot create a drill directory in", &base)?;
    let socket_dir = dir.path();
    if socket_dir.as_os_str().len() > 80 {
        return Err(Error::Config(format!(
            "drill directory {} is too long for a server socket; set a shorter [drill] scratch",
            socket_dir.display()
        )));
    }
    let data = dir.path().join("data");
    let wal_dir = dir.path().join("wal");
    for d in [&data, &wal_dir] {
        fs::DirBuilder::new()
            .mode(0o700)
            .create(d)
            .at("cannot create directory", d)?;
    }
    lap("fetch");

    let restored =
        crate::restore::unpack_payload(stores, ctx.found, ids, private, &data, ctx.progress)?;
    let version = base_backup_version(&data, &what)?;
    lap("decrypt+decompress");

    let start = start_wal_file(&data)?;
    let fetched = crate::wal::fetch_for_recovery(policy, stores, ids, &start, &wal_dir)?;
    if fetched == 0 {
        return Err(Error::Check(format!(
            "{what} needs WAL from {start}, but the archive of {} holds none; is archive_command set to lifeboat wal-push?",
            policy.name
        )));
    }
    lap("fetch WAL");

    let port = free_loopback_port()?;
    let socket = socket_dir.display().to_string();
    let hba = dir.path().join("pg_hba.drill.conf");
    // Only local socket connections (in the drill's private directory) are trusted.
    fs::write(
        &hba,
        "local all all trust\nhost all all 127.0.0.1/32 reject\nhost all all ::1/128 reject\n",
    )
    .at("cannot write", &hba)?;
    for conf in ["postgresql.conf", "pg_ident.conf"] {
        let p = data.join(conf);
        if !p.exists() {
            fs::write(&p, "").at("cannot write", &p)?;
        }
    }
    write_recovery(
        &data,
        "lifeboat drill: a private, temporary server",
        &[
            ("port", port.to_string()),
            ("listen_addresses", "127.0.0.1".into()),
            ("unix_socket_directories", socket.clone()),
            ("hba_file", hba.display().to_string()),
            ("archive_mode", "off".into()),
            ("ssl", "off".into()),
            ("logging_collector", "off".into()),
            ("cluster_name", "lifeboat-drill".into()),
            ("primary_conninfo", String::new()),
            ("hot_standby", "on".into()),
            (
                "restore_command",
                format!("cp {}/%f %p", sh_quote(&wal_dir.display().to_string())),
            ),
            ("recovery_target_timeline", "latest".into()),
        ],
    )?;
    if let Some(u) = user {
        chown_tree(dir.path(), u)?;
    }
    let wait = policy
        .objectives
        .rto
        .map_or(Duration::from_secs(3600), |rto| rto * 2)
        .max(Duration::from_secs(300));
    let mut server =
        TempServer::start(&data, &dir.path().join("server.log"), &version, user, wait)?;
    let db = pg.url.dbname().unwrap_or_else(|| "postgres".into());
    let login = pg.url.user().unwrap_or_else(|| "postgres".into());
    let probe = PgUrl::local(&socket, port, &login, &db);
    wait_recovered(&server, &probe, wait)?;
    lap("server start+WAL replay");

    // Check as the cluster's bootstrap superuser, who can read every table.
    let superuser = exec(&probe, "SELECT rolname FROM pg_roles WHERE oid = 10;")?
        .first()
        .and_then(|r| r.first().cloned())
        .unwrap_or(login);
    let tables = check_tables(
        &PgUrl::local(&socket, port, &superuser, &db),
        &private.tables,
    )?;
    lap("integrity_check");
    check_expectations(policy, &tables)?;
    lap("expectations");

    server.stop()?;
    let kept_at = keep.then(|| dir.keep());
    Ok(DrillRun { restored, kept_at })
}

/// `verify --level restore`: the drill's restore and checks, untimed, nothing kept.
pub(crate) fn verify_restore(
    policy: &Policy,
    pg: &PgSource,
    stores: &[Box<dyn Store>],
    found: &Found,
    ids: &Identities,
    private: &Private,
    scratch: &Path,
) -> Result<()> {
    let progress = Progress::default();
    drill(
        policy,
        pg,
        stores,
        found,
        ids,
        private,
        scratch,
        false,
        &progress,
        &mut |_| {},
    )
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_and_conf_quoting() {
        assert_eq!(sh_quote("/usr/bin/lifeboat"), "/usr/bin/lifeboat");
        assert_eq!(sh_quote("/a b/it's"), "'/a b/it'\\''s'");
        assert_eq!(conf_quote("cp 'x' %p"), "'cp ''x'' %p'");
    }

    #[test]
    fn custom_dump_is_cut_into_numbered_entries() {
        let mut cmd = std::process::Command::new("sh");
        cmd.args(["-c", "head -c 40000000 /dev/zero"]);
        let dump = ChildOutput::spawn(cmd, "dump", Masker::default()).unwrap();
        let mut out = Vec::new();
        write_custom_tar(dump, Utc::now(), &mut out).unwrap();
        let mut archive = tar::Archive::new(&out[..]);
        let entries: Vec<(String, u64)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.path().unwrap().display().to_string(), e.size())
            })
            .collect();
        assert_eq!(
            entries,
            [
                ("dump.pgcustom.000001".to_string(), PART as u64),
                ("dump.pgcustom.000002".to_string(), PART as u64),
                (
                    "dump.pgcustom.000003".to_string(),
                    40_000_000 - 2 * PART as u64
                ),
            ]
        );
    }

    #[test]
    fn a_failing_dump_fails_the_stream() {
        let mut cmd = std::process::Command::new("sh");
        cmd.args([
            "-c",
            "printf partial; echo 'pg_dump: error: lost' >&2; exit 1",
        ]);
        let dump = ChildOutput::spawn(cmd, "pg_dump", Masker::default()).unwrap();
        let err = write_custom_tar(dump, Utc::now(), &mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("pg_dump: error: lost"), "{err}");
    }

    #[test]
    fn backup_label_gives_the_start_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("backup_label"),
            "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nCHECKPOINT LOCATION: 0/2000060\n",
        )
        .unwrap();
        assert_eq!(
            start_wal_file(dir.path()).unwrap(),
            "000000010000000000000002"
        );
    }
}
