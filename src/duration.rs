//! Human durations for `--older-than`, `--max-age` and policies: `90d`, `12h`, `2w`.

use std::time::Duration;

/// A duration that does not parse (the input is shown escaped).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// A bare number: almost always meant as days here (`--older-than 90`).
    #[error("`{0}` has no unit: did you mean {0}d? (use a number and a unit, e.g. 90d, 12h, 2w)")]
    NoUnit(String),
    /// Not a duration at all.
    #[error("`{input}` is not a duration ({reason}); use a number and a unit, e.g. 90d, 12h, 2w")]
    Invalid {
        /// What was given.
        input: String,
        /// What the parser said.
        reason: String,
    },
    /// Longer than a timestamp can be moved by.
    #[error("`{0}` is too long")]
    TooLong(String),
}

/// Parses `90d`, `12h`, `2w`, `30m`, `1h30m`, `0s`.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let t = s.trim();
    humantime::parse_duration(t).map_err(|e| {
        if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
            DurationError::NoUnit(t.to_owned())
        } else {
            DurationError::Invalid {
                input: crate::text::escape_cut(s, 100),
                reason: e.to_string(),
            }
        }
    })
}

/// Parses a duration into a `chrono::Duration` (for comparisons with timestamps).
pub fn parse_chrono(s: &str) -> Result<chrono::Duration, DurationError> {
    let d = parse_duration(s)?;
    chrono::Duration::from_std(d)
        .map_err(|_| DurationError::TooLong(crate::text::escape_cut(s, 100)))
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
        assert_eq!(e, DurationError::NoUnit("90".into()));
        let e = e.to_string();
        assert!(
            e.contains("did you mean 90d?") && !e.contains("90sec"),
            "{e}"
        );
    }

    #[test]
    fn rejects_garbage_with_a_hint() {
        let e = parse_duration("ninety").unwrap_err().to_string();
        assert!(e.contains("e.g. 90d"), "{e}");
        assert!(parse_duration("90").is_err());
    }
}
