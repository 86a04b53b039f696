//! Human durations for `--older-than`, `--max-age` and policies: `90d`, `12h`, `2w`.

use std::time::Duration;

/// Parses `90d`, `12h`, `2w`, `30m`, `1h30m`, `0s`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| {
        format!("`{s}` is not a duration ({e}); use a number and a unit, e.g. 90d, 12h, 2w")
    })
}

/// Parses a duration into a `chrono::Duration` (for comparisons with timestamps).
pub fn parse_chrono(s: &str) -> Result<chrono::Duration, String> {
    let d = parse_duration(s)?;
    chrono::Duration::from_std(d).map_err(|_| format!("`{s}` is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_days_hours_weeks() {
        assert_eq!(
            parse_duration("90d").unwrap(),
            Duration::from_secs(90 * 86400)
        );
        assert_eq!(
            parse_duration("12h").unwrap(),
            Duration::from_secs(12 * 3600)
        );
        assert_eq!(
            parse_duration("2w").unwrap(),
            Duration::from_secs(14 * 86400)
        );
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
    }

    #[test]
    fn rejects_garbage_with_a_hint() {
        let e = parse_duration("ninety").unwrap_err();
        assert!(e.contains("e.g. 90d"), "{e}");
        assert!(parse_duration("90").is_err());
    }
}
