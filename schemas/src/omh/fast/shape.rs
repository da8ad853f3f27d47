//! Data points of a shape seen before: the one-pass validator again, without walking the structure.
//!
//! A device or an app sends data points that differ only in their values: the same keys in the same order, the
//! same punctuation and whitespace, the same schema id. Once such a point has passed the one-pass validator, its
//! *shape* is kept (per thread): its text, with the strings and numbers the validator checked as holes, and for
//! each hole the checks made on it (plan and outcome, in every context: the main pass and each `oneOf`/`anyOf`
//! alternative). A later point whose text equals the shape outside the holes, whose holes are strings and numbers
//! again (without escapes), and whose holes give every check the same outcome, takes the one-pass validator
//! through exactly the same steps: the validator's path depends only on the text outside the holes, on the kind
//! of each hole and on the outcomes of the checks on the holes. So it has the same verdict (valid), and its time
//! and values are derived as usual, from its own text, with the positions of the shape's objects and members
//! moved by the lengths of the holes before them.
//!
//! The schema id strings are never holes (they choose the body's type), nor is anything no rule looks at.

use super::{
    Checked, Index, K_NUMBER, K_STRING, Member, NumberCheck, Pass, PlanId, Stop, check_data_point, compiled,
    derive_point, number_holds, same,
};
use crate::ValidatedDataPoint;
use crate::omh::defs::Builtin;
use std::cell::RefCell;

const MAX_HOLES: usize = 32;
/// Shapes kept per thread, most recently used first.
const MAX_SHAPES: usize = 8;

/// One check of a hole: the rules of a plan on a string or a number without alternatives (checked directly), or
/// any other plan (checked as the one-pass validator does, by [`Pass::value`]).
#[derive(Debug, Clone, Copy)]
enum Check {
    String(PlanId),
    Number(PlanId),
    Value(PlanId),
}

#[derive(Debug)]
struct Hole {
    start: u32,
    end: u32,
    string: bool,
    /// Its checks in [`Shape::checks`].
    first_check: u32,
    end_check: u32,
}

/// A position of the learnt text and how many holes come before it.
#[derive(Debug, Clone, Copy)]
struct At {
    pos: u32,
    holes: u32,
}

#[derive(Debug)]
struct Shape {
    text: Box<[u8]>,
    holes: Vec<Hole>,
    /// Plan and whether it held, for each hole (checks whose outcome the kind of the hole decides are left out).
    checks: Vec<(Check, bool)>,
    /// The index of the learnt text: objects (start, first member, member count) and members (key, key length,
    /// value).
    objects: Vec<(At, u16, u16)>,
    members: Vec<(At, u32, At)>,
    header: At,
    body: At,
    builtin: &'static Builtin,
}

#[derive(Debug)]
struct Shapes {
    shapes: Vec<Shape>,
    /// Points that matched no shape since the last that did (learning backs off when nothing repeats).
    misses: u32,
}

thread_local! {
    static SHAPES: RefCell<Shapes> = const { RefCell::new(Shapes { shapes: Vec::new(), misses: 0 }) };
}

/// The validated data point of `text` when it has the shape of one seen before (else `None`).
pub(super) fn replay(json: &[u8]) -> Option<ValidatedDataPoint> {
    SHAPES.with(|shapes| {
        let found = shapes.borrow().shapes.iter().enumerate().find_map(|(at, shape)| Some((at, shape.replay(json)?)));
        let (at, point) = found?;
        let mut shapes = shapes.borrow_mut();
        shapes.misses = 0;
        shapes.shapes[..=at].rotate_right(1);
        Some(point)
    })
}

/// Keeps the shape of `text`, a data point the one-pass validator has just accepted (without a `code`), unless
/// learning backs off because points rarely repeat a shape (`always`: in any case); whether it did.
pub(super) fn learn(text: &str, always: bool) -> bool {
    let learn = SHAPES.with(|shapes| {
        let mut shapes = shapes.borrow_mut();
        shapes.misses = shapes.misses.saturating_add(1);
        always || shapes.misses <= 4 || shapes.misses.is_power_of_two()
    });
    if !learn {
        return false;
    }
    let mut pass = Pass::new(text, &compiled().plans, true);
    pass.log = Some(Vec::new());
    let Some(shape) = check_data_point(&mut pass, None).and_then(|checked| Shape::learn(text, &pass, &checked)) else {
        return false;
    };
    SHAPES.with(|shapes| {
        let mut shapes = shapes.borrow_mut();
        shapes.shapes.truncate(MAX_SHAPES - 1);
        shapes.shapes.insert(0, shape);
    });
    true
}

impl Shape {
    fn learn(text: &str, pass: &Pass<'_>, checked: &Checked) -> Option<Shape> {
        let bytes = text.as_bytes();
        let mut log = pass.log.clone()?;
        log.sort_by_key(|&(pos, _, _)| pos);
        let mut holes = Vec::new();
        let mut checks = Vec::new();
        for group in log.chunk_by(|a, b| a.0 == b.0) {
            let start = group[0].0;
            if checked.schema_id.contains(&(start as usize)) {
                continue;
            }
            let string = bytes[start as usize] == b'"';
            let mut scan = Pass::new(text, &[], false);
            scan.pos = start as usize;
            if string {
                scan.string().ok()?;
            } else {
                scan.number().ok()?;
            }
            let first_check = checks.len() as u32;
            let plans = &compiled().plans;
            for &(_, id, held) in group {
                let plan = plans.get(id as usize)?;
                let check = if !plan.alternatives.is_empty() {
                    Check::Value(id)
                } else if string {
                    // a string hole stays a string: the type rule is decided, and so is a plan with no other rule
                    if plan.kinds & K_STRING == 0 || (!plan.string_rules && !plan.date_time) {
                        continue;
                    }
                    Check::String(id)
                } else {
                    if plan.kinds & K_NUMBER == 0 || plan.number == NumberCheck::Any {
                        continue;
                    }
                    Check::Number(id)
                };
                checks.push((check, held));
            }
            holes.push(Hole { start, end: scan.pos as u32, string, first_check, end_check: checks.len() as u32 });
        }
        if holes.len() > MAX_HOLES {
            return None;
        }
        let at = |pos: usize| At {
            pos: pos as u32,
            holes: holes.partition_point(|hole| (hole.start as usize) < pos) as u32,
        };
        // only the objects the derivation reads are kept (others it would read from the text)
        let used = std::cell::Cell::new(0);
        let (header, body) = (checked.header as u32, checked.body as u32);
        derive_point(text, &pass.index, header, body, checked.builtin, Some(&used))?;
        let index = &pass.index;
        let mut objects = Vec::new();
        let mut members = Vec::new();
        for (number, &(pos, _, _)) in index.objects[..index.object_count].iter().enumerate() {
            if used.get() & 1 << number != 0 {
                let kept = index.members(number);
                objects.push((at(pos as usize), members.len() as u16, kept.len() as u16));
                members.extend(kept.iter().map(|m| (at(m.key as usize), m.key_end - m.key, at(m.value as usize))));
            }
        }
        Some(Shape {
            text: bytes.into(),
            objects,
            members,
            header: at(checked.header),
            body: at(checked.body),
            builtin: checked.builtin,
            holes,
            checks,
        })
    }

    fn replay(&self, json: &[u8]) -> Option<ValidatedDataPoint> {
        // the text outside the holes, then the holes: where they are in `json`
        let mut pass = Pass::new("", &compiled().plans, true);
        pass.bytes = json;
        let mut starts = [0u32; MAX_HOLES];
        let mut ends = [0u32; MAX_HOLES];
        // how much each position moved: by the lengths of the holes before it
        let mut moved = [0i32; MAX_HOLES + 1];
        let mut ascii = true;
        let mut from = 0;
        for (number, hole) in self.holes.iter().enumerate() {
            let literal = &self.text[from..hole.start as usize];
            let at = pass.pos;
            let here = json.get(at..at + literal.len())?;
            if !(if literal.len() >= 16 { here == literal } else { same(here, literal) }) {
                return None;
            }
            pass.pos = at + literal.len();
            let start = pass.pos;
            match (hole.string, pass.peek()) {
                (true, b'"') => {
                    let (from, to) = pass.string().ok()?;
                    ascii &= json[from..to].is_ascii();
                }
                (false, b'-' | b'0'..=b'9') => pass.number_end().ok()?,
                _ => return None,
            }
            starts[number] = start as u32;
            ends[number] = pass.pos as u32;
            moved[number + 1] = moved[number] + (pass.pos - start) as i32 - (hole.end - hole.start) as i32;
            from = hole.end as usize;
        }
        let rest = &self.text[from..];
        if json.len() - pass.pos != rest.len() || json[pass.pos..] != *rest {
            return None;
        }
        // The text outside the holes is the learnt text's (UTF-8, and cut next to ASCII quotes, digits and
        // punctuation only), numbers are ASCII, and strings are checked here when they are not ASCII.
        if !ascii
            && !self
                .holes
                .iter()
                .zip(&starts)
                .zip(&ends)
                .all(|((_, &start), &end)| std::str::from_utf8(&json[start as usize..end as usize]).is_ok())
        {
            return None;
        }
        // SAFETY: `json` is valid UTF-8: it is the concatenation of valid UTF-8 pieces, as just checked above.
        let text = unsafe { std::str::from_utf8_unchecked(json) };
        pass.text = text;
        let plans = pass.plans;
        for (number, hole) in self.holes.iter().enumerate() {
            let (start, end) = (starts[number] as usize, ends[number] as usize);
            if same(&json[start..end], &self.text[hole.start as usize..hole.end as usize]) {
                // the learnt text's own value: the same outcomes
                continue;
            }
            if hole.string {
                // its end is known: the checks need not scan it again
                pass.known_string = (start, end - 1);
            }
            for &(check, held) in &self.checks[hole.first_check as usize..hole.end_check as usize] {
                let holds = match check {
                    Check::String(id) => pass.string_holds(&plans[id as usize], start, start + 1, end - 1),
                    Check::Number(id) => number_holds(&plans[id as usize], &text[start..end]),
                    Check::Value(id) => {
                        pass.pos = start;
                        match pass.value(id, 1) {
                            Ok(()) => true,
                            Err(Stop::Invalid) => false,
                            Err(Stop::GiveUp) => return None,
                        }
                    }
                };
                if holds != held {
                    return None;
                }
            }
        }
        let place = |at: At| (at.pos as i32 + moved[at.holes as usize]) as u32;
        let index: &mut Index = &mut pass.index;
        for (slot, &(at, first, len)) in index.objects.iter_mut().zip(&self.objects) {
            *slot = (place(at), first, len);
        }
        index.object_count = self.objects.len();
        for (slot, &(key, key_len, value)) in index.members.iter_mut().zip(&self.members) {
            let key = place(key);
            *slot = Member { key, key_end: key + key_len, value: place(value) };
        }
        index.member_count = self.members.len();
        derive_point(text, &pass.index, place(self.header), place(self.body), self.builtin, None)
    }
}
