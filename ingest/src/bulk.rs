//! The NDJSON bulk upload, read as a stream: the body arrives in pieces, complete lines gather into batches
//! ([`crate::ndjson`]), and each batch is checked and committed like a batch Bundle. Batches are committed one after
//! the other in the body's order; while one is committed, the next is read and checked. An upload holds at most one
//! batch of its body ([`MAX_HELD_BYTES`]) plus the checked entries of the batch being committed, and, for the
//! answer, one id per line (at most [`MAX_NDJSON_LINES`]) and the first [`MAX_REPORTED_LINE_ERRORS`] errors, each
//! clipped to [`MAX_DIAGNOSTICS_CHARS`].
//!
//! A line is acknowledged (its id in the answer) only once the log made it durable, as for every upload. When
//! reading has to stop early (too many lines, too many bytes, the log or the database failing, an unreadable
//! body), the answer depends on whether anything was stored yet: if nothing was, the whole request is refused, as
//! when the body was read whole; otherwise the answer reports every line up to the one where reading stopped, which
//! gets an error saying that it and the lines after it were not stored.

use crate::ndjson::{BATCH_LINES, Batch, Line, LineBatcher};
use crate::{EntryOutcome, IngestError, Ingestor, checks, run_blocking};
use jhe_catalog::Caller;
use jhe_schemas::fhir::{FhirError, MAX_OBSERVATION_BYTES};
use serde::ser::{SerializeSeq, Serializer};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::task::JoinHandle;

pub use crate::ndjson::MAX_HELD_BYTES;

/// Lines of an NDJSON upload that get an error entry in the answer (the rest are only counted).
pub const MAX_REPORTED_LINE_ERRORS: usize = 1_000;
/// Observations (non-blank lines) in one NDJSON upload.
pub const MAX_NDJSON_LINES: usize = 200_000;
/// Bytes of one NDJSON upload.
pub const MAX_NDJSON_BYTES: usize = 256 * 1024 * 1024;
/// The longest message of a line error in the answer (longer ones are cut, ending in `…`).
pub const MAX_DIAGNOSTICS_CHARS: usize = 2_000;

/// The answer to an NDJSON upload.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct BulkReport {
    pub received: usize,
    pub accepted: usize,
    pub rejected: usize,
    /// Ids of the accepted lines, aligned with the non-blank input lines (`null` for rejected lines).
    pub ids: LineIds,
    /// The first [`MAX_REPORTED_LINE_ERRORS`] rejections: 1-based line number, status and message; and, when
    /// reading stopped early, the line where it stopped.
    pub errors: Vec<LineError>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct LineError {
    pub line: usize,
    pub status: u16,
    pub diagnostics: String,
}

/// Observation ids, one per line, `0` for a rejected line; serialized as strings and `null`s.
#[derive(Debug, Clone, Default)]
pub struct LineIds(Vec<i64>);

impl LineIds {
    /// The id of the `index`th non-blank line, if it was accepted.
    pub fn get(&self, index: usize) -> Option<i64> {
        self.0.get(index).copied().filter(|id| *id != 0)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl serde::Serialize for LineIds {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct IdText(i64);
        impl serde::Serialize for IdText {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(&self.0)
            }
        }
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for id in &self.0 {
            seq.serialize_element(&(*id != 0).then_some(IdText(*id)))?;
        }
        seq.end()
    }
}

impl BulkReport {
    fn record(&mut self, line: usize, outcome: EntryOutcome) {
        self.received += 1;
        match outcome {
            Ok(accepted) => {
                self.accepted += 1;
                self.ids.0.push(accepted.record.id);
            }
            Err(rejection) => {
                self.rejected += 1;
                self.ids.0.push(0);
                if self.errors.len() < MAX_REPORTED_LINE_ERRORS {
                    self.push_error(line, rejection.status, rejection.diagnostics);
                }
            }
        }
    }

    /// The line where reading stopped: answered, and always listed.
    fn stopped_at(&mut self, line: usize, status: u16, diagnostics: String) {
        self.received += 1;
        self.rejected += 1;
        self.ids.0.push(0);
        self.push_error(line, status, diagnostics);
    }

    fn push_error(&mut self, line: usize, status: u16, mut diagnostics: String) {
        if let Some((cut, _)) = diagnostics.char_indices().nth(MAX_DIAGNOSTICS_CHARS) {
            diagnostics.truncate(cut);
            diagnostics.push('…');
        }
        self.errors.push(LineError { line, status, diagnostics });
    }
}

/// Why reading a body stopped before its end.
#[derive(Debug)]
enum Stop {
    TooManyLines,
    TooLarge,
    /// The log or the database failed while a batch was committed.
    Failed(IngestError),
    /// The body could not be read (the client went away, broken chunking).
    Unreadable(String),
}

impl Stop {
    /// The request's error when nothing was stored yet.
    fn into_error(self, line: usize) -> IngestError {
        let invalid = |path: String, rule: String| IngestError::Invalid(FhirError::Invalid { path, rule });
        match self {
            Stop::TooManyLines => invalid(
                format!("line {line}"),
                format!("at most {MAX_NDJSON_LINES} observations per upload; split the file"),
            ),
            Stop::TooLarge => invalid(
                "NDJSON".to_owned(),
                format!("the body is larger than {MAX_NDJSON_BYTES} bytes; split the file"),
            ),
            Stop::Failed(error) => error,
            Stop::Unreadable(reason) => invalid("NDJSON".to_owned(), format!("the body could not be read ({reason})")),
        }
    }

    /// Status and message of the line where reading stopped, once earlier lines were stored.
    fn line_error(&self) -> (u16, String) {
        let (status, reason) = match self {
            Stop::TooManyLines => (400, format!("at most {MAX_NDJSON_LINES} observations per upload")),
            Stop::TooLarge => (400, format!("at most {MAX_NDJSON_BYTES} bytes per upload")),
            Stop::Failed(error) => (503, format!("storing failed ({error})")),
            Stop::Unreadable(reason) => (400, format!("the body could not be read ({reason})")),
        };
        (status, format!("{reason}: this line and the lines after it were not stored; upload them again"))
    }
}

/// One NDJSON upload being read: [`BulkUpload::feed`] each piece of the body, then [`BulkUpload::finish`].
#[derive(Debug)]
pub struct BulkUpload {
    ingestor: Ingestor,
    caller: Arc<Caller>,
    lines: LineBatcher,
    report: BulkReport,
    body_bytes: usize,
    /// Lines taken into batches (checked, being committed or answered).
    taken_lines: usize,
    /// The batch being committed while the next is read and checked.
    committing: Option<Committing>,
    /// Set once reading stopped early, with the line where it stopped; the rest of the body is only counted.
    stopped: Option<(Stop, usize)>,
    /// Body bytes held now, and the most held at once.
    held: usize,
    peak: usize,
}

impl Ingestor {
    /// Starts an NDJSON upload; a body that declares more than [`MAX_NDJSON_BYTES`] is refused before it is read.
    pub fn bulk_upload(&self, caller: &Caller, declared_bytes: Option<u64>) -> Result<BulkUpload, IngestError> {
        if declared_bytes.is_some_and(|bytes| bytes > MAX_NDJSON_BYTES as u64) {
            return Err(Stop::TooLarge.into_error(1));
        }
        Ok(BulkUpload {
            ingestor: self.clone(),
            caller: Arc::new(caller.clone()),
            lines: LineBatcher::default(),
            report: BulkReport::default(),
            body_bytes: 0,
            taken_lines: 0,
            committing: None,
            stopped: None,
            held: 0,
            peak: 0,
        })
    }

    /// The most bytes of its body one NDJSON upload has held at once since this ingestor started.
    pub fn bulk_peak_held_bytes(&self) -> usize {
        self.inner.bulk_peak_held.load(Ordering::Relaxed)
    }

    /// Checks one batch of lines (steps 1–4 and 6–9): the checked entries and their line numbers.
    async fn check_lines(&self, caller: &Arc<Caller>, batch: Batch) -> Result<CheckedLines, IngestError> {
        let inner = Arc::clone(&self.inner);
        let caller = Arc::clone(caller);
        run_blocking(move || {
            let snapshot = inner.cache.snapshot();
            let schema_ids = &mut checks::SchemaIds::default();
            let mut checked = Vec::with_capacity(batch.lines.len());
            let mut numbers = Vec::with_capacity(batch.lines.len());
            for line in &batch.lines {
                let upload = match line {
                    Line::Text { range, .. } => {
                        jhe_schemas::fhir::parse_observation(batch.bytes.get(range.clone()).unwrap_or_default())
                    }
                    Line::TooLong { size, .. } => {
                        Err(FhirError::TooLarge { path: "Observation", size: *size, limit: MAX_OBSERVATION_BYTES })
                    }
                };
                checked.push(checks::check(&snapshot, &inner.validators, schema_ids, &caller, upload));
                numbers.push(line.number());
            }
            (checked, numbers)
        })
        .await
    }

    /// Commits checked lines in a task of their own, so the next batch is checked meanwhile, and a commit that has
    /// begun completes (and answers for its identifier claims) even when the request goes away.
    fn start_commit(&self, (checked, numbers): CheckedLines) -> JoinHandle<Result<LineOutcomes, IngestError>> {
        let ingestor = self.clone();
        tokio::spawn(async move {
            let outcomes = ingestor.commit(checked).await?;
            Ok(numbers.into_iter().zip(outcomes).collect())
        })
    }
}

/// Checked lines and their line numbers.
type CheckedLines = (Vec<checks::Checked>, Vec<usize>);
/// Committed lines: line number and outcome.
type LineOutcomes = Vec<(usize, EntryOutcome)>;

/// The batch being committed and the number of its first line.
#[derive(Debug)]
struct Committing {
    first_line: usize,
    task: JoinHandle<Result<LineOutcomes, IngestError>>,
}

impl BulkUpload {
    /// Takes the next piece of the body. `false`: stop reading (what was read is answered by `finish`).
    pub async fn feed(&mut self, piece: &[u8]) -> bool {
        let before = self.body_bytes;
        self.body_bytes = before.saturating_add(piece.len());
        if self.stopped.is_some() {
            // the rest of the body is read (so the client gets the answer) but not kept, up to the size limit
            return self.body_bytes <= MAX_NDJSON_BYTES;
        }
        let within_limit = MAX_NDJSON_BYTES.saturating_sub(before).min(piece.len());
        let mut rest = &piece[..within_limit];
        while !rest.is_empty() && self.stopped.is_none() {
            let taken = self.lines.feed(rest, self.line_limit());
            rest = &rest[taken..];
            if self.lines.is_full(self.line_limit()) {
                self.flush().await;
            }
        }
        self.set_held(self.lines.held_bytes());
        if self.body_bytes > MAX_NDJSON_BYTES {
            if self.stopped.is_none() {
                self.flush().await;
                self.stop(Stop::TooLarge, self.lines.line_number());
            }
            return false;
        }
        true
    }

    /// Reading the body failed: the lines not yet committed are dropped (the client will not see the answer, so
    /// nothing more is stored for it).
    pub fn body_failed(&mut self, reason: &str) {
        if self.stopped.is_some() {
            return;
        }
        let line = self.lines.take().lines.first().map_or(self.lines.line_number(), Line::number);
        self.set_held(self.lines.held_bytes());
        self.stop(Stop::Unreadable(reason.to_owned()), line);
    }

    /// The body ended: the last lines are committed and the answer made. An error means nothing was stored.
    pub async fn finish(mut self) -> Result<BulkReport, IngestError> {
        if self.stopped.is_none() {
            self.lines.finish();
            self.flush().await;
        }
        self.settle().await;
        let mut report = std::mem::take(&mut self.report);
        match self.stopped.take() {
            None => Ok(report),
            Some((stop, line)) if report.accepted == 0 => Err(stop.into_error(line)),
            Some((stop, line)) => {
                let (status, diagnostics) = stop.line_error();
                report.stopped_at(line, status, diagnostics);
                Ok(report)
            }
        }
    }

    /// A batch closes one line past the upload's limit, so the line over it is known before anything of it is
    /// checked.
    fn line_limit(&self) -> usize {
        BATCH_LINES.min((MAX_NDJSON_LINES + 1).saturating_sub(self.taken_lines)).max(1)
    }

    /// Checks the complete lines read so far, waits for the batch before them to be committed, then starts
    /// committing them. Batches are committed one after the other, in the order of the body.
    async fn flush(&mut self) {
        if self.lines.pending_lines() == 0 {
            return;
        }
        let mut batch = self.lines.take();
        let over_limit = (self.taken_lines + batch.lines.len() > MAX_NDJSON_LINES).then(|| batch.lines.pop());
        self.taken_lines += batch.lines.len();
        if let Some(first) = batch.lines.first().map(Line::number) {
            self.set_held(self.lines.held_bytes() + batch.bytes.len());
            let checked = self.ingestor.check_lines(&self.caller, batch).await;
            self.set_held(self.lines.held_bytes());
            self.settle().await;
            if self.stopped.is_some() {
                return;
            }
            match checked {
                Ok(checked) => {
                    let task = self.ingestor.start_commit(checked);
                    self.committing = Some(Committing { first_line: first, task });
                }
                Err(error) => self.stop(Stop::Failed(error), first),
            }
        }
        if let Some(Some(line)) = over_limit {
            self.stop(Stop::TooManyLines, line.number());
        }
    }

    /// Waits for the batch being committed and answers its lines.
    async fn settle(&mut self) {
        let Some(Committing { first_line, task }) = self.committing.take() else {
            return;
        };
        let committed =
            task.await.unwrap_or_else(|error| Err(IngestError::Unavailable(format!("upload worker failed: {error}"))));
        match committed {
            Ok(outcomes) => {
                for (line, outcome) in outcomes {
                    self.report.record(line, outcome);
                }
            }
            Err(error) => self.stop(Stop::Failed(error), first_line),
        }
    }

    /// Reading stops at `line`; an earlier stop wins (a batch that fails to commit stops reading at its first line,
    /// even when a later line was already known to be over a limit).
    fn stop(&mut self, stop: Stop, line: usize) {
        if self.stopped.as_ref().is_none_or(|(_, known)| line < *known) {
            self.stopped = Some((stop, line));
        }
    }

    /// Keeps `jhe_ingest_bulk_held_bytes` (all uploads' body bytes held now) and this upload's peak.
    fn set_held(&mut self, bytes: usize) {
        let gauge = metrics::gauge!("jhe_ingest_bulk_held_bytes");
        if bytes >= self.held {
            gauge.increment((bytes - self.held) as f64);
        } else {
            gauge.decrement((self.held - bytes) as f64);
        }
        self.held = bytes;
        self.peak = self.peak.max(bytes);
    }
}

impl Drop for BulkUpload {
    /// Also when the request is dropped half-way (the client went away): the gauge gives back what this upload held,
    /// and `jhe_ingest_bulk_peak_held_bytes` keeps the most one upload ever held.
    fn drop(&mut self) {
        self.set_held(0);
        let peak = self.ingestor.inner.bulk_peak_held.fetch_max(self.peak, Ordering::Relaxed).max(self.peak);
        metrics::gauge!("jhe_ingest_bulk_peak_held_bytes").set(peak as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_serialize_as_strings_and_nulls() {
        let report = BulkReport { ids: LineIds(vec![7, 0, 9_007_199_254_740_993]), ..BulkReport::default() };
        let json = serde_json::to_value(&report).unwrap_or_default();
        assert_eq!(json["ids"], serde_json::json!(["7", null, "9007199254740993"]));
        assert_eq!(report.ids.get(1), None);
        assert_eq!(report.ids.get(2), Some(9_007_199_254_740_993));
    }

    #[test]
    fn long_diagnostics_are_cut_on_a_character_boundary() {
        let mut report = BulkReport::default();
        report.push_error(3, 400, "é".repeat(MAX_DIAGNOSTICS_CHARS + 10));
        let kept = &report.errors[0].diagnostics;
        assert_eq!(kept.chars().count(), MAX_DIAGNOSTICS_CHARS + 1);
        assert!(kept.ends_with('…'));
    }

    #[test]
    fn a_stop_line_says_the_rest_was_not_stored() {
        let (status, message) = Stop::TooManyLines.line_error();
        assert_eq!(status, 400);
        assert!(message.contains("not stored"), "{message}");
        let error = Stop::TooManyLines.into_error(200_001);
        assert_eq!(error.to_string(), "line 200001: at most 200000 observations per upload; split the file");
    }
}
