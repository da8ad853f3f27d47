//! IEEE 1752.1 schemas (`ieee` namespace, all draft-07): utility types, header and data point, sleep, physical
//! activity and environment measures.

use super::{ANY_OBJECT, BOOL, INT, NUMBER, STRING};
use crate::omh::rules::{ARRAY, OBJECT, Rule, STRING as STRING_TYPE, Schema};

pub(crate) static UNIT_VALUE_1_0: Schema = named!("ieee:unit-value:1.0" =>
    Rule::Type(OBJECT),
    props!("value": NUMBER, "unit": STRING),
    required!("value", "unit"),
);

pub(crate) static UNIT_VALUE_RANGE_1_0: Schema = named!("ieee:unit-value-range:1.0" =>
    Rule::Type(OBJECT),
    props!("low_value": NUMBER, "high_value": NUMBER, "unit": STRING),
    required!("low_value", "high_value", "unit"),
);

pub(crate) static DATE_TIME_1_0: Schema = named!("ieee:date-time:1.0" => Rule::Type(STRING_TYPE), Rule::DateTime);

pub(crate) static DURATION_UNIT_VALUE_1_0: Schema = unit_value_type!("ieee:duration-unit-value:1.0" =>
    UNIT_VALUE_1_0, ["ps", "ns", "us", "ms", "sec", "min", "h", "d", "wk", "Mo", "yr"]);

pub(crate) static DURATION_UNIT_VALUE_RANGE_1_0: Schema = unit_value_type!("ieee:duration-unit-value-range:1.0" =>
    UNIT_VALUE_RANGE_1_0, ["ps", "ns", "us", "ms", "sec", "min", "h", "d", "wk", "Mo", "yr"]);

/// Exactly one of three shapes (no date + part of day, unlike `omh:time-interval:1.0`).
pub(crate) static TIME_INTERVAL_1_0: Schema = named!("ieee:time-interval:1.0" =>
    Rule::Type(OBJECT),
    Rule::OneOf(&[
        &sub!(props!("start_date_time": DATE_TIME_1_0, "duration": DURATION_UNIT_VALUE_1_0), required!("start_date_time", "duration")),
        &sub!(props!("end_date_time": DATE_TIME_1_0, "duration": DURATION_UNIT_VALUE_1_0), required!("end_date_time", "duration")),
        &sub!(props!("start_date_time": DATE_TIME_1_0, "end_date_time": DATE_TIME_1_0), required!("start_date_time", "end_date_time")),
    ]),
);

pub(crate) static TIME_FRAME_1_0: Schema = named!("ieee:time-frame:1.0" =>
    Rule::Type(OBJECT),
    Rule::OneOf(&[
        &sub!(props!("date_time": DATE_TIME_1_0), required!("date_time")),
        &sub!(props!("time_interval": TIME_INTERVAL_1_0), required!("time_interval")),
    ]),
);

pub(crate) static DESCRIPTIVE_STATISTIC_1_0: Schema = string_enum!("ieee:descriptive-statistic:1.0" => [
    "average", "count", "maximum", "median", "minimum", "standard deviation", "sum", "variance", "20th percentile",
    "80th percentile", "lower quartile", "upper quartile", "quartile deviation", "1st quintile", "2nd quintile",
    "3rd quintile", "4th quintile",
]);

pub(crate) static DESCRIPTIVE_STATISTIC_DENOMINATOR_1_0: Schema =
    string_enum!("ieee:descriptive-statistic-denominator:1.0" => ["d", "wk", "Mo", "episode", "meal", "session"]);

pub(crate) static BODY_POSTURE_1_0: Schema =
    string_enum!("ieee:body-posture:1.0" => ["sitting", "lying down", "standing", "semi-recumbent"]);

pub(crate) static TEMPERATURE_UNIT_VALUE_1_0: Schema =
    unit_value_type!("ieee:temperature-unit-value:1.0" => UNIT_VALUE_1_0, ["K", "F", "C"]);
pub(crate) static LENGTH_UNIT_VALUE_1_0: Schema = unit_value_type!("ieee:length-unit-value:1.0" => UNIT_VALUE_1_0,
    ["fm", "pm", "nm", "um", "mm", "cm", "m", "km", "in", "ft", "yd", "mi"]);
pub(crate) static KCAL_UNIT_VALUE_1_0: Schema =
    unit_value_type!("ieee:kcal-unit-value:1.0" => UNIT_VALUE_1_0, ["kcal"]);
pub(crate) static PERCENT_UNIT_VALUE_1_0: Schema =
    unit_value_type!("ieee:percent-unit-value:1.0" => UNIT_VALUE_1_0, ["%"]);
pub(crate) static SOUND_UNIT_VALUE_1_0: Schema =
    unit_value_type!("ieee:sound-unit-value:1.0" => UNIT_VALUE_1_0, ["dB", "dBA"]);
pub(crate) static SPEED_UNIT_VALUE_1_0: Schema =
    unit_value_type!("ieee:speed-unit-value:1.0" => UNIT_VALUE_1_0, ["m/s", "km/h"]);
pub(crate) static ILLUMINANCE_UNIT_VALUE_1_0: Schema =
    unit_value_type!("ieee:illuminance-unit-value:1.0" => UNIT_VALUE_1_0, ["lx"]);

pub(crate) static FREQUENCY_UNIT_VALUE_1_0: Schema = named!("ieee:frequency-unit-value:1.0" =>
    Rule::Type(OBJECT),
    Rule::OneOf(&[
        &with_units!(UNIT_VALUE_1_0, ["Hz"]),
        &sub!(
            props!(
                "number_of_times": NUMBER,
                "time_window": sub!(Rule::OneOf(&[&DURATION_UNIT_VALUE_1_0, &DURATION_UNIT_VALUE_RANGE_1_0])),
            ),
            required!("number_of_times", "time_window"),
        ),
    ]),
);

pub(crate) static SCHEMA_ID_1_0: Schema = named!("ieee:schema-id:1.0" =>
    Rule::Type(OBJECT),
    props!("namespace": STRING, "name": STRING, "version": STRING),
    required!("namespace", "name", "version"),
);

/// `uuid` (`format: uuid`) and `datasheet_reference` (`format: iri`) are annotations in draft-07: not asserted.
pub(crate) static HEADER_1_0: Schema = named!("ieee:header:1.0" =>
    Rule::Type(OBJECT),
    props!(
        "uuid": STRING,
        "schema_id": SCHEMA_ID_1_0,
        "source_creation_date_time": DATE_TIME_1_0,
        "modality": sub!(Rule::Type(STRING_TYPE), Rule::Enum(&["sensed", "self-reported"])),
        "acquisition_rate": FREQUENCY_UNIT_VALUE_1_0,
        "external_datasheets": sub!(
            Rule::Type(ARRAY),
            Rule::Items(&sub!(
                Rule::Type(OBJECT),
                props!("datasheet_type": STRING, "datasheet_reference": STRING),
                required!("datasheet_reference"),
            )),
        ),
    ),
    required!("uuid", "schema_id", "source_creation_date_time"),
);

pub(crate) static DATA_POINT_1_0: Schema = named!("ieee:data-point:1.0" =>
    Rule::Type(OBJECT),
    props!("header": HEADER_1_0, "body": ANY_OBJECT),
    required!("header", "body"),
);

/// `{"allOf": [duration-unit-value, ...]}` as the sleep schemas write `time_frame` + required interval.
static INTERVAL_FRAME: Schema = interval_frame!(TIME_FRAME_1_0);
static DENOMINATOR: Schema = denominator_or_string!(DESCRIPTIVE_STATISTIC_DENOMINATOR_1_0);

pub(crate) static AMBIENT_TEMPERATURE_1_0: Schema = named!("ieee:ambient-temperature:1.0" =>
    Rule::Type(OBJECT),
    props!(
        "ambient_temperature": TEMPERATURE_UNIT_VALUE_1_0,
        "effective_time_frame": TIME_FRAME_1_0,
        "descriptive_statistic": DESCRIPTIVE_STATISTIC_1_0,
    ),
    required!("ambient_temperature", "effective_time_frame"),
);

pub(crate) static AMBIENT_SOUND_1_0: Schema = named!("ieee:ambient-sound:1.0" =>
    Rule::Type(OBJECT),
    props!(
        "ambient_sound": SOUND_UNIT_VALUE_1_0,
        "effective_time_frame": TIME_FRAME_1_0,
        "descriptive_statistic": DESCRIPTIVE_STATISTIC_1_0,
    ),
    required!("ambient_sound", "effective_time_frame"),
);

pub(crate) static AMBIENT_LIGHT_1_0: Schema = named!("ieee:ambient-light:1.0" =>
    Rule::Type(OBJECT),
    props!(
        "ambient_light": sub!(
            Rule::Type(ARRAY),
            Rule::Items(&sub!(
                Rule::Type(OBJECT),
                props!("wavelength": with_units!(LENGTH_UNIT_VALUE_1_0, ["nm"]), "intensity": ILLUMINANCE_UNIT_VALUE_1_0),
                required!("intensity"),
            )),
        ),
        "effective_time_frame": TIME_FRAME_1_0,
        "descriptive_statistic": DESCRIPTIVE_STATISTIC_1_0,
    ),
    required!("ambient_light", "effective_time_frame"),
);

pub(crate) static PHYSICAL_ACTIVITY_1_0: Schema = named!("ieee:physical-activity:1.0" =>
    Rule::Type(OBJECT),
    props!(
        "activity_name": STRING,
        // `{"unit": {"anyOf": [{"enum": [...]}, {"type": "string"}]}}`: any string unit passes.
        "base_movement_quantity": sub!(Rule::AllOf(&[&UNIT_VALUE_1_0, &sub!(props!("unit": sub!(Rule::AnyOf(&[
            &sub!(Rule::Enum(&["steps", "laps", "skips", "movements", "strokes"])),
            &STRING,
        ]))))])),
        "effective_time_frame": INTERVAL_FRAME,
        "distance": LENGTH_UNIT_VALUE_1_0,
        "cumulative_elevation_gain": LENGTH_UNIT_VALUE_1_0,
        "duration": DURATION_UNIT_VALUE_1_0,
        "duration_light_activity": DURATION_UNIT_VALUE_1_0,
        "duration_moderate_activity": DURATION_UNIT_VALUE_1_0,
        "duration_vigorous_activity": DURATION_UNIT_VALUE_1_0,
        "average_cadence": sub!(Rule::AllOf(&[&UNIT_VALUE_1_0, &sub!(props!("unit": sub!(Rule::AnyOf(&[
            &sub!(Rule::Enum(&["steps/min", "strokes/min", "skips/min", "laps/min", "movements/min", "strokes/lap"])),
            &STRING,
        ]))))])),
        "average_speed": SPEED_UNIT_VALUE_1_0,
        "kcal_burned": KCAL_UNIT_VALUE_1_0,
        "reported_activity_intensity": sub!(Rule::Type(STRING_TYPE), Rule::Enum(&["light", "moderate", "vigorous"])),
        "met_value": NUMBER,
        "descriptive_statistic": DESCRIPTIVE_STATISTIC_1_0,
        "descriptive_statistic_denominator": DENOMINATOR,
    ),
    required!("activity_name", "effective_time_frame"),
);

/// The sleep measures that are one value + a time interval + statistics.
macro_rules! sleep_measure {
    ($name:literal, $key:literal => $value:expr, main_sleep: $($main:literal)?) => {
        named!($name =>
            Rule::Type(OBJECT),
            props!(
                $key: $value,
                "effective_time_frame": INTERVAL_FRAME,
                $($main: BOOL,)?
                "descriptive_statistic": DESCRIPTIVE_STATISTIC_1_0,
                "descriptive_statistic_denominator": DENOMINATOR,
            ),
            required!($key, "effective_time_frame"),
        )
    };
}

pub(crate) static APNEA_HYPOPNEA_INDEX_1_0: Schema = sleep_measure!("ieee:apnea-hypopnea-index:1.0",
    "apnea_hypopnea_index" => with_units!(UNIT_VALUE_1_0, ["events/h"]), main_sleep:);
pub(crate) static AROUSAL_INDEX_1_0: Schema = sleep_measure!("ieee:arousal-index:1.0",
    "arousal_index" => with_units!(UNIT_VALUE_1_0, ["awakenings/h"]), main_sleep: "is_main_sleep");
pub(crate) static SLEEP_ONSET_LATENCY_1_0: Schema = sleep_measure!("ieee:sleep-onset-latency:1.0",
    "sleep_onset_latency" => DURATION_UNIT_VALUE_1_0, main_sleep: "is_main_sleep");
pub(crate) static TIME_IN_BED_1_0: Schema = sleep_measure!("ieee:time-in-bed:1.0",
    "time_in_bed" => DURATION_UNIT_VALUE_1_0, main_sleep: "is_main_sleep");

pub(crate) static DEEP_SLEEP_1_0: Schema = named!("ieee:deep-sleep:1.0" =>
    Rule::Type(OBJECT),
    props!(
        "deep_sleep_duration": DURATION_UNIT_VALUE_1_0,
        "total_sleep_time": DURATION_UNIT_VALUE_1_0,
        "deep_sleep_percentage": PERCENT_UNIT_VALUE_1_0,
        "effective_time_frame": INTERVAL_FRAME,
        "is_main_sleep": BOOL,
        "descriptive_statistic": DESCRIPTIVE_STATISTIC_1_0,
        "descriptive_statistic_denominator": DENOMINATOR,
    ),
    required!("deep_sleep_duration", "total_sleep_time", "effective_time_frame"),
);

pub(crate) static LIGHT_SLEEP_1_0: Schema = named!("ieee:light-sleep:1.0" =>
    Rule::Type(OBJECT),
    props!(
        "light_sleep_duration": DURATION_UNIT_VALUE_1_0,
        "total_sleep_time": DURATION_UNIT_VALUE_1_0,
        "light_sleep_percentage": PERCENT_UNIT_VALUE_1_0,
        "effective_time_frame": INTERVAL_FRAME,
        "is_main_sleep": BOOL,
        "descriptive_statistic": DESCRIPTIVE_STATISTIC_1_0,
        "descriptive_statistic_denominator": DENOMINATOR,
    ),
    required!("light_sleep_duration", "total_sleep_time", "effective_time_frame"),
);

pub(crate) static SLEEP_EPISODE_1_0: Schema = named!("ieee:sleep-episode:1.0" =>
    Rule::Type(OBJECT),
    props!(
        "latency_to_sleep_onset": DURATION_UNIT_VALUE_1_0,
        "latency_to_arising": DURATION_UNIT_VALUE_1_0,
        "total_sleep_time": DURATION_UNIT_VALUE_1_0,
        "light_sleep_duration": DURATION_UNIT_VALUE_1_0,
        "deep_sleep_duration": DURATION_UNIT_VALUE_1_0,
        "rem_sleep_duration": DURATION_UNIT_VALUE_1_0,
        "wake_after_sleep_onset": DURATION_UNIT_VALUE_1_0,
        "number_of_awakenings": INT,
        "is_main_sleep": BOOL,
        "effective_time_frame": INTERVAL_FRAME,
        "sleep_efficiency_percentage": PERCENT_UNIT_VALUE_1_0,
    ),
    required!("effective_time_frame"),
);

pub(crate) static SLEEP_STAGE_SUMMARY_1_0: Schema = named!("ieee:sleep-stage-summary:1.0" =>
    Rule::Type(OBJECT),
    props!(
        "sleep_stage_summary": sub!(
            Rule::Type(OBJECT),
            props!(
                "total_sleep_time": DURATION_UNIT_VALUE_1_0,
                "sleep_efficiency_percentage": PERCENT_UNIT_VALUE_1_0,
                "latency_to_sleep_onset": DURATION_UNIT_VALUE_1_0,
                "latency_to_arising": DURATION_UNIT_VALUE_1_0,
                "rem_sleep_duration": DURATION_UNIT_VALUE_1_0,
                "rem_sleep_episode_count": INT,
                "rem_sleep_percentage": PERCENT_UNIT_VALUE_1_0,
                "light_sleep_duration": DURATION_UNIT_VALUE_1_0,
                "light_sleep_episode_count": INT,
                "light_sleep_percentage": PERCENT_UNIT_VALUE_1_0,
                "deep_sleep_duration": DURATION_UNIT_VALUE_1_0,
                "deep_sleep_episode_count": INT,
                "deep_sleep_percentage": PERCENT_UNIT_VALUE_1_0,
                "awake_duration": DURATION_UNIT_VALUE_1_0,
                "number_of_awakenings": INT,
                "awake_percentage": PERCENT_UNIT_VALUE_1_0,
                "descriptive_statistic": DESCRIPTIVE_STATISTIC_1_0,
                "descriptive_statistic_denominator": DENOMINATOR,
            ),
            required!("total_sleep_time"),
        ),
        "sleep_stage_episodes": sub!(
            Rule::Type(ARRAY),
            Rule::Items(&sub!(
                Rule::Type(OBJECT),
                props!(
                    "sleep_stage_state": sub!(
                        Rule::Type(STRING_TYPE),
                        Rule::Enum(&["REM_sleep", "Light_sleep", "Deep_sleep", "Unknown_sleep", "Awake"]),
                    ),
                    "sleep_stage_time_frame": INTERVAL_FRAME,
                ),
                required!("sleep_stage_state", "sleep_stage_time_frame"),
            )),
        ),
        "effective_time_frame": INTERVAL_FRAME,
        "is_main_sleep": BOOL,
    ),
    required!("sleep_stage_summary", "effective_time_frame"),
);

pub(crate) static SNORE_INDEX_1_0: Schema = named!("ieee:snore-index:1.0" =>
    Rule::Type(OBJECT),
    props!(
        "snore_index": with_units!(UNIT_VALUE_1_0, ["snores/h"]),
        "snore_events": sub!(
            Rule::Type(ARRAY),
            Rule::Items(&sub!(
                Rule::Type(OBJECT),
                props!(
                    "snored": BOOL,
                    "snore_time_frame": TIME_INTERVAL_1_0,
                    "snore_intensity": SOUND_UNIT_VALUE_1_0,
                    "body_posture": BODY_POSTURE_1_0,
                ),
                required!("snored", "snore_time_frame"),
            )),
        ),
        "effective_time_frame": INTERVAL_FRAME,
        "is_main_sleep": BOOL,
        "descriptive_statistic": DESCRIPTIVE_STATISTIC_1_0,
        "descriptive_statistic_denominator": DENOMINATOR,
    ),
    required!("snore_index", "effective_time_frame"),
);

pub(crate) static TOTAL_SLEEP_TIME_1_0: Schema = named!("ieee:total-sleep-time:1.0" =>
    Rule::Type(OBJECT),
    props!(
        "total_sleep_time": DURATION_UNIT_VALUE_1_0,
        "sleep_events": sub!(Rule::Type(ARRAY), Rule::Items(&TIME_INTERVAL_1_0)),
        "effective_time_frame": INTERVAL_FRAME,
        "is_main_sleep": BOOL,
        "descriptive_statistic": DESCRIPTIVE_STATISTIC_1_0,
        "descriptive_statistic_denominator": DENOMINATOR,
    ),
    required!("total_sleep_time", "effective_time_frame"),
);

/// `awakening_durations.items` is `{"type": "object", "$ref": ...}`: draft-07 ignores the `type` next to `$ref`.
pub(crate) static WAKE_AFTER_SLEEP_ONSET_1_0: Schema = named!("ieee:wake-after-sleep-onset:1.0" =>
    Rule::Type(OBJECT),
    props!(
        "wake_after_sleep_onset": DURATION_UNIT_VALUE_1_0,
        "awakening_durations": sub!(Rule::Type(ARRAY), Rule::Items(&DURATION_UNIT_VALUE_1_0)),
        "effective_time_frame": INTERVAL_FRAME,
        "descriptive_statistic": DESCRIPTIVE_STATISTIC_1_0,
        "descriptive_statistic_denominator": DENOMINATOR,
    ),
    required!("wake_after_sleep_onset", "effective_time_frame"),
);
