//! The writer of one topic: a dedicated thread that appends with group commit.
//!
//! Producers put [`Append`]s into a bounded channel. The thread takes the first one, then everything else already
//! queued (up to [`GROUP_MAX_BYTES`]), writes it all with one `write` per partition, makes it durable with one
//! `fdatasync` per partition touched, publishes the new high watermarks to readers and completes every waiting
//! sender. Appends arriving during an fsync form the next group, so concurrent requests share fsyncs.
//!
//! A group is all or nothing, also across partitions and crashes. Each partition's share of it ends with a
//! [`GroupTrailer`] (numbered, with the count of partitions the group spans), written and synced with the records.
//! The group is committed once every partition it spans holds its trailer; after a restart,
//! [`settle_last_group`] cuts the records of the last group off the partitions that hold it if any other lacks
//! it. That is enough because groups are strictly sequential: a group starts only after the previous one was
//! acknowledged, or was cut off every partition it touched durably. When a group fails, the writer cuts it off
//! every partition it touched (truncate, fsync); if that did not succeed everywhere, or an fsync had failed, the
//! writer stops accepting appends until a restart, and since at least one partition durably lost the trailer,
//! recovery drops the group from the others. Readers never see a group before it is committed: the writer
//! publishes new durable ends only then.

use super::faults::IoFaults;
use super::segment::{self, GroupTrailer, LastGroup, SegmentFormat};
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
    /// The trailer of the last committed group this partition took part in (copied into each new segment).
    last_trailer: Option<GroupTrailer>,
    /// After opening, until [`settle_last_group`]: the last group of the active segment.
    recovered: Option<LastGroup>,
    /// This group's encoded records and trailer.
    pending: Vec<u8>,
    /// Records encoded into `pending`.
    pending_records: i64,
    /// The trailer encoded at the end of `pending`.
    pending_trailer: Option<GroupTrailer>,
}

impl PartitionWriter {
    /// Opens partition `partition` in `dir` (created if missing): recovers the last segment. A last segment of the
    /// first format is sealed as it is and a new one started after it.
    pub(super) fn open(partition: Partition, dir: PathBuf) -> io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let mut segments = segment::list_segments(&dir)?;
        let (active, active_len, next_offset, format, recovered) = match segments.last() {
            Some(&base) => {
                let recovered = segment::recover_segment(&dir, partition, base)?;
                (recovered.file, recovered.len, recovered.next_offset, recovered.format, recovered.last_group)
            }
            None => {
                segments.push(0);
                let created = segment::create_segment(&dir, 0, None)?;
                (created.file, created.len, 0, SegmentFormat::V2, None)
            }
        };
        let mut writer = Self {
            partition,
            dir,
            segments,
            active,
            active_len,
            next_offset,
            last_trailer: recovered.map(|group| group.trailer),
            recovered,
            pending: Vec::new(),
            pending_records: 0,
            pending_trailer: None,
        };
        if format == SegmentFormat::V1 {
            writer.start_segment()?;
            tracing::info!(partition, base_offset = next_offset, "started a log segment of the current format");
        }
        Ok(writer)
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
        self.start_segment()?;
        tracing::debug!(partition = self.partition, base_offset = self.next_offset, "rolled the log segment");
        Ok(())
    }

    /// Makes a new segment starting at the next offset (replacing an empty active one) the active one.
    fn start_segment(&mut self) -> io::Result<()> {
        let created = segment::create_segment(&self.dir, self.next_offset, self.last_trailer)?;
        self.active = created.file;
        self.active_len = created.len;
        if self.segments.last() != Some(&self.next_offset) {
            self.segments.push(self.next_offset);
        }
        Ok(())
    }

    /// Ends this partition's share of group `group` (spanning `partitions` partitions) with its trailer.
    fn close_group(&mut self, group: u64, partitions: u32) {
        let trailer = GroupTrailer { group, partitions, end_offset: self.next_offset + self.pending_records };
        segment::encode_trailer(&mut self.pending, trailer);
        self.pending_trailer = Some(trailer);
    }

    /// The group is durable: its records become readable.
    fn commit_pending(&mut self) {
        self.active_len += self.pending.len() as u64;
        self.next_offset += self.pending_records;
        self.last_trailer = self.pending_trailer.or(self.last_trailer);
    }

    fn clear_pending(&mut self) {
        self.pending.clear();
        if self.pending.capacity() > KEEP_BUFFER_BYTES {
            self.pending.shrink_to(KEEP_BUFFER_BYTES);
        }
        self.pending_records = 0;
        self.pending_trailer = None;
    }

    /// Cuts everything after the durable end off the active segment, durably.
    fn truncate_to_durable(&self, faults: &IoFaults) -> io::Result<()> {
        faults.set_len(self.partition, &self.active, self.active_len)?;
        faults.sync_data(self.partition, &self.active)
    }

    /// Cuts the records of the recovered last group off, durably (it was not committed in every partition).
    fn drop_recovered_group(&mut self) -> io::Result<()> {
        let Some(group) = self.recovered.take() else { return Ok(()) };
        self.active.set_len(group.start_len)?;
        self.active.sync_data()?;
        tracing::warn!(
            partition = self.partition,
            group = group.trailer.group,
            records = group.trailer.end_offset - group.start_offset,
            "dropped the records of a group that not every partition committed"
        );
        self.active_len = group.start_len;
        self.next_offset = group.start_offset;
        self.last_trailer = group.previous;
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
    /// The number of the next group.
    next_group: u64,
    /// Set when a group could not be undone everywhere or an fsync failed: what is on disk is unknown, so nothing
    /// more is written until a restart.
    poisoned: Option<String>,
}

/// Why a group failed before its records were durable.
#[derive(Debug)]
enum GroupFailure {
    Write(String),
    Sync(String),
}

impl TopicWriter {
    /// The writer of `partitions`, settled by [`settle_last_group`], which returned `next_group`.
    pub(super) fn new(
        shared: Arc<TopicShared>,
        partitions: Vec<PartitionWriter>,
        segment_bytes: u64,
        next_group: u64,
    ) -> Self {
        Self { shared, partitions, segment_bytes, next_group, poisoned: None }
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
            if let Err(error) = writer.roll_if_full(self.segment_bytes) {
                // The new segment may exist on disk although it is not active: appending to the old one now would
                // put records where recovery does not look for them.
                let reason = format!(
                    "cannot start a new segment of partition {}: {error}; restart the process to recover the log",
                    writer.partition
                );
                self.poisoned = Some(reason.clone());
                return Err(reason);
            }
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
        // Numbers are never reused, not even those of failed groups.
        let number = self.next_group;
        self.next_group += 1;
        let spans = u32::try_from(touched.len()).unwrap_or(u32::MAX);
        for &index in &touched {
            self.partitions[index].close_group(number, spans);
        }

        let outcome = self.write_touched(&touched).and_then(|()| self.sync_touched(&touched));
        let result = match outcome {
            Ok(()) => {
                for &index in &touched {
                    self.partitions[index].commit_pending();
                }
                Ok(())
            }
            Err(failure) => Err(self.undo(&touched, failure)),
        };
        for &index in &touched {
            self.partitions[index].clear_pending();
        }
        result
    }

    /// Writes every touched partition's pending bytes after its durable end.
    fn write_touched(&mut self, touched: &[usize]) -> Result<(), GroupFailure> {
        for &index in touched {
            let writer = &mut self.partitions[index];
            writer.write_pending().map_err(|error| {
                GroupFailure::Write(format!("cannot write to partition {}: {error}", writer.partition))
            })?;
        }
        Ok(())
    }

    /// Makes the touched partitions durable: one fdatasync each, in parallel when there are several.
    fn sync_touched(&self, touched: &[usize]) -> Result<(), GroupFailure> {
        let partitions = &self.partitions;
        let faults = &self.shared.faults;
        let results: Vec<(Partition, io::Result<()>)> = if touched.len() == 1 {
            let writer = &partitions[touched[0]];
            vec![(writer.partition, faults.sync_data(writer.partition, &writer.active))]
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = touched
                    .iter()
                    .map(|&index| {
                        let writer = &partitions[index];
                        let spawned = std::thread::Builder::new()
                            .name("jhe-log-fsync".into())
                            .spawn_scoped(scope, move || faults.sync_data(writer.partition, &writer.active));
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
                            Err(_) => faults.sync_data(writer.partition, &writer.active),
                        };
                        (writer.partition, result)
                    })
                    .collect()
            })
        };
        for (partition, result) in results {
            if let Err(error) = result {
                return Err(GroupFailure::Sync(format!("fsync of partition {partition} failed: {error}")));
            }
        }
        Ok(())
    }

    /// Takes a failed group back: cuts it off every partition it touched, durably. Returns the error to report.
    ///
    /// A partition that durably lost the group's trailer is enough for recovery to drop the group everywhere, so
    /// the group is not delivered after a restart unless no partition could be cut. The writer stops (until a
    /// restart) unless the group is gone from every partition: only then may the next group follow. It also stops
    /// after a failed fsync, after which the kernel may have dropped dirty pages and a later fsync could report
    /// success for data that is gone.
    fn undo(&mut self, touched: &[usize], failure: GroupFailure) -> String {
        let faults = &self.shared.faults;
        let mut undone = 0;
        let mut not_undone = Vec::new();
        for &index in touched {
            let writer = &self.partitions[index];
            match writer.truncate_to_durable(faults) {
                Ok(()) => undone += 1,
                Err(error) => not_undone.push(format!("partition {}: {error}", writer.partition)),
            }
        }
        let (mut message, mut poison) = match failure {
            GroupFailure::Write(message) => (message, false),
            GroupFailure::Sync(message) => (message, true),
        };
        if undone == 0 {
            message.push_str("; the records could not be taken back and may be delivered after a restart");
        }
        if !not_undone.is_empty() {
            message.push_str(&format!("; cannot undo the append ({})", not_undone.join(", ")));
            poison = true;
        }
        if poison {
            message.push_str("; restart the process to recover the log");
            self.poisoned = Some(message.clone());
        }
        message
    }
}

/// Decides the fate of the last group after a restart, before anything is appended: it is committed if every
/// partition it spans holds its trailer; otherwise (a crash between the partitions' fsyncs, or a failed group the
/// writer could not cut off everywhere) its records are cut off the partitions that hold it. Only the last group
/// can be incomplete (see the module documentation), and its trailer is in the last segment of each partition that
/// holds it. Returns the number of the next group, above every number on disk.
pub(super) fn settle_last_group(partitions: &mut [PartitionWriter]) -> io::Result<u64> {
    let last = partitions
        .iter()
        .filter_map(|writer| writer.recovered.map(|group| group.trailer))
        .max_by_key(|trailer| trailer.group);
    let Some(last) = last else { return Ok(1) };
    let holders: Vec<usize> = partitions
        .iter()
        .enumerate()
        .filter(|(_, writer)| writer.recovered.is_some_and(|group| group.trailer.group == last.group))
        .map(|(index, _)| index)
        .collect();
    if holders.len() < last.partitions as usize {
        for index in holders {
            partitions[index].drop_recovered_group()?;
        }
    }
    for writer in partitions {
        writer.recovered = None;
    }
    Ok(last.group + 1)
}
