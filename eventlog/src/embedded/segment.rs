//! The on-disk format of the embedded log: segment files and the frames in them.
//!
//! A partition is a directory of segment files named `<base offset:020>.log`; the base offset is the offset of the
//! segment's first record, so the segment after one ending at offset `n - 1` is `<n:020>.log`. A segment starts with a
//! 16-byte header (a magic whose last byte is the format version, then the base offset as little-endian `i64`)
//! followed by frames, each
//!
//! ```text
//! len: u32 LE   length of the body
//! crc: u32 LE   CRC-32 (IEEE) of the body
//! body:         a record:  offset i64 | timestamp_millis i64 | key_len u32 | key | value_len u32 | value |
//!                          header_count u32 | { name_len u32 | name (UTF-8) | value_len u32 | value } *
//!               a group trailer (version 2):  -1 i64 | group u64 | partitions u32 | end_offset i64
//! ```
//!
//! (all integers little-endian). Only the last segment of a partition is ever appended to.
//!
//! **Version 2** (written now): the writer appends in groups (see `writer`), and each group's records in one
//! partition are followed by a [`GroupTrailer`] naming the group and how many partitions it spans. A group is
//! committed when every one of its partitions holds its trailer, so recovery keeps a partition's records only up to
//! its last trailer, and the topic then drops the last group if fewer partitions hold it than it spans. A new segment
//! starts with a copy of the partition's last trailer, so a partition's last trailer is always in its last segment.
//! Trailers take no offset: readers skip them.
//!
//! **Version 1** (older logs): records only, each committed on its own. Such a segment is never appended to again:
//! opening a partition whose last segment is version 1 starts a version 2 segment after it.
//!
//! A write torn by a crash leaves a frame whose length or CRC does not check out, and recovery truncates the segment
//! there (version 2: back to the last trailer before it).

use crate::{Consumed, Offset, Partition, Record};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// First bytes of a segment file in the current format (records in groups closed by trailers).
const SEGMENT_MAGIC: [u8; 8] = *b"JHELOG\0\x02";
/// First bytes of a segment file of the first format (records only).
pub(super) const SEGMENT_MAGIC_V1: [u8; 8] = *b"JHELOG\0\x01";
/// Bytes before the first record of a segment.
pub(super) const SEGMENT_HEADER_LEN: u64 = 16;
/// `len` and `crc` in front of every body.
pub(super) const FRAME_PREFIX_LEN: usize = 8;
/// The smallest body: offset, timestamp, empty key, empty value, no headers.
const MIN_BODY_LEN: usize = 8 + 8 + 4 + 4 + 4;
/// The largest body accepted (and allocated when reading); bigger records are refused at `send`.
pub(super) const MAX_BODY_LEN: usize = 32 << 20;
/// How much a reader fetches from a segment at a time.
const READ_CHUNK: usize = 1 << 20;
/// The first field of a trailer's body, where a record has its (non-negative) offset.
const TRAILER_MARK: i64 = -1;
/// The size of a trailer's body.
const TRAILER_BODY_LEN: usize = 8 + 8 + 4 + 8;
/// The name a new segment is written under before it is renamed into place.
const NEW_SEGMENT_FILE: &str = "segment.tmp";

/// The format of a segment file (the last byte of its magic).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SegmentFormat {
    /// Records only, each committed on its own.
    V1,
    /// Records in groups, each partition's share of a group closed by a [`GroupTrailer`].
    V2,
}

/// The frame after one group's records in one partition (and, copied, at the start of the partition's next segment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct GroupTrailer {
    /// The group's number: increasing within a topic, never reused.
    pub(super) group: u64,
    /// How many partitions the group appended to (each of them holds this trailer once the group is durable).
    pub(super) partitions: u32,
    /// The offset after the group's last record in this partition.
    pub(super) end_offset: Offset,
}

/// The path of the segment of `partition_dir` starting at `base`.
pub(super) fn segment_path(partition_dir: &Path, base: Offset) -> PathBuf {
    partition_dir.join(format!("{base:020}.log"))
}

/// The base offsets of the segments in `partition_dir`, ascending. Files that are not segments are ignored.
pub(super) fn list_segments(partition_dir: &Path) -> io::Result<Vec<Offset>> {
    let mut bases = Vec::new();
    for entry in fs::read_dir(partition_dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(digits) = name.strip_suffix(".log") else { continue };
        if digits.len() != 20 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
            continue;
        }
        if let Ok(base) = digits.parse::<Offset>() {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

/// The 16-byte header of the segment starting at `base`.
fn segment_header(magic: [u8; 8], base: Offset) -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut header = [0u8; SEGMENT_HEADER_LEN as usize];
    header[..8].copy_from_slice(&magic);
    header[8..].copy_from_slice(&base.to_le_bytes());
    header
}

/// A new segment of the current format, opened for appending.
#[derive(Debug)]
pub(super) struct NewSegment {
    pub(super) file: File,
    /// Header plus the copied trailer: where the first record goes.
    pub(super) len: u64,
}

/// Creates (or replaces) the segment starting at `base`, beginning with a copy of the partition's last trailer, and
/// makes it durable. It is written under a temporary name and renamed into place, so a crash leaves either no
/// segment or a whole one: the copied trailer is never lost.
pub(super) fn create_segment(partition_dir: &Path, base: Offset, last: Option<GroupTrailer>) -> io::Result<NewSegment> {
    let mut bytes = segment_header(SEGMENT_MAGIC, base).to_vec();
    if let Some(trailer) = last {
        encode_trailer(&mut bytes, trailer);
    }
    let temporary = partition_dir.join(NEW_SEGMENT_FILE);
    let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&temporary)?;
    file.write_all(&bytes)?;
    file.sync_data()?;
    fs::rename(&temporary, segment_path(partition_dir, base))?;
    sync_dir(partition_dir)?;
    Ok(NewSegment { file, len: bytes.len() as u64 })
}

/// Makes the entries of `dir` (created or renamed files) durable.
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Checks the header of the segment `file` that should start at `base`; returns its format.
fn check_header(file: &mut File, base: Offset, path: &Path) -> io::Result<SegmentFormat> {
    let mut header = [0u8; SEGMENT_HEADER_LEN as usize];
    file.seek(SeekFrom::Start(0))?;
    file.read_exact(&mut header)?;
    if header == segment_header(SEGMENT_MAGIC, base) {
        Ok(SegmentFormat::V2)
    } else if header == segment_header(SEGMENT_MAGIC_V1, base) {
        Ok(SegmentFormat::V1)
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("`{}` is not a jhe log segment with base offset {base}", path.display()),
        ))
    }
}

/// Opens the sealed or active segment starting at `base` for reading, positioned after its header.
pub(super) fn open_segment_for_reading(partition_dir: &Path, base: Offset) -> io::Result<FrameReader> {
    let path = segment_path(partition_dir, base);
    let mut file = File::open(&path)?;
    check_header(&mut file, base, &path)?;
    Ok(FrameReader::new(file, SEGMENT_HEADER_LEN))
}

/// The last group of a recovered version 2 segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct LastGroup {
    pub(super) trailer: GroupTrailer,
    /// Segment length before the group's records (right after the trailer before them, or the header).
    pub(super) start_len: u64,
    /// The offset of the group's first record in this partition.
    pub(super) start_offset: Offset,
    /// The trailer before the group's records in this segment, if any.
    pub(super) previous: Option<GroupTrailer>,
}

/// The state of the last segment of a partition after recovery.
#[derive(Debug)]
pub(super) struct RecoveredSegment {
    /// Open for appending (writes go to `len`).
    pub(super) file: File,
    pub(super) format: SegmentFormat,
    /// Bytes of committed frames plus the header: where the next record goes.
    pub(super) len: u64,
    /// The offset the next record gets (the partition's high watermark).
    pub(super) next_offset: Offset,
    /// Version 2: the segment's last trailer and where its group's records start.
    pub(super) last_group: Option<LastGroup>,
}

/// Opens the last segment of a partition for appending: scans its frames and truncates what is not committed (a
/// torn tail: an incomplete frame, a bad length or CRC, an offset out of sequence; in version 2 also records after
/// the last trailer) so that appends continue right after the committed frames. Only this segment is read: earlier
/// ones were sealed whole.
pub(super) fn recover_segment(
    partition_dir: &Path,
    partition: Partition,
    base: Offset,
) -> io::Result<RecoveredSegment> {
    let path = segment_path(partition_dir, base);
    let mut file = OpenOptions::new().read(true).write(true).open(&path)?;
    let file_len = file.metadata()?.len();
    if file_len < SEGMENT_HEADER_LEN {
        // Torn while being created by an older version (new segments are renamed into place whole): nothing was
        // ever acknowledged from it, and the partition had no trailers before it.
        tracing::warn!(segment = %path.display(), partition, "rewriting the torn header of a new log segment");
        let created = create_segment(partition_dir, base, None)?;
        return Ok(RecoveredSegment {
            file: created.file,
            format: SegmentFormat::V2,
            len: created.len,
            next_offset: base,
            last_group: None,
        });
    }
    let format = check_header(&mut file, base, &path)?;
    let mut reader = FrameReader::new(file.try_clone()?, SEGMENT_HEADER_LEN);
    let scan = scan_segment(&mut reader, base, format)?;
    if scan.committed_len < file_len {
        tracing::warn!(
            segment = %path.display(),
            partition,
            valid_bytes = scan.committed_len,
            dropped_bytes = file_len - scan.committed_len,
            reason = scan.torn.unwrap_or("records of a group without its trailer"),
            "truncating the uncommitted tail of the log"
        );
        file.set_len(scan.committed_len)?;
        file.sync_data()?;
    }
    Ok(RecoveredSegment {
        file,
        format,
        len: scan.committed_len,
        next_offset: scan.committed_next,
        last_group: scan.last_group,
    })
}

/// What [`scan_segment`] found.
#[derive(Debug)]
struct Scan {
    /// Where the committed frames end: version 1 after the last valid record, version 2 after the last trailer.
    committed_len: u64,
    /// The offset after the last committed record.
    committed_next: Offset,
    last_group: Option<LastGroup>,
    /// Why the frames stopped before the end of the file, if they did.
    torn: Option<&'static str>,
}

/// Reads a segment's frames from after its header to the first one that does not check out.
fn scan_segment(reader: &mut FrameReader, base: Offset, format: SegmentFormat) -> io::Result<Scan> {
    let mut scan = Scan { committed_len: SEGMENT_HEADER_LEN, committed_next: base, last_group: None, torn: None };
    let mut next_offset = base;
    loop {
        match reader.fill_frame(u64::MAX)? {
            FrameStatus::End => return Ok(scan),
            FrameStatus::Torn(reason) => {
                scan.torn = Some(reason);
                return Ok(scan);
            }
            FrameStatus::Ready => {}
        }
        let (crc, body) = reader.frame();
        if crc32fast::hash(body) != crc {
            scan.torn = Some("checksum mismatch");
            return Ok(scan);
        }
        let trailer = decode_trailer(body).filter(|_| format == SegmentFormat::V2);
        let in_sequence = match trailer {
            Some(trailer) => trailer.end_offset == next_offset && trailer.partitions > 0,
            None => body_offset(body) == Some(next_offset),
        };
        if !in_sequence {
            scan.torn = Some("offset out of sequence");
            return Ok(scan);
        }
        reader.consume();
        match trailer {
            Some(trailer) => {
                scan.last_group = Some(LastGroup {
                    trailer,
                    start_len: scan.committed_len,
                    start_offset: scan.committed_next,
                    previous: scan.last_group.map(|group| group.trailer),
                });
                scan.committed_len = reader.position();
                scan.committed_next = next_offset;
            }
            None => {
                next_offset += 1;
                if format == SegmentFormat::V1 {
                    scan.committed_len = reader.position();
                    scan.committed_next = next_offset;
                }
            }
        }
    }
}

/// Bytes a record takes in a segment (frame prefix included), or `None` if it is larger than [`MAX_BODY_LEN`].
pub(super) fn framed_len(record: &Record) -> Option<usize> {
    let headers: usize = record.headers.iter().map(|(name, value)| 8 + name.len() + value.len()).sum();
    let body = MIN_BODY_LEN + record.key.len() + record.value.len() + headers;
    (body <= MAX_BODY_LEN).then_some(FRAME_PREFIX_LEN + body)
}

/// Appends the frame of `record` at `offset` to `out`. The caller checked [`framed_len`], so every length fits a
/// `u32`.
pub(super) fn encode_record(out: &mut Vec<u8>, offset: Offset, timestamp_millis: i64, record: &Record) {
    fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(bytes);
    }
    let frame_start = out.len();
    out.extend_from_slice(&[0u8; FRAME_PREFIX_LEN]);
    out.extend_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(&timestamp_millis.to_le_bytes());
    put_bytes(out, &record.key);
    put_bytes(out, &record.value);
    out.extend_from_slice(&(record.headers.len() as u32).to_le_bytes());
    for (name, value) in &record.headers {
        put_bytes(out, name.as_bytes());
        put_bytes(out, value);
    }
    finish_frame(out, frame_start);
}

/// Appends the frame of `trailer` to `out`.
pub(super) fn encode_trailer(out: &mut Vec<u8>, trailer: GroupTrailer) {
    let frame_start = out.len();
    out.extend_from_slice(&[0u8; FRAME_PREFIX_LEN]);
    out.extend_from_slice(&TRAILER_MARK.to_le_bytes());
    out.extend_from_slice(&trailer.group.to_le_bytes());
    out.extend_from_slice(&trailer.partitions.to_le_bytes());
    out.extend_from_slice(&trailer.end_offset.to_le_bytes());
    finish_frame(out, frame_start);
}

/// Fills in the length and CRC of the frame starting at `frame_start`, whose body runs to the end of `out`.
fn finish_frame(out: &mut [u8], frame_start: usize) {
    let body_start = frame_start + FRAME_PREFIX_LEN;
    let body_len = (out.len() - body_start) as u32;
    let crc = crc32fast::hash(&out[body_start..]);
    out[frame_start..frame_start + 4].copy_from_slice(&body_len.to_le_bytes());
    out[frame_start + 4..body_start].copy_from_slice(&crc.to_le_bytes());
}

/// The trailer in a body (whose CRC the caller checked), or `None` if the body is not a trailer.
pub(super) fn decode_trailer(body: &[u8]) -> Option<GroupTrailer> {
    if body.len() != TRAILER_BODY_LEN || body_offset(body) != Some(TRAILER_MARK) {
        return None;
    }
    Some(GroupTrailer {
        group: u64::from_le_bytes(body[8..16].try_into().ok()?),
        partitions: u32::from_le_bytes(body[16..20].try_into().ok()?),
        end_offset: Offset::from_le_bytes(body[20..28].try_into().ok()?),
    })
}

/// The offset stored in a body.
fn body_offset(body: &[u8]) -> Option<Offset> {
    Some(Offset::from_le_bytes(body.get(..8)?.try_into().ok()?))
}

/// Decodes a body (whose CRC the caller checked) of `partition`. `None` if the body is malformed.
pub(super) fn decode_body(partition: Partition, body: &[u8]) -> Option<Consumed> {
    struct Cursor<'a>(&'a [u8]);
    impl<'a> Cursor<'a> {
        fn take(&mut self, count: usize) -> Option<&'a [u8]> {
            if self.0.len() < count {
                return None;
            }
            let (head, tail) = self.0.split_at(count);
            self.0 = tail;
            Some(head)
        }
        fn u32(&mut self) -> Option<usize> {
            Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?) as usize)
        }
        fn i64(&mut self) -> Option<i64> {
            Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
        }
        fn bytes(&mut self) -> Option<&'a [u8]> {
            let len = self.u32()?;
            self.take(len)
        }
    }

    let mut cursor = Cursor(body);
    let offset = cursor.i64()?;
    let timestamp_millis = cursor.i64()?;
    let key = cursor.bytes()?;
    let value = cursor.bytes()?.to_vec();
    let header_count = cursor.u32()?;
    // Each header takes at least 8 bytes: do not trust a count the body cannot hold.
    let mut headers = Vec::with_capacity(header_count.min(cursor.0.len() / 8));
    for _ in 0..header_count {
        let name = std::str::from_utf8(cursor.bytes()?).ok()?.to_owned();
        headers.push((name, cursor.bytes()?.to_vec()));
    }
    if !cursor.0.is_empty() {
        return None;
    }
    Some(Consumed {
        partition,
        offset,
        // Kafka distinguishes a null key from an empty one; the embedded log, like `Record`, does not: empty = none.
        key: (!key.is_empty()).then(|| key.to_vec()),
        value,
        headers,
        timestamp_millis: Some(timestamp_millis),
    })
}

/// What [`FrameReader::fill_frame`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FrameStatus {
    /// A whole frame is buffered: see [`FrameReader::frame`].
    Ready,
    /// No bytes left before the limit (or the end of the file).
    End,
    /// The bytes left do not form a frame.
    Torn(&'static str),
}

/// Reads frames sequentially from a segment through a buffer.
#[derive(Debug)]
pub(super) struct FrameReader {
    file: File,
    /// File position of the byte after `buf`'s last.
    file_pos: u64,
    buf: Vec<u8>,
    /// Start of the unconsumed bytes in `buf`.
    start: usize,
    /// Length of the ready frame at `start` (0: none).
    ready_len: usize,
}

impl FrameReader {
    /// Reads `file` from `position` on.
    fn new(file: File, position: u64) -> Self {
        Self { file, file_pos: position, buf: Vec::new(), start: 0, ready_len: 0 }
    }

    /// File position of the next unconsumed byte (the start of the ready frame, if any).
    pub(super) fn position(&self) -> u64 {
        self.file_pos - (self.buf.len() - self.start) as u64
    }

    /// Buffers the next frame, reading no file bytes at or after `limit` (the durable length of an active segment;
    /// `u64::MAX` for a sealed one).
    pub(super) fn fill_frame(&mut self, limit: u64) -> io::Result<FrameStatus> {
        loop {
            let available = self.buf.len() - self.start;
            let needed = if available >= FRAME_PREFIX_LEN {
                let prefix = &self.buf[self.start..self.start + FRAME_PREFIX_LEN];
                let body_len = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
                if !(MIN_BODY_LEN..=MAX_BODY_LEN).contains(&body_len) {
                    return Ok(FrameStatus::Torn("invalid record length"));
                }
                let frame_len = FRAME_PREFIX_LEN + body_len;
                if available >= frame_len {
                    self.ready_len = frame_len;
                    return Ok(FrameStatus::Ready);
                }
                frame_len
            } else {
                FRAME_PREFIX_LEN
            };
            if self.read_more(needed, limit)? == 0 {
                return Ok(if available == 0 { FrameStatus::End } else { FrameStatus::Torn("incomplete record") });
            }
        }
    }

    /// Reads at least one more byte into the buffer unless the limit or the end of the file is reached; returns the
    /// number of bytes read.
    fn read_more(&mut self, needed: usize, limit: u64) -> io::Result<usize> {
        if self.file_pos >= limit {
            return Ok(0);
        }
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let want = needed.max(READ_CHUNK).saturating_sub(self.buf.len()).max(1);
        let want = usize::try_from((limit - self.file_pos).min(want as u64)).unwrap_or(want);
        let filled = self.buf.len();
        self.buf.resize(filled + want, 0);
        self.file.seek(SeekFrom::Start(self.file_pos))?;
        let read = loop {
            match self.file.read(&mut self.buf[filled..]) {
                Ok(read) => break read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    self.buf.truncate(filled);
                    return Err(error);
                }
            }
        };
        self.buf.truncate(filled + read);
        self.file_pos += read as u64;
        Ok(read)
    }

    /// The ready frame: its stored CRC and its body. Only valid after [`Self::fill_frame`] returned `Ready`.
    pub(super) fn frame(&self) -> (u32, &[u8]) {
        let frame = &self.buf[self.start..self.start + self.ready_len];
        let crc = u32::from_le_bytes([frame[4], frame[5], frame[6], frame[7]]);
        (crc, &frame[FRAME_PREFIX_LEN..])
    }

    /// The offset of the ready frame (unchecked: no CRC verification).
    pub(super) fn frame_offset(&self) -> Option<Offset> {
        body_offset(self.frame().1)
    }

    /// Moves past the ready frame.
    pub(super) fn consume(&mut self) {
        self.start += self.ready_len;
        self.ready_len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: &[u8], value: &[u8], headers: &[(&str, &[u8])]) -> Record {
        Record {
            key: key.to_vec(),
            value: value.to_vec(),
            headers: headers.iter().map(|(name, value)| ((*name).to_owned(), value.to_vec())).collect(),
        }
    }

    #[test]
    fn frames_round_trip() {
        let records =
            [record(b"40001", b"{\"a\":1}", &[("jhe-format", b"observation/1"), ("x", b"")]), record(b"", b"", &[])];
        let mut out = Vec::new();
        for (index, record) in records.iter().enumerate() {
            encode_record(&mut out, 7 + index as i64, 1234, record);
        }
        assert_eq!(out.len(), records.iter().map(|record| framed_len(record).unwrap()).sum::<usize>());
        let mut rest = out.as_slice();
        for (index, record) in records.iter().enumerate() {
            let body_len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
            let crc = u32::from_le_bytes(rest[4..8].try_into().unwrap());
            let body = &rest[8..8 + body_len];
            assert_eq!(crc32fast::hash(body), crc);
            let consumed = decode_body(3, body).unwrap();
            assert_eq!(consumed.partition, 3);
            assert_eq!(consumed.offset, 7 + index as i64);
            assert_eq!(consumed.timestamp_millis, Some(1234));
            assert_eq!(consumed.key, (!record.key.is_empty()).then(|| record.key.clone()));
            assert_eq!(consumed.value, record.value);
            assert_eq!(consumed.headers, record.headers);
            rest = &rest[8 + body_len..];
        }
        assert!(rest.is_empty());
    }

    #[test]
    fn rejects_malformed_bodies() {
        let mut out = Vec::new();
        encode_record(&mut out, 0, 0, &record(b"k", b"v", &[("h", b"1")]));
        let body = &out[8..];
        assert!(decode_body(0, &body[..body.len() - 1]).is_none());
        let mut longer = body.to_vec();
        longer.push(0);
        assert!(decode_body(0, &longer).is_none());
    }

    #[test]
    fn refuses_oversized_records() {
        assert!(framed_len(&record(b"k", &vec![0; MAX_BODY_LEN], &[])).is_none());
        assert!(framed_len(&record(b"k", &vec![0; 1000], &[])).is_some());
    }

    fn trailer(group: u64, partitions: u32, end_offset: Offset) -> GroupTrailer {
        GroupTrailer { group, partitions, end_offset }
    }

    /// Writes `bytes` after the header of a new segment starting at `base`.
    fn segment_with(dir: &Path, base: Offset, last: Option<GroupTrailer>, bytes: &[u8]) -> u64 {
        let mut created = create_segment(dir, base, last).unwrap();
        created.file.seek(SeekFrom::Start(created.len)).unwrap();
        created.file.write_all(bytes).unwrap();
        created.len
    }

    #[test]
    fn trailers_round_trip_and_are_no_records() {
        let mut out = Vec::new();
        encode_trailer(&mut out, trailer(7, 3, 42));
        assert_eq!(out.len(), FRAME_PREFIX_LEN + TRAILER_BODY_LEN);
        let body = &out[FRAME_PREFIX_LEN..];
        assert_eq!(u32::from_le_bytes(out[4..8].try_into().unwrap()), crc32fast::hash(body));
        assert_eq!(decode_trailer(body), Some(trailer(7, 3, 42)));
        let mut record_frame = Vec::new();
        encode_record(&mut record_frame, 0, 0, &record(b"", b"", &[]));
        assert_eq!(record_frame.len(), out.len(), "a record can be as short as a trailer");
        assert_eq!(decode_trailer(&record_frame[FRAME_PREFIX_LEN..]), None);
    }

    #[test]
    fn reader_stops_at_the_limit_and_reports_torn_frames() {
        let dir = tempfile::tempdir().unwrap();
        let mut out = Vec::new();
        encode_record(&mut out, 0, 0, &record(b"k", b"first", &[]));
        encode_trailer(&mut out, trailer(1, 1, 1));
        let first_end = SEGMENT_HEADER_LEN + out.len() as u64;
        encode_record(&mut out, 1, 0, &record(b"k", b"second", &[]));
        segment_with(dir.path(), 0, None, &out[..out.len() - 3]);

        let mut reader = open_segment_for_reading(dir.path(), 0).unwrap();
        assert_eq!(reader.fill_frame(first_end).unwrap(), FrameStatus::Ready);
        assert_eq!(reader.frame_offset(), Some(0));
        reader.consume();
        assert_eq!(reader.fill_frame(first_end).unwrap(), FrameStatus::Ready);
        assert_eq!(reader.frame_offset(), Some(TRAILER_MARK));
        reader.consume();
        assert_eq!(reader.position(), first_end);
        assert_eq!(reader.fill_frame(first_end).unwrap(), FrameStatus::End);
        assert_eq!(reader.fill_frame(u64::MAX).unwrap(), FrameStatus::Torn("incomplete record"));

        let recovered = recover_segment(dir.path(), 0, 0).unwrap();
        assert_eq!((recovered.len, recovered.next_offset), (first_end, 1));
        assert_eq!(fs::metadata(segment_path(dir.path(), 0)).unwrap().len(), first_end);
        assert_eq!(list_segments(dir.path()).unwrap(), vec![0]);
    }

    #[test]
    fn recovery_keeps_records_up_to_the_last_trailer() {
        let dir = tempfile::tempdir().unwrap();
        let carried = trailer(4, 2, 10);
        let mut out = Vec::new();
        encode_record(&mut out, 10, 0, &record(b"k", b"a", &[]));
        encode_record(&mut out, 11, 0, &record(b"k", b"b", &[]));
        encode_trailer(&mut out, trailer(5, 1, 12));
        let group_6_start = out.len() as u64;
        encode_record(&mut out, 12, 0, &record(b"k", b"c", &[]));
        encode_trailer(&mut out, trailer(6, 3, 13));
        let committed = out.len() as u64;
        // A group whose trailer was never written: its records are not committed, although they are whole.
        encode_record(&mut out, 13, 0, &record(b"k", b"d", &[]));
        let header_len = segment_with(dir.path(), 10, Some(carried), &out);
        assert_eq!(header_len, SEGMENT_HEADER_LEN + FRAME_PREFIX_LEN as u64 + TRAILER_BODY_LEN as u64);

        let recovered = recover_segment(dir.path(), 0, 10).unwrap();
        assert_eq!(recovered.format, SegmentFormat::V2);
        assert_eq!((recovered.len, recovered.next_offset), (header_len + committed, 13));
        assert_eq!(
            recovered.last_group,
            Some(LastGroup {
                trailer: trailer(6, 3, 13),
                start_len: header_len + group_6_start,
                start_offset: 12,
                previous: Some(trailer(5, 1, 12)),
            })
        );
        assert_eq!(fs::metadata(segment_path(dir.path(), 10)).unwrap().len(), header_len + committed);
    }

    #[test]
    fn segments_of_the_first_format_keep_every_whole_record() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = segment_header(SEGMENT_MAGIC_V1, 0).to_vec();
        encode_record(&mut bytes, 0, 0, &record(b"k", b"a", &[]));
        encode_record(&mut bytes, 1, 0, &record(b"k", b"b", &[]));
        let whole = bytes.len() as u64;
        encode_record(&mut bytes, 2, 0, &record(b"k", b"c", &[]));
        bytes.truncate(bytes.len() - 1);
        fs::write(segment_path(dir.path(), 0), &bytes).unwrap();

        let recovered = recover_segment(dir.path(), 0, 0).unwrap();
        assert_eq!(recovered.format, SegmentFormat::V1);
        assert_eq!((recovered.len, recovered.next_offset, recovered.last_group), (whole, 2, None));
        let mut reader = open_segment_for_reading(dir.path(), 0).unwrap();
        assert_eq!(reader.fill_frame(u64::MAX).unwrap(), FrameStatus::Ready);
    }
}
