//! Conformance with the official Open mHealth test data: every shouldPass file of a supported type and version
//! must validate and every shouldFail file must not. The folder comes from `JHE_OMH_TEST_DATA` (default: the
//! shared reference next to the project); without it the test reports that it was not run (see
//! `support/reference_data.rs`).
//!
//! Also runs the example data points of the reference (`JHE_EXAMPLE_DATA_POINTS`) through `validate_data_point`
//! and checks the derived effective time and values.

use jhe_schemas::omh::{SchemaId, Validators};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

#[path = "support/reference_data.rs"]
mod reference_data;

use reference_data::{EXAMPLE_DATA_POINTS, OMH_TEST_DATA, reference_folders};

/// Supported types that have no folder in the official test data.
const NO_OFFICIAL_TEST_DATA: &[&str] = &[
    "granola:hk-blood-type:1.0",
    "granola:hk-category-type:1.0",
    "granola:hk-category-type:1.1",
    "granola:hk-correlation-type:1.0",
    "granola:hk-quantity-type:1.0",
    "granola:hk-quantity-type:1.1",
    "ieee:ambient-light:1.0",
    "ieee:ambient-temperature:1.0",
    "ieee:apnea-hypopnea-index:1.0",
    "ieee:arousal-index:1.0",
    "ieee:body-adiposity-index:0.1",
    "ieee:body-height:0.1",
    "ieee:body-location:0.1",
    "ieee:body-mass-index:0.1",
    "ieee:body-weight:0.1",
    "ieee:data-point:1.0",
    "ieee:date-time:1.0",
    "ieee:deep-sleep:1.0",
    "ieee:descriptive-statistic-denominator:1.0",
    "ieee:descriptive-statistic:1.0",
    "ieee:duration-unit-value-range:1.0",
    "ieee:duration-unit-value:1.0",
    "ieee:food-entry:0.1",
    "ieee:frequency-unit-value:1.0",
    "ieee:header:1.0",
    "ieee:illuminance-unit-value:1.0",
    "ieee:kcal-unit-value:1.0",
    "ieee:length-unit-value:1.0",
    "ieee:light-sleep:1.0",
    "ieee:mass-unit-value:0.1",
    "ieee:percent-unit-value:1.0",
    "ieee:physical-activity:1.0",
    "ieee:schema-id:1.0",
    "ieee:sleep-episode:1.0",
    "ieee:sleep-onset-latency:1.0",
    "ieee:sleep-stage-summary:1.0",
    "ieee:snore-index:1.0",
    "ieee:sound-unit-value:1.0",
    "ieee:speed-unit-value:1.0",
    "ieee:survey-answer:1.0",
    "ieee:survey-categorical-answer:1.0",
    "ieee:survey-date-answer:1.0",
    "ieee:survey-item:1.0",
    "ieee:survey-question:1.0",
    "ieee:survey-time-answer:1.0",
    "ieee:survey-unit-value-answer:1.0",
    "ieee:survey:1.0",
    "ieee:temperature-unit-value:1.0",
    "ieee:time-in-bed:1.0",
    "ieee:total-sleep-time:1.0",
    "ieee:unit-value-range:1.0",
    "ieee:unit-value:1.0",
    "ieee:volume-unit-value:0.1",
    "ieee:wake-after-sleep-onset:1.0",
    "omh:acceleration-unit-value:1.1",
    "omh:angular-velocity-unit-value:1.1",
    "omh:body-location:1.1",
    "omh:day-of-week:1.0",
    "omh:descriptive-statistic:1.2",
    "omh:diastolic-blood-pressure:1.1",
    "omh:duration-unit-value-range:1.0",
    "omh:forced-expiratory-volume-1-second:1.0",
    "omh:forced-vital-capacity:1.0",
    "omh:full-date:1.0",
    "omh:magnetic-flux-density-unit-value:1.1",
    "omh:mass-unit-value:1.1",
    "omh:medication-dose-unit-value-range:1.0",
    "omh:medication-dose-unit-value-range:1.1",
    "omh:medication-dose-unit-value:1.0",
    "omh:medication-dose-unit-value:1.1",
    "omh:medication-dose-unit:1.0",
    "omh:pace-unit-value:1.1",
    "omh:plane-angle-unit-value:1.1",
    "omh:systolic-blood-pressure:1.1",
    "omh:temporal-relationship-to-meal:1.1",
    "omh:temporal-relationship-to-meal:1.2",
    "omh:volume-unit-value:1.1",
];

fn sorted_entries(dir: &Path) -> Vec<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|error| panic!("reading {}: {error}", dir.display()))
        .map(|entry| entry.expect("a folder entry").path())
        .collect();
    entries.sort();
    entries
}

fn name_of(path: &Path) -> String {
    path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default()
}

#[test]
fn official_test_data_agrees() {
    let Some([root]) = reference_folders("omh_conformance::official_test_data_agrees", [&OMH_TEST_DATA]) else {
        return;
    };
    let validators = Validators::builtin();
    let supported: BTreeSet<String> = validators.codes().iter().map(ToString::to_string).collect();
    let (mut files, mut passes, mut fails) = (0, 0, 0);
    let mut covered = BTreeSet::new();
    let mut skipped = BTreeSet::new();
    let mut disagreements = Vec::new();
    for namespace in sorted_entries(&root) {
        for name in sorted_entries(&namespace) {
            for version in sorted_entries(&name) {
                let id = SchemaId::new(&name_of(&namespace), &name_of(&name), &name_of(&version)).expect("a code");
                if !supported.contains(&id.to_string()) {
                    skipped.insert(id.to_string());
                    continue;
                }
                covered.insert(id.to_string());
                for (expectation, should_pass) in [("shouldPass", true), ("shouldFail", false)] {
                    let dir = version.join(expectation);
                    if !dir.is_dir() {
                        continue;
                    }
                    for file in sorted_entries(&dir) {
                        let text = std::fs::read(&file).expect("a test file");
                        let outcome = validators.validate_body(&id, &text);
                        files += 1;
                        if should_pass {
                            passes += 1
                        } else {
                            fails += 1
                        }
                        if outcome.is_ok() != should_pass {
                            disagreements.push(format!("{id} {expectation}/{}: {outcome:?}", name_of(&file)));
                        }
                    }
                }
            }
        }
    }
    println!(
        "official test data: {files} files ({passes} shouldPass, {fails} shouldFail) over {} supported types/versions; \
         {} folders of unsupported types skipped: {skipped:?}",
        covered.len(),
        skipped.len()
    );
    assert!(disagreements.is_empty(), "{} disagreements:\n{}", disagreements.len(), disagreements.join("\n"));
    assert!(files > 0, "no test files under {}", root.display());

    let without_data: BTreeSet<String> = supported.difference(&covered).cloned().collect();
    let listed: BTreeSet<String> = NO_OFFICIAL_TEST_DATA.iter().map(|code| (*code).to_owned()).collect();
    assert_eq!(without_data, listed, "supported types without test data must be listed in NO_OFFICIAL_TEST_DATA");
}

#[test]
fn reference_example_data_points_validate_with_their_time_and_values() {
    let suite = "omh_conformance::reference_example_data_points_validate_with_their_time_and_values";
    let Some([root]) = reference_folders(suite, [&EXAMPLE_DATA_POINTS]) else {
        return;
    };
    let validators = Validators::builtin();
    let mut checked = 0;
    for file in sorted_entries(&root) {
        let text = std::fs::read(&file).expect("an example");
        let point = validators.validate_data_point(&text).unwrap_or_else(|error| panic!("{}: {error}", file.display()));
        let json: serde_json::Value = serde_json::from_slice(&text).expect("JSON");
        let schema_id = SchemaId::from_json(&json["header"]["schema_id"]).expect("a schema id");
        assert_eq!(point.coding_code, schema_id.to_string());
        assert_eq!(point.coding_system, "https://w3id.org/openmhealth");
        let date_time = json["body"]["effective_time_frame"]["date_time"].as_str().expect("a date_time");
        let expected = chrono::DateTime::parse_from_rfc3339(date_time).expect("RFC 3339").timestamp_micros();
        assert_eq!((point.effective.start_micros, point.effective.end_micros), (expected, None), "{}", file.display());
        let body = &json["body"];
        if schema_id.name == "blood-pressure" {
            assert_eq!(point.values.systolic, body["systolic_blood_pressure"]["value"].as_f64());
            assert_eq!(point.values.diastolic, body["diastolic_blood_pressure"]["value"].as_f64());
            assert_eq!(point.values.unit.as_deref(), Some("mmHg"));
        } else {
            let measure = &body[schema_id.name.replace('-', "_")];
            assert_eq!(point.values.value, measure["value"].as_f64(), "{}", file.display());
            assert_eq!(point.values.unit.as_deref(), measure["unit"].as_str(), "{}", file.display());
        }
        checked += 1;
    }
    println!("reference example data points: {checked} validated");
    assert!(checked >= 7, "expected the 7 reference examples, found {checked}");
}
