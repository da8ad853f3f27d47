//! `<namespace>:<name>:<version>`, the code of a data type (`omh:heart-rate:2.0`), and the `schema_id` object of
//! a data point header.

use std::fmt;
use std::str::FromStr;

/// Which data type a body is: namespace (`omh`, `ieee`, or a site's own), name and version.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SchemaId {
    pub namespace: String,
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid schema code {code:?}: expected <namespace>:<name>:<version>, e.g. omh:heart-rate:2.0")]
pub struct SchemaIdError {
    pub code: String,
}

pub(crate) const OMH_SYSTEM: &str = "https://w3id.org/openmhealth";
pub(crate) const IEEE_SYSTEM: &str = "https://w3id.org/ieee1752";

fn is_valid_part(part: &str) -> bool {
    !part.is_empty() && !part.contains(|c: char| c == ':' || c.is_whitespace() || c.is_control())
}

impl SchemaId {
    pub fn new(namespace: &str, name: &str, version: &str) -> Result<Self, SchemaIdError> {
        if [namespace, name, version].into_iter().all(is_valid_part) {
            Ok(SchemaId { namespace: namespace.to_owned(), name: name.to_owned(), version: version.to_owned() })
        } else {
            Err(SchemaIdError { code: format!("{namespace}:{name}:{version}") })
        }
    }

    /// From a header's `schema_id` object (`{"namespace": "omh", "name": "heart-rate", "version": "2.0"}`).
    pub fn from_json(schema_id: &serde_json::Value) -> Result<Self, SchemaIdError> {
        let part = |key: &str| schema_id.get(key).and_then(serde_json::Value::as_str).unwrap_or("");
        SchemaId::new(part("namespace"), part("name"), part("version"))
    }

    /// The FHIR coding system of observations of this type: IEEE's for `ieee`, Open mHealth's otherwise (site
    /// codes live under the Open mHealth system, as in the reference).
    pub fn coding_system(&self) -> &'static str {
        if self.namespace == "ieee" { IEEE_SYSTEM } else { OMH_SYSTEM }
    }
}

impl FromStr for SchemaId {
    type Err = SchemaIdError;

    fn from_str(code: &str) -> Result<Self, Self::Err> {
        let mut parts = code.split(':');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(namespace), Some(name), Some(version), None) => SchemaId::new(namespace, name, version),
            _ => Err(SchemaIdError { code: code.to_owned() }),
        }
    }
}

impl fmt::Display for SchemaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.namespace, self.name, self.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays_codes() {
        let id: SchemaId = "omh:heart-rate:2.0".parse().unwrap();
        assert_eq!((id.namespace.as_str(), id.name.as_str(), id.version.as_str()), ("omh", "heart-rate", "2.0"));
        assert_eq!(id.to_string(), "omh:heart-rate:2.0");
        assert_eq!(id.coding_system(), OMH_SYSTEM);
        for bad in ["", "omh:heart-rate", "omh:heart-rate:2.0:x", "omh::2.0", "omh:heart rate:2.0"] {
            assert!(bad.parse::<SchemaId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn reads_a_header_schema_id() {
        let header = serde_json::json!({"namespace": "ieee", "name": "sleep-stage-summary", "version": "1.0"});
        let id = SchemaId::from_json(&header).unwrap();
        assert_eq!(id.to_string(), "ieee:sleep-stage-summary:1.0");
        assert_eq!(id.coding_system(), IEEE_SYSTEM);
        assert!(SchemaId::from_json(&serde_json::json!({"namespace": "omh", "name": "x"})).is_err());
    }
}
