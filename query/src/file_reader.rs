//! How the scan reads a Parquet file: through the engine's metadata cache, with the page index kept in it.
//!
//! DataFusion's Parquet opener asks for a file's metadata without the page index, prunes row groups by their
//! statistics, and then loads the page index itself when a predicate can use it — reading and parsing it again on
//! every open, because that second load does not go through the cache. Every search page prunes by the page index
//! (one patient's rows are a few pages of a file), so the reader here always asks the cache for metadata with the
//! page index: the first open of a file stores it, and later opens find it there and skip the load.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::ParquetFileReaderFactory;
use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
use datafusion::parquet::arrow::arrow_reader::ArrowReaderOptions;
use datafusion::parquet::arrow::async_reader::AsyncFileReader;
use datafusion::parquet::errors::Result as ParquetResult;
use datafusion::parquet::file::metadata::{PageIndexPolicy, ParquetMetaData};
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use futures::future::BoxFuture;

/// [`CachedParquetFileReaderFactory`] whose readers fetch (and so cache) the page index with the footer.
#[derive(Debug)]
pub(crate) struct PageIndexCachingReaderFactory {
    inner: CachedParquetFileReaderFactory,
}

impl PageIndexCachingReaderFactory {
    pub(crate) fn new(inner: CachedParquetFileReaderFactory) -> Self {
        Self { inner }
    }
}

impl ParquetFileReaderFactory for PageIndexCachingReaderFactory {
    fn create_reader(
        &self,
        partition_index: usize,
        partitioned_file: PartitionedFile,
        metadata_size_hint: Option<usize>,
        metrics: &ExecutionPlanMetricsSet,
    ) -> datafusion::error::Result<Box<dyn AsyncFileReader + Send>> {
        let inner = self.inner.create_reader(partition_index, partitioned_file, metadata_size_hint, metrics)?;
        Ok(Box::new(PageIndexCachingReader { inner }))
    }
}

struct PageIndexCachingReader {
    inner: Box<dyn AsyncFileReader + Send>,
}

impl AsyncFileReader for PageIndexCachingReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, ParquetResult<Bytes>> {
        self.inner.get_bytes(range)
    }

    fn get_byte_ranges(&mut self, ranges: Vec<Range<u64>>) -> BoxFuture<'_, ParquetResult<Vec<Bytes>>> {
        self.inner.get_byte_ranges(ranges)
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, ParquetResult<Arc<ParquetMetaData>>> {
        // `Optional`: a file written without a page index still opens (and its footer is cached as it is)
        let options = options.cloned().unwrap_or_default().with_page_index_policy(PageIndexPolicy::Optional);
        Box::pin(async move { self.inner.get_metadata(Some(&options)).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;
    use datafusion::parquet::arrow::ArrowWriter;
    use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};
    use object_store::memory::InMemory;
    use object_store::path::Path;
    use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

    #[tokio::test]
    async fn the_page_index_is_fetched_with_the_footer_and_cached() {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(Int64Array::from_iter_values(0..10_000))])
            .expect("batch");
        let properties = WriterProperties::builder()
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_data_page_row_count_limit(1_000)
            .build();
        let mut writer = ArrowWriter::try_new(Vec::new(), schema, Some(properties)).expect("writer");
        writer.write(&batch).expect("write");
        let bytes = writer.into_inner().expect("finish");

        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let path = Path::from("f.parquet");
        store.put(&path, PutPayload::from(bytes)).await.expect("put");
        let meta = store.head(&path).await.expect("head");
        let runtime = RuntimeEnvBuilder::new().build().expect("runtime");
        let cache = runtime.cache_manager.get_file_metadata_cache();
        let factory =
            PageIndexCachingReaderFactory::new(CachedParquetFileReaderFactory::new(store, Arc::clone(&cache)));
        let metrics = ExecutionPlanMetricsSet::new();

        // as DataFusion's opener asks: without the page index
        let skip = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Skip);
        for open in 0..2 {
            let mut reader =
                factory.create_reader(0, PartitionedFile::new_from_meta(meta.clone()), None, &metrics).expect("reader");
            let metadata = reader.get_metadata(Some(&skip)).await.expect("metadata");
            assert!(metadata.column_index().is_some(), "open {open}: column index");
            assert!(metadata.offset_index().is_some(), "open {open}: offset index");
        }
        let cached = cache.get(&path).expect("the metadata is cached");
        assert!(cached.is_valid_for(&meta));
    }
}
