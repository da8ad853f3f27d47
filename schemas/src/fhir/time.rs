//! Timestamps as the reference writes them.

use std::fmt::Write as _;

use chrono::{DateTime, Datelike, Timelike, Utc};

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
    let year = time.year();
    if (0..=9999).contains(&year) {
        // a search page formats thousands of these: plain digits rather than chrono's format-string interpreter
        let two = |out: &mut String, value: u32| {
            out.push(char::from(b'0' + (value / 10 % 10) as u8));
            out.push(char::from(b'0' + (value % 10) as u8));
        };
        let year = year as u32;
        two(&mut out, year / 100);
        two(&mut out, year % 100);
        out.push('-');
        two(&mut out, time.month());
        out.push('-');
        two(&mut out, time.day());
        out.push('T');
        two(&mut out, time.hour());
        out.push(':');
        two(&mut out, time.minute());
        out.push(':');
        two(&mut out, time.second());
    } else {
        let _ = write!(out, "{}", time.format("%Y-%m-%dT%H:%M:%S"));
    }
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
        // the fast path agrees with chrono's formatting everywhere it applies
        for micros in
            [0, 1, 951_782_400_000_000, 253_402_300_799_999_999, -62_167_219_200_000_000, 4_102_444_799_000_000]
        {
            let time = DateTime::<Utc>::from_timestamp_micros(micros).unwrap();
            let expected = time.format("%Y-%m-%dT%H:%M:%S").to_string();
            assert!(format_utc(micros, UtcSuffix::Z).starts_with(&expected), "{micros}");
        }
        assert!(format_utc(i64::MIN, UtcSuffix::Z).ends_with('Z'));
    }
}
