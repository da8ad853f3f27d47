//! The fast path: validation while parsing, straight from the bytes, with no tree and no allocation.
//!
//! The rule tables of `defs` are compiled once into [`Plan`]s (a conjunction of schemas each: `allOf` flattened,
//! `properties` merged into one key table with a bit per key for `required`), and a single pass over the text
//! checks every value against its plan as it is parsed. `oneOf`/`anyOf` re-read the value once per alternative
//! (they only guard small values such as time frames).
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

#[derive(Debug)]
struct Key {
    name: &'static str,
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
    /// More than 64 property names: not handled here.
    supported: bool,
}

impl Plan {
    #[inline]
    fn key(&self, name: &[u8]) -> Option<&Key> {
        self.keys.iter().find(|key| key.name.len() == name.len() && key.name.as_bytes() == name)
    }
}

/// Every builtin schema compiled, with a plan per entry of [`defs::builtins`].
pub(crate) struct Compiled {
    plans: Vec<Plan>,
    builtins: Vec<PlanId>,
    header: PlanId,
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
        Compiled { plans: compiler.plans, builtins, header }
    })
}

/// Why the pass stopped: the value breaks its plan, or the fast path does not handle it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Invalid,
    GiveUp,
}

type Step = Result<(), Stop>;

/// The members of one object as read: key and where each value starts (for derivation without re-reading).
#[derive(Debug)]
pub(crate) struct Members {
    len: usize,
    entries: [(u32, u32, u32); 24],
}

impl Members {
    fn new() -> Self {
        Members { len: 0, entries: [(0, 0, 0); 24] }
    }

    #[inline]
    fn push(&mut self, key_start: usize, key_end: usize, value: usize) {
        if let Some(entry) = self.entries.get_mut(self.len) {
            *entry = (key_start as u32, key_end as u32, value as u32);
        }
        self.len += 1;
    }

    /// The entries, `None` when there were too many to keep.
    fn entries(&self) -> Option<&[(u32, u32, u32)]> {
        self.entries.get(..self.len)
    }
}

struct Pass<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    plans: &'a [Plan],
}

impl<'a> Pass<'a> {
    fn new(text: &'a str, plans: &'a [Plan]) -> Self {
        Pass { text, bytes: text.as_bytes(), pos: 0, plans }
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
        while let Some(chunk) = self.bytes.get(self.pos..self.pos + 8) {
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
        let text = &self.text[start..self.pos];
        // numbers that may not fit an f64 are for the detailed path (it refuses those that do not)
        if text.len() > 300 || (exponent && !text.parse::<f64>().is_ok_and(f64::is_finite)) {
            return Err(Stop::GiveUp);
        }
        Ok(text)
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
                self.whitespace();
                if self.peek() == close {
                    self.pos += 1;
                    return Ok(());
                }
                loop {
                    if close == b'}' {
                        if self.peek() != b'"' {
                            return Err(Stop::GiveUp);
                        }
                        self.string()?;
                        self.whitespace();
                        self.expect(b':')?;
                        self.whitespace();
                    }
                    self.skip(depth + 1)?;
                    self.whitespace();
                    match self.peek() {
                        b',' => {
                            self.pos += 1;
                            self.whitespace();
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

    /// Checks one value (the cursor on its first byte) against plan `id`; `members` records an object's members.
    fn value(&mut self, id: PlanId, depth: u32, members: Option<&mut Members>) -> Step {
        let Some(plan) = self.plans.get(id as usize) else { return self.skip(depth) };
        if plan.trivial && members.is_none() {
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
            return Err(Stop::Invalid);
        }
        match kind {
            K_OBJECT => self.object(plan, depth, members)?,
            K_ARRAY => self.array(plan, depth)?,
            K_STRING => {
                let (from, to) = self.string()?;
                check_string(plan, &self.text[from..to])?;
            }
            K_NUMBER => {
                let text = self.number()?;
                let whole = match plan.number {
                    NumberCheck::Any => true,
                    NumberCheck::Whole => is_whole_number(text),
                    NumberCheck::Literal => is_integer_literal(text),
                    NumberCheck::Never => false,
                };
                if !whole {
                    return Err(Stop::Invalid);
                }
            }
            _ => self.skip(depth)?,
        }
        if !plan.alternatives.is_empty() {
            self.alternatives(plan, start, depth)?;
        }
        Ok(())
    }

    fn object(&mut self, plan: &Plan, depth: u32, mut members: Option<&mut Members>) -> Step {
        if depth >= MAX_DEPTH {
            return Err(Stop::GiveUp);
        }
        self.pos += 1;
        self.whitespace();
        let mut seen = 0u64;
        if self.peek() == b'}' {
            self.pos += 1;
        } else {
            loop {
                if self.peek() != b'"' {
                    return Err(Stop::GiveUp);
                }
                let (key_start, key_end) = self.string()?;
                self.whitespace();
                self.expect(b':')?;
                self.whitespace();
                let value = self.pos;
                match plan.key(&self.bytes[key_start..key_end]) {
                    Some(key) => {
                        if !key.allowed {
                            return Err(Stop::Invalid);
                        }
                        seen |= key.bit;
                        if let Err(stop) = self.value(key.plan, depth + 1, None) {
                            return self.failed_member(stop, key_start, key_end, value, depth);
                        }
                    }
                    None if plan.closed => return Err(Stop::Invalid),
                    None => self.skip(depth + 1)?,
                }
                if let Some(members) = members.as_deref_mut() {
                    members.push(key_start, key_end, value);
                }
                self.whitespace();
                match self.peek() {
                    b',' => {
                        self.pos += 1;
                        self.whitespace();
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
        self.whitespace();
        let mut count = 0;
        if self.peek() == b']' {
            self.pos += 1;
        } else {
            loop {
                self.value(plan.items, depth + 1, None)?;
                count += 1;
                self.whitespace();
                match self.peek() {
                    b',' => {
                        self.pos += 1;
                        self.whitespace();
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

    /// `oneOf` / `anyOf`: the value (from `start`, already read once) against each alternative.
    fn alternatives(&mut self, plan: &Plan, start: usize, depth: u32) -> Step {
        let end = self.pos;
        for (one_of, alternatives) in &plan.alternatives {
            let mut matched = 0;
            for &alternative in alternatives {
                self.pos = start;
                match self.value(alternative, depth, None) {
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

fn check_string(plan: &Plan, text: &str) -> Step {
    let holds = plan.enums.iter().all(|values| values.contains(&text))
        && plan.patterns.iter().all(|pattern| pattern.matches(text))
        && (!plan.date_time || datetime::parse_date_time(text).is_some())
        && (!plan.uri || uri::is_uri(text));
    if holds { Ok(()) } else { Err(Stop::Invalid) }
}

/// The input as text, when the fast path may read it.
fn text_of(json: &[u8]) -> Option<&str> {
    // positions are u32 in `Members`
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
    let mut pass = Pass::new(text, &compiled.plans);
    pass.whitespace();
    let start = pass.pos;
    let verdict = match pass.value(plan, 0, None) {
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
    let text = text_of(json)?;
    let compiled = compiled();
    let mut pass = Pass::new(text, &compiled.plans);
    let mut header_members = Members::new();
    let mut body_members = Members::new();
    let mut header: Option<usize> = None;
    let mut body: Option<usize> = None;
    let mut found: Option<(&'static Builtin, PlanId)> = None;
    pass.whitespace();
    pass.expect(b'{').ok()?;
    pass.whitespace();
    loop {
        if pass.peek() != b'"' {
            return None;
        }
        let (key_start, key_end) = pass.string().ok()?;
        pass.whitespace();
        pass.expect(b':').ok()?;
        pass.whitespace();
        let value = pass.pos;
        match &json[key_start..key_end] {
            b"header" if header.is_none() => {
                pass.value(compiled.header, 1, Some(&mut header_members)).ok()?;
                header = Some(value);
                let view = RawView { text, recorded: [(value, &header_members), (value, &header_members)] };
                let builtin = match code {
                    Some(code) => defs::find_builtin(&code.namespace, &code.name, &code.version),
                    None => {
                        let id = view.get(value as u32, "schema_id")?;
                        let part = |key| view.get(id, key).and_then(|node| view.str(node));
                        defs::find_builtin(part("namespace")?, part("name")?, part("version")?)
                    }
                }?;
                found = Some((builtin.1, *compiled.builtins.get(builtin.0)?));
                if let Some(body) = body {
                    // the body came first: validate it now
                    let end = pass.pos;
                    pass.pos = body;
                    pass.value(found?.1, 1, Some(&mut body_members)).ok()?;
                    pass.pos = end;
                }
            }
            b"body" if body.is_none() => {
                body = Some(value);
                if pass.peek() != b'{' {
                    return None;
                }
                match found {
                    Some((_, plan)) => pass.value(plan, 1, Some(&mut body_members)).ok()?,
                    None => pass.skip(1).ok()?,
                }
            }
            b"header" | b"body" => return None,
            _ => pass.skip(1).ok()?,
        }
        pass.whitespace();
        match pass.peek() {
            b',' => {
                pass.pos += 1;
                pass.whitespace();
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
    let (header, body, (builtin, _)) = (header?, body?, found?);
    let view = RawView { text, recorded: [(header, &header_members), (body, &body_members)] };
    let (header, body) = (header as u32, body as u32);
    let effective =
        view.get(body, "effective_time_frame").and_then(|frame| derive::time_frame(view, frame)).or_else(|| {
            let created = view.str(view.get(header, "source_creation_date_time")?)?;
            Some(EffectiveTime { start_micros: datetime::parse_date_time(created)?, end_micros: None })
        })?;
    Some(ValidatedDataPoint {
        coding_system: if builtin.namespace == "ieee" { IEEE_SYSTEM } else { OMH_SYSTEM },
        coding_code: Cow::Borrowed(builtin.code),
        effective,
        values: derive::measured_values(view, body, builtin.name),
    })
}

/// Reads values of a document the fast path has checked (valid JSON, strings without escapes), by position;
/// the members of up to two objects come from their [`Members`] record.
#[derive(Clone, Copy)]
pub(crate) struct RawView<'d> {
    text: &'d str,
    recorded: [(usize, &'d Members); 2],
}

impl RawView<'_> {
    /// After the value at `pos` (already known to be well formed).
    fn after(&self, pos: usize) -> Option<usize> {
        let mut pass = Pass { text: self.text, bytes: self.text.as_bytes(), pos, plans: &[] };
        pass.skip(0).ok()?;
        Some(pass.pos)
    }

    /// The members of the object at `object`: (key, value position), in order.
    fn for_each_member(&self, object: u32, mut visit: impl FnMut(&str, u32)) -> Option<()> {
        let object = object as usize;
        for (start, members) in self.recorded {
            if start == object {
                if let Some(entries) = members.entries() {
                    for &(from, to, value) in entries {
                        visit(&self.text[from as usize..to as usize], value);
                    }
                    return Some(());
                }
            }
        }
        let bytes = self.text.as_bytes();
        if bytes.get(object) != Some(&b'{') {
            return None;
        }
        let mut pass = Pass { text: self.text, bytes, pos: object + 1, plans: &[] };
        pass.whitespace();
        if pass.peek() == b'}' {
            return Some(());
        }
        loop {
            let (from, to) = pass.string().ok()?;
            pass.whitespace();
            pass.expect(b':').ok()?;
            pass.whitespace();
            visit(&self.text[from..to], pass.pos as u32);
            pass.pos = self.after(pass.pos)?;
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
        let mut found = None;
        self.for_each_member(object, |name, value| {
            if name == key {
                found = Some(value);
            }
        })?;
        found
    }

    fn last_member(self, object: u32, matches: impl Fn(&str) -> bool) -> Option<u32> {
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
        Some(&self.text[start..start + len])
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
        Some(&self.text[start..start + len])
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
}
