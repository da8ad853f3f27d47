//! The processor: consumes the observation log, validates and consent-checks every record again (records may come
//! from gateways that bypass ingest; consent may have changed since the upload), dedupes by identifier, and writes
//! Parquet files (one per code and UTC day, sorted by patient and time) to object storage. Files are published
//! together with the log offsets they cover in one Postgres transaction, so every record is stored exactly once.
//!
//! * [`pipeline`]: the consume → buffer → flush → publish loop;
//! * [`transform`]: decode, validate and check one record;
//! * [`parquet_file`], [`store`]: encoding and the object-store layout;
//! * [`compactor`]: merges small files of a partition without double counting;
//! * [`janitor`]: deletes orphaned and replaced objects after grace periods;
//! * [`memory`]: the binaries' allocator (jemalloc, [`use_jemalloc!`]).

pub mod compactor;
pub mod janitor;
pub mod memory;
pub mod parquet_file;
pub mod pipeline;
pub mod store;
pub mod transform;

pub use pipeline::{DEFAULT_FLUSH_MAX_RECORDS, Processor, ProcessorError, ProcessorSettings};
