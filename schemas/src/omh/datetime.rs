//! RFC 3339 `date-time` (section 5.6) as JSON Schema's `format: date-time` defines it, parsed straight to UTC
//! microseconds: the one check jhe asserts although the schemas leave `format` as an annotation, because
//! partitions and search dates come from it.
//!
//! Accepted: `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`, `T`/`Z` in either case, real calendar dates, offsets up
//! to 23:59, and a leap second only where it is 23:59:60 in UTC. Naive times (no offset) are refused.

const MICROS_PER_SECOND: i64 = 1_000_000;
const SECONDS_PER_DAY: i64 = 86_400;

fn two_digits(bytes: &[u8]) -> Option<u32> {
    match bytes {
        [a @ b'0'..=b'9', b @ b'0'..=b'9'] => Some(u32::from(a - b'0') * 10 + u32::from(b - b'0')),
        _ => None,
    }
}

fn is_leap_year(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The inverse of [`days_from_civil`].
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `YYYY-MM-DD` (a real calendar date) as days since the epoch.
pub(crate) fn parse_full_date(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let year = i64::from(two_digits(&bytes[0..2])? * 100 + two_digits(&bytes[2..4])?);
    let month = two_digits(&bytes[5..7])?;
    let day = two_digits(&bytes[8..10])?;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    Some(days_from_civil(year, month, day))
}

/// An RFC 3339 date-time with an offset as microseconds since the epoch in UTC (fractions beyond microseconds
/// are truncated; a leap second counts as the first instant of the next minute).
pub(crate) fn parse_date_time(text: &str) -> Option<i64> {
    parse_date_time_with_offset(text).map(|(utc_micros, _)| utc_micros)
}

/// [`parse_date_time`] and the timestamp's UTC offset in minutes (calendar durations move its wall clock).
pub(crate) fn parse_date_time_with_offset(text: &str) -> Option<(i64, i64)> {
    // `YYYY-MM-DDTHH:MM:SS` at fixed places, then an optional fraction and the offset
    let (head, mut rest) = text.as_bytes().split_first_chunk::<19>()?;
    let digit = |i: usize| u32::from(head[i].wrapping_sub(b'0'));
    let not_digits =
        [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18].iter().fold(false, |bad, &i| bad | (digit(i) > 9));
    if not_digits
        || head[4] != b'-'
        || head[7] != b'-'
        || !matches!(head[10], b'T' | b't')
        || head[13] != b':'
        || head[16] != b':'
    {
        return None;
    }
    let two = |i: usize| digit(i) * 10 + digit(i + 1);
    let (year, month, day) = (i64::from(two(0) * 100 + two(2)), two(5), two(8));
    let (hour, minute, second) = (two(11), two(14), two(17));
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut micros = 0i64;
    if let [b'.', fraction @ ..] = rest {
        let digits = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        for &digit in &fraction[..digits.min(6)] {
            micros = micros * 10 + i64::from(digit - b'0');
        }
        for _ in digits..6 {
            micros *= 10;
        }
        rest = &fraction[digits..];
    }
    let offset_minutes: i64 = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (offset_hour, offset_minute) = (two_digits(&[*h1, *h2])?, two_digits(&[*m1, *m2])?);
            if offset_hour > 23 || offset_minute > 59 {
                return None;
            }
            let minutes = i64::from(offset_hour * 60 + offset_minute);
            if *sign == b'+' { minutes } else { -minutes }
        }
        _ => return None,
    };
    let local_minutes = i64::from(hour * 60 + minute);
    if second == 60 && (local_minutes - offset_minutes).rem_euclid(24 * 60) != 23 * 60 + 59 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let seconds = days * SECONDS_PER_DAY + (local_minutes - offset_minutes) * 60 + i64::from(second);
    Some((seconds * MICROS_PER_SECOND + micros, offset_minutes))
}

/// A duration of `value` `unit` (the OMH duration units) added to (`sign` 1) or taken from (`sign` -1) the instant
/// `micros`, as the reference's `effective_time_frame.py` does: fixed units exactly (ties to even), months and
/// years as whole calendar units on the wall clock of the timestamp's own offset (`offset_minutes`), the day
/// clamped to the month's end. `None` for an unknown unit or a result outside the years 1–9999.
pub(crate) fn add_duration(micros: i64, offset_minutes: i64, value: f64, unit: &str, sign: i64) -> Option<i64> {
    let fixed = |per_unit: f64| {
        let delta = (value * per_unit).round_ties_even();
        // beyond ±1e17 µs (about 3,000 years) the result leaves the supported years anyway
        (delta.is_finite() && delta.abs() <= 1e17).then(|| micros + sign * delta as i64)
    };
    let shifted = match unit {
        "ps" => fixed(1e-6),
        "ns" => fixed(1e-3),
        "us" => fixed(1.0),
        "ms" => fixed(1e3),
        "sec" => fixed(1e6),
        "min" => fixed(60e6),
        "h" => fixed(3_600e6),
        "d" => fixed(86_400e6),
        "wk" => fixed(604_800e6),
        "Mo" => add_months(micros, offset_minutes, value, 1, sign),
        "yr" => add_months(micros, offset_minutes, value, 12, sign),
        _ => None,
    }?;
    let local_days =
        (shifted + offset_minutes * 60 * MICROS_PER_SECOND).div_euclid(SECONDS_PER_DAY * MICROS_PER_SECOND);
    (1..=9999).contains(&civil_from_days(local_days).0).then_some(shifted)
}

/// Whole `value` units of `months_per_unit` months (the fraction is dropped, as in the reference).
fn add_months(micros: i64, offset_minutes: i64, value: f64, months_per_unit: i64, sign: i64) -> Option<i64> {
    let whole = value.trunc();
    if !whole.is_finite() || whole.abs() > 1e6 {
        return None;
    }
    let months = whole as i64 * months_per_unit * sign;
    let day_micros = SECONDS_PER_DAY * MICROS_PER_SECOND;
    let offset_micros = offset_minutes * 60 * MICROS_PER_SECOND;
    let local = micros + offset_micros;
    let (days, within_day) = (local.div_euclid(day_micros), local.rem_euclid(day_micros));
    let (year, month, day) = civil_from_days(days);
    let month_index = year * 12 + i64::from(month) - 1 + months;
    let (new_year, new_month) = (month_index.div_euclid(12), (month_index.rem_euclid(12) + 1) as u32);
    let new_day = day.min(days_in_month(new_year, new_month));
    Some(days_from_civil(new_year, new_month, new_day) * day_micros + within_day - offset_micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_to_utc_micros() {
        assert_eq!(parse_date_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_date_time("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_date_time("2025-01-01T00:04:00-08:00"), Some(1_735_718_640_000_000));
        assert_eq!(parse_date_time("2013-02-05T07:25:00.123Z"), Some(1_360_049_100_123_000));
        assert_eq!(parse_date_time("2013-02-05t07:25:00.1234567z"), Some(1_360_049_100_123_456));
        assert_eq!(parse_date_time("1998-12-31T23:59:60Z"), Some(915_148_800_000_000));
        assert_eq!(parse_date_time("1998-12-31T15:59:60.5-08:00"), Some(915_148_800_500_000));
    }

    #[test]
    fn refuses_what_rfc_3339_refuses() {
        for text in [
            "2013-02-05",
            "2013-02-05T07:25:00",
            "07:25:00",
            "",
            "foo",
            "2013-02-30T00:00:00Z",
            "2013-13-01T00:00:00Z",
            "2013-02-05 07:25:00Z",
            "2013-02-05T24:00:00Z",
            "2013-02-05T07:25:00.Z",
            "2013-02-05T07:25:00+0100",
            "2013-02-05T07:25:00+24:00",
            "2013-02-05T07:25:60Z",
            "2013-2-05T07:25:00Z",
            "2013-02-05T07:25:00ZZ",
        ] {
            assert_eq!(parse_date_time(text), None, "{text}");
        }
    }

    #[test]
    fn civil_round_trip() {
        for days in [-719_468, -1, 0, 59, 365 * 30 + 7, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(parse_full_date("2000-02-29"), Some(11_016));
        assert_eq!(parse_full_date("1900-02-29"), None);
    }

    #[test]
    fn durations_fixed_and_calendar() {
        let start = parse_date_time("2024-01-31T10:00:00Z").unwrap();
        assert_eq!(add_duration(start, 0, 90.0, "min", 1), parse_date_time("2024-01-31T11:30:00Z"));
        assert_eq!(add_duration(start, 0, 1.0, "Mo", 1), parse_date_time("2024-02-29T10:00:00Z"));
        assert_eq!(add_duration(start, 0, 1.0, "yr", -1), parse_date_time("2023-01-31T10:00:00Z"));
        assert_eq!(add_duration(start, 0, 1.0, "fortnight", 1), None);
        // calendar units move the wall clock in the original offset, and drop fractions
        let (late, offset) = parse_date_time_with_offset("2026-01-31T23:00:00-05:00").unwrap();
        assert_eq!(add_duration(late, offset, 1.9, "Mo", 1), parse_date_time("2026-03-01T04:00:00Z"));
        let (leap, offset) = parse_date_time_with_offset("2024-02-29T12:00:00Z").unwrap();
        assert_eq!(add_duration(leap, offset, 1.0, "yr", -1), parse_date_time("2023-02-28T12:00:00Z"));
        assert_eq!(add_duration(start, 0, 1500.0, "us", 1), parse_date_time("2024-01-31T10:00:00.0015Z"));
        // results outside the years 1–9999 are refused
        let end_of_time = parse_date_time("9999-12-31T09:00:00Z").unwrap();
        assert_eq!(add_duration(end_of_time, 0, 1.0, "d", 1), None);
        assert_eq!(add_duration(start, 0, 1e300, "yr", 1), None);
        assert_eq!(add_duration(start, 0, 1e300, "sec", -1), None);
    }
}
