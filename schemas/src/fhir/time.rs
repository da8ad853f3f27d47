//! Timestamps as the reference writes them.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

/// How the offset of a UTC timestamp is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum UtcSuffix {
    /// `Z`: Django REST framework's encoder (every rendered resource and Bundle).
    Z,
    /// `+00:00`: Python's `isoformat()`, used where the reference builds the string itself.
    Offset,
}

/// `YYYY-MM-DDTHH:MM:SS[.ffffff]` + suffix, microseconds only when non-zero (Python's `isoformat`).
pub(super) fn format_utc(micros: i64, suffix: UtcSuffix) -> String {
    // chrono covers ±262,000 years; i64 microseconds reach a little further. Clamp rather than fail: such values
    // never come from a parsed timestamp.
    let time = DateTime::<Utc>::from_timestamp_micros(micros).unwrap_or(if micros < 0 {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    });
    let mut out = String::with_capacity(32);
    let _ = write!(out, "{}", time.format("%Y-%m-%dT%H:%M:%S"));
    let fraction = time.timestamp_subsec_micros();
    if fraction != 0 {
        let _ = write!(out, ".{fraction:06}");
    }
    out.push_str(match suffix {
        UtcSuffix::Z => "Z",
        UtcSuffix::Offset => "+00:00",
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_python() {
        assert_eq!(format_utc(0, UtcSuffix::Z), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(1_770_849_549_246_655, UtcSuffix::Z), "2026-02-11T22:39:09.246655Z");
        assert_eq!(format_utc(1_770_849_549_000_100, UtcSuffix::Offset), "2026-02-11T22:39:09.000100+00:00");
        assert_eq!(format_utc(-1, UtcSuffix::Z), "1969-12-31T23:59:59.999999Z");
        assert!(format_utc(i64::MAX, UtcSuffix::Z).ends_with('Z'));
        assert!(format_utc(i64::MIN, UtcSuffix::Z).ends_with('Z'));
    }
}
