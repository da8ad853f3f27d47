//! The Open mHealth and IEEE 1752 schemas jhe knows, written in Rust with the building blocks of
//! [`super::rules`]. Each `static` mirrors one official schema file keyword for keyword (its `$ref`s point to the
//! statics of the referenced files; a `-1.x` reference points to the version its alias file names), so that
//! validating with it accepts and rejects exactly what the official file does, `format: date-time` aside.

/// An anonymous sub-schema: `{ rules... }`.
macro_rules! sub {
    ($($rule:expr),* $(,)?) => {
        $crate::omh::rules::Schema { name: "", rules: &[$($rule),*] }
    };
}

/// A whole schema document, named by its code for messages.
macro_rules! named {
    ($name:literal => $($rule:expr),* $(,)?) => {
        $crate::omh::rules::Schema { name: $name, rules: &[$($rule),*] }
    };
}

/// `"properties": { "key": schema, ... }`
macro_rules! props {
    ($($key:literal : $schema:expr),* $(,)?) => {
        $crate::omh::rules::Rule::Properties(&[$(($key, &$schema)),*])
    };
}

/// `"required": [...]`
macro_rules! required {
    ($($key:literal),* $(,)?) => {
        $crate::omh::rules::Rule::Required(&[$($key),*])
    };
}

/// `{"type": "string", "enum": [...]}`
macro_rules! string_enum {
    ($name:literal => [$($value:literal),* $(,)?]) => {
        named!($name => $crate::omh::rules::Rule::Type($crate::omh::rules::STRING), $crate::omh::rules::Rule::Enum(&[$($value),*]))
    };
}

/// `{"allOf": [base, {"properties": {"unit": {"enum": [...]}}}]}`: a unit value restricted to some units.
macro_rules! with_units {
    ($base:expr, [$($unit:literal),* $(,)?]) => {
        sub!($crate::omh::rules::Rule::AllOf(&[&$base, &sub!(props!("unit": sub!($crate::omh::rules::Rule::Enum(&[$($unit),*]))))]))
    };
}

/// A unit-value file: `{"type": "object", "allOf": [base, {"properties": {"unit": {"enum": [...]}}}]}`.
macro_rules! unit_value_type {
    ($name:literal => $base:expr, [$($unit:literal),* $(,)?]) => {
        named!($name =>
            $crate::omh::rules::Rule::Type($crate::omh::rules::OBJECT),
            $crate::omh::rules::Rule::AllOf(&[&$base, &sub!(props!("unit": sub!($crate::omh::rules::Rule::Enum(&[$($unit),*]))))]),
        )
    };
}

/// `{"allOf": [time_frame, {"required": ["time_interval"]}]}`
macro_rules! interval_frame {
    ($time_frame:expr) => {
        sub!($crate::omh::rules::Rule::AllOf(&[&$time_frame, &sub!(required!("time_interval"))]))
    };
}

/// `{"anyOf": [denominator, {"type": "string"}]}` (so any string passes, as the schemas say)
macro_rules! denominator_or_string {
    ($denominator:expr) => {
        sub!($crate::omh::rules::Rule::AnyOf(&[&$denominator, &$crate::omh::defs::STRING]))
    };
}

mod granola;
mod ieee;
mod ieee_more;
mod measures;
mod medication;
mod utility;

use super::rules::{
    BOOLEAN, INTEGER, INTEGER_DRAFT4, NUMBER as NUMBER_TYPE, OBJECT, Rule, STRING as STRING_TYPE, Schema,
};

pub(crate) static NUMBER: Schema = sub!(Rule::Type(NUMBER_TYPE));
pub(crate) static STRING: Schema = sub!(Rule::Type(STRING_TYPE));
pub(crate) static BOOL: Schema = sub!(Rule::Type(BOOLEAN));
/// draft-06+ `{"type": "integer"}`
pub(crate) static INT: Schema = sub!(Rule::Type(INTEGER));
/// draft-04 `{"type": "integer"}`
pub(crate) static INT4: Schema = sub!(Rule::Type(INTEGER_DRAFT4));
pub(crate) static ANY_OBJECT: Schema = sub!(Rule::Type(OBJECT));

/// A builtin schema: its namespace, name and version, and the Rust definition.
#[derive(Debug)]
pub(crate) struct Builtin {
    pub(crate) namespace: &'static str,
    pub(crate) name: &'static str,
    pub(crate) version: &'static str,
    /// `namespace:name:version`
    pub(crate) code: &'static str,
    pub(crate) schema: &'static Schema,
}

/// The IEEE 1752 data point (header 1.0 + an object body) every data point must be.
pub(crate) use ieee::DATA_POINT_1_0 as IEEE_DATA_POINT;
/// The IEEE 1752 header 1.0 (`header` of [`IEEE_DATA_POINT`]).
pub(crate) use ieee::HEADER_1_0 as IEEE_HEADER;

/// Every builtin schema, sorted by (namespace, name, version) for binary search.
pub(crate) fn builtins() -> &'static [Builtin] {
    &BUILTINS
}

/// A hash of `namespace:name:version`, a word at a time, so a lookup is one hash and a binary search over
/// integers.
fn code_hash(namespace: &str, name: &str, version: &str) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut hash: u64 = 0;
    for part in [namespace.as_bytes(), name.as_bytes(), version.as_bytes()] {
        let mut chunks = part.chunks_exact(8);
        for chunk in &mut chunks {
            hash = (hash.rotate_left(23) ^ u64::from_le_bytes(chunk.try_into().unwrap_or_default())).wrapping_mul(K);
        }
        let mut tail = [0u8; 8];
        tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        hash = (hash.rotate_left(23) ^ u64::from_le_bytes(tail) ^ part.len() as u64).wrapping_mul(K);
    }
    hash
}

pub(crate) fn find(namespace: &str, name: &str, version: &str) -> Option<&'static Schema> {
    find_builtin(namespace, name, version).map(|(_, builtin)| builtin.schema)
}

/// The builtin `namespace:name:version` and its index in [`builtins`].
pub(crate) fn find_builtin(namespace: &str, name: &str, version: &str) -> Option<(usize, &'static Builtin)> {
    static BY_HASH: std::sync::OnceLock<Vec<(u64, usize)>> = std::sync::OnceLock::new();
    let by_hash = BY_HASH.get_or_init(|| {
        let mut hashes: Vec<(u64, usize)> =
            BUILTINS.iter().enumerate().map(|(index, b)| (code_hash(b.namespace, b.name, b.version), index)).collect();
        hashes.sort_unstable();
        hashes
    });
    let hash = code_hash(namespace, name, version);
    let first = by_hash.partition_point(|(h, _)| *h < hash);
    by_hash[first..].iter().take_while(|(h, _)| *h == hash).map(|&(_, index)| (index, &BUILTINS[index])).find(
        |(_, b)| {
            let same = |a: &str, b: &str| super::fast::same(a.as_bytes(), b.as_bytes());
            same(b.name, name) && same(b.version, version) && same(b.namespace, namespace)
        },
    )
}

macro_rules! catalog {
    ($($namespace:ident $name:literal $version:literal => $schema:path),* $(,)?) => {
        static BUILTINS: [Builtin; [$($version),*].len()] = [
            $(Builtin {
                namespace: stringify!($namespace),
                name: $name,
                version: $version,
                code: concat!(stringify!($namespace), ":", $name, ":", $version),
                schema: &$schema,
            }),*
        ];
    };
}

catalog! {
    granola "hk-blood-type" "1.0" => granola::HK_BLOOD_TYPE_1_0,
    granola "hk-category-sample" "1.0" => granola::HK_CATEGORY_SAMPLE_1_0,
    granola "hk-category-type" "1.0" => granola::HK_CATEGORY_TYPE_1_0,
    granola "hk-category-type" "1.1" => granola::HK_CATEGORY_TYPE_1_1,
    granola "hk-correlation" "1.0" => granola::HK_CORRELATION_1_0,
    granola "hk-correlation-type" "1.0" => granola::HK_CORRELATION_TYPE_1_0,
    granola "hk-metadata" "1.0" => granola::HK_METADATA_1_0,
    granola "hk-quantity-sample" "1.0" => granola::HK_QUANTITY_SAMPLE_1_0,
    granola "hk-quantity-type" "1.0" => granola::HK_QUANTITY_TYPE_1_0,
    granola "hk-quantity-type" "1.1" => granola::HK_QUANTITY_TYPE_1_1,
    granola "hk-workout" "1.0" => granola::HK_WORKOUT_1_0,
    ieee "ambient-light" "1.0" => ieee::AMBIENT_LIGHT_1_0,
    ieee "ambient-sound" "1.0" => ieee::AMBIENT_SOUND_1_0,
    ieee "ambient-temperature" "1.0" => ieee::AMBIENT_TEMPERATURE_1_0,
    ieee "apnea-hypopnea-index" "1.0" => ieee::APNEA_HYPOPNEA_INDEX_1_0,
    ieee "arousal-index" "1.0" => ieee::AROUSAL_INDEX_1_0,
    ieee "body-adiposity-index" "0.1" => ieee_more::BODY_ADIPOSITY_INDEX_0_1,
    ieee "body-height" "0.1" => ieee_more::BODY_HEIGHT_0_1,
    ieee "body-location" "0.1" => ieee_more::BODY_LOCATION_0_1,
    ieee "body-mass-index" "0.1" => ieee_more::BODY_MASS_INDEX_0_1,
    ieee "body-posture" "1.0" => ieee::BODY_POSTURE_1_0,
    ieee "body-weight" "0.1" => ieee_more::BODY_WEIGHT_0_1,
    ieee "data-point" "1.0" => ieee::DATA_POINT_1_0,
    ieee "date-time" "1.0" => ieee::DATE_TIME_1_0,
    ieee "deep-sleep" "1.0" => ieee::DEEP_SLEEP_1_0,
    ieee "descriptive-statistic" "1.0" => ieee::DESCRIPTIVE_STATISTIC_1_0,
    ieee "descriptive-statistic-denominator" "1.0" => ieee::DESCRIPTIVE_STATISTIC_DENOMINATOR_1_0,
    ieee "duration-unit-value" "1.0" => ieee::DURATION_UNIT_VALUE_1_0,
    ieee "duration-unit-value-range" "1.0" => ieee::DURATION_UNIT_VALUE_RANGE_1_0,
    ieee "food-entry" "0.1" => ieee_more::FOOD_ENTRY_0_1,
    ieee "frequency-unit-value" "1.0" => ieee::FREQUENCY_UNIT_VALUE_1_0,
    ieee "header" "1.0" => ieee::HEADER_1_0,
    ieee "illuminance-unit-value" "1.0" => ieee::ILLUMINANCE_UNIT_VALUE_1_0,
    ieee "kcal-unit-value" "1.0" => ieee::KCAL_UNIT_VALUE_1_0,
    ieee "length-unit-value" "1.0" => ieee::LENGTH_UNIT_VALUE_1_0,
    ieee "light-sleep" "1.0" => ieee::LIGHT_SLEEP_1_0,
    ieee "mass-unit-value" "0.1" => ieee_more::MASS_UNIT_VALUE_0_1,
    ieee "percent-unit-value" "1.0" => ieee::PERCENT_UNIT_VALUE_1_0,
    ieee "physical-activity" "1.0" => ieee::PHYSICAL_ACTIVITY_1_0,
    ieee "schema-id" "1.0" => ieee::SCHEMA_ID_1_0,
    ieee "sleep-episode" "1.0" => ieee::SLEEP_EPISODE_1_0,
    ieee "sleep-onset-latency" "1.0" => ieee::SLEEP_ONSET_LATENCY_1_0,
    ieee "sleep-stage-summary" "1.0" => ieee::SLEEP_STAGE_SUMMARY_1_0,
    ieee "snore-index" "1.0" => ieee::SNORE_INDEX_1_0,
    ieee "sound-unit-value" "1.0" => ieee::SOUND_UNIT_VALUE_1_0,
    ieee "speed-unit-value" "1.0" => ieee::SPEED_UNIT_VALUE_1_0,
    ieee "survey" "1.0" => ieee_more::SURVEY_1_0,
    ieee "survey-answer" "1.0" => ieee_more::SURVEY_ANSWER_1_0,
    ieee "survey-categorical-answer" "1.0" => ieee_more::SURVEY_CATEGORICAL_ANSWER_1_0,
    ieee "survey-date-answer" "1.0" => ieee_more::SURVEY_DATE_ANSWER_1_0,
    ieee "survey-item" "1.0" => ieee_more::SURVEY_ITEM_1_0,
    ieee "survey-question" "1.0" => ieee_more::SURVEY_QUESTION_1_0,
    ieee "survey-time-answer" "1.0" => ieee_more::SURVEY_TIME_ANSWER_1_0,
    ieee "survey-unit-value-answer" "1.0" => ieee_more::SURVEY_UNIT_VALUE_ANSWER_1_0,
    ieee "temperature-unit-value" "1.0" => ieee::TEMPERATURE_UNIT_VALUE_1_0,
    ieee "time-frame" "1.0" => ieee::TIME_FRAME_1_0,
    ieee "time-in-bed" "1.0" => ieee::TIME_IN_BED_1_0,
    ieee "time-interval" "1.0" => ieee::TIME_INTERVAL_1_0,
    ieee "total-sleep-time" "1.0" => ieee::TOTAL_SLEEP_TIME_1_0,
    ieee "unit-value" "1.0" => ieee::UNIT_VALUE_1_0,
    ieee "unit-value-range" "1.0" => ieee::UNIT_VALUE_RANGE_1_0,
    ieee "volume-unit-value" "0.1" => ieee_more::VOLUME_UNIT_VALUE_0_1,
    ieee "wake-after-sleep-onset" "1.0" => ieee::WAKE_AFTER_SLEEP_ONSET_1_0,
    omh "acceleration" "1.0" => measures::ACCELERATION_1_0,
    omh "acceleration" "2.0" => measures::ACCELERATION_2_0,
    omh "acceleration-unit-value" "1.0" => utility::ACCELERATION_UNIT_VALUE_1_0,
    omh "acceleration-unit-value" "1.1" => utility::ACCELERATION_UNIT_VALUE_1_1,
    omh "activity-name" "1.0" => utility::ACTIVITY_NAME_1_0,
    omh "ambient-temperature" "1.0" => measures::AMBIENT_TEMPERATURE_1_0,
    omh "angular-velocity-unit-value" "1.0" => utility::ANGULAR_VELOCITY_UNIT_VALUE_1_0,
    omh "angular-velocity-unit-value" "1.1" => utility::ANGULAR_VELOCITY_UNIT_VALUE_1_1,
    omh "area-unit-value" "1.0" => utility::AREA_UNIT_VALUE_1_0,
    omh "area-unit-value" "1.1" => utility::AREA_UNIT_VALUE_1_1,
    omh "blood-glucose" "1.0" => measures::BLOOD_GLUCOSE_1_0,
    omh "blood-glucose" "2.0" => measures::BLOOD_GLUCOSE_2_0,
    omh "blood-glucose" "3.0" => measures::BLOOD_GLUCOSE_3_0,
    omh "blood-glucose" "4.0" => measures::BLOOD_GLUCOSE_4_0,
    omh "blood-pressure" "1.0" => measures::BLOOD_PRESSURE_1_0,
    omh "blood-pressure" "2.0" => measures::BLOOD_PRESSURE_2_0,
    omh "blood-pressure" "3.0" => measures::BLOOD_PRESSURE_3_0,
    omh "blood-pressure" "3.1" => measures::BLOOD_PRESSURE_3_1,
    omh "blood-pressure" "4.0" => measures::BLOOD_PRESSURE_4_0,
    omh "blood-specimen-type" "1.0" => utility::BLOOD_SPECIMEN_TYPE_1_0,
    omh "body-fat-percentage" "1.0" => measures::BODY_FAT_PERCENTAGE_1_0,
    omh "body-fat-percentage" "2.0" => measures::BODY_FAT_PERCENTAGE_2_0,
    omh "body-height" "1.0" => measures::BODY_HEIGHT_1_0,
    omh "body-height" "2.0" => measures::BODY_HEIGHT_2_0,
    omh "body-location" "1.0" => utility::BODY_LOCATION_1_0,
    omh "body-location" "1.1" => utility::BODY_LOCATION_1_1,
    omh "body-mass-index" "1.0" => measures::BODY_MASS_INDEX_1_0,
    omh "body-mass-index" "2.0" => measures::BODY_MASS_INDEX_2_0,
    omh "body-mass-index" "3.0" => measures::BODY_MASS_INDEX_3_0,
    omh "body-posture" "1.0" => utility::BODY_POSTURE_1_0,
    omh "body-temperature" "1.0" => measures::BODY_TEMPERATURE_1_0,
    omh "body-temperature" "2.0" => measures::BODY_TEMPERATURE_2_0,
    omh "body-temperature" "3.0" => measures::BODY_TEMPERATURE_3_0,
    omh "body-temperature" "4.0" => measures::BODY_TEMPERATURE_4_0,
    omh "body-weight" "1.0" => measures::BODY_WEIGHT_1_0,
    omh "body-weight" "2.0" => measures::BODY_WEIGHT_2_0,
    omh "body-weight" "3.0" => measures::BODY_WEIGHT_3_0,
    omh "breath-carbon-monoxide" "1.0" => measures::BREATH_CARBON_MONOXIDE_1_0,
    omh "calories-burned" "1.0" => measures::CALORIES_BURNED_1_0,
    omh "calories-burned" "2.0" => measures::CALORIES_BURNED_2_0,
    omh "data-point" "1.0" => utility::DATA_POINT_1_0,
    omh "date-time" "1.0" => utility::DATE_TIME_1_0,
    omh "day-of-week" "1.0" => utility::DAY_OF_WEEK_1_0,
    omh "descriptive-statistic" "1.0" => utility::DESCRIPTIVE_STATISTIC_1_0,
    omh "descriptive-statistic" "1.1" => utility::DESCRIPTIVE_STATISTIC_1_1,
    omh "descriptive-statistic" "1.2" => utility::DESCRIPTIVE_STATISTIC_1_2,
    omh "descriptive-statistic-denominator" "1.0" => utility::DESCRIPTIVE_STATISTIC_DENOMINATOR_1_0,
    omh "descriptive-statistic-denominator" "1.1" => utility::DESCRIPTIVE_STATISTIC_DENOMINATOR_1_1,
    omh "diastolic-blood-pressure" "1.0" => utility::DIASTOLIC_BLOOD_PRESSURE_1_0,
    omh "diastolic-blood-pressure" "1.1" => utility::DIASTOLIC_BLOOD_PRESSURE_1_1,
    omh "duration-unit-value" "1.0" => utility::DURATION_UNIT_VALUE_1_0,
    omh "duration-unit-value-range" "1.0" => utility::DURATION_UNIT_VALUE_RANGE_1_0,
    omh "expiratory-time" "1.0" => measures::EXPIRATORY_TIME_1_0,
    omh "forced-expiratory-volume-1-second" "1.0" => measures::FORCED_EXPIRATORY_VOLUME_1_SECOND_1_0,
    omh "forced-vital-capacity" "1.0" => measures::FORCED_VITAL_CAPACITY_1_0,
    omh "frequency-unit-value" "1.0" => utility::FREQUENCY_UNIT_VALUE_1_0,
    omh "full-date" "1.0" => utility::FULL_DATE_1_0,
    omh "geoposition" "1.0" => measures::GEOPOSITION_1_0,
    omh "header" "1.0" => utility::HEADER_1_0,
    omh "header" "1.1" => utility::HEADER_1_1,
    omh "header" "1.2" => utility::HEADER_1_2,
    omh "heart-rate" "1.0" => measures::HEART_RATE_1_0,
    omh "heart-rate" "1.1" => measures::HEART_RATE_1_1,
    omh "heart-rate" "2.0" => measures::HEART_RATE_2_0,
    omh "inspiratory-time" "1.0" => measures::INSPIRATORY_TIME_1_0,
    omh "intervention-administration-route" "1.0" => medication::INTERVENTION_ADMINISTRATION_ROUTE_1_0,
    omh "intervention-administration-route" "2.0" => medication::INTERVENTION_ADMINISTRATION_ROUTE_2_0,
    omh "kcal-unit-value" "1.0" => utility::KCAL_UNIT_VALUE_1_0,
    omh "length-unit-value" "1.0" => utility::LENGTH_UNIT_VALUE_1_0,
    omh "local-time" "1.0" => utility::LOCAL_TIME_1_0,
    omh "magnetic-flux-density-unit-value" "1.0" => utility::MAGNETIC_FLUX_DENSITY_UNIT_VALUE_1_0,
    omh "magnetic-flux-density-unit-value" "1.1" => utility::MAGNETIC_FLUX_DENSITY_UNIT_VALUE_1_1,
    omh "magnetic-force" "1.0" => measures::MAGNETIC_FORCE_1_0,
    omh "mass-unit-value" "1.0" => utility::MASS_UNIT_VALUE_1_0,
    omh "mass-unit-value" "1.1" => utility::MASS_UNIT_VALUE_1_1,
    omh "medication" "1.0" => medication::MEDICATION_1_0,
    omh "medication-adherence-percent" "1.0" => medication::MEDICATION_ADHERENCE_PERCENT_1_0,
    omh "medication-adherence-percent" "2.0" => medication::MEDICATION_ADHERENCE_PERCENT_2_0,
    omh "medication-dose-unit" "1.0" => medication::MEDICATION_DOSE_UNIT_1_0,
    omh "medication-dose-unit-value" "1.0" => medication::MEDICATION_DOSE_UNIT_VALUE_1_0,
    omh "medication-dose-unit-value" "1.1" => medication::MEDICATION_DOSE_UNIT_VALUE_1_1,
    omh "medication-dose-unit-value-range" "1.0" => medication::MEDICATION_DOSE_UNIT_VALUE_RANGE_1_0,
    omh "medication-dose-unit-value-range" "1.1" => medication::MEDICATION_DOSE_UNIT_VALUE_RANGE_1_1,
    omh "medication-prescription" "1.0" => medication::MEDICATION_PRESCRIPTION_1_0,
    omh "medication-prescription" "2.0" => medication::MEDICATION_PRESCRIPTION_2_0,
    omh "minute-volume" "1.0" => measures::MINUTE_VOLUME_1_0,
    omh "minutes-moderate-activity" "1.0" => measures::MINUTES_MODERATE_ACTIVITY_1_0,
    omh "orientation" "1.0" => measures::ORIENTATION_1_0,
    omh "oxygen-saturation" "1.0" => measures::OXYGEN_SATURATION_1_0,
    omh "oxygen-saturation" "2.0" => measures::OXYGEN_SATURATION_2_0,
    omh "pace" "1.0" => measures::PACE_1_0,
    omh "pace-unit-value" "1.0" => utility::PACE_UNIT_VALUE_1_0,
    omh "pace-unit-value" "1.1" => utility::PACE_UNIT_VALUE_1_1,
    omh "part-of-day" "1.0" => utility::PART_OF_DAY_1_0,
    omh "patient-medication-schedule" "1.0" => medication::PATIENT_MEDICATION_SCHEDULE_1_0,
    omh "patient-medication-schedule" "2.0" => medication::PATIENT_MEDICATION_SCHEDULE_2_0,
    omh "pharmacy-medication-dispensing" "1.0" => medication::PHARMACY_MEDICATION_DISPENSING_1_0,
    omh "pharmacy-medication-dispensing" "2.0" => medication::PHARMACY_MEDICATION_DISPENSING_2_0,
    omh "physical-activity" "1.0" => measures::PHYSICAL_ACTIVITY_1_0,
    omh "physical-activity" "1.1" => measures::PHYSICAL_ACTIVITY_1_1,
    omh "physical-activity" "1.2" => measures::PHYSICAL_ACTIVITY_1_2,
    omh "plane-angle-unit-value" "1.0" => utility::PLANE_ANGLE_UNIT_VALUE_1_0,
    omh "plane-angle-unit-value" "1.1" => utility::PLANE_ANGLE_UNIT_VALUE_1_1,
    omh "position-during-measurement" "1.0" => utility::POSITION_DURING_MEASUREMENT_1_0,
    omh "reason-single-medication-dose-not-taken" "1.0" => medication::REASON_SINGLE_MEDICATION_DOSE_NOT_TAKEN_1_0,
    omh "respiratory-rate" "1.0" => measures::RESPIRATORY_RATE_1_0,
    omh "respiratory-rate" "2.0" => measures::RESPIRATORY_RATE_2_0,
    omh "rr-interval" "1.0" => measures::RR_INTERVAL_1_0,
    omh "schema-id" "1.0" => utility::SCHEMA_ID_1_0,
    omh "schema-id" "1.1" => utility::SCHEMA_ID_1_1,
    omh "single-medication-dose-taken" "1.0" => medication::SINGLE_MEDICATION_DOSE_TAKEN_1_0,
    omh "sleep-duration" "1.0" => measures::SLEEP_DURATION_1_0,
    omh "sleep-duration" "2.0" => measures::SLEEP_DURATION_2_0,
    omh "sleep-episode" "1.0" => measures::SLEEP_EPISODE_1_0,
    omh "sleep-episode" "1.1" => measures::SLEEP_EPISODE_1_1,
    omh "specimen-source" "1.0" => utility::SPECIMEN_SOURCE_1_0,
    omh "specimen-source" "2.0" => utility::SPECIMEN_SOURCE_2_0,
    omh "specimen-source" "2.1" => utility::SPECIMEN_SOURCE_2_1,
    omh "speed" "1.0" => measures::SPEED_1_0,
    omh "speed-unit-value" "1.0" => utility::SPEED_UNIT_VALUE_1_0,
    omh "step-count" "1.0" => measures::STEP_COUNT_1_0,
    omh "step-count" "2.0" => measures::STEP_COUNT_2_0,
    omh "step-count" "3.0" => measures::STEP_COUNT_3_0,
    omh "systolic-blood-pressure" "1.0" => utility::SYSTOLIC_BLOOD_PRESSURE_1_0,
    omh "systolic-blood-pressure" "1.1" => utility::SYSTOLIC_BLOOD_PRESSURE_1_1,
    omh "temperature-unit-value" "1.0" => utility::TEMPERATURE_UNIT_VALUE_1_0,
    omh "temporal-relationship-to-meal" "1.0" => utility::TEMPORAL_RELATIONSHIP_TO_MEAL_1_0,
    omh "temporal-relationship-to-meal" "1.1" => utility::TEMPORAL_RELATIONSHIP_TO_MEAL_1_1,
    omh "temporal-relationship-to-meal" "1.2" => utility::TEMPORAL_RELATIONSHIP_TO_MEAL_1_2,
    omh "temporal-relationship-to-physical-activity" "1.0" => utility::TEMPORAL_RELATIONSHIP_TO_PHYSICAL_ACTIVITY_1_0,
    omh "temporal-relationship-to-sleep" "1.0" => utility::TEMPORAL_RELATIONSHIP_TO_SLEEP_1_0,
    omh "time-frame" "1.0" => utility::TIME_FRAME_1_0,
    omh "time-interval" "1.0" => utility::TIME_INTERVAL_1_0,
    omh "total-sleep-time" "1.0" => measures::TOTAL_SLEEP_TIME_1_0,
    omh "unit-value" "1.0" => utility::UNIT_VALUE_1_0,
    omh "unit-value-range" "1.0" => utility::UNIT_VALUE_RANGE_1_0,
    omh "ventilation-cycle-time" "1.0" => measures::VENTILATION_CYCLE_TIME_1_0,
    omh "volume-unit-value" "1.0" => utility::VOLUME_UNIT_VALUE_1_0,
    omh "volume-unit-value" "1.1" => utility::VOLUME_UNIT_VALUE_1_1,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_is_sorted_and_unique() {
        for pair in BUILTINS.windows(2) {
            let key = |b: &Builtin| (b.namespace, b.name, b.version);
            assert!(key(&pair[0]) < key(&pair[1]), "{:?} before {:?}", key(&pair[0]), key(&pair[1]));
        }
        assert!(find("omh", "heart-rate", "2.0").is_some());
        assert!(find("omh", "heart-rate", "9.0").is_none());
    }

    #[test]
    fn named_schemas_carry_their_code() {
        for builtin in builtins() {
            let code = format!("{}:{}:{}", builtin.namespace, builtin.name, builtin.version);
            assert!(
                builtin.schema.name.is_empty() || builtin.schema.name == code,
                "{code} is named {}",
                builtin.schema.name
            );
        }
    }
}
