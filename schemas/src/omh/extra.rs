//! Extra data types an operator adds at run time as JSON Schema files, validated by the `jsonschema` crate.
//!
//! The code a schema answers to comes from its `$id` (see [`code_for_schema_id`]). References resolve offline,
//! among the extra schemas (by `$id`) and the builtin ones, rendered to JSON Schema from their Rust definitions
//! under their official addresses (`https://w3id.org/openmhealth/schemas/omh/<name>-<version>.json`, the
//! `-<major>.x.json` aliases pointing at the newest minor, and `https://w3id.org/ieee/ieee-1752-schema/<name>-<version>.json`).
//! As for the builtin types, `format: date-time` and `format: uri` are asserted and every other format is an
//! annotation.

use super::datetime::parse_date_time;
use super::defs;
use super::render::render_document;
use super::schema_id::SchemaId;
use super::uri::is_uri;
use super::{LoadError, ValidationError};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

const OMH_BASE: &str = "https://w3id.org/openmhealth/schemas/omh/";
const IEEE_BASE: &str = "https://w3id.org/ieee/ieee-1752-schema/";
const GRANOLA_BASE: &str = "https://w3id.org/openmhealth/schemas/granola/";

/// Formats jsonschema knows and would assert once format validation is on; jhe leaves them as annotations.
const ANNOTATION_FORMATS: [&str; 17] = [
    "date",
    "time",
    "duration",
    "email",
    "idn-email",
    "hostname",
    "idn-hostname",
    "ipv4",
    "ipv6",
    "iri",
    "iri-reference",
    "json-pointer",
    "regex",
    "relative-json-pointer",
    "uri-reference",
    "uri-template",
    "uuid",
];

/// The code an extra schema answers to, from its `$id`: the last path segment must be
/// `<name>-<major>.<minor>.json`; the namespace is `omh` or `ieee` under the official bases, otherwise the path
/// segment before the file name (`https://example.org/schemas/acme/glucose-ketone-1.0.json` →
/// `acme:glucose-ketone:1.0`).
pub fn code_for_schema_id(id: &str) -> Option<SchemaId> {
    let without_fragment = id.split('#').next().unwrap_or(id);
    let (folder, file) = without_fragment.rsplit_once('/')?;
    let stem = file.strip_suffix(".json")?;
    let (name, version) = stem.rsplit_once('-')?;
    let (major, minor) = version.split_once('.')?;
    let is_number = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    if !is_number(major) || !is_number(minor) {
        return None;
    }
    let namespace = if without_fragment.starts_with(OMH_BASE) {
        "omh"
    } else if without_fragment.starts_with(IEEE_BASE) {
        "ieee"
    } else {
        folder.rsplit_once('/').map_or(folder, |(_, last)| last)
    };
    SchemaId::new(namespace, name, version).ok()
}

/// JSON documents by URI, handed to jsonschema instead of any network or file access.
#[derive(Debug, Clone)]
struct OfflineDocuments(Arc<HashMap<String, serde_json::Value>>);

#[derive(Debug)]
struct NotOffline(String);

impl std::fmt::Display for NotOffline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} is neither an extra schema nor a builtin one (jhe never fetches schemas)", self.0)
    }
}

impl std::error::Error for NotOffline {}

impl jsonschema::Retrieve for OfflineDocuments {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<String>,
    ) -> Result<serde_json::Value, Box<dyn std::error::Error + Send + Sync>> {
        let address = uri.as_str().split('#').next().unwrap_or_default();
        self.0.get(address).cloned().ok_or_else(|| Box::new(NotOffline(address.to_owned())) as _)
    }
}

/// The builtin schemas as JSON Schema documents under every address they answer to.
fn builtin_documents() -> HashMap<String, serde_json::Value> {
    let mut documents = HashMap::new();
    let mut newest: BTreeMap<(String, &str), (&str, String)> = BTreeMap::new();
    for builtin in defs::builtins() {
        let base = match builtin.namespace {
            "ieee" => IEEE_BASE,
            "granola" => GRANOLA_BASE,
            _ => OMH_BASE,
        };
        let address = format!("{base}{}-{}.json", builtin.name, builtin.version);
        documents.insert(address.clone(), render_document(builtin.schema, &address));
        let major = builtin.version.split('.').next().unwrap_or_default();
        let alias = if builtin.namespace == "ieee" {
            format!("{base}{}.json", builtin.name)
        } else {
            format!("{base}{}-{major}.x.json", builtin.name)
        };
        // builtins are sorted by version within a name, so the last one seen is the newest
        newest.insert((alias, builtin.namespace), (builtin.version, address));
    }
    for ((alias, _), (_, address)) in newest {
        if let Some(document) = documents.get(&address).cloned() {
            documents.insert(alias, document);
        }
    }
    documents
}

pub(crate) struct ExtraSchemas {
    validators: BTreeMap<SchemaId, jsonschema::Validator>,
}

impl std::fmt::Debug for ExtraSchemas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExtraSchemas").field("codes", &self.validators.keys().collect::<Vec<_>>()).finish()
    }
}

impl ExtraSchemas {
    pub(crate) fn load(schemas: Vec<serde_json::Value>) -> Result<Self, LoadError> {
        let mut documents = builtin_documents();
        let mut coded = Vec::with_capacity(schemas.len());
        for (index, schema) in schemas.into_iter().enumerate() {
            let id =
                schema.get("$id").and_then(serde_json::Value::as_str).ok_or(LoadError::MissingId { index })?.to_owned();
            let code = code_for_schema_id(&id).ok_or_else(|| LoadError::UncodedId { id: id.clone() })?;
            if defs::find(&code.namespace, &code.name, &code.version).is_some() {
                return Err(LoadError::ShadowsBuiltin { id, code });
            }
            if coded.iter().any(|(_, known, _)| known == &code) {
                return Err(LoadError::Duplicate { id, code });
            }
            documents.insert(id.split('#').next().unwrap_or_default().to_owned(), schema.clone());
            coded.push((id, code, schema));
        }
        let documents = OfflineDocuments(Arc::new(documents));
        let mut validators = BTreeMap::new();
        for (id, code, schema) in coded {
            let mut options = jsonschema::options()
                .with_retriever(documents.clone())
                .should_validate_formats(true)
                .with_format("date-time", |text: &str| parse_date_time(text).is_some())
                .with_format("uri", is_uri);
            for format in ANNOTATION_FORMATS {
                options = options.with_format(format, |_: &str| true);
            }
            let validator =
                options.build(&schema).map_err(|error| LoadError::Invalid { id, message: error.to_string() })?;
            validators.insert(code, validator);
        }
        Ok(ExtraSchemas { validators })
    }

    pub(crate) fn codes(&self) -> impl Iterator<Item = SchemaId> + '_ {
        self.validators.keys().cloned()
    }

    pub(crate) fn find(&self, namespace: &str, name: &str, version: &str) -> Option<&jsonschema::Validator> {
        self.validators
            .iter()
            .find(|(code, _)| code.namespace == namespace && code.name == name && code.version == version)
            .map(|(_, validator)| validator)
    }
}

/// A JSON pointer (`/a/0/b~1c`) as a jhe path under `body` (`body.a[0]["b/c"]`).
fn pointer_to_path(pointer: &str) -> String {
    let mut path = String::from("body");
    for token in pointer.split('/').skip(1) {
        let token = token.replace("~1", "/").replace("~0", "~");
        if !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit()) {
            path.push_str(&format!("[{token}]"));
        } else if !token.is_empty() && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            path.push('.');
            path.push_str(&token);
        } else {
            path.push_str(&format!("[{}]", serde_json::Value::String(token)));
        }
    }
    path
}

pub(crate) fn validate(
    validator: &jsonschema::Validator,
    body: &serde_json::Value,
) -> Result<(), Vec<ValidationError>> {
    let errors: Vec<ValidationError> = validator
        .iter_errors(body)
        .map(|error| ValidationError { path: pointer_to_path(error.instance_path().as_str()), rule: error.to_string() })
        .collect();
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_from_ids() {
        let code = |id: &str| code_for_schema_id(id).map(|code| code.to_string());
        assert_eq!(
            code("https://example.org/schemas/acme/glucose-ketone-1.0.json").as_deref(),
            Some("acme:glucose-ketone:1.0")
        );
        assert_eq!(
            code("https://w3id.org/openmhealth/schemas/omh/heart-rate-2.0.json").as_deref(),
            Some("omh:heart-rate:2.0")
        );
        assert_eq!(
            code("https://w3id.org/ieee/ieee-1752-schema/sleep-episode-1.0.json").as_deref(),
            Some("ieee:sleep-episode:1.0")
        );
        assert_eq!(code("https://example.org/acme/glucose.json"), None);
        assert_eq!(code("https://example.org/acme/glucose-1.x.json"), None);
    }

    #[test]
    fn pointers_become_paths() {
        assert_eq!(pointer_to_path(""), "body");
        assert_eq!(pointer_to_path("/heart_rate/unit"), "body.heart_rate.unit");
        assert_eq!(pointer_to_path("/items/0/a~1b"), r#"body.items[0]["a/b"]"#);
    }
}
