//! The writer of one topic: a dedicated thread that appends with group commit.
//!
//! Producers put [`Append`]s into a bounded channel. The thread takes the first one, then everything else already
//! queued (up to [`GROUP_MAX_BYTES`]), writes it all with one `write` per partition, makes it durable with one
//! `fdatasync` per partition touched, publishes the new high watermarks to readers and completes every waiting
//! sender. Appends arriving during an fsync form the next group, so concurrent requests share fsyncs.

use super::segment::{self, SEGMENT_HEADER_LEN};
use super::{DurableEnd, TopicShared};
use crate::{LogError, Offset, Partition, Record};
use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};

/// Stop adding appends to a group beyond this many bytes (the rest waits for the next group).
const GROUP_MAX_BYTES: usize = 32 << 20;
/// Keep a partition's encode buffer allocated up to this size between groups.
const KEEP_BUFFER_BYTES: usize = 8 << 20;

/// A message to the writer thread.
#[derive(Debug)]
pub(super) enum WriterMessage {
    Append(Append),
    /// Delete segments wholly before these positions (what the consumer has durably processed).
    Retain(Vec<(Partition, Offset)>),
}

/// Records to append, grouped by partition index (each partition's records in order), and who waits for them.
#[derive(Debug)]
pub(super) struct Append {
    pub(super) partitions: Vec<(usize, Vec<Record>)>,
    /// Framed size of all records.
    pub(super) bytes: usize,
    pub(super) done: oneshot::Sender<Result<(), LogError>>,
}

/// The append side of one partition.
#[derive(Debug)]
pub(super) struct PartitionWriter {
    partition: Partition,
    dir: PathBuf,
    /// Base offsets of the segments on disk, ascending; the last one is active.
    segments: Vec<Offset>,
    active: File,
    /// Durable bytes of the active segment (where the next write goes).
    active_len: u64,
    /// The offset of the next record.
    next_offset: Offset,
    /// This group's encoded records.
    pending: Vec<u8>,
    /// Records encoded into `pending`.
    pending_records: i64,
}

impl PartitionWriter {
    /// Opens partition `partition` in `dir` (created if missing): recovers the last segment.
    pub(super) fn open(partition: Partition, dir: PathBuf) -> io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let mut segments = segment::list_segments(&dir)?;
        let (active, active_len, next_offset) = match segments.last() {
            Some(&base) => {
                let recovered = segment::recover_segment(&dir, partition, base)?;
                (recovered.file, recovered.len, recovered.next_offset)
            }
            None => {
                segments.push(0);
                (segment::create_segment(&dir, 0)?, SEGMENT_HEADER_LEN, 0)
            }
        };
        Ok(Self { partition, dir, segments, active, active_len, next_offset, pending: Vec::new(), pending_records: 0 })
    }

    /// What readers may read of this partition.
    pub(super) fn durable_end(&self) -> DurableEnd {
        DurableEnd {
            next_offset: self.next_offset,
            active_base: self.segments.last().copied().unwrap_or(self.next_offset),
            active_len: self.active_len,
        }
    }

    fn active_base(&self) -> Offset {
        self.segments.last().copied().unwrap_or(self.next_offset)
    }

    /// Starts a new segment at the next offset if the active one is full (and not empty).
    fn roll_if_full(&mut self, segment_bytes: u64) -> io::Result<()> {
        if self.active_len < segment_bytes || self.next_offset == self.active_base() {
            return Ok(());
        }
        // The active segment is durable (every group ends with its fsync), so it is sealed as it is.
        self.active = segment::create_segment(&self.dir, self.next_offset)?;
        self.active_len = SEGMENT_HEADER_LEN;
        self.segments.push(self.next_offset);
        tracing::debug!(partition = self.partition, base_offset = self.next_offset, "rolled the log segment");
        Ok(())
    }

    fn write_pending(&mut self) -> io::Result<()> {
        self.active.seek(SeekFrom::Start(self.active_len))?;
        self.active.write_all(&self.pending)
    }

    /// Deletes the segments whose records are all before `processed`; never the active one.
    fn retain(&mut self, processed: Offset) {
        while self.segments.len() > 1 && self.segments[1] <= processed {
            let base = self.segments[0];
            let path = segment::segment_path(&self.dir, base);
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    tracing::debug!(partition = self.partition, base_offset = base, "deleted a processed log segment");
                }
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => {
                    tracing::warn!(segment = %path.display(), %error, "could not delete a processed log segment");
                    return;
                }
            }
            self.segments.remove(0);
        }
    }
}

/// The writer thread's state for one topic.
#[derive(Debug)]
pub(super) struct TopicWriter {
    shared: Arc<TopicShared>,
    partitions: Vec<PartitionWriter>,
    segment_bytes: u64,
    /// Set when an fsync failed: what is on disk is unknown, so nothing more is written until a restart.
    poisoned: Option<String>,
}

impl TopicWriter {
    pub(super) fn new(shared: Arc<TopicShared>, partitions: Vec<PartitionWriter>, segment_bytes: u64) -> Self {
        Self { shared, partitions, segment_bytes, poisoned: None }
    }

    /// The thread's loop: runs until every sender is gone.
    pub(super) fn run(mut self, mut messages: mpsc::Receiver<WriterMessage>) {
        let mut group = Vec::new();
        let mut retain = Vec::new();
        while let Some(first) = messages.blocking_recv() {
            let mut group_bytes = 0;
            let mut next = Some(first);
            while let Some(message) = next.take() {
                match message {
                    WriterMessage::Append(append) => {
                        group_bytes += append.bytes;
                        group.push(append);
                    }
                    WriterMessage::Retain(positions) => retain.extend(positions),
                }
                if group_bytes < GROUP_MAX_BYTES {
                    next = messages.try_recv().ok();
                }
            }
            if !group.is_empty() {
                self.commit(&mut group);
            }
            for (partition, processed) in retain.drain(..) {
                if let Some(writer) = usize::try_from(partition).ok().and_then(|index| self.partitions.get_mut(index)) {
                    writer.retain(processed);
                }
            }
        }
        tracing::debug!(topic = %self.shared.name, "log writer stopped");
    }

    /// Appends, syncs and acknowledges one group (emptying `group`).
    fn commit(&mut self, group: &mut Vec<Append>) {
        let result = self.write_group(group);
        if let Err(message) = &result {
            tracing::error!(topic = %self.shared.name, error = %message, "log append failed");
        }
        self.shared.publish(self.partitions.iter().map(PartitionWriter::durable_end));
        for append in group.drain(..) {
            let reply = match &result {
                Ok(()) => Ok(()),
                Err(message) => Err(LogError::Write(message.clone())),
            };
            // The sender may have given up waiting; the records are durable all the same.
            let _ = append.done.send(reply);
        }
    }

    fn write_group(&mut self, group: &[Append]) -> Result<(), String> {
        if let Some(reason) = &self.poisoned {
            return Err(reason.clone());
        }
        let mut touched: Vec<usize> = Vec::new();
        for append in group {
            for (index, _) in &append.partitions {
                if !touched.contains(index) {
                    touched.push(*index);
                }
            }
        }
        for &index in &touched {
            let writer = &mut self.partitions[index];
            writer
                .roll_if_full(self.segment_bytes)
                .map_err(|error| format!("cannot start a new segment of partition {}: {error}", writer.partition))?;
        }

        let timestamp_millis =
            SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.as_millis() as i64).unwrap_or(0);
        for append in group {
            for (index, records) in &append.partitions {
                let writer = &mut self.partitions[*index];
                for record in records {
                    segment::encode_record(
                        &mut writer.pending,
                        writer.next_offset + writer.pending_records,
                        timestamp_millis,
                        record,
                    );
                    writer.pending_records += 1;
                }
            }
        }

        let written = self.write_touched(&touched);
        let synced = written.and_then(|()| self.sync_touched(&touched));
        for &index in &touched {
            let writer = &mut self.partitions[index];
            if synced.is_ok() {
                writer.active_len += writer.pending.len() as u64;
                writer.next_offset += writer.pending_records;
            }
            writer.pending.clear();
            if writer.pending.capacity() > KEEP_BUFFER_BYTES {
                writer.pending.shrink_to(KEEP_BUFFER_BYTES);
            }
            writer.pending_records = 0;
        }
        synced
    }

    /// Writes every touched partition's pending bytes; on failure, cuts the written bytes off again.
    fn write_touched(&mut self, touched: &[usize]) -> Result<(), String> {
        let mut failure = None;
        for &index in touched {
            let writer = &mut self.partitions[index];
            if let Err(error) = writer.write_pending() {
                failure = Some(format!("cannot write to partition {}: {error}", writer.partition));
                break;
            }
        }
        let Some(failure) = failure else { return Ok(()) };
        for &index in touched {
            let writer = &mut self.partitions[index];
            if let Err(error) = writer.active.set_len(writer.active_len) {
                let reason = format!(
                    "cannot undo a failed write to partition {}: {error}; restart the process to recover the log",
                    writer.partition
                );
                self.poisoned = Some(reason.clone());
                return Err(reason);
            }
        }
        Err(failure)
    }

    /// Makes the touched partitions durable: one fdatasync each, in parallel when there are several.
    fn sync_touched(&mut self, touched: &[usize]) -> Result<(), String> {
        let partitions = &self.partitions;
        let results: Vec<(Partition, io::Result<()>)> = if touched.len() == 1 {
            let writer = &partitions[touched[0]];
            vec![(writer.partition, writer.active.sync_data())]
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = touched
                    .iter()
                    .map(|&index| {
                        let writer = &partitions[index];
                        let spawned = std::thread::Builder::new()
                            .name("jhe-log-fsync".into())
                            .spawn_scoped(scope, move || writer.active.sync_data());
                        (writer, spawned)
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|(writer, spawned)| {
                        let result = match spawned {
                            Ok(handle) => {
                                handle.join().unwrap_or_else(|_| Err(io::Error::other("the fsync thread panicked")))
                            }
                            // No thread to spare: sync here instead.
                            Err(_) => writer.active.sync_data(),
                        };
                        (writer.partition, result)
                    })
                    .collect()
            })
        };
        for (partition, result) in results {
            if let Err(error) = result {
                // After a failed fsync the kernel may have dropped the dirty pages: retrying could report success for
                // data that is gone. Refuse further writes; a restart recovers what is really on disk.
                let reason = format!("fsync of partition {partition} failed: {error}; restart the process");
                self.poisoned = Some(reason.clone());
                return Err(reason);
            }
        }
        Ok(())
    }
}
