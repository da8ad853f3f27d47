//! [`Validators`]: the builtin schemas (Rust) plus, optionally, an operator's extra JSON Schemas (the `jsonschema`
//! crate), behind one API that validates bodies and whole data points.

use super::defs::{self, IEEE_DATA_POINT};
use super::derive::{measured_values, time_frame};
use super::extra::ExtraSchemas;
use super::fast;
use super::json::{Doc, JsonError, NodeId, ROOT};
use super::rules::{Failure, Schema, Segment};
use super::schema_id::SchemaId;
use super::{DataPointError, LoadError, ValidationError};
use crate::{EffectiveTime, ValidatedDataPoint};
use std::borrow::Cow;
use std::sync::Arc;

/// Validates Open mHealth / IEEE 1752 data points. `Validators::builtin()` costs nothing; cloning is cheap.
#[derive(Debug, Clone, Default)]
pub struct Validators {
    extra: Option<Arc<ExtraSchemas>>,
}

enum Found<'v> {
    /// The schema and its index in `defs::builtins()`.
    Builtin(&'static Schema, usize),
    Extra(&'v jsonschema::Validator),
}

fn failures_to_errors(failures: Vec<Failure>) -> Vec<ValidationError> {
    failures.into_iter().map(|failure| ValidationError { path: failure.path, rule: failure.rule }).collect()
}

/// The errors of `schema` on `value`, with paths under `prefix`.
fn explain(schema: &Schema, doc: &Doc<'_>, node: NodeId, prefix: Option<&'static str>) -> Vec<ValidationError> {
    let mut path: Vec<Segment<'_>> = prefix.map(Segment::Key).into_iter().collect();
    let mut failures = Vec::new();
    schema.explain(doc, node, &mut path, &mut failures);
    if failures.is_empty() {
        // explain mirrors is_valid rule for rule; this only guards against ever reporting "invalid" with no reason
        failures.push(Failure {
            path: prefix.unwrap_or("(document)").to_owned(),
            rule: format!("does not match {}", if schema.name.is_empty() { "the schema" } else { schema.name }),
            missing: false,
        });
    }
    failures_to_errors(failures)
}

impl Validators {
    /// The builtin Open mHealth and IEEE 1752 types.
    pub fn builtin() -> Self {
        Validators { extra: None }
    }

    /// The builtin types plus `schemas` (JSON Schema documents, each answering to the code derived from its `$id`:
    /// see [`super::code_for_schema_id`]). References resolve among these schemas and the builtin ones, never
    /// over the network.
    pub fn with_extra_schemas(schemas: Vec<serde_json::Value>) -> Result<Self, LoadError> {
        Ok(Validators { extra: Some(Arc::new(ExtraSchemas::load(schemas)?)) })
    }

    /// Every code this validates: the builtin ones then the extra ones.
    pub fn codes(&self) -> Vec<SchemaId> {
        let builtin = defs::builtins().iter().map(|b| SchemaId {
            namespace: b.namespace.to_owned(),
            name: b.name.to_owned(),
            version: b.version.to_owned(),
        });
        builtin.chain(self.extra.iter().flat_map(|extra| extra.codes())).collect()
    }

    fn find(&self, namespace: &str, name: &str, version: &str) -> Option<Found<'_>> {
        if let Some((index, builtin)) = defs::find_builtin(namespace, name, version) {
            return Some(Found::Builtin(builtin.schema, index));
        }
        self.extra.as_ref()?.find(namespace, name, version).map(Found::Extra)
    }

    pub fn is_known(&self, id: &SchemaId) -> bool {
        self.find(&id.namespace, &id.name, &id.version).is_some()
    }

    /// Validates a body (the JSON text of one) as data type `id`. Error paths start with `body`.
    pub fn validate_body(&self, id: &SchemaId, body: &[u8]) -> Result<(), DataPointError> {
        let found =
            self.find(&id.namespace, &id.name, &id.version).ok_or_else(|| DataPointError::UnknownSchema(id.clone()))?;
        if let Found::Builtin(_, index) = found
            && fast::body_verdict(index, body) == Some(true)
        {
            return Ok(());
        }
        let doc = Doc::parse(body)?;
        check_body(&found, &doc, ROOT, body, false).map_err(DataPointError::Invalid)
    }

    /// What the fast path alone decides about a body of builtin type `id`: valid, invalid, or `None` when it
    /// leaves the document to the detailed validator (an escape in a string, deep nesting, an extra type, ...).
    /// For tests that compare it with the detailed validator and with the official schemas.
    #[doc(hidden)]
    pub fn fast_body_verdict(&self, id: &SchemaId, body: &[u8]) -> Option<bool> {
        let (index, _) = defs::find_builtin(&id.namespace, &id.name, &id.version)?;
        fast::body_verdict(index, body)
    }

    /// [`Self::validate_data_point`] by the fast path alone (shapes seen before, then the one-pass validator):
    /// `None` when it leaves the document to the detailed validator (which it does for every invalid document).
    /// For tests and benchmarks.
    #[doc(hidden)]
    pub fn fast_data_point(&self, json: &[u8], code: Option<&SchemaId>) -> Option<ValidatedDataPoint> {
        fast::data_point(json, code)
    }

    /// [`Self::fast_data_point`] by the one-pass validator alone, without the shapes of earlier points.
    #[doc(hidden)]
    pub fn one_pass_data_point(&self, json: &[u8], code: Option<&SchemaId>) -> Option<ValidatedDataPoint> {
        fast::one_pass_data_point(json, code)
    }

    /// [`Self::fast_data_point`] by the shapes of earlier points alone (kept per thread): `None` when `json` has
    /// none of them, or its values do not pass the same checks.
    #[doc(hidden)]
    pub fn shape_data_point(&self, json: &[u8]) -> Option<ValidatedDataPoint> {
        fast::shape_data_point(json)
    }

    /// Keeps the shape of `json` (a data point the one-pass validator accepts) for this thread now; whether it
    /// could.
    #[doc(hidden)]
    pub fn learn_shape(&self, json: &[u8]) -> bool {
        fast::learn_shape(json)
    }

    /// [`Self::validate_data_point`] (with `code`: [`Self::validate_data_point_as`]) by the detailed validator
    /// alone, the reference the fast path is tested against.
    #[doc(hidden)]
    pub fn detailed_data_point(
        &self,
        json: &[u8],
        code: Option<&SchemaId>,
    ) -> Result<ValidatedDataPoint, DataPointError> {
        match code {
            Some(code) => self.detailed_data_point_as(json, code),
            None => self.check_data_point(&Doc::parse(json)?, json, None),
        }
    }

    /// [`Self::validate_body`] for a body already parsed by serde_json.
    pub fn validate_body_value(&self, id: &SchemaId, body: &serde_json::Value) -> Result<(), DataPointError> {
        let text = serde_json::to_vec(body)
            .map_err(|_| DataPointError::Json(JsonError { line: 1, column: 1, message: "unserializable value" }))?;
        self.validate_body(id, &text)
    }

    /// Validates a whole data point: the header against IEEE 1752 header 1.0, the body against the type its
    /// `header.schema_id` names; then derives the effective time (from `body.effective_time_frame`, or the
    /// header's `source_creation_date_time` when the type has none) and the measured values.
    ///
    /// The common case (a builtin type, strings without escapes) is checked in one pass over the bytes; a
    /// document that pass does not accept is validated again by the detailed validator, which reports the errors.
    pub fn validate_data_point(&self, json: &[u8]) -> Result<ValidatedDataPoint, DataPointError> {
        if let Some(point) = fast::data_point(json, None) {
            return Ok(point);
        }
        let doc = Doc::parse(json)?;
        self.check_data_point(&doc, json, None)
    }

    /// Like [`Self::validate_data_point`] with the body validated as `code` whatever the header says; a document
    /// without a `header` is taken as the body itself.
    pub fn validate_data_point_as(&self, json: &[u8], code: &SchemaId) -> Result<ValidatedDataPoint, DataPointError> {
        if let Some(point) = fast::data_point(json, Some(code)) {
            return Ok(point);
        }
        self.detailed_data_point_as(json, code)
    }

    fn detailed_data_point_as(&self, json: &[u8], code: &SchemaId) -> Result<ValidatedDataPoint, DataPointError> {
        let doc = Doc::parse(json)?;
        if doc.get(ROOT, "header").is_some() {
            return self.check_data_point(&doc, json, Some(code));
        }
        let found = self
            .find(&code.namespace, &code.name, &code.version)
            .ok_or_else(|| DataPointError::UnknownSchema(code.clone()))?;
        check_body(&found, &doc, ROOT, json, false).map_err(DataPointError::Invalid)?;
        let effective = doc.get(ROOT, "effective_time_frame").and_then(|frame| time_frame(&doc, frame));
        Ok(ValidatedDataPoint {
            coding_system: code.coding_system(),
            coding_code: Cow::Owned(code.to_string()),
            effective: effective.ok_or(DataPointError::NoEffectiveTime)?,
            values: measured_values(&doc, ROOT, &code.name),
        })
    }

    /// Whether a document is valid, as `jhe validate` decides: a data point (header and body) validated against
    /// its header's `schema_id` or, when given, `code`; with `code`, a document without a `header` is validated
    /// as a body of that type.
    pub fn validate_document(&self, json: &[u8], code: Option<&SchemaId>) -> Result<(), DataPointError> {
        if fast::data_point(json, code).is_some() {
            return Ok(());
        }
        let doc = Doc::parse(json)?;
        match code {
            Some(code) if doc.get(ROOT, "header").is_none() => {
                let found = self
                    .find(&code.namespace, &code.name, &code.version)
                    .ok_or_else(|| DataPointError::UnknownSchema(code.clone()))?;
                check_body(&found, &doc, ROOT, json, false).map_err(DataPointError::Invalid)
            }
            _ => self.check_data_point(&doc, json, code).map(drop),
        }
    }

    fn check_data_point(
        &self,
        doc: &Doc<'_>,
        json: &[u8],
        code: Option<&SchemaId>,
    ) -> Result<ValidatedDataPoint, DataPointError> {
        let mut errors = Vec::new();
        if !IEEE_DATA_POINT.is_valid(doc, ROOT) {
            errors = explain(&IEEE_DATA_POINT, doc, ROOT, None);
        }
        let header = doc.get(ROOT, "header");
        let schema_id = header.and_then(|header| doc.get(header, "schema_id"));
        let text = |key: &str| schema_id.and_then(|id| doc.get(id, key)).and_then(|part| doc.str(part)).unwrap_or("");
        let (namespace, name, version) = match code {
            Some(code) => (code.namespace.as_str(), code.name.as_str(), code.version.as_str()),
            None => (text("namespace"), text("name"), text("version")),
        };
        let body = doc.get(ROOT, "body");
        let found = self.find(namespace, name, version);
        match (&found, body) {
            (Some(found), Some(body)) => {
                if let Err(body_errors) = check_body(found, doc, body, json, true) {
                    errors.extend(body_errors);
                }
            }
            (None, _) if errors.is_empty() => {
                return Err(DataPointError::UnknownSchema(SchemaId {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                    version: version.to_owned(),
                }));
            }
            _ => {}
        }
        if !errors.is_empty() {
            return Err(DataPointError::Invalid(errors));
        }
        let body = body.ok_or(DataPointError::NoEffectiveTime)?;
        let effective = doc
            .get(body, "effective_time_frame")
            .and_then(|frame| time_frame(doc, frame))
            .or_else(|| {
                let created = doc.str(doc.get(header?, "source_creation_date_time")?)?;
                let start_micros = super::datetime::parse_date_time(created)?;
                Some(EffectiveTime { start_micros, end_micros: None })
            })
            .ok_or(DataPointError::NoEffectiveTime)?;
        let coding_system =
            if namespace == "ieee" { super::schema_id::IEEE_SYSTEM } else { super::schema_id::OMH_SYSTEM };
        let coding_code = match defs::find_builtin(namespace, name, version) {
            Some((_, builtin)) => Cow::Borrowed(builtin.code),
            None => Cow::Owned([namespace, ":", name, ":", version].concat()),
        };
        Ok(ValidatedDataPoint { coding_system, coding_code, effective, values: measured_values(doc, body, name) })
    }
}

/// Validates `body` (a node of `doc`, whose text is `json`; the `body` member when `in_data_point`) with a
/// builtin or an extra schema.
fn check_body(
    found: &Found<'_>,
    doc: &Doc<'_>,
    body: NodeId,
    json: &[u8],
    in_data_point: bool,
) -> Result<(), Vec<ValidationError>> {
    match found {
        Found::Builtin(schema, _) => {
            if schema.is_valid(doc, body) {
                Ok(())
            } else {
                Err(explain(schema, doc, body, Some("body")))
            }
        }
        Found::Extra(validator) => {
            // The slow path: extra types are validated by the jsonschema crate on a serde_json tree.
            let parsed: serde_json::Value = serde_json::from_slice(json).map_err(|error| {
                vec![ValidationError { path: "(document)".to_owned(), rule: format!("invalid JSON: {error}") }]
            })?;
            let instance = if in_data_point { parsed.get("body").unwrap_or(&serde_json::Value::Null) } else { &parsed };
            super::extra::validate(validator, instance)
        }
    }
}
