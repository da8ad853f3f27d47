//! Open mHealth medication schemas (`omh` namespace, draft-04): medication, prescriptions and their schedules,
//! dispensing, adherence and single doses.

use super::utility as u;
use super::{NUMBER, STRING, ieee};
use crate::omh::rules::{ARRAY, OBJECT, Rule, Schema};

pub(crate) static INTERVENTION_ADMINISTRATION_ROUTE_1_0: Schema = string_enum!("omh:intervention-administration-route:1.0" => [
    "arteriovenous fistula", "arteriovenous graft", "body cavity", "auricular", "buccal", "caudal", "colostomy",
    "conjunctival", "cutaneous", "dental", "digestive tract", "electro-osmosis", "endocervical", "endosinusial",
    "endotracheal", "enteral", "epidural", "esophagostomy", "extra-amniotic", "extracorporeal", "fistula",
    "gastro-intestinal stoma", "gastroenteral", "gastrostomy", "gingival", "ileostomy", "hemodialysis",
    "infiltration", "interstitial", "intra-abdominal", "intra-amniotic", "intra-arterial", "intra-articular",
    "intrabiliary", "intrabronchial", "intrabursal", "intracardiac", "intracartilaginous", "intracaudal",
    "intracavernous", "intracavitary", "intracerebral", "intracerebroventricular", "intracisternal", "intracolonic",
    "intracorneal", "intracoronal", "intracoronary", "intracorporus cavernosum", "intracranial", "intradermal",
    "intradiscal", "intraductal", "intraduodenal", "intradural", "intraepicardial", "intraepidermal",
    "intraesophageal", "intragastric", "intragingival", "intrahepatic", "intraileal", "intrajejunal",
    "intralesional", "intralingual", "intraluminal", "intralymphatic", "intramammary", "intramedullary",
    "intrameningeal", "intramuscular", "intramyometrial", "intranodal", "intraocular", "intraomentum",
    "intraosseous", "intraovarian", "intrapericardial", "intraperitoneal", "intrapleural", "intraprostatic",
    "intrapulmonary", "intraruminal", "intrasinal", "intraspinal", "intrasternal", "intrasynovial", "intratendinous",
    "intratesticular", "intrathecal", "intrathoracic", "intratubular", "intratumor", "intratympanic", "intrauterine",
    "intravascular", "intravenous", "intravenous central", "intravenous peripheral", "intraventricular",
    "intravesical", "intravitreal", "iontophoresis", "irrigation", "jejunostomy", "laryngeal",
    "lower respiratory tract", "mucous fistula", "nasal", "nasoduodenal", "nasogastric", "nasojejunal",
    "not applicable", "occlusive dressing technique", "ophthalmic", "oral", "orogastric", "oromucosal",
    "oropharyngeal", "otic", "parenteral", "paracervical", "paravertebral", "percutaneous", "periarticular",
    "peribulbar", "peridural", "perineural", "periodontal", "periosteal", "peritendinous", "periurethral", "rectal",
    "respiratory (inhalation)", "retrobulbar", "soft tissue", "subarachnoid", "subconjunctival", "subcutaneous",
    "subgingival", "sublingual", "submucosal", "suborbital", "subretinal", "subtendinous", "surgical cavity",
    "surgical drain", "topical", "transcervical", "transdermal", "transendocardial", "transmucosal",
    "transplacental", "transtracheal", "transtympanic", "transurethral", "tumor cavity", "ureteral", "urethral",
    "urostomy", "vaginal",
]);

pub(crate) static INTERVENTION_ADMINISTRATION_ROUTE_2_0: Schema = string_enum!("omh:intervention-administration-route:2.0" => [
    "arteriovenous fistula", "arteriovenous graft", "body cavity", "auricular", "buccal", "caudal", "colostomy",
    "conjunctival", "cutaneous", "dental", "digestive tract", "electro-osmosis", "endocervical", "endosinusial",
    "endotracheopulmonary", "enteral", "epidural", "esophagostomy", "extra-amniotic", "extracorporeal", "fistula",
    "gastro-intestinal stoma", "gastroenteral", "gastrostomy", "gingival", "ileostomy", "hemodialysis",
    "infiltration", "interstitial", "intra-abdominal", "intra-amniotic", "intra-arterial", "intra-articular",
    "intrabiliary", "intrabronchial", "intrabursal", "intracameral", "intracardiac", "intracartilaginous",
    "intracaudal", "intracavernous", "intracavitary", "intracerebral", "intracerebroventricular", "intracisternal",
    "intracolonic", "intracorneal", "intracoronal", "intracoronary", "intracorporus cavernosum", "intracranial",
    "intradermal", "intradiscal", "intraductal", "intraduodenal", "intradural", "intraepicardial", "intraepidermal",
    "intraesophageal", "intragastric", "intragingival", "intrahepatic", "intraileal", "intrajejunal",
    "intralesional", "intralingual", "intraluminal", "intralymphatic", "intramammary", "intramedullary",
    "intrameningeal", "intramural", "intramuscular", "intramyometrial", "intraneural", "intranodal", "intraocular",
    "intraomentum", "intraosseous", "intraovarian", "intrapericardial", "intraperitoneal", "intrapleural",
    "intraprostatic", "intrapulmonary", "intraruminal", "intrasinal", "intraspinal", "intrasternal", "intrasynovial",
    "intratendinous", "intratesticular", "intrathecal", "intrathoracic", "intratubular", "intratumor",
    "intratympanic", "intrauterine", "intravascular", "intravenous", "intravenous central", "intravenous peripheral",
    "intraventricular - cardiac", "intravesical", "intravitreal", "iontophoresis", "irrigation", "jejunostomy",
    "laryngeal", "lower respiratory tract", "mucous fistula", "nasal", "nasoduodenal", "nasogastric", "nasojejunal",
    "not applicable", "occlusive dressing technique", "ophthalmic", "oral", "orogastric", "oromucosal",
    "oropharyngeal", "otic", "parenteral", "paracervical", "paravertebral", "percutaneous", "periarticular",
    "peribulbar", "peridural", "perineural", "periodontal", "periosteal", "peritendinous", "periurethral", "rectal",
    "respiratory tract", "retrobulbar", "soft tissue", "subarachnoid", "subconjunctival", "subcutaneous",
    "subgingival", "sublesional", "sublingual", "submucosal", "suborbital", "subretinal", "subtendinous",
    "surgical cavity", "surgical drain", "topical", "transcervical", "transdermal", "transendocardial",
    "transmucosal", "transplacental", "transtracheal", "transtympanic", "transurethral", "tumor cavity", "ureteral",
    "urethral", "urostomy", "vaginal",
]);

pub(crate) static MEDICATION_DOSE_UNIT_1_0: Schema = string_enum!("omh:medication-dose-unit:1.0" => [
    "%", "AU", "AU/mL", "bar", "BAU", "BAU/mL", "bead", "BU", "capsule", "CCID_50", "cellular sheet", "Ci", "cloth",
    "cm^2", "D'ag'U", "disc", "dL", "douche", "drop", "FFU", "g", "globule", "granule", "gum", "hp_C", "hp_M",
    "hp_Q", "hp_X", "IU", "IU/L", "IU/mL", "kp_C", "L", "Lf", "LfU/mL", "lozenge", "mCi", "mCi/mL", "mEq", "mg",
    "mg/actuat", "mg/hr", "mg/mg", "mg/mL", "mL", "mmol", "mol", "mU", "ng", "nmol", "organisms", "pastille",
    "patch", "pellet", "PFU", "pill", "PNU", "PNU/mL", "pouch", "puff", "ring", "salve", "stick", "strip",
    "suppository", "swab", "tablet", "tampon", "tape", "tbsp", "TCID_50", "tsp", "U", "uCi", "ug", "ug/mL", "uL",
    "umol", "unt", "unt/mL", "USP'U", "vial", "wafer", "X",
]);

const INGREDIENT_UNITS: &[&str] = &[
    "%",
    "AU",
    "AU/mL",
    "BAU",
    "BAU/mL",
    "BU",
    "CCID_50",
    "Ci",
    "cm^2",
    "D'ag'U",
    "dL",
    "FFU",
    "g",
    "hp_C",
    "hp_M",
    "hp_Q",
    "hp_X",
    "IU",
    "IU/L",
    "IU/mL",
    "kp_C",
    "L",
    "Lf",
    "LfU/mL",
    "mCi",
    "mCi/mL",
    "mEq",
    "mg",
    "mg/actuat",
    "mg/hr",
    "mg/mg",
    "mg/mL",
    "mL",
    "mmol",
    "mol",
    "mU",
    "ng",
    "nmol",
    "organisms",
    "PFU",
    "PNU",
    "PNU/mL",
    "TCID_50",
    "U",
    "uCi",
    "ug",
    "ug/mL",
    "uL",
    "umol",
    "unt",
    "unt/mL",
    "USP'U",
    "X",
];

const DISPENSED_UNITS: &[&str] = &[
    "ampule",
    "applicator",
    "bag",
    "bar",
    "bead",
    "blister",
    "bottle",
    "box",
    "can",
    "canister",
    "capsule",
    "carton",
    "cartridge",
    "cellular sheet",
    "cloth",
    "container",
    "cup",
    "cylinder",
    "disc",
    "dose pack",
    "globule",
    "granule",
    "gum",
    "inhaler",
    "jar",
    "jug",
    "kit",
    "lozenge",
    "package",
    "packet",
    "pastille",
    "patch",
    "pellet",
    "piece",
    "pill",
    "pouch",
    "ring",
    "salve",
    "stick",
    "strip",
    "suppository",
    "swab",
    "syringe",
    "tablet",
    "tampon",
    "tape",
    "troche",
    "tube",
    "vial",
    "wafer",
];

pub(crate) static MEDICATION_DOSE_UNIT_VALUE_1_0: Schema = named!("omh:medication-dose-unit-value:1.0" =>
    Rule::Type(OBJECT),
    Rule::AllOf(&[&u::UNIT_VALUE_1_0, &sub!(props!("unit": MEDICATION_DOSE_UNIT_1_0))]),
);
/// draft-07, on IEEE's unit-value.
pub(crate) static MEDICATION_DOSE_UNIT_VALUE_1_1: Schema = named!("omh:medication-dose-unit-value:1.1" =>
    Rule::Type(OBJECT),
    Rule::AllOf(&[&ieee::UNIT_VALUE_1_0, &sub!(props!("unit": MEDICATION_DOSE_UNIT_1_0))]),
);
pub(crate) static MEDICATION_DOSE_UNIT_VALUE_RANGE_1_0: Schema = named!("omh:medication-dose-unit-value-range:1.0" =>
    Rule::Type(OBJECT),
    Rule::AllOf(&[&u::UNIT_VALUE_RANGE_1_0, &sub!(props!("unit": MEDICATION_DOSE_UNIT_1_0))]),
);
pub(crate) static MEDICATION_DOSE_UNIT_VALUE_RANGE_1_1: Schema = named!("omh:medication-dose-unit-value-range:1.1" =>
    Rule::Type(OBJECT),
    Rule::AllOf(&[&ieee::UNIT_VALUE_RANGE_1_0, &sub!(props!("unit": MEDICATION_DOSE_UNIT_1_0))]),
);

/// A medication names its generic or trade name (anyOf of two `required`) and lists ingredient strengths.
pub(crate) static MEDICATION_1_0: Schema = named!("omh:medication:1.0" =>
    Rule::Type(OBJECT),
    props!(
        "generic_name": STRING,
        "trade_name": STRING,
        "strength": sub!(
            Rule::Type(ARRAY),
            Rule::Items(&sub!(
                Rule::Type(OBJECT),
                Rule::AllOf(&[
                    &u::UNIT_VALUE_1_0,
                    &sub!(props!("ingredient_name": STRING, "unit": sub!(Rule::Enum(INGREDIENT_UNITS)))),
                ]),
            )),
        ),
        "rxnorm_code": NUMBER,
    ),
    required!("strength"),
    Rule::AnyOf(&[&sub!(required!("generic_name")), &sub!(required!("trade_name"))]),
);

/// `dose_duration` and `dose_administration_duration`: exactly one way of saying how long.
static DURATION_CHOICE: Schema = sub!(
    Rule::Type(OBJECT),
    Rule::OneOf(&[
        &sub!(props!("duration": u::DURATION_UNIT_VALUE_1_0), required!("duration")),
        &sub!(props!("duration_range": u::DURATION_UNIT_VALUE_RANGE_1_0), required!("duration_range")),
        &sub!(props!("time_frame": u::TIME_FRAME_1_0), required!("time_frame")),
        &sub!(props!("free_text": STRING), required!("free_text")),
    ]),
);

static SCHEDULE: Schema = sub!(
    Rule::Type(ARRAY),
    Rule::Items(&sub!(
        Rule::Type(OBJECT),
        props!(
            "dose_duration": DURATION_CHOICE,
            "dose_administration_duration": DURATION_CHOICE,
            "medication_dose": sub!(
                Rule::Type(OBJECT),
                Rule::OneOf(&[
                    &sub!(props!("dose": MEDICATION_DOSE_UNIT_VALUE_1_0), required!("dose")),
                    &sub!(props!("dose_range": MEDICATION_DOSE_UNIT_VALUE_RANGE_1_0), required!("dose_range")),
                    &sub!(
                        props!("dose_array": sub!(
                            Rule::Type(ARRAY),
                            Rule::Items(&sub!(
                                Rule::Type(OBJECT),
                                props!("dose": MEDICATION_DOSE_UNIT_VALUE_1_0, "dose_trigger": STRING),
                                required!("dose", "dose_trigger"),
                            )),
                        )),
                        required!("dose_array"),
                    ),
                ]),
            ),
            "dose_recurrence": sub!(
                Rule::Type(OBJECT),
                props!(
                    "frequency": u::FREQUENCY_UNIT_VALUE_1_0,
                    "dose_prn_trigger": STRING,
                    "timing": sub!(
                        Rule::Type(ARRAY),
                        Rule::Items(&sub!(
                            Rule::Type(OBJECT),
                            props!(
                                "part_of_day": u::PART_OF_DAY_1_0,
                                "day_of_week": u::DAY_OF_WEEK_1_0,
                                "time_of_day": u::LOCAL_TIME_1_0,
                                "temporal_relationship_to_meal": u::TEMPORAL_RELATIONSHIP_TO_MEAL_1_2,
                                "temporal_relationship_to_sleep": u::TEMPORAL_RELATIONSHIP_TO_SLEEP_1_0,
                                "time_frame_of_temporal_relationship_to_meal": u::DURATION_UNIT_VALUE_1_0,
                                "time_frame_of_temporal_relationship_to_sleep": u::DURATION_UNIT_VALUE_1_0,
                            ),
                        )),
                    ),
                    "sequence": sub!(
                        Rule::Type(ARRAY),
                        Rule::Items(&sub!(
                            Rule::Type(OBJECT),
                            props!("unit": sub!(Rule::Enum(&["min", "h", "d", "wk", "Mo", "yr"])), "value": NUMBER),
                        )),
                    ),
                ),
            ),
        ),
        required!("dose_duration", "medication_dose", "dose_recurrence"),
    )),
);

/// 1.0 and 2.0 differ only in the route vocabulary.
macro_rules! prescription {
    ($name:literal, $route:expr) => {
        named!($name =>
            Rule::Type(OBJECT),
            props!("medication": MEDICATION_1_0, "route": $route, "prescription_trigger": STRING, "schedule": SCHEDULE),
            required!("medication", "schedule"),
        )
    };
}
pub(crate) static MEDICATION_PRESCRIPTION_1_0: Schema =
    prescription!("omh:medication-prescription:1.0", INTERVENTION_ADMINISTRATION_ROUTE_1_0);
pub(crate) static MEDICATION_PRESCRIPTION_2_0: Schema =
    prescription!("omh:medication-prescription:2.0", INTERVENTION_ADMINISTRATION_ROUTE_2_0);

macro_rules! schedule {
    ($name:literal, $prescription:expr) => {
        named!($name =>
            Rule::Type(OBJECT),
            Rule::AllOf(&[
                &$prescription,
                &sub!(props!("acceptable_window": sub!(
                    Rule::Type(OBJECT),
                    props!("before": u::DURATION_UNIT_VALUE_1_0, "after": u::DURATION_UNIT_VALUE_1_0),
                ))),
            ]),
        )
    };
}
pub(crate) static PATIENT_MEDICATION_SCHEDULE_1_0: Schema =
    schedule!("omh:patient-medication-schedule:1.0", MEDICATION_PRESCRIPTION_1_0);
pub(crate) static PATIENT_MEDICATION_SCHEDULE_2_0: Schema =
    schedule!("omh:patient-medication-schedule:2.0", MEDICATION_PRESCRIPTION_2_0);

macro_rules! dispensing {
    ($name:literal, $prescription:expr) => {
        named!($name =>
            Rule::Type(OBJECT),
            props!(
                "medication_prescription": $prescription,
                "medication_dispensed": STRING,
                "amount_dispensed": sub!(Rule::AllOf(&[
                    &u::UNIT_VALUE_1_0,
                    &sub!(props!("unit": sub!(Rule::Enum(DISPENSED_UNITS)))),
                ])),
                "time_frame_medication_dispensed": u::TIME_FRAME_1_0,
                "remaining_refills": NUMBER,
            ),
            required!("medication_prescription", "medication_dispensed", "amount_dispensed", "time_frame_medication_dispensed"),
        )
    };
}
pub(crate) static PHARMACY_MEDICATION_DISPENSING_1_0: Schema =
    dispensing!("omh:pharmacy-medication-dispensing:1.0", MEDICATION_PRESCRIPTION_1_0);
pub(crate) static PHARMACY_MEDICATION_DISPENSING_2_0: Schema =
    dispensing!("omh:pharmacy-medication-dispensing:2.0", MEDICATION_PRESCRIPTION_2_0);

macro_rules! adherence {
    ($name:literal, $prescription:expr) => {
        named!($name =>
            Rule::Type(OBJECT),
            props!(
                "medication_prescription": $prescription,
                "effective_time_frame": u::TIME_FRAME_1_0,
                "medication_adherence_percent": with_units!(u::UNIT_VALUE_1_0, ["%"]),
            ),
            required!("medication_prescription", "medication_adherence_percent"),
        )
    };
}
pub(crate) static MEDICATION_ADHERENCE_PERCENT_1_0: Schema =
    adherence!("omh:medication-adherence-percent:1.0", MEDICATION_PRESCRIPTION_1_0);
pub(crate) static MEDICATION_ADHERENCE_PERCENT_2_0: Schema =
    adherence!("omh:medication-adherence-percent:2.0", MEDICATION_PRESCRIPTION_2_0);

pub(crate) static REASON_SINGLE_MEDICATION_DOSE_NOT_TAKEN_1_0: Schema = named!("omh:reason-single-medication-dose-not-taken:1.0" =>
    Rule::Type(OBJECT),
    props!("medication": MEDICATION_1_0, "effective_time_frame": u::TIME_FRAME_1_0, "reason_for_missing_dose": STRING),
    required!("medication", "effective_time_frame", "reason_for_missing_dose"),
);

pub(crate) static SINGLE_MEDICATION_DOSE_TAKEN_1_0: Schema = named!("omh:single-medication-dose-taken:1.0" =>
    Rule::Type(OBJECT),
    props!(
        "medication": MEDICATION_1_0,
        "dose": MEDICATION_DOSE_UNIT_VALUE_1_0,
        "effective_time_frame": u::TIME_FRAME_1_0,
        "reason_dose_taken_not_as_prescribed": STRING,
    ),
    required!("medication", "dose", "effective_time_frame"),
);
