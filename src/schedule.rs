//! Schedules: cron expressions (5 fields, as in crontab) evaluated in the policy's
//! timezone, deciding whether a job has come due since it last succeeded.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;

/// Parses a 5-field cron expression (minute hour day-of-month month day-of-week).
pub fn parse(expr: &str) -> Result<Cron, String> {
    let fields = expr.split_whitespace().count();
    if fields != 5 {
        return Err(format!(
            "cron expression {expr:?} has {fields} fields; use 5 (minute hour day month weekday), e.g. \"0 3 * * *\""
        ));
    }
    Cron::from_str(expr).map_err(|e| format!("invalid cron expression {expr:?}: {e}"))
}

/// Whether a job on `expr` is due at `now`, given when it last succeeded: never run means
/// due at once; otherwise due when a scheduled time has passed since the last success.
/// Any number of missed slots makes one run, not one per slot.
pub fn is_due(expr: &str, tz: Tz, last: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    let Some(last) = last else { return true };
    next_after(expr, tz, last).is_some_and(|next| next <= now)
}

/// The first scheduled time strictly after `after`.
pub fn next_after(expr: &str, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let cron = parse(expr).ok()?;
    cron.find_next_occurrence(&after.with_timezone(&tz), false)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn never_run_is_due() {
        assert!(is_due(
            "0 3 * * *",
            Tz::UTC,
            None,
            t("2026-06-09T00:00:00Z")
        ));
    }

    #[test]
    fn due_only_after_the_next_slot() {
        let last = Some(t("2026-06-09T03:00:05Z"));
        assert!(!is_due(
            "0 3 * * *",
            Tz::UTC,
            last,
            t("2026-06-10T02:59:59Z")
        ));
        assert!(is_due(
            "0 3 * * *",
            Tz::UTC,
            last,
            t("2026-06-10T03:00:00Z")
        ));
        // Missed for days: still one run due.
        assert!(is_due(
            "0 3 * * *",
            Tz::UTC,
            last,
            t("2026-06-14T12:00:00Z")
        ));
    }

    #[test]
    fn timezone_moves_the_slot() {
        // 03:00 in Paris (UTC+2 in June) is 01:00 UTC.
        let last = t("2026-06-09T01:30:00Z");
        let paris = chrono_tz::Europe::Paris;
        assert_eq!(
            next_after("0 3 * * *", paris, last),
            Some(t("2026-06-10T01:00:00Z"))
        );
    }

    #[test]
    fn rejects_bad_expressions() {
        assert!(parse("0 3 * *").is_err());
        assert!(parse("61 3 * * *").is_err());
        assert!(parse("0 3 * * *").is_ok());
    }
}
