//! Granola's HealthKit schemas (`granola` namespace, draft-04), built on the Open mHealth utility types.

use super::measures::PHYSICAL_ACTIVITY_1_2 as PHYSICAL_ACTIVITY;
use super::utility as u;
use super::{BOOL, NUMBER, STRING};
use crate::omh::rules::{ARRAY, OBJECT, Rule, Schema};

pub(crate) static HK_BLOOD_TYPE_1_0: Schema = string_enum!("granola:hk-blood-type:1.0" => [
    "A+", "A-", "B+", "B-", "AB+", "O+", "O-",
]);

pub(crate) static HK_CATEGORY_TYPE_1_0: Schema = string_enum!("granola:hk-category-type:1.0" => [
    "HKCategoryTypeIdentifierSleepAnalysis",
]);

pub(crate) static HK_CATEGORY_TYPE_1_1: Schema = string_enum!("granola:hk-category-type:1.1" => [
    "HKCategoryTypeIdentifierSleepAnalysis", "HKCategoryTypeIdentifierAppleStandHour",
    "HKCategoryTypeIdentifierCervicalMucusQuality", "HKCategoryTypeIdentifierOvulationTestResult",
    "HKCategoryTypeIdentifierMenstrualFlow", "HKCategoryTypeIdentifierIntermenstrualBleeding",
    "HKCategoryTypeIdentifierSexualActivity",
]);

pub(crate) static HK_CORRELATION_TYPE_1_0: Schema = string_enum!("granola:hk-correlation-type:1.0" => [
    "HKCorrelationTypeIdentifierBloodPressure", "HKCorrelationTypeIdentifierFood",
]);

pub(crate) static HK_QUANTITY_TYPE_1_0: Schema = string_enum!("granola:hk-quantity-type:1.0" => [
    "HKQuantityTypeIdentifierBodyMassIndex", "HKQuantityTypeIdentifierBodyFatPercentage",
    "HKQuantityTypeIdentifierHeight", "HKQuantityTypeIdentifierBodyMass", "HKQuantityTypeIdentifierLeanBodyMass",
    "HKQuantityTypeIdentifierStepCount", "HKQuantityTypeIdentifierDistanceWalkingRunning",
    "HKQuantityTypeIdentifierDistanceCycling", "HKQuantityTypeIdentifierBasalEnergyBurned",
    "HKQuantityTypeIdentifierActiveEnergyBurned", "HKQuantityTypeIdentifierFlightsClimbed",
    "HKQuantityTypeIdentifierNikeFuel", "HKQuantityTypeIdentifierHeartRate",
    "HKQuantityTypeIdentifierBodyTemperature", "HKQuantityTypeIdentifierBloodPressureSystolic",
    "HKQuantityTypeIdentifierBloodPressureDiastolic", "HKQuantityTypeIdentifierRespiratoryRate",
    "HKQuantityTypeIdentifierOxygenSaturation", "HKQuantityTypeIdentifierPeripheralPerfusionIndex",
    "HKQuantityTypeIdentifierBloodGlucose", "HKQuantityTypeIdentifierNumberOfTimesFallen",
    "HKQuantityTypeIdentifierElectrodermalActivity", "HKQuantityTypeIdentifierInhalerUsage",
    "HKQuantityTypeIdentifierBloodAlcoholContent", "HKQuantityTypeIdentifierForcedVitalCapacity",
    "HKQuantityTypeIdentifierForcedExpiratoryVolume1", "HKQuantityTypeIdentifierPeakExpiratoryFlowRate",
    "HKQuantityTypeIdentifierDietaryFatTotal", "HKQuantityTypeIdentifierDietaryFatPolyunsaturated",
    "HKQuantityTypeIdentifierDietaryFatMonounsaturated", "HKQuantityTypeIdentifierDietaryFatSaturated",
    "HKQuantityTypeIdentifierDietaryCholesterol", "HKQuantityTypeIdentifierDietarySodium",
    "HKQuantityTypeIdentifierDietaryCarbohydrates", "HKQuantityTypeIdentifierDietaryFiber",
    "HKQuantityTypeIdentifierDietarySugar", "HKQuantityTypeIdentifierDietaryEnergyConsumed",
    "HKQuantityTypeIdentifierDietaryProtein", "HKQuantityTypeIdentifierDietaryVitaminA",
    "HKQuantityTypeIdentifierDietaryVitaminB6", "HKQuantityTypeIdentifierDietaryVitaminB12",
    "HKQuantityTypeIdentifierDietaryVitaminC", "HKQuantityTypeIdentifierDietaryVitaminD",
    "HKQuantityTypeIdentifierDietaryVitaminE", "HKQuantityTypeIdentifierDietaryVitaminK",
    "HKQuantityTypeIdentifierDietaryCalcium", "HKQuantityTypeIdentifierDietaryIron",
    "HKQuantityTypeIdentifierDietaryThiamin", "HKQuantityTypeIdentifierDietaryRiboflavin",
    "HKQuantityTypeIdentifierDietaryNiacin", "HKQuantityTypeIdentifierDietaryFolate",
    "HKQuantityTypeIdentifierDietaryBiotin", "HKQuantityTypeIdentifierDietaryPantothenicAcid",
    "HKQuantityTypeIdentifierDietaryPhosphorus", "HKQuantityTypeIdentifierDietaryIodine",
    "HKQuantityTypeIdentifierDietaryMagnesium", "HKQuantityTypeIdentifierDietaryZinc",
    "HKQuantityTypeIdentifierDietarySelenium", "HKQuantityTypeIdentifierDietaryCopper",
    "HKQuantityTypeIdentifierDietaryManganese", "HKQuantityTypeIdentifierDietaryChromium",
    "HKQuantityTypeIdentifierDietaryMolybdenum", "HKQuantityTypeIdentifierDietaryChloride",
    "HKQuantityTypeIdentifierDietaryPotassium", "HKQuantityTypeIdentifierDietaryCaffeine",
]);

pub(crate) static HK_QUANTITY_TYPE_1_1: Schema = string_enum!("granola:hk-quantity-type:1.1" => [
    "HKQuantityTypeIdentifierBodyMassIndex", "HKQuantityTypeIdentifierBodyFatPercentage",
    "HKQuantityTypeIdentifierHeight", "HKQuantityTypeIdentifierBodyMass", "HKQuantityTypeIdentifierLeanBodyMass",
    "HKQuantityTypeIdentifierStepCount", "HKQuantityTypeIdentifierDistanceWalkingRunning",
    "HKQuantityTypeIdentifierDistanceCycling", "HKQuantityTypeIdentifierBasalEnergyBurned",
    "HKQuantityTypeIdentifierActiveEnergyBurned", "HKQuantityTypeIdentifierFlightsClimbed",
    "HKQuantityTypeIdentifierNikeFuel", "HKQuantityTypeIdentifierHeartRate",
    "HKQuantityTypeIdentifierBodyTemperature", "HKQuantityTypeIdentifierBloodPressureSystolic",
    "HKQuantityTypeIdentifierBloodPressureDiastolic", "HKQuantityTypeIdentifierRespiratoryRate",
    "HKQuantityTypeIdentifierOxygenSaturation", "HKQuantityTypeIdentifierPeripheralPerfusionIndex",
    "HKQuantityTypeIdentifierBloodGlucose", "HKQuantityTypeIdentifierNumberOfTimesFallen",
    "HKQuantityTypeIdentifierElectrodermalActivity", "HKQuantityTypeIdentifierInhalerUsage",
    "HKQuantityTypeIdentifierBloodAlcoholContent", "HKQuantityTypeIdentifierForcedVitalCapacity",
    "HKQuantityTypeIdentifierForcedExpiratoryVolume1", "HKQuantityTypeIdentifierPeakExpiratoryFlowRate",
    "HKQuantityTypeIdentifierDietaryFatTotal", "HKQuantityTypeIdentifierDietaryFatPolyunsaturated",
    "HKQuantityTypeIdentifierDietaryFatMonounsaturated", "HKQuantityTypeIdentifierDietaryFatSaturated",
    "HKQuantityTypeIdentifierDietaryCholesterol", "HKQuantityTypeIdentifierDietarySodium",
    "HKQuantityTypeIdentifierDietaryCarbohydrates", "HKQuantityTypeIdentifierDietaryFiber",
    "HKQuantityTypeIdentifierDietarySugar", "HKQuantityTypeIdentifierDietaryEnergyConsumed",
    "HKQuantityTypeIdentifierDietaryProtein", "HKQuantityTypeIdentifierDietaryVitaminA",
    "HKQuantityTypeIdentifierDietaryVitaminB6", "HKQuantityTypeIdentifierDietaryVitaminB12",
    "HKQuantityTypeIdentifierDietaryVitaminC", "HKQuantityTypeIdentifierDietaryVitaminD",
    "HKQuantityTypeIdentifierDietaryVitaminE", "HKQuantityTypeIdentifierDietaryVitaminK",
    "HKQuantityTypeIdentifierDietaryCalcium", "HKQuantityTypeIdentifierDietaryIron",
    "HKQuantityTypeIdentifierDietaryThiamin", "HKQuantityTypeIdentifierDietaryRiboflavin",
    "HKQuantityTypeIdentifierDietaryNiacin", "HKQuantityTypeIdentifierDietaryFolate",
    "HKQuantityTypeIdentifierDietaryBiotin", "HKQuantityTypeIdentifierDietaryPantothenicAcid",
    "HKQuantityTypeIdentifierDietaryPhosphorus", "HKQuantityTypeIdentifierDietaryIodine",
    "HKQuantityTypeIdentifierDietaryMagnesium", "HKQuantityTypeIdentifierDietaryZinc",
    "HKQuantityTypeIdentifierDietarySelenium", "HKQuantityTypeIdentifierDietaryCopper",
    "HKQuantityTypeIdentifierDietaryManganese", "HKQuantityTypeIdentifierDietaryChromium",
    "HKQuantityTypeIdentifierDietaryMolybdenum", "HKQuantityTypeIdentifierDietaryChloride",
    "HKQuantityTypeIdentifierDietaryPotassium", "HKQuantityTypeIdentifierDietaryCaffeine",
    "HKQuantityTypeIdentifierDietaryWater", "HKQuantityTypeIdentifierBasalBodyTemperature",
    "HKQuantityTypeIdentifierUVExposure",
]);

pub(crate) static HK_METADATA_1_0: Schema = named!("granola:hk-metadata:1.0" =>
    Rule::Type(ARRAY),
    Rule::Items(&sub!(
        Rule::Type(OBJECT),
        props!("key": STRING, "value": sub!(Rule::OneOf(&[&STRING, &NUMBER, &BOOL]))),
        required!("key", "value"),
    )),
);

pub(crate) static HK_CATEGORY_SAMPLE_1_0: Schema = named!("granola:hk-category-sample:1.0" =>
    Rule::Type(OBJECT),
    props!(
        "effective_time_frame": u::TIME_FRAME_1_0,
        "category_value": STRING,
        "category_type": HK_CATEGORY_TYPE_1_1,
        "metadata": HK_METADATA_1_0,
    ),
    required!("effective_time_frame", "category_value", "category_type"),
);

pub(crate) static HK_QUANTITY_SAMPLE_1_0: Schema = named!("granola:hk-quantity-sample:1.0" =>
    Rule::Type(OBJECT),
    Rule::AllOf(&[
        &sub!(
            props!("effective_time_frame": u::TIME_FRAME_1_0, "quantity_type": HK_QUANTITY_TYPE_1_1, "metadata": HK_METADATA_1_0),
            required!("effective_time_frame", "quantity_type"),
        ),
        &sub!(Rule::OneOf(&[
            &sub!(props!("unit_value": u::UNIT_VALUE_1_0), required!("unit_value")),
            &sub!(props!("count": NUMBER), required!("count")),
        ])),
    ]),
);

pub(crate) static HK_CORRELATION_1_0: Schema = named!("granola:hk-correlation:1.0" =>
    Rule::Type(OBJECT),
    Rule::AllOf(&[
        &sub!(
            props!(
                "correlation_type": HK_CORRELATION_TYPE_1_0,
                "effective_time_frame": u::TIME_FRAME_1_0,
                "metadata": HK_METADATA_1_0,
            ),
            required!("correlation_type", "effective_time_frame"),
        ),
        &sub!(Rule::AnyOf(&[
            &sub!(
                props!("quantity_samples": sub!(Rule::Type(ARRAY), Rule::MinItems(1), Rule::Items(&HK_QUANTITY_SAMPLE_1_0))),
                required!("quantity_samples"),
            ),
            &sub!(
                props!("category_samples": sub!(Rule::Type(ARRAY), Rule::MinItems(1), Rule::Items(&HK_CATEGORY_SAMPLE_1_0))),
                required!("category_samples"),
            ),
        ])),
    ]),
);

/// `physical-activity-1.x` (1.2) plus HealthKit's own properties; `"activity_name": {}` accepts anything.
pub(crate) static HK_WORKOUT_1_0: Schema = named!("granola:hk-workout:1.0" =>
    Rule::Type(OBJECT),
    Rule::AllOf(&[
        &PHYSICAL_ACTIVITY,
        &sub!(
            props!(
                "activity_name": sub!(),
                "effective_time_frame": u::TIME_FRAME_1_0,
                "duration": with_units!(u::DURATION_UNIT_VALUE_1_0, ["sec"]),
                "kcal_burned": u::KCAL_UNIT_VALUE_1_0,
                "metadata": HK_METADATA_1_0,
            ),
            required!("effective_time_frame", "activity_name"),
        ),
    ]),
);
