//! Any bytes posted as a FHIR Observation: the parser answers Ok or Err, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(upload) = jhe_schemas::fhir::parse_observation(data) {
        let _ = upload.first_error();
    }
});
