//! Reading uploaded FHIR JSON without a `serde_json::Value` tree, and a checked view of one FHIR object.
//!
//! [`parse`] drives serde_json's own parser (so every syntax error, limit and message is serde_json's, exactly as
//! when the body was read into a `Value`) and keeps only what the checks read: a [`Plan`] names the members whose
//! content is needed; the content of every other member is parsed and dropped, keeping only its JSON type. Strings
//! borrow from the body unless they hold escapes. Objects keep the semantics of a `Value` map: a key given twice
//! keeps its first position and its last value.
//!
//! [`Element`] is an object checked against an R5 type definition: element names, JSON types, each given once.
//! Error paths are built only when there is an error.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::FhirError;
use super::bundle_in::ReadEntry;

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
    fn matches(self, node: &Node<'_>) -> bool {
        match self {
            Kind::Str => node.is_string(),
            Kind::Bool => matches!(node, Node::Bool),
            Kind::Int => matches!(node, Node::Int),
            Kind::Num => matches!(node, Node::Int | Node::Float),
            Kind::Obj => node.is_object(),
            Kind::Arr => node.is_array(),
            Kind::Int64 => node.is_string() || matches!(node, Node::Int),
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

// ---------------------------------------------------------------------------------------------------------------
// Nodes: what is kept of a JSON document

/// A JSON value as far as the checks need it. Numbers keep their class only (`Int` is what serde_json reads as an
/// `i64`/`u64`, `Float` as an `f64`), opaque strings, arrays and objects only their type.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Node<'a> {
    Null,
    Bool,
    Int,
    Float,
    Str(Cow<'a, str>),
    Arr(Vec<Node<'a>>),
    Obj(Vec<Member<'a>>),
    /// A string, array or object read by no check: only its type is kept.
    Opaque(Opaque),
    /// An array of Bundle entries, each read as soon as it was parsed ([`Plan::Entries`]).
    Entries(Vec<ReadEntry>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Opaque {
    Str,
    Arr,
    Obj,
}

/// One member of an object: the key as sent, its canonical spelling, and the value (the last one given).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Member<'a> {
    raw: Cow<'a, str>,
    name: Cow<'a, str>,
    value: Node<'a>,
}

impl<'a> Member<'a> {
    pub(super) fn into_value(self) -> Node<'a> {
        self.value
    }
}

impl<'a> Node<'a> {
    pub(super) fn is_null(&self) -> bool {
        matches!(self, Node::Null)
    }

    fn is_string(&self) -> bool {
        matches!(self, Node::Str(_) | Node::Opaque(Opaque::Str))
    }

    fn is_object(&self) -> bool {
        matches!(self, Node::Obj(_) | Node::Opaque(Opaque::Obj))
    }

    fn is_array(&self) -> bool {
        matches!(self, Node::Arr(_) | Node::Opaque(Opaque::Arr) | Node::Entries(_))
    }

    pub(super) fn as_str(&self) -> Option<&str> {
        match self {
            Node::Str(text) => Some(text),
            _ => None,
        }
    }

    pub(super) fn as_array(&self) -> Option<&[Node<'a>]> {
        match self {
            Node::Arr(items) => Some(items),
            _ => None,
        }
    }

    /// A member by its key exactly as sent (`serde_json::Value::get`): `Some(Null)` for a JSON `null`, `None` when
    /// absent or when this is not an object.
    pub(super) fn raw_get(&self, key: &str) -> Option<&Node<'a>> {
        match self {
            Node::Obj(members) => members.iter().find(|member| member.raw == key).map(|member| &member.value),
            _ => None,
        }
    }
}

/// Which parts of a document the checks read.
#[derive(Debug, Clone, Copy)]
pub(super) enum Plan {
    /// Only the JSON type.
    Opaque,
    /// Everything.
    Tree,
    /// An object whose members named (canonically) here are read with their plan, the others opaque.
    Fields(&'static [(&'static str, Plan)]),
    /// An array of Bundle entries: each item, read with the plan, is handed to the function with its index as soon
    /// as it is parsed, and only what that returns is kept. The items of a large Bundle are thus never all in
    /// memory at once, and each one's nodes are freed while the allocator still has them at hand.
    Entries(&'static Plan, fn(&Node<'_>, usize) -> ReadEntry),
}

/// Parses a whole JSON document (nothing but whitespace after it) with serde_json's parser, keeping what `plan`
/// asks for. Accepts and refuses exactly what `serde_json::from_slice::<Value>` does, with the same errors.
pub(super) fn parse(bytes: &[u8], plan: Plan) -> Result<Node<'_>, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let node = NodeSeed(plan).deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(node)
}

/// Checks that `text` is one JSON document as `serde_json::from_str::<Value>` would read it (same errors), without
/// building anything.
pub(super) fn check_json(text: &str) -> Result<(), serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    NodeSeed(Plan::Opaque).deserialize(&mut deserializer)?;
    deserializer.end()
}

/// Objects with more members than this index them to find repeated keys (a linear scan below).
const INDEX_MEMBERS_FROM: usize = 16;

#[derive(Clone, Copy)]
struct NodeSeed(Plan);

impl<'de> DeserializeSeed<'de> for NodeSeed {
    type Value = Node<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node<'de>, D::Error> {
        // `deserialize_any`, as `Value` does: the same parser paths, limits (recursion) and number handling.
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NodeSeed {
    type Value = Node<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("any valid JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Node<'de>, E> {
        Ok(Node::Bool)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Node<'de>, E> {
        Ok(Node::Int)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Node<'de>, E> {
        Ok(Node::Int)
    }

    fn visit_f64<E>(self, value: f64) -> Result<Node<'de>, E> {
        // `Value` turns a non-finite float into `null`
        Ok(if value.is_finite() { Node::Float } else { Node::Null })
    }

    fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Node<'de>, E> {
        Ok(match self.0 {
            Plan::Opaque => Node::Opaque(Opaque::Str),
            _ => Node::Str(Cow::Borrowed(text)),
        })
    }

    fn visit_str<E>(self, text: &str) -> Result<Node<'de>, E> {
        Ok(match self.0 {
            Plan::Opaque => Node::Opaque(Opaque::Str),
            _ => Node::Str(Cow::Owned(text.to_owned())),
        })
    }

    fn visit_string<E>(self, text: String) -> Result<Node<'de>, E> {
        Ok(match self.0 {
            Plan::Opaque => Node::Opaque(Opaque::Str),
            _ => Node::Str(Cow::Owned(text)),
        })
    }

    fn visit_unit<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }

    fn visit_none<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node<'de>, A::Error> {
        match self.0 {
            Plan::Tree => {}
            Plan::Entries(item, read) => {
                let mut entries = Vec::new();
                while let Some(node) = seq.next_element_seed(NodeSeed(*item))? {
                    entries.push(read(&node, entries.len()));
                }
                return Ok(Node::Entries(entries));
            }
            Plan::Opaque | Plan::Fields(_) => {
                while seq.next_element_seed(NodeSeed(Plan::Opaque))?.is_some() {}
                return Ok(Node::Opaque(Opaque::Arr));
            }
        }
        let mut items = Vec::new();
        while let Some(node) = seq.next_element_seed(NodeSeed(Plan::Tree))? {
            items.push(node);
        }
        Ok(Node::Arr(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node<'de>, A::Error> {
        let fields = match self.0 {
            Plan::Tree => None,
            Plan::Fields(fields) => Some(fields),
            Plan::Opaque | Plan::Entries(..) => {
                while map.next_key_seed(NodeSeed(Plan::Opaque))?.is_some() {
                    map.next_value_seed(NodeSeed(Plan::Opaque))?;
                }
                return Ok(Node::Opaque(Opaque::Obj));
            }
        };
        // room for the members of a typical Observation at once, rather than growing to it
        let mut members: Vec<Member<'de>> = if fields.is_some() { Vec::with_capacity(12) } else { Vec::new() };
        let mut index: Option<HashMap<Cow<'de, str>, usize>> = None;
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let name = match &key {
                Cow::Borrowed(key) => canonical_key(key),
                Cow::Owned(key) => Cow::Owned(canonical_key(key).into_owned()),
            };
            let plan = match fields {
                None => Plan::Tree,
                Some(fields) => fields.iter().find(|(field, _)| *field == name).map_or(Plan::Opaque, |(_, plan)| *plan),
            };
            let value = map.next_value_seed(NodeSeed(plan))?;
            // A repeated key keeps its first position and takes the last value, as in a `Value` map.
            let seen = match &mut index {
                Some(index) => index.get(&key).copied(),
                None => members.iter().position(|member| member.raw == key),
            };
            match seen {
                Some(position) => members[position].value = value,
                None => {
                    if let Some(index) = &mut index {
                        index.insert(key.clone(), members.len());
                    }
                    members.push(Member { raw: key, name, value });
                    if index.is_none() && members.len() > INDEX_MEMBERS_FROM {
                        index =
                            Some(members.iter().enumerate().map(|(position, m)| (m.raw.clone(), position)).collect());
                    }
                }
            }
        }
        Ok(Node::Obj(members))
    }
}

/// An object key, borrowed from the body unless it holds escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Cow<'de, str>, D::Error> {
        // serde_json reads a key with the same string parser whichever method asks for it
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a string key")
    }

    fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(text))
    }

    fn visit_str<E>(self, text: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(text.to_owned()))
    }

    fn visit_string<E>(self, text: String) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(text))
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Paths and checked elements

/// The FHIR path of an element (`Observation.code.coding[0]`), formatted only for an error message.
#[derive(Debug, Clone, Copy)]
pub(super) enum Path<'p> {
    Root(&'p str),
    Key(&'p Path<'p>, &'p str),
    Index(&'p Path<'p>, usize),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root(root) => formatter.write_str(root),
            Path::Key(parent, key) => write!(formatter, "{parent}.{key}"),
            Path::Index(parent, index) => write!(formatter, "{parent}[{index}]"),
        }
    }
}

/// One JSON object checked against a FHIR type definition.
#[derive(Debug, Clone, Copy)]
pub(super) struct Element<'n, 'p> {
    path: Path<'p>,
    members: &'n [Member<'n>],
}

impl<'n, 'p> Element<'n, 'p> {
    /// Checks that `node` is an object whose elements are all defined, of the right JSON type and given once.
    /// JSON `null` counts as absent (the reference's parser treats it so).
    pub(super) fn parse(node: &'n Node<'n>, path: Path<'p>, definition: Definition) -> Result<Self, FhirError> {
        let members = match node {
            Node::Obj(members) => members.as_slice(),
            Node::Opaque(Opaque::Obj) => {
                // A plan that drops an object it then checks is a bug in this module, not bad input.
                debug_assert!(false, "{path}: checked an object the plan did not keep");
                &[]
            }
            _ => return Err(FhirError::invalid(path.to_string(), "expected an object")),
        };
        for (position, member) in members.iter().enumerate() {
            let name = member.name.as_ref();
            let child = || format!("{path}.{name}");
            if members[..position].iter().any(|seen| seen.name == name) {
                return Err(FhirError::invalid(child(), "given twice (camelCase and snake_case spellings)"));
            }
            if !member.value.is_null() {
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
                    Some(kind) if !kind.matches(&member.value) => {
                        return Err(FhirError::invalid(child(), format!("expected {}", kind.describe())));
                    }
                    Some(_) => {}
                }
            }
        }
        Ok(Element { path, members })
    }

    pub(super) fn path(&self) -> &Path<'p> {
        &self.path
    }

    pub(super) fn child_path(&self, name: &str) -> String {
        format!("{}.{name}", self.path)
    }

    /// The element's value; `None` when absent or null. Its JSON type was checked by [`Element::parse`].
    pub(super) fn get(&self, name: &str) -> Option<&'n Node<'n>> {
        self.members.iter().find(|member| member.name == name && !member.value.is_null()).map(|member| &member.value)
    }

    pub(super) fn str(&self, name: &str) -> Option<&'n str> {
        self.get(name).and_then(Node::as_str)
    }

    pub(super) fn array(&self, name: &str) -> &'n [Node<'n>] {
        self.get(name).and_then(Node::as_array).unwrap_or_default()
    }

    /// A complex child element, checked against its own definition.
    pub(super) fn object<'s>(
        &'s self,
        name: &'static str,
        definition: Definition,
    ) -> Result<Option<Element<'n, 's>>, FhirError> {
        self.get(name).map(|node| Element::parse(node, Path::Key(&self.path, name), definition)).transpose()
    }

    /// At most one of the `choices` (a FHIR `[x]` choice element) may be present.
    pub(super) fn at_most_one_of(&self, choices: &[&str]) -> Result<(), FhirError> {
        let mut present =
            self.members.iter().filter(|member| !member.value.is_null() && choices.contains(&member.name.as_ref()));
        if let (Some(_), Some(second)) = (present.next(), present.next()) {
            return Err(FhirError::invalid(
                self.child_path(&second.name),
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
mod tests;
