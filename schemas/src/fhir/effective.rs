//! The effective time of an Open mHealth data point, derived from `body.effective_time_frame` exactly as the reference
//! does (`core/fhir/effective_time_frame.py`, jhe-compat §9.4):
//!
//! * `date_time` → an instant;
//! * `time_interval` with `start_date_time` + `end_date_time`, `start_date_time` + `duration`, `end_date_time` +
//!   `duration`, or `date` + `part_of_day` (night 00–06, morning 06–12, afternoon 12–18, evening 18–24, UTC) → an
//!   interval.
//!
//! Timestamps without an offset are UTC. Durations in `ps ns us ms sec min h d wk` are fixed lengths; `Mo` and `yr`
//! move the calendar in the timestamp's own offset, clamping the day to the month's end (Jan 31 + 1 Mo = Feb 28).
//! Anything unparsable yields `None` (the observation is then not time-searchable); the original strings, offsets
//! included, stay untouched in the stored OMH JSON. The result is UTC microseconds, which is what rendering
//! (`effectiveDateTime` / `effectivePeriod`, always `Z`) and the observation table use.

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime};
use serde_json::Value;

use crate::EffectiveTime;

/// Fixed-length duration units (from `duration-unit-value-1.0.json`) in seconds.
const FIXED_UNITS: &[(&str, f64)] = &[
    ("ps", 1e-12),
    ("ns", 1e-9),
    ("us", 1e-6),
    ("ms", 1e-3),
    ("sec", 1.0),
    ("min", 60.0),
    ("h", 3600.0),
    ("d", 86400.0),
    ("wk", 604800.0),
];
/// `part_of_day` windows as [start hour, end hour) of the (UTC) day.
const PART_OF_DAY: &[(&str, i64, i64)] =
    &[("morning", 6, 12), ("afternoon", 12, 18), ("evening", 18, 24), ("night", 0, 6)];

/// The effective time of a whole OMH data point (`{"header":…, "body":{"effective_time_frame":…}}`).
pub fn effective_time_of_data_point(data_point: &Value) -> Option<EffectiveTime> {
    data_point.get("body")?.get("effective_time_frame").and_then(effective_time)
}

/// The effective time of an OMH `effective_time_frame` value.
pub fn effective_time(frame: &Value) -> Option<EffectiveTime> {
    let frame = frame.as_object()?;
    if let Some(date_time) = frame.get("date_time") {
        let instant = LocalTime::parse(date_time.as_str()?)?.utc_micros()?;
        return Some(EffectiveTime { start_micros: instant, end_micros: None });
    }
    let interval = frame.get("time_interval")?;
    let bound = |name: &str| interval.get(name).and_then(Value::as_str).and_then(LocalTime::parse);
    let (start, end) = (bound("start_date_time"), bound("end_date_time"));
    // As in the reference, a duration with a unit and a value selects the duration forms even when it cannot be
    // applied (which then yields no time rather than falling back to `date` + `part_of_day`).
    let duration = interval
        .get("duration")
        .filter(|duration| ["unit", "value"].iter().all(|key| duration.get(key).is_some_and(|value| !value.is_null())));
    let (start, end) = match (start, end, duration) {
        (Some(start), Some(end), _) => (start, end),
        (Some(start), None, Some(duration)) => (start, start.shift(&OmhDuration::parse(duration)?, 1)?),
        (None, Some(end), Some(duration)) => (end.shift(&OmhDuration::parse(duration)?, -1)?, end),
        _ => return part_of_day(interval),
    };
    Some(EffectiveTime { start_micros: start.utc_micros()?, end_micros: Some(end.utc_micros()?) })
}

/// A `date-time` string as UTC microseconds (no offset = UTC), or `None` if it does not parse.
pub fn date_time_micros(text: &str) -> Option<i64> {
    LocalTime::parse(text)?.utc_micros()
}

fn part_of_day(interval: &Value) -> Option<EffectiveTime> {
    let mut cursor = Cursor::new(interval.get("date")?.as_str()?);
    let day = cursor.date()?;
    if !cursor.at_end() {
        return None;
    }
    let part = interval.get("part_of_day")?.as_str()?;
    let (_, start_hour, end_hour) = PART_OF_DAY.iter().find(|(name, _, _)| *name == part)?;
    let midnight = LocalTime { wall: day.and_time(NaiveTime::MIN), offset_seconds: 0 };
    let micros_at = |hour: i64| Some(midnight.utc_micros()? + hour * 3_600_000_000);
    Some(EffectiveTime { start_micros: micros_at(*start_hour)?, end_micros: Some(micros_at(*end_hour)?) })
}

/// A wall-clock time and the offset it was given in (seconds east of UTC).
#[derive(Debug, Clone, Copy)]
struct LocalTime {
    wall: NaiveDateTime,
    offset_seconds: i32,
}

impl LocalTime {
    /// What Django's `parse_datetime` accepts (Python's `fromisoformat` plus its own regex): `YYYY-MM-DD`, optionally
    /// followed by `T` or a space, `H[H]:M[M][:S[S][.fraction]]`, optional whitespace and `Z` / `±HH[[:]MM]`.
    fn parse(text: &str) -> Option<Self> {
        let mut cursor = Cursor::new(text);
        let date = cursor.date()?;
        if cursor.at_end() {
            return Some(LocalTime { wall: date.and_time(NaiveTime::MIN), offset_seconds: 0 });
        }
        if !(cursor.eat(b'T') || cursor.eat(b' ')) {
            return None;
        }
        let hour = cursor.number(1, 2)?;
        cursor.expect(b':')?;
        let minute = cursor.number(1, 2)?;
        let (mut second, mut micros) = (0, 0);
        if cursor.eat(b':') {
            second = cursor.number(1, 2)?;
            if cursor.eat(b'.') || cursor.eat(b',') {
                micros = cursor.fraction_micros()?;
            }
        }
        while cursor.eat(b' ') || cursor.eat(b'\t') {}
        let offset_seconds = if cursor.at_end() { 0 } else { cursor.offset()? };
        if !cursor.at_end() {
            return None;
        }
        let time = NaiveTime::from_hms_micro_opt(hour, minute, second, micros)?;
        Some(LocalTime { wall: date.and_time(time), offset_seconds })
    }

    fn utc_micros(self) -> Option<i64> {
        self.wall.and_utc().timestamp_micros().checked_sub(i64::from(self.offset_seconds) * 1_000_000)
    }

    /// Moves the time by `sign` × the duration, keeping the offset. `None` when the result leaves years 1–9999
    /// (the reference fails there).
    fn shift(self, duration: &OmhDuration, sign: i32) -> Option<Self> {
        let wall = match duration {
            OmhDuration::Fixed { seconds } => {
                let micros = (f64::from(sign) * seconds * 1e6).round_ties_even();
                if !micros.is_finite() || micros.abs() > 1e17 {
                    return None;
                }
                // The range check above keeps the float-to-int conversion exact enough and in range.
                self.wall.checked_add_signed(Duration::microseconds(micros as i64))?
            }
            OmhDuration::Months(months) => add_months(self.wall, months.checked_mul(i64::from(sign))?)?,
        };
        (1..=9999).contains(&wall.year()).then_some(LocalTime { wall, ..self })
    }
}

fn add_months(wall: NaiveDateTime, months: i64) -> Option<NaiveDateTime> {
    let index = i64::from(wall.year()).checked_mul(12)?.checked_add(i64::from(wall.month0()))?.checked_add(months)?;
    let year = i32::try_from(index.div_euclid(12)).ok()?;
    let month = u32::try_from(index.rem_euclid(12)).ok()? + 1;
    let first_of_next = if month == 12 {
        NaiveDate::from_ymd_opt(year + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(year, month + 1, 1)
    }?;
    let days_in_month = first_of_next.pred_opt()?.day();
    Some(NaiveDate::from_ymd_opt(year, month, wall.day().min(days_in_month))?.and_time(wall.time()))
}

/// An OMH `duration-unit-value` the reference can apply.
#[derive(Debug, Clone, Copy)]
enum OmhDuration {
    Fixed {
        seconds: f64,
    },
    /// Calendar months (`Mo`, or `yr` × 12); the value is truncated to whole units, as in the reference.
    Months(i64),
}

impl OmhDuration {
    fn parse(duration: &Value) -> Option<Self> {
        let unit = duration.get("unit")?.as_str()?;
        // Python's float() also takes booleans and numeric strings.
        let value = match duration.get("value")? {
            Value::Number(number) => number.as_f64()?,
            Value::Bool(flag) => f64::from(u8::from(*flag)),
            Value::String(text) => text.trim().parse::<f64>().ok()?,
            _ => return None,
        };
        if let Some((_, seconds_per_unit)) = FIXED_UNITS.iter().find(|(name, _)| *name == unit) {
            return Some(OmhDuration::Fixed { seconds: value * seconds_per_unit });
        }
        let months_per_unit = match unit {
            "Mo" => 1,
            "yr" => 12,
            _ => return None,
        };
        let whole = value.trunc();
        // Beyond ±1e6 units the date leaves year 9999 anyway.
        if !whole.is_finite() || whole.abs() > 1e6 {
            return None;
        }
        Some(OmhDuration::Months(whole as i64 * months_per_unit))
    }
}

/// A byte cursor over an ASCII timestamp.
#[derive(Debug)]
struct Cursor<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Self {
        Cursor { bytes: text.as_bytes(), position: 0 }
    }

    fn at_end(&self) -> bool {
        self.position == self.bytes.len()
    }

    fn eat(&mut self, byte: u8) -> bool {
        let matched = self.bytes.get(self.position) == Some(&byte);
        self.position += usize::from(matched);
        matched
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        self.eat(byte).then_some(())
    }

    /// `min..=max` ASCII digits as a number.
    fn number(&mut self, min: usize, max: usize) -> Option<u32> {
        let digits = self.bytes[self.position..].iter().take(max).take_while(|b| b.is_ascii_digit()).count();
        if digits < min {
            return None;
        }
        let value =
            self.bytes[self.position..self.position + digits].iter().fold(0, |n, b| n * 10 + u32::from(b - b'0'));
        self.position += digits;
        Some(value)
    }

    /// A decimal fraction of a second (at least one digit) as microseconds; digits past the sixth are dropped.
    fn fraction_micros(&mut self) -> Option<u32> {
        let digits = self.bytes[self.position..].iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        let micros = (0..6).fold(0, |n, i| {
            n * 10 + self.bytes.get(self.position + i).filter(|_| i < digits).map_or(0, |b| u32::from(b - b'0'))
        });
        self.position += digits;
        Some(micros)
    }

    fn date(&mut self) -> Option<NaiveDate> {
        let year = self.number(4, 4)?;
        self.expect(b'-')?;
        let month = self.number(1, 2)?;
        self.expect(b'-')?;
        let day = self.number(1, 2)?;
        // Python dates start at year 1.
        NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, month, day).filter(|date| date.year() >= 1)
    }

    /// `Z` or `±HH[[:]MM]`, in seconds east of UTC.
    fn offset(&mut self) -> Option<i32> {
        if self.eat(b'Z') {
            return Some(0);
        }
        let sign = if self.eat(b'+') {
            1
        } else if self.eat(b'-') {
            -1
        } else {
            return None;
        };
        let hours = self.number(2, 2)?;
        let colon = self.eat(b':');
        let minutes = match self.number(2, 2) {
            Some(minutes) => minutes,
            None if colon => return None,
            None => 0,
        };
        if hours >= 24 || minutes >= 60 {
            return None;
        }
        Some(sign * i32::try_from(hours * 3600 + minutes * 60).ok()?)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn micros(text: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(text).map(|t| t.timestamp_micros()).unwrap()
    }

    fn instant(text: &str) -> Option<EffectiveTime> {
        Some(EffectiveTime { start_micros: micros(text), end_micros: None })
    }

    fn period(start: &str, end: &str) -> Option<EffectiveTime> {
        Some(EffectiveTime { start_micros: micros(start), end_micros: Some(micros(end)) })
    }

    #[test]
    fn date_times_parse_like_django() {
        let cases = [
            ("2026-07-18T09:30:00Z", Some("2026-07-18T09:30:00Z")),
            ("2026-07-18T09:30:00", Some("2026-07-18T09:30:00Z")),
            ("2025-01-01T00:04:00-08:00", Some("2025-01-01T08:04:00Z")),
            ("2025-01-01T00:04:00+0530", Some("2024-12-31T18:34:00Z")),
            ("2025-01-01T00:04:00+05", Some("2024-12-31T19:04:00Z")),
            ("2025-01-01 00:04:00.5 Z", Some("2025-01-01T00:04:00.5Z")),
            ("2025-01-01T00:04:00,1234567-01:00", Some("2025-01-01T01:04:00.123456Z")),
            ("2025-1-2T3:4", Some("2025-01-02T03:04:00Z")),
            ("2025-01-02", Some("2025-01-02T00:00:00Z")),
            ("2025-01-01T24:00:00Z", None),
            ("2025-02-30T00:00:00Z", None),
            ("2025-01-01T00:00:60Z", None),
            ("0000-01-01T00:00:00Z", None),
            ("2025-01-01T00:00:00+24:00", None),
            ("2025-01-01T00:00:00+05:", None),
            ("2025-01-01T00:00:00.Z", None),
            ("2025-01-01T00:00:00Zjunk", None),
            ("2025-01-01T", None),
            ("", None),
            ("2025-01-01T00:00:00+0٥:00", None),
        ];
        for (text, expected) in cases {
            assert_eq!(date_time_micros(text), expected.map(micros), "{text}");
        }
    }

    #[test]
    fn instants_and_intervals() {
        let frame = |value| effective_time(&value);
        assert_eq!(frame(json!({"date_time": "2026-07-18T09:30:00Z"})), instant("2026-07-18T09:30:00Z"));
        // date_time wins even when it does not parse.
        assert_eq!(
            frame(json!({"date_time": 123, "time_interval": {"date": "2026-07-18", "part_of_day": "night"}})),
            None
        );
        let interval = |value| frame(json!({ "time_interval": value }));
        assert_eq!(
            interval(json!({"start_date_time": "2026-07-18T09:00:00Z", "end_date_time": "2026-07-18T10:00:00Z"})),
            period("2026-07-18T09:00:00Z", "2026-07-18T10:00:00Z")
        );
        assert_eq!(
            interval(json!({"start_date_time": "2026-07-18T09:00:00Z", "duration": {"value": 60, "unit": "min"}})),
            period("2026-07-18T09:00:00Z", "2026-07-18T10:00:00Z")
        );
        assert_eq!(
            interval(json!({"end_date_time": "2026-07-18T10:00:00Z", "duration": {"value": 1.5, "unit": "h"}})),
            period("2026-07-18T08:30:00Z", "2026-07-18T10:00:00Z")
        );
        assert_eq!(
            interval(json!({"start_date_time": "2026-01-31T00:00:00Z", "duration": {"value": 1, "unit": "Mo"}})),
            period("2026-01-31T00:00:00Z", "2026-02-28T00:00:00Z")
        );
        // Calendar units move the wall clock in the original offset.
        assert_eq!(
            interval(
                json!({"start_date_time": "2026-01-31T23:00:00-05:00", "duration": {"value": "1.9", "unit": "Mo"}})
            ),
            period("2026-02-01T04:00:00Z", "2026-03-01T04:00:00Z")
        );
        assert_eq!(
            interval(json!({"end_date_time": "2024-02-29T12:00:00Z", "duration": {"value": 1, "unit": "yr"}})),
            period("2023-02-28T12:00:00Z", "2024-02-29T12:00:00Z")
        );
        assert_eq!(
            interval(json!({"start_date_time": "2026-07-18T09:00:00Z", "duration": {"value": 1500, "unit": "us"}})),
            period("2026-07-18T09:00:00Z", "2026-07-18T09:00:00.0015Z")
        );
    }

    #[test]
    fn part_of_day_windows_are_utc() {
        let window =
            |part: &str| effective_time(&json!({"time_interval": {"date": "2026-07-18", "part_of_day": part}}));
        assert_eq!(window("morning"), period("2026-07-18T06:00:00Z", "2026-07-18T12:00:00Z"));
        assert_eq!(window("afternoon"), period("2026-07-18T12:00:00Z", "2026-07-18T18:00:00Z"));
        assert_eq!(window("evening"), period("2026-07-18T18:00:00Z", "2026-07-19T00:00:00Z"));
        assert_eq!(window("night"), period("2026-07-18T00:00:00Z", "2026-07-18T06:00:00Z"));
        assert_eq!(window("noon"), None);
    }

    #[test]
    fn malformed_frames_yield_none() {
        let cases = [
            json!(null),
            json!("2026-07-18T09:30:00Z"),
            json!({}),
            json!({"date_time": null}),
            json!({"time_interval": {"start_date_time": "2026-07-18T09:00:00Z"}}),
            json!({"time_interval": {"start_date_time": "2026-07-18T09:00:00Z", "duration": {"value": 1, "unit": "fortnight"}}}),
            json!({"time_interval": {"start_date_time": "2026-07-18T09:00:00Z", "duration": {"value": 1e300, "unit": "yr"}}}),
            json!({"time_interval": {"start_date_time": "9999-12-31T09:00:00Z", "duration": {"value": 1, "unit": "d"}}}),
            json!({"time_interval": {"end_date_time": "2026-07-18T09:00:00Z", "duration": {"value": 1e300, "unit": "sec"}}}),
            json!({"time_interval": {"date": "2026-07-18x", "part_of_day": "night"}}),
            // A duration that cannot be applied does not fall back to date + part_of_day.
            json!({"time_interval": {
                "start_date_time": "2026-07-18T09:00:00Z",
                "duration": {"value": "many", "unit": "h"},
                "date": "2026-07-18",
                "part_of_day": "night"
            }}),
        ];
        for frame in cases {
            assert_eq!(effective_time(&frame), None, "{frame}");
        }
        assert_eq!(
            effective_time_of_data_point(
                &json!({"body": {"effective_time_frame": {"date_time": "2026-07-18T09:30:00Z"}}})
            ),
            instant("2026-07-18T09:30:00Z")
        );
        assert_eq!(effective_time_of_data_point(&json!({"body": []})), None);
    }
}
