//! Open mHealth utility schemas (`omh` namespace): unit values, time frames, enumerations, header and schema id.
//! All are draft-04 files unless noted; those that moved to IEEE 1752 reference its unit-value.

use super::ieee;
use super::{ANY_OBJECT, NUMBER, STRING};
use crate::omh::rules::{OBJECT, Pattern, Rule, STRING as STRING_TYPE, Schema};

pub(crate) static UNIT_VALUE_1_0: Schema = named!("omh:unit-value:1.0" =>
    Rule::Type(OBJECT),
    props!("value": NUMBER, "unit": STRING),
    required!("value", "unit"),
);

pub(crate) static UNIT_VALUE_RANGE_1_0: Schema = named!("omh:unit-value-range:1.0" =>
    Rule::Type(OBJECT),
    props!("low_value": NUMBER, "high_value": NUMBER, "unit": STRING),
    required!("low_value", "high_value", "unit"),
);

pub(crate) static DATE_TIME_1_0: Schema = named!("omh:date-time:1.0" => Rule::Type(STRING_TYPE), Rule::DateTime);

pub(crate) static FULL_DATE_1_0: Schema =
    named!("omh:full-date:1.0" => Rule::Type(STRING_TYPE), Rule::Pattern(Pattern::FullDate));

pub(crate) static LOCAL_TIME_1_0: Schema =
    named!("omh:local-time:1.0" => Rule::Type(STRING_TYPE), Rule::Pattern(Pattern::LocalTime));

pub(crate) static PART_OF_DAY_1_0: Schema =
    string_enum!("omh:part-of-day:1.0" => ["morning", "afternoon", "evening", "night"]);

pub(crate) static DAY_OF_WEEK_1_0: Schema = string_enum!("omh:day-of-week:1.0" =>
    ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]);

pub(crate) static DURATION_UNIT_VALUE_1_0: Schema = unit_value_type!("omh:duration-unit-value:1.0" =>
    UNIT_VALUE_1_0, ["ps", "ns", "us", "ms", "sec", "min", "h", "d", "wk", "Mo", "yr"]);

pub(crate) static DURATION_UNIT_VALUE_RANGE_1_0: Schema = unit_value_type!("omh:duration-unit-value-range:1.0" =>
    UNIT_VALUE_RANGE_1_0, ["ps", "ns", "us", "ms", "sec", "min", "h", "d", "wk", "Mo", "yr"]);

/// `time-interval-1.0`: exactly one of four shapes (so start + end + duration together is invalid).
pub(crate) static TIME_INTERVAL_1_0: Schema = named!("omh:time-interval:1.0" =>
    Rule::Type(OBJECT),
    Rule::OneOf(&[
        &sub!(props!("start_date_time": DATE_TIME_1_0, "duration": DURATION_UNIT_VALUE_1_0), required!("start_date_time", "duration")),
        &sub!(props!("end_date_time": DATE_TIME_1_0, "duration": DURATION_UNIT_VALUE_1_0), required!("end_date_time", "duration")),
        &sub!(props!("start_date_time": DATE_TIME_1_0, "end_date_time": DATE_TIME_1_0), required!("start_date_time", "end_date_time")),
        &sub!(
            props!("date": sub!(Rule::Type(STRING_TYPE), Rule::Pattern(Pattern::FullDate)), "part_of_day": PART_OF_DAY_1_0),
            required!("date", "part_of_day"),
        ),
    ]),
);

pub(crate) static TIME_FRAME_1_0: Schema = named!("omh:time-frame:1.0" =>
    Rule::Type(OBJECT),
    Rule::OneOf(&[
        &sub!(props!("date_time": DATE_TIME_1_0), required!("date_time")),
        &sub!(props!("time_interval": TIME_INTERVAL_1_0), required!("time_interval")),
    ]),
);

pub(crate) static DESCRIPTIVE_STATISTIC_1_0: Schema = string_enum!("omh:descriptive-statistic:1.0" =>
    ["average", "maximum", "minimum", "standard deviation", "variance", "sum", "median"]);

pub(crate) static DESCRIPTIVE_STATISTIC_1_1: Schema = string_enum!("omh:descriptive-statistic:1.1" => [
    "average", "maximum", "minimum", "standard deviation", "variance", "sum", "median", "count", "quartile deviation",
    "80th percentile", "lower quartile", "upper quartile", "1st quintile", "2nd quintile", "3rd quintile", "4th quintile",
]);

pub(crate) static DESCRIPTIVE_STATISTIC_1_2: Schema = string_enum!("omh:descriptive-statistic:1.2" => [
    "average", "count", "maximum", "median", "minimum", "standard deviation", "sum", "variance", "20th percentile",
    "80th percentile", "lower quartile", "upper quartile", "quartile deviation", "1st quintile", "2nd quintile",
    "3rd quintile", "4th quintile",
]);

pub(crate) static DESCRIPTIVE_STATISTIC_DENOMINATOR_1_0: Schema =
    string_enum!("omh:descriptive-statistic-denominator:1.0" => ["d", "episode", "meal", "session"]);

pub(crate) static DESCRIPTIVE_STATISTIC_DENOMINATOR_1_1: Schema =
    string_enum!("omh:descriptive-statistic-denominator:1.1" => ["d", "wk", "Mo", "episode", "meal", "session"]);

pub(crate) static TEMPORAL_RELATIONSHIP_TO_PHYSICAL_ACTIVITY_1_0: Schema = string_enum!(
    "omh:temporal-relationship-to-physical-activity:1.0" =>
    ["at rest", "active", "before exercise", "after exercise", "during exercise"]);

pub(crate) static TEMPORAL_RELATIONSHIP_TO_SLEEP_1_0: Schema = string_enum!("omh:temporal-relationship-to-sleep:1.0" =>
    ["before sleeping", "during sleep", "on waking"]);

pub(crate) static TEMPORAL_RELATIONSHIP_TO_MEAL_1_0: Schema = string_enum!("omh:temporal-relationship-to-meal:1.0" => [
    "fasting", "not fasting", "before meal", "after meal", "before breakfast", "after breakfast", "before lunch",
    "after lunch", "before dinner", "after dinner", "2 hours postprandial",
]);

pub(crate) static TEMPORAL_RELATIONSHIP_TO_MEAL_1_1: Schema = string_enum!("omh:temporal-relationship-to-meal:1.1" => [
    "fasting", "not fasting", "before meal", "after meal", "before breakfast", "after breakfast", "before lunch",
    "after lunch", "before dinner", "after dinner", "2 hours postprandial", "not related to meals", "with meal",
    "with food",
]);

pub(crate) static TEMPORAL_RELATIONSHIP_TO_MEAL_1_2: Schema = string_enum!("omh:temporal-relationship-to-meal:1.2" => [
    "fasting", "not fasting", "before meal", "after meal", "before breakfast", "after breakfast", "before lunch",
    "after lunch", "before dinner", "after dinner", "2 hours postprandial", "with meal", "with food",
]);

pub(crate) static BLOOD_SPECIMEN_TYPE_1_0: Schema =
    string_enum!("omh:blood-specimen-type:1.0" => ["whole blood", "plasma", "serum"]);

pub(crate) static SPECIMEN_SOURCE_1_0: Schema = string_enum!("omh:specimen-source:1.0" =>
    ["interstitial fluid", "capillary blood", "plasma", "serum", "tears", "whole blood"]);

pub(crate) static SPECIMEN_SOURCE_2_0: Schema = string_enum!("omh:specimen-source:2.0" =>
    ["breath", "capillary blood", "interstitial fluid", "lacrimal fluid", "saliva", "sweat", "urine"]);

pub(crate) static SPECIMEN_SOURCE_2_1: Schema = string_enum!("omh:specimen-source:2.1" =>
    ["breath", "capillary blood", "interstitial fluid", "saliva", "sweat", "tears", "urine"]);

pub(crate) static BODY_POSTURE_1_0: Schema =
    string_enum!("omh:body-posture:1.0" => ["sitting", "lying down", "standing", "semi-recumbent"]);

pub(crate) static POSITION_DURING_MEASUREMENT_1_0: Schema =
    string_enum!("omh:position-during-measurement:1.0" => ["sitting", "lying down", "standing"]);

pub(crate) static BODY_LOCATION_1_0: Schema = string_enum!("omh:body-location:1.0" => [
    "left ankle", "right ankle", "left hip", "right hip", "left thigh", "right thigh", "left thorax",
    "middle left thorax", "left upper arm", "right upper arm", "left wrist", "right wrist",
]);

/// draft-07, same values as 1.0.
pub(crate) static BODY_LOCATION_1_1: Schema = string_enum!("omh:body-location:1.1" => [
    "left ankle", "right ankle", "left hip", "right hip", "left thigh", "right thigh", "left thorax",
    "middle left thorax", "left upper arm", "right upper arm", "left wrist", "right wrist",
]);

/// draft-07: `{"type": "string"}`.
pub(crate) static ACTIVITY_NAME_1_0: Schema = named!("omh:activity-name:1.0" => Rule::Type(STRING_TYPE));

pub(crate) static SYSTOLIC_BLOOD_PRESSURE_1_0: Schema =
    unit_value_type!("omh:systolic-blood-pressure:1.0" => UNIT_VALUE_1_0, ["mmHg"]);
pub(crate) static SYSTOLIC_BLOOD_PRESSURE_1_1: Schema =
    unit_value_type!("omh:systolic-blood-pressure:1.1" => ieee::UNIT_VALUE_1_0, ["mmHg"]);
pub(crate) static DIASTOLIC_BLOOD_PRESSURE_1_0: Schema =
    unit_value_type!("omh:diastolic-blood-pressure:1.0" => UNIT_VALUE_1_0, ["mmHg"]);
pub(crate) static DIASTOLIC_BLOOD_PRESSURE_1_1: Schema =
    unit_value_type!("omh:diastolic-blood-pressure:1.1" => ieee::UNIT_VALUE_1_0, ["mmHg"]);

pub(crate) static TEMPERATURE_UNIT_VALUE_1_0: Schema =
    unit_value_type!("omh:temperature-unit-value:1.0" => UNIT_VALUE_1_0, ["K", "F", "C"]);

pub(crate) static MASS_UNIT_VALUE_1_0: Schema = unit_value_type!("omh:mass-unit-value:1.0" => UNIT_VALUE_1_0,
    ["fg", "pg", "ng", "ug", "mg", "g", "kg", "Metric Ton", "gr", "oz", "lb", "Ton"]);
pub(crate) static MASS_UNIT_VALUE_1_1: Schema = unit_value_type!("omh:mass-unit-value:1.1" => ieee::UNIT_VALUE_1_0,
    ["fg", "pg", "ng", "ug", "mg", "g", "kg", "Metric Ton", "gr", "oz", "lb", "Ton"]);

pub(crate) static LENGTH_UNIT_VALUE_1_0: Schema = unit_value_type!("omh:length-unit-value:1.0" => UNIT_VALUE_1_0,
    ["fm", "pm", "nm", "um", "mm", "cm", "m", "km", "in", "ft", "yd", "mi"]);

pub(crate) static KCAL_UNIT_VALUE_1_0: Schema = unit_value_type!("omh:kcal-unit-value:1.0" => UNIT_VALUE_1_0, ["kcal"]);

pub(crate) static VOLUME_UNIT_VALUE_1_0: Schema = unit_value_type!("omh:volume-unit-value:1.0" => UNIT_VALUE_1_0, [
    "fL", "pL", "nL", "uL", "mL", "cL", "dL", "L", "kL", "fl oz", "Cup", "in^3", "pt", "qt", "gal", "tsp", "tbsp",
]);
pub(crate) static VOLUME_UNIT_VALUE_1_1: Schema = unit_value_type!("omh:volume-unit-value:1.1" => ieee::UNIT_VALUE_1_0, [
    "fL", "pL", "nL", "uL", "mL", "cL", "dL", "L", "kL", "fl oz", "Cup", "in^3", "pt", "qt", "gal", "tsp", "tbsp",
]);

pub(crate) static SPEED_UNIT_VALUE_1_0: Schema =
    unit_value_type!("omh:speed-unit-value:1.0" => UNIT_VALUE_1_0, ["m/s", "km/h"]);

pub(crate) static PACE_UNIT_VALUE_1_0: Schema =
    unit_value_type!("omh:pace-unit-value:1.0" => UNIT_VALUE_1_0, ["min/mi", "min/km"]);
pub(crate) static PACE_UNIT_VALUE_1_1: Schema =
    unit_value_type!("omh:pace-unit-value:1.1" => ieee::UNIT_VALUE_1_0, ["min/mi", "min/km"]);

pub(crate) static AREA_UNIT_VALUE_1_0: Schema = unit_value_type!("omh:area-unit-value:1.0" => UNIT_VALUE_1_0,
    ["mm^2", "cm^2", "m^2", "km^2", "in^2", "ft^2", "yd^2", "mi^2"]);
pub(crate) static AREA_UNIT_VALUE_1_1: Schema = unit_value_type!("omh:area-unit-value:1.1" => ieee::UNIT_VALUE_1_0,
    ["mm^2", "cm^2", "m^2", "km^2", "in^2", "ft^2", "yd^2", "mi^2"]);

pub(crate) static ACCELERATION_UNIT_VALUE_1_0: Schema =
    unit_value_type!("omh:acceleration-unit-value:1.0" => UNIT_VALUE_1_0, ["m/s^2"]);
pub(crate) static ACCELERATION_UNIT_VALUE_1_1: Schema =
    unit_value_type!("omh:acceleration-unit-value:1.1" => ieee::UNIT_VALUE_1_0, ["m/s^2"]);

pub(crate) static ANGULAR_VELOCITY_UNIT_VALUE_1_0: Schema =
    unit_value_type!("omh:angular-velocity-unit-value:1.0" => UNIT_VALUE_1_0, ["rad/s"]);
pub(crate) static ANGULAR_VELOCITY_UNIT_VALUE_1_1: Schema =
    unit_value_type!("omh:angular-velocity-unit-value:1.1" => ieee::UNIT_VALUE_1_0, ["rad/s"]);

pub(crate) static PLANE_ANGLE_UNIT_VALUE_1_0: Schema =
    unit_value_type!("omh:plane-angle-unit-value:1.0" => UNIT_VALUE_1_0, ["deg"]);
pub(crate) static PLANE_ANGLE_UNIT_VALUE_1_1: Schema =
    unit_value_type!("omh:plane-angle-unit-value:1.1" => ieee::UNIT_VALUE_1_0, ["deg"]);

pub(crate) static MAGNETIC_FLUX_DENSITY_UNIT_VALUE_1_0: Schema =
    unit_value_type!("omh:magnetic-flux-density-unit-value:1.0" => UNIT_VALUE_1_0, ["pT", "nT", "uT", "mT", "T"]);
pub(crate) static MAGNETIC_FLUX_DENSITY_UNIT_VALUE_1_1: Schema =
    unit_value_type!("omh:magnetic-flux-density-unit-value:1.1" => ieee::UNIT_VALUE_1_0, ["pT", "nT", "uT", "mT", "T"]);

pub(crate) static FREQUENCY_UNIT_VALUE_1_0: Schema = named!("omh:frequency-unit-value:1.0" =>
    Rule::Type(OBJECT),
    props!(
        "number_of_times": NUMBER,
        "time_window": sub!(Rule::OneOf(&[&DURATION_UNIT_VALUE_1_0, &DURATION_UNIT_VALUE_RANGE_1_0])),
    ),
    required!("number_of_times", "time_window"),
);

pub(crate) static SCHEMA_ID_1_0: Schema = named!("omh:schema-id:1.0" =>
    Rule::Type(OBJECT),
    props!("namespace": STRING, "name": STRING, "version": STRING),
    required!("namespace", "name", "version"),
);

/// `url` has `format: uri`, asserted like the official test data expects.
pub(crate) static SCHEMA_ID_1_1: Schema = named!("omh:schema-id:1.1" =>
    Rule::Type(OBJECT),
    props!("namespace": STRING, "name": STRING, "version": STRING, "url": sub!(Rule::Type(STRING_TYPE), Rule::Uri)),
    required!("namespace", "name", "version"),
);

static MODALITY: Schema = sub!(Rule::Type(STRING_TYPE), Rule::Enum(&["sensed", "self-reported"]));

/// `header-1.x` points at 1.2 and `schema-id-1.x` at 1.1.
pub(crate) static HEADER_1_0: Schema = named!("omh:header:1.0" =>
    Rule::Type(OBJECT),
    props!(
        "id": STRING,
        "creation_date_time": DATE_TIME_1_0,
        "schema_id": SCHEMA_ID_1_1,
        "acquisition_provenance": sub!(
            Rule::Type(OBJECT),
            props!("source_name": STRING, "source_creation_date_time": DATE_TIME_1_0, "modality": MODALITY),
            required!("source_name"),
        ),
    ),
    required!("id", "creation_date_time", "schema_id"),
);

pub(crate) static HEADER_1_1: Schema = named!("omh:header:1.1" =>
    Rule::Type(OBJECT),
    props!(
        "id": STRING,
        "creation_date_time": DATE_TIME_1_0,
        "schema_id": SCHEMA_ID_1_1,
        "acquisition_provenance": sub!(
            Rule::Type(OBJECT),
            props!("source_name": STRING, "source_creation_date_time": DATE_TIME_1_0, "modality": MODALITY),
            required!("source_name"),
        ),
        "user_id": STRING,
    ),
    required!("id", "creation_date_time", "schema_id"),
);

pub(crate) static HEADER_1_2: Schema = named!("omh:header:1.2" =>
    Rule::Type(OBJECT),
    props!(
        "id": STRING,
        "creation_date_time": DATE_TIME_1_0,
        "schema_id": SCHEMA_ID_1_1,
        "acquisition_provenance": sub!(
            Rule::Type(OBJECT),
            props!(
                "source_name": STRING,
                "source_data_point_id": STRING,
                "source_creation_date_time": DATE_TIME_1_0,
                "source_last_modification_date_time": DATE_TIME_1_0,
                "modality": MODALITY,
            ),
            required!("source_name"),
        ),
        "user_id": STRING,
    ),
    required!("id", "creation_date_time", "schema_id"),
);

pub(crate) static DATA_POINT_1_0: Schema = named!("omh:data-point:1.0" =>
    Rule::Type(OBJECT),
    props!("header": HEADER_1_2, "body": ANY_OBJECT),
    required!("header", "body"),
);
