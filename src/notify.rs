//! Webhook notifications: a JSON POST (Slack-compatible `text` plus structured fields) to
//! the URL held in an environment variable. Retried with backoff within a bounded time, and
//! never allowed to fail the run it reports on. The URL is a secret: it never appears in
//! any message.

use std::time::{Duration, Instant};

use serde::Serialize;

/// The notification body.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// `failure`, `breach` or `success`.
    pub event: String,
    pub policy: String,
    pub exit_code: u8,
    /// One line for chat tools.
    pub text: String,
    /// The run's structured result.
    pub details: serde_json::Value,
}

/// How long all attempts together may take.
const TOTAL: Duration = Duration::from_secs(20);
const ATTEMPTS: u32 = 4;

/// Posts `event` to the URL in environment variable `var`. Errors are one line without
/// the URL.
pub fn send(var: &str, event: &Event) -> Result<(), String> {
    let url = std::env::var(var)
        .ok()
        .filter(|u| !u.trim().is_empty())
        .ok_or_else(|| format!("environment variable {var} (the webhook URL) is not set"))?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .http_status_as_error(true)
        .build()
        .into();
    let started = Instant::now();
    let mut last = String::new();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            // Exponential backoff with jitter, never beyond the total budget.
            let base = Duration::from_millis(250 << attempt);
            let jitter = Duration::from_millis(u64::from(uuid::Uuid::new_v4().as_bytes()[0]));
            let wait = base + jitter;
            if started.elapsed() + wait > TOTAL {
                break;
            }
            std::thread::sleep(wait);
        }
        // Each attempt gets what is left of the budget, at most 5 s.
        let left = TOTAL.saturating_sub(started.elapsed());
        if left.is_zero() {
            break;
        }
        let request = agent
            .post(&url)
            .config()
            .timeout_global(Some(left.min(Duration::from_secs(5))))
            .build();
        match request.send_json(event) {
            Ok(_) => return Ok(()),
            Err(e) => last = describe(&e),
        }
    }
    Err(format!("webhook {var}: {last}"))
}

/// A description of a transport error that cannot contain the URL.
fn describe(e: &ureq::Error) -> String {
    match e {
        ureq::Error::StatusCode(code) => format!("HTTP status {code}"),
        ureq::Error::Timeout(_) => "timed out".into(),
        ureq::Error::Io(io) => format!("connection failed ({:?})", io.kind()),
        ureq::Error::HostNotFound => "host not found".into(),
        ureq::Error::ConnectionFailed => "connection failed".into(),
        _ => "request failed".into(),
    }
}
