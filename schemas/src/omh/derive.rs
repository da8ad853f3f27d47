//! What jhe reads out of a valid body: when it happened (`effective_time_frame`, as the reference's
//! `effective_time_frame.py` does) and the main measured value with its unit.

use super::datetime::{add_duration, parse_date_time, parse_date_time_with_offset, parse_full_date};
use super::json::{Doc, Kind, NodeId};
use crate::{EffectiveTime, MeasuredValues};

const HOUR_MICROS: i64 = 3_600_000_000;

fn text<'d>(doc: &'d Doc<'_>, object: NodeId, key: &str) -> Option<&'d str> {
    doc.str(doc.get(object, key)?)
}

fn number(doc: &Doc<'_>, node: NodeId) -> Option<f64> {
    doc.number(node)?.parse().ok()
}

fn date_time(doc: &Doc<'_>, object: NodeId, key: &str) -> Option<i64> {
    parse_date_time(text(doc, object, key)?)
}

/// `{"value": ..., "unit": ...}` as a number and a unit.
fn unit_value<'d>(doc: &'d Doc<'_>, object: NodeId) -> Option<(f64, &'d str)> {
    Some((number(doc, doc.get(object, "value")?)?, text(doc, object, "unit")?))
}

/// A time frame (`{"date_time": ...}` or `{"time_interval": ...}`) in UTC microseconds.
pub(crate) fn time_frame(doc: &Doc<'_>, frame: NodeId) -> Option<EffectiveTime> {
    if let Some(instant) = date_time(doc, frame, "date_time") {
        return Some(EffectiveTime { start_micros: instant, end_micros: None });
    }
    let interval = doc.get(frame, "time_interval")?;
    let with_offset = |key| text(doc, interval, key).and_then(parse_date_time_with_offset);
    let (start, end) = (with_offset("start_date_time"), with_offset("end_date_time"));
    let duration = doc.get(interval, "duration").and_then(|duration| unit_value(doc, duration));
    let (start, end) = match (start, end, duration) {
        (Some((start, _)), Some((end, _)), _) => (start, end),
        (Some((start, offset)), None, Some((value, unit))) => (start, add_duration(start, offset, value, unit, 1)?),
        (None, Some((end, offset)), Some((value, unit))) => (add_duration(end, offset, value, unit, -1)?, end),
        _ => {
            // omh:time-interval:1.0 also allows a date and a part of the day (taken in UTC).
            let day = parse_full_date(text(doc, interval, "date")?)? * 24 * HOUR_MICROS;
            let (from, to) = match text(doc, interval, "part_of_day")? {
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
fn member_named_like(doc: &Doc<'_>, object: NodeId, name: &str) -> Option<NodeId> {
    let matches = |key: &str| {
        key.len() == name.len() && key.bytes().zip(name.bytes()).all(|(k, n)| k == if n == b'-' { b'_' } else { n })
    };
    if doc.kind(object) != Kind::Object {
        return None;
    }
    doc.children(object).filter(|&member| matches(doc.key(member))).last()
}

/// The main value and unit of a body: `body.<name>` as a unit value or a plain number (`heart_rate`,
/// `blood_glucose`, `step_count`, ...), systolic/diastolic for blood pressure.
pub(crate) fn measured_values(doc: &Doc<'_>, body: NodeId, name: &str) -> MeasuredValues {
    let mut values = MeasuredValues::default();
    if name == "blood-pressure" {
        let systolic = doc.get(body, "systolic_blood_pressure").and_then(|v| unit_value(doc, v));
        let diastolic = doc.get(body, "diastolic_blood_pressure").and_then(|v| unit_value(doc, v));
        values.systolic = systolic.map(|(value, _)| value);
        values.diastolic = diastolic.map(|(value, _)| value);
        values.unit = systolic.or(diastolic).map(|(_, unit)| unit.to_owned());
        return values;
    }
    let node = match value_path(name) {
        [] => member_named_like(doc, body, name),
        path => path.iter().try_fold(body, |object, key| doc.get(object, key)),
    };
    match node.map(|node| (node, doc.kind(node))) {
        Some((node, Kind::Number)) => values.value = number(doc, node),
        Some((node, Kind::Object)) => {
            if let Some((value, unit)) = unit_value(doc, node) {
                values.value = Some(value);
                values.unit = Some(unit.to_owned());
            }
        }
        _ => {}
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;
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
