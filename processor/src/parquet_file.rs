//! Observation batches ⇄ Parquet files: encoding (sorted, zstd, statistics, the schema version in the footer), the
//! statistics the catalog keeps for pruning, uploads and reads through `object_store`.
//!
//! Encoding and decoding are CPU-bound and synchronous: call them from `spawn_blocking` (as [`read_parquet`] does).

use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch, StringArray};
use arrow::compute::{SortColumn, concat_batches, lexsort_to_indices, max, min, take_record_batch};
use arrow::datatypes::{Int64Type, TimestampMicrosecondType};
use arrow::error::ArrowError;
use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use jhe_catalog::NewParquetFile;
use jhe_schemas::ErrorKind;
use jhe_schemas::table::{
    COL_CODING_CODE, COL_CODING_SYSTEM, COL_EFFECTIVE_END, COL_EFFECTIVE_START, COL_ID, COL_IDENTIFIERS,
    COL_LAST_UPDATED, COL_OMH_JSON, COL_PATIENT_ID, IDENTIFIER_ITEM, IDENTIFIER_VALUE, SCHEMA_VERSION,
    SCHEMA_VERSION_KEY, observation_schema,
};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use uuid::Uuid;

/// Rows per Parquet row group: large enough for good compression and few footer entries, small enough that a
/// reader pruning by page statistics skips most of a day's file for one patient.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;
/// Rows per data page at most. Pages are the unit the page index prunes by: a reader wanting one patient decodes
/// the pages that hold that patient's rows, and the writer's default (20,000 rows, far fewer bytes than the page
/// size limit for these narrow, well-compressed columns) made one patient's read of a day's file filter about ten
/// patients' rows per column. 4,096 rows keep pages of the sorted narrow columns near one to three patients.
pub const DATA_PAGE_ROWS: usize = 4 * 1024;
/// The zstd level of the compressed columns, [`zstd_columns`] (3: zstd's default, most of the ratio at a fraction
/// of the CPU of higher levels).
pub const ZSTD_LEVEL: i32 = 3;
/// Uncompressed bytes of a data page of `omh_json` at most (about 400 data points). A reader decompresses a whole
/// page to get any of its rows, and a patient's page of results wants a few hundred rows of each file: with the
/// default 1 MiB pages it decompressed three times the rows it used. Smaller pages cost 2–3 % in compression.
pub const OMH_JSON_PAGE_BYTES: usize = 128 * 1024;
/// Files larger than this are uploaded in parts (S3 caps a single PUT at 5 GiB and retries a failed one whole).
pub const MULTIPART_THRESHOLD: usize = 32 * 1024 * 1024;
/// The part size of multipart uploads (S3 needs at least 5 MiB for every part but the last).
pub const MULTIPART_PART_SIZE: usize = 16 * 1024 * 1024;
/// Parts of one multipart upload in flight at once.
const MULTIPART_CONCURRENCY: usize = 4;

/// What can go wrong encoding, uploading or reading a Parquet file.
#[derive(Debug, thiserror::Error)]
pub enum ParquetError {
    #[error("a Parquet file needs at least one row")]
    Empty,
    #[error("record batch column `{column}` does not match the observation schema")]
    Schema { column: String },
    /// One file holds one (system, code, UTC day of `effective_start`): the catalog prunes by them.
    #[error("the rows of one file span more than one {what}")]
    MixedPartition { what: &'static str },
    /// [`encode_sorted_parquet`] got rows out of (patient_id, effective_start, id) order.
    #[error("row {row} of the batch is out of (patient_id, effective_start, id) order")]
    Unsorted { row: usize },
    #[error("timestamp column `{column}` holds a value outside the supported range")]
    TimestampRange { column: &'static str },
    #[error("Arrow: {0}")]
    Arrow(#[from] ArrowError),
    #[error("Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    #[error("a blocking Parquet task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl ParquetError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ParquetError::ObjectStore(_) => ErrorKind::Unavailable,
            _ => ErrorKind::Internal,
        }
    }
}

/// What the catalog keeps about a file's rows ([`NewParquetFile`] without the id, path and size).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStats {
    pub coding_system: String,
    pub coding_code: String,
    /// The UTC day of `effective_start` of every row.
    pub day: NaiveDate,
    pub row_count: i64,
    pub min_patient_id: i64,
    pub max_patient_id: i64,
    pub min_effective_start: DateTime<Utc>,
    pub max_effective_start: DateTime<Utc>,
    pub max_effective_end: Option<DateTime<Utc>>,
    pub min_last_updated: DateTime<Utc>,
    pub max_last_updated: DateTime<Utc>,
    /// (patient id, rows), sorted by patient: what lets a search count without reading the file.
    pub patient_rows: Vec<(i64, i64)>,
}

/// An encoded Parquet file in memory, with its statistics.
#[derive(Debug, Clone)]
pub struct EncodedFile {
    pub bytes: Bytes,
    pub stats: FileStats,
}

impl EncodedFile {
    /// The catalog row of this file once it is stored at `object_path` under `id` (`size_bytes` is the size
    /// written; `compaction_level` 0 for the processor).
    pub fn catalog_entry(&self, id: Uuid, object_path: &Path, compaction_level: i32) -> NewParquetFile {
        let stats = &self.stats;
        NewParquetFile {
            id,
            object_path: object_path.to_string(),
            coding_system: stats.coding_system.clone(),
            coding_code: stats.coding_code.clone(),
            day: stats.day,
            row_count: stats.row_count,
            size_bytes: i64::try_from(self.bytes.len()).unwrap_or(i64::MAX),
            min_patient_id: stats.min_patient_id,
            max_patient_id: stats.max_patient_id,
            min_effective_start: stats.min_effective_start,
            max_effective_start: stats.max_effective_start,
            max_effective_end: stats.max_effective_end,
            min_last_updated: stats.min_last_updated,
            max_last_updated: stats.max_last_updated,
            compaction_level,
            patient_rows: stats.patient_rows.clone(),
        }
    }
}

/// The Parquet leaf of `identifiers[].value` (Arrow lists are written as `<name>.list.<item name>`).
fn identifier_value_path() -> ColumnPath {
    identifier_leaf(IDENTIFIER_VALUE)
}

fn identifier_leaf(field: &str) -> ColumnPath {
    ColumnPath::new([COL_IDENTIFIERS, "list", IDENTIFIER_ITEM, field].into_iter().map(str::to_owned).collect())
}

/// The columns written with zstd: the two whose values are long and all different (the data point's JSON and each
/// identifier's value), where it saves nine tenths and a half of the bytes. Every other column is written
/// uncompressed: they hold one value per file or per patient's run (dictionary-encoded to a few bytes a page), or
/// small numbers and times that delta or dictionary encoding already packs into about a byte a row. Reading a
/// zstd column chunk costs its reader a compression and a decompression context however small the chunk is
/// (parquet-rs makes both for every chunk it opens): on a search page's scan, which reads a few thousand rows of
/// every column of a few files, the contexts of nine zstd columns were 6 % of the server's CPU.
fn zstd_columns() -> [ColumnPath; 2] {
    [ColumnPath::from(COL_OMH_JSON), identifier_value_path()]
}

/// Columns written with `DELTA_BINARY_PACKED` (no dictionary): the id and the receipt time, which rise within a
/// patient's run but repeat little, so their deltas pack into one to three bytes a row without a codec (the
/// dictionary of such a column outgrows its limit and falls back to 8 bytes a row). `effective_start` and
/// `effective_end` keep their dictionary: readings share times across patients (a minute's boundary), and irregular
/// uploads made their deltas four bytes a row in `bench-pipeline e2e`'s data against under one with the dictionary.
fn delta_columns() -> [ColumnPath; 2] {
    [ColumnPath::from(COL_ID), ColumnPath::from(COL_LAST_UPDATED)]
}

fn writer_properties() -> Result<WriterProperties, ParquetError> {
    let schema = observation_schema();
    let sorting_columns = [COL_PATIENT_ID, COL_EFFECTIVE_START, COL_ID]
        .into_iter()
        .map(|name| {
            // These columns come before the nested `identifiers`, so their field index is their leaf index.
            let column_idx = schema.index_of(name)?;
            Ok(SortingColumn { column_idx: column_idx as i32, descending: false, nulls_first: false })
        })
        .collect::<Result<Vec<_>, ArrowError>>()?;
    let mut builder = WriterProperties::builder().set_compression(Compression::UNCOMPRESSED);
    for column in zstd_columns() {
        builder = builder.set_column_compression(column, Compression::ZSTD(ZstdLevel::try_new(ZSTD_LEVEL)?));
    }
    for column in delta_columns() {
        builder = builder
            .set_column_dictionary_enabled(column.clone(), false)
            .set_column_encoding(column, Encoding::DELTA_BINARY_PACKED);
    }
    Ok(builder
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_data_page_row_count_limit(DATA_PAGE_ROWS)
        .set_column_data_page_size_limit(ColumnPath::from(COL_OMH_JSON), OMH_JSON_PAGE_BYTES)
        .set_statistics_enabled(EnabledStatistics::Page)
        // every data point differs: a dictionary would only be built to be discarded
        .set_column_dictionary_enabled(ColumnPath::from(COL_OMH_JSON), false)
        .set_column_dictionary_enabled(identifier_value_path(), false)
        // nothing prunes by the data point or an identifier's value: min/max statistics of long, all-different
        // strings would cost a comparison of every value and footer bytes for nothing
        .set_column_statistics_enabled(ColumnPath::from(COL_OMH_JSON), EnabledStatistics::None)
        .set_column_statistics_enabled(identifier_value_path(), EnabledStatistics::None)
        .set_sorting_columns(Some(sorting_columns))
        .set_key_value_metadata(Some(vec![KeyValue::new(SCHEMA_VERSION_KEY.to_owned(), SCHEMA_VERSION.to_owned())]))
        .build())
}

/// Concatenates `batches` (all of [`observation_schema`], one (system, code, UTC day) — see
/// [`ParquetError::MixedPartition`]), sorts the rows by (patient_id, effective_start, id) and encodes them as one
/// Parquet file in memory. CPU-bound: run it on a blocking thread.
pub fn encode_parquet(batches: &[RecordBatch]) -> Result<EncodedFile, ParquetError> {
    let schema = observation_schema();
    let mut conformed = Vec::with_capacity(batches.len());
    for batch in batches {
        if let Some(column) = schema
            .fields()
            .iter()
            .zip(batch.schema_ref().fields().iter())
            .find(|(expected, found)| expected != found)
            .map(|(expected, _)| expected.name().clone())
        {
            return Err(ParquetError::Schema { column });
        }
        if batch.num_columns() != schema.fields().len() {
            return Err(ParquetError::Schema { column: format!("#{}", batch.num_columns()) });
        }
        // same fields: only the metadata may differ (e.g. read back from a file)
        conformed.push(batch.clone().with_schema(Arc::clone(&schema))?);
    }
    let all = concat_batches(&schema, &conformed)?;
    if all.num_rows() == 0 {
        return Err(ParquetError::Empty);
    }
    let sort_column = |name: &str| -> Result<SortColumn, ParquetError> {
        let values = all.column_by_name(name).ok_or_else(|| ParquetError::Schema { column: name.to_owned() })?;
        Ok(SortColumn { values: Arc::clone(values), options: None })
    };
    let order = lexsort_to_indices(
        &[sort_column(COL_PATIENT_ID)?, sort_column(COL_EFFECTIVE_START)?, sort_column(COL_ID)?],
        None,
    )?;
    let sorted = take_record_batch(&all, &order)?;
    drop(all);
    write_parquet(&sorted)
}

/// Encodes one batch of [`observation_schema`] whose rows are already sorted by (patient_id, effective_start, id)
/// — the processor builds its batches in that order — without the copies [`encode_parquet`] makes to concatenate
/// and sort. The order is checked (one pass over three columns): unsorted rows are [`ParquetError::Unsorted`].
pub fn encode_sorted_parquet(batch: &RecordBatch) -> Result<EncodedFile, ParquetError> {
    let schema = observation_schema();
    if batch.num_columns() != schema.fields().len() {
        return Err(ParquetError::Schema { column: format!("#{}", batch.num_columns()) });
    }
    if let Some((expected, _)) =
        schema.fields().iter().zip(batch.schema_ref().fields().iter()).find(|(expected, found)| expected != found)
    {
        return Err(ParquetError::Schema { column: expected.name().clone() });
    }
    if batch.num_rows() == 0 {
        return Err(ParquetError::Empty);
    }
    let column =
        |name: &str| batch.column_by_name(name).ok_or_else(|| ParquetError::Schema { column: name.to_owned() });
    let patient = column(COL_PATIENT_ID)?
        .as_primitive_opt::<Int64Type>()
        .ok_or_else(|| ParquetError::Schema { column: COL_PATIENT_ID.to_owned() })?;
    let start = column(COL_EFFECTIVE_START)?
        .as_primitive_opt::<TimestampMicrosecondType>()
        .ok_or_else(|| ParquetError::Schema { column: COL_EFFECTIVE_START.to_owned() })?;
    let id = column(COL_ID)?
        .as_primitive_opt::<Int64Type>()
        .ok_or_else(|| ParquetError::Schema { column: COL_ID.to_owned() })?;
    let (patient, start, id) = (patient.values(), start.values(), id.values());
    if let Some(row) = (1..batch.num_rows())
        .find(|&row| (patient[row - 1], start[row - 1], id[row - 1]) > (patient[row], start[row], id[row]))
    {
        return Err(ParquetError::Unsorted { row });
    }
    let conformed = batch.clone().with_schema(schema)?;
    write_parquet(&conformed)
}

/// Writes sorted rows of [`observation_schema`] as one Parquet file in memory, with their statistics.
fn write_parquet(sorted: &RecordBatch) -> Result<EncodedFile, ParquetError> {
    let stats = file_stats(sorted)?;
    let mut writer = ArrowWriter::try_new(Vec::new(), observation_schema(), Some(writer_properties()?))?;
    writer.write(sorted)?;
    let bytes = writer.into_inner()?;
    Ok(EncodedFile { bytes: Bytes::from(bytes), stats })
}

fn file_stats(batch: &RecordBatch) -> Result<FileStats, ParquetError> {
    let column =
        |name: &str| batch.column_by_name(name).ok_or_else(|| ParquetError::Schema { column: name.to_owned() });
    let int64s = |name: &str| {
        column(name)?.as_primitive_opt::<Int64Type>().ok_or_else(|| ParquetError::Schema { column: name.to_owned() })
    };
    let timestamps = |name: &str| {
        column(name)?
            .as_primitive_opt::<TimestampMicrosecondType>()
            .ok_or_else(|| ParquetError::Schema { column: name.to_owned() })
    };
    let texts = |name: &str| -> Result<&StringArray, ParquetError> {
        column(name)?.as_string_opt::<i32>().ok_or_else(|| ParquetError::Schema { column: name.to_owned() })
    };
    let instant = |micros: Option<i64>, column: &'static str| -> Result<DateTime<Utc>, ParquetError> {
        micros.and_then(DateTime::from_timestamp_micros).ok_or(ParquetError::TimestampRange { column })
    };
    let optional_instant =
        |micros: Option<i64>, column: &'static str| micros.map(|m| instant(Some(m), column)).transpose();

    let single = |array: &StringArray, what: &'static str| -> Result<String, ParquetError> {
        // the column is non-null in the schema; a null here would be a builder bug, reported as a mixed file
        let first = (array.len() > 0 && array.is_valid(0)).then(|| array.value(0)).ok_or(ParquetError::Empty)?;
        if array.null_count() > 0 || array.iter().any(|value| value != Some(first)) {
            return Err(ParquetError::MixedPartition { what });
        }
        Ok(first.to_owned())
    };
    let coding_system = single(texts(COL_CODING_SYSTEM)?, "coding system")?;
    let coding_code = single(texts(COL_CODING_CODE)?, "coding code")?;

    let patient_id = int64s(COL_PATIENT_ID)?;
    let effective_start = timestamps(COL_EFFECTIVE_START)?;
    let last_updated = timestamps(COL_LAST_UPDATED)?;
    let min_effective_start = instant(min(effective_start), COL_EFFECTIVE_START)?;
    let max_effective_start = instant(max(effective_start), COL_EFFECTIVE_START)?;
    let day = min_effective_start.date_naive();
    if max_effective_start.date_naive() != day {
        return Err(ParquetError::MixedPartition { what: "UTC day of effective_start" });
    }
    Ok(FileStats {
        coding_system,
        coding_code,
        day,
        row_count: i64::try_from(batch.num_rows()).unwrap_or(i64::MAX),
        min_patient_id: min(patient_id).ok_or(ParquetError::Empty)?,
        max_patient_id: max(patient_id).ok_or(ParquetError::Empty)?,
        min_effective_start,
        max_effective_start,
        max_effective_end: optional_instant(max(timestamps(COL_EFFECTIVE_END)?), COL_EFFECTIVE_END)?,
        min_last_updated: instant(min(last_updated), COL_LAST_UPDATED)?,
        max_last_updated: instant(max(last_updated), COL_LAST_UPDATED)?,
        patient_rows: patient_rows(patient_id),
    })
}

/// (patient id, rows) of every patient in the column, sorted by patient. The rows of a file are sorted by
/// patient, so this is one pass of run lengths; an unsorted column (a caller's mistake elsewhere) still counts
/// right through the final merge.
fn patient_rows(patient_id: &arrow::array::PrimitiveArray<Int64Type>) -> Vec<(i64, i64)> {
    let mut runs: Vec<(i64, i64)> = Vec::new();
    for id in patient_id.iter().flatten() {
        match runs.last_mut() {
            Some((last, rows)) if *last == id => *rows += 1,
            _ => runs.push((id, 1)),
        }
    }
    if runs.windows(2).any(|pair| pair[0].0 >= pair[1].0) {
        let mut merged = std::collections::BTreeMap::new();
        for (id, rows) in runs {
            *merged.entry(id).or_insert(0) += rows;
        }
        return merged.into_iter().collect();
    }
    runs
}

/// Stores `bytes` at `path` (one put up to [`MULTIPART_THRESHOLD`], a multipart upload above) and returns the size
/// written. Either the whole object is stored or, on error, none of it is visible.
pub async fn upload(store: &dyn ObjectStore, path: &Path, bytes: Bytes) -> Result<u64, ParquetError> {
    let size = bytes.len() as u64;
    if bytes.len() <= MULTIPART_THRESHOLD {
        store.put(path, PutPayload::from(bytes)).await?;
    } else {
        upload_multipart(store, path, bytes, MULTIPART_PART_SIZE).await?;
    }
    Ok(size)
}

/// Stores `bytes` at `path` as a multipart upload of `part_size`-byte parts (at least 5 MiB on S3), aborting the
/// upload on error so no parts are left behind.
pub async fn upload_multipart(
    store: &dyn ObjectStore,
    path: &Path,
    bytes: Bytes,
    part_size: usize,
) -> Result<(), ParquetError> {
    let upload = store.put_multipart(path).await?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, part_size);
    let mut offset = 0;
    while offset < bytes.len() {
        if let Err(error) = writer.wait_for_capacity(MULTIPART_CONCURRENCY).await {
            abort(writer, path).await;
            return Err(error.into());
        }
        let end = bytes.len().min(offset.saturating_add(part_size));
        // `put` slices without copying
        writer.put(bytes.slice(offset..end));
        offset = end;
    }
    // `finish` aborts the upload itself when it fails
    writer.finish().await?;
    Ok(())
}

async fn abort(writer: WriteMultipart, path: &Path) {
    if let Err(error) = writer.abort().await {
        tracing::warn!(path = %path, %error, "aborting a failed multipart upload failed");
    }
}

/// Reads the Parquet file at `path` back into record batches (decoding on a blocking thread).
pub async fn read_parquet(store: &dyn ObjectStore, path: &Path) -> Result<Vec<RecordBatch>, ParquetError> {
    let bytes = store.get(path).await?.bytes().await?;
    tokio::task::spawn_blocking(move || decode_parquet(bytes)).await?
}

/// Decodes an in-memory Parquet file (CPU-bound).
pub fn decode_parquet(bytes: Bytes) -> Result<Vec<RecordBatch>, ParquetError> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)?.build()?;
    let batches = reader.collect::<Result<Vec<_>, ArrowError>>()?;
    Ok(batches)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jhe_schemas::table::{ObservationBatchBuilder, records_from_batch};
    use jhe_schemas::{EffectiveTime, Identifier, MeasuredValues, ObservationRecord};

    const DAY_START: i64 = 1_772_323_200_000_000; // 2026-03-01T00:00:00Z in µs

    fn record(id: i64, patient_id: i64, start_offset_s: i64) -> ObservationRecord {
        ObservationRecord {
            id,
            patient_id,
            jhe_user_id: Some(patient_id + 100),
            data_source_id: None,
            coding_system: "https://w3id.org/openmhealth".into(),
            coding_code: "omh:heart-rate:2.0".into(),
            effective: EffectiveTime {
                start_micros: DAY_START + start_offset_s * 1_000_000,
                end_micros: (id % 2 == 0).then_some(DAY_START + (start_offset_s + 60) * 1_000_000),
            },
            last_updated_micros: DAY_START + 86_400_000_000 + id,
            identifiers: vec![Identifier { system: "urn:test".into(), value: format!("obs-{id}") }],
            omh_json: format!(r#"{{"heart_rate":{{"value":{id},"unit":"beats/min"}}}}"#),
            values: MeasuredValues { value: Some(id as f64), unit: Some("beats/min".into()), ..Default::default() },
        }
    }

    fn batch(records: &[ObservationRecord]) -> RecordBatch {
        let mut builder = ObservationBatchBuilder::with_capacity(records.len());
        for record in records {
            builder.append(record).unwrap();
        }
        builder.finish().unwrap()
    }

    #[test]
    fn encoded_files_are_sorted_and_round_trip() {
        let first = batch(&[record(5, 2, 30), record(1, 3, 10), record(2, 2, 30)]);
        let second = batch(&[record(4, 1, 50), record(3, 2, 20)]);
        let encoded = encode_parquet(&[first, second]).unwrap();

        let stats = &encoded.stats;
        assert_eq!(stats.row_count, 5);
        assert_eq!((stats.min_patient_id, stats.max_patient_id), (1, 3));
        assert_eq!(stats.day, NaiveDate::from_ymd_opt(2026, 3, 1).unwrap());
        assert_eq!(stats.min_effective_start.timestamp_micros(), DAY_START + 10_000_000);
        assert_eq!(stats.max_effective_start.timestamp_micros(), DAY_START + 50_000_000);
        assert_eq!(stats.max_effective_end.map(|t| t.timestamp_micros()), Some(DAY_START + 110_000_000));
        assert_eq!(stats.min_last_updated.timestamp_micros(), DAY_START + 86_400_000_001);
        assert_eq!(stats.coding_code, "omh:heart-rate:2.0");

        let decoded = decode_parquet(encoded.bytes.clone()).unwrap();
        let records: Vec<ObservationRecord> =
            decoded.iter().flat_map(|batch| records_from_batch(batch).unwrap()).collect();
        let order: Vec<(i64, i64)> = records.iter().map(|r| (r.patient_id, r.id)).collect();
        assert_eq!(order, vec![(1, 4), (2, 3), (2, 2), (2, 5), (3, 1)], "sorted by patient, start, id");
        assert_eq!(records[2], record(2, 2, 30));

        let reader = ParquetRecordBatchReaderBuilder::try_new(encoded.bytes).unwrap();
        let metadata = reader.metadata();
        let key_values = metadata.file_metadata().key_value_metadata().unwrap();
        assert!(
            key_values.iter().any(|kv| kv.key == SCHEMA_VERSION_KEY && kv.value.as_deref() == Some(SCHEMA_VERSION))
        );
        let row_group = metadata.row_group(0);
        assert!(row_group.column(1).statistics().is_some());
        let column = |path: &ColumnPath| {
            row_group.columns().iter().find(|c| c.column_path() == path).unwrap_or_else(|| panic!("no column {path}"))
        };
        for unpruned in [ColumnPath::from(COL_OMH_JSON), identifier_value_path()] {
            let chunk = column(&unpruned);
            assert!(chunk.statistics().is_none(), "{unpruned}: no statistics");
            assert!(chunk.dictionary_page_offset().is_none(), "{unpruned}: no dictionary");
        }
        assert!(column(&ColumnPath::from(COL_PATIENT_ID)).statistics().is_some());
        assert_eq!(row_group.sorting_columns().map(Vec::len), Some(3));
        let compressed = zstd_columns();
        for chunk in row_group.columns() {
            let expected_zstd = compressed.contains(chunk.column_path());
            let zstd = matches!(chunk.compression(), Compression::ZSTD(_));
            assert_eq!(zstd, expected_zstd, "{}: {:?}", chunk.column_path(), chunk.compression());
            assert!(zstd || chunk.compression() == Compression::UNCOMPRESSED, "{}", chunk.column_path());
        }
        assert!(matches!(column(&ColumnPath::from(COL_OMH_JSON)).compression(), Compression::ZSTD(_)));
        for delta in delta_columns() {
            let encodings: Vec<Encoding> = column(&delta).encodings().collect();
            assert!(encodings.contains(&Encoding::DELTA_BINARY_PACKED), "{delta}: {encodings:?}");
            assert!(column(&delta).dictionary_page_offset().is_none(), "{delta}: no dictionary");
        }
    }

    #[test]
    fn data_pages_are_small_enough_to_prune_one_patient() {
        // 3 patients × 4,000 rows: the narrow columns compress far below the page size limit, so only the row
        // limit splits their pages
        let rows: Vec<ObservationRecord> = (0..12_000).map(|n| record(n + 1, n / 4_000 + 1, n % 4_000)).collect();
        let encoded = encode_parquet(&[batch(&rows)]).unwrap();
        let options = parquet::arrow::arrow_reader::ArrowReaderOptions::new()
            .with_page_index_policy(parquet::file::metadata::PageIndexPolicy::Required);
        let reader = ParquetRecordBatchReaderBuilder::try_new_with_options(encoded.bytes, options).unwrap();
        let metadata = reader.metadata();
        let offsets = metadata.offset_index().expect("an offset index");
        let patient = metadata.row_group(0).columns().iter().position(|c| c.column_path().string() == COL_PATIENT_ID);
        let pages = offsets[0][patient.unwrap()].page_locations();
        assert!(pages.len() >= 12_000 / DATA_PAGE_ROWS, "{} pages", pages.len());
        let mut starts: Vec<i64> = pages.iter().map(|page| page.first_row_index).collect();
        starts.push(metadata.row_group(0).num_rows());
        assert!(starts.windows(2).all(|pair| pair[1] - pair[0] <= DATA_PAGE_ROWS as i64), "{starts:?}");
        assert!(metadata.column_index().is_some(), "page statistics for pruning");
    }

    #[test]
    fn sorted_batches_encode_as_they_are_and_unsorted_ones_are_refused() {
        let rows = [record(4, 1, 50), record(3, 2, 20), record(2, 2, 30), record(5, 2, 30), record(1, 3, 10)];
        let sorted = encode_sorted_parquet(&batch(&rows)).unwrap();
        // the same rows in another order, sorted by `encode_parquet`
        let shuffled = [rows[4].clone(), rows[1].clone(), rows[0].clone(), rows[3].clone(), rows[2].clone()];
        let reference = encode_parquet(&[batch(&shuffled[..3]), batch(&shuffled[3..])]).unwrap();
        assert_eq!(sorted.stats, reference.stats);
        let decoded: Vec<ObservationRecord> =
            decode_parquet(sorted.bytes).unwrap().iter().flat_map(|batch| records_from_batch(batch).unwrap()).collect();
        assert_eq!(decoded, rows.to_vec());

        let error = encode_sorted_parquet(&batch(&[rows[1].clone(), rows[0].clone()])).unwrap_err();
        assert!(matches!(error, ParquetError::Unsorted { row: 1 }), "{error}");
        // same patient and start: the id decides
        let error = encode_sorted_parquet(&batch(&[rows[3].clone(), rows[2].clone()])).unwrap_err();
        assert!(matches!(error, ParquetError::Unsorted { row: 1 }), "{error}");
        assert!(matches!(encode_sorted_parquet(&batch(&[])).unwrap_err(), ParquetError::Empty));
    }

    #[test]
    fn a_file_holds_one_code_and_day() {
        let mut other_code = record(2, 1, 0);
        other_code.coding_code = "omh:step-count:2.0".into();
        let error = encode_parquet(&[batch(&[record(1, 1, 0), other_code])]).unwrap_err();
        assert!(matches!(error, ParquetError::MixedPartition { what: "coding code" }), "{error}");

        let next_day = record(2, 1, 86_400);
        let error = encode_parquet(&[batch(&[record(1, 1, 0), next_day])]).unwrap_err();
        assert!(matches!(error, ParquetError::MixedPartition { .. }), "{error}");

        assert!(matches!(encode_parquet(&[]).unwrap_err(), ParquetError::Empty));
        assert!(matches!(encode_parquet(&[batch(&[])]).unwrap_err(), ParquetError::Empty));
    }
}
