//! Assembles the data plane of one process: the observation log, the control-plane cache, ingest, and (where
//! this process runs it) the processor with its compactor and janitor.

use anyhow::Context;
use jhe_catalog::ControlPlaneCache;
use jhe_eventlog::{EventLog, LogConfig};
use jhe_ingest::{IngestSettings, Ingestor};
use jhe_processor::compactor::{CompactionSettings, Compactor};
use jhe_processor::janitor::{Janitor, JanitorSettings};
use jhe_processor::{Processor, ProcessorSettings};
use sqlx::PgPool;
use std::path::PathBuf;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Where the data plane lives.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Kafka bootstrap servers; `None` = the embedded log under `data_dir/log`.
    pub kafka_brokers: Option<String>,
    /// librdkafka properties applied to every Kafka client.
    pub kafka_properties: Vec<(String, String)>,
    /// `s3://bucket/prefix` or `file:///dir`; `None` = `data_dir/lake`.
    pub object_store_url: Option<String>,
    pub data_dir: PathBuf,
    pub topic: String,
    pub partitions: i32,
    pub group: String,
    /// How long records wait before a flush makes them queryable.
    pub flush_interval: Duration,
    /// Most records in one flush.
    pub flush_max_records: usize,
    pub schemas_dir: Option<PathBuf>,
    /// The query engine's threads, memory and export file size.
    pub query: jhe_query::QuerySettings,
}

impl PipelineConfig {
    pub fn log_config(&self) -> LogConfig {
        LogConfig {
            brokers: self.kafka_brokers.clone(),
            embedded_dir: self.data_dir.join("log"),
            partitions: self.partitions,
            kafka_properties: self.kafka_properties.clone(),
        }
    }

    fn processor_settings(&self) -> ProcessorSettings {
        ProcessorSettings {
            topic: self.topic.clone(),
            dead_letter_topic: format!("{}.dlq", self.topic),
            group: self.group.clone(),
            flush_interval: self.flush_interval,
            flush_max_records: self.flush_max_records,
            ..ProcessorSettings::default()
        }
    }
}

/// The running data plane.
#[derive(Debug)]
pub struct DataPlane {
    /// Uploads, when this process takes them.
    pub ingest: Option<Ingestor>,
    /// Observation reads, in a process that takes uploads (one that serves the API).
    pub query: Option<jhe_query::QueryEngine>,
    pub tasks: JoinSet<anyhow::Result<()>>,
}

/// Which parts this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    pub ingest: bool,
    pub processor: bool,
}

/// Starts the parts of the data plane named by `roles`. Background tasks stop when `shutdown` fires.
pub async fn start(
    config: &PipelineConfig,
    pool: PgPool,
    roles: Roles,
    shutdown: CancellationToken,
) -> anyhow::Result<DataPlane> {
    let log = EventLog::open(&config.log_config()).await.context("opening the observation log")?;
    log.ensure_topic(&config.topic).await.context("creating the observation topic")?;
    log.ensure_topic(&format!("{}.dlq", config.topic)).await.context("creating the dead-letter topic")?;
    let cache = ControlPlaneCache::load(pool.clone()).await.context("loading the control plane")?;
    let validators = crate::validate_cmd::load_validators(config.schemas_dir.as_deref())?;
    let mut tasks = JoinSet::new();
    {
        let cache = cache.clone();
        let stop = shutdown.child_token();
        tasks.spawn(async move {
            cache.follow(stop).await;
            Ok(())
        });
    }

    let ingest = if roles.ingest {
        let producer = log.producer().context("creating the log producer")?;
        let settings = IngestSettings { topic: config.topic.clone() };
        Some(Ingestor::new(pool.clone(), cache.clone(), validators.clone(), producer, settings))
    } else {
        None
    };

    let (store, prefix) = jhe_processor::store::open_store(config.object_store_url.as_deref(), &config.data_dir)
        .context("opening the object store")?;
    let query = if roles.ingest {
        Some(jhe_query::QueryEngine::new(pool.clone(), std::sync::Arc::clone(&store), &config.query)?)
    } else {
        None
    };

    if roles.processor {
        let processor = Processor {
            pool: pool.clone(),
            log: log.clone(),
            store: std::sync::Arc::clone(&store),
            prefix: prefix.clone(),
            cache: cache.clone(),
            validators,
            settings: config.processor_settings(),
        };
        let stop = shutdown.clone();
        tasks.spawn(async move { processor.run(stop).await.context("the processor stopped") });
        let compactor =
            Compactor::new(pool.clone(), std::sync::Arc::clone(&store), prefix.clone(), CompactionSettings::default());
        let stop = shutdown.child_token();
        tasks.spawn(async move {
            compactor.run(stop).await;
            Ok(())
        });
        let janitor = Janitor::new(pool.clone(), store, JanitorSettings::default());
        let stop = shutdown.child_token();
        tasks.spawn(async move {
            janitor.run(stop).await;
            Ok(())
        });
    }
    Ok(DataPlane { ingest, query, tasks })
}
