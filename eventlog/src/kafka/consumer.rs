//! The Kafka consumer: a `BaseConsumer` owned by one dedicated thread (the "poll thread").
//!
//! * **Positions**: the rebalance callback (run by librdkafka inside `poll`, on the poll thread) asks the caller's
//!   [`PositionStore`] where each assigned partition starts, assigns at exactly those offsets (a partition without a
//!   stored position starts at its low watermark) and reports [`ConsumerEvent::Assigned`]. If the store keeps
//!   failing, the consumer fails rather than start anywhere else. On revocation it reports
//!   [`ConsumerEvent::Revoked`] and unassigns (the eager `range` protocol: every revocation is complete).
//! * **Order and backpressure**: records are batched and sent over the same bounded channel as the rebalance
//!   events, so the caller sees everything in order. `blocking_send` on a full channel stops polling.
//! * **Seek**: [`KafkaConsumer::seek`] bumps the partition's epoch and hands the seek to the poll thread; each
//!   batch carries the epoch its records were read under, and [`KafkaConsumer::next`] drops records of an older
//!   epoch (they were buffered before the seek).
//! * **Offsets committed to Kafka** ([`KafkaConsumer::processed`]) are asynchronous and only a hint.

use crate::{Consumed, ConsumerEvent, ConsumerSettings, LogError, Offset, Partition, PositionStore};
use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{BorrowedMessage, Headers as _, Message as _};
use rdkafka::topic_partition_list::{Offset as KafkaOffset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, mpsc as std_mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Longest single `poll`: how soon the poll thread notices commands and a stop request.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Pauses between attempts to read positions from the store during a rebalance (then the consumer fails).
const POSITION_RETRY_DELAYS: &[Duration] =
    &[Duration::from_millis(500), Duration::from_secs(1), Duration::from_secs(2)];
/// Timeout of a low-watermark request during a rebalance.
const WATERMARK_TIMEOUT: Duration = Duration::from_secs(5);
/// Timeout of one seek (librdkafka waits until no message of the old position can be returned any more).
const SEEK_TIMEOUT: Duration = Duration::from_secs(5);
/// Failed seek attempts (one per poll loop) before the consumer fails.
const MAX_SEEK_ATTEMPTS: u32 = 20;
/// How long dropping a consumer waits for its poll thread to leave the group.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the poll thread sends to the consumer.
enum Item {
    /// `Assigned` or `Revoked`.
    Event(ConsumerEvent),
    /// Records, with the epoch each of their partitions was read under.
    Records { records: Vec<Consumed>, epochs: Vec<(Partition, u64)> },
    /// The poll loop stopped with this error.
    Failed(LogError),
}

/// What the consumer asks of the poll thread.
enum Command {
    Seek { partition: Partition, offset: Offset, epoch: u64 },
    Commit(Vec<(Partition, Offset)>),
}

/// Seek epochs per partition, bumped by [`KafkaConsumer::seek`]; shared by the consumer and the poll thread.
type Epochs = Arc<Mutex<HashMap<Partition, u64>>>;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A consumer of one topic in a consumer group (see the module docs).
pub struct KafkaConsumer {
    topic: String,
    events: mpsc::Receiver<Item>,
    commands: std_mpsc::Sender<Command>,
    epochs: Epochs,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for KafkaConsumer {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.debug_struct("KafkaConsumer").field("topic", &self.topic).finish_non_exhaustive()
    }
}

impl KafkaConsumer {
    /// Creates the consumer from `config` (with `group.id`), subscribes to `topic` and starts the poll thread.
    pub(super) fn start(
        config: ClientConfig,
        topic: &str,
        positions: Arc<dyn PositionStore>,
        settings: ConsumerSettings,
    ) -> Result<Self, LogError> {
        let (event_sender, events) = mpsc::channel(settings.buffered_batches.max(1));
        let epochs: Epochs = Arc::default();
        let context = PollContext {
            topic: topic.to_owned(),
            positions,
            events: event_sender,
            epochs: Arc::clone(&epochs),
            max_batch_records: settings.max_batch_records.max(1),
            state: Mutex::default(),
        };
        let consumer: BaseConsumer<PollContext> = config
            .create_with_context(context)
            .map_err(|error| LogError::Config(format!("Kafka consumer: {error}")))?;
        consumer
            .subscribe(&[topic])
            .map_err(|error| LogError::Config(format!("cannot subscribe to Kafka topic {topic}: {error}")))?;
        let (commands, command_receiver) = std_mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let poll_loop = PollLoop {
            consumer,
            commands: command_receiver,
            stop: Arc::clone(&stop),
            max_batch_wait: settings.max_batch_wait,
        };
        let thread = std::thread::Builder::new()
            .name(format!("kafka-poll-{topic}"))
            .spawn(move || poll_loop.run())
            .map_err(|error| LogError::Unavailable(format!("cannot start the Kafka poll thread: {error}")))?;
        Ok(Self { topic: topic.to_owned(), events, commands, epochs, stop, thread: Some(thread) })
    }

    /// The next event; `None` once the poll loop stopped (after a [`LogError::Closed`] if it failed).
    pub async fn next(&mut self) -> Option<Result<ConsumerEvent, LogError>> {
        loop {
            match self.events.recv().await? {
                Item::Event(event) => return Some(Ok(event)),
                Item::Failed(error) => return Some(Err(error)),
                Item::Records { mut records, epochs } => {
                    {
                        let current = lock(&self.epochs);
                        let stale: HashSet<Partition> = epochs
                            .iter()
                            .filter(|(partition, epoch)| current.get(partition).copied().unwrap_or(0) > *epoch)
                            .map(|(partition, _)| *partition)
                            .collect();
                        if !stale.is_empty() {
                            records.retain(|record| !stale.contains(&record.partition));
                        }
                    }
                    if !records.is_empty() {
                        return Some(Ok(ConsumerEvent::Records(records)));
                    }
                }
            }
        }
    }

    /// Restarts `partition` at `next_offset`; records of it already buffered are dropped. A partition that is not
    /// assigned (any more) is ignored: its next owner starts at the stored position.
    pub fn seek(&self, partition: Partition, next_offset: Offset) -> Result<(), LogError> {
        if next_offset < 0 {
            return Err(LogError::Config(format!("cannot seek {}[{partition}] to {next_offset}", self.topic)));
        }
        let mut epochs = lock(&self.epochs);
        let epoch = epochs.entry(partition).or_insert(0);
        *epoch += 1;
        // sent under the lock, so commands reach the poll thread in epoch order
        self.commands
            .send(Command::Seek { partition, offset: next_offset, epoch: *epoch })
            .map_err(|_| LogError::Closed(format!("the Kafka consumer of {} has stopped", self.topic)))
    }

    /// Commits `positions` to Kafka asynchronously (a hint for lag dashboards; failures are only logged).
    pub fn processed(&self, positions: &[(Partition, Offset)]) {
        if positions.is_empty() {
            return;
        }
        // a stopped consumer has nothing to commit to
        let _ = self.commands.send(Command::Commit(positions.to_vec()));
    }
}

impl Drop for KafkaConsumer {
    /// Stops the poll thread, which closes the consumer (leaving the group); waits at most 10 s for that.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // wakes a poll thread blocked on a full channel
        self.events.close();
        let Some(thread) = self.thread.take() else { return };
        let deadline = Instant::now() + CLOSE_TIMEOUT;
        while !thread.is_finished() {
            if Instant::now() >= deadline {
                tracing::warn!(topic = %self.topic, "the Kafka poll thread did not stop within 10 s; leaving it");
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if thread.join().is_err() {
            tracing::error!(topic = %self.topic, "the Kafka poll thread panicked");
        }
    }
}

/// The consumer context: rebalance callbacks and the poll thread's state. Only the poll thread touches `state`
/// (the mutex makes the context `Sync`, as librdkafka contexts must be).
struct PollContext {
    topic: String,
    positions: Arc<dyn PositionStore>,
    events: mpsc::Sender<Item>,
    epochs: Epochs,
    max_batch_records: usize,
    state: Mutex<PollState>,
}

#[derive(Default)]
struct PollState {
    /// Records read but not yet sent.
    batch: Vec<Consumed>,
    /// When the first record of `batch` was read.
    batch_started: Option<Instant>,
    /// Partitions assigned to this consumer.
    assigned: HashSet<Partition>,
    /// The epoch records of each partition are read under now.
    applied_epochs: HashMap<Partition, u64>,
    /// Seeks not applied yet (librdkafka refused; retried every loop). Records of these partitions are dropped.
    pending_seeks: HashMap<Partition, PendingSeek>,
    /// Set when the consumer must stop: sent to the caller as [`Item::Failed`].
    failure: Option<LogError>,
    /// The caller dropped the consumer.
    closed: bool,
}

struct PendingSeek {
    offset: Offset,
    epoch: u64,
    attempts: u32,
}

impl PollState {
    fn take_batch(&mut self) -> Option<Item> {
        self.batch_started = None;
        if self.batch.is_empty() {
            return None;
        }
        let records = std::mem::take(&mut self.batch);
        let mut epochs: Vec<(Partition, u64)> = Vec::new();
        for record in &records {
            if !epochs.iter().any(|(partition, _)| *partition == record.partition) {
                let epoch = self.applied_epochs.get(&record.partition).copied().unwrap_or(0);
                epochs.push((record.partition, epoch));
            }
        }
        Some(Item::Records { records, epochs })
    }
}

impl PollContext {
    /// Sends `item`, waiting while the channel is full; marks the state closed when the caller is gone.
    fn send(&self, state: &mut PollState, item: Item) {
        if state.closed {
            return;
        }
        if self.events.blocking_send(item).is_err() {
            state.closed = true;
        }
    }

    fn flush_batch(&self, state: &mut PollState) {
        if let Some(item) = state.take_batch() {
            self.send(state, item);
        }
    }

    fn fail(&self, state: &mut PollState, message: String) {
        tracing::error!(topic = %self.topic, "Kafka consumer stops: {message}");
        if state.failure.is_none() {
            state.failure = Some(LogError::Closed(message));
        }
    }

    /// Adds a polled record to the batch (sending the batch when it is full).
    fn push(&self, message: &BorrowedMessage<'_>) {
        let mut state = lock(&self.state);
        if state.pending_seeks.contains_key(&message.partition()) || !state.assigned.contains(&message.partition()) {
            return;
        }
        if state.batch.is_empty() {
            state.batch_started = Some(Instant::now());
        }
        state.batch.push(consumed(message));
        if state.batch.len() >= self.max_batch_records {
            self.flush_batch(&mut state);
        }
    }

    /// Sends the batch if it has waited `max_wait`; returns how long `poll` may block.
    fn flush_if_due(&self, max_wait: Duration) -> Duration {
        let mut state = lock(&self.state);
        let Some(started) = state.batch_started else { return POLL_INTERVAL };
        let waited = started.elapsed();
        if waited >= max_wait {
            self.flush_batch(&mut state);
            return POLL_INTERVAL;
        }
        (max_wait - waited).min(POLL_INTERVAL)
    }

    /// Positions for `partitions` from the store; `None` (never processed) becomes the low watermark.
    fn resolve_positions(
        &self,
        consumer: &BaseConsumer<Self>,
        partitions: &[Partition],
    ) -> Result<Vec<Offset>, String> {
        let stored = self.positions.positions(&self.topic, partitions)?;
        if stored.len() != partitions.len() {
            return Err(format!(
                "the position store returned {} positions for {} partitions",
                stored.len(),
                partitions.len()
            ));
        }
        partitions
            .iter()
            .zip(stored)
            .map(|(&partition, position)| match position {
                Some(offset) if offset >= 0 => Ok(offset),
                Some(offset) => Err(format!("stored position {offset} of partition {partition} is negative")),
                None => consumer
                    .fetch_watermarks(&self.topic, partition, WATERMARK_TIMEOUT)
                    .map(|(low, _high)| low.max(0))
                    .map_err(|error| format!("low watermark of partition {partition}: {error}")),
            })
            .collect()
    }

    fn on_assign(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        let mut state = lock(&self.state);
        if state.failure.is_some() || state.closed {
            return;
        }
        let mut partitions: Vec<Partition> =
            tpl.elements_for_topic(&self.topic).iter().map(|element| element.partition()).collect();
        partitions.sort_unstable();
        let mut attempt = 0;
        let offsets = loop {
            match self.resolve_positions(consumer, &partitions) {
                Ok(offsets) => break offsets,
                Err(error) => match POSITION_RETRY_DELAYS.get(attempt) {
                    Some(delay) => {
                        tracing::warn!(topic = %self.topic, ?partitions, "cannot read positions (retrying): {error}");
                        std::thread::sleep(*delay);
                        attempt += 1;
                    }
                    None => {
                        let attempts = attempt + 1;
                        self.fail(
                            &mut state,
                            format!("cannot read the positions of {partitions:?} ({attempts} attempts): {error}"),
                        );
                        return;
                    }
                },
            }
        };
        for (&partition, &offset) in partitions.iter().zip(&offsets) {
            if let Err(error) = tpl.set_partition_offset(&self.topic, partition, KafkaOffset::Offset(offset)) {
                self.fail(&mut state, format!("cannot set the offset of partition {partition}: {error}"));
                return;
            }
        }
        if let Err(error) = consumer.assign(tpl) {
            self.fail(&mut state, format!("cannot assign {partitions:?}: {error}"));
            return;
        }
        {
            // Seeks issued before this point were aimed at the previous assignment: the new one supersedes them.
            let epochs = lock(&self.epochs);
            for &partition in &partitions {
                state.applied_epochs.insert(partition, epochs.get(&partition).copied().unwrap_or(0));
                state.pending_seeks.remove(&partition);
            }
        }
        state.assigned.extend(partitions.iter().copied());
        tracing::info!(topic = %self.topic, ?partitions, ?offsets, "assigned Kafka partitions");
        self.flush_batch(&mut state);
        self.send(&mut state, Item::Event(ConsumerEvent::Assigned(partitions.into_iter().zip(offsets).collect())));
    }

    fn on_revoke(&self, consumer: &BaseConsumer<Self>) {
        let mut state = lock(&self.state);
        let mut partitions: Vec<Partition> = state.assigned.drain().collect();
        partitions.sort_unstable();
        state.pending_seeks.clear();
        tracing::info!(topic = %self.topic, ?partitions, "Kafka partitions revoked");
        // records read before the revocation go first, then the event
        self.flush_batch(&mut state);
        if !partitions.is_empty() {
            self.send(&mut state, Item::Event(ConsumerEvent::Revoked(partitions)));
        }
        if let Err(error) = consumer.unassign() {
            tracing::warn!(topic = %self.topic, "unassign failed: {error}");
        }
    }

    /// Applies a seek command (or queues it until librdkafka accepts it).
    fn seek(&self, consumer: &BaseConsumer<Self>, partition: Partition, offset: Offset, epoch: u64) {
        let mut state = lock(&self.state);
        if epoch <= state.applied_epochs.get(&partition).copied().unwrap_or(0) {
            return; // issued before the partition's latest assignment
        }
        if !state.assigned.contains(&partition) {
            tracing::debug!(topic = %self.topic, partition, offset, "seek of a partition not assigned here: ignored");
            return;
        }
        state.pending_seeks.insert(partition, PendingSeek { offset, epoch, attempts: 0 });
        // records read before the seek must not be delivered after it
        state.batch.retain(|record| record.partition != partition);
        self.apply_seeks(consumer, &mut state);
    }

    fn retry_seeks(&self, consumer: &BaseConsumer<Self>) {
        let mut state = lock(&self.state);
        if !state.pending_seeks.is_empty() {
            self.apply_seeks(consumer, &mut state);
        }
    }

    fn apply_seeks(&self, consumer: &BaseConsumer<Self>, state: &mut PollState) {
        let mut failed = None;
        let mut applied = Vec::new();
        for (&partition, pending) in &mut state.pending_seeks {
            match consumer.seek(&self.topic, partition, KafkaOffset::Offset(pending.offset), SEEK_TIMEOUT) {
                Ok(()) => applied.push((partition, pending.epoch)),
                Err(error) => {
                    pending.attempts += 1;
                    tracing::debug!(topic = %self.topic, partition, attempt = pending.attempts, "seek failed: {error}");
                    if pending.attempts >= MAX_SEEK_ATTEMPTS {
                        failed = Some(format!("cannot seek partition {partition} to {}: {error}", pending.offset));
                    }
                }
            }
        }
        for (partition, epoch) in applied {
            state.pending_seeks.remove(&partition);
            state.applied_epochs.insert(partition, epoch);
        }
        if let Some(message) = failed {
            self.fail(state, message);
        }
    }

    fn commit(&self, consumer: &BaseConsumer<Self>, positions: &[(Partition, Offset)], mode: CommitMode) {
        let state = lock(&self.state);
        let mut tpl = TopicPartitionList::with_capacity(positions.len());
        for &(partition, offset) in positions {
            if state.assigned.contains(&partition) && offset >= 0 {
                // add_partition_offset only fails for offsets librdkafka cannot represent, excluded above
                let _ = tpl.add_partition_offset(&self.topic, partition, KafkaOffset::Offset(offset));
            }
        }
        drop(state);
        if tpl.count() > 0
            && let Err(error) = consumer.commit(&tpl, mode)
        {
            tracing::debug!(topic = %self.topic, "offset commit (hint) failed: {error}");
        }
    }
}

impl ClientContext for PollContext {}

impl ConsumerContext for PollContext {
    fn rebalance(&self, base_consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => self.on_assign(base_consumer, tpl),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => self.on_revoke(base_consumer),
            other => {
                tracing::error!(topic = %self.topic, "rebalance error {other:?}: dropping the assignment");
                self.on_revoke(base_consumer);
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(error) = result {
            tracing::debug!(topic = %self.topic, "offset commit (hint) failed: {error}");
        }
    }
}

/// The poll thread.
struct PollLoop {
    consumer: BaseConsumer<PollContext>,
    commands: std_mpsc::Receiver<Command>,
    stop: Arc<AtomicBool>,
    max_batch_wait: Duration,
}

impl PollLoop {
    fn run(self) {
        let context = Arc::clone(self.consumer.context());
        let mut poll_timeout = POLL_INTERVAL;
        while !self.stop.load(Ordering::Relaxed) {
            if !self.handle_commands() {
                break;
            }
            context.retry_seeks(&self.consumer);
            {
                let mut state = lock(&context.state);
                if state.closed {
                    break;
                }
                if let Some(error) = state.failure.take() {
                    context.flush_batch(&mut state);
                    context.send(&mut state, Item::Failed(error));
                    // nothing after the failure (closing the consumer below revokes the assignment)
                    state.closed = true;
                    break;
                }
            }
            match self.consumer.poll(poll_timeout) {
                None => {}
                Some(Ok(message)) => context.push(&message),
                Some(Err(KafkaError::MessageConsumptionFatal(code))) => {
                    context.fail(&mut lock(&context.state), format!("fatal consumer error: {code}"));
                }
                Some(Err(error)) => tracing::warn!(topic = %context.topic, "Kafka consumer error: {error}"),
            }
            poll_timeout = context.flush_if_due(self.max_batch_wait);
        }
        // the offsets the caller reported last go to Kafka before the consumer leaves the group
        while let Ok(command) = self.commands.try_recv() {
            if let Command::Commit(positions) = command {
                context.commit(&self.consumer, &positions, CommitMode::Sync);
            }
        }
        tracing::debug!(topic = %context.topic, "Kafka poll thread stops; closing the consumer");
        // dropping the consumer closes it: revokes the assignment (our callback sends nothing to a closed channel)
        // and leaves the group
        drop(self.consumer);
    }

    /// Runs queued commands; `false` when the consumer handle is gone.
    fn handle_commands(&self) -> bool {
        loop {
            match self.commands.try_recv() {
                Ok(Command::Seek { partition, offset, epoch }) => {
                    self.consumer.context().seek(&self.consumer, partition, offset, epoch);
                }
                Ok(Command::Commit(positions)) => {
                    self.consumer.context().commit(&self.consumer, &positions, CommitMode::Async);
                }
                Err(std_mpsc::TryRecvError::Empty) => return true,
                Err(std_mpsc::TryRecvError::Disconnected) => return false,
            }
        }
    }
}

fn consumed(message: &BorrowedMessage<'_>) -> Consumed {
    let headers = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|header| (header.key.to_owned(), header.value.map(<[u8]>::to_vec).unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    Consumed {
        partition: message.partition(),
        offset: message.offset(),
        key: message.key().map(<[u8]>::to_vec),
        value: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
        headers,
        timestamp_millis: message.timestamp().to_millis(),
    }
}
