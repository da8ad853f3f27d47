//! A builtin schema written back as a JSON Schema document, so that extra schemas can `$ref` the builtin types
//! (unit values, time frames, ...) without jhe shipping or fetching the official files.

use super::rules::{ARRAY, BOOLEAN, INTEGER, INTEGER_DRAFT4, NUMBER, OBJECT, Rule, STRING, Schema};
use serde_json::{Map, Value, json};

fn type_names(types: u8) -> Value {
    let names: Vec<&str> = [
        (OBJECT, "object"),
        (ARRAY, "array"),
        (STRING, "string"),
        (NUMBER, "number"),
        (INTEGER | INTEGER_DRAFT4, "integer"),
        (BOOLEAN, "boolean"),
    ]
    .iter()
    .filter(|(bits, _)| types & bits != 0)
    .map(|(_, name)| *name)
    .collect();
    match names.as_slice() {
        [one] => json!(one),
        _ => json!(names),
    }
}

fn all(schemas: &[&Schema]) -> Value {
    Value::Array(schemas.iter().map(|schema| render(schema)).collect())
}

/// The JSON Schema of `schema`, every reference inlined.
pub(crate) fn render(schema: &Schema) -> Value {
    let mut object = Map::new();
    for rule in schema.rules {
        let (keyword, value) = match rule {
            Rule::Type(types) => ("type", type_names(*types)),
            Rule::Enum(values) => ("enum", json!(values)),
            Rule::Pattern(pattern) => ("pattern", json!(pattern.regex())),
            Rule::DateTime => ("format", json!("date-time")),
            Rule::Uri => ("format", json!("uri")),
            Rule::Properties(properties) => (
                "properties",
                Value::Object(properties.iter().map(|(key, s)| ((*key).to_owned(), render(s))).collect()),
            ),
            Rule::Required(names) => ("required", json!(names)),
            Rule::OnlyProperties(_) => ("additionalProperties", json!(false)),
            Rule::Items(items) => ("items", render(items)),
            Rule::MinItems(min) => ("minItems", json!(min)),
            Rule::AllOf(schemas) => ("allOf", all(schemas)),
            Rule::AnyOf(schemas) => ("anyOf", all(schemas)),
            Rule::OneOf(schemas) => ("oneOf", all(schemas)),
        };
        object.insert(keyword.to_owned(), value);
    }
    Value::Object(object)
}

/// A standalone draft-07 document with its address as `$id`.
pub(crate) fn render_document(schema: &Schema, id: &str) -> Value {
    let mut document = render(schema);
    if let Value::Object(object) = &mut document {
        object.insert("$schema".to_owned(), json!("http://json-schema.org/draft-07/schema#"));
        object.insert("$id".to_owned(), json!(id));
    }
    document
}
