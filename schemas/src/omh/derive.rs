//! What jhe reads out of a valid body: when it happened (`effective_time_frame`, as the reference's
//! `effective_time_frame.py` does) and the main measured value with its unit.

use super::datetime::{add_duration, parse_date_time_with_offset, parse_full_date};
use super::fast::intern;
use super::json::{Doc, Kind, NodeId};
use crate::{EffectiveTime, MeasuredValues};

const HOUR_MICROS: i64 = 3_600_000_000;

/// Read access to a JSON document, so that the same derivation runs on a parsed [`Doc`] (the detailed path)
/// and on the raw text the fast path has checked (`super::fast::RawView`).
pub(crate) trait View<'d>: Copy {
    type Node: Copy;
    /// The member `key` of `object` (the last one when the key is repeated), `None` for non-objects.
    fn get(self, object: Self::Node, key: &str) -> Option<Self::Node>;
    /// The last member of `object` whose key `matches`, `None` for non-objects.
    fn last_member(self, object: Self::Node, matches: impl Fn(&[u8]) -> bool) -> Option<Self::Node>;
    /// The string value of `node`, `None` for other kinds.
    fn str(self, node: Self::Node) -> Option<&'d str>;
    /// The text of a number, `None` for other kinds.
    fn number(self, node: Self::Node) -> Option<&'d str>;
    fn kind(self, node: Self::Node) -> Kind;
    /// A date-time string as UTC microseconds and its offset in minutes (`None` for other values).
    fn date_time(self, node: Self::Node) -> Option<(i64, i64)> {
        parse_date_time_with_offset(self.str(node)?)
    }
}

impl<'d> View<'d> for &'d Doc<'_> {
    type Node = NodeId;

    fn get(self, object: NodeId, key: &str) -> Option<NodeId> {
        Doc::get(self, object, key)
    }

    fn last_member(self, object: NodeId, matches: impl Fn(&[u8]) -> bool) -> Option<NodeId> {
        if Doc::kind(self, object) != Kind::Object {
            return None;
        }
        self.children(object).filter(|&member| matches(self.key(member).as_bytes())).last()
    }

    fn str(self, node: NodeId) -> Option<&'d str> {
        Doc::str(self, node)
    }

    fn number(self, node: NodeId) -> Option<&'d str> {
        Doc::number(self, node)
    }

    fn kind(self, node: NodeId) -> Kind {
        Doc::kind(self, node)
    }
}

fn text<'d, V: View<'d>>(view: V, object: V::Node, key: &str) -> Option<&'d str> {
    view.str(view.get(object, key)?)
}

/// A JSON number as an f64, exactly as `str::parse` gives it (short integers without the general parser).
fn parse_number(text: &str) -> Option<f64> {
    let (negative, digits) = match text.as_bytes() {
        [b'-', rest @ ..] => (true, rest),
        rest => (false, rest),
    };
    // `digits[.digits]` with at most 15 digits in all: the digits as an integer (below 2^53, so exact as an f64)
    // divided by an exact power of ten is correctly rounded, hence what the general parser gives (Clinger)
    let point = digits.iter().position(|&b| b == b'.');
    let (whole, fraction) = match point {
        Some(point) => (&digits[..point], &digits[point + 1..]),
        None => (digits, &digits[..0]),
    };
    if !whole.is_empty()
        && whole.len() + fraction.len() <= 15
        && (point.is_none() || !fraction.is_empty())
        && whole.iter().chain(fraction).all(u8::is_ascii_digit)
    {
        let integer = whole.iter().chain(fraction).fold(0u64, |value, digit| value * 10 + u64::from(digit - b'0'));
        const POWERS: [f64; 16] =
            [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15];
        let value = integer as f64 / POWERS[fraction.len()];
        return Some(if negative { -value } else { value });
    }
    text.parse().ok()
}

fn number<'d, V: View<'d>>(view: V, node: V::Node) -> Option<f64> {
    parse_number(view.number(node)?)
}

/// `{"value": ..., "unit": ...}` as a number and a unit.
fn unit_value<'d, V: View<'d>>(view: V, object: V::Node) -> Option<(f64, &'d str)> {
    Some((number(view, view.get(object, "value")?)?, text(view, object, "unit")?))
}

/// A time frame (`{"date_time": ...}` or `{"time_interval": ...}`) in UTC microseconds.
pub(crate) fn time_frame<'d, V: View<'d>>(view: V, frame: V::Node) -> Option<EffectiveTime> {
    if let Some((instant, _)) = view.get(frame, "date_time").and_then(|node| view.date_time(node)) {
        return Some(EffectiveTime { start_micros: instant, end_micros: None });
    }
    let interval = view.get(frame, "time_interval")?;
    let with_offset = |key| view.get(interval, key).and_then(|node| view.date_time(node));
    let (start, end) = (with_offset("start_date_time"), with_offset("end_date_time"));
    let duration = view.get(interval, "duration").and_then(|duration| unit_value(view, duration));
    let (start, end) = match (start, end, duration) {
        (Some((start, _)), Some((end, _)), _) => (start, end),
        (Some((start, offset)), None, Some((value, unit))) => (start, add_duration(start, offset, value, unit, 1)?),
        (None, Some((end, offset)), Some((value, unit))) => (add_duration(end, offset, value, unit, -1)?, end),
        _ => {
            // omh:time-interval:1.0 also allows a date and a part of the day (taken in UTC).
            let day = parse_full_date(text(view, interval, "date")?)? * 24 * HOUR_MICROS;
            let (from, to) = match text(view, interval, "part_of_day")? {
                "night" => (0, 6),
                "morning" => (6, 12),
                "afternoon" => (12, 18),
                "evening" => (18, 24),
                _ => return None,
            };
            (day + from * HOUR_MICROS, day + to * HOUR_MICROS)
        }
    };
    Some(EffectiveTime { start_micros: start, end_micros: Some(end) })
}

/// Where the main value of a type sits when it is not `body.<name with underscores>`.
fn value_path(name: &str) -> &'static [&'static str] {
    match name {
        "calories-burned" => &["kcal_burned"],
        "sleep-stage-summary" => &["sleep_stage_summary", "total_sleep_time"],
        "sleep-episode" => &["total_sleep_time"],
        _ => &[],
    }
}

/// The member whose key is `name` with `-` as `_` (`heart-rate` → `heart_rate`), without allocating.
fn member_named_like<'d, V: View<'d>>(view: V, object: V::Node, name: &str) -> Option<V::Node> {
    view.last_member(object, |key: &[u8]| {
        key.len() == name.len() && key.iter().zip(name.bytes()).all(|(&k, n)| k == if n == b'-' { b'_' } else { n })
    })
}

/// The main value and unit of a body: `body.<name>` as a unit value or a plain number (`heart_rate`,
/// `blood_glucose`, `step_count`, ...), systolic/diastolic for blood pressure.
pub(crate) fn measured_values<'d, V: View<'d>>(view: V, body: V::Node, name: &str) -> MeasuredValues {
    let mut values = MeasuredValues::default();
    if name == "blood-pressure" {
        let systolic = view.get(body, "systolic_blood_pressure").and_then(|v| unit_value(view, v));
        let diastolic = view.get(body, "diastolic_blood_pressure").and_then(|v| unit_value(view, v));
        values.systolic = systolic.map(|(value, _)| value);
        values.diastolic = diastolic.map(|(value, _)| value);
        values.unit = systolic.or(diastolic).map(|(_, unit)| intern(unit));
        return values;
    }
    let node = match value_path(name) {
        [] => member_named_like(view, body, name),
        path => path.iter().try_fold(body, |object, key| view.get(object, key)),
    };
    match node.map(|node| (node, view.kind(node))) {
        Some((node, Kind::Number)) => values.value = number(view, node),
        Some((node, Kind::Object)) => {
            if let Some((value, unit)) = unit_value(view, node) {
                values.value = Some(value);
                values.unit = Some(intern(unit));
            }
        }
        _ => {}
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::omh::datetime::parse_date_time;
    use crate::omh::json::ROOT;

    fn frame(json: &str) -> Option<EffectiveTime> {
        let doc = Doc::parse(json.as_bytes()).unwrap();
        time_frame(&doc, ROOT)
    }

    #[test]
    fn time_frames_of_every_shape() {
        let at = |text: &str| parse_date_time(text).unwrap();
        assert_eq!(
            frame(r#"{"date_time":"2025-01-01T00:04:00-08:00"}"#),
            Some(EffectiveTime { start_micros: at("2025-01-01T08:04:00Z"), end_micros: None })
        );
        let hour = Some(EffectiveTime {
            start_micros: at("2025-01-01T00:00:00Z"),
            end_micros: Some(at("2025-01-01T01:00:00Z")),
        });
        assert_eq!(
            frame(
                r#"{"time_interval":{"start_date_time":"2025-01-01T00:00:00Z","end_date_time":"2025-01-01T01:00:00Z"}}"#
            ),
            hour
        );
        assert_eq!(
            frame(
                r#"{"time_interval":{"start_date_time":"2025-01-01T00:00:00Z","duration":{"value":60,"unit":"min"}}}"#
            ),
            hour
        );
        assert_eq!(
            frame(r#"{"time_interval":{"end_date_time":"2025-01-01T01:00:00Z","duration":{"value":1,"unit":"h"}}}"#),
            hour
        );
        assert_eq!(
            frame(r#"{"time_interval":{"date":"2025-01-01","part_of_day":"evening"}}"#),
            Some(EffectiveTime {
                start_micros: at("2025-01-01T18:00:00Z"),
                end_micros: Some(at("2025-01-02T00:00:00Z"))
            })
        );
        assert_eq!(frame(r#"{"time_interval":{"start_date_time":"2025-01-01T00:00:00Z"}}"#), None);
        // the reference's rules: calendar durations on the original offset's wall clock, fractions dropped
        assert_eq!(
            frame(
                r#"{"time_interval":{"start_date_time":"2026-01-31T23:00:00-05:00","duration":{"value":1.9,"unit":"Mo"}}}"#
            ),
            Some(EffectiveTime {
                start_micros: at("2026-02-01T04:00:00Z"),
                end_micros: Some(at("2026-03-01T04:00:00Z"))
            })
        );
        for part in ["night", "morning", "afternoon", "evening"] {
            assert!(frame(&format!(r#"{{"time_interval":{{"date":"2026-07-18","part_of_day":"{part}"}}}}"#)).is_some());
        }
        assert_eq!(frame(r#"{"time_interval":{"date":"2026-07-18","part_of_day":"noon"}}"#), None);
        // a duration that cannot be applied does not fall back to date + part_of_day
        assert_eq!(
            frame(
                r#"{"time_interval":{"start_date_time":"9999-12-31T09:00:00Z","duration":{"value":1,"unit":"d"},"date":"2026-07-18","part_of_day":"night"}}"#
            ),
            None
        );
    }

    #[test]
    fn values_by_type_name() {
        let doc = Doc::parse(br#"{"heart_rate":{"value":67.5,"unit":"beats/min"},"step_count":12}"#).unwrap();
        let heart_rate = measured_values(&doc, ROOT, "heart-rate");
        assert_eq!((heart_rate.value, heart_rate.unit.as_deref()), (Some(67.5), Some("beats/min")));
        assert_eq!(measured_values(&doc, ROOT, "step-count").value, Some(12.0));
        let doc = Doc::parse(br#"{"systolic_blood_pressure":{"value":115,"unit":"mmHg"},"diastolic_blood_pressure":{"value":60,"unit":"mmHg"}}"#).unwrap();
        let pressure = measured_values(&doc, ROOT, "blood-pressure");
        assert_eq!(
            (pressure.systolic, pressure.diastolic, pressure.unit.as_deref()),
            (Some(115.0), Some(60.0), Some("mmHg"))
        );
    }
}
