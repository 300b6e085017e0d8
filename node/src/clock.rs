//! Wall-clock time in the one textual form the node uses everywhere: RFC 3339, UTC, seconds;
//! and the short form of a length of time operators type (`90d`, `12h`).

use std::time::SystemTime;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Now, as RFC 3339 UTC.
pub fn now_rfc3339() -> String {
    format_system_time(SystemTime::now())
}

/// A system time as RFC 3339 UTC, truncated to whole seconds.
pub fn format_system_time(t: SystemTime) -> String {
    let dt = OffsetDateTime::from(t);
    let dt = dt.replace_nanosecond(0).unwrap_or(dt);
    dt.format(&Rfc3339)
        .unwrap_or_else(|_| String::from("1970-01-01T00:00:00Z"))
}

/// Parses RFC 3339.
pub fn parse_rfc3339(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

/// `90d`, `12h`, `30m`, `3600s` (or a bare number of seconds) as seconds.
pub fn parse_duration(text: &str) -> Option<u64> {
    let t = text.trim();
    let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => t.split_at(i),
        None => (t, "s"),
    };
    let n: u64 = digits.parse().ok()?;
    let mult = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" => 1,
        _ => return None,
    };
    n.checked_mul(mult).filter(|&s| s > 0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_parse() {
        use super::parse_duration as p;
        assert_eq!(p("90d"), Some(90 * 86_400));
        assert_eq!(p("12h"), Some(43_200));
        assert_eq!(p("30m"), Some(1_800));
        assert_eq!(p("15"), Some(15));
        assert_eq!(p("0d"), None);
        assert_eq!(p("3w"), None);
        assert_eq!(p("d"), None);
    }
}
