//! The embedded durable log: Kafka's semantics (topics of partitions, dense offsets from 0, keyed records with
//! headers and timestamps, durable acknowledgement) in a local directory, for `jhe dev` and small single-process
//! deployments.
//!
//! Layout under [`LogConfig::embedded_dir`]:
//!
//! ```text
//! lock                                  held (flock) by the process that has the log open; contains its pid
//! <topic>/meta.json                     {"version":"1","partitions":N}: the partition count, fixed at creation
//! <topic>/<partition>/<base:020>.log    segments; the record format is in `segment`
//! ```
//!
//! * **Appends** go through one writer thread per topic ([`writer`]) with group commit: a send resolves once its
//!   records are written and fdatasync'ed, and concurrent sends share one fsync per partition. A group is all or
//!   nothing across its partitions, also over a crash: a send that failed is not delivered after a restart.
//! * **Partitioning**: a non-empty key goes to `crc32(key) % partitions`, so one key keeps its order in one
//!   partition; records without a key go to one partition per `send`, chosen round robin.
//! * **Consumers** ([`reader`]) get every partition at creation, start where the [`PositionStore`] says and follow the
//!   writer, reading only what is durable.
//! * **Retention**: [`EmbeddedConsumer::processed`] deletes segments wholly before the processed positions (never the
//!   active one); segments roll at 64 MiB.
//! * **Recovery**: opening scans only the last segment of each partition, cuts off a torn tail, and drops the last
//!   group if not every partition it spans committed it ([`writer::settle_last_group`]).

mod faults;
mod reader;
mod segment;
mod writer;

#[cfg(test)]
mod tests;

use crate::{
    ConsumerEvent, ConsumerSettings, HighWatermarks, LogConfig, LogError, Offset, Partition, PositionStore, Record,
};
use reader::{ReaderControl, ReaderItem};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};
use writer::{Append, PartitionWriter, TopicWriter, WriterMessage};

/// Segments roll once they reach this size.
const SEGMENT_BYTES: u64 = 64 << 20;
/// Appends queued for a topic's writer; a full queue makes `send` wait (backpressure on ingest).
const WRITER_QUEUE: usize = 1024;
/// Most partitions a topic may have (the gateway observation id encodes 2^22).
const MAX_PARTITIONS: i32 = 1 << 16;
const LOCK_FILE: &str = "lock";
const META_FILE: &str = "meta.json";

/// The embedded log. Cheap to clone; the directory stays locked until the last clone, producer and consumer are
/// dropped.
#[derive(Debug, Clone)]
pub struct EmbeddedLog {
    inner: Arc<LogInner>,
}

#[derive(Debug)]
struct LogInner {
    dir: PathBuf,
    /// Partitions of topics created by this process.
    partitions: i32,
    segment_bytes: u64,
    topics: Mutex<HashMap<String, Arc<Topic>>>,
    /// Declared last: dropped (unlocked) after the topics' writers stopped.
    _lock: File,
}

/// The persisted description of a topic (`<topic>/meta.json`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "version", deny_unknown_fields)]
enum TopicMeta {
    #[serde(rename = "1")]
    V1 { partitions: i32 },
}

/// What readers may read of a partition: published by the writer after every group commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DurableEnd {
    /// The high watermark: the offset the next record will get.
    next_offset: Offset,
    /// Base offset of the segment being appended to.
    active_base: Offset,
    /// Durable bytes of that segment.
    active_len: u64,
}

/// The part of a topic its writer and readers share.
#[derive(Debug)]
struct TopicShared {
    name: String,
    dir: PathBuf,
    partitions: i32,
    state: Mutex<SharedState>,
    /// Signalled whenever `state.generation` moves.
    changed: Condvar,
    /// Fsyncs and truncations of the partitions' active segments go through it (failures injected in tests).
    faults: faults::IoFaults,
}

#[derive(Debug)]
struct SharedState {
    /// Bumped by every publication, seek and consumer shutdown: readers sleep until it moves.
    generation: u64,
    ends: Vec<DurableEnd>,
}

impl TopicShared {
    fn partition_dir(&self, partition: Partition) -> PathBuf {
        self.dir.join(partition.to_string())
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, SharedState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The generation and the durable ends of every partition.
    fn snapshot(&self) -> (u64, Vec<DurableEnd>) {
        let state = self.lock_state();
        (state.generation, state.ends.clone())
    }

    /// Publishes new durable ends and wakes the readers.
    fn publish(&self, ends: impl Iterator<Item = DurableEnd>) {
        let mut state = self.lock_state();
        state.ends.clear();
        state.ends.extend(ends);
        state.generation += 1;
        self.changed.notify_all();
    }

    /// Wakes the readers (a seek, a consumer going away).
    fn wake(&self) {
        self.lock_state().generation += 1;
        self.changed.notify_all();
    }

    /// Sleeps until the generation moves past `seen` or `deadline` passes.
    fn wait_for_change(&self, seen: u64, deadline: Option<Instant>) {
        let mut state = self.lock_state();
        while state.generation == seen {
            state = match deadline {
                None => self.changed.wait(state).unwrap_or_else(PoisonError::into_inner),
                Some(deadline) => {
                    let Some(left) = deadline.checked_duration_since(Instant::now()).filter(|left| !left.is_zero())
                    else {
                        return;
                    };
                    self.changed.wait_timeout(state, left).unwrap_or_else(PoisonError::into_inner).0
                }
            };
        }
    }
}

/// An open topic.
#[derive(Debug)]
struct Topic {
    shared: Arc<TopicShared>,
    /// `Some` until dropped (dropping it stops the writer).
    writer_queue: Option<mpsc::Sender<WriterMessage>>,
    writer_thread: Option<JoinHandle<()>>,
    /// Picks the partition of records without a key.
    round_robin: AtomicU32,
}

impl Topic {
    fn queue(&self) -> Result<&mpsc::Sender<WriterMessage>, LogError> {
        self.writer_queue.as_ref().ok_or_else(|| LogError::Write("the log writer stopped".into()))
    }

    fn partition_index(&self, partition: Partition) -> Result<usize, LogError> {
        usize::try_from(partition).ok().filter(|_| partition < self.shared.partitions).ok_or_else(|| {
            LogError::Config(format!(
                "topic `{}` has no partition {partition} (it has {})",
                self.shared.name, self.shared.partitions
            ))
        })
    }
}

impl Drop for Topic {
    fn drop(&mut self) {
        // Closing the queue ends the writer once it has finished what is queued; wait for it so that the files are
        // closed before the directory lock is released.
        drop(self.writer_queue.take());
        if let Some(thread) = self.writer_thread.take()
            && thread.join().is_err()
        {
            tracing::error!(topic = %self.shared.name, "the log writer thread panicked");
        }
    }
}

impl EmbeddedLog {
    /// Opens (creating if needed) the log in [`LogConfig::embedded_dir`], locks it against other processes and
    /// recovers the topics in it.
    pub fn open(config: &LogConfig) -> Result<Self, LogError> {
        Self::open_with_segment_bytes(config, SEGMENT_BYTES)
    }

    fn open_with_segment_bytes(config: &LogConfig, segment_bytes: u64) -> Result<Self, LogError> {
        let dir = config.embedded_dir.clone();
        if !(1..=MAX_PARTITIONS).contains(&config.partitions) {
            return Err(LogError::Config(format!(
                "the embedded log needs 1 to {MAX_PARTITIONS} partitions, not {}",
                config.partitions
            )));
        }
        fs::create_dir_all(&dir).map_err(|error| unavailable(&dir, &error))?;
        let lock = lock_directory(&dir)?;
        let inner = LogInner {
            dir: dir.clone(),
            partitions: config.partitions,
            segment_bytes,
            topics: Mutex::new(HashMap::new()),
            _lock: lock,
        };
        let started = Instant::now();
        {
            let mut topics = inner.lock_topics();
            for entry in fs::read_dir(&dir).map_err(|error| unavailable(&dir, &error))? {
                let entry = entry.map_err(|error| unavailable(&dir, &error))?;
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
                if validate_topic_name(&name).is_err() || !entry.path().join(META_FILE).is_file() {
                    continue;
                }
                let topic = inner.open_topic(&name, false)?;
                topics.insert(name, Arc::new(topic));
            }
            tracing::info!(
                dir = %dir.display(),
                topics = topics.len(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "opened the embedded log"
            );
        }
        Ok(Self { inner: Arc::new(inner) })
    }

    /// Creates `topic` with the configured number of partitions unless it exists (then its stored partition count
    /// stays, whatever is configured now).
    pub fn ensure_topic(&self, topic: &str) -> Result<(), LogError> {
        validate_topic_name(topic)?;
        let mut topics = self.inner.lock_topics();
        if !topics.contains_key(topic) {
            let opened = self.inner.open_topic(topic, true)?;
            topics.insert(topic.to_owned(), Arc::new(opened));
        }
        Ok(())
    }

    /// A producer (cheap to clone).
    pub fn producer(&self) -> EmbeddedProducer {
        EmbeddedProducer { inner: Arc::clone(&self.inner) }
    }

    /// A consumer of every partition of `topic`, starting where `positions` says (its first event is
    /// [`ConsumerEvent::Assigned`]).
    pub fn consumer(
        &self,
        topic: &str,
        positions: Arc<dyn PositionStore>,
        settings: ConsumerSettings,
    ) -> Result<EmbeddedConsumer, LogError> {
        let topic = self.inner.topic(topic)?;
        let partitions = usize::try_from(topic.shared.partitions).unwrap_or(0);
        let control = Arc::new(ReaderControl::new(partitions));
        // Bounded: a caller that falls behind stops the reader (backpressure), as a full channel pauses Kafka polls.
        let (items, receiver) = mpsc::channel(settings.buffered_batches.max(1));
        let shared = Arc::clone(&topic.shared);
        let thread_control = Arc::clone(&control);
        std::thread::Builder::new()
            .name("jhe-log-reader".into())
            .spawn(move || reader::run(shared, thread_control, positions, settings, items))
            .map_err(|error| LogError::Unavailable(format!("cannot start the log reader thread: {error}")))?;
        Ok(EmbeddedConsumer { _log: Arc::clone(&self.inner), topic, control, items: receiver })
    }

    /// The next offset to be written, per partition of `topic`.
    pub fn high_watermarks(&self, topic: &str) -> Result<HighWatermarks, LogError> {
        let topic = self.inner.topic(topic)?;
        let (_, ends) = topic.shared.snapshot();
        Ok((0..).zip(ends).map(|(partition, end)| (partition, end.next_offset)).collect())
    }
}

/// Test support: failure injection.
#[cfg(feature = "fault-injection")]
impl EmbeddedLog {
    /// Makes the next `count` fsyncs and truncations of the active segment of `partition` of `topic` fail: an fsync
    /// reports failure after really syncing (the data may be on disk anyway), a truncation leaves the file as it is.
    /// Test support only: the `fault-injection` feature is off in the server.
    #[doc(hidden)]
    pub fn inject_io_failures(&self, topic: &str, partition: Partition, count: usize) -> Result<(), LogError> {
        let topic = self.inner.topic(topic)?;
        topic.partition_index(partition)?;
        topic.shared.faults.plan(partition, count);
        Ok(())
    }
}

impl LogInner {
    fn lock_topics(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Topic>>> {
        self.topics.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn topic(&self, name: &str) -> Result<Arc<Topic>, LogError> {
        self.lock_topics().get(name).map(Arc::clone).ok_or_else(|| {
            LogError::Config(format!("unknown topic `{name}` in the embedded log (ensure_topic creates it)"))
        })
    }

    /// Opens the topic `name` (recovering each partition) and starts its writer. With `create`, a missing topic is
    /// created with the configured partition count.
    fn open_topic(&self, name: &str, create: bool) -> Result<Topic, LogError> {
        let topic_dir = self.dir.join(name);
        let meta_path = topic_dir.join(META_FILE);
        let stored = match fs::read(&meta_path) {
            Ok(bytes) => match serde_json::from_slice::<TopicMeta>(&bytes) {
                Ok(TopicMeta::V1 { partitions }) if (1..=MAX_PARTITIONS).contains(&partitions) => Some(partitions),
                Ok(TopicMeta::V1 { partitions }) => {
                    return Err(LogError::Config(format!(
                        "`{}` declares {partitions} partitions",
                        meta_path.display()
                    )));
                }
                Err(error) => {
                    return Err(LogError::Config(format!("cannot parse `{}`: {error}", meta_path.display())));
                }
            },
            Err(error) if error.kind() == io::ErrorKind::NotFound && create => None,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Err(LogError::Config(format!("unknown topic `{name}` in the embedded log")));
            }
            Err(error) => return Err(unavailable(&meta_path, &error)),
        };
        let partitions = stored.unwrap_or(self.partitions);
        if partitions != self.partitions {
            tracing::warn!(
                topic = name,
                stored_partitions = partitions,
                configured_partitions = self.partitions,
                "the embedded log keeps the partition count a topic was created with"
            );
        }

        let shared_dir = topic_dir.clone();
        let mut writers = Vec::new();
        for partition in 0..partitions {
            let partition_dir = shared_dir.join(partition.to_string());
            let writer = PartitionWriter::open(partition, partition_dir.clone())
                .map_err(|error| unavailable(&partition_dir, &error))?;
            writers.push(writer);
        }
        let next_group = writer::settle_last_group(&mut writers).map_err(|error| unavailable(&topic_dir, &error))?;
        if stored.is_none() {
            // Written last: a topic without its meta file is not a topic yet, and is created again.
            write_meta(&topic_dir, &TopicMeta::V1 { partitions }).map_err(|error| unavailable(&meta_path, &error))?;
            segment::sync_dir(&self.dir).map_err(|error| unavailable(&self.dir, &error))?;
            tracing::info!(topic = name, partitions, "created a topic in the embedded log");
        }

        let shared = Arc::new(TopicShared {
            name: name.to_owned(),
            dir: topic_dir,
            partitions,
            state: Mutex::new(SharedState {
                generation: 0,
                ends: writers.iter().map(PartitionWriter::durable_end).collect(),
            }),
            changed: Condvar::new(),
            faults: faults::IoFaults::default(),
        });
        let (queue, messages) = mpsc::channel(WRITER_QUEUE);
        let writer = TopicWriter::new(Arc::clone(&shared), writers, self.segment_bytes, next_group);
        let thread = std::thread::Builder::new()
            .name("jhe-log-writer".into())
            .spawn(move || writer.run(messages))
            .map_err(|error| LogError::Unavailable(format!("cannot start the log writer thread: {error}")))?;
        Ok(Topic { shared, writer_queue: Some(queue), writer_thread: Some(thread), round_robin: AtomicU32::new(0) })
    }
}

/// Appends records to the embedded log. Cheap to clone.
#[derive(Debug, Clone)]
pub struct EmbeddedProducer {
    inner: Arc<LogInner>,
}

impl EmbeddedProducer {
    /// Appends `records` to `topic`; resolves once all of them are written and fsynced.
    pub async fn send(&self, topic: &str, records: Vec<Record>) -> Result<(), LogError> {
        if records.is_empty() {
            return Ok(());
        }
        let topic = self.inner.topic(topic)?;
        let partition_count = usize::try_from(topic.shared.partitions).unwrap_or(1).max(1);
        let mut by_partition: Vec<Vec<Record>> = (0..partition_count).map(|_| Vec::new()).collect();
        let mut keyless_partition = None;
        let mut bytes = 0;
        for record in records {
            let Some(framed) = segment::framed_len(&record) else {
                return Err(LogError::Write(format!(
                    "a record of {} bytes is larger than the embedded log's limit of {} bytes",
                    record.key.len() + record.value.len(),
                    segment::MAX_BODY_LEN
                )));
            };
            bytes += framed;
            let index = if record.key.is_empty() {
                // One partition per send (Kafka's sticky partitioner): one fsync instead of one per partition.
                *keyless_partition
                    .get_or_insert_with(|| topic.round_robin.fetch_add(1, Ordering::Relaxed) as usize % partition_count)
            } else {
                crc32fast::hash(&record.key) as usize % partition_count
            };
            by_partition[index].push(record);
        }
        let partitions = by_partition.into_iter().enumerate().filter(|(_, records)| !records.is_empty()).collect();
        let (done, acknowledged) = oneshot::channel();
        topic
            .queue()?
            .send(WriterMessage::Append(Append { partitions, bytes, done }))
            .await
            .map_err(|_| LogError::Write("the log writer stopped".into()))?;
        acknowledged.await.map_err(|_| LogError::Write("the log writer stopped before acknowledging".into()))?
    }
}

/// Reads every partition of a topic of the embedded log.
#[derive(Debug)]
pub struct EmbeddedConsumer {
    /// Keeps the log (and its lock) open while the consumer lives.
    _log: Arc<LogInner>,
    topic: Arc<Topic>,
    control: Arc<ReaderControl>,
    items: mpsc::Receiver<ReaderItem>,
}

impl EmbeddedConsumer {
    /// The next event: [`ConsumerEvent::Assigned`] first, then non-empty batches of records; `None` after the
    /// reader stopped (an error was returned before).
    pub async fn next(&mut self) -> Option<Result<ConsumerEvent, LogError>> {
        loop {
            match self.items.recv().await? {
                ReaderItem::Assigned(assigned) => return Some(Ok(ConsumerEvent::Assigned(assigned))),
                ReaderItem::Failed(error) => return Some(Err(error)),
                ReaderItem::Records(tagged) => {
                    // Drop records of partitions sought since they were read.
                    let records: Vec<_> = tagged
                        .into_iter()
                        .filter(|(epoch, record)| {
                            usize::try_from(record.partition).is_ok_and(|index| self.control.is_current(index, *epoch))
                        })
                        .map(|(_, record)| record)
                        .collect();
                    if !records.is_empty() {
                        return Some(Ok(ConsumerEvent::Records(records)));
                    }
                }
            }
        }
    }

    /// Restarts `partition` at `next_offset`; records of it read before are not delivered any more.
    pub fn seek(&self, partition: Partition, next_offset: Offset) -> Result<(), LogError> {
        let index = self.topic.partition_index(partition)?;
        if next_offset < 0 {
            return Err(LogError::Config(format!("cannot seek partition {partition} to offset {next_offset}")));
        }
        self.control.seek(index, next_offset);
        self.topic.shared.wake();
        Ok(())
    }

    /// Everything before these positions is durably processed: segments wholly before them may be deleted.
    pub fn processed(&self, positions: &[(Partition, Offset)]) {
        let positions: Vec<_> =
            positions.iter().copied().filter(|&(partition, _)| self.topic.partition_index(partition).is_ok()).collect();
        let Ok(queue) = self.topic.queue() else { return };
        if queue.try_send(WriterMessage::Retain(positions)).is_err() {
            // Only a hint: the next call deletes what this one would have.
            tracing::debug!(topic = %self.topic.shared.name, "log writer busy: retention postponed");
        }
    }
}

impl Drop for EmbeddedConsumer {
    fn drop(&mut self) {
        self.control.close();
        self.topic.shared.wake();
    }
}

/// Kafka's rule for topic names, which also keeps them safe as directory names.
fn validate_topic_name(name: &str) -> Result<(), LogError> {
    let valid = !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(LogError::Config(format!("invalid topic name `{name}` (1-249 of a-z, A-Z, 0-9, `.`, `_`, `-`)")))
    }
}

/// Takes the exclusive lock of the log directory (released when the returned file is closed).
fn lock_directory(dir: &Path) -> Result<File, LogError> {
    let path = dir.join(LOCK_FILE);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|error| unavailable(&path, &error))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let holder = if holder.is_empty() { String::new() } else { format!(" (pid {holder})") };
            return Err(LogError::Config(format!(
                "the embedded log `{}` is in use by another process{holder}; only one process may open it",
                dir.display()
            )));
        }
        Err(TryLockError::Error(error)) => return Err(unavailable(&path, &error)),
    }
    // For the message above, in the next process that tries.
    let written = file.set_len(0).and_then(|()| file.write_all(std::process::id().to_string().as_bytes()));
    if let Err(error) = written {
        tracing::debug!(%error, "could not record the pid in the log lock file");
    }
    Ok(file)
}

/// Writes a topic's meta file atomically (temporary file, fsync, rename, fsync of the directory).
fn write_meta(topic_dir: &Path, meta: &TopicMeta) -> io::Result<()> {
    let bytes = serde_json::to_vec(meta).map_err(io::Error::other)?;
    let temporary = topic_dir.join(format!("{META_FILE}.tmp"));
    let mut file = File::create(&temporary)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    fs::rename(&temporary, topic_dir.join(META_FILE))?;
    segment::sync_dir(topic_dir)
}

fn unavailable(path: &Path, error: &io::Error) -> LogError {
    LogError::Unavailable(format!("embedded log `{}`: {error}", path.display()))
}
