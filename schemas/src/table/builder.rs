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

/// Rows, identifiers and text bytes per column that a builder reserves.
#[derive(Debug, Default)]
struct Capacities {
    rows: usize,
    coding_system: usize,
    coding_code: usize,
    unit: usize,
    identifiers: usize,
    identifier_system: usize,
    identifier_value: usize,
    omh_json: usize,
}

/// Accumulates [`ObservationRecord`]s column by column and emits them as a [`RecordBatch`].
///
/// Appending copies each value straight into pre-sized column buffers (no per-row allocation); [`finish`]
/// hands the buffers to the batch and leaves the builder empty. The buffers of the next batch are reserved on its
/// first append, so a builder used for one batch (and then dropped) never allocates a second set.
/// [`for_records`](Self::for_records) sizes every buffer exactly for known records.
///
/// [`finish`]: ObservationBatchBuilder::finish
/// [`RecordBatch`]: arrow::array::RecordBatch
#[derive(Debug)]
pub struct ObservationBatchBuilder {
    capacity: usize,
    /// The buffers were handed to a batch by [`finish`](Self::finish): reserve `capacity` rows on the next append.
    spent: bool,
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

    /// A builder sized exactly for `records` (rows and every text column), for callers that know a batch's
    /// records before building it: no buffer grows and none is larger than the batch needs.
    pub fn for_records<'a>(records: impl IntoIterator<Item = &'a ObservationRecord>) -> Self {
        Self::for_rows(records.into_iter().map(|record| (record, record.omh_json.as_str())))
    }

    /// Like [`for_records`](Self::for_records), for rows appended with
    /// [`append_with_omh_json`](Self::append_with_omh_json): each record with the data point stored for it.
    pub fn for_rows<'a>(rows: impl IntoIterator<Item = (&'a ObservationRecord, &'a str)>) -> Self {
        let mut sizes = Capacities::default();
        for (record, omh_json) in rows {
            sizes.rows += 1;
            sizes.coding_system += record.coding_system.len();
            sizes.coding_code += record.coding_code.len();
            sizes.unit += record.values.unit.as_deref().map_or(0, str::len);
            sizes.identifiers += record.identifiers.len();
            for identifier in &record.identifiers {
                sizes.identifier_system += identifier.system.len();
                sizes.identifier_value += identifier.value.len();
            }
            sizes.omh_json += omh_json.len();
        }
        Self::with_capacities(&sizes, MAX_TEXT_BYTES)
    }

    fn with_limit(rows: usize, max_text_bytes: usize) -> Self {
        let identifiers = rows.saturating_mul(IDENTIFIERS_PER_ROW);
        let sizes = Capacities {
            rows,
            coding_system: rows.saturating_mul(CODING_BYTES_PER_ROW),
            coding_code: rows.saturating_mul(CODING_BYTES_PER_ROW),
            unit: rows.saturating_mul(UNIT_BYTES_PER_ROW),
            identifiers,
            identifier_system: identifiers.saturating_mul(IDENTIFIER_BYTES),
            identifier_value: identifiers.saturating_mul(IDENTIFIER_BYTES),
            omh_json: rows.saturating_mul(OMH_JSON_BYTES_PER_ROW),
        };
        Self::with_capacities(&sizes, max_text_bytes)
    }

    fn with_capacities(sizes: &Capacities, max_text_bytes: usize) -> Self {
        let rows = sizes.rows;
        let timestamps = || TimestampMicrosecondBuilder::with_capacity(rows).with_timezone(TIMEZONE);
        let identifiers = sizes.identifiers;
        let mut identifier_offsets = Vec::with_capacity(rows.saturating_add(1));
        identifier_offsets.push(0);
        Self {
            capacity: rows,
            spent: false,
            max_text_bytes,
            text_bytes: 0,
            id: Int64Builder::with_capacity(rows),
            patient_id: Int64Builder::with_capacity(rows),
            jhe_user_id: Int64Builder::with_capacity(rows),
            data_source_id: Int64Builder::with_capacity(rows),
            coding_system: StringBuilder::with_capacity(rows, sizes.coding_system),
            coding_code: StringBuilder::with_capacity(rows, sizes.coding_code),
            effective_start: timestamps(),
            effective_end: timestamps(),
            last_updated: timestamps(),
            value: Float64Builder::with_capacity(rows),
            unit: StringBuilder::with_capacity(rows, sizes.unit),
            systolic: Float64Builder::with_capacity(rows),
            diastolic: Float64Builder::with_capacity(rows),
            identifier_offsets,
            identifier_system: StringBuilder::with_capacity(identifiers, sizes.identifier_system),
            identifier_value: StringBuilder::with_capacity(identifiers, sizes.identifier_value),
            omh_json: StringBuilder::with_capacity(rows, sizes.omh_json),
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
        self.append_with_omh_json(record, &record.omh_json)
    }

    /// Appends `record` with `omh_json` as its data point (`record.omh_json` is not read), for callers that keep
    /// the data point elsewhere — the processor leaves it in the log record it came in — and so copy it once.
    pub fn append_with_omh_json(&mut self, record: &ObservationRecord, omh_json: &str) -> Result<(), TableError> {
        // Each identifier also takes a list offset; counting it as a byte bounds the offsets as well.
        let identifier_bytes: usize =
            record.identifiers.iter().map(|identifier| identifier.system.len() + identifier.value.len() + 1).sum();
        let record_bytes = record.coding_system.len()
            + record.coding_code.len()
            + omh_json.len()
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
        if self.spent {
            // the first row after `finish`: reserve the next batch's buffers now (see the type's notes)
            *self = Self::with_limit(self.capacity, self.max_text_bytes);
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
        self.omh_json.append_value(omh_json);
        Ok(())
    }

    /// The rows appended since the last call, as a batch of [`observation_schema`] (possibly empty). The builder is
    /// left empty, ready for the next batch; its buffers (of the original capacity) are reserved on the next
    /// append, so finishing a builder that is then dropped allocates nothing more.
    pub fn finish(&mut self) -> Result<RecordBatch, TableError> {
        let batch = self.build();
        // `build` left empty, unreserved buffers behind (and the offsets without their leading 0): start over with
        // empty ones, to be reserved on the next append
        let capacity = self.capacity;
        *self = Self::with_capacities(&Capacities::default(), self.max_text_bytes);
        self.capacity = capacity;
        self.spent = true;
        batch
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

    #[test]
    fn a_builder_sized_for_its_records_reserves_what_they_need_and_no_more() {
        let mut records: Vec<ObservationRecord> = (0..100).map(|i| record(i, &"x".repeat(300 + i as usize))).collect();
        records[7].identifiers.push(crate::Identifier { system: "urn:s".into(), value: "v-7".into() });
        records[9].values.unit = Some("beats/min".into());
        let omh_bytes: usize = records.iter().map(|r| r.omh_json.len()).sum();

        let mut exact = ObservationBatchBuilder::for_records(&records);
        let mut estimated = ObservationBatchBuilder::with_capacity(records.len());
        for record in &records {
            exact.append(record).unwrap();
            estimated.append(record).unwrap();
        }
        let exact = exact.finish().unwrap();
        assert_eq!(exact, estimated.finish().unwrap(), "same rows either way");
        // the data points kept apart from the records
        let bare: Vec<ObservationRecord> =
            records.iter().map(|r| ObservationRecord { omh_json: String::new(), ..r.clone() }).collect();
        let rows = || bare.iter().zip(records.iter().map(|r| r.omh_json.as_str()));
        let mut apart = ObservationBatchBuilder::for_rows(rows());
        for (record, omh_json) in rows() {
            apart.append_with_omh_json(record, omh_json).unwrap();
        }
        assert_eq!(apart.finish().unwrap(), exact);
        let omh = exact.column(COLUMN_COUNT - 1);
        // values + offsets, each rounded up to arrow's 64-byte allocation granularity
        let needed = omh_bytes + 4 * (records.len() + 1);
        assert!(omh.get_buffer_memory_size() <= needed + 128, "{} > {needed}", omh.get_buffer_memory_size());
    }

    #[test]
    fn finishing_leaves_no_reserved_buffers_until_the_next_append() {
        let mut builder = ObservationBatchBuilder::with_capacity(10_000);
        builder.append(&record(1, "{}")).unwrap();
        assert_eq!(builder.finish().unwrap().num_rows(), 1);
        let empty = builder.finish().unwrap();
        assert_eq!(empty.num_rows(), 0);
        assert!(empty.get_array_memory_size() < 4096, "{}", empty.get_array_memory_size());
        builder.append(&record(2, "{}")).unwrap();
        assert_eq!(builder.finish().unwrap().num_rows(), 1);
    }
}
