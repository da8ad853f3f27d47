//! How values are written on the wire where the reference Exchange has its own conventions.

use chrono::{DateTime, Utc};
use serde::Serializer;

/// Datetimes as the reference's REST renderer writes them: ISO-8601, microseconds only when non-zero, `Z`.
pub(crate) fn serialize_drf_datetime<S: Serializer>(
    value: &DateTime<Utc>,
    serializer: S,
) -> std::result::Result<S::Ok, S::Error> {
    let format = if value.timestamp_subsec_micros() == 0 { "%Y-%m-%dT%H:%M:%SZ" } else { "%Y-%m-%dT%H:%M:%S%.6fZ" };
    serializer.collect_str(&value.format(format))
}
