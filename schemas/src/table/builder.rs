//! Turns validated observations into record batches of [`observation_schema`].

use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, Float64Builder, Int64Builder, ListArray, RecordBatch, StringBuilder, StructArray,
    TimestampMicrosecondBuilder,
};
use arrow::buffer::{OffsetBuffer, ScalarBuffer};

use super::TableError;
use super::schema::{COLUMN_COUNT, TIMEZONE, identifier_fields, identifier_item_field, observation_schema};
use crate::ObservationRecord;

/// Text bytes per row reserved up front, from typical data points: a compact OMH data point is 300–700 bytes,
/// coding systems ~28, codes ~22, units ~5, identifiers 1–2 per row (a system URL and a UUID). Underestimates only
/// cost a buffer regrowth.
const OMH_JSON_BYTES_PER_ROW: usize = 512;
const CODING_BYTES_PER_ROW: usize = 32;
const UNIT_BYTES_PER_ROW: usize = 8;
const IDENTIFIERS_PER_ROW: usize = 2;
const IDENTIFIER_BYTES: usize = 40;

/// The most text bytes a batch may hold: every string column uses 32-bit offsets (see the module notes on `Utf8`),
/// and bounding the sum over all columns bounds each of them.
const MAX_TEXT_BYTES: usize = i32::MAX as usize;

/// Accumulates [`ObservationRecord`]s column by column and emits them as a [`RecordBatch`].
///
/// Appending copies each value straight into pre-sized column buffers (no per-row allocation); [`finish`]
/// hands the buffers to the batch and leaves the builder empty with the same capacity for the next batch.
///
/// [`finish`]: ObservationBatchBuilder::finish
/// [`RecordBatch`]: arrow::array::RecordBatch
#[derive(Debug)]
pub struct ObservationBatchBuilder {
    capacity: usize,
    max_text_bytes: usize,
    text_bytes: usize,
    id: Int64Builder,
    patient_id: Int64Builder,
    jhe_user_id: Int64Builder,
    data_source_id: Int64Builder,
    coding_system: StringBuilder,
    coding_code: StringBuilder,
    effective_start: TimestampMicrosecondBuilder,
    effective_end: TimestampMicrosecondBuilder,
    last_updated: TimestampMicrosecondBuilder,
    value: Float64Builder,
    unit: StringBuilder,
    systolic: Float64Builder,
    diastolic: Float64Builder,
    /// Offsets of each row's identifiers in the two identifier columns; starts with 0.
    identifier_offsets: Vec<i32>,
    identifier_system: StringBuilder,
    identifier_value: StringBuilder,
    omh_json: StringBuilder,
}

impl ObservationBatchBuilder {
    /// A builder with room for `rows` observations before any buffer has to grow.
    pub fn with_capacity(rows: usize) -> Self {
        Self::with_limit(rows, MAX_TEXT_BYTES)
    }

    fn with_limit(rows: usize, max_text_bytes: usize) -> Self {
        let timestamps = || TimestampMicrosecondBuilder::with_capacity(rows).with_timezone(TIMEZONE);
        let texts = |bytes_per_row: usize| StringBuilder::with_capacity(rows, rows.saturating_mul(bytes_per_row));
        let identifiers = rows.saturating_mul(IDENTIFIERS_PER_ROW);
        let identifier_texts =
            || StringBuilder::with_capacity(identifiers, identifiers.saturating_mul(IDENTIFIER_BYTES));
        let mut identifier_offsets = Vec::with_capacity(rows.saturating_add(1));
        identifier_offsets.push(0);
        Self {
            capacity: rows,
            max_text_bytes,
            text_bytes: 0,
            id: Int64Builder::with_capacity(rows),
            patient_id: Int64Builder::with_capacity(rows),
            jhe_user_id: Int64Builder::with_capacity(rows),
            data_source_id: Int64Builder::with_capacity(rows),
            coding_system: texts(CODING_BYTES_PER_ROW),
            coding_code: texts(CODING_BYTES_PER_ROW),
            effective_start: timestamps(),
            effective_end: timestamps(),
            last_updated: timestamps(),
            value: Float64Builder::with_capacity(rows),
            unit: texts(UNIT_BYTES_PER_ROW),
            systolic: Float64Builder::with_capacity(rows),
            diastolic: Float64Builder::with_capacity(rows),
            identifier_offsets,
            identifier_system: identifier_texts(),
            identifier_value: identifier_texts(),
            omh_json: texts(OMH_JSON_BYTES_PER_ROW),
        }
    }

    /// Rows appended since the last [`finish`](Self::finish).
    pub fn len(&self) -> usize {
        self.id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of text (OMH JSON, codes, units, identifiers) appended since the last [`finish`](Self::finish), for
    /// callers that cut batches by size as well as by rows.
    pub fn text_bytes(&self) -> usize {
        self.text_bytes
    }

    /// Appends one observation. Fails, leaving the builder unchanged, only when the batch cannot take the
    /// observation's text ([`TableError::BatchFull`]); finish the batch and append it to the next.
    pub fn append(&mut self, record: &ObservationRecord) -> Result<(), TableError> {
        // Each identifier also takes a list offset; counting it as a byte bounds the offsets as well.
        let identifier_bytes: usize =
            record.identifiers.iter().map(|identifier| identifier.system.len() + identifier.value.len() + 1).sum();
        let record_bytes = record.coding_system.len()
            + record.coding_code.len()
            + record.omh_json.len()
            + record.values.unit.as_deref().map_or(0, str::len)
            + identifier_bytes;
        let text_bytes = self.text_bytes.saturating_add(record_bytes);
        if text_bytes > self.max_text_bytes {
            return Err(TableError::BatchFull {
                id: record.id,
                rows: self.len(),
                buffered_bytes: self.text_bytes,
                record_bytes,
                limit: self.max_text_bytes,
            });
        }
        self.text_bytes = text_bytes;

        self.id.append_value(record.id);
        self.patient_id.append_value(record.patient_id);
        self.jhe_user_id.append_option(record.jhe_user_id);
        self.data_source_id.append_option(record.data_source_id);
        self.coding_system.append_value(&record.coding_system);
        self.coding_code.append_value(&record.coding_code);
        self.effective_start.append_value(record.effective.start_micros);
        self.effective_end.append_option(record.effective.end_micros);
        self.last_updated.append_value(record.last_updated_micros);
        self.value.append_option(record.values.value);
        self.unit.append_option(record.values.unit.as_deref());
        self.systolic.append_option(record.values.systolic);
        self.diastolic.append_option(record.values.diastolic);
        for identifier in &record.identifiers {
            self.identifier_system.append_value(&identifier.system);
            self.identifier_value.append_value(&identifier.value);
        }
        // Cannot truncate: the identifier count is bounded by `max_text_bytes`, itself at most `i32::MAX`.
        self.identifier_offsets.push(self.identifier_system.len() as i32);
        self.omh_json.append_value(&record.omh_json);
        Ok(())
    }

    /// The rows appended since the last call, as a batch of [`observation_schema`] (possibly empty). The builder is
    /// left empty, with its original capacity, ready for the next batch.
    pub fn finish(&mut self) -> Result<RecordBatch, TableError> {
        let mut full = std::mem::replace(self, Self::with_limit(self.capacity, self.max_text_bytes));
        full.build()
    }

    fn build(&mut self) -> Result<RecordBatch, TableError> {
        let identifier_items = StructArray::try_new(
            identifier_fields(),
            vec![Arc::new(self.identifier_system.finish()), Arc::new(self.identifier_value.finish())],
            None,
        )?;
        let offsets = OffsetBuffer::new(ScalarBuffer::from(std::mem::take(&mut self.identifier_offsets)));
        let identifiers = ListArray::try_new(identifier_item_field(), offsets, Arc::new(identifier_items), None)?;

        let columns: [ArrayRef; COLUMN_COUNT] = [
            Arc::new(self.id.finish()),
            Arc::new(self.patient_id.finish()),
            Arc::new(self.jhe_user_id.finish()),
            Arc::new(self.data_source_id.finish()),
            Arc::new(self.coding_system.finish()),
            Arc::new(self.coding_code.finish()),
            Arc::new(self.effective_start.finish()),
            Arc::new(self.effective_end.finish()),
            Arc::new(self.last_updated.finish()),
            Arc::new(self.value.finish()),
            Arc::new(self.unit.finish()),
            Arc::new(self.systolic.finish()),
            Arc::new(self.diastolic.finish()),
            Arc::new(identifiers),
            Arc::new(self.omh_json.finish()),
        ];
        Ok(RecordBatch::try_new(observation_schema(), columns.into())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EffectiveTime, MeasuredValues};

    fn record(id: i64, omh_json: &str) -> ObservationRecord {
        ObservationRecord {
            id,
            patient_id: 1,
            jhe_user_id: None,
            data_source_id: None,
            coding_system: "s".into(),
            coding_code: "c".into(),
            effective: EffectiveTime { start_micros: 0, end_micros: None },
            last_updated_micros: 0,
            identifiers: Vec::new(),
            omh_json: omh_json.into(),
            values: MeasuredValues::default(),
        }
    }

    #[test]
    fn a_row_past_the_text_limit_is_refused_and_the_builder_stays_usable() {
        // Each record has 2 + 10 = 12 bytes of text; a 30-byte limit takes two of them.
        let mut builder = ObservationBatchBuilder::with_limit(4, 30);
        builder.append(&record(1, "0123456789")).unwrap();
        builder.append(&record(2, "0123456789")).unwrap();
        let error = builder.append(&record(3, "0123456789")).unwrap_err();
        assert!(
            matches!(error, TableError::BatchFull { id: 3, rows: 2, buffered_bytes: 24, record_bytes: 12, limit: 30 }),
            "{error:?}"
        );
        assert!(error.to_string().contains("finish the batch first"), "{error}");
        assert_eq!(builder.len(), 2);

        let batch = builder.finish().unwrap();
        assert_eq!(batch.num_rows(), 2);
        assert!(builder.is_empty());
        assert_eq!(builder.text_bytes(), 0);
        builder.append(&record(3, "0123456789")).unwrap();
        assert_eq!(builder.finish().unwrap().num_rows(), 1);
    }
}
