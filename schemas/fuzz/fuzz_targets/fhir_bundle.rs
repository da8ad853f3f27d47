//! Any bytes posted as a batch/transaction Bundle: the parser answers Ok or Err, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = jhe_schemas::fhir::parse_bundle(data);
});
