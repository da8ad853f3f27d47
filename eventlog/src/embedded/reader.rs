//! The reader of one consumer: a dedicated thread that tails every partition of a topic.
//!
//! It asks the [`PositionStore`] where to start (a blocking call, fine on this thread), reports the assignment, then
//! reads records up to each partition's durable end (published by the writer once a group is committed; group
//! trailers are skipped), cuts batches by count or by [`ConsumerSettings::max_batch_wait`] and hands them over
//! through a bounded channel: when the caller falls behind, the channel fills and the thread blocks (backpressure).
//! With nothing to read it sleeps on the topic's condition variable until the writer publishes, a seek arrives or
//! the consumer is dropped.

use super::segment::{self, FrameReader, FrameStatus};
use super::{DurableEnd, TopicShared};
use crate::{Consumed, ConsumerSettings, LogError, Offset, Partition, PositionStore};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;
use tokio::sync::mpsc;

/// What the reader thread hands to [`super::EmbeddedConsumer::next`].
#[derive(Debug)]
pub(super) enum ReaderItem {
    Assigned(Vec<(Partition, Offset)>),
    /// Records, each tagged with the seek epoch of its partition when it was read.
    Records(Vec<(u64, Consumed)>),
    /// The reader stopped.
    Failed(LogError),
}

/// Shared between a consumer handle and its reader thread.
#[derive(Debug)]
pub(super) struct ReaderControl {
    /// Per partition: bumped by every seek. Records read under an older epoch are dropped by `next()`.
    epochs: Vec<AtomicU64>,
    /// Per partition: a seek the reader has not applied yet, with its epoch.
    seeks: Mutex<Vec<Option<(Offset, u64)>>>,
    closed: AtomicBool,
}

impl ReaderControl {
    pub(super) fn new(partitions: usize) -> Self {
        Self {
            epochs: (0..partitions).map(|_| AtomicU64::new(0)).collect(),
            seeks: Mutex::new(vec![None; partitions]),
            closed: AtomicBool::new(false),
        }
    }

    /// Records a seek of partition index `index`; the caller wakes the reader.
    pub(super) fn seek(&self, index: usize, next_offset: Offset) {
        let mut seeks = self.seeks.lock().unwrap_or_else(PoisonError::into_inner);
        // Bumped under the lock so that the reader applies seeks in epoch order.
        let epoch = self.epochs[index].fetch_add(1, Ordering::SeqCst) + 1;
        seeks[index] = Some((next_offset, epoch));
    }

    /// Whether a record read under `epoch` of partition index `index` may still be delivered.
    pub(super) fn is_current(&self, index: usize, epoch: u64) -> bool {
        self.epochs.get(index).is_some_and(|current| current.load(Ordering::SeqCst) == epoch)
    }

    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    fn take_seeks(&self) -> Vec<(usize, Offset, u64)> {
        let mut seeks = self.seeks.lock().unwrap_or_else(PoisonError::into_inner);
        seeks
            .iter_mut()
            .enumerate()
            .filter_map(|(index, seek)| seek.take().map(|(offset, epoch)| (index, offset, epoch)))
            .collect()
    }
}

/// An open segment and where the reader is in it.
#[derive(Debug)]
struct SegmentCursor {
    base: Offset,
    frames: FrameReader,
}

/// The reading state of one partition.
#[derive(Debug)]
struct PartitionReader {
    partition: Partition,
    dir: PathBuf,
    /// The offset of the next record to deliver.
    next_offset: Offset,
    /// Seek epoch the records read now belong to.
    epoch: u64,
    /// `None` until needed, and after a seek.
    segment: Option<SegmentCursor>,
}

impl PartitionReader {
    /// Reads up to `budget` records below `end` into `batch`.
    fn read(&mut self, end: DurableEnd, budget: usize, batch: &mut Vec<(u64, Consumed)>) -> Result<(), LogError> {
        let mut budget = budget;
        while budget > 0 && self.next_offset < end.next_offset {
            if self.segment.is_none() {
                let cursor = self.locate(end)?;
                self.segment = Some(cursor);
            }
            let Self { partition, dir, next_offset, epoch, segment } = self;
            let Some(cursor) = segment.as_mut() else { continue };
            // The active segment is read only up to its durable length; sealed ones are complete.
            let limit = if cursor.base == end.active_base { end.active_len } else { u64::MAX };
            match cursor.frames.fill_frame(limit).map_err(|error| read_error(*partition, dir, &error))? {
                FrameStatus::Ready => {
                    let (crc, body) = cursor.frames.frame();
                    if crc32fast::hash(body) != crc {
                        return Err(corrupt(*partition, dir, *next_offset, "checksum mismatch"));
                    }
                    if segment::decode_trailer(body).is_some() {
                        // The end of a group: no record, no offset.
                        cursor.frames.consume();
                        continue;
                    }
                    let Some(record) = segment::decode_body(*partition, body) else {
                        return Err(corrupt(*partition, dir, *next_offset, "malformed record"));
                    };
                    if record.offset != *next_offset {
                        return Err(corrupt(*partition, dir, *next_offset, "offset out of sequence"));
                    }
                    cursor.frames.consume();
                    batch.push((*epoch, record));
                    *next_offset += 1;
                    budget -= 1;
                }
                FrameStatus::End if cursor.base < end.active_base => {
                    // A sealed segment ends where the next one starts.
                    *segment = None;
                }
                FrameStatus::End => {
                    return Err(corrupt(*partition, dir, *next_offset, "the segment ends before its durable length"));
                }
                FrameStatus::Torn(reason) => return Err(corrupt(*partition, dir, *next_offset, reason)),
            }
        }
        Ok(())
    }

    /// Opens the segment holding `next_offset` and moves to that record. A position before the oldest segment
    /// (deleted by retention) continues at the oldest record, as Kafka's `auto.offset.reset=earliest` does.
    fn locate(&mut self, end: DurableEnd) -> Result<SegmentCursor, LogError> {
        // Retention may delete a segment between listing and opening it: list again.
        for _ in 0..3 {
            let bases =
                segment::list_segments(&self.dir).map_err(|error| read_error(self.partition, &self.dir, &error))?;
            let base = match bases.iter().rposition(|&base| base <= self.next_offset) {
                Some(index) => bases[index],
                None => {
                    let Some(&oldest) = bases.first() else {
                        return Err(corrupt(self.partition, &self.dir, self.next_offset, "no segments"));
                    };
                    tracing::warn!(
                        partition = self.partition,
                        position = self.next_offset,
                        oldest_offset = oldest,
                        "position before the oldest retained record: continuing at the oldest"
                    );
                    self.next_offset = oldest;
                    oldest
                }
            };
            let mut frames = match segment::open_segment_for_reading(&self.dir, base) {
                Ok(frames) => frames,
                Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                Err(error) => return Err(read_error(self.partition, &self.dir, &error)),
            };
            let limit = if base == end.active_base { end.active_len } else { u64::MAX };
            loop {
                match frames.fill_frame(limit).map_err(|error| read_error(self.partition, &self.dir, &error))? {
                    FrameStatus::Ready => match frames.frame_offset() {
                        // Records before the position, and group trailers (whose offset field is negative).
                        Some(offset) if offset < self.next_offset => frames.consume(),
                        Some(offset) if offset == self.next_offset => return Ok(SegmentCursor { base, frames }),
                        _ => {
                            return Err(corrupt(self.partition, &self.dir, self.next_offset, "offset out of sequence"));
                        }
                    },
                    // The segment ended before the position: a newer segment appeared since the listing.
                    FrameStatus::End if base < end.active_base => break,
                    FrameStatus::End => {
                        return Err(corrupt(
                            self.partition,
                            &self.dir,
                            self.next_offset,
                            "the active segment ends before its durable length",
                        ));
                    }
                    FrameStatus::Torn(reason) => {
                        return Err(corrupt(self.partition, &self.dir, self.next_offset, reason));
                    }
                }
            }
        }
        Err(LogError::Unavailable(format!(
            "cannot find offset {} of partition {} in `{}`",
            self.next_offset,
            self.partition,
            self.dir.display()
        )))
    }
}

fn corrupt(partition: Partition, dir: &Path, offset: Offset, reason: &str) -> LogError {
    LogError::Unavailable(format!(
        "log partition {partition} in `{}` is corrupt at offset {offset}: {reason}",
        dir.display()
    ))
}

fn read_error(partition: Partition, dir: &Path, error: &io::Error) -> LogError {
    LogError::Unavailable(format!("cannot read log partition {partition} in `{}`: {error}", dir.display()))
}

/// The reader thread's body.
pub(super) fn run(
    shared: Arc<TopicShared>,
    control: Arc<ReaderControl>,
    positions: Arc<dyn PositionStore>,
    settings: ConsumerSettings,
    items: mpsc::Sender<ReaderItem>,
) {
    let result = read_loop(&shared, &control, positions.as_ref(), &settings, &items);
    if let Err(error) = result {
        tracing::error!(topic = %shared.name, %error, "embedded log consumer stopped");
        // The consumer may be gone already; then nobody needs to hear about it.
        let _ = items.blocking_send(ReaderItem::Failed(error));
    }
}

/// Why the loop ended without an error: the consumer was dropped.
struct Closed;

fn read_loop(
    shared: &TopicShared,
    control: &ReaderControl,
    positions: &dyn PositionStore,
    settings: &ConsumerSettings,
    items: &mpsc::Sender<ReaderItem>,
) -> Result<(), LogError> {
    let partitions: Vec<Partition> = (0..shared.partitions).collect();
    let stored = positions
        .positions(&shared.name, &partitions)
        .map_err(|error| LogError::Unavailable(format!("cannot read the stored positions: {error}")))?;
    if stored.len() != partitions.len() {
        return Err(LogError::Unavailable(format!(
            "the position store returned {} positions for {} partitions",
            stored.len(),
            partitions.len()
        )));
    }
    let (_, ends) = shared.snapshot();
    let mut readers: Vec<PartitionReader> = Vec::with_capacity(partitions.len());
    for (&partition, position) in partitions.iter().zip(&stored) {
        let next_offset = position.unwrap_or(0).max(0);
        let end = ends[readers.len()].next_offset;
        if next_offset > end {
            tracing::warn!(
                topic = %shared.name,
                partition,
                position = next_offset,
                high_watermark = end,
                "stored position is beyond the end of the log: waiting for the log to reach it"
            );
        }
        readers.push(PartitionReader {
            partition,
            dir: shared.partition_dir(partition),
            next_offset,
            epoch: 0,
            segment: None,
        });
    }
    let assigned = readers.iter().map(|reader| (reader.partition, reader.next_offset)).collect();
    if send(items, ReaderItem::Assigned(assigned)).is_err() {
        return Ok(());
    }

    let max_records = settings.max_batch_records.max(1);
    let mut batch: Vec<(u64, Consumed)> = Vec::new();
    let mut deadline: Option<Instant> = None;
    let mut first_partition = 0;
    loop {
        // Snapshot before looking at seeks and the closed flag: whatever changes after it bumps the generation and
        // cuts the wait below short, so no wake-up is lost.
        let (generation, ends) = shared.snapshot();
        if control.is_closed() {
            return Ok(());
        }
        let seeks = control.take_seeks();
        if !seeks.is_empty() {
            for (index, next_offset, epoch) in seeks {
                let reader = &mut readers[index];
                reader.next_offset = next_offset;
                reader.epoch = epoch;
                reader.segment = None;
            }
            batch.retain(|(epoch, record)| {
                usize::try_from(record.partition).is_ok_and(|index| readers[index].epoch == *epoch)
            });
            if batch.is_empty() {
                deadline = None;
            }
        }

        // Rotate the first partition so that a busy one cannot starve the others.
        for step in 0..readers.len() {
            let budget = max_records - batch.len();
            if budget == 0 {
                break;
            }
            let index = (first_partition + step) % readers.len();
            if let Err(error) = readers[index].read(ends[index], budget, &mut batch) {
                // Hand over the good records read before the failure first.
                if !batch.is_empty() {
                    let _ = send(items, ReaderItem::Records(std::mem::take(&mut batch)));
                }
                return Err(error);
            }
        }
        first_partition = (first_partition + 1) % readers.len().max(1);

        if !batch.is_empty() && deadline.is_none() {
            deadline = Some(Instant::now() + settings.max_batch_wait);
        }
        let due = deadline.is_some_and(|deadline| Instant::now() >= deadline);
        if batch.len() >= max_records || due {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(max_records.min(16_384)));
            deadline = None;
            if send(items, ReaderItem::Records(full)).is_err() {
                return Ok(());
            }
            continue;
        }
        shared.wait_for_change(generation, deadline);
    }
}

/// Hands an item over, blocking while the channel is full (backpressure).
fn send(items: &mpsc::Sender<ReaderItem>, item: ReaderItem) -> Result<(), Closed> {
    items.blocking_send(item).map_err(|_| Closed)
}
