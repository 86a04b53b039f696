//! Human durations for `--older-than`, `--max-age` and policies: `90d`, `12h`, `2w`.

use std::time::Duration;

/// Parses `90d`, `12h`, `2w`, `30m`, `1h30m`, `0s`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    humantime::parse_duration(t).map_err(|e| {
        // A bare number is almost always days here (`--older-than 90`): say so.
        if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
            format!(
                "`{t}` has no unit: did you mean {t}d? (use a number and a unit, e.g. 90d, 12h, 2w)"
            )
        } else {
            format!("`{s}` is not a duration ({e}); use a number and a unit, e.g. 90d, 12h, 2w")
        }
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
        let e = parse_duration("90").unwrap_err();
        assert!(
            e.contains("did you mean 90d?") && !e.contains("90sec"),
            "{e}"
        );
    }

    #[test]
    fn rejects_garbage_with_a_hint() {
        let e = parse_duration("ninety").unwrap_err();
        assert!(e.contains("e.g. 90d"), "{e}");
        assert!(parse_duration("90").is_err());
    }
}
