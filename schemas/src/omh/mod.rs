//! Open mHealth / IEEE 1752 data points: validation and the values jhe derives from them.
//!
//! Every builtin data type is a Rust definition (module `defs`) that mirrors its official JSON Schema keyword for
//! keyword, checked by a small interpreter of the JSON Schema semantics the schemas use (`rules`) over a
//! borrowed JSON tree (`json`). One deliberate difference from the official files: `format: date-time` is
//! asserted (RFC 3339 with an offset), because partitions and search dates come from it; so is the one
//! `format: uri` (`omh:schema-id:1.1`), as the official test data expects. Other formats (`uuid`, `iri` in the
//! IEEE header) stay annotations. Operators can add data types as JSON Schema files
//! ([`Validators::with_extra_schemas`]).
//!
//! Validating a data point takes one of three roads, all with the same answer (the tests compare them):
//! * a point of a shape this thread has seen before (same keys in the same order, same schema id, other values)
//!   is checked along that shape: its values only (`fast::shape`);
//! * otherwise one pass over the bytes validates while parsing, with the rule tables compiled into plans and no
//!   tree (`fast`); both roads derive the time and values from the text and allocate nothing;
//! * a point either road does not accept (every invalid one, and valid ones with escapes in strings or a key
//!   repeated after an invalid value) is parsed into a tree (`json`) and validated by the interpreter of the
//!   rules (`rules`), which explains what is wrong with the JSON path of each error.
//!
//! ```
//! use jhe_schemas::omh::{SchemaId, Validators};
//! let validators = Validators::builtin();
//! let id: SchemaId = "omh:heart-rate:2.0".parse().unwrap();
//! let error = validators
//!     .validate_body(&id, br#"{"heart_rate":{"value":60,"unit":"bpm"},"effective_time_frame":{"date_time":"2025-01-01T00:00:00Z"}}"#)
//!     .unwrap_err();
//! assert_eq!(error.to_string(), r#"body.heart_rate.unit: expected "beats/min""#);
//! ```

mod datetime;
mod defs;
mod derive;
mod extra;
mod fast;
mod json;
mod render;
mod rules;
mod schema_id;
mod uri;
mod validate;

pub use extra::code_for_schema_id;
pub use json::JsonError;
pub use schema_id::{SchemaId, SchemaIdError};
pub use validate::Validators;

use std::fmt;

/// One broken rule: where (`body.heart_rate.unit`, `header.schema_id.version`) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    pub path: String,
    pub rule: String,
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.rule)
    }
}

fn join(errors: &[ValidationError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// Why a data point (or a body) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataPointError {
    #[error(transparent)]
    Json(#[from] JsonError),
    /// The header or the body breaks its schema.
    #[error("{}", join(.0))]
    Invalid(Vec<ValidationError>),
    #[error("header.schema_id: unknown data type {0} (no builtin or extra schema has this code)")]
    UnknownSchema(SchemaId),
    /// Valid, but nothing says when it happened (no `effective_time_frame`, and no header to fall back on).
    #[error("body.effective_time_frame: required by jhe to place the data point in time")]
    NoEffectiveTime,
}

impl DataPointError {
    /// The individual errors (one for the variants that are not a list).
    pub fn errors(&self) -> Vec<ValidationError> {
        match self {
            DataPointError::Invalid(errors) => errors.clone(),
            other => vec![ValidationError { path: "(document)".to_owned(), rule: other.to_string() }],
        }
    }
}

/// Why extra schemas could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error("extra schema #{index} has no \"$id\" (jhe derives the data type code from it)")]
    MissingId { index: usize },
    #[error("extra schema {id}: the \"$id\" must end in /<namespace>/<name>-<major>.<minor>.json")]
    UncodedId { id: String },
    #[error("extra schema {id}: {code} is a builtin data type")]
    ShadowsBuiltin { id: String, code: SchemaId },
    #[error("extra schema {id}: {code} is defined twice")]
    Duplicate { id: String, code: SchemaId },
    #[error("extra schema {id}: {message}")]
    Invalid { id: String, message: String },
}
