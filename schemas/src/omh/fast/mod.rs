//! The fast path: validation while parsing, straight from the bytes, with no tree and no allocation.
//!
//! The rule tables of `defs` are compiled once into [`Plan`]s (a conjunction of schemas each: `allOf` flattened,
//! `properties` merged into one key table with a bit per key for `required`), and a single pass over the text
//! checks every value against its plan as it is parsed. Property names are recognised in place, a word at a
//! time. `oneOf`/`anyOf` of an object check each alternative on the members already read (reading again only
//! the values the alternative has rules for); of other values, they read the value again. The pass records the
//! members of the objects it validated and the date-times it parsed ([`Index`]), from which the time and values
//! are derived (`derive`, through [`RawView`]) without reading the text again; units and codes are `&'static`.
//!
//! Points of a shape seen before skip the walk altogether: see [`shape`].
//!
//! The fast path only ever says "valid" or gives up: on anything invalid or unusual (a string with an escape, a
//! type that is not builtin, nesting deeper than [`MAX_DEPTH`], ...) it returns `None` and the caller runs the
//! detailed validator of [`super::rules`] over a [`super::json::Doc`], which finds the same answer and explains
//! it. So the fast path must never accept what the detailed one refuses; the tests compare both on every official
//! test document and on tens of thousands of mutations of them.

use super::datetime;
use super::defs::{self, Builtin};
use super::derive::{self, View};
use super::json::{Kind, is_integer_literal, is_whole_number};
use super::rules::{ARRAY, BOOLEAN, INTEGER, INTEGER_DRAFT4, NUMBER, OBJECT, Pattern, Rule, STRING, Schema, Types};
use super::schema_id::{IEEE_SYSTEM, OMH_SYSTEM, SchemaId};
use super::uri;
use crate::{EffectiveTime, ValidatedDataPoint};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::OnceLock;

mod shape;

/// Deeper documents are left to the detailed validator (whose parser refuses nesting beyond 128).
const MAX_DEPTH: u32 = 64;

/// Kinds of JSON values as bits, for the `type` rules.
const K_OBJECT: u8 = 1;
const K_ARRAY: u8 = 2;
const K_STRING: u8 = 4;
const K_NUMBER: u8 = 8;
const K_BOOL: u8 = 16;
const K_NULL: u8 = 32;
const K_ALL: u8 = 63;

type PlanId = u32;
/// No rule applies: only the syntax is checked.
const NO_PLAN: PlanId = u32::MAX;

/// What the `type` rules ask of a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum NumberCheck {
    Any,
    /// draft-06+ `integer`: a whole value.
    Whole,
    /// draft-04 `integer`: no fraction or exponent.
    Literal,
    Never,
}

/// A known string (a property name), recognised in place by its bytes and closing quote: the first 8 bytes
/// (with the quote when they fit) are compared as one word, without scanning for the end of the string first.
#[derive(Debug)]
struct Literal {
    text: &'static [u8],
    head: u64,
    mask: u64,
}

impl Literal {
    fn new(text: &'static str) -> Self {
        let bytes = text.as_bytes();
        if bytes.iter().any(|&b| b == b'"' || b == b'\\' || b < 0x20) {
            // would be escaped in JSON text: never matched in place
            return Literal { text: bytes, head: 1, mask: 0 };
        }
        let mut head = [0u8; 8];
        let n = bytes.len().min(8);
        head[..n].copy_from_slice(&bytes[..n]);
        if n < 8 {
            head[n] = b'"';
        }
        let used = (bytes.len() + 1).min(8);
        let mask = if used == 8 { u64::MAX } else { (1u64 << (8 * used)) - 1 };
        Literal { text: bytes, head: u64::from_le_bytes(head), mask }
    }

    /// Whether the text at `at` (whose first 8 bytes are `first`) is this string and its closing quote.
    #[inline(always)]
    fn matches(&self, bytes: &[u8], at: usize, first: u64) -> bool {
        if first & self.mask != self.head {
            return false;
        }
        let n = self.text.len();
        n < 8 || (bytes.get(at + n) == Some(&b'"') && same(&bytes[at..at + n], self.text))
    }
}

#[derive(Debug)]
struct Key {
    name: &'static str,
    literal: Literal,
    /// The conjunction of the `properties` schemas of this name.
    plan: PlanId,
    /// Allowed by every `additionalProperties: false`.
    allowed: bool,
    bit: u64,
}

/// A conjunction of schemas, ready for one pass over a value.
#[derive(Debug)]
struct Plan {
    /// The kinds every `type` rule (and `enum`: strings only) allows.
    kinds: u8,
    number: NumberCheck,
    enums: Vec<&'static [&'static str]>,
    patterns: Vec<Pattern>,
    date_time: bool,
    uri: bool,
    /// Property names of `properties`, `required` and `additionalProperties: false` lists.
    keys: Vec<Key>,
    /// Some `additionalProperties: false`: members not in `keys` are refused.
    closed: bool,
    required: u64,
    items: PlanId,
    min_items: usize,
    /// `oneOf` (true) and `anyOf` (false) rules, each with its alternatives.
    alternatives: Vec<(bool, Vec<PlanId>)>,
    /// No rule at all: a syntax check is enough.
    trivial: bool,
    /// Some `enum`, `pattern` or `format: uri` to check on strings.
    string_rules: bool,
    /// More than 64 property names: not handled here.
    supported: bool,
}

impl Plan {
    #[inline]
    fn key(&self, name: &[u8]) -> Option<&Key> {
        self.keys.iter().find(|key| same(key.name.as_bytes(), name))
    }

    /// The property whose name (and closing quote) starts at `at`; else whether it is known that none does
    /// (`Err(true)`) or the key must be read to be looked up (`Err(false)`, near the end of the text).
    #[inline(always)]
    fn key_in_place(&self, bytes: &[u8], at: usize) -> Result<&Key, bool> {
        if at + 8 > bytes.len() {
            return Err(false);
        }
        let first = word(bytes, at);
        self.keys.iter().find(|key| key.literal.matches(bytes, at, first)).ok_or(true)
    }
}

/// Every builtin schema compiled, with a plan per entry of [`defs::builtins`].
pub(crate) struct Compiled {
    plans: Vec<Plan>,
    builtins: Vec<PlanId>,
    header: PlanId,
    /// Every `enum` value of the schemas (units among them), to hand out without allocating.
    words: Words,
}

/// A set of `&'static str`, open addressing on a hash of the first and last 8 bytes.
struct Words {
    slots: Vec<Option<&'static str>>,
}

impl Words {
    const BITS: u32 = 11;

    fn slot(text: &[u8]) -> usize {
        let n = text.len();
        let (first, last) = if n >= 8 {
            (word(text, 0), word(text, n - 8))
        } else {
            let mut padded = [0u8; 8];
            padded[..n].copy_from_slice(text);
            (u64::from_le_bytes(padded), 0)
        };
        let mixed = (first ^ last.rotate_left(29) ^ n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (mixed >> (64 - Self::BITS)) as usize
    }

    fn new(words: impl Iterator<Item = &'static str>) -> Self {
        let mut slots = vec![None; 1 << Self::BITS];
        let mask = slots.len() - 1;
        for word in words {
            let mut at = Self::slot(word.as_bytes());
            // at most a few hundred words in 2048 slots: probing ends
            while let Some(taken) = slots[at] {
                if taken == word {
                    break;
                }
                at = (at + 1) & mask;
            }
            slots[at] = Some(word);
        }
        Words { slots }
    }

    fn find(&self, text: &str) -> Option<&'static str> {
        let mask = self.slots.len() - 1;
        let mut at = Self::slot(text.as_bytes());
        loop {
            let word = self.slots[at]?;
            if same(word.as_bytes(), text.as_bytes()) {
                return Some(word);
            }
            at = (at + 1) & mask;
        }
    }
}

/// `text` as a `Cow`, borrowed (no allocation) when it is one of the schemas' `enum` values, e.g. a unit.
pub(crate) fn intern(text: &str) -> Cow<'static, str> {
    match compiled().words.find(text) {
        Some(word) => Cow::Borrowed(word),
        None => Cow::Owned(text.to_owned()),
    }
}

struct Compiler {
    plans: Vec<Plan>,
    memo: HashMap<Vec<usize>, PlanId>,
}

fn flatten(schema: &'static Schema, out: &mut Vec<&'static Schema>) {
    if out.iter().any(|seen| std::ptr::eq(*seen, schema)) {
        return;
    }
    out.push(schema);
    for rule in schema.rules {
        if let Rule::AllOf(parts) = rule {
            for part in *parts {
                flatten(part, out);
            }
        }
    }
}

/// Adds `name` to the property names (once).
fn name_of(names: &mut Vec<(&'static str, Vec<&'static Schema>)>, name: &'static str) {
    if !names.iter().any(|(known, _)| *known == name) {
        names.push((name, Vec::new()));
    }
}

impl Compiler {
    fn compile(&mut self, schemas: &[&'static Schema]) -> PlanId {
        let mut flat = Vec::new();
        for schema in schemas {
            flatten(schema, &mut flat);
        }
        let mut identity: Vec<usize> = flat.iter().map(|schema| std::ptr::from_ref(*schema) as usize).collect();
        identity.sort_unstable();
        if let Some(&id) = self.memo.get(&identity) {
            return id;
        }
        let id = self.plans.len() as PlanId;
        // a placeholder, so that a recursive reference finds this plan
        self.plans.push(Plan {
            kinds: K_ALL,
            number: NumberCheck::Any,
            enums: Vec::new(),
            patterns: Vec::new(),
            date_time: false,
            uri: false,
            keys: Vec::new(),
            closed: false,
            required: 0,
            items: NO_PLAN,
            min_items: 0,
            alternatives: Vec::new(),
            trivial: false,
            string_rules: false,
            supported: false,
        });
        self.memo.insert(identity, id);

        let mut kinds = K_ALL;
        let mut number = NumberCheck::Any;
        let mut enums = Vec::new();
        let mut patterns = Vec::new();
        let (mut date_time, mut uri) = (false, false);
        let mut properties: Vec<(&'static str, Vec<&'static Schema>)> = Vec::new();
        let mut required: Vec<&'static str> = Vec::new();
        let mut only: Vec<&'static [&'static str]> = Vec::new();
        let mut items: Vec<&'static Schema> = Vec::new();
        let mut min_items = 0;
        let mut alternatives = Vec::new();
        for schema in &flat {
            for rule in schema.rules {
                match rule {
                    Rule::Type(types) => {
                        let types: Types = *types;
                        let mut allowed = 0;
                        for (bit, kind) in [(OBJECT, K_OBJECT), (ARRAY, K_ARRAY), (STRING, K_STRING)] {
                            if types & bit != 0 {
                                allowed |= kind;
                            }
                        }
                        if types & BOOLEAN != 0 {
                            allowed |= K_BOOL;
                        }
                        let check = if types & NUMBER != 0 {
                            NumberCheck::Any
                        } else if types & INTEGER != 0 {
                            NumberCheck::Whole
                        } else if types & INTEGER_DRAFT4 != 0 {
                            NumberCheck::Literal
                        } else {
                            NumberCheck::Never
                        };
                        if check != NumberCheck::Never {
                            allowed |= K_NUMBER;
                        }
                        kinds &= allowed;
                        number = number.max(check);
                    }
                    Rule::Enum(values) => {
                        kinds &= K_STRING;
                        enums.push(*values);
                    }
                    Rule::Pattern(pattern) => patterns.push(*pattern),
                    Rule::DateTime => date_time = true,
                    Rule::Uri => uri = true,
                    Rule::Properties(list) => {
                        for (name, schema) in *list {
                            name_of(&mut properties, name);
                            if let Some((_, schemas)) = properties.iter_mut().find(|(known, _)| known == name) {
                                schemas.push(schema);
                            }
                        }
                    }
                    Rule::Required(names) => required.extend_from_slice(names),
                    Rule::OnlyProperties(names) => only.push(names),
                    Rule::Items(schema) => items.push(schema),
                    Rule::MinItems(min) => min_items = min_items.max(*min),
                    Rule::AllOf(_) => {} // flattened
                    Rule::AnyOf(alts) | Rule::OneOf(alts) => {
                        let one_of = matches!(rule, Rule::OneOf(_));
                        alternatives.push((one_of, *alts));
                    }
                }
            }
        }
        for name in required.iter().chain(only.iter().flat_map(|names| names.iter())) {
            name_of(&mut properties, name);
        }
        let supported = properties.len() <= 64;
        let keys: Vec<Key> = properties
            .into_iter()
            .enumerate()
            .map(|(index, (name, schemas))| Key {
                name,
                literal: Literal::new(name),
                plan: if schemas.is_empty() { NO_PLAN } else { self.compile(&schemas) },
                allowed: only.iter().all(|names| names.contains(&name)),
                bit: if index < 64 { 1 << index } else { 0 },
            })
            .collect();
        let required = keys.iter().filter(|key| required.contains(&key.name)).fold(0, |mask, key| mask | key.bit);
        let items = if items.is_empty() { NO_PLAN } else { self.compile(&items) };
        let alternatives: Vec<(bool, Vec<PlanId>)> = alternatives
            .into_iter()
            .map(|(one_of, alts)| (one_of, alts.iter().map(|alt| self.compile(&[alt])).collect()))
            .collect();
        let trivial = kinds == K_ALL
            && enums.is_empty()
            && patterns.is_empty()
            && !date_time
            && !uri
            && keys.is_empty()
            && only.is_empty()
            && items == NO_PLAN
            && min_items == 0
            && alternatives.is_empty();
        let string_rules = !enums.is_empty() || !patterns.is_empty() || uri;
        self.plans[id as usize] = Plan {
            kinds,
            number,
            enums,
            patterns,
            date_time,
            uri,
            keys,
            closed: !only.is_empty(),
            required,
            items,
            min_items,
            string_rules,
            alternatives,
            trivial,
            supported,
        };
        id
    }
}

/// The plans of every builtin schema, compiled on first use.
pub(crate) fn compiled() -> &'static Compiled {
    static COMPILED: OnceLock<Compiled> = OnceLock::new();
    COMPILED.get_or_init(|| {
        let mut compiler = Compiler { plans: Vec::new(), memo: HashMap::new() };
        let builtins = defs::builtins().iter().map(|builtin| compiler.compile(&[builtin.schema])).collect();
        let header = compiler.compile(&[&defs::IEEE_HEADER]);
        let words = Words::new(
            compiler.plans.iter().flat_map(|plan| plan.enums.iter().flat_map(|values| values.iter().copied())),
        );
        Compiled { plans: compiler.plans, builtins, header, words }
    })
}

/// Why the pass stopped: the value breaks its plan, or the fast path does not handle it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Invalid,
    GiveUp,
}

type Step = Result<(), Stop>;

/// One member of an object: where its key starts and ends and where its value starts.
#[derive(Debug, Clone, Copy, Default)]
struct Member {
    key: u32,
    key_end: u32,
    value: u32,
}

/// Members of one object kept for `oneOf`/`anyOf` and the index (more: the alternatives re-read the object).
const OBJECT_MEMBERS: usize = 16;
const INDEX_MEMBERS: usize = 32;
const INDEX_OBJECTS: usize = 12;
const INDEX_DATES: usize = 4;

/// What a pass records for the derivation of time and values, so that it need not read the text again: the
/// members of the objects it validated and the date-times it parsed, by position. A cache only: what is not in
/// it (an object inside a value no rule looks at, or beyond the capacity) is read from the text.
#[derive(Debug)]
pub(crate) struct Index {
    members: [Member; INDEX_MEMBERS],
    member_count: usize,
    /// Where an object starts, and its members in `members`.
    objects: [(u32, u16, u16); INDEX_OBJECTS],
    object_count: usize,
    /// Where a date-time string starts, its instant in UTC microseconds and its offset in minutes.
    dates: [(u32, i64, i64); INDEX_DATES],
    date_count: usize,
}

impl Index {
    fn new() -> Self {
        Index {
            members: [Member::default(); INDEX_MEMBERS],
            member_count: 0,
            objects: [(0, 0, 0); INDEX_OBJECTS],
            object_count: 0,
            dates: [(0, 0, 0); INDEX_DATES],
            date_count: 0,
        }
    }

    fn record_object(&mut self, pos: usize, members: &[Member]) {
        let first = self.member_count;
        if self.object_count == INDEX_OBJECTS || first + members.len() > INDEX_MEMBERS || self.members_of(pos).is_some()
        {
            return;
        }
        self.members[first..first + members.len()].copy_from_slice(members);
        self.member_count += members.len();
        self.objects[self.object_count] = (pos as u32, first as u16, members.len() as u16);
        self.object_count += 1;
    }

    /// Which recorded object starts at `pos`.
    #[inline]
    fn object_at(&self, pos: usize) -> Option<usize> {
        self.objects[..self.object_count.min(INDEX_OBJECTS)].iter().position(|&(at, _, _)| at as usize == pos)
    }

    fn members(&self, object: usize) -> &[Member] {
        let (_, first, len) = self.objects[object];
        self.members.get(first as usize..first as usize + len as usize).unwrap_or_default()
    }

    fn members_of(&self, pos: usize) -> Option<&[Member]> {
        Some(self.members(self.object_at(pos)?))
    }

    fn record_date(&mut self, pos: usize, instant: (i64, i64)) {
        if let Some(slot) = self.dates.get_mut(self.date_count) {
            *slot = (pos as u32, instant.0, instant.1);
            self.date_count += 1;
        }
    }

    fn date(&self, pos: usize) -> Option<(i64, i64)> {
        self.dates[..self.date_count]
            .iter()
            .find(|(at, _, _)| *at as usize == pos)
            .map(|&(_, utc, offset)| (utc, offset))
    }
}

/// Loads 8 bytes of `bytes` from `at` (which must leave 8).
#[inline(always)]
fn word(bytes: &[u8], at: usize) -> u64 {
    let mut chunk = [0; 8];
    chunk.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(chunk)
}

/// `a == b` for the short keys and names compared here, a word at a time and without a call to `memcmp`.
#[inline(always)]
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n < 8 {
        if n >= 4 {
            let half = |s: &[u8], at: usize| u32::from_le_bytes([s[at], s[at + 1], s[at + 2], s[at + 3]]);
            return half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4);
        }
        return a.iter().zip(b).all(|(x, y)| x == y);
    }
    let mut at = 0;
    while at + 8 < n {
        if word(a, at) != word(b, at) {
            return false;
        }
        at += 8;
    }
    word(a, n - 8) == word(b, n - 8)
}

struct Pass<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    plans: &'a [Plan],
    /// Whether to keep an [`Index`] (a data point's derivation needs one).
    record: bool,
    index: Index,
    /// When learning a shape (`shape`): every check of a string or number, as (where, plan, whether it held).
    log: Option<Vec<(u32, PlanId, bool)>>,
    /// A string whose end is known (`shape`): where its opening and closing quotes are.
    known_string: (usize, usize),
}

impl<'a> Pass<'a> {
    fn new(text: &'a str, plans: &'a [Plan], record: bool) -> Self {
        Pass {
            text,
            bytes: text.as_bytes(),
            pos: 0,
            plans,
            record,
            index: Index::new(),
            log: None,
            known_string: (usize::MAX, 0),
        }
    }

    #[inline]
    fn peek(&self) -> u8 {
        self.bytes.get(self.pos).copied().unwrap_or(0)
    }

    #[inline]
    fn whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    /// Skips whitespace and returns the next byte (0 at the end), without consuming it.
    #[inline(always)]
    fn next(&mut self) -> u8 {
        match self.bytes.get(self.pos) {
            Some(&byte) if byte > b' ' => byte,
            _ => {
                self.whitespace();
                self.peek()
            }
        }
    }

    #[inline]
    fn expect(&mut self, byte: u8) -> Step {
        if self.peek() == byte {
            self.pos += 1;
            Ok(())
        } else {
            Err(Stop::GiveUp)
        }
    }

    /// A string without escapes (the cursor on its quote): where its text starts and ends.
    #[inline]
    fn string(&mut self) -> Result<(usize, usize), Stop> {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGHS: u64 = 0x8080_8080_8080_8080;
        self.pos += 1;
        let start = self.pos;
        let mut chunks = self.bytes.get(start..).unwrap_or_default().chunks_exact(8);
        for chunk in &mut chunks {
            let word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
            let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
            let quote = has_zero(word ^ (ONES * u64::from(b'"')));
            let backslash = has_zero(word ^ (ONES * u64::from(b'\\')));
            let control = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
            let special = quote | backslash | control;
            if special != 0 {
                // the lowest flagged byte is a real one (false positives only follow it)
                self.pos += (special.trailing_zeros() / 8) as usize;
                break;
            }
            self.pos += 8;
        }
        loop {
            match self.bytes.get(self.pos) {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok((start, self.pos - 1));
                }
                // escapes (and errors) are for the detailed path
                Some(b'\\' | 0..=0x1f) | None => return Err(Stop::GiveUp),
                Some(_) => self.pos += 1,
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

    /// A number as [`super::json`] accepts it: its text.
    fn number(&mut self) -> Result<&'a str, Stop> {
        let start = self.pos;
        self.number_end()?;
        Ok(&self.text[start..self.pos])
    }

    /// Moves past a number as [`super::json`] accepts it, reading the bytes only.
    fn number_end(&mut self) -> Step {
        let start = self.pos;
        if self.peek() == b'-' {
            self.pos += 1;
        }
        match self.peek() {
            b'0' => self.pos += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return Err(Stop::GiveUp),
        }
        if self.peek() == b'.' {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(Stop::GiveUp);
            }
        }
        let mut exponent = false;
        if let b'e' | b'E' = self.peek() {
            self.pos += 1;
            exponent = true;
            if let b'+' | b'-' = self.peek() {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(Stop::GiveUp);
            }
        }
        // numbers that may not fit an f64 are for the detailed path (it refuses those that do not)
        let digits = &self.bytes[start..self.pos];
        if digits.len() > 300
            || (exponent
                && !std::str::from_utf8(digits).is_ok_and(|text| text.parse::<f64>().is_ok_and(f64::is_finite)))
        {
            return Err(Stop::GiveUp);
        }
        Ok(())
    }

    fn literal(&mut self, word: &[u8]) -> Step {
        if self.bytes[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(Stop::GiveUp)
        }
    }

    /// Checks the syntax of one value.
    fn skip(&mut self, depth: u32) -> Step {
        match self.peek() {
            b'"' => self.string().map(drop),
            b'{' | b'[' => {
                let close = if self.peek() == b'{' { b'}' } else { b']' };
                if depth >= MAX_DEPTH {
                    return Err(Stop::GiveUp);
                }
                self.pos += 1;
                if self.next() == close {
                    self.pos += 1;
                    return Ok(());
                }
                loop {
                    if close == b'}' {
                        if self.peek() != b'"' {
                            return Err(Stop::GiveUp);
                        }
                        self.string()?;
                        if self.next() != b':' {
                            return Err(Stop::GiveUp);
                        }
                        self.pos += 1;
                        self.next();
                    }
                    self.skip(depth + 1)?;
                    match self.next() {
                        b',' => {
                            self.pos += 1;
                            self.next();
                        }
                        byte if byte == close => {
                            self.pos += 1;
                            return Ok(());
                        }
                        _ => return Err(Stop::GiveUp),
                    }
                }
            }
            b'-' | b'0'..=b'9' => self.number().map(drop),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => Err(Stop::GiveUp),
        }
    }

    /// Checks one value (the cursor on its first byte) against plan `id`, at nesting `depth`.
    fn value(&mut self, id: PlanId, depth: u32) -> Step {
        let Some(plan) = self.plans.get(id as usize) else { return self.skip(depth) };
        if plan.trivial {
            return self.skip(depth);
        }
        if !plan.supported {
            return Err(Stop::GiveUp);
        }
        let start = self.pos;
        let kind = match self.peek() {
            b'{' => K_OBJECT,
            b'[' => K_ARRAY,
            b'"' => K_STRING,
            b'-' | b'0'..=b'9' => K_NUMBER,
            b't' | b'f' => K_BOOL,
            b'n' => K_NULL,
            _ => return Err(Stop::GiveUp),
        };
        if plan.kinds & kind == 0 {
            self.log_check(start, kind, id, Err(Stop::Invalid));
            return Err(Stop::Invalid);
        }
        let result = match kind {
            // objects check their alternatives on the members they read
            K_OBJECT => return self.object(plan, depth),
            K_ARRAY => self.array(plan, depth),
            K_STRING => self.string_value(plan, start),
            K_NUMBER => self.number_value(plan),
            _ => self.skip(depth),
        };
        let result = match result {
            Ok(()) if !plan.alternatives.is_empty() => self.reread_alternatives(plan, start, depth),
            other => other,
        };
        self.log_check(start, kind, id, result);
        result
    }

    /// Notes the outcome of plan `id` on the string or number at `start` when learning a shape.
    #[inline(always)]
    fn log_check(&mut self, start: usize, kind: u8, id: PlanId, result: Step) {
        if let Some(log) = &mut self.log
            && kind & (K_STRING | K_NUMBER) != 0
        {
            log.push((start as u32, id, result.is_ok()));
        }
    }

    fn string_value(&mut self, plan: &Plan, start: usize) -> Step {
        let (from, to) = if start == self.known_string.0 {
            self.pos = self.known_string.1 + 1;
            (start + 1, self.known_string.1)
        } else {
            self.string()?
        };
        if self.string_holds(plan, start, from, to) { Ok(()) } else { Err(Stop::Invalid) }
    }

    /// The rules of `plan` on the string at `start` whose text is `from..to` (its type aside).
    #[inline]
    fn string_holds(&mut self, plan: &Plan, start: usize, from: usize, to: usize) -> bool {
        let text = &self.text[from..to];
        if plan.string_rules && !check_string(plan, text) {
            return false;
        }
        if plan.date_time {
            let Some(instant) = datetime::parse_date_time_with_offset(text) else { return false };
            if self.record {
                self.index.record_date(start, instant);
            }
        }
        true
    }

    fn number_value(&mut self, plan: &Plan) -> Step {
        let text = self.number()?;
        if number_holds(plan, text) { Ok(()) } else { Err(Stop::Invalid) }
    }

    fn object(&mut self, plan: &Plan, depth: u32) -> Step {
        if depth >= MAX_DEPTH {
            return Err(Stop::GiveUp);
        }
        let bytes = self.bytes;
        let start = self.pos;
        self.pos += 1;
        let mut members = [Member::default(); OBJECT_MEMBERS];
        let mut count = 0;
        let mut seen = 0u64;
        if self.next() == b'}' {
            self.pos += 1;
        } else {
            loop {
                if self.peek() != b'"' {
                    return Err(Stop::GiveUp);
                }
                let key_start = self.pos + 1;
                // the plan's property names first, in place; other keys are read to their end
                let (key_end, key) = match plan.key_in_place(bytes, key_start) {
                    Ok(key) => {
                        self.pos = key_start + key.name.len() + 1;
                        (key_start + key.name.len(), Some(key))
                    }
                    Err(known) => {
                        let (_, key_end) = self.string()?;
                        (key_end, if known { None } else { plan.key(&bytes[key_start..key_end]) })
                    }
                };
                if self.next() != b':' {
                    return Err(Stop::GiveUp);
                }
                self.pos += 1;
                self.next();
                let value = self.pos;
                if let Some(member) = members.get_mut(count) {
                    *member = Member { key: key_start as u32, key_end: key_end as u32, value: value as u32 };
                }
                count += 1;
                match key {
                    Some(key) => {
                        if !key.allowed {
                            return Err(Stop::Invalid);
                        }
                        seen |= key.bit;
                        if let Err(stop) = self.value(key.plan, depth + 1) {
                            return self.failed_member(stop, key_start, key_end, value, depth);
                        }
                    }
                    None if plan.closed => return Err(Stop::Invalid),
                    None => self.skip(depth + 1)?,
                }
                match self.next() {
                    b',' => {
                        self.pos += 1;
                        self.next();
                    }
                    b'}' => {
                        self.pos += 1;
                        break;
                    }
                    _ => return Err(Stop::GiveUp),
                }
            }
        }
        if seen & plan.required != plan.required {
            return Err(Stop::Invalid);
        }
        // `None` when there were too many members to keep
        let members = members.get(..count);
        if !plan.alternatives.is_empty() {
            match members {
                Some(members) => self.object_alternatives(plan, members, depth)?,
                None => self.reread_alternatives(plan, start, depth)?,
            }
        }
        if self.record
            && let Some(members) = members
        {
            self.index.record_object(start, members);
        }
        Ok(())
    }

    /// A member's value broke its plan: that counts only when no later member has the same key (JSON Schema sees
    /// the last of duplicate keys), which the detailed path sorts out.
    fn failed_member(&mut self, stop: Stop, key_start: usize, key_end: usize, value: usize, depth: u32) -> Step {
        if stop == Stop::GiveUp {
            return Err(Stop::GiveUp);
        }
        self.pos = value;
        self.skip(depth + 1)?;
        loop {
            self.whitespace();
            match self.peek() {
                b',' => {
                    self.pos += 1;
                    self.whitespace();
                    if self.peek() != b'"' {
                        return Err(Stop::GiveUp);
                    }
                    let (from, to) = self.string()?;
                    if self.bytes[from..to] == self.bytes[key_start..key_end] {
                        return Err(Stop::GiveUp);
                    }
                    self.whitespace();
                    self.expect(b':')?;
                    self.whitespace();
                    self.skip(depth + 1)?;
                }
                b'}' => return Err(Stop::Invalid),
                _ => return Err(Stop::GiveUp),
            }
        }
    }

    fn array(&mut self, plan: &Plan, depth: u32) -> Step {
        if depth >= MAX_DEPTH {
            return Err(Stop::GiveUp);
        }
        self.pos += 1;
        let mut count = 0;
        if self.next() == b']' {
            self.pos += 1;
        } else {
            loop {
                self.value(plan.items, depth + 1)?;
                count += 1;
                match self.next() {
                    b',' => {
                        self.pos += 1;
                        self.next();
                    }
                    b']' => {
                        self.pos += 1;
                        break;
                    }
                    _ => return Err(Stop::GiveUp),
                }
            }
        }
        if count < plan.min_items {
            return Err(Stop::Invalid);
        }
        Ok(())
    }

    /// `oneOf` / `anyOf` of an object whose `members` have been read (and are well formed).
    fn object_alternatives(&mut self, plan: &Plan, members: &[Member], depth: u32) -> Step {
        let end = self.pos;
        for (one_of, alternatives) in &plan.alternatives {
            let mut matched = 0;
            for &alternative in alternatives {
                if self.object_matches(alternative, members, depth)? {
                    matched += 1;
                    if !one_of || matched > 1 {
                        break;
                    }
                }
            }
            if matched == 0 || (*one_of && matched > 1) {
                return Err(Stop::Invalid);
            }
        }
        self.pos = end;
        Ok(())
    }

    /// Whether the object of `members` satisfies plan `id` (an alternative): keys first, then the values of the
    /// members the plan has rules for, each read again.
    fn object_matches(&mut self, id: PlanId, members: &[Member], depth: u32) -> Result<bool, Stop> {
        let Some(plan) = self.plans.get(id as usize) else { return Ok(true) };
        if plan.trivial {
            return Ok(true);
        }
        if !plan.supported {
            return Err(Stop::GiveUp);
        }
        if plan.kinds & K_OBJECT == 0 {
            return Ok(false);
        }
        let bytes = self.bytes;
        let key_of = |member: &Member| &bytes[member.key as usize..member.key_end as usize];
        let mut seen = 0;
        for member in members {
            match plan.key(key_of(member)) {
                Some(key) if !key.allowed => return Ok(false),
                Some(key) => seen |= key.bit,
                None if plan.closed => return Ok(false),
                None => {}
            }
        }
        if seen & plan.required != plan.required {
            return Ok(false);
        }
        for (index, member) in members.iter().enumerate() {
            let Some(key) = plan.key(key_of(member)) else { continue };
            if key.plan == NO_PLAN {
                continue;
            }
            self.pos = member.value as usize;
            match self.value(key.plan, depth + 1) {
                Ok(()) => {}
                Err(Stop::Invalid) => {
                    // a later duplicate would replace this member
                    if members[index + 1..].iter().any(|later| key_of(later) == key_of(member)) {
                        return Err(Stop::GiveUp);
                    }
                    return Ok(false);
                }
                Err(Stop::GiveUp) => return Err(Stop::GiveUp),
            }
        }
        if !plan.alternatives.is_empty() {
            match self.object_alternatives(plan, members, depth) {
                Ok(()) => {}
                Err(Stop::Invalid) => return Ok(false),
                Err(Stop::GiveUp) => return Err(Stop::GiveUp),
            }
        }
        Ok(true)
    }

    /// `oneOf` / `anyOf` by reading the value (from `start`, already read once) again for each alternative.
    fn reread_alternatives(&mut self, plan: &Plan, start: usize, depth: u32) -> Step {
        let end = self.pos;
        for (one_of, alternatives) in &plan.alternatives {
            let mut matched = 0;
            for &alternative in alternatives {
                self.pos = start;
                match self.value(alternative, depth) {
                    Ok(()) => {
                        matched += 1;
                        if !one_of || matched > 1 {
                            break;
                        }
                    }
                    Err(Stop::Invalid) => {}
                    Err(Stop::GiveUp) => return Err(Stop::GiveUp),
                }
            }
            if matched == 0 || (*one_of && matched > 1) {
                return Err(Stop::Invalid);
            }
        }
        self.pos = end;
        Ok(())
    }
}

/// The rules of `plan` on a number (its type aside).
#[inline]
fn number_holds(plan: &Plan, text: &str) -> bool {
    match plan.number {
        NumberCheck::Any => true,
        NumberCheck::Whole => is_whole_number(text),
        NumberCheck::Literal => is_integer_literal(text),
        NumberCheck::Never => false,
    }
}

/// The `enum`, `pattern` and `format: uri` rules of a string (`format: date-time` is checked by the caller).
#[inline]
fn check_string(plan: &Plan, text: &str) -> bool {
    plan.enums.iter().all(|values| values.iter().any(|value| same(value.as_bytes(), text.as_bytes())))
        && plan.patterns.iter().all(|pattern| pattern.matches(text))
        && (!plan.uri || uri::is_uri(text))
}

/// The input as text, when the fast path may read it.
fn text_of(json: &[u8]) -> Option<&str> {
    // positions are u32 in the index
    if json.len() >= 1 << 31 {
        return None;
    }
    std::str::from_utf8(json).ok()
}

/// Whether `json` is valid against builtin plan `plan` (`Some(true)`), invalid (`Some(false)`), or not decided
/// here (`None`).
pub(crate) fn verdict(plan: PlanId, json: &[u8]) -> Option<bool> {
    let text = text_of(json)?;
    let compiled = compiled();
    let mut pass = Pass::new(text, &compiled.plans, false);
    pass.whitespace();
    let start = pass.pos;
    let verdict = match pass.value(plan, 0) {
        Ok(()) => true,
        Err(Stop::Invalid) => {
            // invalid, as long as the whole document is JSON (the detailed path reports syntax errors first)
            pass.pos = start;
            pass.skip(0).ok()?;
            false
        }
        Err(Stop::GiveUp) => return None,
    };
    pass.whitespace();
    (pass.pos == json.len()).then_some(verdict)
}

/// [`verdict`] of builtin number `index` (in [`defs::builtins`]).
pub(crate) fn body_verdict(index: usize, json: &[u8]) -> Option<bool> {
    verdict(*compiled().builtins.get(index)?, json)
}

/// A whole data point validated and its values derived, when the fast path can (`None`: ask the detailed path).
/// With `code`, the body is validated as that type whatever the header says.
pub(crate) fn data_point(json: &[u8], code: Option<&SchemaId>) -> Option<ValidatedDataPoint> {
    if code.is_none()
        && json.len() < 1 << 31
        && let Some(point) = shape::replay(json)
    {
        return Some(point);
    }
    let text = text_of(json)?;
    let mut pass = Pass::new(text, &compiled().plans, true);
    let point = check_data_point(&mut pass, code)?.derive(text, &pass.index)?;
    if code.is_none() {
        shape::learn(text, false);
    }
    Some(point)
}

/// [`data_point`] by the one-pass validator alone (no shapes).
pub(crate) fn one_pass_data_point(json: &[u8], code: Option<&SchemaId>) -> Option<ValidatedDataPoint> {
    let text = text_of(json)?;
    let mut pass = Pass::new(text, &compiled().plans, true);
    check_data_point(&mut pass, code)?.derive(text, &pass.index)
}

/// [`data_point`] by the shapes alone (`None` when `json` has none of the shapes kept).
pub(crate) fn shape_data_point(json: &[u8]) -> Option<ValidatedDataPoint> {
    if json.len() >= 1 << 31 {
        return None;
    }
    shape::replay(json)
}

/// Keeps the shape of `json` now (whether the last points repeated shapes or not); whether it could.
pub(crate) fn learn_shape(json: &[u8]) -> bool {
    text_of(json).is_some_and(|text| shape::learn(text, true))
}

/// A data point the fast path has validated: where its parts are (its index is the pass's).
struct Checked {
    header: usize,
    body: usize,
    builtin: &'static Builtin,
    /// Where the header's `schema_id` strings are (they choose the body's type).
    schema_id: [usize; 3],
}

impl Checked {
    fn derive(&self, text: &str, index: &Index) -> Option<ValidatedDataPoint> {
        derive_point(text, index, self.header as u32, self.body as u32, self.builtin, None)
    }
}

/// Validates a whole data point in one pass of `pass` (a new one over the text, recording).
fn check_data_point(pass: &mut Pass<'_>, code: Option<&SchemaId>) -> Option<Checked> {
    let (text, json) = (pass.text, pass.bytes);
    let compiled = compiled();
    let mut header: Option<usize> = None;
    let mut body: Option<usize> = None;
    let mut found: Option<(&'static Builtin, PlanId)> = None;
    let mut schema_id = [usize::MAX; 3];
    if pass.next() != b'{' {
        return None;
    }
    pass.pos += 1;
    pass.next();
    loop {
        if pass.peek() != b'"' {
            return None;
        }
        let (key_start, key_end) = pass.string().ok()?;
        if pass.next() != b':' {
            return None;
        }
        pass.pos += 1;
        pass.next();
        let value = pass.pos;
        match &json[key_start..key_end] {
            b"header" if header.is_none() => {
                pass.value(compiled.header, 1).ok()?;
                header = Some(value);
                let (index, builtin) = match code {
                    Some(code) => defs::find_builtin(&code.namespace, &code.name, &code.version),
                    None => {
                        let view = RawView { text, index: &pass.index, used: None };
                        let id = view.get(value as u32, "schema_id")?;
                        let mut part = |at: usize, key| {
                            let node = view.get(id, key)?;
                            schema_id[at] = node as usize;
                            view.str(node)
                        };
                        defs::find_builtin(part(0, "namespace")?, part(1, "name")?, part(2, "version")?)
                    }
                }?;
                let plan = *compiled.builtins.get(index)?;
                found = Some((builtin, plan));
                if let Some(body) = body {
                    // the body came first: validate it now
                    let end = pass.pos;
                    pass.pos = body;
                    pass.value(plan, 1).ok()?;
                    pass.pos = end;
                }
            }
            b"body" if body.is_none() => {
                body = Some(value);
                if pass.peek() != b'{' {
                    return None;
                }
                match found {
                    Some((_, plan)) => pass.value(plan, 1).ok()?,
                    None => pass.skip(1).ok()?,
                }
            }
            b"header" | b"body" => return None,
            _ => pass.skip(1).ok()?,
        }
        match pass.next() {
            b',' => {
                pass.pos += 1;
                pass.next();
            }
            b'}' => {
                pass.pos += 1;
                break;
            }
            _ => return None,
        }
    }
    pass.whitespace();
    if pass.pos != json.len() {
        return None;
    }
    Some(Checked { header: header?, body: body?, builtin: found?.0, schema_id })
}

/// The effective time and values of a validated data point (`header` and `body`: where their objects start).
fn derive_point(
    text: &str,
    index: &Index,
    header: u32,
    body: u32,
    builtin: &'static Builtin,
    used: Option<&std::cell::Cell<u32>>,
) -> Option<ValidatedDataPoint> {
    let view = RawView { text, index, used };
    let effective =
        view.get(body, "effective_time_frame").and_then(|frame| derive::time_frame(view, frame)).or_else(|| {
            let (start_micros, _) = view.date_time(view.get(header, "source_creation_date_time")?)?;
            Some(EffectiveTime { start_micros, end_micros: None })
        })?;
    Some(ValidatedDataPoint {
        coding_system: if builtin.namespace == "ieee" { IEEE_SYSTEM } else { OMH_SYSTEM },
        coding_code: Cow::Borrowed(builtin.code),
        effective,
        values: derive::measured_values(view, body, builtin.name),
    })
}

/// Reads values of a document the fast path has checked (valid JSON, strings without escapes) by position,
/// from the pass's [`Index`] where it has them.
#[derive(Clone, Copy)]
pub(crate) struct RawView<'d> {
    text: &'d str,
    index: &'d Index,
    /// When learning a shape: which recorded objects were read (bits by their place in the index).
    used: Option<&'d std::cell::Cell<u32>>,
}

impl RawView<'_> {
    /// The recorded members of the object at `object`.
    #[inline]
    fn recorded(&self, object: u32) -> Option<&[Member]> {
        let at = self.index.object_at(object as usize)?;
        if let Some(used) = self.used {
            used.set(used.get() | 1 << at);
        }
        Some(self.index.members(at))
    }

    /// Calls `visit` with each member of the object at `object` (key, value position), in order; `None` when
    /// `object` is not an object.
    #[inline]
    fn for_each_member(&self, object: u32, mut visit: impl FnMut(&[u8], u32)) -> Option<()> {
        let bytes = self.text.as_bytes();
        if let Some(members) = self.recorded(object) {
            for member in members {
                visit(&bytes[member.key as usize..member.key_end as usize], member.value);
            }
            return Some(());
        }
        if bytes.get(object as usize) != Some(&b'{') {
            return None;
        }
        let mut pass = Pass::new(self.text, &[], false);
        pass.pos = object as usize + 1;
        pass.whitespace();
        if pass.peek() == b'}' {
            return Some(());
        }
        loop {
            let (from, to) = pass.string().ok()?;
            pass.whitespace();
            pass.expect(b':').ok()?;
            pass.whitespace();
            visit(&bytes[from..to], pass.pos as u32);
            pass.skip(0).ok()?;
            pass.whitespace();
            match pass.peek() {
                b',' => {
                    pass.pos += 1;
                    pass.whitespace();
                }
                _ => return Some(()),
            }
        }
    }
}

impl<'d> View<'d> for RawView<'d> {
    type Node = u32;

    fn get(self, object: u32, key: &str) -> Option<u32> {
        let bytes = self.text.as_bytes();
        if let Some(members) = self.recorded(object) {
            for member in members.iter().rev() {
                let name = bytes.get(member.key as usize..member.key_end as usize)?;
                if name.len() == key.len() && same(name, key.as_bytes()) {
                    return Some(member.value);
                }
            }
            return None;
        }
        let mut found = None;
        self.for_each_member(object, |name, value| {
            if same(name, key.as_bytes()) {
                found = Some(value);
            }
        })?;
        found
    }

    fn last_member(self, object: u32, matches: impl Fn(&[u8]) -> bool) -> Option<u32> {
        let mut found = None;
        self.for_each_member(object, |name, value| {
            if matches(name) {
                found = Some(value);
            }
        })?;
        found
    }

    fn str(self, node: u32) -> Option<&'d str> {
        let bytes = self.text.as_bytes();
        if bytes.get(node as usize) != Some(&b'"') {
            return None;
        }
        let start = node as usize + 1;
        let len = bytes[start..].iter().position(|&b| b == b'"')?;
        self.text.get(start..start + len)
    }

    fn number(self, node: u32) -> Option<&'d str> {
        let bytes = self.text.as_bytes();
        let start = node as usize;
        if !matches!(bytes.get(start), Some(b'-' | b'0'..=b'9')) {
            return None;
        }
        let len = bytes[start..]
            .iter()
            .position(|b| !matches!(b, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'))
            .unwrap_or(bytes.len() - start);
        self.text.get(start..start + len)
    }

    fn kind(self, node: u32) -> Kind {
        match self.text.as_bytes().get(node as usize) {
            Some(b'{') => Kind::Object,
            Some(b'[') => Kind::Array,
            Some(b'"') => Kind::String,
            Some(b't') => Kind::Bool(true),
            Some(b'f') => Kind::Bool(false),
            Some(b'n') => Kind::Null,
            _ => Kind::Number,
        }
    }

    fn date_time(self, node: u32) -> Option<(i64, i64)> {
        match self.index.date(node as usize) {
            Some(instant) => Some(instant),
            None => datetime::parse_date_time_with_offset(self.str(node)?),
        }
    }
}
