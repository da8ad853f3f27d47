//! Any bytes as an Open mHealth / IEEE 1752 data point, with and without a code: Ok or Err, never a panic.
#![no_main]

use jhe_schemas::omh::{SchemaId, Validators};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let validators = Validators::builtin();
    let _ = validators.validate_data_point(data);
    if let Ok(code) = "omh:blood-pressure:4.0".parse::<SchemaId>() {
        let _ = validators.validate_data_point_as(data, &code);
    }
});
