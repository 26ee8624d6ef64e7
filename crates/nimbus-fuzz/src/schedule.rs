//! `Schedule::parse` and `next_after`: never panics, and every next fire is
//! strictly after the time it was asked for (the runner sleeps until it, so a
//! fire at or before "now" would refire in a loop), on a whole local minute for
//! cron.
//!
//! Input: 8 bytes of "after", 8 bytes of anchor (both folded into 1970–2200),
//! then `expression[\ntime zone]`.

use chrono::{DateTime, Timelike, Utc};
use nimbus_core::schedule::{Schedule, time_zone};

/// Seconds from 1970 to 2200: the times a running server can ask about.
const SPAN_SECS: i64 = 7_258_118_400;

fn time(bytes: &[u8]) -> DateTime<Utc> {
    let raw = i64::from_le_bytes(bytes.try_into().expect("8 bytes"));
    DateTime::from_timestamp(raw.rem_euclid(SPAN_SECS), 0).expect("in range")
}

pub fn run(data: &[u8]) {
    if data.len() < 16 {
        return;
    }
    let (after, anchor) = (time(&data[..8]), time(&data[8..16]));
    let Ok(text) = std::str::from_utf8(&data[16..]) else {
        return;
    };
    let (expr, zone) = text.split_once('\n').unwrap_or((text, ""));
    let Ok(schedule) = Schedule::parse(expr) else {
        return;
    };
    let Ok(tz) = time_zone(Some(zone)) else {
        return;
    };
    let mut t = after;
    for _ in 0..4 {
        let Some(next) = schedule.next_after(t, anchor, tz) else {
            break;
        };
        assert!(
            next > t,
            "{expr:?} in {tz}: next fire {next} is not after {t}"
        );
        if matches!(schedule, Schedule::Cron(_)) {
            let local = next.with_timezone(&tz);
            assert_eq!(
                local.second(),
                0,
                "{expr:?}: cron fire {local} off the minute"
            );
        }
        t = next;
    }
}
