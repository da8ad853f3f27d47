//! Cutting an NDJSON body into batches of lines as it arrives, so an upload never holds more than one batch of its
//! body: a batch closes at [`BATCH_LINES`] lines or once it holds [`BATCH_BYTES`] bytes, and a line longer than
//! [`MAX_LINE_BYTES`] is not kept (only its length is counted) and answered as too large.

use jhe_schemas::fhir::{MAX_BUNDLE_ENTRIES, MAX_OBSERVATION_BYTES};
use std::ops::Range;

/// Lines in one batch: as many as a batch Bundle may hold.
pub(crate) const BATCH_LINES: usize = MAX_BUNDLE_ENTRIES;
/// A batch closes once its lines hold this many bytes.
pub(crate) const BATCH_BYTES: usize = 8 * 1024 * 1024;
/// The longest line that is parsed: the largest single Observation upload.
pub(crate) const MAX_LINE_BYTES: usize = MAX_OBSERVATION_BYTES;
/// The most bytes of the body a batcher holds at once: a batch one byte short of closing plus the longest line.
pub const MAX_HELD_BYTES: usize = BATCH_BYTES + MAX_LINE_BYTES;

/// A non-blank line of a batch, with its 1-based number in the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Line {
    /// The line's bytes in the batch (without the line end).
    Text { number: usize, range: Range<usize> },
    /// A line longer than [`MAX_LINE_BYTES`], with its length; its bytes were dropped.
    TooLong { number: usize, size: usize },
}

impl Line {
    pub(crate) fn number(&self) -> usize {
        match self {
            Line::Text { number, .. } | Line::TooLong { number, .. } => *number,
        }
    }
}

/// Complete lines, ready to be checked.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub(crate) bytes: Vec<u8>,
    pub(crate) lines: Vec<Line>,
}

/// Collects lines from pieces of a body. Blank lines (only whitespace) are skipped but counted in line numbers;
/// a `\r` before the `\n` is not part of the line.
#[derive(Debug)]
pub(crate) struct LineBatcher {
    /// The complete lines of the batch, then the start of the line being read.
    bytes: Vec<u8>,
    lines: Vec<Line>,
    /// Where the line being read starts in `bytes`.
    line_start: usize,
    /// The length of the line being read once it went past [`MAX_LINE_BYTES`] (its bytes are no longer kept).
    overlong: Option<usize>,
    /// The number of the line being read.
    number: usize,
    max_line: usize,
}

impl Default for LineBatcher {
    fn default() -> Self {
        Self::with_max_line(MAX_LINE_BYTES)
    }
}

impl LineBatcher {
    pub(crate) fn with_max_line(max_line: usize) -> Self {
        Self { bytes: Vec::new(), lines: Vec::new(), line_start: 0, overlong: None, number: 1, max_line }
    }

    /// Takes bytes from the front of `input` until it is used up or the batch is full (at `max_lines` lines or
    /// [`BATCH_BYTES`] bytes); returns how many bytes it took.
    pub(crate) fn feed(&mut self, input: &[u8], max_lines: usize) -> usize {
        let mut taken = 0;
        while taken < input.len() && !self.is_full(max_lines) {
            let rest = &input[taken..];
            let (piece, line_ends) = match rest.iter().position(|b| *b == b'\n') {
                Some(end) => (&rest[..end], true),
                None => (rest, false),
            };
            self.extend_line(piece);
            taken += piece.len();
            if line_ends {
                taken += 1;
                self.end_line();
            }
        }
        taken
    }

    /// The body ended: its last line needs no line end.
    pub(crate) fn finish(&mut self) {
        if self.overlong.is_some() || self.bytes.len() > self.line_start {
            self.end_line();
        }
    }

    pub(crate) fn is_full(&self, max_lines: usize) -> bool {
        self.lines.len() >= max_lines || self.line_start >= BATCH_BYTES
    }

    /// Complete lines waiting to be taken.
    pub(crate) fn pending_lines(&self) -> usize {
        self.lines.len()
    }

    /// Bytes of the body held now.
    pub(crate) fn held_bytes(&self) -> usize {
        self.bytes.len()
    }

    /// The number of the line being read (the next one when the last ended).
    pub(crate) fn line_number(&self) -> usize {
        self.number
    }

    /// The complete lines; the line being read stays.
    pub(crate) fn take(&mut self) -> Batch {
        let partial = self.bytes.split_off(self.line_start);
        let bytes = std::mem::replace(&mut self.bytes, partial);
        self.line_start = 0;
        Batch { bytes, lines: std::mem::take(&mut self.lines) }
    }

    fn extend_line(&mut self, piece: &[u8]) {
        if let Some(length) = &mut self.overlong {
            *length += piece.len();
            return;
        }
        let length = self.bytes.len() - self.line_start + piece.len();
        if length > self.max_line {
            self.bytes.truncate(self.line_start);
            self.overlong = Some(length);
        } else {
            self.bytes.extend_from_slice(piece);
        }
    }

    fn end_line(&mut self) {
        let number = self.number;
        self.number += 1;
        if let Some(size) = self.overlong.take() {
            self.lines.push(Line::TooLong { number, size });
            return;
        }
        let mut end = self.bytes.len();
        if end > self.line_start && self.bytes[end - 1] == b'\r' {
            end -= 1;
        }
        if self.bytes[self.line_start..end].iter().all(u8::is_ascii_whitespace) {
            self.bytes.truncate(self.line_start);
            return;
        }
        self.bytes.truncate(end);
        self.lines.push(Line::Text { number, range: self.line_start..end });
        self.line_start = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(batch: &Batch) -> Vec<(usize, String)> {
        batch
            .lines
            .iter()
            .map(|line| match line {
                Line::Text { number, range } => {
                    (*number, String::from_utf8_lossy(&batch.bytes[range.clone()]).into_owned())
                }
                Line::TooLong { number, size } => (*number, format!("<{size} bytes>")),
            })
            .collect()
    }

    /// Feeds `body` in pieces of `piece` bytes and returns every line.
    fn split(body: &[u8], piece: usize, max_line: usize) -> Vec<(usize, String)> {
        let mut batcher = LineBatcher::with_max_line(max_line);
        for chunk in body.chunks(piece) {
            let mut rest = chunk;
            while !rest.is_empty() {
                let taken = batcher.feed(rest, usize::MAX);
                rest = &rest[taken..];
            }
        }
        batcher.finish();
        texts(&batcher.take())
    }

    #[test]
    fn lines_carry_across_pieces_of_any_size() {
        let body = b"{\"a\":1}\r\n\n  \n{\"b\":2}\n{\"c\":3}";
        let expected = vec![(1, "{\"a\":1}".to_owned()), (4, "{\"b\":2}".to_owned()), (5, "{\"c\":3}".to_owned())];
        for piece in 1..=body.len() {
            assert_eq!(split(body, piece, 100), expected, "pieces of {piece}");
        }
    }

    #[test]
    fn an_overlong_line_is_counted_not_kept() {
        let mut body = b"short\n".to_vec();
        body.extend(std::iter::repeat_n(b'x', 50));
        body.extend_from_slice(b"\r\nafter\n");
        for piece in [1, 7, 64] {
            let lines = split(&body, piece, 10);
            assert_eq!(lines, vec![(1, "short".to_owned()), (2, "<51 bytes>".to_owned()), (3, "after".to_owned())]);
        }
        // a line exactly at the limit is kept
        assert_eq!(split(b"0123456789\n", 3, 10), vec![(1, "0123456789".to_owned())]);
        // an overlong last line without a line end
        assert_eq!(split(b"a\nbbbbbbbbbbbb", 4, 10), vec![(1, "a".to_owned()), (2, "<12 bytes>".to_owned())]);
    }

    #[test]
    fn the_held_bytes_never_exceed_one_batch_and_one_line() {
        let mut line = vec![b'y'; 1000];
        line.push(b'\n');
        let mut batcher = LineBatcher::with_max_line(1000);
        let mut taken_lines = 0;
        for _ in 0..(3 * BATCH_BYTES / 1000) {
            let mut rest = &line[..];
            while !rest.is_empty() {
                let taken = batcher.feed(rest, usize::MAX);
                rest = &rest[taken..];
                assert!(batcher.held_bytes() <= BATCH_BYTES + 1000);
                if batcher.is_full(usize::MAX) {
                    taken_lines += batcher.take().lines.len();
                }
            }
        }
        batcher.finish();
        taken_lines += batcher.take().lines.len();
        assert_eq!(taken_lines, 3 * BATCH_BYTES / 1000);
    }

    #[test]
    fn a_batch_closes_at_the_line_limit_and_numbers_go_on() {
        let mut batcher = LineBatcher::default();
        let body = b"a\nb\nc\nd\n";
        let taken = batcher.feed(body, 2);
        assert_eq!(taken, 4, "stops right after the second line");
        assert!(batcher.is_full(2));
        assert_eq!(texts(&batcher.take()), vec![(1, "a".to_owned()), (2, "b".to_owned())]);
        batcher.feed(&body[taken..], 2);
        batcher.finish();
        assert_eq!(texts(&batcher.take()), vec![(3, "c".to_owned()), (4, "d".to_owned())]);
        assert_eq!(batcher.line_number(), 5);
    }

    #[test]
    fn a_partial_line_stays_when_a_batch_is_taken() {
        let mut batcher = LineBatcher::default();
        batcher.feed(b"one\ntw", usize::MAX);
        assert_eq!(batcher.pending_lines(), 1);
        assert_eq!(texts(&batcher.take()), vec![(1, "one".to_owned())]);
        assert_eq!(batcher.held_bytes(), 2);
        batcher.feed(b"o\n", usize::MAX);
        assert_eq!(texts(&batcher.take()), vec![(2, "two".to_owned())]);
    }
}
