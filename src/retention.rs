//! Retention: which backups a policy keeps. A pure function of (backups, rules, time zone,
//! now, protected backup): no clock, no store, no catalog, so it is tested exhaustively and
//! [`crate::rotate`] only carries its plan out.
//!
//! Semantics (restic `forget`, with two differences noted):
//! - the rules are a union: a backup is kept when any rule keeps it, and carries every
//!   reason it is kept for;
//! - `keep_last = N`: the N newest backups (reason `last K`, K = 1 for the newest);
//! - `keep_hourly`, `keep_daily`, `keep_weekly` (ISO weeks), `keep_monthly`,
//!   `keep_yearly = N`: for the N most recent hours/days/weeks/months/years that hold at least
//!   one backup, the newest backup of each (reason e.g. `daily 2026-06-09`, `weekly 2026-W23`);
//!   periods are those of the policy's time zone (UTC by default); in a repeated
//!   daylight-saving hour both clock hours fall in the same hourly period;
//! - `keep_within = D`: every backup newer than `now - D` (restic counts from the newest
//!   backup instead);
//! - `max_age = D`: a cap; no rule above keeps a backup older than `now - D`;
//! - with a retention table but no `keep_*` rule (only `max_age`), every backup within the cap
//!   is kept;
//! - always kept, whatever the rules and the cap say: the newest backup (`newest`) and the
//!   protected one, the newest that passed a verification (`newest verified`);
//! - with no rule at all (no `[retention]` table), every backup is kept.
//!
//! Backups are ordered by creation time, then id, so the plan is deterministic even for
//! backups made within the same second.

use chrono::{DateTime, Datelike, TimeDelta, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::policy::Retention;

/// A backup as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupInfo {
    pub id: String,
    pub created_at: DateTime<Utc>,
}

/// A backup the plan keeps, with every reason it is kept for (never empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Kept {
    pub id: String,
    pub created_at: DateTime<Utc>,
    pub reasons: Vec<String>,
}

/// A backup the plan deletes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deleted {
    pub id: String,
    pub created_at: DateTime<Utc>,
}

/// What to keep and what to delete; both newest first, together exactly the input.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub keep: Vec<Kept>,
    pub delete: Vec<Deleted>,
}

/// Reason given to every backup when the policy has no retention rule.
pub const NO_RULES: &str = "no retention rules";
/// Reason given to backups within the cap when there is a cap but no `keep_*` rule.
pub const NO_KEEP_RULES: &str = "no keep rules";
/// Reason given to the newest backup.
pub const NEWEST: &str = "newest";
/// Reason given to the protected backup (the newest that passed a verification).
pub const NEWEST_VERIFIED: &str = "newest verified";

/// A calendar period of the bucket rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Period {
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

impl Period {
    fn name(self) -> &'static str {
        match self {
            Period::Hourly => "hourly",
            Period::Daily => "daily",
            Period::Weekly => "weekly",
            Period::Monthly => "monthly",
            Period::Yearly => "yearly",
        }
    }

    /// The period holding `t`, as a label that is also its identity. Labels never repeat
    /// once left: local time only goes back within a repeated hour, which has one label.
    fn label(self, t: DateTime<Tz>) -> String {
        match self {
            Period::Hourly => t.format("%Y-%m-%d %H:00").to_string(),
            Period::Daily => t.format("%Y-%m-%d").to_string(),
            Period::Weekly => {
                let w = t.iso_week();
                format!("{}-W{:02}", w.year(), w.week())
            }
            Period::Monthly => t.format("%Y-%m").to_string(),
            Period::Yearly => t.format("%Y").to_string(),
        }
    }
}

/// `now - d`, or `None` when that is before any representable time (no limit).
fn cutoff(now: DateTime<Utc>, d: std::time::Duration) -> Option<DateTime<Utc>> {
    TimeDelta::from_std(d)
        .ok()
        .and_then(|d| now.checked_sub_signed(d))
}

/// A duration as a policy would write it: `30d`, `12h`, `90m`, `45s`.
fn short_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{}ms", d.as_millis()),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Whether `rules` has any `keep_*` rule.
fn has_keep_rule(r: &Retention) -> bool {
    r.keep_last.is_some()
        || r.keep_hourly.is_some()
        || r.keep_daily.is_some()
        || r.keep_weekly.is_some()
        || r.keep_monthly.is_some()
        || r.keep_yearly.is_some()
        || r.keep_within.is_some()
}

/// Plans a rotation: which of `backups` to keep (and why) and which to delete, at `now`,
/// with calendar periods in `tz`. `protected` (a backup id) is always kept when present.
pub fn plan(
    backups: &[BackupInfo],
    rules: &Retention,
    tz: Tz,
    now: DateTime<Utc>,
    protected: Option<&str>,
) -> Plan {
    let mut order: Vec<&BackupInfo> = backups.iter().collect();
    order.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
    let mut reasons: Vec<Vec<String>> = vec![Vec::new(); order.len()];

    if *rules == Retention::default() {
        reasons.iter_mut().for_each(|r| r.push(NO_RULES.into()));
    } else {
        if !has_keep_rule(rules) {
            reasons
                .iter_mut()
                .for_each(|r| r.push(NO_KEEP_RULES.into()));
        }
        let periods = [
            (Period::Hourly, rules.keep_hourly),
            (Period::Daily, rules.keep_daily),
            (Period::Weekly, rules.keep_weekly),
            (Period::Monthly, rules.keep_monthly),
            (Period::Yearly, rules.keep_yearly),
        ];
        for (period, n) in periods {
            let Some(n) = n else { continue };
            let mut current: Option<String> = None;
            let mut count = 0;
            for (i, b) in order.iter().enumerate() {
                if count >= n {
                    break;
                }
                let label = period.label(b.created_at.with_timezone(&tz));
                if current.as_ref() != Some(&label) {
                    reasons[i].push(format!("{} {label}", period.name()));
                    count += 1;
                    current = Some(label);
                }
            }
        }
        if let Some(n) = rules.keep_last {
            for (k, r) in reasons.iter_mut().take(n as usize).enumerate() {
                r.push(format!("last {}", k + 1));
            }
        }
        if let Some(d) = rules.keep_within {
            let since = cutoff(now, d);
            let reason = format!("within {}", short_duration(d));
            for (i, b) in order.iter().enumerate() {
                if since.is_none_or(|s| b.created_at > s) {
                    reasons[i].push(reason.clone());
                }
            }
        }
        if let Some(limit) = rules.max_age.and_then(|d| cutoff(now, d)) {
            for (i, b) in order.iter().enumerate() {
                if b.created_at < limit {
                    reasons[i].clear();
                }
            }
        }
    }

    if let Some(r) = reasons.first_mut() {
        r.push(NEWEST.into());
    }
    if let Some(p) = protected
        && let Some(i) = order.iter().position(|b| b.id == p)
    {
        reasons[i].push(NEWEST_VERIFIED.into());
    }

    let mut out = Plan::default();
    for (b, reasons) in order.into_iter().zip(reasons) {
        if reasons.is_empty() {
            out.delete.push(Deleted {
                id: b.id.clone(),
                created_at: b.created_at,
            });
        } else {
            out.keep.push(Kept {
                id: b.id.clone(),
                created_at: b.created_at,
                reasons,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;

    const DAY: u64 = 86_400;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn b(id: &str, at: &str) -> BackupInfo {
        BackupInfo {
            id: id.into(),
            created_at: t(at),
        }
    }

    fn kept_ids(p: &Plan) -> Vec<&str> {
        p.keep.iter().map(|k| k.id.as_str()).collect()
    }

    fn reasons_of<'a>(p: &'a Plan, id: &str) -> &'a [String] {
        &p.keep.iter().find(|k| k.id == id).unwrap().reasons
    }

    /// Daily backups at 03:00 UTC from 2026-05-01 to 2026-06-09, ids "d01".."d40".
    fn dailies() -> Vec<BackupInfo> {
        let start = t("2026-05-01T03:00:00Z");
        (0..40)
            .map(|i| BackupInfo {
                id: format!("d{:02}", i + 1),
                created_at: start + TimeDelta::days(i),
            })
            .collect()
    }

    const NOW: &str = "2026-06-09T12:00:00Z";

    #[test]
    fn no_rules_keeps_everything() {
        let p = plan(&dailies(), &Retention::default(), Tz::UTC, t(NOW), None);
        assert!(p.delete.is_empty());
        assert_eq!(p.keep.len(), 40);
        assert_eq!(p.keep[0].id, "d40", "newest first");
        assert_eq!(p.keep[0].reasons, [NO_RULES, NEWEST]);
        assert_eq!(p.keep[39].reasons, [NO_RULES]);
    }

    #[test]
    fn empty_input_gives_empty_plan() {
        let rules = Retention {
            keep_last: Some(3),
            ..Retention::default()
        };
        assert_eq!(
            plan(&[], &rules, Tz::UTC, t(NOW), Some("x")),
            Plan::default()
        );
    }

    #[test]
    fn keep_last_and_daily_with_reasons() {
        let rules = Retention {
            keep_last: Some(3),
            keep_daily: Some(5),
            ..Retention::default()
        };
        let p = plan(&dailies(), &rules, Tz::UTC, t(NOW), None);
        assert_eq!(kept_ids(&p), ["d40", "d39", "d38", "d37", "d36"]);
        assert_eq!(
            reasons_of(&p, "d40"),
            ["daily 2026-06-09", "last 1", NEWEST]
        );
        assert_eq!(reasons_of(&p, "d38"), ["daily 2026-06-07", "last 3"]);
        assert_eq!(reasons_of(&p, "d36"), ["daily 2026-06-05"]);
        assert_eq!(p.delete.len(), 35);
        assert_eq!(p.delete[0].id, "d35");
    }

    #[test]
    fn daily_keeps_the_newest_of_each_day() {
        let backups = vec![
            b("a", "2026-06-09T01:00:00Z"),
            b("b", "2026-06-09T13:00:00Z"),
            b("c", "2026-06-08T23:00:00Z"),
            b("d", "2026-06-08T05:00:00Z"),
            b("e", "2026-06-06T05:00:00Z"),
        ];
        let rules = Retention {
            keep_daily: Some(3),
            ..Retention::default()
        };
        let p = plan(&backups, &rules, Tz::UTC, t("2026-06-10T00:00:00Z"), None);
        assert_eq!(kept_ids(&p), ["b", "c", "e"]);
        assert_eq!(reasons_of(&p, "e"), ["daily 2026-06-06"]);
    }

    #[test]
    fn periods_follow_the_policy_time_zone() {
        // 22:30 UTC on 2026-06-08 is 00:30 on 2026-06-09 in Paris (CEST, UTC+2).
        let backups = vec![
            b("late", "2026-06-08T22:30:00Z"),
            b("early", "2026-06-08T21:30:00Z"),
        ];
        let rules = Retention {
            keep_daily: Some(2),
            ..Retention::default()
        };
        let now = t("2026-06-09T12:00:00Z");
        let utc = plan(&backups, &rules, Tz::UTC, now, None);
        assert_eq!(kept_ids(&utc), ["late"]);
        let paris = plan(&backups, &rules, chrono_tz::Europe::Paris, now, None);
        assert_eq!(kept_ids(&paris), ["late", "early"]);
        assert_eq!(reasons_of(&paris, "late"), ["daily 2026-06-09", NEWEST]);
        assert_eq!(reasons_of(&paris, "early"), ["daily 2026-06-08"]);
    }

    #[test]
    fn iso_weeks_months_years_and_hours() {
        // 2027-01-01 (Friday) is in ISO week 2026-W53.
        let backups = vec![
            b("w1", "2027-01-04T10:00:00Z"),
            b("w53b", "2027-01-03T10:00:00Z"),
            b("w53a", "2026-12-28T10:00:00Z"),
            b("w52", "2026-12-27T10:00:00Z"),
        ];
        let now = t("2027-01-05T00:00:00Z");
        let weekly = Retention {
            keep_weekly: Some(2),
            ..Retention::default()
        };
        let p = plan(&backups, &weekly, Tz::UTC, now, None);
        assert_eq!(kept_ids(&p), ["w1", "w53b"]);
        assert_eq!(reasons_of(&p, "w53b"), ["weekly 2026-W53"]);
        let monthly = Retention {
            keep_monthly: Some(5),
            keep_yearly: Some(1),
            ..Retention::default()
        };
        let p = plan(&backups, &monthly, Tz::UTC, now, None);
        assert_eq!(kept_ids(&p), ["w1", "w53a"]);
        assert_eq!(
            reasons_of(&p, "w1"),
            ["monthly 2027-01", "yearly 2027", NEWEST]
        );
        let hourly = Retention {
            keep_hourly: Some(2),
            ..Retention::default()
        };
        let p = plan(&backups, &hourly, Tz::UTC, now, None);
        assert_eq!(reasons_of(&p, "w53b"), ["hourly 2027-01-03 10:00"]);
    }

    #[test]
    fn repeated_daylight_saving_hour_is_one_hourly_period() {
        // Paris leaves summer time on 2026-10-25: 02:xx local happens at 00:xx and 01:xx UTC.
        let backups = vec![
            b("second", "2026-10-25T01:10:00Z"),
            b("first", "2026-10-25T00:50:00Z"),
            b("before", "2026-10-24T23:50:00Z"),
        ];
        let rules = Retention {
            keep_hourly: Some(2),
            ..Retention::default()
        };
        let p = plan(
            &backups,
            &rules,
            chrono_tz::Europe::Paris,
            t("2026-10-25T03:00:00Z"),
            None,
        );
        assert_eq!(kept_ids(&p), ["second", "before"]);
        assert_eq!(reasons_of(&p, "before"), ["hourly 2026-10-25 01:00"]);
    }

    #[test]
    fn keep_within_counts_from_now() {
        let rules = Retention {
            keep_within: Some(Duration::from_secs(3 * DAY)),
            ..Retention::default()
        };
        let p = plan(&dailies(), &rules, Tz::UTC, t(NOW), None);
        assert_eq!(kept_ids(&p), ["d40", "d39", "d38"]);
        assert_eq!(reasons_of(&p, "d38"), ["within 3d"]);
        // Long after the last backup, only the newest is left.
        let p = plan(&dailies(), &rules, Tz::UTC, t("2027-01-01T00:00:00Z"), None);
        assert_eq!(kept_ids(&p), ["d40"]);
        assert_eq!(reasons_of(&p, "d40"), [NEWEST]);
    }

    #[test]
    fn max_age_caps_every_rule_but_not_newest_or_protected() {
        let rules = Retention {
            keep_last: Some(100),
            keep_monthly: Some(12),
            max_age: Some(Duration::from_secs(10 * DAY)),
            ..Retention::default()
        };
        let p = plan(&dailies(), &rules, Tz::UTC, t(NOW), None);
        // 2026-05-30T12:00Z is the limit: d30 (05-30 03:00) is older.
        assert_eq!(p.keep.len(), 10);
        assert_eq!(p.keep.last().unwrap().id, "d31");
        // Far in the future: the cap removes everything but the newest and the protected.
        let p = plan(
            &dailies(),
            &rules,
            Tz::UTC,
            t("2027-01-01T00:00:00Z"),
            Some("d02"),
        );
        assert_eq!(kept_ids(&p), ["d40", "d02"]);
        assert_eq!(reasons_of(&p, "d40"), [NEWEST]);
        assert_eq!(reasons_of(&p, "d02"), [NEWEST_VERIFIED]);
    }

    #[test]
    fn cap_alone_keeps_everything_within_it() {
        let rules = Retention {
            max_age: Some(Duration::from_secs(5 * DAY)),
            ..Retention::default()
        };
        let p = plan(&dailies(), &rules, Tz::UTC, t(NOW), None);
        assert_eq!(kept_ids(&p), ["d40", "d39", "d38", "d37", "d36"]);
        assert_eq!(reasons_of(&p, "d36"), [NO_KEEP_RULES]);
    }

    #[test]
    fn protected_backup_is_kept_and_unknown_protected_is_ignored() {
        let rules = Retention {
            keep_last: Some(1),
            ..Retention::default()
        };
        let p = plan(&dailies(), &rules, Tz::UTC, t(NOW), Some("d05"));
        assert_eq!(kept_ids(&p), ["d40", "d05"]);
        let p = plan(&dailies(), &rules, Tz::UTC, t(NOW), Some("gone"));
        assert_eq!(kept_ids(&p), ["d40"]);
    }

    #[test]
    fn zero_counts_keep_only_the_newest() {
        let rules = Retention {
            keep_last: Some(0),
            keep_daily: Some(0),
            ..Retention::default()
        };
        let p = plan(&dailies(), &rules, Tz::UTC, t(NOW), None);
        assert_eq!(kept_ids(&p), ["d40"]);
    }

    #[test]
    fn ties_in_time_are_ordered_by_id() {
        let backups = vec![
            b("a", "2026-06-09T03:00:00Z"),
            b("c", "2026-06-09T03:00:00Z"),
            b("b", "2026-06-09T03:00:00Z"),
        ];
        let rules = Retention {
            keep_last: Some(2),
            ..Retention::default()
        };
        let p = plan(&backups, &rules, Tz::UTC, t(NOW), None);
        assert_eq!(kept_ids(&p), ["c", "b"]);
    }

    // ---- properties ----------------------------------------------------------------------

    const ZONES: [Tz; 5] = [
        Tz::UTC,
        chrono_tz::Europe::Paris,
        chrono_tz::America::New_York,
        chrono_tz::Asia::Kolkata,
        chrono_tz::Australia::Lord_Howe,
    ];

    fn base() -> DateTime<Utc> {
        t("2026-06-09T12:00:00Z")
    }

    /// Up to 60 backups within ~3 years before `base()` (a few slightly after it), at
    /// second resolution, sometimes in bursts in the same second.
    fn arb_backups() -> impl Strategy<Value = Vec<BackupInfo>> {
        prop::collection::vec(
            prop_oneof![
                3 => -(3 * 365 * DAY as i64)..3600i64,
                2 => -(20 * DAY as i64)..0i64,
                1 => Just(-3600i64),
            ],
            0..60,
        )
        .prop_map(|offsets| {
            offsets
                .into_iter()
                .enumerate()
                .map(|(i, s)| BackupInfo {
                    id: format!("b{i:03}"),
                    created_at: base() + TimeDelta::seconds(s),
                })
                .collect()
        })
    }

    fn arb_count() -> impl Strategy<Value = Option<u32>> {
        prop::option::weighted(0.4, 0u32..12)
    }

    fn arb_duration() -> impl Strategy<Value = Option<Duration>> {
        prop::option::weighted(
            0.3,
            (1u64..2000).prop_map(|h| Duration::from_secs(h * 3600)),
        )
    }

    fn arb_rules() -> impl Strategy<Value = Retention> {
        (
            arb_count(),
            arb_count(),
            arb_count(),
            arb_count(),
            arb_count(),
            arb_count(),
            arb_duration(),
            arb_duration(),
        )
            .prop_map(|(l, h, d, w, m, y, within, max_age)| Retention {
                keep_last: l,
                keep_hourly: h,
                keep_daily: d,
                keep_weekly: w,
                keep_monthly: m,
                keep_yearly: y,
                keep_within: within,
                max_age,
            })
    }

    /// Each rule alone, with the same cap.
    fn single_rules(r: &Retention) -> Vec<Retention> {
        let only = Retention {
            max_age: r.max_age,
            ..Retention::default()
        };
        let mut out = Vec::new();
        if r.keep_last.is_some() {
            out.push(Retention {
                keep_last: r.keep_last,
                ..only.clone()
            });
        }
        if r.keep_hourly.is_some() {
            out.push(Retention {
                keep_hourly: r.keep_hourly,
                ..only.clone()
            });
        }
        if r.keep_daily.is_some() {
            out.push(Retention {
                keep_daily: r.keep_daily,
                ..only.clone()
            });
        }
        if r.keep_weekly.is_some() {
            out.push(Retention {
                keep_weekly: r.keep_weekly,
                ..only.clone()
            });
        }
        if r.keep_monthly.is_some() {
            out.push(Retention {
                keep_monthly: r.keep_monthly,
                ..only.clone()
            });
        }
        if r.keep_yearly.is_some() {
            out.push(Retention {
                keep_yearly: r.keep_yearly,
                ..only.clone()
            });
        }
        if r.keep_within.is_some() {
            out.push(Retention {
                keep_within: r.keep_within,
                ..only.clone()
            });
        }
        out
    }

    fn id_set(p: &Plan) -> BTreeSet<String> {
        p.keep.iter().map(|k| k.id.clone()).collect()
    }

    fn newest(backups: &[BackupInfo]) -> Option<&BackupInfo> {
        backups.iter().max_by_key(|b| (b.created_at, &b.id))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn plan_partitions_the_input(
            backups in arb_backups(), rules in arb_rules(), tz in 0..ZONES.len(),
            now_offset in -30i64..(400 * DAY as i64), protected in prop::option::of(0usize..60),
        ) {
            let now = base() + TimeDelta::seconds(now_offset);
            let protected = protected.map(|i| format!("b{i:03}"));
            let p = plan(&backups, &rules, ZONES[tz], now, protected.as_deref());
            let mut all: Vec<String> = p.keep.iter().map(|k| k.id.clone())
                .chain(p.delete.iter().map(|d| d.id.clone())).collect();
            all.sort();
            let mut input: Vec<String> = backups.iter().map(|b| b.id.clone()).collect();
            input.sort();
            prop_assert_eq!(all, input);
            prop_assert!(p.keep.iter().all(|k| !k.reasons.is_empty()));
        }

        #[test]
        fn plan_is_idempotent(
            backups in arb_backups(), rules in arb_rules(), tz in 0..ZONES.len(),
            now_offset in -30i64..(400 * DAY as i64), protected in prop::option::of(0usize..60),
        ) {
            let now = base() + TimeDelta::seconds(now_offset);
            let protected = protected.map(|i| format!("b{i:03}"));
            let first = plan(&backups, &rules, ZONES[tz], now, protected.as_deref());
            let survivors: Vec<BackupInfo> = first.keep.iter()
                .map(|k| BackupInfo { id: k.id.clone(), created_at: k.created_at })
                .collect();
            let second = plan(&survivors, &rules, ZONES[tz], now, protected.as_deref());
            prop_assert!(second.delete.is_empty(), "second run deletes {:?}", second.delete);
            prop_assert_eq!(second.keep, first.keep);
        }

        #[test]
        fn union_keeps_what_each_rule_alone_keeps_within_the_cap(
            backups in arb_backups(), rules in arb_rules(), tz in 0..ZONES.len(),
            now_offset in -30i64..(400 * DAY as i64), protected in prop::option::of(0usize..60),
        ) {
            let now = base() + TimeDelta::seconds(now_offset);
            let protected = protected.map(|i| format!("b{i:03}"));
            let p = plan(&backups, &rules, ZONES[tz], now, protected.as_deref());
            let kept = id_set(&p);
            for single in single_rules(&rules) {
                let alone = id_set(&plan(&backups, &single, ZONES[tz], now, protected.as_deref()));
                prop_assert!(alone.is_subset(&kept), "{single:?} keeps {alone:?}, union {kept:?}");
            }
            // Nothing beyond the cap but the newest and the protected.
            if let Some(limit) = rules.max_age.and_then(|d| cutoff(now, d)) {
                let newest_id = newest(&backups).map(|b| b.id.clone());
                for k in &p.keep {
                    if k.created_at < limit {
                        prop_assert!(Some(&k.id) == newest_id.as_ref() || Some(&k.id) == protected.as_ref());
                    }
                }
            }
        }

        #[test]
        fn newest_and_protected_are_always_kept(
            backups in arb_backups(), rules in arb_rules(), tz in 0..ZONES.len(),
            now_offset in -30i64..(4000 * DAY as i64), protected in prop::option::of(0usize..60),
        ) {
            let now = base() + TimeDelta::seconds(now_offset);
            let protected = protected.map(|i| format!("b{i:03}"));
            let p = plan(&backups, &rules, ZONES[tz], now, protected.as_deref());
            let kept = id_set(&p);
            if let Some(n) = newest(&backups) {
                prop_assert!(kept.contains(&n.id));
                prop_assert_eq!(&p.keep[0].id, &n.id);
            }
            if let Some(id) = &protected && backups.iter().any(|b| &b.id == id) {
                prop_assert!(kept.contains(id));
            }
        }

        #[test]
        fn never_deletes_without_rules(
            backups in arb_backups(), tz in 0..ZONES.len(),
            now_offset in -30i64..(4000 * DAY as i64),
        ) {
            let now = base() + TimeDelta::seconds(now_offset);
            let p = plan(&backups, &Retention::default(), ZONES[tz], now, None);
            prop_assert!(p.delete.is_empty());
            prop_assert_eq!(p.keep.len(), backups.len());
        }

        #[test]
        fn bucket_rule_keeps_the_newest_of_the_n_most_recent_periods(
            backups in arb_backups(), n in 0u32..12, tz in 0..ZONES.len(),
        ) {
            // An independent formulation: distinct local days, newest first, first n.
            let zone = ZONES[tz];
            let rules = Retention { keep_daily: Some(n), ..Retention::default() };
            let p = plan(&backups, &rules, zone, base(), None);
            let mut days: Vec<chrono::NaiveDate> = backups.iter()
                .map(|b| b.created_at.with_timezone(&zone).date_naive()).collect();
            days.sort();
            days.dedup();
            days.reverse();
            let mut expected: BTreeSet<String> = days.iter().take(n as usize).map(|d| {
                newest(&backups.iter()
                    .filter(|b| b.created_at.with_timezone(&zone).date_naive() == *d)
                    .cloned().collect::<Vec<_>>()).unwrap().id.clone()
            }).collect();
            if let Some(b) = newest(&backups) {
                expected.insert(b.id.clone());
            }
            prop_assert_eq!(id_set(&p), expected);
        }
    }
}
