//! Open mHealth measure schemas (`omh` namespace). Files before the IEEE 1752 move are draft-04 and use the OMH
//! utility types; the newer ones (blood-glucose 4.0, body-weight 3.0, ...) are draft-07 and use IEEE's.

use super::utility as u;
use super::{BOOL, INT4, NUMBER, STRING, ieee};
use crate::omh::rules::{ARRAY, OBJECT, Rule, STRING as STRING_TYPE, Schema};

/// The draft-04 `time_frame` + required interval, and `descriptive_statistic_denominator` of 1.x (any string).
static INTERVAL_FRAME: Schema = interval_frame!(u::TIME_FRAME_1_0);
static DENOMINATOR: Schema = denominator_or_string!(u::DESCRIPTIVE_STATISTIC_DENOMINATOR_1_1);

/// A measure that is one (restricted) value with time frame and statistics, the most common OMH shape.
macro_rules! measure {
    ($name:literal, required: [$($required:literal),*], { $($key:literal : $schema:expr),* $(,)? }) => {
        named!($name => Rule::Type(OBJECT), props!($($key: $schema),*), required!($($required),*))
    };
}

pub(crate) static HEART_RATE_1_0: Schema = measure!("omh:heart-rate:1.0", required: ["heart_rate"], {
    "heart_rate": with_units!(u::UNIT_VALUE_1_0, ["beats/min"]),
    "effective_time_frame": u::TIME_FRAME_1_0,
    "descriptive_statistic": u::DESCRIPTIVE_STATISTIC_1_2,
    "temporal_relationship_to_physical_activity": u::TEMPORAL_RELATIONSHIP_TO_PHYSICAL_ACTIVITY_1_0,
    "user_notes": STRING,
});

pub(crate) static HEART_RATE_1_1: Schema = measure!("omh:heart-rate:1.1", required: ["heart_rate"], {
    "heart_rate": with_units!(u::UNIT_VALUE_1_0, ["beats/min"]),
    "effective_time_frame": u::TIME_FRAME_1_0,
    "descriptive_statistic": u::DESCRIPTIVE_STATISTIC_1_2,
    "temporal_relationship_to_physical_activity": u::TEMPORAL_RELATIONSHIP_TO_PHYSICAL_ACTIVITY_1_0,
    "temporal_relationship_to_sleep": u::TEMPORAL_RELATIONSHIP_TO_SLEEP_1_0,
    "user_notes": STRING,
});

/// draft-07, still on the OMH utility types.
pub(crate) static HEART_RATE_2_0: Schema = measure!("omh:heart-rate:2.0", required: ["heart_rate", "effective_time_frame"], {
    "heart_rate": with_units!(u::UNIT_VALUE_1_0, ["beats/min"]),
    "effective_time_frame": u::TIME_FRAME_1_0,
    "descriptive_statistic": u::DESCRIPTIVE_STATISTIC_1_2,
    "temporal_relationship_to_physical_activity": u::TEMPORAL_RELATIONSHIP_TO_PHYSICAL_ACTIVITY_1_0,
    "temporal_relationship_to_sleep": u::TEMPORAL_RELATIONSHIP_TO_SLEEP_1_0,
});

static GLUCOSE_UNITS: Schema = with_units!(u::UNIT_VALUE_1_0, ["mg/dL", "mmol/L"]);

pub(crate) static BLOOD_GLUCOSE_1_0: Schema = measure!("omh:blood-glucose:1.0", required: ["blood_glucose"], {
    "blood_glucose": GLUCOSE_UNITS,
    "blood_specimen_type": u::BLOOD_SPECIMEN_TYPE_1_0,
    "effective_time_frame": u::TIME_FRAME_1_0,
    "temporal_relationship_to_meal": u::TEMPORAL_RELATIONSHIP_TO_MEAL_1_2,
    "temporal_relationship_to_sleep": u::TEMPORAL_RELATIONSHIP_TO_SLEEP_1_0,
    "descriptive_statistic": u::DESCRIPTIVE_STATISTIC_1_2,
    "user_notes": STRING,
});

/// `specimen_source` is specimen-source 1.x intersected with its own enum (same values).
pub(crate) static BLOOD_GLUCOSE_2_0: Schema = measure!("omh:blood-glucose:2.0", required: ["blood_glucose"], {
    "blood_glucose": GLUCOSE_UNITS,
    "specimen_source": sub!(Rule::AllOf(&[
        &u::SPECIMEN_SOURCE_1_0,
        &sub!(Rule::Enum(&["interstitial fluid", "capillary blood", "plasma", "serum", "tears", "whole blood"])),
    ])),
    "effective_time_frame": u::TIME_FRAME_1_0,
    "temporal_relationship_to_meal": u::TEMPORAL_RELATIONSHIP_TO_MEAL_1_2,
    "temporal_relationship_to_sleep": u::TEMPORAL_RELATIONSHIP_TO_SLEEP_1_0,
    "descriptive_statistic": u::DESCRIPTIVE_STATISTIC_1_2,
    "user_notes": STRING,
});

pub(crate) static BLOOD_GLUCOSE_3_0: Schema = measure!("omh:blood-glucose:3.0", required: ["blood_glucose", "effective_time_frame"], {
    "blood_glucose": GLUCOSE_UNITS,
    "specimen_source": u::SPECIMEN_SOURCE_2_1,
    "effective_time_frame": u::TIME_FRAME_1_0,
    "temporal_relationship_to_meal": u::TEMPORAL_RELATIONSHIP_TO_MEAL_1_2,
    "temporal_relationship_to_sleep": u::TEMPORAL_RELATIONSHIP_TO_SLEEP_1_0,
    "descriptive_statistic": u::DESCRIPTIVE_STATISTIC_1_2,
});

pub(crate) static BLOOD_GLUCOSE_4_0: Schema = measure!("omh:blood-glucose:4.0", required: ["blood_glucose", "effective_time_frame"], {
    "blood_glucose": with_units!(ieee::UNIT_VALUE_1_0, ["mg/dL", "mmol/L"]),
    "specimen_source": u::SPECIMEN_SOURCE_2_1,
    "effective_time_frame": ieee::TIME_FRAME_1_0,
    "temporal_relationship_to_meal": u::TEMPORAL_RELATIONSHIP_TO_MEAL_1_2,
    "temporal_relationship_to_sleep": u::TEMPORAL_RELATIONSHIP_TO_SLEEP_1_0,
    "descriptive_statistic": ieee::DESCRIPTIVE_STATISTIC_1_0,
});

pub(crate) static BLOOD_PRESSURE_1_0: Schema = measure!("omh:blood-pressure:1.0", required: ["systolic_blood_pressure", "diastolic_blood_pressure"], {
    "systolic_blood_pressure": u::SYSTOLIC_BLOOD_PRESSURE_1_1,
    "diastolic_blood_pressure": u::DIASTOLIC_BLOOD_PRESSURE_1_1,
    "effective_time_frame": u::TIME_FRAME_1_0,
    "position_during_measurement": u::POSITION_DURING_MEASUREMENT_1_0,
    "descriptive_statistic": u::DESCRIPTIVE_STATISTIC_1_2,
    "user_notes": STRING,
});

pub(crate) static BLOOD_PRESSURE_2_0: Schema = measure!("omh:blood-pressure:2.0", required: ["systolic_blood_pressure", "diastolic_blood_pressure"], {
    "systolic_blood_pressure": u::SYSTOLIC_BLOOD_PRESSURE_1_1,
    "diastolic_blood_pressure": u::DIASTOLIC_BLOOD_PRESSURE_1_1,
    "effective_time_frame": u::TIME_FRAME_1_0,
    "body_posture": u::BODY_POSTURE_1_0,
    "descriptive_statistic": u::DESCRIPTIVE_STATISTIC_1_2,
    "user_notes": STRING,
});

pub(crate) static BLOOD_PRESSURE_3_0: Schema = measure!("omh:blood-pressure:3.0",
required: ["systolic_blood_pressure", "diastolic_blood_pressure", "effective_time_frame"], {
    "systolic_blood_pressure": u::SYSTOLIC_BLOOD_PRESSURE_1_1,
    "diastolic_blood_pressure": u::DIASTOLIC_BLOOD_PRESSURE_1_1,
    "effective_time_frame": u::TIME_FRAME_1_0,
    "body_posture": u::BODY_POSTURE_1_0,
    "descriptive_statistic": u::DESCRIPTIVE_STATISTIC_1_2,
    "measurement_location": u::BODY_LOCATION_1_1,
});

pub(crate) static BLOOD_PRESSURE_3_1: Schema = measure!("omh:blood-pressure:3.1",
required: ["systolic_blood_pressure", "diastolic_blood_pressure", "effective_time_frame"], {
    "systolic_blood_pressure": u::SYSTOLIC_BLOOD_PRESSURE_1_1,
    "diastolic_blood_pressure": u::DIASTOLIC_BLOOD_PRESSURE_1_1,
    "effective_time_frame": u::TIME_FRAME_1_0,
    "body_posture": u::BODY_POSTURE_1_0,
    "descriptive_statistic": u::DESCRIPTIVE_STATISTIC_1_2,
    "measurement_location": u::BODY_LOCATION_1_1,
    "temporal_relationship_to_physical_activity": u::TEMPORAL_RELATIONSHIP_TO_PHYSICAL_ACTIVITY_1_0,
});

pub(crate) static BLOOD_PRESSURE_4_0: Schema = measure!("omh:blood-pressure:4.0",
required: ["systolic_blood_pressure", "diastolic_blood_pressure", "effective_time_frame"], {
    "systolic_blood_pressure": u::SYSTOLIC_BLOOD_PRESSURE_1_1,
    "diastolic_blood_pressure": u::DIASTOLIC_BLOOD_PRESSURE_1_1,
    "effective_time_frame": ieee::TIME_FRAME_1_0,
    "body_posture": ieee::BODY_POSTURE_1_0,
    "descriptive_statistic": ieee::DESCRIPTIVE_STATISTIC_1_0,
    "measurement_location": u::BODY_LOCATION_1_1,
    "temporal_relationship_to_physical_activity": u::TEMPORAL_RELATIONSHIP_TO_PHYSICAL_ACTIVITY_1_0,
});

static LOCATION_1_0: Schema = sub!(
    Rule::Type(STRING_TYPE),
    Rule::Enum(&["oral", "rectal", "vaginal", "axillary", "otic", "wrist", "chest", "temporal"]),
);
static LOCATION_2_0: Schema = sub!(
    Rule::Type(STRING_TYPE),
    Rule::Enum(&[
        "axillary",
        "finger",
        "forehead",
        "oral",
        "rectal",
        "temporal artery",
        "toe",
        "tympanic",
        "wrist",
        "vagina"
    ]),
);

pub(crate) static BODY_TEMPERATURE_1_0: Schema = measure!("omh:body-temperature:1.0", required: ["body_temperature"], {
    "body_temperature": u::TEMPERATURE_UNIT_VALUE_1_0,
    "effective_time_frame": u::TIME_FRAME_1_0,
    "descriptive_statistic": u::DESCRIPTIVE_STATISTIC_1_2,
    "measurement_location": LOCATION_1_0,
});

pub(crate) static BODY_TEMPERATURE_2_0: Schema = measure!("omh:body-temperature:2.0", required: ["body_temperature"], {
    "body_temperature": u::TEMPERATURE_UNIT_VALUE_1_0,
    "effective_time_frame": u::TIME_FRAME_1_0,
    "descriptive_statistic": u::DESCRIPTIVE_STATISTIC_1_2,
    "measurement_location": LOCATION_2_0,
    "temporal_relationship_to_sleep": u::TEMPORAL_RELATIONSHIP_TO_SLEEP_1_0,
});

pub(crate) static BODY_TEMPERATURE_3_0: Schema = measure!("omh:body-temperature:3.0", required: ["body_temperature", "effective_time_frame"], {
    "body_temperature": u::TEMPERATURE_UNIT_VALUE_1_0,
    "effective_time_frame": u::TIME_FRAME_1_0,
    "descriptive_statistic": u::DESCRIPTIVE_STATISTIC_1_2,
    "measurement_location": LOCATION_2_0,
    "temporal_relationship_to_sleep": u::TEMPORAL_RELATIONSHIP_TO_SLEEP_1_0,
});

pub(crate) static BODY_TEMPERATURE_4_0: Schema = measure!("omh:body-temperature:4.0", required: ["body_temperature", "effective_time_frame"], {
    "body_temperature": ieee::TEMPERATURE_UNIT_VALUE_1_0,
    "effective_time_frame": ieee::TIME_FRAME_1_0,
    "descriptive_statistic": ieee::DESCRIPTIVE_STATISTIC_1_0,
    "measurement_location": LOCATION_2_0,
    "temporal_relationship_to_sleep": u::TEMPORAL_RELATIONSHIP_TO_SLEEP_1_0,
});

macro_rules! oxygen_saturation {
    ($name:literal, required: [$($required:literal),*]) => {
        measure!($name, required: [$($required),*], {
            "oxygen_saturation": with_units!(u::UNIT_VALUE_1_0, ["%"]),
            "system": sub!(Rule::Type(STRING_TYPE), Rule::Enum(&["peripheral capillary"])),
            "supplemental_oxygen_flow_rate": with_units!(u::UNIT_VALUE_1_0, ["L/min"]),
            "oxygen_therapy_mode_of_administration": sub!(Rule::Type(STRING_TYPE), Rule::Enum(&["nasal cannula"])),
            "measurement_method": sub!(Rule::Type(STRING_TYPE), Rule::Enum(&["pulse oximetry"])),
            "effective_time_frame": u::TIME_FRAME_1_0,
            "descriptive_statistic": u::DESCRIPTIVE_STATISTIC_1_2,
        })
    };
}
pub(crate) static OXYGEN_SATURATION_1_0: Schema =
    oxygen_saturation!("omh:oxygen-saturation:1.0", required: ["oxygen_saturation"]);
pub(crate) static OXYGEN_SATURATION_2_0: Schema =
    oxygen_saturation!("omh:oxygen-saturation:2.0", required: ["oxygen_saturation", "effective_time_frame"]);

pub(crate) static RESPIRATORY_RATE_1_0: Schema = measure!("omh:respiratory-rate:1.0", required: ["respiratory_rate"], {
    "respiratory_rate": with_units!(u::UNIT_VALUE_1_0, ["breaths/min"]),
    "effective_time_frame": u::TIME_FRAME_1_0,
    "descriptive_statistic": u::DESCRIPTIVE_STATISTIC_1_2,
    "temporal_relationship_to_physical_activity": u::TEMPORAL_RELATIONSHIP_TO_PHYSICAL_ACTIVITY_1_0,
});

pub(crate) static RESPIRATORY_RATE_2_0: Schema = measure!("omh:respiratory-rate:2.0", required: ["respiratory_rate", "effective_time_frame"], {
    "respiratory_rate": with_units!(u::UNIT_VALUE_1_0, ["breaths/min"]),
    "effective_time_frame": u::TIME_FRAME_1_0,
    "descriptive_statistic": u::DESCRIPTIVE_STATISTIC_1_2,
    "temporal_relationship_to_physical_activity": u::TEMPORAL_RELATIONSHIP_TO_PHYSICAL_ACTIVITY_1_0,
});

/// The respiratory timings: a duration in one unit.
macro_rules! timed {
    ($name:literal, $key:literal, [$($unit:literal),*], required: [$($required:literal),*]) => {
        measure!($name, required: [$($required),*], {
            $key: with_units!(u::DURATION_UNIT_VALUE_1_0, [$($unit),*]),
            "effective_time_frame": u::TIME_FRAME_1_0,
            "descriptive_statistic": u::DESCRIPTIVE_STATISTIC_1_2,
            "temporal_relationship_to_physical_activity": u::TEMPORAL_RELATIONSHIP_TO_PHYSICAL_ACTIVITY_1_0,
        })
    };
}
pub(crate) static RR_INTERVAL_1_0: Schema =
    timed!("omh:rr-interval:1.0", "rr_interval", ["ms"], required: ["rr_interval"]);
pub(crate) static EXPIRATORY_TIME_1_0: Schema =
    timed!("omh:expiratory-time:1.0", "expiratory_time", ["sec"], required: ["expiratory_time"]);
pub(crate) static INSPIRATORY_TIME_1_0: Schema =
    timed!("omh:inspiratory-time:1.0", "inspiratory_time", ["sec"], required: ["inspiratory_time"]);
pub(crate) static VENTILATION_CYCLE_TIME_1_0: Schema = timed!("omh:ventilation-cycle-time:1.0", "ventilation_cycle_time",
    ["sec"], required: ["ventilation_cycle_time", "effective_time_frame"]);

pub(crate) static MINUTE_VOLUME_1_0: Schema = measure!("omh:minute-volume:1.0", required: ["minute_volume"], {
    "minute_volume": with_units!(u::UNIT_VALUE_1_0, ["mL/min", "L/min"]),
    "effective_time_frame": u::TIME_FRAME_1_0,
    "descriptive_statistic": u::DESCRIPTIVE_STATISTIC_1_2,
    "temporal_relationship_to_physical_activity": u::TEMPORAL_RELATIONSHIP_TO_PHYSICAL_ACTIVITY_1_0,
    "minute_volume_type": sub!(Rule::Type(STRING_TYPE), Rule::Enum(&["inspiratory", "expiratory", "total"])),
});

/// Spirometry (draft-07): `measurement_quality` is an enum without `type`.
macro_rules! spirometry {
    ($name:literal, $key:literal) => {
        measure!($name, required: [$key, "effective_time_frame"], {
            $key: with_units!(u::VOLUME_UNIT_VALUE_1_1, ["L"]),
            "measurement_quality": sub!(Rule::Enum(&["acceptable", "usable", "rejected"])),
            "effective_time_frame": ieee::TIME_FRAME_1_0,
            "descriptive_statistic": ieee::DESCRIPTIVE_STATISTIC_1_0,
            "temporal_relationship_to_physical_activity": u::TEMPORAL_RELATIONSHIP_TO_PHYSICAL_ACTIVITY_1_0,
        })
    };
}
pub(crate) static FORCED_VITAL_CAPACITY_1_0: Schema =
    spirometry!("omh:forced-vital-capacity:1.0", "forced_vital_capacity");
pub(crate) static FORCED_EXPIRATORY_VOLUME_1_SECOND_1_0: Schema =
    spirometry!("omh:forced-expiratory-volume-1-second:1.0", "forced_expiratory_volume_1_second");

pub(crate) static BODY_WEIGHT_1_0: Schema = measure!("omh:body-weight:1.0", required: ["body_weight"], {
    "body_weight": u::MASS_UNIT_VALUE_1_0,
    "effective_time_frame": u::TIME_FRAME_1_0,
    "descriptive_statistic": u::DESCRIPTIVE_STATISTIC_1_2,
});

pub(crate) static BODY_WEIGHT_2_0: Schema = measure!("omh:body-weight:2.0", required: ["body_weight", "effective_time_frame"], {
    "body_weight": u::MASS_UNIT_VALUE_1_0,
    "effective_time_frame": u::TIME_FRAME_1_0,
    "descriptive_statistic": u::DESCRIPTIVE_STATISTIC_1_2,
});

/// Its `$id` says body-weight-2.0 (a quirk of the official file); the content is 3.0's.
pub(crate) static BODY_WEIGHT_3_0: Schema = measure!("omh:body-weight:3.0", required: ["body_weight", "effective_time_frame"], {
    "body_weight": u::MASS_UNIT_VALUE_1_0,
    "effective_time_frame": ieee::TIME_FRAME_1_0,
    "descriptive_statistic": ieee::DESCRIPTIVE_STATISTIC_1_0,
});

pub(crate) static BODY_HEIGHT_1_0: Schema = measure!("omh:body-height:1.0", required: ["body_height"], {
    "body_height": u::LENGTH_UNIT_VALUE_1_0,
    "effective_time_frame": u::TIME_FRAME_1_0,
    "descriptive_statistic": u::DESCRIPTIVE_STATISTIC_1_2,
});

pub(crate) static BODY_HEIGHT_2_0: Schema = measure!("omh:body-height:2.0", required: ["body_height", "effective_time_frame"], {
    "body_height": ieee::LENGTH_UNIT_VALUE_1_0,
    "effective_time_frame": ieee::TIME_FRAME_1_0,
    "descriptive_statistic": ieee::DESCRIPTIVE_STATISTIC_1_0,
});

pub(crate) static BODY_MASS_INDEX_1_0: Schema = measure!("omh:body-mass-index:1.0", required: ["body_mass_index"], {
    "body_mass_index": with_units!(u::UNIT_VALUE_1_0, ["kg/m2"]),
    "effective_time_frame": u::TIME_FRAME_1_0,
    "descriptive_statistic": u::DESCRIPTIVE_STATISTIC_1_2,
});

pub(crate) static BODY_MASS_INDEX_2_0: Schema = measure!("omh:body-mass-index:2.0", required: ["body_mass_index", "effective_time_frame"], {
    "body_mass_index": with_units!(u::UNIT_VALUE_1_0, ["kg/m^2"]),
    "effective_time_frame": u::TIME_FRAME_1_0,
    "descriptive_statistic": u::DESCRIPTIVE_STATISTIC_1_2,
});

pub(crate) static BODY_MASS_INDEX_3_0: Schema = measure!("omh:body-mass-index:3.0", required: ["body_mass_index", "effective_time_frame"], {
    "body_mass_index": with_units!(ieee::UNIT_VALUE_1_0, ["kg/m^2"]),
    "effective_time_frame": ieee::TIME_FRAME_1_0,
    "descriptive_statistic": ieee::DESCRIPTIVE_STATISTIC_1_0,
});

pub(crate) static BODY_FAT_PERCENTAGE_1_0: Schema = measure!("omh:body-fat-percentage:1.0", required: ["body_fat_percentage"], {
    "body_fat_percentage": with_units!(u::UNIT_VALUE_1_0, ["%"]),
    "effective_time_frame": u::TIME_FRAME_1_0,
    "descriptive_statistic": u::DESCRIPTIVE_STATISTIC_1_2,
});

pub(crate) static BODY_FAT_PERCENTAGE_2_0: Schema = measure!("omh:body-fat-percentage:2.0", required: ["body_fat_percentage", "effective_time_frame"], {
    "body_fat_percentage": ieee::PERCENT_UNIT_VALUE_1_0,
    "effective_time_frame": ieee::TIME_FRAME_1_0,
    "descriptive_statistic": ieee::DESCRIPTIVE_STATISTIC_1_0,
});

pub(crate) static BREATH_CARBON_MONOXIDE_1_0: Schema = measure!("omh:breath-carbon-monoxide:1.0", required: ["breath_carbon_monoxide"], {
    "breath_carbon_monoxide": with_units!(u::UNIT_VALUE_1_0, ["ppm"]),
    "effective_time_frame": u::TIME_FRAME_1_0,
    "descriptive_statistic": u::DESCRIPTIVE_STATISTIC_1_2,
});

/// draft-07 but on the OMH utility types.
pub(crate) static AMBIENT_TEMPERATURE_1_0: Schema = measure!("omh:ambient-temperature:1.0", required: ["ambient_temperature"], {
    "ambient_temperature": u::TEMPERATURE_UNIT_VALUE_1_0,
    "effective_time_frame": u::TIME_FRAME_1_0,
    "descriptive_statistic": u::DESCRIPTIVE_STATISTIC_1_2,
});

pub(crate) static CALORIES_BURNED_1_0: Schema = measure!("omh:calories-burned:1.0", required: ["kcal_burned"], {
    "kcal_burned": u::KCAL_UNIT_VALUE_1_0,
    "effective_time_frame": u::TIME_FRAME_1_0,
    "activity_name": u::ACTIVITY_NAME_1_0,
});

pub(crate) static CALORIES_BURNED_2_0: Schema = measure!("omh:calories-burned:2.0", required: ["kcal_burned", "effective_time_frame"], {
    "kcal_burned": u::KCAL_UNIT_VALUE_1_0,
    "activity_name": u::ACTIVITY_NAME_1_0,
    "effective_time_frame": INTERVAL_FRAME,
    "descriptive_statistic": u::DESCRIPTIVE_STATISTIC_1_2,
    "descriptive_statistic_denominator": DENOMINATOR,
});

pub(crate) static STEP_COUNT_1_0: Schema = measure!("omh:step-count:1.0", required: ["step_count"], {
    "step_count": NUMBER,
    "effective_time_frame": u::TIME_FRAME_1_0,
});

/// `descriptive_statistic` references 1.0 directly (not 1.x).
pub(crate) static STEP_COUNT_2_0: Schema = measure!("omh:step-count:2.0", required: ["step_count", "effective_time_frame"], {
    "step_count": NUMBER,
    "effective_time_frame": INTERVAL_FRAME,
    "descriptive_statistic": u::DESCRIPTIVE_STATISTIC_1_0,
    "descriptive_statistic_denominator": DENOMINATOR,
});

pub(crate) static STEP_COUNT_3_0: Schema = measure!("omh:step-count:3.0", required: ["step_count", "effective_time_frame"], {
    "step_count": with_units!(u::UNIT_VALUE_1_0, ["steps"]),
    "effective_time_frame": INTERVAL_FRAME,
    "descriptive_statistic": u::DESCRIPTIVE_STATISTIC_1_0,
    "descriptive_statistic_denominator": DENOMINATOR,
});

pub(crate) static PHYSICAL_ACTIVITY_1_0: Schema = measure!("omh:physical-activity:1.0", required: ["activity_name"], {
    "activity_name": u::ACTIVITY_NAME_1_0,
    "effective_time_frame": u::TIME_FRAME_1_0,
    "distance": u::LENGTH_UNIT_VALUE_1_0,
    "reported_activity_intensity": sub!(Rule::Type(STRING_TYPE), Rule::Enum(&["light", "moderate", "vigorous"])),
});

pub(crate) static PHYSICAL_ACTIVITY_1_1: Schema = measure!("omh:physical-activity:1.1", required: ["activity_name"], {
    "activity_name": u::ACTIVITY_NAME_1_0,
    "effective_time_frame": u::TIME_FRAME_1_0,
    "distance": u::LENGTH_UNIT_VALUE_1_0,
    "reported_activity_intensity": sub!(Rule::Type(STRING_TYPE), Rule::Enum(&["light", "moderate", "vigorous"])),
    "met_value": NUMBER,
});

pub(crate) static PHYSICAL_ACTIVITY_1_2: Schema = measure!("omh:physical-activity:1.2", required: ["activity_name"], {
    "activity_name": u::ACTIVITY_NAME_1_0,
    "effective_time_frame": u::TIME_FRAME_1_0,
    "distance": u::LENGTH_UNIT_VALUE_1_0,
    "kcal_burned": u::KCAL_UNIT_VALUE_1_0,
    "reported_activity_intensity": sub!(Rule::Type(STRING_TYPE), Rule::Enum(&["light", "moderate", "vigorous"])),
    "met_value": NUMBER,
});

pub(crate) static MINUTES_MODERATE_ACTIVITY_1_0: Schema = measure!("omh:minutes-moderate-activity:1.0", required: ["minutes_moderate_activity"], {
    "minutes_moderate_activity": with_units!(u::DURATION_UNIT_VALUE_1_0, ["min"]),
    "effective_time_frame": u::TIME_FRAME_1_0,
});

static SLEEP_UNITS: Schema = with_units!(u::DURATION_UNIT_VALUE_1_0, ["sec", "min", "h"]);

pub(crate) static SLEEP_DURATION_1_0: Schema = measure!("omh:sleep-duration:1.0", required: ["sleep_duration"], {
    "sleep_duration": SLEEP_UNITS,
    "effective_time_frame": u::TIME_FRAME_1_0,
    "user_notes": STRING,
});

pub(crate) static SLEEP_DURATION_2_0: Schema = measure!("omh:sleep-duration:2.0", required: ["sleep_duration", "effective_time_frame"], {
    "sleep_duration": SLEEP_UNITS,
    "effective_time_frame": INTERVAL_FRAME,
    "descriptive_statistic": u::DESCRIPTIVE_STATISTIC_1_2,
    "descriptive_statistic_denominator": DENOMINATOR,
});

/// 1.0 is draft-04 (`number_of_awakenings` must be written as an integer), 1.1 draft-07.
macro_rules! sleep_episode {
    ($name:literal, $integer:expr, { $($key:literal : $schema:expr),* $(,)? }) => {
        measure!($name, required: ["effective_time_frame"], {
            "latency_to_sleep_onset": u::DURATION_UNIT_VALUE_1_0,
            "latency_to_arising": u::DURATION_UNIT_VALUE_1_0,
            "total_sleep_time": u::DURATION_UNIT_VALUE_1_0,
            $($key: $schema,)*
            "number_of_awakenings": $integer,
            "is_main_sleep": BOOL,
            "effective_time_frame": INTERVAL_FRAME,
            "sleep_maintenance_efficiency_percentage": with_units!(u::UNIT_VALUE_1_0, ["%"]),
        })
    };
}
pub(crate) static SLEEP_EPISODE_1_0: Schema = sleep_episode!("omh:sleep-episode:1.0", INT4, {});
pub(crate) static SLEEP_EPISODE_1_1: Schema =
    sleep_episode!("omh:sleep-episode:1.1", super::INT, { "wake_after_sleep_onset": u::DURATION_UNIT_VALUE_1_0 });

pub(crate) static TOTAL_SLEEP_TIME_1_0: Schema = measure!("omh:total-sleep-time:1.0", required: ["total_sleep_time", "effective_time_frame"], {
    "total_sleep_time": u::DURATION_UNIT_VALUE_1_0,
    "effective_time_frame": INTERVAL_FRAME,
    "descriptive_statistic": u::DESCRIPTIVE_STATISTIC_1_2,
    "descriptive_statistic_denominator": DENOMINATOR,
});

pub(crate) static SPEED_1_0: Schema = measure!("omh:speed:1.0", required: ["speed", "effective_time_frame"], {
    "speed": u::SPEED_UNIT_VALUE_1_0,
    "effective_time_frame": u::TIME_FRAME_1_0,
    "descriptive_statistic": u::DESCRIPTIVE_STATISTIC_1_2,
});

pub(crate) static PACE_1_0: Schema = measure!("omh:pace:1.0", required: ["pace", "effective_time_frame"], {
    "pace": u::PACE_UNIT_VALUE_1_0,
    "effective_time_frame": u::TIME_FRAME_1_0,
    "descriptive_statistic": u::DESCRIPTIVE_STATISTIC_1_2,
});

/// The three-axis sensor readings.
macro_rules! three_axis {
    ($name:literal, $time_frame:expr, $statistic:expr, $unit:expr, $x:literal, $y:literal, $z:literal, $($location:literal)?) => {
        measure!($name, required: [$x, $y, "effective_time_frame"], {
            $x: $unit,
            $y: $unit,
            $z: $unit,
            "effective_time_frame": $time_frame,
            $($location: u::BODY_LOCATION_1_1,)?
            "descriptive_statistic": $statistic,
        })
    };
}
pub(crate) static ACCELERATION_1_0: Schema = three_axis!(
    "omh:acceleration:1.0",
    u::TIME_FRAME_1_0,
    u::DESCRIPTIVE_STATISTIC_1_2,
    u::ACCELERATION_UNIT_VALUE_1_0,
    "acceleration_x",
    "acceleration_y",
    "acceleration_z",
    "sensor_body_location"
);
pub(crate) static ACCELERATION_2_0: Schema = three_axis!(
    "omh:acceleration:2.0",
    ieee::TIME_FRAME_1_0,
    ieee::DESCRIPTIVE_STATISTIC_1_0,
    u::ACCELERATION_UNIT_VALUE_1_0,
    "acceleration_x",
    "acceleration_y",
    "acceleration_z",
    "sensor_body_location"
);
pub(crate) static ORIENTATION_1_0: Schema = three_axis!(
    "omh:orientation:1.0",
    u::TIME_FRAME_1_0,
    u::DESCRIPTIVE_STATISTIC_1_2,
    u::ANGULAR_VELOCITY_UNIT_VALUE_1_0,
    "angular_velocity_x",
    "angular_velocity_y",
    "angular_velocity_z",
    "sensor_body_location"
);
pub(crate) static MAGNETIC_FORCE_1_0: Schema = three_axis!(
    "omh:magnetic-force:1.0",
    u::TIME_FRAME_1_0,
    u::DESCRIPTIVE_STATISTIC_1_2,
    u::MAGNETIC_FLUX_DENSITY_UNIT_VALUE_1_0,
    "magnetic_field_strength_x",
    "magnetic_field_strength_y",
    "magnetic_field_strength_z",
);

/// draft-04: the satellite counts must be written as integers; `effective_time_frame` must be a date-time.
pub(crate) static GEOPOSITION_1_0: Schema = measure!("omh:geoposition:1.0", required: ["latitude", "longitude", "effective_time_frame"], {
    "latitude": u::PLANE_ANGLE_UNIT_VALUE_1_0,
    "longitude": u::PLANE_ANGLE_UNIT_VALUE_1_0,
    "elevation": with_units!(u::LENGTH_UNIT_VALUE_1_0, ["m", "ft"]),
    "effective_time_frame": sub!(Rule::AllOf(&[&u::TIME_FRAME_1_0, &sub!(required!("date_time"))])),
    "number_of_satellites_in_view": INT4,
    "satellite_signal_strengths": sub!(
        Rule::Type(ARRAY),
        Rule::Items(&sub!(Rule::AllOf(&[
            &u::UNIT_VALUE_1_0,
            &sub!(props!("value": INT4, "unit": sub!(Rule::Enum(&["dB"])))),
        ]))),
    ),
    "number_of_satellites_in_fix": INT4,
    "positioning_system": sub!(
        Rule::Type(STRING_TYPE),
        Rule::Enum(&["GPS", "GLONASS", "Galileo", "Beidou", "COMPASS", "IRNSS", "QZSS"]),
    ),
});
