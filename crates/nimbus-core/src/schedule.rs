//! Schedule expressions, in EventBridge's grammar, so rules written for AWS
//! move over unchanged: `rate(5 minutes)` and the six-field Quartz-style
//! `cron(Minutes Hours Day-of-month Month Day-of-week Year)` with `?`, `L`, `W`
//! and `#`, evaluated in UTC or in an IANA time zone.
//!
//! The next fire time is computed directly (day by day, then hour and minute
//! within a matching day) rather than by stepping minute by minute, so a rule
//! that fires once a year costs the same as one that fires every minute.
//!
//! Every expression is bounded at parse time (its length, the rate period, the
//! cron years: see [`crate::limits`]) and every time computation is checked, so
//! no stored expression can overflow into a period in the past: a schedule's
//! runner relies on `next_after` being strictly later than its argument, or
//! `None`, to never fire the same rule in a loop.

use std::collections::BTreeSet;

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Timelike, Utc, Weekday};
use chrono_tz::Tz;

use crate::error::ValidationError;
use crate::limits::{
    MAX_CRON_YEAR, MAX_RATE_PERIOD_S, MAX_SCHEDULE_EXPRESSION_CHARS, MAX_TIME_ZONE_CHARS,
    MIN_CRON_YEAR, MIN_RATE_PERIOD_S,
};

/// A parsed schedule expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Every `period`, counted from the schedule's creation.
    Rate {
        period_s: i64,
    },
    Cron(Box<Cron>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: BTreeSet<u32>,
    hours: BTreeSet<u32>,
    days: DayRule,
    months: BTreeSet<u32>,
    /// `None`: every year (`*`).
    years: Option<BTreeSet<i32>>,
}

/// Which days of a month match: exactly one of day-of-month and day-of-week
/// is given (the other is `?`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum DayRule {
    /// Days of the month (1..=31), every day for `*`.
    MonthDays(BTreeSet<u32>),
    /// `L`: the last day of the month.
    LastDayOfMonth,
    /// `15W`: the weekday nearest to the 15th, within the month.
    NearestWeekday(u32),
    /// Days of the week, 1 = Sunday … 7 = Saturday.
    WeekDays(BTreeSet<u32>),
    /// `6L`: the last Friday of the month.
    LastWeekday(u32),
    /// `3#2`: the second Tuesday of the month.
    NthWeekday { day: u32, n: u32 },
}

fn err(expr: &str, why: impl std::fmt::Display) -> ValidationError {
    ValidationError::param(format!("schedule expression {expr:?}: {why}"))
}

impl Schedule {
    pub fn parse(expr: &str) -> Result<Self, ValidationError> {
        if expr.chars().count() > MAX_SCHEDULE_EXPRESSION_CHARS {
            return Err(ValidationError::param(format!(
                "a schedule expression is at most {MAX_SCHEDULE_EXPRESSION_CHARS} characters, \
                 this one has {}",
                expr.chars().count()
            )));
        }
        let expr = expr.trim();
        if let Some(inner) = expr.strip_prefix("rate(").and_then(|r| r.strip_suffix(')')) {
            return parse_rate(expr, inner);
        }
        if let Some(inner) = expr.strip_prefix("cron(").and_then(|r| r.strip_suffix(')')) {
            return Ok(Schedule::Cron(Box::new(parse_cron(expr, inner)?)));
        }
        Err(err(
            expr,
            "must be rate(<value> <unit>) or cron(<6 fields>)",
        ))
    }

    /// The first fire time strictly after `after`, or `None` when there is
    /// none (a year list that has run out, or a time past chrono's range).
    /// `anchor` is when a rate schedule started counting; `tz` is where a cron
    /// schedule's fields are read.
    pub fn next_after(
        &self,
        after: DateTime<Utc>,
        anchor: DateTime<Utc>,
        tz: Tz,
    ) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Rate { period_s } => {
                // A period outside the bounds can only come from a hand-built
                // value; parse never makes one.
                if !(MIN_RATE_PERIOD_S..=MAX_RATE_PERIOD_S).contains(period_s) {
                    return None;
                }
                let elapsed = after.signed_duration_since(anchor).num_seconds();
                let k = if elapsed < 0 {
                    1
                } else {
                    elapsed / period_s + 1
                };
                let at =
                    anchor.checked_add_signed(Duration::try_seconds(k.checked_mul(*period_s)?)?)?;
                // Sub-second parts of `after` can put it past the computed fire.
                if at > after {
                    Some(at)
                } else {
                    at.checked_add_signed(Duration::try_seconds(*period_s)?)
                }
            }
            Schedule::Cron(c) => c.next_after(after, tz).filter(|t| *t > after),
        }
    }
}

fn parse_rate(expr: &str, inner: &str) -> Result<Schedule, ValidationError> {
    let mut parts = inner.split_whitespace();
    let (Some(value), Some(unit), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(err(
            expr,
            "rate needs a value and a unit, e.g. rate(5 minutes)",
        ));
    };
    let value: i64 = value
        .parse()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| err(expr, "the rate value must be a positive integer"))?;

    let (seconds, singular) = match unit {
        "minute" | "minutes" => (60, "minute"),
        "hour" | "hours" => (3600, "hour"),
        "day" | "days" => (86_400, "day"),
        _ => return Err(err(expr, "the unit must be minute(s), hour(s) or day(s)")),
    };
    // AWS: singular exactly when the value is 1.
    if (value == 1) != (unit == singular) {
        return Err(err(
            expr,
            format!("use \"{singular}\" for 1 and \"{singular}s\" otherwise"),
        ));
    }
    // Checked: a wrapped product once gave a period of -16 s, stored, whose
    // next fire was always in the past.
    let period_s = value
        .checked_mul(seconds)
        .filter(|p| (MIN_RATE_PERIOD_S..=MAX_RATE_PERIOD_S).contains(p))
        .ok_or_else(|| {
            err(
                expr,
                format!(
                    "the period must be at most {} days (rate({} {singular}s))",
                    MAX_RATE_PERIOD_S / 86_400,
                    MAX_RATE_PERIOD_S / seconds
                ),
            )
        })?;
    Ok(Schedule::Rate { period_s })
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

fn parse_cron(expr: &str, inner: &str) -> Result<Cron, ValidationError> {
    let f: Vec<&str> = inner.split_whitespace().collect();
    if f.len() != 6 {
        return Err(err(
            expr,
            format!(
                "cron needs 6 fields (minutes hours day-of-month month day-of-week year), got {}",
                f.len()
            ),
        ));
    }
    let minutes = set(expr, "minutes", f[0], 0, 59, &[])?;
    let hours = set(expr, "hours", f[1], 0, 23, &[])?;
    let months = set(expr, "month", f[3], 1, 12, &MONTHS)?;
    let years = if f[5] == "*" {
        None
    } else {
        Some(
            set(expr, "year", f[5], MIN_CRON_YEAR, MAX_CRON_YEAR, &[])?
                .into_iter()
                .map(|y| y as i32)
                .collect(),
        )
    };
    let days = match (f[2], f[4]) {
        ("?", "?") => return Err(err(expr, "day-of-month and day-of-week cannot both be ?")),
        ("?", dow) => day_of_week(expr, dow)?,
        (dom, "?") => day_of_month(expr, dom)?,
        _ => {
            return Err(err(
                expr,
                "exactly one of day-of-month and day-of-week must be ?",
            ));
        }
    };
    Ok(Cron {
        minutes,
        hours,
        days,
        months,
        years,
    })
}

fn day_of_month(expr: &str, field: &str) -> Result<DayRule, ValidationError> {
    if field == "L" {
        return Ok(DayRule::LastDayOfMonth);
    }
    if let Some(day) = field.strip_suffix('W') {
        let day: u32 = day
            .parse()
            .ok()
            .filter(|d| (1..=31).contains(d))
            .ok_or_else(|| err(expr, format!("day-of-month {field:?}: W needs a day 1-31")))?;
        return Ok(DayRule::NearestWeekday(day));
    }
    Ok(DayRule::MonthDays(set(
        expr,
        "day-of-month",
        field,
        1,
        31,
        &[],
    )?))
}

fn day_of_week(expr: &str, field: &str) -> Result<DayRule, ValidationError> {
    let value = |v: &str| -> Result<u32, ValidationError> {
        name_or_number(v, 1, 7, &WEEKDAYS)
            .ok_or_else(|| err(expr, format!("day-of-week {v:?} must be 1-7 or SUN-SAT")))
    };
    if field == "L" {
        return Ok(DayRule::LastWeekday(7));
    }
    if let Some((day, n)) = field.split_once('#') {
        if field.contains(',') {
            return Err(err(expr, "only one # expression is allowed in day-of-week"));
        }
        let n: u32 = n
            .parse()
            .ok()
            .filter(|n| (1..=5).contains(n))
            .ok_or_else(|| err(expr, format!("day-of-week {field:?}: the n of d#n is 1-5")))?;
        return Ok(DayRule::NthWeekday {
            day: value(day)?,
            n,
        });
    }
    if let Some(day) = field.strip_suffix('L')
        && !day.is_empty()
    {
        return Ok(DayRule::LastWeekday(value(day)?));
    }
    Ok(DayRule::WeekDays(set(
        expr,
        "day-of-week",
        field,
        1,
        7,
        &WEEKDAYS,
    )?))
}

fn name_or_number(v: &str, lo: u32, hi: u32, names: &[&str]) -> Option<u32> {
    if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(v)) {
        return Some(lo + i as u32);
    }
    v.parse().ok().filter(|n| (lo..=hi).contains(n))
}

/// A field of `,`-separated items, each `*`, `v`, `a-b`, with an optional `/step`.
fn set(
    expr: &str,
    name: &str,
    field: &str,
    lo: u32,
    hi: u32,
    names: &[&str],
) -> Result<BTreeSet<u32>, ValidationError> {
    let bad = |why: &str| {
        err(
            expr,
            format!("{name} field {field:?}: {why} (allowed {lo}-{hi})"),
        )
    };
    let mut out = BTreeSet::new();
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u32>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| bad("the step after / must be a positive number"))?,
            ),
            None => (item, 1),
        };
        let (start, end) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            let a = name_or_number(a, lo, hi, names).ok_or_else(|| bad("bad range start"))?;
            let b = name_or_number(b, lo, hi, names).ok_or_else(|| bad("bad range end"))?;
            if a > b {
                return Err(bad("a range must go upwards"));
            }
            (a, b)
        } else {
            let v =
                name_or_number(range, lo, hi, names).ok_or_else(|| bad("value out of range"))?;
            // `0/15`: from the value to the end in steps.
            (
                v,
                if step > 1 || item.contains('/') {
                    hi
                } else {
                    v
                },
            )
        };
        out.extend((start..=end).step_by(step as usize));
    }
    Ok(out)
}

fn days_in_month(year: i32, month: u32) -> u32 {
    let next = if month == 12 {
        NaiveDate::from_ymd_opt(year + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(year, month + 1, 1)
    };
    next.and_then(|d| d.pred_opt()).map_or(28, |d| d.day())
}

/// 1 = Sunday … 7 = Saturday, as in the cron grammar.
fn cron_weekday(d: NaiveDate) -> u32 {
    d.weekday().num_days_from_sunday() + 1
}

impl DayRule {
    fn matches(&self, d: NaiveDate) -> bool {
        let last = days_in_month(d.year(), d.month());
        match self {
            DayRule::MonthDays(days) => days.contains(&d.day()),
            DayRule::LastDayOfMonth => d.day() == last,
            DayRule::NearestWeekday(target) => {
                let target = (*target).min(last);
                let Some(t) = d.with_day(target) else {
                    return false;
                };
                let nearest = match t.weekday() {
                    // Saturday: the Friday before, unless that leaves the month.
                    Weekday::Sat if target == 1 => t + Duration::days(2),
                    Weekday::Sat => t - Duration::days(1),
                    Weekday::Sun if target == last => t - Duration::days(2),
                    Weekday::Sun => t + Duration::days(1),
                    _ => t,
                };
                d == nearest
            }
            DayRule::WeekDays(days) => days.contains(&cron_weekday(d)),
            DayRule::LastWeekday(day) => cron_weekday(d) == *day && d.day() + 7 > last,
            DayRule::NthWeekday { day, n } => {
                cron_weekday(d) == *day && (d.day() - 1) / 7 + 1 == *n
            }
        }
    }
}

/// How far ahead a next fire is looked for before the schedule counts as
/// never firing again (a year list that has run out, `30 FEB`).
const HORIZON_DAYS: i64 = 366 * 5;

impl Cron {
    fn next_after(&self, after: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        // EventBridge's years end with 2199, `*` too; stopping there also
        // keeps every local time far inside chrono's range.
        if after.year() > MAX_CRON_YEAR as i32 {
            return None;
        }
        let local = after.with_timezone(&tz);
        let mut day = local.date_naive();
        let mut scanned = 0;
        while scanned < HORIZON_DAYS {
            // A year not in the list: jump to the next listed one (a rule for
            // 2199 is found at once, not after scanning the years between).
            if let Some(years) = &self.years
                && !years.contains(&day.year())
            {
                let next = years.range(day.year() + 1..).next()?;
                day = NaiveDate::from_ymd_opt(*next, 1, 1)?;
            }
            if day.year() > MAX_CRON_YEAR as i32 {
                return None;
            }
            scanned += 1;
            if self.months.contains(&day.month())
                && self.years.as_ref().is_none_or(|y| y.contains(&day.year()))
                && self.days.matches(day)
            {
                for &h in &self.hours {
                    for &m in &self.minutes {
                        let Some(naive) = day.and_hms_opt(h, m, 0) else {
                            continue;
                        };
                        // A local time skipped by a DST change does not exist;
                        // an ambiguous one fires at its first occurrence.
                        let Some(at) = tz.from_local_datetime(&naive).earliest() else {
                            continue;
                        };
                        let at = at.with_timezone(&Utc);
                        if at > after {
                            return Some(at);
                        }
                    }
                }
            }
            day = day.succ_opt()?;
        }
        None
    }
}

/// Parses an IANA time zone name (`Europe/Paris`), UTC when absent.
pub fn time_zone(name: Option<&str>) -> Result<Tz, ValidationError> {
    match name {
        None | Some("") | Some("UTC") => Ok(Tz::UTC),
        Some(n) if n.chars().count() > MAX_TIME_ZONE_CHARS => Err(ValidationError::param(format!(
            "a time zone name is at most {MAX_TIME_ZONE_CHARS} characters, this one has {}",
            n.chars().count()
        ))),
        Some(n) => n.parse::<Tz>().map_err(|_| {
            ValidationError::param(format!(
                "time zone {n:?} is not an IANA time zone name (e.g. Europe/Paris)"
            ))
        }),
    }
}

/// Seconds precision is all schedules need; helps tests read.
pub fn at_minute(t: DateTime<Utc>) -> DateTime<Utc> {
    t.with_second(0)
        .and_then(|t| t.with_nanosecond(0))
        .unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn next(expr: &str, after: &str) -> String {
        Schedule::parse(expr)
            .unwrap()
            .next_after(utc(after), utc(after), Tz::UTC)
            .unwrap()
            .to_rfc3339()
    }

    #[test]
    fn rates_count_from_their_anchor_and_name_units_like_aws() {
        let s = Schedule::parse("rate(5 minutes)").unwrap();
        let anchor = utc("2025-01-01T00:00:30Z");
        assert_eq!(
            s.next_after(utc("2025-01-01T00:07:00Z"), anchor, Tz::UTC),
            Some(utc("2025-01-01T00:10:30Z"))
        );
        assert_eq!(
            s.next_after(anchor, anchor, Tz::UTC),
            Some(utc("2025-01-01T00:05:30Z")),
            "strictly after"
        );
        assert!(Schedule::parse("rate(1 hour)").is_ok());
        for bad in [
            "rate(1 hours)",
            "rate(2 minute)",
            "rate(0 minutes)",
            "rate(5 weeks)",
            "rate(5)",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_reference_examples() {
        assert_eq!(
            next("cron(15 10 * * ? *)", "2025-01-15T11:00:00Z"),
            "2025-01-16T10:15:00+00:00"
        );
        // Weekdays at 18:00: Friday 2025-01-17 → Monday the 20th.
        assert_eq!(
            next("cron(0 18 ? * MON-FRI *)", "2025-01-17T18:00:00Z"),
            "2025-01-20T18:00:00+00:00"
        );
        assert_eq!(
            next("cron(0 8 1 * ? *)", "2025-01-15T00:00:00Z"),
            "2025-02-01T08:00:00+00:00"
        );
        assert_eq!(
            next("cron(0/5 8-17 ? * MON-FRI *)", "2025-01-17T17:56:00Z"),
            "2025-01-20T08:00:00+00:00"
        );
        assert_eq!(
            next("cron(0/5 8-17 ? * MON-FRI *)", "2025-01-17T09:01:00Z"),
            "2025-01-17T09:05:00+00:00"
        );
        // First Monday: 2025-02-03.
        assert_eq!(
            next("cron(0 9 ? * 2#1 *)", "2025-01-07T00:00:00Z"),
            "2025-02-03T09:00:00+00:00"
        );
        assert_eq!(
            next("cron(0 0 L * ? *)", "2025-02-01T00:00:00Z"),
            "2025-02-28T00:00:00+00:00"
        );
        assert_eq!(
            next("cron(0 0 L * ? *)", "2024-02-01T00:00:00Z"),
            "2024-02-29T00:00:00+00:00"
        );
    }

    #[test]
    fn w_l_hash_and_years() {
        // 2025-03-15 is a Saturday: 15W is Friday the 14th.
        assert_eq!(
            next("cron(0 12 15W * ? *)", "2025-03-01T00:00:00Z"),
            "2025-03-14T12:00:00+00:00"
        );
        // 2025-06-01 is a Sunday: 1W is Monday the 2nd (never the previous month).
        assert_eq!(
            next("cron(0 12 1W * ? *)", "2025-05-31T00:00:00Z"),
            "2025-06-02T12:00:00+00:00"
        );
        // Last Friday (6L) of January 2025: the 31st.
        assert_eq!(
            next("cron(0 12 ? * 6L *)", "2025-01-01T00:00:00Z"),
            "2025-01-31T12:00:00+00:00"
        );
        // Second Tuesday of March 2025: the 11th.
        assert_eq!(
            next("cron(30 7 ? MAR 3#2 *)", "2025-01-01T00:00:00Z"),
            "2025-03-11T07:30:00+00:00"
        );
        // A year list that has run out never fires again.
        let s = Schedule::parse("cron(0 0 1 1 ? 2020)").unwrap();
        assert_eq!(
            s.next_after(
                utc("2021-01-01T00:00:00Z"),
                utc("2021-01-01T00:00:00Z"),
                Tz::UTC
            ),
            None
        );
        assert_eq!(
            next("cron(0 0 1 1 ? 2027-2030)", "2025-06-01T00:00:00Z"),
            "2027-01-01T00:00:00+00:00"
        );
    }

    #[test]
    fn time_zones_and_daylight_saving() {
        let s = Schedule::parse("cron(0 9 * * ? *)").unwrap();
        let paris = time_zone(Some("Europe/Paris")).unwrap();
        let t = utc("2025-01-15T00:00:00Z");
        assert_eq!(
            s.next_after(t, t, paris),
            Some(utc("2025-01-15T08:00:00Z")),
            "CET = UTC+1"
        );
        let t = utc("2025-07-15T00:00:00Z");
        assert_eq!(
            s.next_after(t, t, paris),
            Some(utc("2025-07-15T07:00:00Z")),
            "CEST = UTC+2"
        );
        // 02:30 does not exist on 2025-03-30 in Paris: that day is skipped.
        let s = Schedule::parse("cron(30 2 * * ? *)").unwrap();
        let t = utc("2025-03-29T02:00:00Z");
        assert_eq!(s.next_after(t, t, paris), Some(utc("2025-03-31T00:30:00Z")));
        assert!(time_zone(Some("Mars/Olympus")).is_err());
    }

    /// The review's pathological inputs: each is refused with a reason, or
    /// (for a day that never comes) never fires, and none panics.
    #[test]
    fn pathological_expressions_are_refused_or_never_fire() {
        let refused = [
            ("rate(0 minutes)", "positive integer"),
            ("rate(-1 minutes)", "positive integer"),
            ("rate(4611686018427387904 minutes)", "at most 3650 days"),
            ("rate(307445734561825860 minutes)", "at most 3650 days"),
            ("rate(307445734561825861 minutes)", "at most 3650 days"),
            ("rate(100000000 days)", "at most 3650 days"),
            ("rate(3651 days)", "rate(3650 days)"),
            ("rate(5256001 minutes)", "rate(5256000 minutes)"),
            ("rate(9223372036854775807 days)", "at most 3650 days"),
            ("rate(9223372036854775808 days)", "positive integer"),
            ("cron(0 0 1 1 ? 2200)", "year field"),
            ("cron(0 0 1 1 ? 1969)", "year field"),
        ];
        for (expr, why) in refused {
            let e = Schedule::parse(expr).unwrap_err();
            assert!(e.message.contains(why), "{expr}: {}", e.message);
        }
        let long = format!("rate({} minutes)", "1".repeat(300));
        assert!(
            Schedule::parse(&long)
                .unwrap_err()
                .message
                .contains("at most 256 characters")
        );
        let e = time_zone(Some(&"A".repeat(10 * 1024))).unwrap_err();
        assert!(e.message.contains("at most 50 characters"), "{}", e.message);
        assert!(e.message.len() < 200, "the name is not echoed back");

        // The bounds themselves are fine and fire a period later.
        let t = utc("2025-01-01T00:00:00Z");
        let s = Schedule::parse("rate(3650 days)").unwrap();
        assert_eq!(s.next_after(t, t, Tz::UTC), Some(t + Duration::days(3650)));
        assert_eq!(
            Schedule::parse("rate(1 minute)")
                .unwrap()
                .next_after(t, t, Tz::UTC),
            Some(t + Duration::minutes(1))
        );
        // 30 February never comes: no next fire, found quickly.
        let started = std::time::Instant::now();
        let s = Schedule::parse("cron(0 0 30 2 ? *)").unwrap();
        assert_eq!(s.next_after(t, t, Tz::UTC), None);
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        // The last allowed year fires, every minute, then never again.
        let s = Schedule::parse("cron(* * * * ? 2199)").unwrap();
        assert_eq!(
            s.next_after(t, t, Tz::UTC),
            Some(utc("2199-01-01T00:00:00Z"))
        );
        let end = utc("2199-12-31T23:59:00Z");
        assert_eq!(s.next_after(end, t, Tz::UTC), None);
        // Near the end of chrono's range: None, not a panic.
        let far = DateTime::<Utc>::MAX_UTC - Duration::days(1);
        assert_eq!(
            Schedule::parse("rate(3650 days)")
                .unwrap()
                .next_after(far, t, Tz::UTC),
            None
        );
        let every = Schedule::parse("cron(* * * * ? *)").unwrap();
        let paris = time_zone(Some("Europe/Paris")).unwrap();
        assert_eq!(every.next_after(far, t, Tz::UTC), None);
        assert_eq!(every.next_after(DateTime::<Utc>::MAX_UTC, t, paris), None);
        // Like EventBridge, nothing fires after 2199, `*` years included.
        assert_eq!(every.next_after(end, t, paris), None);
        // A hand-built period outside the bounds never fires.
        assert_eq!(
            Schedule::Rate { period_s: -16 }.next_after(t, t, Tz::UTC),
            None
        );
        assert_eq!(
            Schedule::Rate { period_s: 0 }.next_after(t, t, Tz::UTC),
            None
        );
    }

    use proptest::prelude::*;

    proptest! {
        /// The runner's invariant: the next fire is strictly later than its
        /// argument, or there is none; never a time in the past.
        #[test]
        fn next_after_is_strictly_increasing(
            expr in prop_oneof![
                (1i64..=6_000_000, 0usize..3).prop_map(|(v, u)| {
                    let unit = ["minute", "hour", "day"][u];
                    format!("rate({v} {unit}{})", if v == 1 { "" } else { "s" })
                }),
                proptest::sample::select(vec![
                    "cron(0 0 30 2 ? *)", "cron(* * * * ? 2199)", "cron(0/7 * L * ? *)",
                    "cron(30 2 * * ? *)", "cron(0 12 15W * ? *)", "cron(0 9 ? * 2#5 *)",
                    "cron(59 23 ? * 6L 1970-2199)", "cron(0 0 29 FEB ? *)",
                ]).prop_map(|s: &str| s.to_string()),
            ],
            after_s in -10_000_000_000i64..10_000_000_000,
            anchor_s in -10_000_000_000i64..10_000_000_000,
            nanos in 0u32..1_000_000_000,
            tz in proptest::sample::select(vec!["UTC", "Europe/Paris", "America/St_Johns", "Australia/Lord_Howe"]),
        ) {
            let schedule = match Schedule::parse(&expr) {
                Ok(s) => s,
                Err(e) => {
                    // Only a period past the bound is refused.
                    prop_assert!(e.message.contains("at most 3650 days"), "{}", e.message);
                    return Ok(());
                }
            };
            let tz = time_zone(Some(tz)).unwrap();
            let after = Utc.timestamp_opt(after_s, nanos).unwrap();
            let anchor = Utc.timestamp_opt(anchor_s, 0).unwrap();
            let mut t = after;
            for _ in 0..3 {
                match schedule.next_after(t, anchor, tz) {
                    Some(next) => {
                        prop_assert!(next > t, "{expr}: {next} after {t}");
                        t = next;
                    }
                    None => break,
                }
            }
        }
    }

    #[test]
    fn invalid_expressions_say_why() {
        let cases = [
            ("cron(0 0 * * * *)", "exactly one"),
            ("cron(0 0 ? * ? *)", "both be ?"),
            ("cron(0 0 * *)", "6 fields"),
            ("cron(60 0 * * ? *)", "minutes field"),
            ("cron(0 0 ? * 3#1,6#3 *)", "one #"),
            ("cron(0 0 ? * 9 *)", "day-of-week"),
            ("cron(0 0 ? FOO * *)", "month field"),
            ("hourly", "rate(<value> <unit>)"),
        ];
        for (expr, why) in cases {
            let e = Schedule::parse(expr).unwrap_err();
            assert!(e.message.contains(why), "{expr}: {}", e.message);
        }
    }
}

/// What happens to fires missed while the server was down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MissedFires {
    /// Skip them, as EventBridge does: the next fire is the next one due.
    #[default]
    Skip,
    /// Fire once for the most recent missed time, then go on.
    CatchUpOnce,
}

/// A stored schedule: a rule that invokes a function asynchronously or starts
/// a workflow.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ScheduleRecord {
    pub name: String,
    /// `rate(...)` or `cron(...)`.
    pub expression: String,
    /// IANA time zone the cron fields are read in (UTC when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// The function it invokes asynchronously, or the state machine (name or
    /// ARN) it starts an execution of; stored as the `function`, `qualifier`
    /// and `workflow` fields it always had.
    #[serde(flatten)]
    pub target: crate::Target,
    /// The event to send instead of the EventBridge "Scheduled Event" envelope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<serde_json::Value>,
    #[serde(default)]
    pub missed: MissedFires,
    #[serde(default = "enabled")]
    pub enabled: bool,
    #[serde(default)]
    pub description: String,
    /// When it was created (rates count from here), epoch milliseconds.
    pub created_ms: i64,
}

fn enabled() -> bool {
    true
}

impl ScheduleRecord {
    /// Checks the name, the expression and the time zone; returns the parsed pair.
    pub fn validate(&self) -> Result<(Schedule, Tz), ValidationError> {
        let ok_name = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !ok_name {
            return Err(ValidationError::param(format!(
                "schedule name {:?} must be 1-64 letters, digits, '-', '_' or '.'",
                self.name
            )));
        }
        if self.timezone.is_some()
            && matches!(Schedule::parse(&self.expression)?, Schedule::Rate { .. })
        {
            return Err(ValidationError::param(
                "a time zone only applies to cron expressions",
            ));
        }
        Ok((
            Schedule::parse(&self.expression)?,
            time_zone(self.timezone.as_deref())?,
        ))
    }

    /// Where its fires are recorded: a re-created schedule starts afresh.
    pub fn fire_source(&self) -> String {
        format!("schedule/{}/{}", self.name, self.created_ms)
    }
}

#[cfg(test)]
mod record_tests {
    use super::*;
    use crate::Target;

    #[test]
    fn records_stored_by_earlier_versions_load_and_round_trip() {
        let stored = r#"{"name":"nightly","expression":"cron(0 3 * * ? *)","timezone":"Europe/Paris","function":"report","qualifier":"live","missed":"catch-up-once","enabled":true,"description":"","created_ms":1700000000000}"#;
        let r: ScheduleRecord = serde_json::from_str(stored).unwrap();
        assert_eq!(r.target, Target::function("report", Some("live".into())));
        assert_eq!(r.missed, MissedFires::CatchUpOnce);
        assert_eq!(serde_json::to_string(&r).unwrap(), stored);
        let stored = r#"{"name":"w","expression":"rate(1 minute)","workflow":"orders","input":{"a":1},"missed":"skip","enabled":false,"description":"d","created_ms":5}"#;
        let r: ScheduleRecord = serde_json::from_str(stored).unwrap();
        assert_eq!(r.target, Target::workflow("orders"));
        assert_eq!(r.input, Some(serde_json::json!({"a": 1})));
        assert_eq!(serde_json::to_string(&r).unwrap(), stored);
    }
}
