//! Instants as the language sees them.
//!
//! ASL only knows RFC 3339 strings with an upper-case `T` and `Z`, and the
//! interpreter never reads the system clock: every "now" comes from the caller
//! so that a resumed execution computes exactly what the original one would
//! have. This newtype pins the wire format (millisecond precision, `Z`) used in
//! history events, `$$` and serialized executions.

use std::fmt;

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A UTC instant with millisecond precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    /// Builds an instant from milliseconds since the Unix epoch.
    pub fn from_unix_millis(millis: i64) -> Timestamp {
        Timestamp(
            Utc.timestamp_millis_opt(millis)
                .single()
                .unwrap_or(DateTime::<Utc>::MIN_UTC),
        )
    }

    /// Milliseconds since the Unix epoch.
    pub fn unix_millis(self) -> i64 {
        self.0.timestamp_millis()
    }

    /// Parses a strict ASL timestamp: RFC 3339 with upper-case `T` and `Z`.
    /// chrono alone also accepts `t`, `z` and a space separator, which ASL
    /// does not.
    pub fn parse_rfc3339(text: &str) -> Option<Timestamp> {
        if text.len() < 20
            || text.as_bytes()[10] != b'T'
            || !text
                .chars()
                .all(|c| c.is_ascii_digit() || matches!(c, '-' | ':' | '.' | 'T' | 'Z' | '+'))
        {
            return None;
        }
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| Timestamp(t.with_timezone(&Utc)))
    }

    /// The instant `millis` milliseconds later (saturating).
    pub fn plus_millis(self, millis: u64) -> Timestamp {
        let millis = i64::try_from(millis).unwrap_or(i64::MAX);
        Timestamp::from_unix_millis(self.unix_millis().saturating_add(millis))
    }

    /// `2016-03-14T01:59:00.000Z`.
    pub fn to_rfc3339(self) -> String {
        self.0.to_rfc3339_opts(SecondsFormat::Millis, true)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Timestamp, D::Error> {
        let text = String::deserialize(deserializer)?;
        Timestamp::parse_rfc3339(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("invalid RFC 3339 timestamp '{text}'")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_strict_rfc3339_only() {
        assert!(Timestamp::parse_rfc3339("2016-03-14T01:59:00Z").is_some());
        assert!(Timestamp::parse_rfc3339("2016-03-14T01:59:00.123+02:00").is_some());
        assert!(Timestamp::parse_rfc3339("2016-03-14t01:59:00Z").is_none());
        assert!(Timestamp::parse_rfc3339("2016-03-14T01:59:00z").is_none());
        assert!(Timestamp::parse_rfc3339("2016-03-14 01:59:00Z").is_none());
        assert!(Timestamp::parse_rfc3339("2016-03-14").is_none());
        assert!(Timestamp::parse_rfc3339("yesterday").is_none());
    }

    #[test]
    fn offsets_compare_as_instants_and_round_trip() {
        let a = Timestamp::parse_rfc3339("2016-03-14T03:59:00+02:00").unwrap();
        let b = Timestamp::parse_rfc3339("2016-03-14T01:59:00Z").unwrap();
        assert_eq!(a, b);
        assert_eq!(b.to_rfc3339(), "2016-03-14T01:59:00.000Z");
        let json = serde_json::to_string(&b.plus_millis(1500)).unwrap();
        assert_eq!(json, "\"2016-03-14T01:59:01.500Z\"");
        assert_eq!(
            serde_json::from_str::<Timestamp>(&json).unwrap(),
            b.plus_millis(1500)
        );
    }
}
