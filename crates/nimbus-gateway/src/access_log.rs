//! One access-log line per gateway request.
//!
//! The format is `key=value` pairs in a fixed order, values quoted only when
//! they contain spaces, quotes, `=` or control characters. It stays readable
//! in a terminal, greppable (`grep 'status=5'`), and parseable by log
//! shippers without a schema; the order and names are part of the contract,
//! so new fields go at the end.

use std::fmt;

/// The facts of one request, borrowed from the listener's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessLog<'a> {
    /// Gateway request id.
    pub request_id: &'a str,
    /// Request method.
    pub method: &'a str,
    /// Request path (without query, which may hold secrets like `?code=`).
    pub path: &'a str,
    /// Matched route key, `-` when none matched.
    pub route_key: Option<&'a str>,
    /// Status sent to the client.
    pub status: u16,
    /// Time from receiving the request to sending the response head, µs.
    pub latency_us: u64,
    /// Function invoked, `-` when none was (404, 401, 429, preflight…).
    pub function: Option<&'a str>,
    /// Client address.
    pub source_ip: &'a str,
}

/// Writes `v` bare when safe, else double-quoted with `\"`, `\\` and
/// control characters escaped.
fn write_value(f: &mut fmt::Formatter<'_>, v: &str) -> fmt::Result {
    let needs_quotes = v.is_empty()
        || v.chars()
            .any(|c| c == ' ' || c == '"' || c == '=' || c == '\\' || c.is_control());
    if !needs_quotes {
        return f.write_str(v);
    }
    f.write_str("\"")?;
    for c in v.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            c if c.is_control() => write!(f, "\\u{{{:04x}}}", u32::from(c))?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("\"")
}

impl fmt::Display for AccessLog<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("request_id=")?;
        write_value(f, self.request_id)?;
        f.write_str(" method=")?;
        write_value(f, self.method)?;
        f.write_str(" path=")?;
        write_value(f, self.path)?;
        f.write_str(" route=")?;
        write_value(f, self.route_key.unwrap_or("-"))?;
        write!(f, " status={} latency_us={}", self.status, self.latency_us)?;
        f.write_str(" function=")?;
        write_value(f, self.function.unwrap_or("-"))?;
        f.write_str(" source_ip=")?;
        write_value(f, self.source_ip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line() -> AccessLog<'static> {
        AccessLog {
            request_id: "c0ffee",
            method: "GET",
            path: "/users/42",
            route_key: Some("GET /users/{id}"),
            status: 200,
            latency_us: 1234,
            function: Some("users:live"),
            source_ip: "198.51.100.7",
        }
    }

    #[test]
    fn stable_format() {
        assert_eq!(
            line().to_string(),
            r#"request_id=c0ffee method=GET path=/users/42 route="GET /users/{id}" status=200 latency_us=1234 function=users:live source_ip=198.51.100.7"#
        );
    }

    #[test]
    fn missing_route_and_function_are_dashes() {
        let l = AccessLog {
            route_key: None,
            function: None,
            status: 404,
            ..line()
        };
        assert_eq!(
            l.to_string(),
            "request_id=c0ffee method=GET path=/users/42 route=- status=404 latency_us=1234 function=- source_ip=198.51.100.7"
        );
    }

    #[test]
    fn hostile_values_are_escaped() {
        let l = AccessLog {
            path: "/a b\"c\nstatus=500\\",
            ..line()
        };
        let s = l.to_string();
        assert!(s.contains(r#"path="/a b\"c\nstatus=500\\""#), "{s}");
        assert_eq!(s.lines().count(), 1, "no log injection");
        let l = AccessLog {
            path: "",
            request_id: "\u{1b}[31m",
            ..line()
        };
        let s = l.to_string();
        assert!(s.contains(r#"path="""#), "{s}");
        assert!(s.starts_with(r#"request_id="\u{001b}[31m""#), "{s}");
    }
}
