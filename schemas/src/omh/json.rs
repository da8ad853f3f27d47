//! A small strict JSON parser that builds a flat tape of nodes borrowing the input, so validating a data point
//! makes one allocation instead of a `serde_json::Value` (an IndexMap per object with the workspace's
//! `preserve_order`).
//!
//! Nodes are in document order; a container's descendants follow it up to its `end`. JSON Schema semantics it
//! keeps: the last of duplicate keys wins, and numbers keep their text so "integer" can be decided per dialect
//! (draft-04: no fraction or exponent; draft-06+: any number whose value is whole).

use std::fmt;

/// Nesting deeper than this is refused instead of risking the stack.
const MAX_DEPTH: usize = 128;
/// Set in [`Text::len`] when the text is an unescaped copy in [`Doc::owned`] (index `start`).
const OWNED: u32 = 1 << 31;

/// Where a key, string or number is: a range of the input, or an owned unescaped string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Text {
    start: u32,
    len: u32,
}

const EMPTY: Text = Text { start: 0, len: 0 };

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Null,
    Bool(bool),
    /// Valid JSON number syntax, finite as an f64.
    Number,
    String,
    Array,
    Object,
}

#[derive(Debug, Clone, Copy)]
struct Node {
    /// The member name (object members only).
    key: Text,
    /// The text of a string or number.
    text: Text,
    kind: Kind,
    /// One past the last node of this value's subtree.
    end: u32,
}

/// A node of a [`Doc`].
pub(crate) type NodeId = u32;

/// A parsed document; the root is node 0.
#[derive(Debug, Clone)]
pub(crate) struct Doc<'a> {
    input: &'a str,
    nodes: Vec<Node>,
    owned: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    pub line: usize,
    pub column: usize,
    pub message: &'static str,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid JSON at line {} column {}: {}", self.line, self.column, self.message)
    }
}

impl std::error::Error for JsonError {}

pub(crate) const ROOT: NodeId = 0;

impl<'a> Doc<'a> {
    pub(crate) fn parse(input: &'a [u8]) -> Result<Doc<'a>, JsonError> {
        let text = match std::str::from_utf8(input) {
            Ok(text) => text,
            Err(error) => return Err(error_at(input, error.valid_up_to(), "not UTF-8")),
        };
        if input.len() >= OWNED as usize {
            return Err(error_at(input, 0, "document larger than 2 GiB"));
        }
        // About one value per 12 bytes in typical data points: one allocation, rarely regrown.
        let mut parser = Parser {
            bytes: input,
            pos: 0,
            doc: Doc { input: text, nodes: Vec::with_capacity(input.len() / 12 + 4), owned: Vec::new() },
        };
        parser.skip_whitespace();
        parser.value(EMPTY, 0).map_err(|message| error_at(input, parser.pos, message))?;
        parser.skip_whitespace();
        if parser.pos != input.len() {
            return Err(error_at(input, parser.pos, "trailing characters after the document"));
        }
        Ok(parser.doc)
    }

    #[inline]
    fn text(&self, text: Text) -> &str {
        if text.len & OWNED != 0 {
            &self.owned[text.start as usize]
        } else {
            &self.input[text.start as usize..(text.start + text.len) as usize]
        }
    }

    #[inline]
    pub(crate) fn kind(&self, node: NodeId) -> Kind {
        self.nodes[node as usize].kind
    }

    /// The string value of `node`, `None` for other kinds.
    #[inline]
    pub(crate) fn str(&self, node: NodeId) -> Option<&str> {
        let node = &self.nodes[node as usize];
        (node.kind == Kind::String).then(|| self.text(node.text))
    }

    /// The text of a number, `None` for other kinds.
    pub(crate) fn number(&self, node: NodeId) -> Option<&str> {
        let node = &self.nodes[node as usize];
        (node.kind == Kind::Number).then(|| self.text(node.text))
    }

    /// The key of an object member.
    #[inline]
    pub(crate) fn key(&self, node: NodeId) -> &str {
        self.text(self.nodes[node as usize].key)
    }

    /// The members of an object or the items of an array, in order (nothing for other kinds).
    pub(crate) fn children(&self, node: NodeId) -> impl Iterator<Item = NodeId> + '_ {
        let end = self.nodes[node as usize].end;
        let mut next = if matches!(self.kind(node), Kind::Object | Kind::Array) { node + 1 } else { end };
        std::iter::from_fn(move || {
            (next < end).then(|| {
                let child = next;
                next = self.nodes[child as usize].end;
                child
            })
        })
    }

    /// The member `key` of `object` (the last one when the key is repeated), `None` for non-objects.
    #[inline]
    pub(crate) fn get(&self, object: NodeId, key: &str) -> Option<NodeId> {
        let container = self.nodes.get(object as usize)?;
        if container.kind != Kind::Object {
            return None;
        }
        let end = (container.end as usize).min(self.nodes.len());
        let mut found = None;
        let mut next = object as usize + 1;
        while next < end {
            let member = &self.nodes[next];
            // lengths first: most members differ in length, and escaped (owned) keys are rare
            let same = if member.key.len & OWNED == 0 {
                member.key.len as usize == key.len()
                    && self
                        .input
                        .as_bytes()
                        .get(member.key.start as usize..member.key.start as usize + key.len())
                        .is_some_and(|bytes| bytes == key.as_bytes())
            } else {
                self.owned[member.key.start as usize] == key
            };
            if same {
                found = Some(next as NodeId);
            }
            next = member.end as usize;
        }
        found
    }
}

/// Whether a JSON number text has no fraction and no exponent (draft-04's "integer").
pub(crate) fn is_integer_literal(number: &str) -> bool {
    !number.bytes().any(|b| matches!(b, b'.' | b'e' | b'E'))
}

/// Whether a JSON number is whole (draft-06+ "integer": 1.0 and 1e2 count).
pub(crate) fn is_whole_number(number: &str) -> bool {
    is_integer_literal(number) || number.parse::<f64>().is_ok_and(|value| value.fract() == 0.0)
}

fn error_at(input: &[u8], pos: usize, message: &'static str) -> JsonError {
    let before = &input[..pos.min(input.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
    JsonError { line, column, message }
}

struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
    doc: Doc<'a>,
}

type Parsed<T> = Result<T, &'static str>;

impl Parser<'_> {
    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    fn push(&mut self, key: Text, kind: Kind, text: Text) {
        let end = self.doc.nodes.len() as u32 + 1;
        self.doc.nodes.push(Node { key, text, kind, end });
    }

    fn value(&mut self, key: Text, depth: usize) -> Parsed<()> {
        match self.bytes.get(self.pos) {
            Some(b'{') => self.container(key, depth + 1, Kind::Object),
            Some(b'[') => self.container(key, depth + 1, Kind::Array),
            Some(b'"') => {
                let text = self.string()?;
                self.push(key, Kind::String, text);
                Ok(())
            }
            Some(b'-' | b'0'..=b'9') => {
                let text = self.number()?;
                self.push(key, Kind::Number, text);
                Ok(())
            }
            Some(b't') => self.literal(key, "true", Kind::Bool(true)),
            Some(b'f') => self.literal(key, "false", Kind::Bool(false)),
            Some(b'n') => self.literal(key, "null", Kind::Null),
            Some(_) => Err("expected a value"),
            None => Err("unexpected end of input"),
        }
    }

    fn literal(&mut self, key: Text, word: &'static str, kind: Kind) -> Parsed<()> {
        if self.bytes[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            self.push(key, kind, EMPTY);
            Ok(())
        } else {
            Err("expected a value")
        }
    }

    fn container(&mut self, key: Text, depth: usize, kind: Kind) -> Parsed<()> {
        if depth > MAX_DEPTH {
            return Err("nested too deeply");
        }
        let index = self.doc.nodes.len();
        self.push(key, kind, EMPTY);
        let close = if kind == Kind::Object { b'}' } else { b']' };
        self.pos += 1;
        self.skip_whitespace();
        if self.bytes.get(self.pos) == Some(&close) {
            self.pos += 1;
            return Ok(());
        }
        loop {
            let member_key = if kind == Kind::Object {
                if self.bytes.get(self.pos) != Some(&b'"') {
                    return Err("expected a string key");
                }
                let member_key = self.string()?;
                self.skip_whitespace();
                if self.bytes.get(self.pos) != Some(&b':') {
                    return Err("expected ':'");
                }
                self.pos += 1;
                self.skip_whitespace();
                member_key
            } else {
                EMPTY
            };
            self.value(member_key, depth)?;
            self.skip_whitespace();
            match self.bytes.get(self.pos) {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_whitespace();
                }
                Some(&b) if b == close => {
                    self.pos += 1;
                    self.doc.nodes[index].end = self.doc.nodes.len() as u32;
                    return Ok(());
                }
                _ => return Err(if kind == Kind::Object { "expected ',' or '}'" } else { "expected ',' or ']'" }),
            }
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while self.bytes.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Parsed<Text> {
        let start = self.pos;
        if self.bytes[self.pos] == b'-' {
            self.pos += 1;
        }
        match self.bytes.get(self.pos) {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err("invalid number"),
        }
        if self.bytes.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err("invalid number");
            }
        }
        let mut exponent = false;
        if let Some(b'e' | b'E') = self.bytes.get(self.pos) {
            self.pos += 1;
            exponent = true;
            if let Some(b'+' | b'-') = self.bytes.get(self.pos) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err("invalid number");
            }
        }
        let text = &self.doc.input[start..self.pos];
        // Like serde_json, refuse numbers that do not fit an f64 (without an exponent, only 309+ digits overflow).
        if (exponent || text.len() > 300) && !text.parse::<f64>().is_ok_and(f64::is_finite) {
            return Err("number out of range");
        }
        Ok(Text { start: start as u32, len: (self.pos - start) as u32 })
    }

    /// Skips string bytes that need no attention (not `"`, `\` or a control character), 8 at a time.
    fn skip_plain_string_bytes(&mut self) {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGHS: u64 = 0x8080_8080_8080_8080;
        while let Some(chunk) = self.bytes.get(self.pos..self.pos + 8) {
            let word =
                u64::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3], chunk[4], chunk[5], chunk[6], chunk[7]]);
            let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
            let quote = has_zero(word ^ (ONES * u64::from(b'"')));
            let backslash = has_zero(word ^ (ONES * u64::from(b'\\')));
            // a byte below 0x20 borrows into its high bit when 0x20 is subtracted (false positives only after it)
            let control = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
            let special = quote | backslash | control;
            if special != 0 {
                // the lowest flagged byte is a real one (false positives only follow it)
                self.pos += (special.trailing_zeros() / 8) as usize;
                return;
            }
            self.pos += 8;
        }
    }

    fn string(&mut self) -> Parsed<Text> {
        self.pos += 1;
        let start = self.pos;
        self.skip_plain_string_bytes();
        loop {
            match self.bytes.get(self.pos) {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(Text { start: start as u32, len: (self.pos - 1 - start) as u32 });
                }
                Some(b'\\') => break,
                Some(0..=0x1f) => return Err("control character in string"),
                Some(_) => self.pos += 1,
                None => return Err("unterminated string"),
            }
        }
        let mut owned = String::from(&self.doc.input[start..self.pos]);
        loop {
            let run_start = self.pos;
            while let Some(&b) = self.bytes.get(self.pos) {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            owned.push_str(&self.doc.input[run_start..self.pos]);
            match self.bytes.get(self.pos) {
                Some(b'"') => {
                    self.pos += 1;
                    self.doc.owned.push(owned);
                    return Ok(Text { start: (self.doc.owned.len() - 1) as u32, len: OWNED });
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let escaped = match self.bytes.get(self.pos) {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            self.pos += 1;
                            owned.push(self.unicode_escape()?);
                            continue;
                        }
                        _ => return Err("invalid escape"),
                    };
                    owned.push(escaped);
                    self.pos += 1;
                }
                Some(_) => return Err("control character in string"),
                None => return Err("unterminated string"),
            }
        }
    }

    /// The character of `\uXXXX` (with its low surrogate escape when it is a high one).
    fn unicode_escape(&mut self) -> Parsed<char> {
        let unit = self.hex4()?;
        let code = match unit {
            0xD800..=0xDBFF => {
                if !self.bytes[self.pos..].starts_with(b"\\u") {
                    return Err("lone surrogate in \\u escape");
                }
                self.pos += 2;
                let low = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&low) {
                    return Err("lone surrogate in \\u escape");
                }
                0x10000 + ((u32::from(unit) - 0xD800) << 10) + (u32::from(low) - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err("lone surrogate in \\u escape"),
            _ => u32::from(unit),
        };
        char::from_u32(code).ok_or("invalid \\u escape")
    }

    fn hex4(&mut self) -> Parsed<u16> {
        let digits = self.bytes.get(self.pos..self.pos + 4).ok_or("invalid \\u escape")?;
        let mut unit = 0u16;
        for &digit in digits {
            let nibble = (digit as char).to_digit(16).ok_or("invalid \\u escape")?;
            unit = unit * 16 + nibble as u16;
        }
        self.pos += 4;
        Ok(unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepts(text: &str) -> bool {
        Doc::parse(text.as_bytes()).is_ok()
    }

    #[test]
    fn agrees_with_serde_json_on_syntax() {
        let cases = [
            r#"{"a":1,"b":[true,false,null],"c":{"d":"e"}}"#,
            r#" [ 1 , -0 , 0.5 , 1e3 , 1E-2 , -12.5e+1 ] "#,
            r#""\u00e9\ud83d\ude00\n\"""#,
            r#""a long string without escapes, longer than eight bytes\u0041""#,
            "{}",
            "[]",
            r#"{"a":1,}"#,
            "[1,]",
            "01",
            "1.",
            ".5",
            "-",
            "1e",
            "+1",
            r#""\x""#,
            r#""\ud800""#,
            r#""\udc00x""#,
            "\"a\u{1}b\"",
            "\"abcdefghij\u{1f}klmnop\"",
            "tru",
            "nul",
            "[1] 2",
            "1e400",
            "",
            "{\"a\" 1}",
            "\u{feff}{}",
        ];
        for case in cases {
            let expected = serde_json::from_str::<serde_json::Value>(case).is_ok();
            assert_eq!(accepts(case), expected, "{case:?}");
        }
        assert!(Doc::parse(b"\"\xff\"").is_err());
    }

    #[test]
    fn tree_access() {
        let doc = Doc::parse(br#"{"a":1,"b":[true,{"c":"d"},null],"a":"two","e\u0021":"x\ty"}"#).unwrap();
        let a = doc.get(ROOT, "a").unwrap();
        assert_eq!(doc.str(a), Some("two"), "the last duplicate wins");
        assert_eq!(doc.get(ROOT, "z"), None);
        let b = doc.get(ROOT, "b").unwrap();
        let items: Vec<Kind> = doc.children(b).map(|item| doc.kind(item)).collect();
        assert_eq!(items, [Kind::Bool(true), Kind::Object, Kind::Null]);
        let object = doc.children(b).nth(1).unwrap();
        assert_eq!(doc.get(object, "c").and_then(|c| doc.str(c)), Some("d"));
        assert_eq!(doc.get(ROOT, "e!").and_then(|e| doc.str(e)), Some("x\ty"));
        let keys: Vec<&str> = doc.children(ROOT).map(|member| doc.key(member)).collect();
        assert_eq!(keys, ["a", "b", "a", "e!"]);
        let number = Doc::parse(b"-12.5e+1").unwrap();
        assert_eq!(number.number(ROOT), Some("-12.5e+1"));
    }

    #[test]
    fn integer_per_dialect() {
        assert!(is_integer_literal("12") && is_integer_literal("-3"));
        assert!(!is_integer_literal("1.0") && !is_integer_literal("1e2"));
        assert!(is_whole_number("1.0") && is_whole_number("1e2") && !is_whole_number("1.5"));
    }

    #[test]
    fn errors_name_line_and_column() {
        let error = Doc::parse(b"{\n  \"a\": tru\n}").unwrap_err();
        assert_eq!((error.line, error.column), (2, 8));
        assert_eq!(error.to_string(), "invalid JSON at line 2 column 8: expected a value");
    }

    #[test]
    fn refuses_deep_nesting() {
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(Doc::parse(deep.as_bytes()).is_err());
    }
}
