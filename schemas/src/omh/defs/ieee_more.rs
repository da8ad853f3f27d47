//! IEEE 1752.1 metabolic (0.1 drafts) and survey schemas (draft-07).

use super::ieee::{
    DATE_TIME_1_0, DESCRIPTIVE_STATISTIC_1_0, KCAL_UNIT_VALUE_1_0, LENGTH_UNIT_VALUE_1_0, PERCENT_UNIT_VALUE_1_0,
    TIME_FRAME_1_0, UNIT_VALUE_1_0,
};
use super::{NUMBER, STRING};
use crate::omh::rules::{ARRAY, BOOLEAN, NUMBER as NUMBER_TYPE, OBJECT, Pattern, Rule, STRING as STRING_TYPE, Schema};

pub(crate) static MASS_UNIT_VALUE_0_1: Schema = unit_value_type!("ieee:mass-unit-value:0.1" => UNIT_VALUE_1_0,
    ["fg", "pg", "ng", "ug", "mg", "g", "kg", "Metric Ton", "gr", "oz", "lb", "Ton"]);

pub(crate) static VOLUME_UNIT_VALUE_0_1: Schema = unit_value_type!("ieee:volume-unit-value:0.1" => UNIT_VALUE_1_0, [
    "fL", "pL", "nL", "uL", "mL", "cL", "dL", "L", "kL", "fl oz", "Cup", "in^3", "pt", "qt", "gal", "tsp", "tbsp",
]);

pub(crate) static BODY_LOCATION_0_1: Schema = string_enum!("ieee:body-location:0.1" => [
    "left ankle", "right ankle", "ankle", "left hip", "right hip", "hip", "left thigh", "right thigh", "thigh", "thorax",
    "left thorax", "middle left thorax", "right thorax", "middle right thorax", "left upper arm", "right upper arm",
    "upper arm", "wrist", "left wrist", "right wrist", "left axilla", "right axilla", "axilla", "finger", "forehead",
    "mouth", "rectum", "temporal artery", "toe", "right foot", "left foot", "foot", "ear lobe", "right ear lobe",
    "left ear lobe", "tympanic membrane", "vagina", "abdomen", "skin", "posterior surface of upper arm",
]);

pub(crate) static BODY_WEIGHT_0_1: Schema = named!("ieee:body-weight:0.1" =>
    Rule::Type(OBJECT),
    props!(
        "body_weight": MASS_UNIT_VALUE_0_1,
        "body_fat_percentage": PERCENT_UNIT_VALUE_1_0,
        "body_fat_weight": MASS_UNIT_VALUE_0_1,
        "body_skeletal_muscle_mass_percentage": PERCENT_UNIT_VALUE_1_0,
        "body_skeletal_muscle_mass_weight": MASS_UNIT_VALUE_0_1,
        "body_water_mass_percentage": PERCENT_UNIT_VALUE_1_0,
        "body_water_mass_weight": MASS_UNIT_VALUE_0_1,
        "body_bone_mass_percentage": PERCENT_UNIT_VALUE_1_0,
        "body_bone_mass_weight": MASS_UNIT_VALUE_0_1,
        "effective_time_frame": TIME_FRAME_1_0,
        "descriptive_statistic": DESCRIPTIVE_STATISTIC_1_0,
    ),
    required!("body_weight", "effective_time_frame"),
);

/// The metabolic measures that are one value with time frame and statistic.
macro_rules! metabolic {
    ($name:literal, $key:literal => $value:expr) => {
        named!($name =>
            Rule::Type(OBJECT),
            props!($key: $value, "effective_time_frame": TIME_FRAME_1_0, "descriptive_statistic": DESCRIPTIVE_STATISTIC_1_0),
            required!($key, "effective_time_frame"),
        )
    };
}
pub(crate) static BODY_HEIGHT_0_1: Schema = metabolic!("ieee:body-height:0.1", "body_height" => LENGTH_UNIT_VALUE_1_0);
pub(crate) static BODY_MASS_INDEX_0_1: Schema =
    metabolic!("ieee:body-mass-index:0.1", "body_mass_index" => with_units!(UNIT_VALUE_1_0, ["kg/m^2"]));
pub(crate) static BODY_ADIPOSITY_INDEX_0_1: Schema =
    metabolic!("ieee:body-adiposity-index:0.1", "body_adiposity_index" => PERCENT_UNIT_VALUE_1_0);

/// `just_value`: `{"value": number}` and nothing else (`additionalProperties: false`).
static JUST_VALUE: Schema =
    sub!(Rule::Type(OBJECT), Rule::OnlyProperties(&["value"]), props!("value": NUMBER), required!("value"));

pub(crate) static FOOD_ENTRY_0_1: Schema = named!("ieee:food-entry:0.1" =>
    Rule::Type(OBJECT),
    props!(
        "food_name": STRING,
        "food_amount": sub!(Rule::Type(OBJECT), Rule::OneOf(&[&MASS_UNIT_VALUE_0_1, &VOLUME_UNIT_VALUE_0_1, &JUST_VALUE])),
        "meal": sub!(Rule::Enum(&["breakfast", "lunch", "dinner", "snack"])),
        "protein": MASS_UNIT_VALUE_0_1,
        "carbohydrate": MASS_UNIT_VALUE_0_1,
        "fat": MASS_UNIT_VALUE_0_1,
        "saturated_fat": MASS_UNIT_VALUE_0_1,
        "cholesterol": MASS_UNIT_VALUE_0_1,
        "sodium": MASS_UNIT_VALUE_0_1,
        "potassium": MASS_UNIT_VALUE_0_1,
        "fiber": MASS_UNIT_VALUE_0_1,
        "sugar": MASS_UNIT_VALUE_0_1,
        "calories": KCAL_UNIT_VALUE_1_0,
        "effective_time_frame": sub!(Rule::OneOf(&[
            &TIME_FRAME_1_0,
            &sub!(props!("full_date": sub!(Rule::Type(STRING_TYPE), Rule::Pattern(Pattern::FullDate))), required!("full_date")),
        ])),
    ),
    required!("food_name", "food_amount", "effective_time_frame"),
);

pub(crate) static SURVEY_QUESTION_1_0: Schema = named!("ieee:survey-question:1.0" =>
    Rule::Type(OBJECT),
    props!("label": STRING, "text": STRING),
    required!("text"),
);

pub(crate) static SURVEY_ANSWER_1_0: Schema = named!("ieee:survey-answer:1.0" =>
    Rule::Type(OBJECT),
    props!("value": sub!(Rule::Type(OBJECT | NUMBER_TYPE | STRING_TYPE | BOOLEAN))),
    required!("value"),
);

pub(crate) static SURVEY_CATEGORICAL_ANSWER_1_0: Schema = named!("ieee:survey-categorical-answer:1.0" =>
    Rule::Type(OBJECT),
    Rule::AllOf(&[&SURVEY_ANSWER_1_0, &sub!(props!("code": sub!(Rule::Type(NUMBER_TYPE | STRING_TYPE))))]),
);

/// A non-string `value` passes all three patterns, so it matches the oneOf three times and fails (as in the file).
pub(crate) static SURVEY_DATE_ANSWER_1_0: Schema = named!("ieee:survey-date-answer:1.0" =>
    Rule::Type(OBJECT),
    Rule::AllOf(&[&SURVEY_ANSWER_1_0, &sub!(props!("value": sub!(Rule::OneOf(&[
        &sub!(Rule::Pattern(Pattern::FullDate)),
        &sub!(Rule::Pattern(Pattern::YearMonth)),
        &sub!(Rule::Pattern(Pattern::Year)),
    ]))))]),
);

pub(crate) static SURVEY_TIME_ANSWER_1_0: Schema = named!("ieee:survey-time-answer:1.0" =>
    Rule::Type(OBJECT),
    Rule::AllOf(&[&SURVEY_ANSWER_1_0, &sub!(props!("value": sub!(Rule::Pattern(Pattern::HourMinute))))]),
);

pub(crate) static SURVEY_UNIT_VALUE_ANSWER_1_0: Schema = named!("ieee:survey-unit-value-answer:1.0" =>
    Rule::Type(OBJECT),
    Rule::AllOf(&[&SURVEY_ANSWER_1_0, &sub!(props!("value": UNIT_VALUE_1_0))]),
);

pub(crate) static SURVEY_ITEM_1_0: Schema = named!("ieee:survey-item:1.0" =>
    Rule::Type(OBJECT),
    props!(
        "question": SURVEY_QUESTION_1_0,
        "answers": sub!(Rule::Type(ARRAY), Rule::Items(&SURVEY_ANSWER_1_0)),
        "asked_date_time": DATE_TIME_1_0,
        "answered_date_time": DATE_TIME_1_0,
    ),
    required!("question", "answers"),
);

pub(crate) static SURVEY_1_0: Schema = named!("ieee:survey:1.0" =>
    Rule::Type(OBJECT),
    props!(
        "items": sub!(Rule::Type(ARRAY), Rule::Items(&SURVEY_ITEM_1_0), Rule::MinItems(1)),
        "delivery_details": sub!(
            Rule::Type(OBJECT),
            props!(
                "start_date_time": DATE_TIME_1_0,
                "end_date_time": DATE_TIME_1_0,
                "end_status": sub!(Rule::Type(STRING_TYPE), Rule::Enum(&["abandoned", "completed", "missed"])),
            ),
        ),
        "score": sub!(Rule::OneOf(&[&NUMBER, &sub!(Rule::Type(OBJECT))])),
    ),
    required!("items", "delivery_details"),
);
