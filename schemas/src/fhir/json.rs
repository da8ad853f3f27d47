//! Reading uploaded FHIR JSON without a `serde_json::Value` tree, and a checked view of one FHIR object.
//!
//! [`parse`] drives serde_json's own parser (so every syntax error, limit and message is serde_json's, exactly as
//! when the body was read into a `Value`) and keeps only what the checks read: a [`Plan`] names the members whose
//! content is needed; the content of every other member is parsed and dropped, keeping only its JSON type. Strings
//! borrow from the body unless they hold escapes; the members and items of kept objects and arrays sit in two flat
//! lists of an [`Arena`] (a Bundle's entries are read one at a time into the same space), so reading an Observation
//! allocates next to nothing. Objects keep the semantics of a `Value` map: a key given twice keeps its first
//! position and its last value.
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
    fn matches(self, node: &NodeRef<'_>) -> bool {
        match self {
            Kind::Str => node.is_string(),
            Kind::Bool => matches!(node.node, Node::Bool),
            Kind::Int => matches!(node.node, Node::Int),
            Kind::Num => matches!(node.node, Node::Int | Node::Float),
            Kind::Obj => node.is_object(),
            Kind::Arr => node.is_array(),
            Kind::Int64 => node.is_string() || matches!(node.node, Node::Int),
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
    // the common case, tested byte by byte: keys are short
    if key.bytes().all(|b| b != b'_') {
        return Cow::Borrowed(key);
    }
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

/// Whether two element names are the same. Names are short and most differ in length or in their first bytes:
/// compared in line rather than through `memcmp`.
#[inline]
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| x == y)
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
/// `i64`/`u64`, `Float` as an `f64`), opaque strings, arrays and objects only their type. The members and items of
/// kept objects and arrays live in the document's [`Arena`].
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Node<'a> {
    Null,
    Bool,
    Int,
    Float,
    Str(Cow<'a, str>),
    Arr(Span),
    Obj(Span),
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

/// A run of members or items in the arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Span {
    start: u32,
    end: u32,
}

impl Span {
    fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// One member of an object: the key as sent, its canonical spelling, and the value (the last one given).
#[derive(Debug, Clone, PartialEq)]
struct Member<'a> {
    raw: Cow<'a, str>,
    name: Cow<'a, str>,
    value: Node<'a>,
}

/// Where the members of objects and the items of arrays are kept: two flat lists (each object's members and each
/// array's items contiguous), so a document costs a few allocations however many objects it has, and a Bundle's
/// entries, read one at a time, reuse the same memory.
#[derive(Debug, Default)]
pub(super) struct Arena<'a> {
    members: Vec<Member<'a>>,
    items: Vec<Node<'a>>,
    /// Members and items of the objects and arrays being read (nested ones finish, and move to the lists, first).
    member_stack: Vec<Member<'a>>,
    item_stack: Vec<Node<'a>>,
}

/// A parsed document: its root and the arena its nodes live in.
#[derive(Debug)]
pub(super) struct Doc<'a> {
    arena: Arena<'a>,
    root: Node<'a>,
}

impl<'a> Doc<'a> {
    pub(super) fn root(&self) -> NodeRef<'_> {
        NodeRef { arena: &self.arena, node: &self.root }
    }

    /// Takes out the Bundle entries read into a member of the root object (the one member that holds some).
    pub(super) fn take_entries(&mut self) -> Option<Vec<ReadEntry>> {
        let Node::Obj(span) = self.root else { return None };
        self.arena.members[span.range()].iter_mut().find_map(|member| match &mut member.value {
            Node::Entries(entries) => Some(std::mem::take(entries)),
            _ => None,
        })
    }
}

/// A node and the arena it lives in.
#[derive(Debug, Clone, Copy)]
pub(super) struct NodeRef<'n> {
    arena: &'n Arena<'n>,
    node: &'n Node<'n>,
}

impl<'n> NodeRef<'n> {
    pub(super) fn node(&self) -> &'n Node<'n> {
        self.node
    }

    pub(super) fn is_null(&self) -> bool {
        matches!(self.node, Node::Null)
    }

    fn is_string(&self) -> bool {
        matches!(self.node, Node::Str(_) | Node::Opaque(Opaque::Str))
    }

    fn is_object(&self) -> bool {
        matches!(self.node, Node::Obj(_) | Node::Opaque(Opaque::Obj))
    }

    fn is_array(&self) -> bool {
        matches!(self.node, Node::Arr(_) | Node::Opaque(Opaque::Arr) | Node::Entries(_))
    }

    pub(super) fn as_str(&self) -> Option<&'n str> {
        match self.node {
            Node::Str(text) => Some(text),
            _ => None,
        }
    }

    /// The items of a kept array.
    pub(super) fn as_array(&self) -> Option<Items<'n>> {
        match self.node {
            Node::Arr(span) => Some(Items { arena: self.arena, items: &self.arena.items[span.range()] }),
            _ => None,
        }
    }

    fn members(&self) -> Option<&'n [Member<'n>]> {
        match self.node {
            Node::Obj(span) => Some(&self.arena.members[span.range()]),
            _ => None,
        }
    }

    /// A member by its key exactly as sent (`serde_json::Value::get`): `Some(Null)` for a JSON `null`, `None` when
    /// absent or when this is not an object.
    pub(super) fn raw_get(&self, key: &str) -> Option<NodeRef<'n>> {
        let member = self.members()?.iter().find(|member| same(&member.raw, key))?;
        Some(NodeRef { arena: self.arena, node: &member.value })
    }
}

/// The items of an array.
#[derive(Debug, Clone, Copy)]
pub(super) struct Items<'n> {
    arena: &'n Arena<'n>,
    items: &'n [Node<'n>],
}

impl<'n> Items<'n> {
    const EMPTY: Items<'static> = Items { arena: &EMPTY_ARENA, items: &[] };

    pub(super) fn len(&self) -> usize {
        self.items.len()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = NodeRef<'n>> + '_ {
        self.items.iter().map(|node| NodeRef { arena: self.arena, node })
    }
}

static EMPTY_ARENA: Arena<'static> =
    Arena { members: Vec::new(), items: Vec::new(), member_stack: Vec::new(), item_stack: Vec::new() };

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
    /// as it is parsed, and only what that returns is kept; the arena space the item took is then reused. The
    /// items of a large Bundle are thus never all in memory at once.
    Entries(&'static Plan, fn(NodeRef<'_>, usize) -> ReadEntry),
}

/// Parses a whole JSON document (nothing but whitespace after it) with serde_json's parser, keeping what `plan`
/// asks for. Accepts and refuses exactly what `serde_json::from_slice::<Value>` does, with the same errors.
pub(super) fn parse(bytes: &[u8], plan: Plan) -> Result<Doc<'_>, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let mut arena = Arena::default();
    let root = NodeSeed { plan, arena: &mut arena }.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(Doc { arena, root })
}

/// Checks that `text` is one JSON document as `serde_json::from_str::<Value>` would read it (same errors), without
/// building anything.
pub(super) fn check_json(text: &str) -> Result<(), serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    // nothing is kept with this plan: the arena stays empty and allocates nothing
    NodeSeed { plan: Plan::Opaque, arena: &mut Arena::default() }.deserialize(&mut deserializer)?;
    deserializer.end()
}

/// Objects with more members than this index them to find repeated keys (a linear scan below).
const INDEX_MEMBERS_FROM: usize = 16;

/// Offsets in the arena are `u32`: a body is at most a few tens of MiB, so it never holds 2^32 nodes.
fn offset(length: usize) -> u32 {
    u32::try_from(length).unwrap_or(u32::MAX)
}

struct NodeSeed<'s, 'de> {
    plan: Plan,
    arena: &'s mut Arena<'de>,
}

impl<'de> DeserializeSeed<'de> for NodeSeed<'_, 'de> {
    type Value = Node<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node<'de>, D::Error> {
        // `deserialize_any`, as `Value` does: the same parser paths, limits (recursion) and number handling.
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NodeSeed<'_, 'de> {
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
        Ok(match self.plan {
            Plan::Opaque => Node::Opaque(Opaque::Str),
            _ => Node::Str(Cow::Borrowed(text)),
        })
    }

    fn visit_str<E>(self, text: &str) -> Result<Node<'de>, E> {
        Ok(match self.plan {
            Plan::Opaque => Node::Opaque(Opaque::Str),
            _ => Node::Str(Cow::Owned(text.to_owned())),
        })
    }

    fn visit_string<E>(self, text: String) -> Result<Node<'de>, E> {
        Ok(match self.plan {
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
        let arena = self.arena;
        match self.plan {
            Plan::Tree => {}
            Plan::Entries(item, read) => {
                let mut entries = Vec::new();
                let (members, items) = (arena.members.len(), arena.items.len());
                while let Some(node) = seq.next_element_seed(NodeSeed { plan: *item, arena: &mut *arena })? {
                    entries.push(read(NodeRef { arena: &*arena, node: &node }, entries.len()));
                    drop(node);
                    arena.members.truncate(members);
                    arena.items.truncate(items);
                }
                return Ok(Node::Entries(entries));
            }
            Plan::Opaque | Plan::Fields(_) => {
                while seq.next_element_seed(NodeSeed { plan: Plan::Opaque, arena: &mut *arena })?.is_some() {}
                return Ok(Node::Opaque(Opaque::Arr));
            }
        }
        let first = arena.item_stack.len();
        while let Some(node) = seq.next_element_seed(NodeSeed { plan: Plan::Tree, arena: &mut *arena })? {
            arena.item_stack.push(node);
        }
        let start = offset(arena.items.len());
        arena.items.extend(arena.item_stack.drain(first..));
        Ok(Node::Arr(Span { start, end: offset(arena.items.len()) }))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node<'de>, A::Error> {
        let arena = self.arena;
        let fields = match self.plan {
            Plan::Tree => None,
            Plan::Fields(fields) => Some(fields),
            Plan::Opaque | Plan::Entries(..) => {
                while map.next_key_seed(NodeSeed { plan: Plan::Opaque, arena: &mut *arena })?.is_some() {
                    map.next_value_seed(NodeSeed { plan: Plan::Opaque, arena: &mut *arena })?;
                }
                return Ok(Node::Opaque(Opaque::Obj));
            }
        };
        let first = arena.member_stack.len();
        let mut index: Option<HashMap<Cow<'de, str>, usize>> = None;
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let name = match &key {
                Cow::Borrowed(key) => canonical_key(key),
                Cow::Owned(key) => Cow::Owned(canonical_key(key).into_owned()),
            };
            let plan = match fields {
                None => Plan::Tree,
                Some(fields) => {
                    fields.iter().find(|(field, _)| same(field, &name)).map_or(Plan::Opaque, |(_, plan)| *plan)
                }
            };
            let value = map.next_value_seed(NodeSeed { plan, arena: &mut *arena })?;
            // A repeated key keeps its first position and takes the last value, as in a `Value` map.
            let members = &mut arena.member_stack[first..];
            let seen = match &index {
                Some(index) => index.get(&key).copied(),
                None => members.iter().position(|member| same(&member.raw, &key)),
            };
            match seen {
                Some(position) => members[position].value = value,
                None => {
                    let position = members.len();
                    if let Some(index) = &mut index {
                        index.insert(key.clone(), position);
                    }
                    arena.member_stack.push(Member { raw: key, name, value });
                    if index.is_none() && position + 1 > INDEX_MEMBERS_FROM {
                        let members = &arena.member_stack[first..];
                        index = Some(members.iter().enumerate().map(|(at, m)| (m.raw.clone(), at)).collect());
                    }
                }
            }
        }
        let start = offset(arena.members.len());
        arena.members.extend(arena.member_stack.drain(first..));
        Ok(Node::Obj(Span { start, end: offset(arena.members.len()) }))
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
    arena: &'n Arena<'n>,
    path: Path<'p>,
    members: &'n [Member<'n>],
}

impl<'n, 'p> Element<'n, 'p> {
    /// Checks that `node` is an object whose elements are all defined, of the right JSON type and given once.
    /// JSON `null` counts as absent (the reference's parser treats it so).
    pub(super) fn parse(node: NodeRef<'n>, path: Path<'p>, definition: Definition) -> Result<Self, FhirError> {
        let members = match node.node {
            Node::Obj(_) => node.members().unwrap_or_default(),
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
            if members[..position].iter().any(|seen| same(&seen.name, name)) {
                return Err(FhirError::invalid(child(), "given twice (camelCase and snake_case spellings)"));
            }
            let value = NodeRef { arena: node.arena, node: &member.value };
            if !value.is_null() {
                let expected = match name.strip_prefix('_') {
                    // A primitive extension (`_status`) is allowed beside any primitive element.
                    Some(primitive) => definition
                        .iter()
                        .find(|(element, kind)| same(element, primitive) && !matches!(kind, Kind::Obj | Kind::Arr))
                        .map(|_| Kind::Obj),
                    None => definition.iter().find(|(element, _)| same(element, name)).map(|(_, kind)| *kind),
                };
                match expected {
                    None => return Err(FhirError::invalid(child(), "is not an element of this FHIR R5 type")),
                    Some(kind) if !kind.matches(&value) => {
                        return Err(FhirError::invalid(child(), format!("expected {}", kind.describe())));
                    }
                    Some(_) => {}
                }
            }
        }
        Ok(Element { arena: node.arena, path, members })
    }

    pub(super) fn path(&self) -> &Path<'p> {
        &self.path
    }

    pub(super) fn child_path(&self, name: &str) -> String {
        format!("{}.{name}", self.path)
    }

    /// The element's value; `None` when absent or null. Its JSON type was checked by [`Element::parse`].
    pub(super) fn get(&self, name: &str) -> Option<NodeRef<'n>> {
        let member = self.members.iter().find(|member| same(&member.name, name) && !member.value.is_null_node())?;
        Some(NodeRef { arena: self.arena, node: &member.value })
    }

    pub(super) fn str(&self, name: &str) -> Option<&'n str> {
        self.get(name).and_then(|node| node.as_str())
    }

    pub(super) fn array(&self, name: &str) -> Items<'n> {
        self.get(name).and_then(|node| node.as_array()).unwrap_or(Items::EMPTY)
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
        let mut present = self
            .members
            .iter()
            .filter(|member| !member.value.is_null_node() && choices.iter().any(|choice| same(choice, &member.name)));
        if let (Some(_), Some(second)) = (present.next(), present.next()) {
            return Err(FhirError::invalid(
                self.child_path(&second.name),
                format!("only one of {} may be given", choices.join(", ")),
            ));
        }
        Ok(())
    }
}

impl Node<'_> {
    fn is_null_node(&self) -> bool {
        matches!(self, Node::Null)
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
