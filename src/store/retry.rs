//! Retries for the S3 store: which failures are worth another attempt, and exponential
//! backoff with jitter inside a bounded total time.
//!
//! The SDK's own retries are disabled; every request goes through one loop here, so the
//! bound on time is ours and one place decides what "transient" means:
//!
//! - 5xx answers, throttling (`SlowDown`, 429, …), timeouts, connections refused or dropped
//!   (before or during the response) are transient;
//! - an error body inside a 200 answer (S3 does this for `CompleteMultipartUpload`) arrives
//!   as a service error with its code (`InternalError`, …) and is classified by that code;
//! - anything else (access denied, no such bucket, bad request) is final.
//!
//! A transient failure after which the request may still have been applied (no answer, or
//! an answer cut short) is [`Class::Unknown`]: callers whose request is not idempotent (a
//! `PutObject` into a versioned bucket, `CompleteMultipartUpload`) check the object's state
//! before trying again, and never take "no answer" for "absent".

use std::time::{Duration, Instant};

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use crate::error::{Error, Result};

/// What a failed attempt means for the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Not applied (refused, throttled, 5xx): try again.
    Transient,
    /// May or may not have been applied (timeout, dropped connection): check, then try again.
    Unknown,
    /// Retrying cannot help.
    Final,
}

/// Error codes S3 and compatible servers use for transient conditions.
const TRANSIENT_CODES: &[&str] = &[
    "InternalError",
    "ServiceUnavailable",
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestTimeout",
    "RequestTimeoutException",
    "BandwidthLimitExceeded",
    "EC2ThrottledException",
    "PriorRequestNotComplete",
    "IDPCommunicationError",
];

/// Classifies an SDK error.
pub fn classify<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> Class {
    match e {
        SdkError::ConstructionFailure(_) => Class::Final,
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => Class::Unknown,
        SdkError::DispatchFailure(d) => {
            if d.is_user() {
                Class::Final
            } else {
                Class::Unknown
            }
        }
        SdkError::ServiceError(s) => {
            let status = s.raw().status().as_u16();
            let code = s.err().code().unwrap_or("");
            if TRANSIENT_CODES.contains(&code) || status == 429 || (500..600).contains(&status) {
                Class::Transient
            } else {
                Class::Final
            }
        }
        _ => Class::Unknown,
    }
}

/// The error code of a service error (`NoSuchKey`, `AccessDenied`, …), if it is one.
pub fn code<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> Option<&str> {
    match e {
        SdkError::ServiceError(s) => s.err().code(),
        _ => None,
    }
}

/// The HTTP status of a service error.
pub fn status<E>(e: &SdkError<E, HttpResponse>) -> Option<u16> {
    match e {
        SdkError::ServiceError(s) => Some(s.raw().status().as_u16()),
        _ => None,
    }
}

/// One line describing an SDK error, without request details (no URLs, no headers, so no
/// signatures or credentials).
pub fn describe<E: ProvideErrorMetadata + std::error::Error + 'static>(
    e: &SdkError<E, HttpResponse>,
) -> String {
    let text = match e {
        SdkError::ServiceError(s) => {
            let status = s.raw().status().as_u16();
            match (s.err().code(), s.err().message()) {
                (Some(c), Some(m)) => format!("{c}: {m} (HTTP {status})"),
                (Some(c), None) => format!("{c} (HTTP {status})"),
                _ => format!("HTTP {status}"),
            }
        }
        SdkError::TimeoutError(_) => "timed out".to_string(),
        SdkError::DispatchFailure(d) => match d.as_connector_error() {
            Some(c) => format!("connection failed: {}", chain(c)),
            None => "connection failed".to_string(),
        },
        SdkError::ResponseError(_) => format!("response cut short or unreadable: {}", chain(e)),
        other => chain(other),
    };
    text.replace(['\n', '\r'], " ")
}

/// An error and its sources, joined by ": ".
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// How long and how often to retry.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Total time one request may take, retries included.
    pub budget: Duration,
    /// First backoff; doubles with each attempt up to `cap`.
    pub base: Duration,
    pub cap: Duration,
}

impl RetryPolicy {
    /// From `LIFEBOAT_S3_RETRY_SECONDS` (total time per request, default 300).
    pub fn from_env() -> Self {
        let budget = std::env::var("LIFEBOAT_S3_RETRY_SECONDS")
            .ok()
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
            .map_or(Duration::from_secs(300), Duration::from_secs_f64);
        RetryPolicy {
            budget,
            base: Duration::from_millis(100),
            cap: Duration::from_secs(10),
        }
    }

    /// The policy for cleaning up after a failure (aborting an upload): at most a minute,
    /// so a dead server does not hold the failing command much longer.
    pub fn cleanup(&self) -> Self {
        RetryPolicy {
            budget: self.budget.min(Duration::from_secs(60)),
            ..*self
        }
    }

    /// Starts the clock for one request.
    pub fn start(&self, what: impl Into<String>) -> Backoff {
        Backoff {
            policy: *self,
            what: what.into(),
            started: Instant::now(),
            attempts: 0,
        }
    }
}

/// The retry state of one request.
pub struct Backoff {
    policy: RetryPolicy,
    what: String,
    started: Instant,
    attempts: u32,
}

impl Backoff {
    /// Called after a transient failure described by `why`: sleeps before the next attempt,
    /// or fails (exit 3) when the next attempt would start past the budget.
    pub async fn wait(&mut self, why: &str) -> Result<()> {
        self.attempts += 1;
        let delay = self.delay();
        let elapsed = self.started.elapsed();
        if elapsed + delay > self.policy.budget {
            return Err(self.give_up(why));
        }
        tokio::time::sleep(delay).await;
        Ok(())
    }

    /// The final error for a transient failure that was not retried further.
    pub fn give_up(&self, why: &str) -> Error {
        Error::Runtime(format!(
            "{}: {why} (gave up after {} attempt{} in {:.1}s)",
            self.what,
            self.attempts.max(1),
            if self.attempts > 1 { "s" } else { "" },
            self.started.elapsed().as_secs_f64()
        ))
    }

    /// After a failed request: fails at once when retrying cannot help, otherwise waits
    /// for the next attempt (or gives up past the budget).
    pub async fn after<E: ProvideErrorMetadata + std::error::Error + 'static>(
        &mut self,
        e: &SdkError<E, HttpResponse>,
    ) -> Result<()> {
        let why = describe(e);
        match classify(e) {
            Class::Final => Err(self.fail(&why)),
            _ => self.wait(&why).await,
        }
    }

    /// The final error for a failure that retrying cannot help.
    pub fn fail(&self, why: &str) -> Error {
        Error::Runtime(format!("{}: {why}", self.what))
    }

    /// Exponential backoff with "equal jitter": half the step fixed, half random.
    fn delay(&self) -> Duration {
        let exp = self.attempts.saturating_sub(1).min(16);
        let step = self
            .policy
            .base
            .saturating_mul(1u32 << exp)
            .min(self.policy.cap);
        let half = step / 2;
        half + half.mul_f64(random_unit())
    }
}

/// A random number in [0, 1) (from the OS generator behind UUIDv4).
fn random_unit() -> f64 {
    (uuid::Uuid::new_v4().as_u128() >> 75) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_jittered_and_capped() {
        let policy = RetryPolicy {
            budget: Duration::from_secs(3600),
            base: Duration::from_millis(100),
            cap: Duration::from_secs(2),
        };
        let mut b = policy.start("x");
        let mut last_max = Duration::ZERO;
        for n in 1..12 {
            b.attempts = n;
            let d = b.delay();
            let step = (Duration::from_millis(100) * (1 << (n - 1))).min(Duration::from_secs(2));
            assert!(d >= step / 2 && d <= step, "attempt {n}: {d:?} vs {step:?}");
            last_max = last_max.max(d);
        }
        assert!(last_max <= Duration::from_secs(2));
        let r: Vec<f64> = (0..100).map(|_| random_unit()).collect();
        assert!(r.iter().all(|v| (0.0..1.0).contains(v)));
        assert!(r.iter().any(|v| *v != r[0]), "jitter is random");
    }

    #[test]
    fn budget_bounds_the_total_time() {
        let policy = RetryPolicy {
            budget: Duration::from_millis(300),
            base: Duration::from_millis(50),
            cap: Duration::from_millis(100),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let started = Instant::now();
        let err = rt.block_on(async {
            let mut b = policy.start("upload x");
            loop {
                if let Err(e) = b.wait("HTTP 503").await {
                    return e;
                }
            }
        });
        assert!(started.elapsed() <= Duration::from_millis(400));
        let text = err.to_string();
        assert!(
            text.starts_with("upload x: HTTP 503 (gave up after "),
            "{text}"
        );
        assert_eq!(err.kind(), crate::ErrorKind::Runtime);
    }
}
