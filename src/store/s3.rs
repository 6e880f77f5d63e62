//! A store in an S3 bucket (AWS or any S3-compatible service), behind the same synchronous
//! [`Store`] interface as the local store.
//!
//! The store owns a small tokio runtime; each call blocks on it, so the pipeline keeps its
//! plain `std::io` streams.
//!
//! - **Uploads** stream: small objects (under one part) go in one `PutObject`; larger ones
//!   as a multipart upload whose part size is chosen from the expected size (at least
//!   8 MiB, growing so the 10,000-part limit is never reached), with at most a few parts in
//!   flight, so memory stays bounded whatever the object's size. Every part carries its
//!   SHA-256 (`x-amz-checksum-sha256`); the completed object is checked with `HeadObject`
//!   (size, and the composite SHA-256 of the parts when the server reports it). A failed
//!   upload is aborted, so no parts are left behind; an upload whose creation got no answer
//!   is looked up and aborted too.
//! - **Downloads** stream; a connection lost mid-body resumes at the same offset (ranged
//!   `GetObject` pinned to the object's ETag). The pipeline checks the manifest's sha256.
//! - **Retries**: see [`super::retry`]. A `PutObject` or `CompleteMultipartUpload` that got
//!   no answer has an unknown outcome: the object is looked up (`HeadObject`) before trying
//!   again, and taken as written only when its size and checksum match.
//! - **Object Lock**: with `object_lock_days`, every object is written with a retention
//!   date; [`Store::locked_until`] reports it so rotation leaves such objects alone.
//! - **Anonymity**: keys are `prefix` + the same anonymous names as the local store; no
//!   metadata, no tags. Errors never include credentials, signatures or URLs with secrets.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumAlgorithm, ChecksumMode, CompletedMultipartUpload, CompletedPart, ObjectLockMode,
    ObjectLockRetention, ObjectLockRetentionMode, ServerSideEncryption, StorageClass,
};
use bytes::Bytes;
use chrono::{DateTime, TimeDelta, Utc};
use sha2::{Digest, Sha256};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

use super::retry::{self, Class, RetryPolicy};
use super::{ObjectWriter, Store};
use crate::error::{Error, Result};

/// Smallest part size used (S3's minimum is 5 MiB).
pub const MIN_PART_SIZE: usize = 8 * 1024 * 1024;
/// S3's largest part.
const MAX_PART_SIZE: usize = 5 * 1024 * 1024 * 1024;
/// S3's part-count limit; part sizes are chosen to stay well below it.
const MAX_PARTS: i32 = 10_000;
/// Memory for parts in flight (beyond the one being filled).
const IN_FLIGHT_BYTES: usize = 32 * 1024 * 1024;
/// At most this many parts upload at once.
const MAX_IN_FLIGHT: usize = 4;

/// Storage classes accepted in policies (archive classes are refused: their objects need a
/// restore request before a drill or a restore can read them).
pub const STORAGE_CLASSES: &[&str] = &[
    "STANDARD",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER_IR",
    "REDUCED_REDUNDANCY",
];

/// An S3 store as a policy describes it (`[[store]] kind = "s3"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Spec {
    pub bucket: String,
    /// Key prefix, e.g. `lifeboat/` (may be empty).
    pub prefix: String,
    pub region: String,
    /// Endpoint of an S3-compatible service (path-style addressing is then used).
    pub endpoint: Option<String>,
    /// `P`: credentials come from `P_ACCESS_KEY_ID`, `P_SECRET_ACCESS_KEY` and optionally
    /// `P_SESSION_TOKEN`; `None`: the standard AWS chain (environment, profile, IMDS).
    pub credentials_env: Option<String>,
    pub storage_class: Option<String>,
    /// `AES256` or `aws:kms`.
    pub sse: Option<String>,
    pub kms_key_id: Option<String>,
    /// Object Lock retention of every object written, in days.
    pub object_lock_days: Option<u32>,
    /// `COMPLIANCE` (default) or `GOVERNANCE`.
    pub object_lock_mode: String,
    /// Upload and download throttle, bytes per second.
    pub max_bandwidth: Option<u64>,
}

impl S3Spec {
    /// `s3://bucket/prefix`.
    pub fn describe(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }
}

/// Parses a bandwidth such as `50MiB/s`, `10 MB/s`, `512KiB/s` or `1000000` (bytes per
/// second).
pub fn parse_bandwidth(text: &str) -> std::result::Result<u64, String> {
    let bad =
        || format!("invalid bandwidth {text:?}; use e.g. \"50MiB/s\", \"10MB/s\" or \"512KiB/s\"");
    let t = text.trim();
    let t = t.strip_suffix("/s").unwrap_or(t).trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number.parse().map_err(|_| bad())?;
    let factor: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "k" | "kB" | "KB" => 1e3,
        "KiB" => 1024.0,
        "M" | "MB" => 1e6,
        "MiB" => 1024.0 * 1024.0,
        "G" | "GB" => 1e9,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        _ => return Err(bad()),
    };
    let rate = number * factor;
    if !rate.is_finite() || rate < 1024.0 {
        return Err(format!(
            "bandwidth {text:?} is too low; give at least 1KiB/s"
        ));
    }
    Ok(rate as u64)
}

/// What every request needs; shared with upload tasks (never owns the runtime, so a task
/// never drops it).
struct Ctx {
    client: Client,
    spec: S3Spec,
    retry: RetryPolicy,
    throttle: Option<Throttle>,
    /// How long to wait for the next bytes of a download before resuming it.
    read_timeout: Duration,
}

/// The S3 store.
pub struct S3Store {
    rt: Arc<Runtime>,
    ctx: Arc<Ctx>,
}

/// Blocks SIGPIPE in the calling thread (the runtime's threads, which do the socket I/O):
/// `main` restores its default action so `lifeboat list | head` ends quietly, but a peer
/// closing a connection must be an error to retry, not the end of the process.
fn ignore_sigpipe_here() {
    // SAFETY: changes only the calling thread's signal mask, with a set built right here.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

fn env_seconds(name: &str, default: f64) -> Duration {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v > 0.0)
        .map_or(Duration::from_secs_f64(default), Duration::from_secs_f64)
}

impl S3Store {
    /// Opens (without any request) the store `spec` describes. Missing credentials named by
    /// `credentials_env` are a configuration error.
    pub fn open(spec: &S3Spec) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("lifeboat-s3")
            .on_thread_start(ignore_sigpipe_here)
            .enable_all()
            .build()
            .map_err(|e| Error::Runtime(format!("cannot start the S3 client runtime: {e}")))?;
        let attempt_timeout = env_seconds("LIFEBOAT_S3_ATTEMPT_TIMEOUT", 300.0);
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(10).min(attempt_timeout))
            .operation_attempt_timeout(attempt_timeout)
            .build();
        let region = Region::new(spec.region.clone());
        let mut config = match &spec.credentials_env {
            Some(prefix) => {
                let var = |suffix: &str| {
                    let name = format!("{prefix}_{suffix}");
                    std::env::var(&name).ok().filter(|v| !v.is_empty())
                };
                let (Some(id), Some(secret)) = (var("ACCESS_KEY_ID"), var("SECRET_ACCESS_KEY"))
                else {
                    return Err(Error::Config(format!(
                        "store {}: credentials_env = {prefix:?} but {prefix}_ACCESS_KEY_ID or {prefix}_SECRET_ACCESS_KEY is not set",
                        spec.describe()
                    )));
                };
                let creds = Credentials::new(id, secret, var("SESSION_TOKEN"), None, "lifeboat");
                aws_sdk_s3::Config::builder()
                    .behavior_version(BehaviorVersion::latest())
                    .credentials_provider(creds)
                    .region(region)
            }
            None => {
                let sdk = rt.block_on(
                    aws_config::defaults(BehaviorVersion::latest())
                        .region(region)
                        .load(),
                );
                aws_sdk_s3::config::Builder::from(&sdk)
            }
        };
        config = config
            .retry_config(RetryConfig::disabled())
            .timeout_config(timeouts)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(endpoint) = &spec.endpoint {
            config = config.endpoint_url(endpoint).force_path_style(true);
        }
        let ctx = Ctx {
            client: Client::from_conf(config.build()),
            spec: spec.clone(),
            retry: RetryPolicy::from_env(),
            throttle: spec.max_bandwidth.map(Throttle::new),
            read_timeout: attempt_timeout.min(Duration::from_secs(120)),
        };
        Ok(S3Store {
            rt: Arc::new(rt),
            ctx: Arc::new(ctx),
        })
    }

    fn key(&self, name: &str) -> Result<String> {
        if name.is_empty() || name.starts_with('.') || name.contains('/') {
            return Err(Error::Check(format!("invalid object name {name:?}")));
        }
        Ok(format!("{}{name}", self.ctx.spec.prefix))
    }
}

impl Store for S3Store {
    fn describe(&self) -> String {
        self.ctx.spec.describe()
    }

    fn put(&self, name: &str) -> Result<Box<dyn ObjectWriter>> {
        self.put_expecting(name, None)
    }

    fn put_expecting(
        &self,
        name: &str,
        expected_size: Option<u64>,
    ) -> Result<Box<dyn ObjectWriter>> {
        let key = self.key(name)?;
        let part_size = part_size_for(expected_size);
        Ok(Box::new(S3Writer {
            rt: self.rt.clone(),
            ctx: self.ctx.clone(),
            name: name.to_string(),
            key,
            buf: Vec::new(),
            part_size,
            upload: None,
            until: None,
            stray_uploads: false,
            in_flight: VecDeque::new(),
            done: Vec::new(),
            next_part: 1,
            size: 0,
            failed: None,
            finished: false,
        }))
    }

    fn get(&self, name: &str) -> Result<Box<dyn Read + Send + Sync>> {
        let key = self.key(name)?;
        let ctx = self.ctx.clone();
        let first = self.rt.block_on(ctx.get_from(name, &key, 0, None))?;
        let Some((body, etag, size)) = first else {
            return Err(Error::Check(format!(
                "object {name} is missing from {}",
                self.describe()
            )));
        };
        Ok(Box::new(S3Reader {
            rt: self.rt.clone(),
            ctx,
            name: name.to_string(),
            key,
            etag,
            size,
            pos: 0,
            body: Mutex::new(Some(body)),
            chunk: Bytes::new(),
        }))
    }

    fn size(&self, name: &str) -> Result<Option<u64>> {
        let key = self.key(name)?;
        let head = self.rt.block_on(self.ctx.head(name, &key, None))?;
        Ok(head.map(|h| h.size))
    }

    fn list(&self) -> Result<Vec<String>> {
        let mut names = self.rt.block_on(self.ctx.list())?;
        names.sort();
        Ok(names)
    }

    fn delete(&self, name: &str) -> Result<()> {
        let key = self.key(name)?;
        self.rt.block_on(self.ctx.delete(name, &key))
    }

    fn locked_until(&self, name: &str) -> Result<Option<DateTime<Utc>>> {
        let key = self.key(name)?;
        let until = self.rt.block_on(self.ctx.locked_until(name, &key))?;
        Ok(until.filter(|t| *t > Utc::now()))
    }
}

/// The part size for an object of about `expected` bytes: at least [`MIN_PART_SIZE`], and
/// large enough for the object to fit in 9,000 parts (whole MiB).
fn part_size_for(expected: Option<u64>) -> usize {
    const MIB: u64 = 1024 * 1024;
    let wanted = expected.map_or(0, |n| n.div_ceil(9_000).div_ceil(MIB) * MIB);
    (wanted as usize).clamp(MIN_PART_SIZE, MAX_PART_SIZE)
}

/// Parts in flight for a part size: bounded by [`IN_FLIGHT_BYTES`] and [`MAX_IN_FLIGHT`].
fn in_flight_for(part_size: usize) -> usize {
    (IN_FLIGHT_BYTES / part_size).clamp(1, MAX_IN_FLIGHT)
}

fn sha256_b64(data: &[u8]) -> String {
    aws_smithy_types::base64::encode(Sha256::digest(data))
}

/// The composite checksum S3 reports for a multipart object uploaded with SHA-256 part
/// checksums: SHA-256 of the concatenated part digests (without the `-N` suffix).
fn composite_sha256(parts: &[Done]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        match aws_smithy_types::base64::decode(&p.sha256) {
            Ok(d) => h.update(d),
            Err(_) => h.update(p.sha256.as_bytes()),
        }
    }
    aws_smithy_types::base64::encode(h.finalize())
}

/// A checksum as reported, without the `-N` part count suffix of multipart objects.
fn strip_part_count(checksum: &str) -> &str {
    checksum.split('-').next().unwrap_or(checksum)
}

fn to_chrono(t: &aws_sdk_s3::primitives::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

/// What `HeadObject` says about an object.
struct Head {
    size: u64,
    sha256: Option<String>,
    locked_until: Option<DateTime<Utc>>,
}

/// One uploaded part.
#[derive(Clone)]
struct Done {
    number: i32,
    etag: String,
    sha256: String,
}

/// A simple rate limit: each transfer of `n` bytes reserves `n / rate` seconds of the link.
struct Throttle {
    rate: f64,
    next: Mutex<Instant>,
}

impl Throttle {
    fn new(rate: u64) -> Self {
        Throttle {
            rate: rate as f64,
            next: Mutex::new(Instant::now()),
        }
    }

    async fn take(&self, n: usize) {
        let start = {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let start = (*next).max(now);
            *next = start + Duration::from_secs_f64(n as f64 / self.rate);
            start
        };
        tokio::time::sleep_until(start.into()).await;
    }
}

/// The options every new object gets (storage class, encryption, retention), applied to
/// a `PutObject` or `CreateMultipartUpload` builder.
macro_rules! with_object_options {
    ($req:expr, $spec:expr, $until:expr) => {{
        let spec: &S3Spec = $spec;
        let mut req = $req.content_type("application/octet-stream");
        if let Some(class) = &spec.storage_class {
            req = req.storage_class(StorageClass::from(class.as_str()));
        }
        if let Some(sse) = &spec.sse {
            req = req.server_side_encryption(ServerSideEncryption::from(sse.as_str()));
        }
        if let Some(kms) = &spec.kms_key_id {
            req = req.ssekms_key_id(kms);
        }
        if let Some(until) = $until {
            req = req
                .object_lock_mode(ObjectLockMode::from(spec.object_lock_mode.as_str()))
                .object_lock_retain_until_date(aws_sdk_s3::primitives::DateTime::from_secs(
                    until.timestamp(),
                ));
        }
        req
    }};
}

impl Ctx {
    fn describe(&self) -> String {
        self.spec.describe()
    }

    /// The retention date for an object written now, if the store locks objects.
    fn lock_until(&self) -> Option<DateTime<Utc>> {
        self.spec
            .object_lock_days
            .map(|d| Utc::now() + TimeDelta::days(i64::from(d)))
    }

    async fn throttle(&self, n: usize) {
        if let Some(t) = &self.throttle {
            t.take(n).await;
        }
    }

    /// `HeadObject` (of one version, when given), retried; `None` when absent.
    async fn head(&self, name: &str, key: &str, version: Option<&str>) -> Result<Option<Head>> {
        let mut backoff = self
            .retry
            .start(format!("cannot look up {name} in {}", self.describe()));
        loop {
            let result = self
                .client
                .head_object()
                .bucket(&self.spec.bucket)
                .key(key)
                .set_version_id(version.map(str::to_string))
                .checksum_mode(ChecksumMode::Enabled)
                .send()
                .await;
            match result {
                Ok(out) => {
                    return Ok(Some(Head {
                        size: out.content_length().unwrap_or(0).max(0) as u64,
                        sha256: out.checksum_sha256().map(str::to_string),
                        locked_until: out.object_lock_retain_until_date().and_then(to_chrono),
                    }));
                }
                Err(e) if retry::status(&e) == Some(404) => return Ok(None),
                Err(e) => match retry::classify(&e) {
                    Class::Final => return Err(backoff.fail(&retry::describe(&e))),
                    _ => backoff.wait(&retry::describe(&e)).await?,
                },
            }
        }
    }

    /// Checks that `key` holds `size` bytes with SHA-256 `sha256` (single or composite).
    /// `Ok(false)` when the object is absent.
    async fn matches(&self, name: &str, key: &str, size: u64, sha256: &str) -> Result<bool> {
        match self.head(name, key, None).await? {
            None => Ok(false),
            Some(h) => {
                if h.size != size {
                    return Err(Error::Runtime(format!(
                        "upload of {name} to {} is not complete: {} bytes stored, {size} sent",
                        self.describe(),
                        h.size
                    )));
                }
                if let Some(stored) = &h.sha256
                    && strip_part_count(stored) != sha256
                {
                    return Err(Error::Runtime(format!(
                        "upload of {name} to {} stored different bytes than were sent (checksum mismatch)",
                        self.describe()
                    )));
                }
                Ok(true)
            }
        }
    }

    /// Writes a whole object with one `PutObject`.
    async fn put_object(&self, name: &str, key: &str, data: Bytes) -> Result<()> {
        let sha256 = sha256_b64(&data);
        let size = data.len() as u64;
        let until = self.lock_until();
        let mut backoff = self
            .retry
            .start(format!("cannot upload {name} to {}", self.describe()));
        loop {
            self.throttle(data.len()).await;
            let req = self
                .client
                .put_object()
                .bucket(&self.spec.bucket)
                .key(key)
                .content_length(size as i64)
                .checksum_algorithm(ChecksumAlgorithm::Sha256)
                .checksum_sha256(&sha256)
                .body(ByteStream::from(data.clone()));
            let req = with_object_options!(req, &self.spec, until);
            match req.send().await {
                Ok(out) => {
                    if out.checksum_sha256() == Some(sha256.as_str()) {
                        return Ok(());
                    }
                    // The server did not confirm the checksum: check what it stored.
                    if self.matches(name, key, size, &sha256).await? {
                        return Ok(());
                    }
                    backoff
                        .wait("the object is missing right after it was written")
                        .await?;
                }
                Err(e) => {
                    let why = retry::describe(&e);
                    match retry::classify(&e) {
                        Class::Final => return Err(backoff.fail(&why)),
                        Class::Transient => backoff.wait(&why).await?,
                        Class::Unknown => {
                            // No answer: the object may be there. Never take that for absent.
                            backoff.wait(&why).await?;
                            if self.matches(name, key, size, &sha256).await? {
                                return Ok(());
                            }
                        }
                    }
                }
            }
        }
    }

    /// Starts a multipart upload; returns its id, and whether an attempt got no answer (it
    /// may have created another upload, to abort once this one is done).
    async fn create_upload(
        &self,
        name: &str,
        key: &str,
        until: Option<DateTime<Utc>>,
    ) -> Result<(String, bool)> {
        let mut unknown = false;
        let mut backoff = self.retry.start(format!(
            "cannot start uploading {name} to {}",
            self.describe()
        ));
        loop {
            let req = self
                .client
                .create_multipart_upload()
                .bucket(&self.spec.bucket)
                .key(key)
                .checksum_algorithm(ChecksumAlgorithm::Sha256);
            let req = with_object_options!(req, &self.spec, until);
            match req.send().await {
                Ok(out) => match out.upload_id() {
                    Some(id) => return Ok((id.to_string(), unknown)),
                    None => backoff.wait("no upload id in the answer").await?,
                },
                Err(e) => {
                    let why = retry::describe(&e);
                    match retry::classify(&e) {
                        Class::Final => return Err(backoff.fail(&why)),
                        Class::Transient => backoff.wait(&why).await?,
                        Class::Unknown => {
                            unknown = true;
                            backoff.wait(&why).await?;
                        }
                    }
                }
            }
        }
    }

    /// Uploads one part with its SHA-256; re-sends it on any transient failure.
    async fn upload_part(
        &self,
        name: &str,
        key: &str,
        upload_id: &str,
        number: i32,
        data: Bytes,
    ) -> Result<Done> {
        let sha256 = sha256_b64(&data);
        let mut backoff = self.retry.start(format!(
            "cannot upload part {number} of {name} to {}",
            self.describe()
        ));
        loop {
            self.throttle(data.len()).await;
            let result = self
                .client
                .upload_part()
                .bucket(&self.spec.bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(number)
                .content_length(data.len() as i64)
                .checksum_algorithm(ChecksumAlgorithm::Sha256)
                .checksum_sha256(&sha256)
                .body(ByteStream::from(data.clone()))
                .send()
                .await;
            match result {
                Ok(out) => {
                    let confirmed = out.checksum_sha256().is_none_or(|c| c == sha256);
                    match out.e_tag() {
                        Some(etag) if confirmed => {
                            return Ok(Done {
                                number,
                                etag: etag.to_string(),
                                sha256,
                            });
                        }
                        Some(_) => backoff.wait("the server stored a different part").await?,
                        None => backoff.wait("no ETag in the answer").await?,
                    }
                }
                Err(e) => backoff.after(&e).await?,
            }
        }
    }

    /// Completes a multipart upload and checks the object (size and composite checksum);
    /// then makes sure it carries its retention (`until`), which some servers do not carry
    /// over from the upload's creation.
    async fn complete_upload(
        &self,
        name: &str,
        key: &str,
        upload_id: &str,
        parts: &[Done],
        size: u64,
        until: Option<DateTime<Utc>>,
    ) -> Result<()> {
        self.complete_only(name, key, upload_id, parts, size)
            .await?;
        match until {
            Some(until) => self.ensure_retention(name, key, until).await,
            None => Ok(()),
        }
    }

    /// Sets the retention of `key` to `until` unless it is already locked that long.
    async fn ensure_retention(&self, name: &str, key: &str, until: DateTime<Utc>) -> Result<()> {
        let current = self
            .head(name, key, None)
            .await?
            .and_then(|h| h.locked_until);
        if current.is_some_and(|t| t + TimeDelta::minutes(1) >= until) {
            return Ok(());
        }
        let retention = ObjectLockRetention::builder()
            .mode(ObjectLockRetentionMode::from(
                self.spec.object_lock_mode.as_str(),
            ))
            .retain_until_date(aws_sdk_s3::primitives::DateTime::from_secs(
                until.timestamp(),
            ))
            .build();
        let mut backoff = self
            .retry
            .start(format!("cannot lock {name} in {}", self.describe()));
        loop {
            let result = self
                .client
                .put_object_retention()
                .bucket(&self.spec.bucket)
                .key(key)
                .retention(retention.clone())
                .send()
                .await;
            match result {
                Ok(_) => return Ok(()),
                Err(e) => backoff.after(&e).await?,
            }
        }
    }

    async fn complete_only(
        &self,
        name: &str,
        key: &str,
        upload_id: &str,
        parts: &[Done],
        size: u64,
    ) -> Result<()> {
        let composite = composite_sha256(parts);
        let completed = CompletedMultipartUpload::builder()
            .set_parts(Some(
                parts
                    .iter()
                    .map(|p| {
                        CompletedPart::builder()
                            .part_number(p.number)
                            .e_tag(&p.etag)
                            .checksum_sha256(&p.sha256)
                            .build()
                    })
                    .collect(),
            ))
            .build();
        let mut backoff = self.retry.start(format!(
            "cannot complete the upload of {name} to {}",
            self.describe()
        ));
        let mut unknown = false;
        loop {
            let result = self
                .client
                .complete_multipart_upload()
                .bucket(&self.spec.bucket)
                .key(key)
                .upload_id(upload_id)
                .multipart_upload(completed.clone())
                .send()
                .await;
            match result {
                Ok(_) => {
                    // A 200 answer with an error inside arrives as an error (the SDK reads
                    // the body); this one succeeded, so the object must now match.
                    if self.matches(name, key, size, &composite).await? {
                        return Ok(());
                    }
                    backoff
                        .wait("the object is missing right after it was completed")
                        .await?;
                }
                // An earlier attempt whose answer was lost did complete it.
                Err(e) if unknown && retry::code(&e) == Some("NoSuchUpload") => {
                    if self.matches(name, key, size, &composite).await? {
                        return Ok(());
                    }
                    return Err(backoff.fail("the upload vanished before it completed"));
                }
                Err(e) => {
                    let why = retry::describe(&e);
                    match retry::classify(&e) {
                        Class::Final => return Err(backoff.fail(&why)),
                        Class::Transient => backoff.wait(&why).await?,
                        Class::Unknown => {
                            unknown = true;
                            backoff.wait(&why).await?;
                        }
                    }
                }
            }
        }
    }

    /// Aborts `upload_id` and any other unfinished upload of `key` (one whose creation got
    /// no answer), so no parts are left behind.
    async fn abort_uploads(&self, name: &str, key: &str, upload_id: Option<&str>) -> Result<()> {
        if let Some(id) = upload_id {
            self.abort_one(name, key, id).await?;
        }
        let mut backoff = self.retry.cleanup().start(format!(
            "cannot list unfinished uploads of {name} in {}",
            self.describe()
        ));
        let uploads = loop {
            match self
                .client
                .list_multipart_uploads()
                .bucket(&self.spec.bucket)
                .prefix(key)
                .send()
                .await
            {
                Ok(out) => break out,
                Err(e) => backoff.after(&e).await?,
            }
        };
        for u in uploads.uploads() {
            if let (Some(k), Some(id)) = (u.key(), u.upload_id())
                && k == key
            {
                self.abort_one(name, key, id).await?;
            }
        }
        Ok(())
    }

    async fn abort_one(&self, name: &str, key: &str, upload_id: &str) -> Result<()> {
        let mut backoff = self.retry.cleanup().start(format!(
            "cannot abort the upload of {name} to {}",
            self.describe()
        ));
        loop {
            let result = self
                .client
                .abort_multipart_upload()
                .bucket(&self.spec.bucket)
                .key(key)
                .upload_id(upload_id)
                .send()
                .await;
            match result {
                Ok(_) => return Ok(()),
                Err(e) if retry::code(&e) == Some("NoSuchUpload") => return Ok(()),
                Err(e) => backoff.after(&e).await?,
            }
        }
    }

    /// Starts reading `key` at `offset` (pinned to `etag` when resuming). `None` when the
    /// object is absent; otherwise the body, the ETag and the object's total size.
    async fn get_from(
        &self,
        name: &str,
        key: &str,
        offset: u64,
        etag: Option<&str>,
    ) -> Result<Option<(ByteStream, Option<String>, Option<u64>)>> {
        let mut backoff = self
            .retry
            .start(format!("cannot read {name} from {}", self.describe()));
        loop {
            let mut req = self.client.get_object().bucket(&self.spec.bucket).key(key);
            if offset > 0 {
                req = req.range(format!("bytes={offset}-"));
            }
            if let Some(tag) = etag {
                req = req.if_match(tag);
            }
            match req.send().await {
                Ok(out) => {
                    let size = out.content_length().map(|n| offset + n.max(0) as u64);
                    let tag = out.e_tag().map(str::to_string);
                    return Ok(Some((out.body, tag, size)));
                }
                Err(e)
                    if retry::code(&e) == Some("NoSuchKey") || retry::status(&e) == Some(404) =>
                {
                    return Ok(None);
                }
                Err(e) if retry::status(&e) == Some(412) => {
                    return Err(Error::Check(format!(
                        "{name} in {} changed while it was being read",
                        self.describe()
                    )));
                }
                Err(e) => backoff.after(&e).await?,
            }
        }
    }

    /// Names under the prefix (direct children only; nothing starting with `.`).
    async fn list(&self) -> Result<Vec<String>> {
        let mut names = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut backoff = self.retry.start(format!("cannot list {}", self.describe()));
            let page = loop {
                let result = self
                    .client
                    .list_objects_v2()
                    .bucket(&self.spec.bucket)
                    .prefix(&self.spec.prefix)
                    .set_continuation_token(token.clone())
                    .send()
                    .await;
                match result {
                    Ok(out) => break out,
                    Err(e) => backoff.after(&e).await?,
                }
            };
            for o in page.contents() {
                if let Some(name) = o.key().and_then(|k| k.strip_prefix(&self.spec.prefix))
                    && !name.is_empty()
                    && !name.contains('/')
                    && !name.starts_with('.')
                {
                    names.push(name.to_string());
                }
            }
            token = page.next_continuation_token().map(str::to_string);
            if !page.is_truncated().unwrap_or(false) || token.is_none() {
                return Ok(names);
            }
        }
    }

    /// Every version id of exactly `key` (object versions and delete markers). `None` when
    /// the server does not list versions.
    async fn versions(&self, name: &str, key: &str) -> Result<Option<Vec<String>>> {
        let mut ids = Vec::new();
        let (mut key_marker, mut version_marker): (Option<String>, Option<String>) = (None, None);
        loop {
            let mut backoff = self.retry.start(format!(
                "cannot list versions of {name} in {}",
                self.describe()
            ));
            let page = loop {
                let result = self
                    .client
                    .list_object_versions()
                    .bucket(&self.spec.bucket)
                    .prefix(key)
                    .set_key_marker(key_marker.clone())
                    .set_version_id_marker(version_marker.clone())
                    .send()
                    .await;
                match result {
                    Ok(out) => break out,
                    Err(e) if matches!(retry::status(&e), Some(501) | Some(405)) => {
                        return Ok(None);
                    }
                    Err(e) => backoff.after(&e).await?,
                }
            };
            for v in page.versions() {
                if v.key() == Some(key)
                    && let Some(id) = v.version_id()
                {
                    ids.push(id.to_string());
                }
            }
            for m in page.delete_markers() {
                if m.key() == Some(key)
                    && let Some(id) = m.version_id()
                {
                    ids.push(id.to_string());
                }
            }
            if !page.is_truncated().unwrap_or(false) {
                return Ok(Some(ids));
            }
            key_marker = page.next_key_marker().map(str::to_string);
            version_marker = page.next_version_id_marker().map(str::to_string);
            if key_marker.is_none() && version_marker.is_none() {
                return Ok(Some(ids));
            }
        }
    }

    /// Deletes every version of `key` (in a versioned bucket a plain delete would only hide
    /// the object behind a delete marker).
    async fn delete(&self, name: &str, key: &str) -> Result<()> {
        let versions = self.versions(name, key).await?;
        let targets: Vec<Option<String>> = match versions {
            Some(v) if !v.is_empty() => v.into_iter().map(Some).collect(),
            _ => vec![None],
        };
        for version in targets {
            let mut backoff = self
                .retry
                .start(format!("cannot delete {name} from {}", self.describe()));
            loop {
                let result = self
                    .client
                    .delete_object()
                    .bucket(&self.spec.bucket)
                    .key(key)
                    .set_version_id(version.clone())
                    .send()
                    .await;
                match result {
                    Ok(_) => break,
                    Err(e) if matches!(retry::code(&e), Some("NoSuchKey" | "NoSuchVersion")) => {
                        break;
                    }
                    Err(e) if retry::code(&e) == Some("AccessDenied") && version.is_some() => {
                        return Err(backoff.fail(&format!(
                            "{} (the object is probably under Object Lock retention)",
                            retry::describe(&e)
                        )));
                    }
                    Err(e) => backoff.after(&e).await?,
                }
            }
        }
        Ok(())
    }

    /// The latest retention date over every version of `key`.
    async fn locked_until(&self, name: &str, key: &str) -> Result<Option<DateTime<Utc>>> {
        let versions = self.versions(name, key).await?.unwrap_or_default();
        let mut until: Option<DateTime<Utc>> = None;
        let heads: Vec<Option<String>> = if versions.is_empty() {
            vec![None]
        } else {
            versions.into_iter().map(Some).collect()
        };
        for v in heads {
            // Delete markers have no HEAD; they are never locked.
            let head = match self.head(name, key, v.as_deref()).await {
                Ok(h) => h,
                Err(_) if v.is_some() => None,
                Err(e) => return Err(e),
            };
            if let Some(t) = head.and_then(|h| h.locked_until) {
                until = Some(until.map_or(t, |u| u.max(t)));
            }
        }
        Ok(until)
    }
}

/// A streaming upload: fills one part at a time, uploads parts in the background (a few
/// at once), completes on `commit`, aborts when dropped uncommitted.
struct S3Writer {
    rt: Arc<Runtime>,
    ctx: Arc<Ctx>,
    name: String,
    key: String,
    buf: Vec<u8>,
    part_size: usize,
    /// The multipart upload, once the object outgrew one part.
    upload: Option<String>,
    /// The retention date its object gets (set when the upload starts).
    until: Option<DateTime<Utc>>,
    /// Starting the upload may have left another one behind (an attempt got no answer).
    stray_uploads: bool,
    in_flight: VecDeque<JoinHandle<Result<Done>>>,
    done: Vec<Done>,
    next_part: i32,
    size: u64,
    /// The first failure; every later write fails with it.
    failed: Option<String>,
    finished: bool,
}

impl S3Writer {
    fn fail(&mut self, e: Error) -> io::Error {
        let text = e.to_string();
        self.failed = Some(text.clone());
        io::Error::other(text)
    }

    /// Waits for the oldest part in flight.
    fn wait_oldest(&mut self) -> Result<()> {
        if let Some(handle) = self.in_flight.pop_front() {
            let done = self
                .rt
                .block_on(handle)
                .map_err(|e| Error::Runtime(format!("upload of {} stopped: {e}", self.name)))??;
            self.done.push(done);
        }
        Ok(())
    }

    /// Sends the filled buffer as the next part (starting the multipart upload first).
    fn ship_part(&mut self) -> Result<()> {
        if self.upload.is_none() {
            self.until = self.ctx.lock_until();
            let (id, stray) = self
                .rt
                .block_on(self.ctx.create_upload(&self.name, &self.key, self.until))?;
            self.upload = Some(id);
            self.stray_uploads = stray;
        }
        while self.in_flight.len() >= in_flight_for(self.part_size) {
            self.wait_oldest()?;
        }
        if self.next_part > MAX_PARTS {
            return Err(Error::Runtime(format!(
                "{} is too large for one S3 object",
                self.name
            )));
        }
        let data = Bytes::from(std::mem::take(&mut self.buf));
        let (ctx, name, key) = (self.ctx.clone(), self.name.clone(), self.key.clone());
        let upload = self.upload.clone().expect("upload started");
        let number = self.next_part;
        self.in_flight.push_back(
            self.rt
                .spawn(async move { ctx.upload_part(&name, &key, &upload, number, data).await }),
        );
        self.next_part += 1;
        // Far beyond the expected size: grow the parts so the part limit is never reached.
        if self.next_part % 1_000 == 0 {
            self.part_size = (self.part_size * 2).min(MAX_PART_SIZE);
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        if let Some(f) = &self.failed {
            return Err(Error::Runtime(f.clone()));
        }
        if self.upload.is_none() {
            let data = Bytes::from(std::mem::take(&mut self.buf));
            return self
                .rt
                .block_on(self.ctx.put_object(&self.name, &self.key, data));
        }
        if !self.buf.is_empty() {
            self.ship_part()?;
        }
        while !self.in_flight.is_empty() {
            self.wait_oldest()?;
        }
        self.done.sort_by_key(|d| d.number);
        let upload = self.upload.clone().expect("upload started");
        self.rt.block_on(self.ctx.complete_upload(
            &self.name, &self.key, &upload, &self.done, self.size, self.until,
        ))?;
        if self.stray_uploads {
            // Best effort: the object is complete whatever happens here.
            let _ = self
                .rt
                .block_on(self.ctx.abort_uploads(&self.name, &self.key, None));
        }
        Ok(())
    }

    /// Stops every part in flight and aborts the upload (best effort, with retries).
    fn abort(&mut self) -> Result<()> {
        for h in self.in_flight.drain(..) {
            h.abort();
            let _ = self.rt.block_on(h);
        }
        match self.upload.take() {
            Some(id) => self
                .rt
                .block_on(self.ctx.abort_uploads(&self.name, &self.key, Some(&id))),
            None => Ok(()),
        }
    }
}

impl Write for S3Writer {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if let Some(f) = &self.failed {
            return Err(io::Error::other(f.clone()));
        }
        if self.buf.capacity() == 0 {
            self.buf.reserve_exact(self.part_size);
        }
        let n = data.len().min(self.part_size - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        self.size += n as u64;
        if self.buf.len() == self.part_size
            && let Err(e) = self.ship_part()
        {
            return Err(self.fail(e));
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ObjectWriter for S3Writer {
    fn commit(mut self: Box<Self>) -> Result<()> {
        match self.finish() {
            Ok(()) => {
                self.finished = true;
                Ok(())
            }
            Err(e) => {
                self.finished = true;
                // The upload's own error matters more than a failure to clean up after it.
                let _ = self.abort();
                Err(e)
            }
        }
    }
}

impl Drop for S3Writer {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.abort();
        }
    }
}

/// A streaming download that resumes where it stopped when the connection drops.
struct S3Reader {
    rt: Arc<Runtime>,
    ctx: Arc<Ctx>,
    name: String,
    key: String,
    etag: Option<String>,
    size: Option<u64>,
    pos: u64,
    body: Mutex<Option<ByteStream>>,
    chunk: Bytes,
}

impl S3Reader {
    /// The next non-empty chunk, or `None` at the end of the object.
    fn next_chunk(&mut self) -> Result<Option<Bytes>> {
        let mut backoff = self.ctx.retry.start(format!(
            "cannot read {} from {}",
            self.name,
            self.ctx.describe()
        ));
        loop {
            let body = self.body.get_mut().unwrap_or_else(|p| p.into_inner());
            let why = match body.as_mut() {
                Some(stream) => {
                    let wait = self.ctx.read_timeout;
                    let next = self
                        .rt
                        .block_on(async { tokio::time::timeout(wait, stream.next()).await });
                    match next {
                        Ok(Some(Ok(bytes))) if bytes.is_empty() => continue,
                        Ok(Some(Ok(bytes))) => {
                            self.rt.block_on(self.ctx.throttle(bytes.len()));
                            return Ok(Some(bytes));
                        }
                        Ok(None) if self.size.is_none_or(|s| self.pos >= s) => return Ok(None),
                        Ok(None) => "the connection closed before the end".to_string(),
                        Ok(Some(Err(e))) => format!("connection lost while reading: {e}"),
                        Err(_) => "no data for too long".to_string(),
                    }
                }
                None => "resuming".to_string(),
            };
            *body = None;
            self.rt.block_on(backoff.wait(&why))?;
            let resumed = self.rt.block_on(self.ctx.get_from(
                &self.name,
                &self.key,
                self.pos,
                self.etag.as_deref(),
            ))?;
            match resumed {
                Some((stream, _, _)) => {
                    *self.body.get_mut().unwrap_or_else(|p| p.into_inner()) = Some(stream)
                }
                None => {
                    return Err(Error::Check(format!(
                        "object {} vanished from {} while it was being read",
                        self.name,
                        self.ctx.describe()
                    )));
                }
            }
        }
    }
}

impl Read for S3Reader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        if self.chunk.is_empty() {
            match self.next_chunk() {
                Ok(Some(c)) => self.chunk = c,
                Ok(None) => return Ok(0),
                Err(e) => return Err(io::Error::other(e.to_string())),
            }
        }
        let n = out.len().min(self.chunk.len());
        out[..n].copy_from_slice(&self.chunk.split_to(n));
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGE_PUB: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";

    fn policy(store: &str) -> String {
        format!(
            "name = \"shop\"\nid = \"3f6c2a9e-9a3c-4c55-9a8e-0d1f5f0b6a11\"\n[source]\nkind = \"sqlite\"\npath = \"x.db\"\n[[store]]\n{store}\n[encryption]\nage_recipients = [\"{AGE_PUB}\"]\n"
        )
    }

    fn parse(store: &str) -> crate::Result<crate::Policy> {
        crate::policy::parse(std::path::Path::new("p.toml"), &policy(store))
    }

    /// (line, key) of the policy error for this store body.
    fn err(store: &str) -> (usize, String, String) {
        match parse(store) {
            Err(Error::Policy {
                line, key, message, ..
            }) => (line, key, message),
            other => panic!("expected a policy error for {store:?}, got {other:?}"),
        }
    }

    #[test]
    fn s3_stores_parse_with_every_option() {
        let p = parse(
            "kind = \"s3\"\nbucket = \"dr-offsite\"\nprefix = \"lifeboat/\"\nregion = \"eu-west-1\"\nendpoint = \"http://127.0.0.1:9000\"\ncredentials_env = \"AWS\"\nstorage_class = \"STANDARD_IA\"\nsse = \"aws:kms\"\nkms_key_id = \"k1\"\nobject_lock_days = 30\nmax_bandwidth = \"50MiB/s\"\nrequired = false",
        )
        .unwrap();
        let crate::policy::StoreSpec::S3 { spec, required } = &p.stores[0] else {
            panic!("not s3: {:?}", p.stores[0]);
        };
        assert!(!required);
        assert_eq!(spec.describe(), "s3://dr-offsite/lifeboat/");
        assert_eq!(spec.object_lock_days, Some(30));
        assert_eq!(spec.object_lock_mode, "COMPLIANCE");
        assert_eq!(spec.max_bandwidth, Some(50 << 20));
        assert_eq!(spec.credentials_env.as_deref(), Some("AWS"));
        let p = parse("kind = \"s3\"\nbucket = \"b-1\"\nregion = \"us-east-1\"").unwrap();
        assert!(p.stores[0].required());
        assert_eq!(p.stores[0].kind(), "s3");
    }

    #[test]
    fn s3_store_errors_name_line_and_key() {
        let base = "kind = \"s3\"\nbucket = \"b-1\"\nregion = \"eu-west-1\"\n";
        // The store body starts on line 7.
        for (extra, line, key) in [
            ("sse = \"rot13\"", 10, "store.sse"),
            ("kms_key_id = \"k\"", 10, "store.kms_key_id"),
            ("storage_class = \"GLACIER\"", 10, "store.storage_class"),
            ("max_bandwidth = \"fast\"", 10, "store.max_bandwidth"),
            ("object_lock_days = 0", 10, "store.object_lock_days"),
            (
                "object_lock_mode = \"GOVERNANCE\"",
                10,
                "store.object_lock_mode",
            ),
            ("endpoint = \"http://user:pw@host\"", 10, "store.endpoint"),
            ("endpoint = \"ftp://host\"", 10, "store.endpoint"),
            ("credentials_env = \"aws key\"", 10, "store.credentials_env"),
            ("prefix = \"/abs\"", 10, "store.prefix"),
            ("path = \"/x\"", 7, "store.path"),
            ("colour = 1", 10, "store.colour"),
        ] {
            let (l, k, m) = err(&format!("{base}{extra}"));
            assert_eq!((l, k.as_str()), (line, key), "{extra}: {m}");
        }
        let (l, k, _) = err("kind = \"s3\"\nregion = \"eu-west-1\"");
        assert_eq!((l, k.as_str()), (7, "store.bucket"));
        let (l, k, _) = err("kind = \"s3\"\nbucket = \"Bad_Bucket\"\nregion = \"r\"");
        assert_eq!((l, k.as_str()), (8, "store.bucket"));
        let (l, k, _) = err("kind = \"s3\"\nbucket = \"b-1\"");
        assert_eq!((l, k.as_str()), (7, "store.region"));
        let (l, k, _) = err("kind = \"local\"\npath = \"b\"\nbucket = \"b-1\"");
        assert_eq!((l, k.as_str()), (9, "store.bucket"));
        let (_, k, m) = err("kind = \"ftp\"");
        assert_eq!(k, "store.kind");
        assert!(m.contains("\"s3\""), "{m}");
    }

    #[test]
    fn the_throttle_spaces_transfers_at_the_rate() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let t = Throttle::new(1024 * 1024);
        let started = Instant::now();
        rt.block_on(async {
            for _ in 0..3 {
                t.take(512 * 1024).await;
            }
        });
        // The first goes at once, the next two wait for the link: 1 s in all.
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(950) && took < Duration::from_secs(3),
            "{took:?}"
        );
    }

    #[test]
    fn bandwidths_parse() {
        assert_eq!(parse_bandwidth("50MiB/s"), Ok(50 * 1024 * 1024));
        assert_eq!(parse_bandwidth("10 MB/s"), Ok(10_000_000));
        assert_eq!(parse_bandwidth("512KiB/s"), Ok(512 * 1024));
        assert_eq!(parse_bandwidth("1.5GiB/s"), Ok(1024 * 1024 * 1536));
        assert_eq!(parse_bandwidth("2000000"), Ok(2_000_000));
        for bad in ["fast", "10 parsecs/s", "", "0MiB/s", "100/s"] {
            assert!(parse_bandwidth(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn part_sizes_fit_the_part_limit_and_bound_memory() {
        assert_eq!(part_size_for(None), MIN_PART_SIZE);
        assert_eq!(part_size_for(Some(300 << 20)), MIN_PART_SIZE);
        let huge = 1u64 << 40; // 1 TiB
        let p = part_size_for(Some(huge)) as u64;
        assert!(p.is_multiple_of(1 << 20) && huge.div_ceil(p) <= 9_000);
        assert_eq!(part_size_for(Some(u64::MAX)), MAX_PART_SIZE);
        assert_eq!(in_flight_for(MIN_PART_SIZE), 4);
        assert_eq!(in_flight_for(128 << 20), 1);
    }

    #[test]
    fn composite_checksum_is_the_digest_of_part_digests() {
        let parts: Vec<Done> = [&b"a"[..], b"b"]
            .iter()
            .enumerate()
            .map(|(i, d)| Done {
                number: i as i32 + 1,
                etag: String::new(),
                sha256: sha256_b64(d),
            })
            .collect();
        let mut h = Sha256::new();
        h.update(Sha256::digest(b"a"));
        h.update(Sha256::digest(b"b"));
        assert_eq!(
            composite_sha256(&parts),
            aws_smithy_types::base64::encode(h.finalize())
        );
        assert_eq!(strip_part_count("abc+/=-2"), "abc+/=");
        assert_eq!(strip_part_count("abc="), "abc=");
    }
}
