//! End-to-end benchmark of lifeboat's backup and restore pipelines, against the shell
//! pipelines they replace (`tar | gzip | gpg`, `tar | zstd | age`) and against restic and
//! borg, on a deterministic corpus, plus each pipeline stage alone (issue 10).
//!
//! ```sh
//! cargo bench --bench pipeline                       # full size (~860 MB corpus), 5 runs
//! cargo bench --bench pipeline -- --size 0.1         # a few minutes
//! cargo bench --bench pipeline -- --help
//! ```
//!
//! Everything (corpus, stores, restores) lives under `target/bench/` (same disk as the
//! sources, never /tmp); the table goes to stdout and to `benches/results/pipeline-size<S>.md`
//! and `.json`. Peers (`restic`, `borgbackup`) and the shell tools are installed from
//! Debian when missing. Goals are measured and reported, never asserted.
//!
//! How it measures: every timed process is started through `/usr/bin/time` (pipelines are
//! connected here, no shell), which reports its CPU time and peak RSS (`ru_maxrss`). A
//! pipeline's peak RSS is the sum of its processes' peaks (they run at the same time). Cases
//! run round-robin (run 1 of each, then run 2, ...), each run starting from `sync` with the
//! page cache warm; the figure is the median of `--runs` runs; MB = 10^6 bytes of input.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::LazyLock;
use std::time::{Duration, Instant, UNIX_EPOCH};

use lifeboat::codec::{self, Compression, Envelope};
use lifeboat::policy::SqliteCheck;
use lifeboat::{Identities, Recipients};
use serde_json::{Value, json};

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");
const LIFEBOAT: &str = env!("CARGO_BIN_EXE_lifeboat");
/// Bump when the corpus generator changes, so cached corpora are rebuilt.
const CORPUS_VERSION: u32 = 2;
const MB: f64 = 1e6;

const USAGE: &str = "\
usage: cargo bench --bench pipeline -- [options]

  --size F        corpus scale: 1.0 = 600 MB SQLite + 60 MB wallet + 200 MB logs (default 1)
  --runs N        timed runs per case, median reported (default 5)
  --seed N        corpus seed (default 42)
  --only LIST     groups to run, comma-separated: lifeboat,shell,restic,borg,stages,rss
                  (default: all)
  --parts LIST    corpus parts: shop,wallet,logs,whole (default: all)
  --rss-size F    second corpus scale for the peak-RSS check (default: 4x --size when
                  --size <= 0.25, else --size/4; 0 skips it)
  --dir DIR       work directory (default target/bench)
  --report DIR    where the .md and .json tables go (default benches/results)
";

// ---- options ---------------------------------------------------------------------------

struct Opts {
    size: f64,
    runs: usize,
    seed: u64,
    only: Vec<String>,
    parts: Vec<String>,
    rss_size: f64,
    dir: PathBuf,
    report_dir: PathBuf,
}

impl Opts {
    fn parse() -> Opts {
        let root = Path::new(MANIFEST_DIR);
        let mut o = Opts {
            size: 1.0,
            runs: 5,
            seed: 42,
            only: split("lifeboat,shell,restic,borg,stages,rss"),
            parts: split("shop,wallet,logs,whole"),
            rss_size: f64::NAN,
            dir: root.join("target/bench"),
            report_dir: root.join("benches/results"),
        };
        let args: Vec<String> = std::env::args().skip(1).collect();
        let mut i = 0;
        while i < args.len() {
            let flag = args[i].as_str();
            let value = || {
                args.get(i + 1)
                    .cloned()
                    .unwrap_or_else(|| die(&format!("{flag} needs a value\n{USAGE}")))
            };
            let number = |v: String| -> f64 {
                v.parse()
                    .unwrap_or_else(|_| die(&format!("{flag}: not a number: {v}")))
            };
            match flag {
                // `cargo bench` passes --bench to harness = false benchmarks.
                "--bench" => {
                    i += 1;
                    continue;
                }
                "--size" => o.size = number(value()),
                "--runs" => o.runs = number(value()) as usize,
                "--seed" => o.seed = number(value()) as u64,
                "--only" => o.only = split(&value()),
                "--parts" => o.parts = split(&value()),
                "--rss-size" => o.rss_size = number(value()),
                "--dir" => o.dir = PathBuf::from(value()),
                "--report" => o.report_dir = PathBuf::from(value()),
                "-h" | "--help" => {
                    print!("{USAGE}");
                    std::process::exit(0)
                }
                other => die(&format!("unknown option {other}\n{USAGE}")),
            }
            i += 2;
        }
        if o.size.is_nan() || o.size <= 0.0 || o.runs == 0 {
            die("--size must be > 0 and --runs >= 1");
        }
        if o.rss_size.is_nan() {
            o.rss_size = if o.size <= 0.25 {
                o.size * 4.0
            } else {
                o.size / 4.0
            };
        }
        o
    }

    fn wants(&self, group: &str) -> bool {
        self.only.iter().any(|g| g == group)
    }
}

fn split(s: &str) -> Vec<String> {
    s.split(',')
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

fn die(msg: &str) -> ! {
    eprintln!("pipeline bench: {msg}");
    std::process::exit(2)
}

// ---- deterministic randomness ----------------------------------------------------------

/// xoshiro256** seeded through splitmix64: fast, and the same bytes on every machine.
struct Rng([u64; 4]);

impl Rng {
    fn new(seed: u64) -> Rng {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Rng([next(), next(), next(), next()])
    }

    fn u64(&mut self) -> u64 {
        let s = &mut self.0;
        let out = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        out
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        ((self.u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    fn chance(&mut self, p: f64) -> bool {
        ((self.u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    /// Skewed towards small indexes (a few popular products, busy customers, hot paths).
    fn skewed(&mut self, n: u64) -> u64 {
        let r = self.below(n);
        self.below(r + 1)
    }

    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }

    fn hex(&mut self, out: &mut String, digits: usize) {
        let mut left = digits;
        while left > 0 {
            let n = left.min(16);
            let v = self.u64() >> (64 - 4 * n);
            let _ = write!(out, "{v:0n$x}");
            left -= n;
        }
    }

    fn base64(&mut self, out: &mut String, chars: usize) {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        for _ in 0..chars {
            out.push(ALPHABET[(self.u64() >> 58) as usize] as char);
        }
    }

    /// Between `lo` and `hi` words, common ones more often.
    fn words(&mut self, out: &mut String, lo: u64, hi: u64) {
        for i in 0..self.range(lo, hi) {
            if i > 0 {
                out.push(' ');
            }
            out.push_str(WORDS[self.skewed(WORDS.len() as u64) as usize]);
        }
    }
}

/// Vocabularies, split once.
static WORDS: LazyLock<Vec<&str>> = LazyLock::new(|| WORDS_TEXT.split_whitespace().collect());
static FIRST: LazyLock<Vec<&str>> = LazyLock::new(|| FIRST_TEXT.split_whitespace().collect());
static LAST: LazyLock<Vec<&str>> = LazyLock::new(|| LAST_TEXT.split_whitespace().collect());
static CITIES: LazyLock<Vec<&str>> = LazyLock::new(|| CITIES_TEXT.split_whitespace().collect());

const WORDS_TEXT: &str = "\
    the and with for order customer delivery package please thanks shipping address \
    product quality return refund invoice payment card bank transfer received delayed \
    express standard gift wrap color size large small medium blue red green black white \
    cotton wool leather steel wooden glass ceramic organic fresh coffee tea chocolate \
    honey olive oil bread cheese wine beer lamp chair table desk shelf mug plate bowl \
    knife fork spoon shirt jacket scarf hat gloves socks boots shoes bag wallet watch \
    ring necklace poster frame book notebook pen pencil paper candle soap towel blanket \
    pillow rug basket box kit set pack bundle edition limited classic modern vintage \
    handmade premium durable light heavy soft warm cool bright dark natural recycled \
    local imported new used best great good fast slow early late morning evening weekend \
    monday friday door reception neighbour leave call before after arrival store pickup \
    office home floor building street avenue road north south east west is was not but \
    very too also only again still would could like love need want check update status \
    tracking number code discount coupon price cheaper free extra fee tax total item";
const FIRST_TEXT: &str = "\
    Anna Ben Chloe David Emma Felix Grace Hugo Ines Jonas Karin Leo Maya Noah Olga Paul \
    Quinn Rosa Sami Tara Umar Vera Will Xena Yusuf Zoe Lucas Mila Theo Nora";
const LAST_TEXT: &str = "\
    Martin Bernard Dubois Thomas Robert Richard Petit Durand Leroy Moreau Simon Laurent \
    Lefebvre Michel Garcia Müller Schmidt Schneider Fischer Weber Rossi Russo Ferrari \
    Esposito Bianchi Smith Jones Taylor Brown Wilson";
const CITIES_TEXT: &str = "\
    Paris Lyon Lille Nantes Berlin Hamburg Munich Madrid Sevilla Milano Roma Torino \
    London Leeds Dublin Lisboa Porto Wien Genève Bruxelles";
const COUNTRIES: &[&str] = &["FR", "DE", "ES", "IT", "GB", "IE", "PT", "AT", "CH", "BE"];
const STATUSES: &[&str] = &[
    "pending",
    "paid",
    "packed",
    "shipped",
    "delivered",
    "delivered",
    "delivered",
    "cancelled",
    "refunded",
];

// ---- the corpus --------------------------------------------------------------------------

/// One part of the corpus, or the whole: paths relative to the corpus root.
#[derive(Clone)]
struct Part {
    name: String,
    paths: Vec<&'static str>,
    /// Sum of the regular files' sizes: the "input" of every MB/s figure.
    bytes: u64,
    files: u64,
}

struct Corpus {
    root: PathBuf,
    parts: Vec<Part>,
}

impl Corpus {
    fn part(&self, name: &str) -> &Part {
        self.parts
            .iter()
            .find(|p| p.name == name)
            .expect("known part")
    }
}

/// Builds (or reuses, when already built with the same seed, scale and generator) the
/// corpus under `dir`: `shop.db`, `wallet/`, `logs/`.
fn corpus(dir: &Path, scale: f64, seed: u64) -> Corpus {
    let root = dir.join(format!(
        "corpus-s{}-seed{seed}-v{CORPUS_VERSION}",
        fmt_scale(scale)
    ));
    let marker = root.join(".complete");
    if !marker.exists() {
        let tmp = root.with_extension("partial");
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp).expect("create corpus dir");
        let started = Instant::now();
        eprintln!(
            "corpus: building {} (scale {scale}, seed {seed}) ...",
            root.display()
        );
        let mut rng = Rng::new(seed);
        make_database(&tmp.join("shop.db"), (600e6 * scale) as u64, &mut rng)
            .unwrap_or_else(|e| die(&format!("cannot build the SQLite corpus: {e}")));
        make_wallet(&tmp.join("wallet"), (60e6 * scale) as u64, &mut rng)
            .unwrap_or_else(|e| die(&format!("cannot build the wallet corpus: {e}")));
        make_logs(&tmp.join("logs"), (200e6 * scale) as u64, &mut rng)
            .unwrap_or_else(|e| die(&format!("cannot build the log corpus: {e}")));
        fs::write(tmp.join(".complete"), b"").expect("write marker");
        let _ = fs::remove_dir_all(&root);
        fs::rename(&tmp, &root).expect("rename corpus into place");
        eprintln!("corpus: built in {:.1}s", started.elapsed().as_secs_f64());
    }
    let mut parts = Vec::new();
    for (name, paths) in [
        ("shop", vec!["shop.db"]),
        ("wallet", vec!["wallet"]),
        ("logs", vec!["logs"]),
        ("whole", vec!["shop.db", "wallet", "logs"]),
    ] {
        let (bytes, files) = paths
            .iter()
            .map(|p| tree_size(&root.join(p)))
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        parts.push(Part {
            name: name.into(),
            paths,
            bytes,
            files,
        });
    }
    Corpus { root, parts }
}

fn fmt_scale(s: f64) -> String {
    format!("{s}")
}

/// A shop database: customers, products, orders with items, a JSON event log and some
/// attachments (incompressible blobs), with indexes; about 2x with zstd -3.
fn make_database(path: &Path, target: u64, rng: &mut Rng) -> rusqlite::Result<()> {
    use rusqlite::params;
    let conn = rusqlite::Connection::open(path)?;
    conn.execute_batch(
        "PRAGMA page_size = 4096; PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;
         PRAGMA cache_size = -65536;
         CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL, country TEXT NOT NULL, created_at TEXT NOT NULL,
            marketing INTEGER NOT NULL);
         CREATE TABLE products (id INTEGER PRIMARY KEY, sku TEXT NOT NULL UNIQUE,
            title TEXT NOT NULL, description TEXT NOT NULL, price_cents INTEGER NOT NULL,
            stock INTEGER NOT NULL);
         CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL,
            created_at TEXT NOT NULL, status TEXT NOT NULL, total_cents INTEGER NOT NULL,
            currency TEXT NOT NULL, shipping_address TEXT NOT NULL, note TEXT);
         CREATE TABLE order_items (order_id INTEGER NOT NULL, product_id INTEGER NOT NULL,
            quantity INTEGER NOT NULL, unit_price_cents INTEGER NOT NULL);
         CREATE TABLE events (id INTEGER PRIMARY KEY, at INTEGER NOT NULL, customer_id INTEGER,
            kind TEXT NOT NULL, payload TEXT NOT NULL);
         CREATE TABLE attachments (id INTEGER PRIMARY KEY, order_id INTEGER NOT NULL,
            filename TEXT NOT NULL, mime TEXT NOT NULL, data BLOB NOT NULL);
         CREATE INDEX orders_by_customer ON orders (customer_id, created_at);
         CREATE INDEX items_by_order ON order_items (order_id);
         CREATE INDEX events_by_time ON events (at);",
    )?;
    let mut t: i64 = 1_704_067_200; // 2024-01-01T00:00:00Z
    let stamp = |t: i64| {
        chrono::DateTime::from_timestamp(t, 0)
            .expect("valid time")
            .format("%Y-%m-%d %H:%M:%S")
            .to_string()
    };
    let products = (5000.0 * (target as f64 / 600e6)).max(200.0) as u64;
    let mut text = String::new();
    conn.execute_batch("BEGIN")?;
    {
        let mut ins = conn.prepare(
            "INSERT INTO products (id, sku, title, description, price_cents, stock)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for id in 1..=products {
            let title = {
                text.clear();
                rng.words(&mut text, 2, 5);
                text.clone()
            };
            text.clear();
            rng.words(&mut text, 40, 120);
            ins.execute(params![
                id as i64,
                format!("SKU-{id:06}"),
                title,
                text,
                rng.range(199, 49_999) as i64,
                rng.below(500) as i64
            ])?;
        }
    }
    conn.execute_batch("COMMIT")?;

    // Blobs are about a fifth of the bytes written: the rest compresses ~3x, blobs not at all.
    const BLOB_SHARE: f64 = 0.20;
    let (mut plain_bytes, mut blob_bytes) = (0u64, 0u64);
    let (mut customers, mut order_id, mut event_id, mut attachment_id) = (0u64, 0u64, 0u64, 0u64);
    let mut blob = vec![0u8; 64 * 1024];
    loop {
        conn.execute_batch("BEGIN")?;
        {
            let mut ins_customer =
                conn.prepare_cached("INSERT INTO customers VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?;
            let mut ins_order =
                conn.prepare_cached("INSERT INTO orders VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")?;
            let mut ins_item =
                conn.prepare_cached("INSERT INTO order_items VALUES (?1, ?2, ?3, ?4)")?;
            let mut ins_event =
                conn.prepare_cached("INSERT INTO events VALUES (?1, ?2, ?3, ?4, ?5)")?;
            let mut ins_attachment =
                conn.prepare_cached("INSERT INTO attachments VALUES (?1, ?2, ?3, ?4, ?5)")?;
            for _ in 0..2000 {
                t += rng.range(1, 40) as i64;
                if customers == 0 || rng.chance(0.12) {
                    customers += 1;
                    let first = rng.pick(&FIRST);
                    let last = rng.pick(&LAST);
                    let email = format!(
                        "{}.{}{}@{}",
                        first.to_lowercase(),
                        last.to_lowercase(),
                        customers,
                        rng.pick(&["example.com", "mail.example", "shop.test", "post.example"])
                    );
                    plain_bytes += 60 + email.len() as u64;
                    ins_customer.execute(params![
                        customers as i64,
                        email,
                        format!("{first} {last}"),
                        rng.pick(COUNTRIES),
                        stamp(t),
                        rng.chance(0.4) as i64
                    ])?;
                }
                order_id += 1;
                let customer = customers - rng.skewed(customers);
                let address = format!(
                    "{} {} {}, {:05} {}, {}",
                    rng.range(1, 240),
                    rng.pick(&WORDS),
                    rng.pick(&["Street", "Avenue", "Road", "Lane", "Place"]),
                    rng.below(99_999),
                    rng.pick(&CITIES),
                    rng.pick(COUNTRIES)
                );
                text.clear();
                let note = if rng.chance(0.35) {
                    rng.words(&mut text, 4, 30);
                    Some(text.as_str())
                } else {
                    None
                };
                let mut total = 0i64;
                let items = rng.range(1, 5);
                for _ in 0..items {
                    let product = 1 + rng.skewed(products);
                    let price = rng.range(199, 49_999) as i64;
                    let qty = rng.range(1, 4) as i64;
                    total += price * qty;
                    ins_item.execute(params![order_id as i64, product as i64, qty, price])?;
                }
                plain_bytes += 90 + address.len() as u64 + note.map_or(0, |n| n.len() as u64);
                plain_bytes += items * 20;
                ins_order.execute(params![
                    order_id as i64,
                    customer as i64,
                    stamp(t),
                    rng.pick(STATUSES),
                    total,
                    "EUR",
                    address,
                    note
                ])?;
                for _ in 0..rng.range(1, 3) {
                    event_id += 1;
                    let mut payload = String::with_capacity(256);
                    let _ = write!(
                        payload,
                        r#"{{"order":{order_id},"ip":"10.{}.{}.{}","session":""#,
                        rng.below(8),
                        rng.below(256),
                        rng.below(256)
                    );
                    rng.hex(&mut payload, 16);
                    let _ = write!(
                        payload,
                        r#"","path":"/shop/{}/{}","ua":"{}","ms":{}}}"#,
                        rng.pick(&["cart", "checkout", "product", "account", "search"]),
                        rng.skewed(products),
                        rng.pick(&[
                            "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
                            "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) Safari/605.1.15",
                            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/126.0",
                            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5) Mobile/15E148",
                        ]),
                        rng.range(3, 900)
                    );
                    plain_bytes += 40 + payload.len() as u64;
                    ins_event.execute(params![
                        event_id as i64,
                        t * 1000 + rng.below(1000) as i64,
                        customer as i64,
                        rng.pick(&["view", "add_to_cart", "checkout", "payment", "login"]),
                        payload
                    ])?;
                }
                while (blob_bytes as f64) < BLOB_SHARE * (plain_bytes + blob_bytes) as f64 {
                    attachment_id += 1;
                    let n = rng.range(2 * 1024, 48 * 1024) as usize;
                    rng.fill(&mut blob[..n]);
                    blob_bytes += n as u64;
                    ins_attachment.execute(params![
                        attachment_id as i64,
                        order_id as i64,
                        format!("scan-{attachment_id}.jpg"),
                        "image/jpeg",
                        &blob[..n]
                    ])?;
                }
            }
        }
        conn.execute_batch("COMMIT")?;
        let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        if pages as u64 * 4096 >= target {
            break;
        }
    }
    // WAL mode, as a live service's database usually is (lifeboat then streams it from a
    // read transaction instead of copying it first).
    conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))?;
    Ok(())
}

/// A wallet: many small files of random bytes (keys, keystores, signed blobs), 0600 in
/// 0700 directories, a few symlinks; incompressible.
fn make_wallet(root: &Path, target: u64, rng: &mut Rng) -> io::Result<()> {
    fs::DirBuilder::new().mode(0o700).create(root)?;
    let mtime = |i: u64| UNIX_EPOCH + Duration::from_secs(1_750_000_000 + i * 37);
    let mut written = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    let (mut file_no, mut dir) = (0u64, PathBuf::new());
    let mut dirs = Vec::new();
    while written < target {
        if file_no % 48 == 0 {
            dir = root.join(format!("accounts/acct-{:05}", file_no / 48));
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)?;
            dirs.push(dir.clone());
        }
        // Log-uniform 256 B .. 64 KiB: mostly small keys, some larger keystores.
        let n = (256.0 * 256f64.powf(rng.below(1 << 20) as f64 / (1 << 20) as f64)) as usize;
        let n = n.min(buf.len()).min((target - written).max(1) as usize);
        rng.fill(&mut buf[..n]);
        let ext = ["key", "json", "bin", "sig"][(file_no % 4) as usize];
        let path = dir.join(format!("{file_no:06}.{ext}"));
        let mut f = File::create(&path)?;
        f.write_all(&buf[..n])?;
        f.set_permissions(fs::Permissions::from_mode(0o600))?;
        f.set_modified(mtime(file_no))?;
        written += n as u64;
        file_no += 1;
    }
    symlink("accounts/acct-00000", root.join("current"))?;
    symlink("accounts/acct-00000/000000.key", root.join("main.key"))?;
    dirs.push(root.join("accounts"));
    dirs.push(root.to_path_buf());
    for (i, d) in dirs.iter().enumerate() {
        File::open(d)?.set_modified(mtime(i as u64))?;
    }
    Ok(())
}

/// Application logs: HTTP access lines, slow queries, job runs, warnings with stack
/// traces, across rotated files; about 3.3x with zstd -3.
fn make_logs(root: &Path, target: u64, rng: &mut Rng) -> io::Result<()> {
    fs::create_dir_all(root)?;
    let per_file = (target / 12).clamp(256 * 1024, 16 << 20);
    let services = ["web", "api", "worker", "db"];
    let mut t: u64 = 1_767_225_600_000; // 2026-01-01, in ms
    let (mut written, mut file_no) = (0u64, 0u64);
    let mut line = String::with_capacity(512);
    while written < target {
        let service = services[(file_no % 4) as usize];
        let path = root.join(format!("{service}.log.{}", file_no / 4 + 1));
        let mut out = BufWriter::with_capacity(1 << 20, File::create(&path)?);
        let mut in_file = 0u64;
        while in_file < per_file && written + in_file < target {
            line.clear();
            t += rng.range(0, 25);
            let secs = (t / 1000) as i64;
            let ts = chrono::DateTime::from_timestamp(secs, (t % 1000) as u32 * 1_000_000)
                .expect("valid time");
            let _ = write!(line, "{} ", ts.format("%Y-%m-%dT%H:%M:%S%.3fZ"));
            let roll = rng.below(100);
            let host = rng.below(6);
            if roll < 72 {
                let _ = write!(
                    line,
                    "INFO  {service}-{host} http: method={} path=/api/v1/{}/{} status={} bytes={} dur_ms={}.{:02} ip=10.{}.{}.{} trace=",
                    rng.pick(&["GET", "GET", "GET", "POST", "PUT", "DELETE"]),
                    rng.pick(&[
                        "orders",
                        "customers",
                        "products",
                        "cart",
                        "search",
                        "session"
                    ]),
                    rng.below(1_000_000),
                    rng.pick(&[
                        "200", "200", "200", "200", "201", "204", "304", "404", "500"
                    ]),
                    rng.range(120, 90_000),
                    rng.below(3000),
                    rng.below(100),
                    rng.below(256),
                    rng.below(256),
                    rng.below(256)
                );
                rng.hex(&mut line, 32);
                line.push_str(" span=");
                rng.hex(&mut line, 16);
                line.push_str(" session=");
                rng.hex(&mut line, 16);
                line.push_str(" etag=");
                rng.base64(&mut line, 14);
                let _ = write!(line, " user={}", rng.below(10_000_000));
                let _ = write!(
                    line,
                    " ua=\"{}\"",
                    rng.pick(&[
                        "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
                        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/126.0",
                        "curl/8.5.0",
                        "okhttp/4.12.0",
                    ])
                );
            } else if roll < 84 {
                let _ = write!(
                    line,
                    "WARN  {service}-{host} db: slow query {}ms: SELECT * FROM {} WHERE id = {} AND status = '{}' ORDER BY created_at DESC LIMIT {}",
                    rng.range(200, 9000),
                    rng.pick(&["orders", "order_items", "customers", "events"]),
                    rng.below(2_000_000),
                    rng.pick(STATUSES),
                    rng.pick(&["10", "50", "100"])
                );
            } else if roll < 97 {
                let _ = write!(
                    line,
                    "INFO  {service}-{host} job: {} id={} run=",
                    rng.pick(&[
                        "send_invoice",
                        "sync_stock",
                        "refresh_search_index",
                        "charge_card",
                        "export_orders"
                    ]),
                    rng.below(10_000_000)
                );
                rng.hex(&mut line, 12);
                let _ = write!(
                    line,
                    " took={}ms result={}",
                    rng.skewed(5000),
                    rng.pick(&["ok", "ok", "ok", "retry", "failed"])
                );
            } else {
                let _ = write!(
                    line,
                    "ERROR {service}-{host} panic: {} (order {})\n  at shop::{}::{} (src/{}.rs:{})\n  at shop::http::handle (src/http.rs:{})\n  at tokio::runtime::task (src/task.rs:412)",
                    rng.pick(&[
                        "connection reset by peer",
                        "deadline exceeded",
                        "unique constraint violated",
                        "payment provider returned 502"
                    ]),
                    rng.below(2_000_000),
                    rng.pick(&["orders", "payments", "stock"]),
                    rng.pick(&["create", "update", "capture", "reserve"]),
                    rng.pick(&["orders", "payments", "stock"]),
                    rng.range(10, 900),
                    rng.range(10, 400)
                );
            }
            line.push('\n');
            out.write_all(line.as_bytes())?;
            in_file += line.len() as u64;
        }
        out.flush()?;
        drop(out);
        File::options()
            .write(true)
            .open(&path)?
            .set_modified(UNIX_EPOCH + Duration::from_millis(t))?;
        written += in_file;
        file_no += 1;
    }
    Ok(())
}

/// Total size and count of the regular files under `path` (a file or a tree).
fn tree_size(path: &Path) -> (u64, u64) {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return (0, 0);
    };
    if meta.is_file() {
        return (meta.len(), 1);
    }
    if !meta.is_dir() {
        return (0, 0);
    }
    let mut total = (0, 0);
    for entry in fs::read_dir(path).into_iter().flatten().flatten() {
        let (b, n) = tree_size(&entry.path());
        total.0 += b;
        total.1 += n;
    }
    total
}

/// Reads every file under `paths`, so they are in the page cache.
fn warm(paths: &[PathBuf]) {
    fn walk(p: &Path, buf: &mut [u8]) {
        match fs::symlink_metadata(p) {
            Ok(m) if m.is_file() => {
                if let Ok(mut f) = File::open(p) {
                    while matches!(f.read(buf), Ok(n) if n > 0) {}
                }
            }
            Ok(m) if m.is_dir() => {
                for e in fs::read_dir(p).into_iter().flatten().flatten() {
                    walk(&e.path(), buf);
                }
            }
            _ => {}
        }
    }
    let mut buf = vec![0u8; 1 << 20];
    for p in paths {
        walk(p, &mut buf);
    }
}

// ---- running and measuring commands ---------------------------------------------------

/// One process of a pipeline.
#[derive(Clone)]
struct Cmd {
    argv: Vec<String>,
    cwd: Option<PathBuf>,
    env: Vec<(String, String)>,
    stdin: Option<PathBuf>,
    stdout: Option<PathBuf>,
}

fn cmd<S: AsRef<str>>(argv: &[S]) -> Cmd {
    Cmd {
        argv: argv.iter().map(|s| s.as_ref().to_string()).collect(),
        cwd: None,
        env: Vec::new(),
        stdin: None,
        stdout: None,
    }
}

impl Cmd {
    fn cwd(mut self, d: &Path) -> Cmd {
        self.cwd = Some(d.to_path_buf());
        self
    }
    fn envs(mut self, vars: &[(String, String)]) -> Cmd {
        self.env.extend(vars.iter().cloned());
        self
    }
}

/// What one timed run cost.
#[derive(Clone, Copy, Default, Debug)]
struct Sample {
    secs: f64,
    /// User + system CPU seconds of every process.
    cpu: f64,
    /// Peak RSS in KiB: per pipeline the sum of its processes' peaks; across sequential
    /// pipelines the largest.
    rss_kib: u64,
}

fn timeval(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 / 1e6
}

/// Every timed process is started by GNU time, which reports its CPU time and peak RSS. A
/// process spawned directly from this (large) one would not do: `exec` records the old
/// address space's high-water mark in the new process's `ru_maxrss`, so every child would
/// show at least this process's own RSS. One forked by the small `time` starts clean.
const TIME: &str = "/usr/bin/time";

/// Runs processes connected stdout → stdin; fails unless every one exits 0.
fn run_pipeline(p: &[Cmd], logs: &Path) -> Result<Sample, String> {
    let started = Instant::now();
    let mut children = Vec::new();
    let mut prev: Option<std::process::ChildStdout> = None;
    for (i, c) in p.iter().enumerate() {
        let usage_path = logs.join(format!("usage.{i}"));
        let mut command = Command::new(TIME);
        command
            .args(["-f", "%U %S %M", "-o"])
            .arg(&usage_path)
            .args(&c.argv);
        for var in [
            "LIFEBOAT_STATE_DIR",
            "LIFEBOAT_IDENTITY_FILE",
            "LIFEBOAT_NOW",
            "LIFEBOAT_METRICS_FILE",
            "LIFEBOAT_LOG_FORMAT",
        ] {
            command.env_remove(var);
        }
        command.envs(c.env.iter().map(|(k, v)| (k, v)));
        if let Some(d) = &c.cwd {
            command.current_dir(d);
        }
        command.stdin(match (prev.take(), &c.stdin) {
            (Some(out), _) => Stdio::from(out),
            (None, Some(f)) => Stdio::from(File::open(f).map_err(|e| format!("{f:?}: {e}"))?),
            (None, None) => Stdio::null(),
        });
        command.stdout(match (i + 1 == p.len(), &c.stdout) {
            (false, _) => Stdio::piped(),
            (true, Some(f)) => Stdio::from(File::create(f).map_err(|e| format!("{f:?}: {e}"))?),
            (true, None) => Stdio::null(),
        });
        let err_path = logs.join(format!("stderr.{i}"));
        command.stderr(Stdio::from(
            File::create(&err_path).map_err(|e| format!("{err_path:?}: {e}"))?,
        ));
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", c.argv[0]))?;
        prev = child.stdout.take();
        children.push((child, err_path, usage_path, c.argv.join(" ")));
    }
    drop(prev);
    let mut sample = Sample::default();
    let mut failures = Vec::new();
    for (mut child, err_path, usage_path, what) in children {
        let status = child.wait().map_err(|e| format!("{what}: {e}"))?;
        // time writes "Command exited with non-zero status N" first when the command fails.
        let usage = fs::read_to_string(&usage_path).unwrap_or_default();
        let fields: Vec<f64> = usage
            .lines()
            .last()
            .unwrap_or("")
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        match fields[..] {
            [user, sys, rss_kib] => {
                sample.cpu += user + sys;
                sample.rss_kib += rss_kib as u64;
            }
            _ => failures.push(format!("`{what}`: no resource usage from {TIME}")),
        }
        if !status.success() {
            let stderr = fs::read_to_string(&err_path).unwrap_or_default();
            let tail: Vec<&str> = stderr.lines().rev().take(4).collect();
            failures.push(format!(
                "`{what}` failed ({status}): {}",
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            ));
        }
    }
    sample.secs = started.elapsed().as_secs_f64();
    if failures.is_empty() {
        Ok(sample)
    } else {
        Err(failures.join("; "))
    }
}

/// Runs pipelines one after the other; their costs add up, the peak RSS is the largest.
fn run_steps(steps: &[Vec<Cmd>], logs: &Path) -> Result<Sample, String> {
    let mut total = Sample::default();
    for p in steps {
        let s = run_pipeline(p, logs)?;
        total.secs += s.secs;
        total.cpu += s.cpu;
        total.rss_kib = total.rss_kib.max(s.rss_kib);
    }
    Ok(total)
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn sync() {
    // SAFETY: no arguments, no memory.
    unsafe { libc::sync() };
}

fn remove(paths: &[PathBuf]) {
    for p in paths {
        let _ = fs::remove_dir_all(p).or_else(|_| fs::remove_file(p));
    }
}

fn reset_dir(d: &Path) -> Result<(), String> {
    let _ = fs::remove_dir_all(d);
    fs::create_dir_all(d).map_err(|e| format!("{d:?}: {e}"))
}

// ---- cases ------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    Backup,
    Restore,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Backup => "backup",
            Op::Restore => "restore",
        }
    }
}

type Hook = Box<dyn Fn() -> Result<(), String>>;

/// One thing to time: untimed `prepare` before each run, timed `steps`, untimed `check`.
struct Case {
    group: &'static str,
    tool: String,
    part: Part,
    op: Op,
    warm: Vec<PathBuf>,
    prepare: Hook,
    steps: Vec<Vec<Cmd>>,
    check: Hook,
    /// Removed once the case has run (a restore's output and the backup it read).
    cleanup: Vec<PathBuf>,
}

/// A measured case.
struct Measured {
    group: &'static str,
    tool: String,
    part: String,
    op: Op,
    input_bytes: u64,
    samples: Vec<Sample>,
    error: Option<String>,
}

impl Measured {
    fn ok(&self) -> bool {
        self.error.is_none() && !self.samples.is_empty()
    }
    fn secs(&self) -> f64 {
        median(self.samples.iter().map(|s| s.secs).collect())
    }
    fn cpu(&self) -> f64 {
        median(self.samples.iter().map(|s| s.cpu).collect())
    }
    fn rss_mib(&self) -> f64 {
        self.samples.iter().map(|s| s.rss_kib).max().unwrap_or(0) as f64 / 1024.0
    }
    fn mbps(&self) -> f64 {
        self.input_bytes as f64 / MB / self.secs()
    }
    fn json(&self) -> Value {
        json!({
            "group": self.group, "tool": self.tool, "part": self.part, "op": self.op.name(),
            "input_bytes": self.input_bytes,
            "median_secs": self.ok().then(|| self.secs()),
            "mb_per_s": self.ok().then(|| self.mbps()),
            "median_cpu_secs": self.ok().then(|| self.cpu()),
            "peak_rss_mib": self.ok().then(|| self.rss_mib()),
            "runs": self.samples.iter().map(|s| json!({
                "secs": s.secs, "cpu_secs": s.cpu, "peak_rss_kib": s.rss_kib
            })).collect::<Vec<_>>(),
            "error": self.error,
        })
    }
}

/// Measures every case `runs` times, round-robin (run 1 of every case, then run 2, ...), so
/// that load from elsewhere on the machine weighs on every tool alike. A restore case runs
/// right after its backup case, then its outputs are removed. After run 1, the pairs run in
/// a different (seeded) order each run: the case that came right after borg's whole-corpus
/// restore was measured up to 1.9x slower, in every run, so no case may keep one neighbour;
/// the median then leaves such a run out.
fn measure_all(cases: &[Case], runs: usize, logs: &Path) -> Vec<Measured> {
    let mut all: Vec<Measured> = cases
        .iter()
        .map(|case| Measured {
            group: case.group,
            tool: case.tool.clone(),
            part: case.part.name.clone(),
            op: case.op,
            input_bytes: case.part.bytes,
            samples: Vec::new(),
            error: None,
        })
        .collect();
    let paired = cases.len().is_multiple_of(2)
        && cases.chunks(2).all(|p| {
            p[0].op == Op::Backup
                && p[1].op == Op::Restore
                && p[0].tool == p[1].tool
                && p[0].part.name == p[1].part.name
        });
    let pairs = if paired { cases.len() / 2 } else { 1 };
    let mut rng = Rng::new(0x5eed_0f0d);
    for run in 0..runs {
        eprintln!("run {}/{runs}", run + 1);
        let mut pair_order: Vec<usize> = (0..pairs).collect();
        if run > 0 {
            // Fisher-Yates.
            for i in (1..pairs).rev() {
                pair_order.swap(i, (rng.u64() % (i as u64 + 1)) as usize);
            }
        }
        let order: Vec<usize> = if paired {
            pair_order.iter().flat_map(|p| [2 * p, 2 * p + 1]).collect()
        } else {
            (0..cases.len()).collect()
        };
        for i in order {
            let (case, m) = (&cases[i], &mut all[i]);
            if m.error.is_some() {
                continue;
            }
            if run == 0 {
                warm(&case.warm);
            }
            let sample = (case.prepare)()
                .and_then(|()| {
                    sync();
                    run_steps(&case.steps, logs)
                })
                .and_then(|s| (case.check)().map(|()| s));
            match sample {
                Ok(s) => {
                    eprintln!(
                        "  {:<7} {:<6} {:<24} {:>8.3}s  cpu {:>7.2}s  rss {:>6.1} MiB",
                        m.op.name(),
                        m.part,
                        m.tool,
                        s.secs,
                        s.cpu,
                        s.rss_kib as f64 / 1024.0
                    );
                    m.samples.push(s);
                }
                Err(e) => {
                    eprintln!("  {} {} {}: FAILED: {e}", m.op.name(), m.part, m.tool);
                    m.error = Some(e);
                }
            }
            if case.op == Op::Restore {
                remove(&case.cleanup);
            }
        }
    }
    all
}

/// Keys, tools and directories every case needs.
struct Env {
    work: PathBuf,
    age_recipient: String,
    age_identity: PathBuf,
    openpgp_public: PathBuf,
    openpgp_secret: PathBuf,
    openpgp_fpr: String,
    gnupg: Vec<(String, String)>,
}

/// The checks after a restore: the restored regular files add up to the part's size.
fn restored_check(dir: PathBuf, part: &Part) -> Hook {
    let (want_bytes, want_files) = (part.bytes, part.files);
    Box::new(move || {
        let (bytes, files) = tree_size(&dir);
        if (bytes, files) == (want_bytes, want_files) {
            Ok(())
        } else {
            Err(format!(
                "restored {files} files / {bytes} bytes in {}, expected {want_files} / {want_bytes}",
                dir.display()
            ))
        }
    })
}

fn nonempty_check(file: PathBuf) -> Hook {
    Box::new(move || match fs::metadata(&file) {
        Ok(m) if m.len() > 0 => Ok(()),
        _ => Err(format!("{} was not written", file.display())),
    })
}

/// A lifeboat configuration: compression and envelope.
struct Config {
    name: &'static str,
    codec: &'static str,
    level: u32,
    openpgp: bool,
    /// The shop policy's `[verify] sqlite_check`, run by every restore of it.
    sqlite_check: &'static str,
}

/// lifeboat's configurations. Restores check the database with `quick_check` (the peers
/// check nothing); the last configuration shows what `integrity_check` costs instead.
const CONFIGS: &[Config] = &[
    Config {
        name: "zstd+age",
        codec: "zstd",
        level: 3,
        openpgp: false,
        sqlite_check: "quick_check",
    },
    Config {
        name: "zstd+openpgp",
        codec: "zstd",
        level: 3,
        openpgp: true,
        sqlite_check: "quick_check",
    },
    Config {
        name: "gzip+openpgp",
        codec: "gzip",
        level: 6,
        openpgp: true,
        sqlite_check: "quick_check",
    },
    Config {
        name: "zstd+age+integrity_check",
        codec: "zstd",
        level: 3,
        openpgp: false,
        sqlite_check: "integrity_check",
    },
];

/// Writes one policy per corpus part for `config` into `<dir>/policies`.
fn write_policies(env: &Env, corpus: &Corpus, config: &Config, dir: &Path) -> PathBuf {
    let policies = dir.join("policies");
    fs::create_dir_all(&policies).expect("policies dir");
    let store = dir.join("store");
    let encryption = if config.openpgp {
        format!(
            "openpgp_certs = [{:?}]",
            env.openpgp_public.display().to_string()
        )
    } else {
        format!("age_recipients = [{:?}]", env.age_recipient)
    };
    for (name, id, kind, path) in [
        (
            "shop",
            "7d0f6a1e-1b2c-4d3e-8f4a-5b6c7d8e9f01",
            "sqlite",
            "shop.db",
        ),
        (
            "wallet",
            "7d0f6a1e-1b2c-4d3e-8f4a-5b6c7d8e9f02",
            "files",
            "wallet",
        ),
        (
            "logs",
            "7d0f6a1e-1b2c-4d3e-8f4a-5b6c7d8e9f03",
            "files",
            "logs",
        ),
    ] {
        let text = format!(
            "# Written by benches/pipeline.rs ({cfg}).\n\
             name = \"{name}\"\nid = \"{id}\"\nschedule = \"0 3 * * *\"\n\n\
             [source]\nkind = \"{kind}\"\npath = {src:?}\n\n\
             [[store]]\nkind = \"local\"\npath = {store:?}\n\n\
             [encryption]\n{encryption}\n\n\
             [compression]\ncodec = \"{codec}\"\nlevel = {level}\n\n\
             [objectives]\nrto = \"1h\"\nrpo = \"1d\"\n{verify}",
            cfg = config.name,
            verify = if kind == "sqlite" {
                format!("\n[verify]\nsqlite_check = \"{}\"\n", config.sqlite_check)
            } else {
                String::new()
            },
            src = corpus.root.join(path).display().to_string(),
            store = store.display().to_string(),
            codec = config.codec,
            level = config.level,
        );
        fs::write(policies.join(format!("{name}.toml")), text).expect("write policy");
    }
    policies
}

/// The lifeboat part names (policies) a corpus part maps to.
fn policy_names(part: &Part) -> Vec<&'static str> {
    match part.name.as_str() {
        "whole" => vec!["shop", "wallet", "logs"],
        "shop" => vec!["shop"],
        "wallet" => vec!["wallet"],
        _ => vec!["logs"],
    }
}

fn lifeboat_cases(env: &Env, corpus: &Corpus, parts: &[Part], cases: &mut Vec<Case>) {
    for config in CONFIGS {
        let dir = env.work.join("lifeboat").join(config.name);
        let policies = write_policies(env, corpus, config, &dir);
        let (store, state, restored) = (dir.join("store"), dir.join("state"), dir.join("restored"));
        let identity = if config.openpgp {
            &env.openpgp_secret
        } else {
            &env.age_identity
        };
        let base = |verb: &str| {
            let mut argv = vec![
                LIFEBOAT.to_string(),
                "--policies".into(),
                policies.display().to_string(),
                "--state-dir".into(),
                state.display().to_string(),
            ];
            if verb == "restore" {
                argv.extend(["--identity".into(), identity.display().to_string()]);
            }
            argv.push(verb.into());
            argv
        };
        for part in parts {
            let names = policy_names(part);
            let mut argv = base("backup");
            if part.name == "whole" {
                argv.push("--all".into());
            } else {
                argv.extend(names.iter().map(|n| n.to_string()));
            }
            let (s1, s2, st) = (store.clone(), state.clone(), store.clone());
            let expect = names.len();
            cases.push(Case {
                group: "lifeboat",
                tool: format!("lifeboat {}", config.name),
                part: part.clone(),
                op: Op::Backup,
                warm: part.paths.iter().map(|p| corpus.root.join(p)).collect(),
                prepare: Box::new(move || {
                    let _ = fs::remove_dir_all(&s1);
                    reset_dir(&s2)
                }),
                steps: vec![vec![cmd(&argv)]],
                check: Box::new(move || {
                    let manifests = fs::read_dir(&st)
                        .map_err(|e| e.to_string())?
                        .flatten()
                        .filter(|e| e.file_name().to_string_lossy().ends_with(".manifest.json"))
                        .count();
                    if manifests == expect {
                        Ok(())
                    } else {
                        Err(format!(
                            "{manifests} manifests in the store, expected {expect}"
                        ))
                    }
                }),
                cleanup: Vec::new(),
            });
            let steps = names
                .iter()
                .map(|name| {
                    let target = match *name {
                        "shop" => restored.join("shop.db"),
                        other => restored.join(other),
                    };
                    let mut argv = base("restore");
                    argv.extend([
                        name.to_string(),
                        "--to".into(),
                        target.display().to_string(),
                        "--force".into(),
                    ]);
                    vec![cmd(&argv)]
                })
                .collect();
            let r = restored.clone();
            cases.push(Case {
                group: "lifeboat",
                tool: format!("lifeboat {}", config.name),
                part: part.clone(),
                op: Op::Restore,
                warm: vec![store.clone()],
                prepare: Box::new(move || reset_dir(&r)),
                steps,
                check: restored_check(restored.clone(), part),
                cleanup: vec![restored.clone(), store.clone(), state.clone()],
            });
        }
    }
}

fn shell_cases(env: &Env, corpus: &Corpus, parts: &[Part], cases: &mut Vec<Case>) {
    let dir = env.work.join("shell");
    fs::create_dir_all(&dir).expect("shell work dir");
    for part in parts {
        let tar: Vec<String> = ["tar", "-C", &corpus.root.display().to_string(), "-cf", "-"]
            .iter()
            .map(|s| s.to_string())
            .chain(part.paths.iter().map(|p| p.to_string()))
            .collect();
        let restored = dir.join("restored");
        let untar = cmd(&["tar", "-x", "-C", &restored.display().to_string()]);

        let out = dir.join(format!("{}.tar.gz.gpg", part.name));
        let o = out.clone();
        cases.push(Case {
            group: "shell",
            tool: "tar|gzip -6|gpg".into(),
            part: part.clone(),
            op: Op::Backup,
            warm: part.paths.iter().map(|p| corpus.root.join(p)).collect(),
            prepare: Box::new(move || {
                let _ = fs::remove_file(&o);
                Ok(())
            }),
            steps: vec![vec![
                cmd(&tar),
                cmd(&["gzip", "-6"]),
                cmd(&[
                    "gpg",
                    "--batch",
                    "--yes",
                    "--trust-model",
                    "always",
                    "-e",
                    "-r",
                    &env.openpgp_fpr,
                    "-o",
                    &out.display().to_string(),
                ])
                .envs(&env.gnupg),
            ]],
            check: nonempty_check(out.clone()),
            cleanup: Vec::new(),
        });
        let r = restored.clone();
        cases.push(Case {
            group: "shell",
            tool: "tar|gzip -6|gpg".into(),
            part: part.clone(),
            op: Op::Restore,
            warm: vec![out.clone()],
            prepare: Box::new(move || reset_dir(&r)),
            steps: vec![vec![
                cmd(&["gpg", "--batch", "-q", "-d", &out.display().to_string()]).envs(&env.gnupg),
                cmd(&["gzip", "-d"]),
                untar.clone(),
            ]],
            check: restored_check(restored.clone(), part),
            cleanup: vec![restored.clone(), out.clone()],
        });

        let out = dir.join(format!("{}.tar.zst.age", part.name));
        let o = out.clone();
        cases.push(Case {
            group: "shell",
            tool: "tar|zstd -T2|age".into(),
            part: part.clone(),
            op: Op::Backup,
            warm: part.paths.iter().map(|p| corpus.root.join(p)).collect(),
            prepare: Box::new(move || {
                let _ = fs::remove_file(&o);
                Ok(())
            }),
            steps: vec![vec![
                cmd(&tar),
                cmd(&["zstd", "-3", "-T2", "-q"]),
                cmd(&[
                    "age",
                    "-r",
                    &env.age_recipient,
                    "-o",
                    &out.display().to_string(),
                ]),
            ]],
            check: nonempty_check(out.clone()),
            cleanup: Vec::new(),
        });
        let r = restored.clone();
        cases.push(Case {
            group: "shell",
            tool: "tar|zstd -T2|age".into(),
            part: part.clone(),
            op: Op::Restore,
            warm: vec![out.clone()],
            prepare: Box::new(move || reset_dir(&r)),
            steps: vec![vec![
                cmd(&[
                    "age",
                    "-d",
                    "-i",
                    &env.age_identity.display().to_string(),
                    &out.display().to_string(),
                ]),
                cmd(&["zstd", "-d", "-q"]),
                untar,
            ]],
            check: restored_check(restored.clone(), part),
            cleanup: vec![restored.clone(), out.clone()],
        });
    }
}

fn restic_cases(env: &Env, corpus: &Corpus, parts: &[Part], cases: &mut Vec<Case>) {
    let dir = env.work.join("restic");
    let (repo, cache, restored) = (dir.join("repo"), dir.join("cache"), dir.join("restored"));
    let vars = vec![
        ("RESTIC_REPOSITORY".to_string(), repo.display().to_string()),
        ("RESTIC_PASSWORD".into(), "bench-only-password".into()),
        ("RESTIC_CACHE_DIR".into(), cache.display().to_string()),
        ("RESTIC_PROGRESS_FPS".into(), "0.1".into()),
    ];
    for part in parts {
        let mut argv = vec!["restic", "backup", "-q", "--host", "bench"];
        argv.extend(part.paths.iter().copied());
        let (r, c, v, logs) = (repo.clone(), cache.clone(), vars.clone(), dir.join("logs"));
        cases.push(Case {
            group: "restic",
            tool: "restic".into(),
            part: part.clone(),
            op: Op::Backup,
            warm: part.paths.iter().map(|p| corpus.root.join(p)).collect(),
            prepare: Box::new(move || {
                let _ = fs::remove_dir_all(&r);
                let _ = fs::remove_dir_all(&c);
                reset_dir(&logs)?;
                run_pipeline(&[cmd(&["restic", "init", "-q"]).envs(&v)], &logs).map(drop)
            }),
            steps: vec![vec![cmd(&argv).cwd(&corpus.root).envs(&vars)]],
            check: Box::new(|| Ok(())),
            cleanup: Vec::new(),
        });
        let r = restored.clone();
        cases.push(Case {
            group: "restic",
            tool: "restic".into(),
            part: part.clone(),
            op: Op::Restore,
            warm: vec![repo.clone()],
            prepare: Box::new(move || reset_dir(&r)),
            steps: vec![vec![
                cmd(&[
                    "restic",
                    "restore",
                    "latest",
                    "-q",
                    "--target",
                    &restored.display().to_string(),
                ])
                .envs(&vars),
            ]],
            check: restored_check(restored.clone(), part),
            cleanup: vec![restored.clone(), repo.clone(), cache.clone()],
        });
    }
}

fn borg_cases(env: &Env, corpus: &Corpus, parts: &[Part], cases: &mut Vec<Case>) {
    let dir = env.work.join("borg");
    let (repo, base, restored) = (dir.join("repo"), dir.join("home"), dir.join("restored"));
    let vars = vec![
        (
            "BORG_PASSPHRASE".to_string(),
            "bench-only-password".to_string(),
        ),
        ("BORG_BASE_DIR".into(), base.display().to_string()),
        ("BORG_RELOCATED_REPO_ACCESS_IS_OK".into(), "yes".into()),
    ];
    let archive = format!("{}::bench", repo.display());
    for part in parts {
        // zstd level 3 like lifeboat (borg's default is lz4: faster, larger output).
        let mut argv = vec![
            "borg",
            "create",
            "--compression",
            "zstd,3",
            archive.as_str(),
        ];
        argv.extend(part.paths.iter().copied());
        let (r, b, v, logs) = (repo.clone(), base.clone(), vars.clone(), dir.join("logs"));
        cases.push(Case {
            group: "borg",
            tool: "borg".into(),
            part: part.clone(),
            op: Op::Backup,
            warm: part.paths.iter().map(|p| corpus.root.join(p)).collect(),
            prepare: Box::new(move || {
                let _ = fs::remove_dir_all(&r);
                let _ = fs::remove_dir_all(&b);
                reset_dir(&logs)?;
                let init = ["borg", "init", "-e", "repokey", &r.display().to_string()];
                run_pipeline(&[cmd(&init).envs(&v)], &logs).map(drop)
            }),
            steps: vec![vec![cmd(&argv).cwd(&corpus.root).envs(&vars)]],
            check: Box::new(|| Ok(())),
            cleanup: Vec::new(),
        });
        let r = restored.clone();
        cases.push(Case {
            group: "borg",
            tool: "borg".into(),
            part: part.clone(),
            op: Op::Restore,
            warm: vec![repo.clone()],
            prepare: Box::new(move || reset_dir(&r)),
            steps: vec![vec![
                cmd(&["borg", "extract", &archive])
                    .cwd(&restored)
                    .envs(&vars),
            ]],
            check: restored_check(restored.clone(), part),
            cleanup: vec![restored.clone(), repo.clone(), base.clone()],
        });
    }
}

// ---- stages alone (in-process, lifeboat's own code) -----------------------------------

/// A stage's rate, measured alone on the whole corpus (or the bytes that reach it).
struct Stage {
    name: &'static str,
    /// Which bytes `bytes` counts (e.g. "tar in", "zst in").
    unit: &'static str,
    bytes: u64,
    secs: f64,
    cpu: f64,
}

impl Stage {
    fn rate(&self) -> f64 {
        self.bytes as f64 / self.secs
    }
    fn cpu_per_byte(&self) -> f64 {
        self.cpu / self.bytes as f64
    }
}

fn cpu_now() -> f64 {
    // SAFETY: plain FFI; `ru` is a valid out-parameter.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    timeval(ru.ru_utime) + timeval(ru.ru_stime)
}

/// Times `f` (which returns the bytes it processed) `runs` times; `before` runs untimed.
fn time_stage(
    name: &'static str,
    unit: &'static str,
    runs: usize,
    mut before: impl FnMut(),
    mut f: impl FnMut() -> io::Result<u64>,
) -> Stage {
    let (mut secs, mut cpu, mut bytes) = (Vec::new(), Vec::new(), 0);
    for _ in 0..runs {
        before();
        let (c0, t0) = (cpu_now(), Instant::now());
        bytes = f().unwrap_or_else(|e| die(&format!("stage {name}: {e}")));
        secs.push(t0.elapsed().as_secs_f64());
        cpu.push(cpu_now() - c0);
    }
    let s = Stage {
        name,
        unit,
        bytes,
        secs: median(secs),
        cpu: median(cpu),
    };
    eprintln!(
        "  stage {:<22} {:>10.1} MB/s ({}), cpu {:.2}s",
        s.name,
        s.rate() / MB,
        s.unit,
        s.cpu
    );
    s
}

const BUF: usize = 256 * 1024;

/// Copies `r` to `w` in lifeboat's pipe chunk size; returns the bytes copied.
fn pump(r: &mut dyn Read, w: &mut dyn Write) -> io::Result<u64> {
    let mut buf = vec![0u8; BUF];
    let mut n = 0u64;
    loop {
        match r.read(&mut buf)? {
            0 => return Ok(n),
            k => {
                w.write_all(&buf[..k])?;
                n += k as u64;
            }
        }
    }
}

fn open(p: &Path) -> io::Result<BufReader<File>> {
    Ok(BufReader::with_capacity(BUF, File::open(p)?))
}

/// Sizes of the whole corpus's archive at each point of the pipelines.
#[derive(Default, Clone, Copy)]
struct Sizes {
    whole: u64,
    shop: u64,
    tar: u64,
    zst: u64,
    gz: u64,
}

/// Per-part compression ratios (zstd -3, gzip -6 of each part's tar).
fn part_ratios(corpus: &Corpus, dir: &Path) -> BTreeMap<String, (u64, f64, f64)> {
    let mut out = BTreeMap::new();
    for part in &corpus.parts {
        let tar = dir.join(format!("{}.tar", part.name));
        let mut argv = vec![
            "tar".to_string(),
            "-C".into(),
            corpus.root.display().to_string(),
            "-cf".into(),
            tar.display().to_string(),
        ];
        argv.extend(part.paths.iter().map(|p| p.to_string()));
        run_pipeline(&[cmd(&argv)], dir).unwrap_or_else(|e| die(&e));
        let ratio = |c: Compression| -> f64 {
            let mut w = c.writer(Counter(0)).expect("compressor");
            let n = pump(&mut open(&tar).expect("tar"), &mut w).expect("compress");
            n as f64 / w.finish().expect("finish").0 as f64
        };
        let (z, g) = (ratio(Compression::Zstd(3)), ratio(Compression::Gzip(6)));
        let size = fs::metadata(&tar).map(|m| m.len()).unwrap_or(0);
        out.insert(part.name.clone(), (size, z, g));
        if part.name != "whole" {
            let _ = fs::remove_file(&tar);
        }
    }
    out
}

/// A writer that only counts.
struct Counter(u64);

impl Write for Counter {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0 += b.len() as u64;
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn stages(env: &Env, corpus: &Corpus, runs: usize) -> (Vec<Stage>, Sizes) {
    let dir = env.work.join("stages");
    reset_dir(&dir).unwrap_or_else(|e| die(&e));
    let tar = dir.join("whole.tar");
    let mut argv = vec![
        "tar".to_string(),
        "-C".into(),
        corpus.root.display().to_string(),
        "-cf".into(),
        tar.display().to_string(),
    ];
    argv.extend(["shop.db", "wallet", "logs"].map(String::from));
    run_pipeline(&[cmd(&argv)], &dir).unwrap_or_else(|e| die(&e));

    let mut recipients = Recipients::default();
    recipients
        .add_age(&env.age_recipient)
        .expect("age recipient");
    let mut pgp_recipients = Recipients::default();
    pgp_recipients
        .add_openpgp_file(&env.openpgp_public)
        .expect("OpenPGP certificate");
    let ids = Identities::load(&[env.age_identity.clone(), env.openpgp_secret.clone()])
        .expect("identities");

    // The intermediate files every later stage reads (made untimed, page cache warm).
    let make = |path: &Path, f: &dyn Fn(File) -> io::Result<()>| {
        f(File::create(path).expect("create")).unwrap_or_else(|e| die(&format!("{e}")));
    };
    let (zst, gz) = (dir.join("whole.tar.zst"), dir.join("whole.tar.gz"));
    for (path, c) in [(&zst, Compression::Zstd(3)), (&gz, Compression::Gzip(6))] {
        make(path, &|f| {
            let mut w = c.writer(BufWriter::new(f))?;
            pump(&mut open(&tar)?, &mut w)?;
            w.finish()?.flush()
        });
    }
    let (zst_age, zst_gpg) = (dir.join("whole.tar.zst.age"), dir.join("whole.tar.zst.gpg"));
    for (path, envelope, r) in [
        (&zst_age, Envelope::Age, &recipients),
        (&zst_gpg, Envelope::OpenPgp, &pgp_recipients),
    ] {
        make(path, &|f| {
            let mut w = envelope
                .writer(r, BufWriter::new(f), false)
                .map_err(io::Error::other)?;
            pump(&mut open(&zst)?, &mut w)?;
            w.finish()
        });
    }
    let size = |p: &Path| fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let sizes = Sizes {
        whole: corpus.part("whole").bytes,
        shop: corpus.part("shop").bytes,
        tar: size(&tar),
        zst: size(&zst),
        gz: size(&gz),
    };
    warm(&[dir.clone(), corpus.root.clone()]);

    let mut out = Vec::new();
    let files: Vec<PathBuf> = {
        fn list(p: &Path, out: &mut Vec<PathBuf>) {
            match fs::symlink_metadata(p) {
                Ok(m) if m.is_file() => out.push(p.to_path_buf()),
                Ok(m) if m.is_dir() => {
                    let mut es: Vec<_> = fs::read_dir(p).into_iter().flatten().flatten().collect();
                    es.sort_by_key(|e| e.file_name());
                    es.iter().for_each(|e| list(&e.path(), out));
                }
                _ => {}
            }
        }
        let mut v = Vec::new();
        list(&corpus.root.join("shop.db"), &mut v);
        list(&corpus.root.join("wallet"), &mut v);
        list(&corpus.root.join("logs"), &mut v);
        v
    };
    out.push(time_stage(
        "read (page cache)",
        "corpus in",
        runs,
        || {},
        || {
            let mut n = 0;
            for f in &files {
                n += pump(&mut File::open(f)?, &mut io::sink())?;
            }
            Ok(n)
        },
    ));
    let scratch = dir.join("scratch");
    out.push(time_stage(
        "sqlite source (WAL pages)",
        "shop.db in",
        runs,
        || {},
        || {
            // lifeboat's SQLite source itself: a read transaction on the WAL database, its
            // row counts, and its pages streamed as a one-entry tar.
            let spec = lifeboat::policy::SourceSpec::Sqlite {
                path: corpus.root.join("shop.db"),
                cipher: None,
            };
            let mut running = lifeboat::source::start(&spec, &scratch, &lifeboat::Clock::system())
                .map_err(io::Error::other)?;
            pump(&mut running.reader, &mut io::sink())?;
            running.join().map_err(io::Error::other)?;
            Ok(sizes.shop)
        },
    ));
    out.push(time_stage(
        "sha256",
        "bytes in",
        runs,
        || {},
        || lifeboat::hash::sha256_of(open(&tar)?).map(|(_, n)| n),
    ));
    for (name, c) in [
        ("zstd -3 (2 workers)", Compression::Zstd(3)),
        ("gzip -6", Compression::Gzip(6)),
    ] {
        out.push(time_stage(
            name,
            "tar in",
            runs,
            || {},
            || {
                let mut w = c.writer(io::sink())?;
                let n = pump(&mut open(&tar)?, &mut w)?;
                w.finish()?;
                Ok(n)
            },
        ));
    }
    for (name, envelope, r) in [
        ("age encrypt", Envelope::Age, &recipients),
        ("OpenPGP encrypt", Envelope::OpenPgp, &pgp_recipients),
    ] {
        out.push(time_stage(
            name,
            "bytes in",
            runs,
            || {},
            || {
                let mut w = envelope
                    .writer(r, io::sink(), false)
                    .map_err(io::Error::other)?;
                let n = pump(&mut open(&zst)?, &mut w)?;
                w.finish()?;
                Ok(n)
            },
        ));
    }
    let written = dir.join("write.out");
    out.push(time_stage(
        "write + fsync",
        "bytes out",
        runs,
        || {
            let _ = fs::remove_file(&written);
            sync();
        },
        || {
            let mut f = BufWriter::with_capacity(BUF, File::create(&written)?);
            let n = pump(&mut open(&zst_age)?, &mut f)?;
            f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
            Ok(n)
        },
    ));
    let _ = fs::remove_file(&written);
    for (name, input) in [("age decrypt", &zst_age), ("OpenPGP decrypt", &zst_gpg)] {
        out.push(time_stage(
            name,
            "bytes in",
            runs,
            || {},
            || {
                let file = File::open(input)?;
                let mut r = codec::decrypt_reader(file, &ids)
                    .map_err(|_| io::Error::other("cannot decrypt"))?;
                pump(&mut r, &mut io::sink())?;
                Ok(fs::metadata(input)?.len())
            },
        ));
    }
    for (name, input) in [("zstd decompress", &zst), ("gzip decompress", &gz)] {
        out.push(time_stage(
            name,
            "tar out",
            runs,
            || {},
            || {
                let mut r = codec::decompress_reader(open(input)?)?;
                pump(&mut r, &mut io::sink())
            },
        ));
    }
    let unpacked = dir.join("unpacked");
    out.push(time_stage(
        "untar (write files)",
        "tar in",
        runs,
        || {
            reset_dir(&unpacked).unwrap_or_else(|e| die(&e));
            sync();
        },
        || {
            let mut a = tar::Archive::new(open(&tar)?);
            a.set_preserve_permissions(true);
            a.set_preserve_mtime(true);
            a.unpack(&unpacked)?;
            Ok(sizes.tar)
        },
    ));
    // What lifeboat's restore checks afterwards: PRAGMA quick_check or integrity_check and
    // the row counts of the database, and the sha256 of every restored file of the trees.
    for (name, check) in [
        ("check: SQLite quick_check", SqliteCheck::Quick),
        ("check: SQLite integrity_check", SqliteCheck::Integrity),
    ] {
        out.push(time_stage(
            name,
            "shop.db in",
            runs,
            || {},
            || {
                let db = unpacked.join("shop.db");
                lifeboat::source::check_restored_database(&db, &[], None, check)
                    .map_err(io::Error::other)?;
                Ok(sizes.shop)
            },
        ));
    }
    out.push(time_stage(
        "check: rehash files",
        "trees in",
        runs,
        || {},
        || {
            let mut n = 0;
            for f in files.iter().filter(|f| !f.ends_with("shop.db")) {
                let rel = f.strip_prefix(&corpus.root).expect("inside corpus");
                n += lifeboat::hash::sha256_of(File::open(unpacked.join(rel))?)?.1;
            }
            Ok(n)
        },
    ));
    let _ = fs::remove_dir_all(&unpacked);
    (out, sizes)
}

/// A pipeline as a chain of stages: (stage, which bytes reach it, serial).
struct PathModel {
    op: Op,
    config: &'static str,
    chain: Vec<(&'static str, &'static str, bool)>,
}

fn path_models() -> Vec<PathModel> {
    const QUICK: &str = "check: SQLite quick_check";
    let backup = |config, compress, encrypt, out| PathModel {
        op: Op::Backup,
        config,
        chain: vec![
            ("sqlite source (WAL pages)", "shop", false),
            ("read (page cache)", "whole", false),
            ("sha256", "tar", false),
            (compress, "tar", false),
            (encrypt, out, false),
            ("sha256", out, false),
            ("write + fsync", out, false),
        ],
    };
    let restore = |config, decrypt, decompress, input, check| PathModel {
        op: Op::Restore,
        config,
        chain: vec![
            ("read (page cache)", input, false),
            ("sha256", input, false),
            (decrypt, input, false),
            (decompress, "tar", false),
            ("sha256", "tar", false),
            ("untar (write files)", "tar", false),
            (check, "shop", true),
            ("check: rehash files", "trees", true),
        ],
    };
    vec![
        backup("zstd+age", "zstd -3 (2 workers)", "age encrypt", "zst"),
        backup(
            "zstd+openpgp",
            "zstd -3 (2 workers)",
            "OpenPGP encrypt",
            "zst",
        ),
        backup("gzip+openpgp", "gzip -6", "OpenPGP encrypt", "gz"),
        restore("zstd+age", "age decrypt", "zstd decompress", "zst", QUICK),
        restore(
            "zstd+openpgp",
            "OpenPGP decrypt",
            "zstd decompress",
            "zst",
            QUICK,
        ),
        restore(
            "gzip+openpgp",
            "OpenPGP decrypt",
            "gzip decompress",
            "gz",
            QUICK,
        ),
        restore(
            "zstd+age+integrity_check",
            "age decrypt",
            "zstd decompress",
            "zst",
            "check: SQLite integrity_check",
        ),
    ]
}

/// What a path model predicts for the whole corpus, and which term bounds it.
struct Bound {
    op: Op,
    config: &'static str,
    /// (stage, seconds for the whole corpus, CPU seconds, serial)
    terms: Vec<(&'static str, f64, f64, bool)>,
    predicted_secs: f64,
    bound: String,
}

fn bounds(stages: &[Stage], sizes: Sizes, cores: f64) -> Vec<Bound> {
    let bytes = |which: &str| match which {
        "whole" => sizes.whole,
        "shop" => sizes.shop,
        "trees" => sizes.whole - sizes.shop,
        "tar" => sizes.tar,
        "zst" => sizes.zst,
        "gz" => sizes.gz,
        _ => unreachable!(),
    } as f64;
    path_models()
        .into_iter()
        .map(|m| {
            let terms: Vec<_> = m
                .chain
                .iter()
                .filter_map(|(name, which, serial)| {
                    let s = stages.iter().find(|s| s.name == *name)?;
                    let b = bytes(which);
                    Some((*name, b / s.rate(), b * s.cpu_per_byte(), *serial))
                })
                .collect();
            let serial: f64 = terms.iter().filter(|t| t.3).map(|t| t.1).sum();
            let slowest = terms
                .iter()
                .filter(|t| !t.3)
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .copied();
            let cpu_budget: f64 = terms.iter().filter(|t| !t.3).map(|t| t.2).sum::<f64>() / cores;
            let (stream_name, stream_secs) = match slowest {
                Some(s) if s.1 >= cpu_budget => (format!("{} (slowest stage)", s.0), s.1),
                _ => (
                    format!("CPU ({cores} cores shared by all stages)"),
                    cpu_budget,
                ),
            };
            let mut bound = format!("streaming: {stream_name}");
            for t in terms.iter().filter(|t| t.3) {
                if t.1 > 0.25 * stream_secs {
                    let _ = write!(
                        bound,
                        " + serial {} {:.0}%",
                        t.0,
                        100.0 * t.1 / (serial + stream_secs)
                    );
                }
            }
            Bound {
                op: m.op,
                config: m.config,
                terms,
                predicted_secs: serial + stream_secs,
                bound,
            }
        })
        .collect()
}

// ---- environment, tools, machine ------------------------------------------------------

fn which(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

/// Installs what is missing from Debian (restic, borgbackup, the shell tools).
fn ensure_tools(opts: &Opts) -> Vec<String> {
    let mut wanted = vec![
        ("time", "time"),
        ("tar", "tar"),
        ("gzip", "gzip"),
        ("zstd", "zstd"),
        ("age", "age"),
    ];
    wanted.push(("gpg", "gnupg"));
    if opts.wants("restic") {
        wanted.push(("restic", "restic"));
    }
    if opts.wants("borg") {
        wanted.push(("borg", "borgbackup"));
    }
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|(t, _)| !which(t))
        .map(|(_, p)| *p)
        .collect();
    if !missing.is_empty() {
        eprintln!("installing from Debian: {}", missing.join(" "));
        // SAFETY: plain FFI.
        let root = unsafe { libc::geteuid() } == 0;
        let apt = |args: &[&str]| {
            let mut c = if root {
                Command::new("apt-get")
            } else {
                let mut c = Command::new("sudo");
                c.arg("apt-get");
                c
            };
            c.args(args).env("DEBIAN_FRONTEND", "noninteractive");
            c.status().map(|s| s.success()).unwrap_or(false)
        };
        let _ = apt(&["update", "-qq"]);
        let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
        args.extend(&missing);
        if !apt(&args) {
            eprintln!("warning: could not install {}", missing.join(" "));
        }
    }
    wanted
        .iter()
        .filter(|(t, _)| !which(t))
        .map(|(t, _)| t.to_string())
        .collect()
}

fn first_line(argv: &[&str]) -> String {
    Command::new(argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(|l| l.trim().to_string()))
        .unwrap_or_else(|| "not found".into())
}

/// The 1-minute load average (other work on the machine slows every figure).
fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(String::from))
        .unwrap_or_else(|| "?".into())
}

fn machine(dir: &Path, load_at_start: &str) -> BTreeMap<&'static str, String> {
    let read = |p: &str| fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("?")
        .trim()
        .to_string();
    let flags: Vec<&str> = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .map(|l| {
            ["sha_ni", "aes", "avx2", "avx512f"]
                .into_iter()
                .filter(|f| l.split_whitespace().any(|w| w == *f))
                .collect()
        })
        .unwrap_or_default();
    let mem_kib: u64 = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    let os = read("/etc/os-release")
        .lines()
        .find(|l| l.starts_with("PRETTY_NAME="))
        .map(|l| {
            l.trim_start_matches("PRETTY_NAME=")
                .trim_matches('"')
                .to_string()
        })
        .unwrap_or_default();
    let disk = first_line(&["sh", "-c", &format!("df -T '{}' | tail -1", dir.display())]);
    let git = first_line(&[
        "sh",
        "-c",
        &format!(
            "cd '{MANIFEST_DIR}' && echo $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.toml || echo +uncommitted)"
        ),
    ]);
    let mut m = BTreeMap::new();
    m.insert("cpu", format!("{cpu} ({})", flags.join(", ")));
    m.insert(
        "cores",
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .to_string(),
    );
    m.insert(
        "memory",
        format!("{:.1} GiB", mem_kib as f64 / 1024.0 / 1024.0),
    );
    m.insert(
        "load average",
        format!("{load_at_start} at start, {} at end", load_average()),
    );
    m.insert(
        "kernel",
        read("/proc/sys/kernel/osrelease").trim().to_string(),
    );
    m.insert("os", os);
    m.insert(
        "disk",
        disk.split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" "),
    );
    m.insert(
        "lifeboat",
        format!("{} ({git})", first_line(&[LIFEBOAT, "--version"])),
    );
    m.insert("rustc", first_line(&["rustc", "--version"]));
    m.insert("age", first_line(&["age", "--version"]));
    m.insert("gpg", first_line(&["gpg", "--version"]));
    m.insert("zstd", first_line(&["zstd", "--version"]));
    m.insert("gzip", first_line(&["gzip", "--version"]));
    m.insert("tar", first_line(&["tar", "--version"]));
    m.insert("restic", first_line(&["restic", "version"]));
    m.insert("borg", first_line(&["borg", "--version"]));
    m
}

fn setup_env(work: &Path) -> Env {
    let keys = Path::new(MANIFEST_DIR).join("fixtures/keys");
    let age_recipient = fs::read_to_string(keys.join("TEST-ONLY-age-recipient.txt"))
        .expect("age recipient fixture")
        .trim()
        .to_string();
    let gnupg_home = work.join("gnupg");
    let _ = fs::remove_dir_all(&gnupg_home);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&gnupg_home)
        .expect("GNUPGHOME");
    let gnupg = vec![("GNUPGHOME".to_string(), gnupg_home.display().to_string())];
    let logs = work.join("logs");
    fs::create_dir_all(&logs).expect("logs dir");
    let secret = keys.join("TEST-ONLY-openpgp-secret.asc");
    run_pipeline(
        &[cmd(&["gpg", "--batch", "--import", &secret.display().to_string()]).envs(&gnupg)],
        &logs,
    )
    .unwrap_or_else(|e| die(&format!("cannot import the OpenPGP fixture key: {e}")));
    // The agent starts before any timed decryption.
    let _ = run_pipeline(
        &[cmd(&["gpgconf", "--launch", "gpg-agent"]).envs(&gnupg)],
        &logs,
    );
    let listing = Command::new("gpg")
        .args(["--batch", "--with-colons", "--list-keys"])
        .envs(gnupg.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("gpg --list-keys");
    let openpgp_fpr = String::from_utf8_lossy(&listing.stdout)
        .lines()
        .find(|l| l.starts_with("fpr:"))
        .and_then(|l| l.split(':').nth(9))
        .map(String::from)
        .unwrap_or_else(|| die("no fingerprint in the imported OpenPGP key"));
    Env {
        work: work.to_path_buf(),
        age_recipient,
        age_identity: keys.join("TEST-ONLY-age-identity.txt"),
        openpgp_public: keys.join("TEST-ONLY-openpgp-public.asc"),
        openpgp_secret: secret,
        openpgp_fpr,
        gnupg,
    }
}

// ---- report -----------------------------------------------------------------------------

/// The command that made this report (with the defaults it ran with made explicit).
fn command_line(opts: &Opts) -> String {
    let mut args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    for (flag, value) in [
        ("--size", fmt_scale(opts.size)),
        ("--runs", opts.runs.to_string()),
    ] {
        if !args.iter().any(|a| a == flag) {
            args.extend([flag.to_string(), value]);
        }
    }
    format!("cargo bench --bench pipeline -- {}", args.join(" "))
}

/// A Markdown table cell: `|` (as in shell pipelines) must be escaped.
fn cell(s: &str) -> String {
    s.replace('|', "\\|")
}

fn mb(b: u64) -> String {
    format!("{:.1} MB", b as f64 / MB)
}

struct Goal {
    what: String,
    measured: String,
    met: Option<bool>,
}

fn find<'a>(results: &'a [Measured], tool: &str, part: &str, op: Op) -> Option<&'a Measured> {
    results
        .iter()
        .find(|m| m.tool == tool && m.part == part && m.op == op && m.ok())
}

fn fastest_peer(results: &[Measured], op: Op) -> Option<&Measured> {
    results
        .iter()
        .filter(|m| (m.group == "restic" || m.group == "borg") && m.part == "whole" && m.op == op)
        .filter(|m| m.ok())
        .min_by(|a, b| a.secs().total_cmp(&b.secs()))
}

fn goals(results: &[Measured], rss: &[(f64, Vec<Measured>)], bound_list: &[Bound]) -> Vec<Goal> {
    let mut g = Vec::new();
    let lb = |op| find(results, "lifeboat zstd+age", "whole", op);
    let mut ratio_goal = |what: String,
                          ours: Option<&Measured>,
                          theirs: Option<&Measured>,
                          min: f64| {
        let (measured, met) = match (ours, theirs) {
            (Some(a), Some(b)) => {
                let r = b.secs() / a.secs();
                (
                    format!(
                        "{r:.2}x ({:.1} vs {:.1} MB/s, {}); CPU seconds {:.2}x ({:.2} vs {:.2})",
                        a.mbps(),
                        b.mbps(),
                        b.tool,
                        b.cpu() / a.cpu(),
                        a.cpu(),
                        b.cpu()
                    ),
                    Some(r >= min),
                )
            }
            _ => ("not measured".into(), None),
        };
        g.push(Goal {
            what,
            measured,
            met,
        });
    };
    ratio_goal(
        "backup, whole, zstd+age >= 1.3x the fastest peer".into(),
        lb(Op::Backup),
        fastest_peer(results, Op::Backup),
        1.3,
    );
    ratio_goal(
        "backup, whole, zstd+age >= 10x tar|gzip -6|gpg -e".into(),
        lb(Op::Backup),
        find(results, "tar|gzip -6|gpg", "whole", Op::Backup),
        10.0,
    );
    ratio_goal(
        "backup, whole, zstd+age within 1.25x of tar|zstd -T2|age (ratio >= 0.8)".into(),
        lb(Op::Backup),
        find(results, "tar|zstd -T2|age", "whole", Op::Backup),
        0.8,
    );
    ratio_goal(
        "restore, whole, zstd+age >= 2x the fastest peer's restore".into(),
        lb(Op::Restore),
        fastest_peer(results, Op::Restore),
        2.0,
    );
    // The slowest of decryption and decompression alone, for the whole corpus.
    let slowest = bound_list
        .iter()
        .find(|b| b.op == Op::Restore && b.config == "zstd+age")
        .and_then(|b| {
            b.terms
                .iter()
                .filter(|t| t.0 == "age decrypt" || t.0 == "zstd decompress")
                .max_by(|a, b| a.1.total_cmp(&b.1))
        });
    g.push(Goal {
        what: "restore, whole, zstd+age within 1.5x of its slowest unavoidable stage alone (decrypt or decompress)".into(),
        measured: match (lb(Op::Restore), slowest) {
            (Some(m), Some(s)) => format!(
                "{:.2}x ({:.2} s vs {}: {:.2} s)",
                m.secs() / s.1,
                m.secs(),
                s.0,
                s.1
            ),
            _ => "not measured".into(),
        },
        met: lb(Op::Restore)
            .zip(slowest)
            .map(|(m, s)| m.secs() / s.1 <= 1.5),
    });
    for b in bound_list.iter().filter(|b| b.config.contains("openpgp")) {
        let ours = find(results, &format!("lifeboat {}", b.config), "whole", b.op);
        g.push(Goal {
            what: format!(
                "{}, whole, {} within 1.25x of its bound ({})",
                b.op.name(),
                b.config,
                b.bound
            ),
            measured: ours.map_or("not measured".into(), |m| {
                format!(
                    "{:.2}x ({:.2} s vs {:.2} s modelled)",
                    m.secs() / b.predicted_secs,
                    m.secs(),
                    b.predicted_secs
                )
            }),
            met: ours.map(|m| m.secs() / b.predicted_secs <= 1.25),
        });
    }
    let mut peaks: Vec<(String, f64)> = results
        .iter()
        .filter(|m| m.group == "lifeboat" && m.ok())
        .map(|m| {
            (
                format!("{} {} {}", m.op.name(), m.part, m.tool),
                m.rss_mib(),
            )
        })
        .collect();
    for (scale, ms) in rss {
        peaks.extend(ms.iter().filter(|m| m.ok()).map(|m| {
            (
                format!("{} whole {} at size {scale}", m.op.name(), m.tool),
                m.rss_mib(),
            )
        }));
    }
    let worst = peaks.iter().max_by(|a, b| a.1.total_cmp(&b.1));
    g.push(Goal {
        what: "peak RSS <= 64 MiB, backup and restore, every configuration and size".into(),
        measured: worst.map_or("not measured".into(), |w| {
            format!("max {:.1} MiB ({})", w.1, w.0)
        }),
        met: worst.map(|w| w.1 <= 64.0),
    });
    g
}

/// Everything the report shows.
struct Report<'a> {
    opts: &'a Opts,
    corpus: &'a Corpus,
    machine: &'a BTreeMap<&'static str, String>,
    ratios: &'a BTreeMap<String, (u64, f64, f64)>,
    results: &'a [Measured],
    stage_list: &'a [Stage],
    sizes: Sizes,
    bound_list: &'a [Bound],
    rss: &'a [(f64, Vec<Measured>)],
    goal_list: &'a [Goal],
}

/// The Markdown report.
fn render(report: &Report) -> String {
    let Report {
        opts,
        corpus,
        machine,
        ratios,
        results,
        stage_list,
        sizes,
        bound_list,
        rss,
        goal_list,
    } = *report;
    let mut md = String::new();
    let w = &mut md;
    let _ = writeln!(w, "# lifeboat pipeline benchmark\n");
    let whole = corpus.part("whole");
    if opts.size < 1.0 {
        let _ = writeln!(
            w,
            "**Scaled-down run (`--size {}`)**: the corpus is {} instead of ~860 MB, so fixed costs (process start, keys, fsync, SQLite checks) weigh more than at full size.\n",
            fmt_scale(opts.size),
            mb(whole.bytes)
        );
    }
    let _ = writeln!(
        w,
        "`{}`: median of {} runs, page cache warm, `sync` before each run, outputs on the same disk as the corpus. MB = 10^6 bytes of corpus input (restores: of restored data). CPU = user + system seconds of every process. Peak RSS = `ru_maxrss` as reported by `/usr/bin/time`, summed over the processes of a pipeline (for lifeboat restores of the whole corpus, the largest of its three restores).\n",
        command_line(opts),
        opts.runs
    );
    let _ = writeln!(
        w,
        "Machine: {}\n",
        machine
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join("; ")
    );
    let _ = writeln!(
        w,
        "| corpus part | files | bytes | zstd -3 ratio | gzip -6 ratio |\n|---|---:|---:|---:|---:|"
    );
    for p in &corpus.parts {
        let (_, z, g) = ratios
            .get(&p.name)
            .copied()
            .unwrap_or((0, f64::NAN, f64::NAN));
        let _ = writeln!(
            w,
            "| {} | {} | {} | {z:.2}x | {g:.2}x |",
            p.name,
            p.files,
            mb(p.bytes)
        );
    }
    for op in [Op::Backup, Op::Restore] {
        let _ = writeln!(
            w,
            "\n## {}\n",
            if op == Op::Backup {
                "Backup"
            } else {
                "Restore"
            }
        );
        let _ = writeln!(
            w,
            "| part | tool | median s | MB/s | CPU s | peak RSS MiB |\n|---|---|---:|---:|---:|---:|"
        );
        for part in ["whole", "shop", "wallet", "logs"] {
            for m in results.iter().filter(|m| m.op == op && m.part == part) {
                if m.ok() {
                    let _ = writeln!(
                        w,
                        "| {part} | {} | {:.3} | {:.1} | {:.2} | {:.1} |",
                        cell(&m.tool),
                        m.secs(),
                        m.mbps(),
                        m.cpu(),
                        m.rss_mib()
                    );
                } else {
                    let _ = writeln!(
                        w,
                        "| {part} | {} | failed: {} | | | |",
                        cell(&m.tool),
                        m.error.as_deref().unwrap_or("no runs").replace('|', "/")
                    );
                }
            }
        }
    }
    // Ratios: lifeboat vs every peer, same part and op, same run.
    let mut peers: Vec<String> = Vec::new();
    for m in results.iter().filter(|m| m.group != "lifeboat") {
        if !peers.contains(&m.tool) {
            peers.push(m.tool.clone());
        }
    }
    if !peers.is_empty() {
        let _ = writeln!(
            w,
            "\n## lifeboat vs peers (speed ratio, > 1 = lifeboat faster)\n"
        );
        let _ = write!(w, "| op | part | lifeboat |");
        let pcols: Vec<&String> = peers.iter().collect();
        let mut header_sep = String::from("|---|---|---|");
        for p in &pcols {
            let _ = write!(w, " {} |", cell(p));
            header_sep.push_str("---:|");
        }
        let _ = writeln!(w, "\n{header_sep}");
        for op in [Op::Backup, Op::Restore] {
            for part in ["whole", "shop", "wallet", "logs"] {
                for config in CONFIGS {
                    let tool = format!("lifeboat {}", config.name);
                    let Some(ours) = find(results, &tool, part, op) else {
                        continue;
                    };
                    let _ = write!(w, "| {} | {part} | {} |", op.name(), config.name);
                    for p in &pcols {
                        let theirs = results
                            .iter()
                            .find(|m| &m.tool == *p && m.part == part && m.op == op && m.ok());
                        match theirs {
                            Some(t) => {
                                let _ = write!(w, " {:.2} |", t.secs() / ours.secs());
                            }
                            None => {
                                let _ = write!(w, " – |");
                            }
                        }
                    }
                    let _ = writeln!(w);
                }
            }
        }
    }
    if !stage_list.is_empty() {
        let _ = writeln!(
            w,
            "\n## Each stage alone (whole corpus, lifeboat's own code, in one process)\n\nThe whole corpus as one tar is {}; zstd -3 makes it {} ({:.2}x), gzip -6 {} ({:.2}x). \"Whole-corpus MB/s\" is the corpus size divided by the time this stage needs for the bytes that reach it in a whole-corpus backup or restore.\n",
            mb(sizes.tar),
            mb(sizes.zst),
            sizes.tar as f64 / sizes.zst as f64,
            mb(sizes.gz),
            sizes.tar as f64 / sizes.gz as f64
        );
        let _ = writeln!(
            w,
            "| stage | measured on | MB/s | CPU s per GB |\n|---|---|---:|---:|"
        );
        for s in stage_list {
            let _ = writeln!(
                w,
                "| {} | {} ({}) | {:.1} | {:.2} |",
                s.name,
                s.unit,
                mb(s.bytes),
                s.rate() / MB,
                s.cpu_per_byte() * 1e9
            );
        }
        let _ = writeln!(w, "\n## What bounds each lifeboat path (whole corpus)\n");
        let _ = writeln!(
            w,
            "Model: streaming stages overlap (threads), so the stream takes as long as its slowest stage or as the CPU all stages need shared over the cores, whichever is more; serial steps (the restore checks after the stream) add. Measured is the end-to-end figure above.\n"
        );
        let _ = writeln!(
            w,
            "| op | config | stages: whole-corpus MB/s (serial marked *) | model MB/s | measured MB/s | bound |\n|---|---|---|---:|---:|---|"
        );
        for b in bound_list {
            let terms = b
                .terms
                .iter()
                .map(|t| {
                    format!(
                        "{}{} {:.0}",
                        t.0,
                        if t.3 { "*" } else { "" },
                        sizes.whole as f64 / MB / t.1
                    )
                })
                .collect::<Vec<_>>()
                .join(" · ");
            let measured = find(results, &format!("lifeboat {}", b.config), "whole", b.op)
                .map_or("–".into(), |m| format!("{:.1}", m.mbps()));
            let _ = writeln!(
                w,
                "| {} | {} | {terms} | {:.1} | {measured} | {} |",
                b.op.name(),
                b.config,
                sizes.whole as f64 / MB / b.predicted_secs,
                b.bound
            );
        }
    }
    if !rss.is_empty() {
        let _ = writeln!(w, "\n## Peak RSS at two corpus sizes (whole corpus)\n");
        let mut sizes_shown: Vec<(String, &[Measured])> = vec![(
            format!("{} (size {})", mb(whole.bytes), fmt_scale(opts.size)),
            results,
        )];
        for (scale, ms) in rss {
            let total = ms.first().map_or(0, |m| m.input_bytes);
            sizes_shown.push((
                format!("{} (size {})", mb(total), fmt_scale(*scale)),
                ms.as_slice(),
            ));
        }
        let _ = write!(w, "| op | lifeboat |");
        for (label, _) in &sizes_shown {
            let _ = write!(w, " {label} |");
        }
        let _ = writeln!(w, "\n|---|---|{}", "---:|".repeat(sizes_shown.len()));
        for op in [Op::Backup, Op::Restore] {
            for config in CONFIGS {
                let tool = format!("lifeboat {}", config.name);
                let _ = write!(w, "| {} | {} |", op.name(), config.name);
                for (_, ms) in &sizes_shown {
                    match find(ms, &tool, "whole", op) {
                        Some(m) => {
                            let _ = write!(w, " {:.1} MiB |", m.rss_mib());
                        }
                        None => {
                            let _ = write!(w, " – |");
                        }
                    }
                }
                let _ = writeln!(w);
            }
        }
    }
    let _ = writeln!(
        w,
        "\n## Goals (ratios within this run)\n\n\"met\" judges the wall-clock ratio, as the goals are stated. The CPU-seconds ratio (peer CPU / lifeboat CPU) is shown beside it: it is what the work costs, and it barely moves when other jobs share the machine, while wall-clock ratios then depend on how many runnable threads each tool has.\n\n| goal | measured | met |\n|---|---|---|"
    );
    for g in goal_list {
        let met = match g.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "–",
        };
        let _ = writeln!(w, "| {} | {} | {met} |", cell(&g.what), cell(&g.measured));
    }
    for b in bound_list.iter().filter(|b| b.config.contains("openpgp")) {
        let _ = writeln!(
            w,
            "\n- OpenPGP path {} {}: bound by {}.",
            b.op.name(),
            b.config,
            b.bound
        );
    }
    md
}

// ---- main -------------------------------------------------------------------------------

fn main() {
    // `cargo test --all-targets` runs benchmarks too, without --bench: nothing to do there.
    if !std::env::args().any(|a| a == "--bench" || a == "-h" || a == "--help") {
        eprintln!("pipeline bench: run it with `cargo bench --bench pipeline [-- --size 0.1]`");
        return;
    }
    let opts = Opts::parse();
    let load_at_start = load_average();
    let missing = ensure_tools(&opts);
    for group in ["restic", "borg"] {
        if opts.wants(group) && missing.iter().any(|m| m == group) {
            eprintln!("warning: {group} is not installed; skipping it");
        }
    }
    let core_missing: Vec<_> = missing
        .iter()
        .filter(|m| !["restic", "borg"].contains(&m.as_str()))
        .collect();
    if !core_missing.is_empty() {
        die(&format!("missing tools: {core_missing:?}"));
    }
    fs::create_dir_all(&opts.dir).expect("bench dir");
    let work = opts.dir.join("work");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).expect("work dir");
    let env = setup_env(&work);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let started = Instant::now();

    let corpus = corpus(&opts.dir, opts.size, opts.seed);
    let parts: Vec<Part> = corpus
        .parts
        .iter()
        .filter(|p| opts.parts.contains(&p.name))
        .cloned()
        .collect();
    let logs = work.join("logs");
    eprintln!(
        "corpus: {} (shop {}, wallet {} in {} files, logs {})",
        mb(corpus.part("whole").bytes),
        mb(corpus.part("shop").bytes),
        mb(corpus.part("wallet").bytes),
        corpus.part("wallet").files,
        mb(corpus.part("logs").bytes)
    );
    let ratio_dir = work.join("ratios");
    reset_dir(&ratio_dir).unwrap_or_else(|e| die(&e));
    let ratios = part_ratios(&corpus, &ratio_dir);
    let _ = fs::remove_dir_all(&ratio_dir);
    for (name, (_, z, g)) in &ratios {
        eprintln!("  {name}: zstd -3 {z:.2}x, gzip -6 {g:.2}x");
    }

    let mut cases = Vec::new();
    if opts.wants("lifeboat") {
        lifeboat_cases(&env, &corpus, &parts, &mut cases);
    }
    if opts.wants("shell") {
        shell_cases(&env, &corpus, &parts, &mut cases);
    }
    if opts.wants("restic") && !missing.iter().any(|m| m == "restic") {
        restic_cases(&env, &corpus, &parts, &mut cases);
    }
    if opts.wants("borg") && !missing.iter().any(|m| m == "borg") {
        borg_cases(&env, &corpus, &parts, &mut cases);
    }
    let results = measure_all(&cases, opts.runs, &logs);

    let (stage_list, sizes) = if opts.wants("stages") {
        eprintln!("stages alone:");
        stages(&env, &corpus, opts.runs)
    } else {
        (Vec::new(), Sizes::default())
    };
    let _ = fs::remove_dir_all(work.join("stages"));
    let bound_list = if stage_list.is_empty() {
        Vec::new()
    } else {
        bounds(&stage_list, sizes, cores)
    };

    // Peak RSS at a second size: lifeboat only, whole corpus, one run each.
    let mut rss = Vec::new();
    if opts.wants("rss") && opts.wants("lifeboat") && opts.rss_size > 0.0 {
        let other = corpus_for_rss(&opts, &env, &logs);
        rss.push(other);
    }

    let machine = machine(&opts.dir, &load_at_start);
    let goal_list = goals(&results, &rss, &bound_list);
    let md = render(&Report {
        opts: &opts,
        corpus: &corpus,
        machine: &machine,
        ratios: &ratios,
        results: &results,
        stage_list: &stage_list,
        sizes,
        bound_list: &bound_list,
        rss: &rss,
        goal_list: &goal_list,
    });
    print!("{md}");
    let json = json!({
        "command": command_line(&opts),
        "size": opts.size, "runs": opts.runs, "seed": opts.seed,
        "machine": machine,
        "corpus": corpus.parts.iter().map(|p| {
            let (tar, z, g) = ratios.get(&p.name).copied().unwrap_or((0, f64::NAN, f64::NAN));
            json!({"part": p.name, "files": p.files, "bytes": p.bytes, "tar_bytes": tar, "zstd3_ratio": z, "gzip6_ratio": g})
        }).collect::<Vec<_>>(),
        "results": results.iter().map(Measured::json).collect::<Vec<_>>(),
        "stages": stage_list.iter().map(|s| json!({
            "stage": s.name, "measured_on": s.unit, "bytes": s.bytes, "median_secs": s.secs,
            "mb_per_s": s.rate() / MB, "cpu_secs": s.cpu
        })).collect::<Vec<_>>(),
        "bounds": bound_list.iter().map(|b| json!({
            "op": b.op.name(), "config": b.config, "model_mb_per_s": sizes.whole as f64 / MB / b.predicted_secs,
            "bound": b.bound,
            "terms": b.terms.iter().map(|t| json!({"stage": t.0, "secs": t.1, "cpu_secs": t.2, "serial": t.3})).collect::<Vec<_>>()
        })).collect::<Vec<_>>(),
        "rss_second_size": rss.iter().map(|(scale, ms)| json!({
            "size": scale, "results": ms.iter().map(Measured::json).collect::<Vec<_>>()
        })).collect::<Vec<_>>(),
        "goals": goal_list.iter().map(|g| json!({"goal": g.what, "measured": g.measured, "met": g.met})).collect::<Vec<_>>(),
        "wall_secs": started.elapsed().as_secs_f64(),
    });
    fs::create_dir_all(&opts.report_dir).expect("report dir");
    let stem = opts
        .report_dir
        .join(format!("pipeline-size{}", fmt_scale(opts.size)));
    let with_ext = |ext: &str| PathBuf::from(format!("{}.{ext}", stem.display()));
    fs::write(with_ext("md"), &md).expect("write report");
    fs::write(
        with_ext("json"),
        serde_json::to_string_pretty(&json).expect("json") + "\n",
    )
    .expect("write json");
    let _ = run_pipeline(
        &[cmd(&["gpgconf", "--kill", "gpg-agent"]).envs(&env.gnupg)],
        &logs,
    );
    eprintln!(
        "done in {:.0}s; wrote {}.md and .json",
        started.elapsed().as_secs_f64(),
        stem.display()
    );
}

/// Runs the lifeboat whole-corpus cases once on a corpus of `--rss-size`.
fn corpus_for_rss(opts: &Opts, env: &Env, logs: &Path) -> (f64, Vec<Measured>) {
    eprintln!("peak RSS at size {}:", fmt_scale(opts.rss_size));
    let other = corpus(&opts.dir, opts.rss_size, opts.seed);
    let whole = vec![other.part("whole").clone()];
    let rss_env = Env {
        work: env.work.join("rss"),
        age_recipient: env.age_recipient.clone(),
        age_identity: env.age_identity.clone(),
        openpgp_public: env.openpgp_public.clone(),
        openpgp_secret: env.openpgp_secret.clone(),
        openpgp_fpr: env.openpgp_fpr.clone(),
        gnupg: env.gnupg.clone(),
    };
    let mut cases = Vec::new();
    lifeboat_cases(&rss_env, &other, &whole, &mut cases);
    let ms = measure_all(&cases, 1, logs);
    let _ = fs::remove_dir_all(&rss_env.work);
    (opts.rss_size, ms)
}
