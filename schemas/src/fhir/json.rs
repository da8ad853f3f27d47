//! A checked view of one FHIR JSON object: element names validated against the R5 definition, lookups by name, and
//! errors that carry the element's path.

use std::borrow::Cow;

use serde_json::Value;

use super::FhirError;

/// The JSON type an element must have (cardinality folded in: repeating elements are arrays).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Str,
    Bool,
    Int,
    Num,
    Obj,
    Arr,
    /// FHIR R5 `integer64`: a string in JSON; a plain integer is accepted too.
    Int64,
}

impl Kind {
    fn matches(self, value: &Value) -> bool {
        match self {
            Kind::Str => value.is_string(),
            Kind::Bool => value.is_boolean(),
            Kind::Int => value.is_i64() || value.is_u64(),
            Kind::Num => value.is_number(),
            Kind::Obj => value.is_object(),
            Kind::Arr => value.is_array(),
            Kind::Int64 => value.is_string() || value.is_i64() || value.is_u64(),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Kind::Str => "a string",
            Kind::Bool => "a boolean",
            Kind::Int => "an integer",
            Kind::Num => "a number",
            Kind::Obj => "an object",
            Kind::Arr => "an array",
            Kind::Int64 => "an integer64 (string)",
        }
    }
}

/// The element definitions of one FHIR type: name and JSON type.
pub(super) type Definition = &'static [(&'static str, Kind)];

/// The canonical (camelCase) spelling of a key. The reference snake-cases request keys and camel-cases them again
/// before parsing, so `value_attachment` is accepted for `valueAttachment`; primitive-extension keys (`_status`)
/// keep their leading underscore.
fn canonical_key(key: &str) -> Cow<'_, str> {
    let body = key.trim_start_matches('_');
    if !body.contains('_') {
        return Cow::Borrowed(key);
    }
    let mut out = String::with_capacity(key.len());
    out.push_str(&key[..key.len() - body.len()]);
    for (index, part) in body.split('_').enumerate() {
        let mut chars = part.chars();
        match chars.next() {
            Some(first) if index > 0 => {
                out.extend(first.to_uppercase());
                out.push_str(chars.as_str());
            }
            _ => out.push_str(part),
        }
    }
    Cow::Owned(out)
}

/// Quotes a value for an error message, cut to a readable length.
pub(super) fn quoted(value: &str) -> String {
    const MAX_CHARS: usize = 80;
    match value.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{:?}…", &value[..cut]),
        None => format!("{value:?}"),
    }
}

/// One JSON object checked against a FHIR type definition.
#[derive(Debug)]
pub(super) struct Element<'a> {
    path: String,
    fields: Vec<(Cow<'a, str>, &'a Value)>,
}

impl<'a> Element<'a> {
    /// Checks that `value` is an object whose elements are all defined, of the right JSON type and given once.
    /// JSON `null` counts as absent (the reference's parser treats it so).
    pub(super) fn parse(value: &'a Value, path: String, definition: Definition) -> Result<Self, FhirError> {
        let Value::Object(map) = value else {
            return Err(FhirError::invalid(path, "expected an object"));
        };
        let mut fields: Vec<(Cow<'a, str>, &'a Value)> = Vec::with_capacity(map.len());
        for (key, field) in map {
            let name = canonical_key(key);
            let child = || format!("{path}.{name}");
            if fields.iter().any(|(seen, _)| *seen == name) {
                return Err(FhirError::invalid(child(), "given twice (camelCase and snake_case spellings)"));
            }
            if !field.is_null() {
                let expected = match name.strip_prefix('_') {
                    // A primitive extension (`_status`) is allowed beside any primitive element.
                    Some(primitive) => definition
                        .iter()
                        .find(|(element, kind)| *element == primitive && !matches!(kind, Kind::Obj | Kind::Arr))
                        .map(|_| Kind::Obj),
                    None => definition.iter().find(|(element, _)| *element == name).map(|(_, kind)| *kind),
                };
                match expected {
                    None => return Err(FhirError::invalid(child(), "is not an element of this FHIR R5 type")),
                    Some(kind) if !kind.matches(field) => {
                        return Err(FhirError::invalid(child(), format!("expected {}", kind.describe())));
                    }
                    Some(_) => {}
                }
            }
            fields.push((name, field));
        }
        Ok(Element { path, fields })
    }

    pub(super) fn path(&self) -> &str {
        &self.path
    }

    pub(super) fn child_path(&self, name: &str) -> String {
        format!("{}.{name}", self.path)
    }

    /// The element's value; `None` when absent or null. Its JSON type was checked by [`Element::parse`].
    pub(super) fn get(&self, name: &str) -> Option<&'a Value> {
        self.fields.iter().find(|(key, value)| key == name && !value.is_null()).map(|(_, value)| *value)
    }

    pub(super) fn str(&self, name: &str) -> Option<&'a str> {
        self.get(name).and_then(Value::as_str)
    }

    pub(super) fn array(&self, name: &str) -> &'a [Value] {
        self.get(name).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
    }

    /// A complex child element, checked against its own definition.
    pub(super) fn object(&self, name: &str, definition: Definition) -> Result<Option<Element<'a>>, FhirError> {
        self.get(name).map(|value| Element::parse(value, self.child_path(name), definition)).transpose()
    }

    /// Every item of a repeating complex element, checked against its definition.
    pub(super) fn objects(&self, name: &str, definition: Definition) -> Result<Vec<Element<'a>>, FhirError> {
        let base = self.child_path(name);
        self.array(name)
            .iter()
            .enumerate()
            .map(|(index, item)| Element::parse(item, format!("{base}[{index}]"), definition))
            .collect()
    }

    /// At most one of the `choices` (a FHIR `[x]` choice element) may be present.
    pub(super) fn at_most_one_of(&self, choices: &[&str]) -> Result<(), FhirError> {
        let mut present = self.fields.iter().filter(|(key, value)| !value.is_null() && choices.contains(&key.as_ref()));
        if let (Some(_), Some((second, _))) = (present.next(), present.next()) {
            return Err(FhirError::invalid(
                self.child_path(second),
                format!("only one of {} may be given", choices.join(", ")),
            ));
        }
        Ok(())
    }
}

/// FHIR `Coding`.
pub(super) const CODING: Definition = &[
    ("id", Kind::Str),
    ("extension", Kind::Arr),
    ("system", Kind::Str),
    ("version", Kind::Str),
    ("code", Kind::Str),
    ("display", Kind::Str),
    ("userSelected", Kind::Bool),
];
/// FHIR `CodeableConcept`.
pub(super) const CODEABLE_CONCEPT: Definition =
    &[("id", Kind::Str), ("extension", Kind::Arr), ("coding", Kind::Arr), ("text", Kind::Str)];
/// FHIR `Identifier`.
pub(super) const IDENTIFIER: Definition = &[
    ("id", Kind::Str),
    ("extension", Kind::Arr),
    ("use", Kind::Str),
    ("type", Kind::Obj),
    ("system", Kind::Str),
    ("value", Kind::Str),
    ("period", Kind::Obj),
    ("assigner", Kind::Obj),
];
/// FHIR `Reference`.
pub(super) const REFERENCE: Definition = &[
    ("id", Kind::Str),
    ("extension", Kind::Arr),
    ("reference", Kind::Str),
    ("type", Kind::Str),
    ("identifier", Kind::Obj),
    ("display", Kind::Str),
];
/// FHIR `Period`.
pub(super) const PERIOD: Definition =
    &[("id", Kind::Str), ("extension", Kind::Arr), ("start", Kind::Str), ("end", Kind::Str)];
/// FHIR R5 `Attachment`.
pub(super) const ATTACHMENT: Definition = &[
    ("id", Kind::Str),
    ("extension", Kind::Arr),
    ("contentType", Kind::Str),
    ("language", Kind::Str),
    ("data", Kind::Str),
    ("url", Kind::Str),
    ("size", Kind::Int64),
    ("hash", Kind::Str),
    ("title", Kind::Str),
    ("creation", Kind::Str),
    ("height", Kind::Int),
    ("width", Kind::Int),
    ("frames", Kind::Int),
    ("duration", Kind::Num),
    ("pages", Kind::Int),
];

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn snake_case_keys_are_read_as_camel_case() {
        assert_eq!(canonical_key("value_attachment"), "valueAttachment");
        assert_eq!(canonical_key("effective_date_time"), "effectiveDateTime");
        assert_eq!(canonical_key("valueAttachment"), "valueAttachment");
        assert_eq!(canonical_key("_status"), "_status");
        assert_eq!(canonical_key("_effective_date_time"), "_effectiveDateTime");
        assert_eq!(canonical_key("a__b_"), "aB");
    }

    #[test]
    fn element_checks_names_types_and_duplicates() {
        let value = json!({"system": "s", "code": "c", "_code": {"extension": []}, "display": null});
        let coding = Element::parse(&value, "Coding".into(), CODING).unwrap();
        assert_eq!(coding.str("code"), Some("c"));
        assert_eq!(coding.get("display"), None);

        let unknown = json!({"sytem": "s"});
        assert_eq!(
            Element::parse(&unknown, "X".into(), CODING).unwrap_err().to_string(),
            "X.sytem: is not an element of this FHIR R5 type"
        );
        let wrong_type = json!({"code": 5});
        assert_eq!(
            Element::parse(&wrong_type, "X".into(), CODING).unwrap_err().to_string(),
            "X.code: expected a string"
        );
        let twice = json!({"userSelected": true, "user_selected": false});
        assert!(Element::parse(&twice, "X".into(), CODING).unwrap_err().to_string().contains("given twice"));
        let extension_of_complex = json!({"_period": {}});
        assert!(Element::parse(&extension_of_complex, "X".into(), IDENTIFIER).is_err());
    }

    #[test]
    fn quoted_values_are_cut() {
        assert_eq!(quoted("Device/1"), "\"Device/1\"");
        assert_eq!(quoted(&"é".repeat(100)).chars().count(), 80 + 3);
    }
}
