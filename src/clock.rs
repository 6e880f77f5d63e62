//! The clock, injected at the edge: `LIFEBOAT_NOW` (RFC 3339) fixes it for tests and replays.

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};

/// Wall-clock time, real or fixed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Clock {
    fixed: Option<DateTime<Utc>>,
}

impl Clock {
    /// The real clock.
    pub fn system() -> Self {
        Clock { fixed: None }
    }

    /// A clock stopped at `at`.
    pub fn fixed(at: DateTime<Utc>) -> Self {
        Clock { fixed: Some(at) }
    }

    /// `LIFEBOAT_NOW` when set, the real clock otherwise.
    pub fn from_env() -> Result<Self> {
        match std::env::var("LIFEBOAT_NOW") {
            Ok(v) if !v.is_empty() => DateTime::parse_from_rfc3339(&v)
                .map(|t| Clock::fixed(t.with_timezone(&Utc)))
                .map_err(|e| {
                    Error::Config(format!(
                        "LIFEBOAT_NOW={v:?} is not an RFC 3339 time ({e}); e.g. 2026-06-09T03:00:00Z"
                    ))
                }),
            _ => Ok(Clock::system()),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.fixed.unwrap_or_else(Utc::now)
    }
}
