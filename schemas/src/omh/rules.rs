//! The building blocks the Open mHealth and IEEE 1752 schemas are made of, and their JSON Schema semantics.
//!
//! A [`Schema`] is a conjunction of [`Rule`]s, exactly like a JSON Schema object is a conjunction of keywords.
//! `$ref` has no rule of its own: in draft-04 and draft-07 a `$ref` replaces its siblings, so a reference is the
//! referenced `Schema` itself. Every keyword applies only to the instance types it is defined for
//! (`properties` ignores non-objects, `pattern` non-strings, ...), as the specification says.
//!
//! Validation runs in two passes: [`Schema::is_valid`] answers yes/no without allocating (the hot path), and only
//! for a document that fails, [`Schema::explain`] walks again to collect errors with their JSON paths.

use super::json::{Doc, Kind, NodeId, is_integer_literal, is_whole_number};
use super::{datetime, uri};
use std::fmt::Write as _;

/// JSON Schema `type` names as bits.
pub(crate) type Types = u8;
pub(crate) const OBJECT: Types = 1;
pub(crate) const ARRAY: Types = 2;
pub(crate) const STRING: Types = 4;
pub(crate) const NUMBER: Types = 8;
/// draft-06+ `integer`: any whole number (`1.0` counts).
pub(crate) const INTEGER: Types = 16;
/// draft-04 `integer`: written without fraction or exponent.
pub(crate) const INTEGER_DRAFT4: Types = 32;
pub(crate) const BOOLEAN: Types = 64;

/// A string shape the schemas constrain with `pattern`, checked by code equivalent to the regex.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pattern {
    /// `^[0-9]{4}-[0-9]{2}-[0-9]{2}$`
    FullDate,
    /// `^([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(.\d{1,3})?$` (the `.` is any character, as in the regex)
    LocalTime,
    /// `^[0-9]{4}-[0-9]{2}$`
    YearMonth,
    /// `^[0-9]{4}$`
    Year,
    /// `^([01]\d|2[0-3]):[0-5]\d$`
    HourMinute,
}

impl Pattern {
    pub(crate) fn matches(self, text: &str) -> bool {
        let b = text.as_bytes();
        let digit = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
        match self {
            // JSON Schema regexes follow ECMA-262 without the multiline flag: `$` is the very end of the text.
            Pattern::FullDate => {
                b.len() == 10
                    && (0..4).all(digit)
                    && b[4] == b'-'
                    && digit(5)
                    && digit(6)
                    && b[7] == b'-'
                    && digit(8)
                    && digit(9)
            }
            Pattern::YearMonth => b.len() == 7 && (0..4).all(digit) && b[4] == b'-' && digit(5) && digit(6),
            Pattern::Year => b.len() == 4 && (0..4).all(digit),
            Pattern::HourMinute => {
                let hour = matches!(
                    (b.first(), b.get(1)),
                    (Some(b'0' | b'1'), Some(b'0'..=b'9')) | (Some(b'2'), Some(b'0'..=b'3'))
                );
                b.len() == 5 && hour && b[2] == b':' && matches!(b[3], b'0'..=b'5') && digit(4)
            }
            Pattern::LocalTime => {
                let hour = matches!(
                    (b.first(), b.get(1)),
                    (Some(b'0' | b'1'), Some(b'0'..=b'9')) | (Some(b'2'), Some(b'0'..=b'3'))
                );
                let minute = matches!(b.get(3), Some(b'0'..=b'5')) && digit(4);
                let second = (matches!(b.get(6), Some(b'0'..=b'5')) && digit(7)) || b.get(6..8) == Some(b"60");
                if !(hour && b.get(2) == Some(&b':') && minute && b.get(5) == Some(&b':') && second) {
                    return false;
                }
                // `(.\d{1,3})?`: the `.` is any character but a line terminator.
                let mut tail = text[8..].chars();
                match tail.next() {
                    None => true,
                    Some('\n' | '\r' | '\u{2028}' | '\u{2029}') => false,
                    Some(_) => {
                        let rest = tail.as_str().as_bytes();
                        (1..=3).contains(&rest.len()) && rest.iter().all(u8::is_ascii_digit)
                    }
                }
            }
        }
    }

    /// The regular expression of the official schema.
    pub(crate) fn regex(self) -> &'static str {
        match self {
            Pattern::FullDate => "^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
            Pattern::LocalTime => r"^([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(.\d{1,3})?$",
            Pattern::YearMonth => "^[0-9]{4}-[0-9]{2}$",
            Pattern::Year => "^[0-9]{4}$",
            Pattern::HourMinute => r"^([01]\d|2[0-3]):[0-5]\d$",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Pattern::FullDate => "expected a date YYYY-MM-DD (pattern ^[0-9]{4}-[0-9]{2}-[0-9]{2}$)",
            Pattern::LocalTime => "expected a local time HH:MM:SS[.fff] (pattern of local-time)",
            Pattern::YearMonth => "expected a month YYYY-MM (pattern ^[0-9]{4}-[0-9]{2}$)",
            Pattern::Year => "expected a year YYYY (pattern ^[0-9]{4}$)",
            Pattern::HourMinute => r"expected a time HH:MM (pattern ^([01]\d|2[0-3]):[0-5]\d$)",
        }
    }
}

#[derive(Debug)]
pub(crate) enum Rule {
    Type(Types),
    Enum(&'static [&'static str]),
    Pattern(Pattern),
    /// `format: date-time`, asserted.
    DateTime,
    /// `format: uri`, asserted (the official test data expects it).
    Uri,
    Properties(&'static [(&'static str, &'static Schema)]),
    Required(&'static [&'static str]),
    /// `additionalProperties: false` next to `properties` with these names.
    OnlyProperties(&'static [&'static str]),
    Items(&'static Schema),
    MinItems(usize),
    AllOf(&'static [&'static Schema]),
    AnyOf(&'static [&'static Schema]),
    OneOf(&'static [&'static Schema]),
}

/// A JSON Schema (or a sub-schema): all its rules must hold.
#[derive(Debug)]
pub(crate) struct Schema {
    /// `omh:unit-value:1.0` for a whole schema document, empty for an anonymous sub-schema.
    pub(crate) name: &'static str,
    pub(crate) rules: &'static [Rule],
}

/// One failed rule at one place of the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) path: String,
    pub(crate) rule: String,
    /// A required property is missing (how a oneOf alternative says "not this shape").
    pub(crate) missing: bool,
}

/// The location being validated, rendered only when an error is recorded.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Segment<'p> {
    Key(&'p str),
    Index(usize),
}

pub(crate) fn render_path(segments: &[Segment<'_>]) -> String {
    let mut path = String::new();
    for segment in segments {
        match segment {
            Segment::Key(key)
                if !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
            {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
            }
            Segment::Key(key) => {
                let _ = write!(path, "[{}]", serde_json::Value::String((*key).to_owned()));
            }
            Segment::Index(index) => {
                let _ = write!(path, "[{index}]");
            }
        }
    }
    if path.is_empty() { "(document)".to_owned() } else { path }
}

fn type_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Null => "null",
        Kind::Bool(_) => "a boolean",
        Kind::Number => "a number",
        Kind::String => "a string",
        Kind::Array => "an array",
        Kind::Object => "an object",
    }
}

fn has_type(types: Types, doc: &Doc<'_>, node: NodeId) -> bool {
    match doc.kind(node) {
        Kind::Object => types & OBJECT != 0,
        Kind::Array => types & ARRAY != 0,
        Kind::String => types & STRING != 0,
        Kind::Bool(_) => types & BOOLEAN != 0,
        Kind::Null => false,
        Kind::Number => {
            types & NUMBER != 0
                || (types & (INTEGER | INTEGER_DRAFT4) != 0 && {
                    let number = doc.number(node).unwrap_or_default();
                    (types & INTEGER != 0 && is_whole_number(number)) || is_integer_literal(number)
                })
        }
    }
}

fn describe_types(types: Types) -> String {
    let names: Vec<&str> = [
        (OBJECT, "an object"),
        (ARRAY, "an array"),
        (STRING, "a string"),
        (NUMBER, "a number"),
        (INTEGER | INTEGER_DRAFT4, "an integer"),
        (BOOLEAN, "a boolean"),
    ]
    .iter()
    .filter(|(bits, _)| types & bits != 0)
    .map(|(_, name)| *name)
    .collect();
    format!("expected {}", names.join(" or "))
}

fn describe_enum(values: &[&str]) -> String {
    const SHOWN: usize = 12;
    let quoted: Vec<String> =
        values.iter().take(SHOWN).map(|value| serde_json::Value::String((*value).to_owned()).to_string()).collect();
    match values.len() {
        1 => format!("expected {}", quoted[0]),
        n if n > SHOWN => format!("expected one of {}, ... ({n} values)", quoted.join(", ")),
        _ => format!("expected one of {}", quoted.join(", ")),
    }
}

/// How an alternative of oneOf/anyOf reads in a message: its name, or the properties it requires.
fn describe_alternative(schema: &Schema) -> String {
    if !schema.name.is_empty() {
        return schema.name.to_owned();
    }
    for rule in schema.rules {
        match rule {
            Rule::Required(names) => return format!("{{{}}}", names.join(", ")),
            Rule::AllOf(parts) => {
                if let Some(first) = parts.first() {
                    return describe_alternative(first);
                }
            }
            Rule::Type(types) => return describe_types(*types).trim_start_matches("expected ").to_owned(),
            Rule::Enum(values) => return describe_enum(values).trim_start_matches("expected ").to_owned(),
            _ => {}
        }
    }
    "a schema".to_owned()
}

fn describe_alternatives(schemas: &[&Schema]) -> String {
    schemas.iter().map(|schema| describe_alternative(schema)).collect::<Vec<_>>().join(" | ")
}

impl Schema {
    /// Whether `node` satisfies every rule.
    pub(crate) fn is_valid(&self, doc: &Doc<'_>, node: NodeId) -> bool {
        self.rules.iter().all(|rule| rule_holds(rule, doc, node))
    }

    /// Records a [`Failure`] for each broken rule under `path`.
    pub(crate) fn explain<'d>(
        &self,
        doc: &'d Doc<'_>,
        node: NodeId,
        path: &mut Vec<Segment<'d>>,
        failures: &mut Vec<Failure>,
    ) {
        for rule in self.rules {
            explain_rule(rule, doc, node, path, failures);
        }
    }
}

fn is_object(doc: &Doc<'_>, node: NodeId) -> bool {
    doc.kind(node) == Kind::Object
}

fn rule_holds(rule: &Rule, doc: &Doc<'_>, node: NodeId) -> bool {
    match rule {
        Rule::Type(types) => has_type(*types, doc, node),
        Rule::Enum(values) => doc.str(node).is_some_and(|text| values.contains(&text)),
        Rule::Pattern(pattern) => doc.str(node).is_none_or(|text| pattern.matches(text)),
        Rule::DateTime => doc.str(node).is_none_or(|text| datetime::parse_date_time(text).is_some()),
        Rule::Uri => doc.str(node).is_none_or(uri::is_uri),
        // One pass over the members; a member that fails only counts when no later duplicate replaces it
        // (JSON Schema sees the last of duplicate keys).
        Rule::Properties(properties) => {
            !is_object(doc, node)
                || doc.children(node).all(|member| {
                    let key = doc.key(member);
                    properties
                        .iter()
                        .find(|(name, _)| name.len() == key.len() && *name == key)
                        .is_none_or(|(_, schema)| schema.is_valid(doc, member) || doc.get(node, key) != Some(member))
                })
        }
        Rule::Required(names) => !is_object(doc, node) || names.iter().all(|key| doc.get(node, key).is_some()),
        Rule::OnlyProperties(names) => {
            !is_object(doc, node) || doc.children(node).all(|member| names.contains(&doc.key(member)))
        }
        Rule::Items(schema) => {
            doc.kind(node) != Kind::Array || doc.children(node).all(|item| schema.is_valid(doc, item))
        }
        Rule::MinItems(min) => doc.kind(node) != Kind::Array || doc.children(node).count() >= *min,
        Rule::AllOf(schemas) => schemas.iter().all(|schema| schema.is_valid(doc, node)),
        Rule::AnyOf(schemas) => schemas.iter().any(|schema| schema.is_valid(doc, node)),
        Rule::OneOf(schemas) => schemas.iter().filter(|schema| schema.is_valid(doc, node)).take(2).count() == 1,
    }
}

fn fail(path: &[Segment<'_>], rule: String, failures: &mut Vec<Failure>) {
    failures.push(Failure { path: render_path(path), rule, missing: false });
}

fn explain_rule<'d>(
    rule: &Rule,
    doc: &'d Doc<'_>,
    node: NodeId,
    path: &mut Vec<Segment<'d>>,
    failures: &mut Vec<Failure>,
) {
    if rule_holds(rule, doc, node) {
        return;
    }
    match rule {
        Rule::Type(types) => {
            fail(path, format!("{}, found {}", describe_types(*types), type_name(doc.kind(node))), failures)
        }
        Rule::Enum(values) => fail(path, describe_enum(values), failures),
        Rule::Pattern(pattern) => fail(path, pattern.describe().to_owned(), failures),
        Rule::DateTime => fail(
            path,
            "expected an RFC 3339 date-time with an offset, e.g. 2025-01-01T00:04:00-08:00".to_owned(),
            failures,
        ),
        Rule::Uri => fail(path, "expected an absolute URI (RFC 3986), e.g. https://example.org/a".to_owned(), failures),
        Rule::Properties(properties) => {
            for (key, schema) in *properties {
                if let Some(member) = doc.get(node, key) {
                    path.push(Segment::Key(key));
                    schema.explain(doc, member, path, failures);
                    path.pop();
                }
            }
        }
        Rule::Required(names) => {
            for key in names.iter().filter(|key| doc.get(node, key).is_none()) {
                path.push(Segment::Key(key));
                failures.push(Failure {
                    path: render_path(path),
                    rule: "required property is missing".to_owned(),
                    missing: true,
                });
                path.pop();
            }
        }
        Rule::OnlyProperties(names) => {
            for member in doc.children(node).filter(|&member| !names.contains(&doc.key(member))) {
                path.push(Segment::Key(doc.key(member)));
                fail(path, "property not allowed (additionalProperties is false)".to_owned(), failures);
                path.pop();
            }
        }
        Rule::Items(schema) => {
            for (index, item) in doc.children(node).enumerate() {
                path.push(Segment::Index(index));
                schema.explain(doc, item, path, failures);
                path.pop();
            }
        }
        Rule::MinItems(min) => fail(path, format!("expected at least {min} item(s)"), failures),
        Rule::AllOf(schemas) => {
            for schema in *schemas {
                schema.explain(doc, node, path, failures);
            }
        }
        Rule::AnyOf(schemas) => explain_alternatives(schemas, doc, node, path, failures, "anyOf"),
        Rule::OneOf(schemas) => {
            let matching: Vec<usize> =
                schemas.iter().enumerate().filter(|(_, s)| s.is_valid(doc, node)).map(|(i, _)| i).collect();
            if matching.is_empty() {
                explain_alternatives(schemas, doc, node, path, failures, "oneOf");
            } else {
                let matched: Vec<&Schema> = matching.iter().map(|&i| schemas[i]).collect();
                fail(
                    path,
                    format!(
                        "expected exactly one of {}, but it matches {} of them ({})",
                        describe_alternatives(schemas),
                        matching.len(),
                        describe_alternatives(&matched)
                    ),
                    failures,
                );
            }
        }
    }
}

/// None of the alternatives holds: report the errors of the one that came closest (it has the shape, i.e. no
/// missing required property, and the fewest errors), or a summary when none has the shape.
fn explain_alternatives<'d>(
    schemas: &[&Schema],
    doc: &'d Doc<'_>,
    node: NodeId,
    path: &mut Vec<Segment<'d>>,
    failures: &mut Vec<Failure>,
    keyword: &str,
) {
    let mut best: Option<Vec<Failure>> = None;
    for schema in schemas {
        let mut attempt = Vec::new();
        schema.explain(doc, node, path, &mut attempt);
        let has_shape = !attempt.iter().any(|failure| failure.missing);
        if has_shape && best.as_ref().is_none_or(|best| attempt.len() < best.len()) {
            best = Some(attempt);
        }
    }
    match best {
        Some(attempt) if !attempt.is_empty() => failures.extend(attempt),
        _ => fail(
            path,
            format!(
                "expected {} {} ({keyword})",
                if keyword == "oneOf" { "exactly one of" } else { "at least one of" },
                describe_alternatives(schemas)
            ),
            failures,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_like_their_regexes() {
        for (text, expected) in
            [("2020-01-31", true), ("2020-1-31", false), ("2020-01-31\n", false), ("99999-01-01", false)]
        {
            assert_eq!(Pattern::FullDate.matches(text), expected, "{text:?}");
        }
        for (text, expected) in [
            ("07:25:00", true),
            ("23:59:60", true),
            ("07:25:00.123", true),
            ("07:25:00x1", true),
            ("07:25:00.1234", false),
            ("24:00:00", false),
            ("7:25:00", false),
            ("07:25", false),
            ("07:25:00.", false),
        ] {
            assert_eq!(Pattern::LocalTime.matches(text), expected, "{text:?}");
        }
        for (pattern, text, expected) in [
            (Pattern::YearMonth, "2020-01", true),
            (Pattern::YearMonth, "2020-1", false),
            (Pattern::Year, "2020", true),
            (Pattern::Year, "20201", false),
            (Pattern::HourMinute, "23:59", true),
            (Pattern::HourMinute, "24:00", false),
            (Pattern::HourMinute, "09:60", false),
        ] {
            assert_eq!(pattern.matches(text), expected, "{pattern:?} {text:?}");
        }
    }

    #[test]
    fn paths_render_with_dots_and_indexes() {
        let path = [Segment::Key("body"), Segment::Key("items"), Segment::Index(2), Segment::Key("a b")];
        assert_eq!(render_path(&path), r#"body.items[2]["a b"]"#);
    }
}
