//! Helpers for the S3 tests: a real S3-compatible server (`moto_server`, installed by
//! `scripts/setup.sh` into `<repo>/.venv`) on a free port of 127.0.0.1, a fault-injecting
//! proxy ([`proxy`]), and a small S3 client to look into buckets.
//!
//! A missing `moto_server` fails the tests (it never skips them).

#![allow(dead_code)]

pub mod proxy;

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};

/// The credentials the tests give lifeboat (moto accepts any); the secret must never show
/// in lifeboat's output.
pub const CREDS_PREFIX: &str = "LBTEST";
pub const ACCESS_KEY_ID: &str = "AKIALIFEBOATTEST0001";
pub const SECRET_ACCESS_KEY: &str = "lbSECRETnever-print-me/0123456789abcdefXYZ";
pub const REGION: &str = "eu-west-1";

/// The moto_server the tests need.
pub fn moto_bin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server")
}

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .unwrap()
        .port()
}

/// A running moto_server, stopped when dropped.
pub struct Moto {
    child: Child,
    pub port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Moto {
    pub fn start() -> Self {
        let bin = moto_bin();
        assert!(
            bin.is_file(),
            "{} is missing: run scripts/setup.sh (it installs moto[server] into .venv); \
             the S3 tests fail rather than skip",
            bin.display()
        );
        let dir = tempfile::tempdir().expect("temp dir");
        for _ in 0..5 {
            let port = free_port();
            let log = dir.path().join(format!("moto-{port}.log"));
            let mut child = Command::new(&bin)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(fs::File::create(&log).unwrap())
                .stderr(fs::File::create(dir.path().join(format!("moto-{port}.err"))).unwrap())
                .spawn()
                .expect("start moto_server");
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(60) {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // port taken meanwhile: try another
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Moto {
                        child,
                        port,
                        log,
                        _dir: dir,
                    };
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("moto_server did not start (see {})", dir.path().display());
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain S3 client (its own runtime) to set up and inspect buckets.
pub struct S3 {
    rt: tokio::runtime::Runtime,
    pub client: Client,
}

impl S3 {
    pub fn new(endpoint: &str) -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .credentials_provider(Credentials::new(
                ACCESS_KEY_ID,
                SECRET_ACCESS_KEY,
                None,
                None,
                "tests",
            ))
            .region(Region::new(REGION))
            .endpoint_url(endpoint)
            .force_path_style(true)
            .build();
        S3 {
            rt,
            client: Client::from_conf(config),
        }
    }

    pub fn block<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// Creates `bucket`, with Object Lock enabled when `lock` (which turns versioning on).
    pub fn create_bucket(&self, bucket: &str, lock: bool) {
        self.block(
            self.client
                .create_bucket()
                .bucket(bucket)
                .create_bucket_configuration(
                    CreateBucketConfiguration::builder()
                        .location_constraint(BucketLocationConstraint::from(REGION))
                        .build(),
                )
                .object_lock_enabled_for_bucket(lock)
                .send(),
        )
        .expect("create bucket");
    }

    /// Turns versioning on.
    pub fn enable_versioning(&self, bucket: &str) {
        use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
        self.block(
            self.client
                .put_bucket_versioning()
                .bucket(bucket)
                .versioning_configuration(
                    VersioningConfiguration::builder()
                        .status(BucketVersioningStatus::Enabled)
                        .build(),
                )
                .send(),
        )
        .expect("enable versioning");
    }

    /// Every key in `bucket`, sorted.
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        let out = self
            .block(self.client.list_objects_v2().bucket(bucket).send())
            .expect("list objects");
        let mut keys: Vec<String> = out
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect();
        keys.sort();
        keys
    }

    /// (key, version id) of every object version in `bucket`.
    pub fn versions(&self, bucket: &str) -> Vec<(String, String)> {
        let out = self
            .block(self.client.list_object_versions().bucket(bucket).send())
            .expect("list versions");
        out.versions()
            .iter()
            .map(|v| {
                (
                    v.key().unwrap_or("").to_string(),
                    v.version_id().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    /// Multipart uploads not completed nor aborted.
    pub fn uploads(&self, bucket: &str) -> Vec<String> {
        let out = self
            .block(self.client.list_multipart_uploads().bucket(bucket).send())
            .expect("list multipart uploads");
        out.uploads()
            .iter()
            .map(|u| u.key().unwrap_or("").to_string())
            .collect()
    }

    pub fn get(&self, bucket: &str, key: &str) -> Vec<u8> {
        self.block(async {
            let out = self
                .client
                .get_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await
                .expect("get object");
            out.body.collect().await.expect("read body").to_vec()
        })
    }
}

/// Policy text for a source and stores (each a `[[store]]` body).
pub fn policy_text(name: &str, id: &str, kind: &str, source: &Path, stores: &[String]) -> String {
    let recipient =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/keys/TEST-ONLY-age-recipient.txt");
    let mut t = format!(
        "name = \"{name}\"\nid = \"{id}\"\n\n[source]\nkind = \"{kind}\"\npath = \"{}\"\n\n",
        source.display()
    );
    for s in stores {
        t += &format!("[[store]]\n{s}\n");
    }
    t += &format!(
        "[encryption]\nage_recipients_file = \"{}\"\n",
        recipient.display()
    );
    t
}

/// A `[[store]]` body for an S3 bucket behind `endpoint`.
pub fn s3_store(endpoint: &str, bucket: &str, extra: &str) -> String {
    format!(
        "kind = \"s3\"\nbucket = \"{bucket}\"\nprefix = \"lifeboat/\"\nregion = \"{REGION}\"\nendpoint = \"{endpoint}\"\ncredentials_env = \"{CREDS_PREFIX}\"\n{extra}\n"
    )
}

/// A `[[store]]` body for a local directory.
pub fn local_store(path: &Path, extra: &str) -> String {
    format!("kind = \"local\"\npath = \"{}\"\n{extra}\n", path.display())
}

/// Writes `bytes` of incompressible data (a fast xorshift stream) to `path`.
pub fn random_file(path: &Path, bytes: usize, seed: u64) {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(fs::File::create(path).expect("create file"));
    let mut x = seed | 1;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        for chunk in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let b = x.to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
        let n = left.min(buf.len());
        f.write_all(&buf[..n]).expect("write file");
        left -= n;
    }
    f.flush().unwrap();
}
