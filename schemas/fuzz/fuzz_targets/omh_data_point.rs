//! Any bytes as an Open mHealth / IEEE 1752 data point, with and without a code: Ok or Err, never a panic; and
//! the fast paths (shapes of earlier inputs, the one-pass validator) give exactly what the detailed validator
//! gives whenever they answer.
#![no_main]

use jhe_schemas::omh::{SchemaId, Validators};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let validators = Validators::builtin();
    let detailed = validators.detailed_data_point(data, None);
    assert_eq!(validators.validate_data_point(data), detailed);
    if let Some(point) = validators.one_pass_data_point(data, None) {
        assert_eq!(Ok(point), detailed);
    }
    if let Some(point) = validators.shape_data_point(data) {
        assert_eq!(Ok(point), detailed);
    }
    // keep the shape of every valid input: later inputs (often mutations of it) are checked along it
    if detailed.is_ok() {
        validators.learn_shape(data);
    }
    if let Ok(code) = "omh:blood-pressure:4.0".parse::<SchemaId>() {
        assert_eq!(validators.validate_data_point_as(data, &code), validators.detailed_data_point(data, Some(&code)));
    }
});
