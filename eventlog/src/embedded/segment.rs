//! The on-disk format of the embedded log: segment files and the records framed in them.
//!
//! A partition is a directory of segment files named `<base offset:020>.log`; the base offset is the offset of the
//! segment's first record, so the segment after one ending at offset `n - 1` is `<n:020>.log`. A segment starts with a
//! 16-byte header (`SEGMENT_MAGIC`, then the base offset as little-endian `i64`) followed by records, each framed as
//!
//! ```text
//! len: u32 LE   length of the body
//! crc: u32 LE   CRC-32 (IEEE) of the body
//! body:         offset i64 | timestamp_millis i64 | key_len u32 | key | value_len u32 | value |
//!               header_count u32 | { name_len u32 | name (UTF-8) | value_len u32 | value } *
//! ```
//!
//! (all integers little-endian). Only the last segment of a partition is ever appended to; a write torn by a crash
//! leaves a frame whose length or CRC does not check out, and recovery truncates the segment there.

use crate::{Consumed, Offset, Partition, Record};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// First bytes of every segment file; the last byte is the format version.
pub(super) const SEGMENT_MAGIC: [u8; 8] = *b"JHELOG\0\x01";
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
fn segment_header(base: Offset) -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut header = [0u8; SEGMENT_HEADER_LEN as usize];
    header[..8].copy_from_slice(&SEGMENT_MAGIC);
    header[8..].copy_from_slice(&base.to_le_bytes());
    header
}

/// Creates (or empties) the segment starting at `base` and makes it durable, directory entry included.
pub(super) fn create_segment(partition_dir: &Path, base: Offset) -> io::Result<File> {
    let path = segment_path(partition_dir, base);
    let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path)?;
    file.write_all(&segment_header(base))?;
    file.sync_data()?;
    sync_dir(partition_dir)?;
    Ok(file)
}

/// Makes the entries of `dir` (created or renamed files) durable.
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Checks the header of the segment `file` that should start at `base`.
fn check_header(file: &mut File, base: Offset, path: &Path) -> io::Result<()> {
    let mut header = [0u8; SEGMENT_HEADER_LEN as usize];
    file.seek(SeekFrom::Start(0))?;
    file.read_exact(&mut header)?;
    if header != segment_header(base) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("`{}` is not a jhe log segment with base offset {base}", path.display()),
        ));
    }
    Ok(())
}

/// Opens the sealed or active segment starting at `base` for reading, positioned after its header.
pub(super) fn open_segment_for_reading(partition_dir: &Path, base: Offset) -> io::Result<FrameReader> {
    let path = segment_path(partition_dir, base);
    let mut file = File::open(&path)?;
    check_header(&mut file, base, &path)?;
    Ok(FrameReader::new(file, SEGMENT_HEADER_LEN))
}

/// The state of the last segment of a partition after recovery.
#[derive(Debug)]
pub(super) struct RecoveredSegment {
    /// Open for appending (writes go to `len`).
    pub(super) file: File,
    /// Bytes of whole, valid records plus the header: where the next record goes.
    pub(super) len: u64,
    /// The offset the next record gets (the partition's high watermark).
    pub(super) next_offset: Offset,
}

/// Opens the last segment of a partition for appending: scans its records and truncates a torn tail (an incomplete
/// frame, a bad length or CRC, an offset out of sequence) so that everything before it stays and appends continue
/// right after it. Only this segment is read: earlier ones were sealed whole.
pub(super) fn recover_segment(
    partition_dir: &Path,
    partition: Partition,
    base: Offset,
) -> io::Result<RecoveredSegment> {
    let path = segment_path(partition_dir, base);
    let mut file = OpenOptions::new().read(true).write(true).open(&path)?;
    let file_len = file.metadata()?.len();
    if file_len < SEGMENT_HEADER_LEN {
        // Torn while being created: nothing was ever acknowledged from it.
        tracing::warn!(segment = %path.display(), partition, "rewriting the torn header of a new log segment");
        file.set_len(0)?;
        file.seek(SeekFrom::Start(0))?;
        file.write_all(&segment_header(base))?;
        file.sync_data()?;
        return Ok(RecoveredSegment { file, len: SEGMENT_HEADER_LEN, next_offset: base });
    }
    check_header(&mut file, base, &path)?;

    let mut reader = FrameReader::new(file.try_clone()?, SEGMENT_HEADER_LEN);
    let mut next_offset = base;
    let torn = loop {
        match reader.fill_frame(u64::MAX)? {
            FrameStatus::End => break None,
            FrameStatus::Torn(reason) => break Some(reason),
            FrameStatus::Ready => {
                let (crc, body) = reader.frame();
                if crc32fast::hash(body) != crc {
                    break Some("checksum mismatch");
                }
                if body_offset(body) != Some(next_offset) {
                    break Some("offset out of sequence");
                }
                next_offset += 1;
                reader.consume();
            }
        }
    };
    let len = reader.position();
    if let Some(reason) = torn {
        tracing::warn!(
            segment = %path.display(),
            partition,
            valid_bytes = len,
            dropped_bytes = file_len - len,
            reason,
            "truncating the torn tail of the log"
        );
        file.set_len(len)?;
        file.sync_data()?;
    }
    Ok(RecoveredSegment { file, len, next_offset })
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
    let body_start = frame_start + FRAME_PREFIX_LEN;
    let body_len = (out.len() - body_start) as u32;
    let crc = crc32fast::hash(&out[body_start..]);
    out[frame_start..frame_start + 4].copy_from_slice(&body_len.to_le_bytes());
    out[frame_start + 4..body_start].copy_from_slice(&crc.to_le_bytes());
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

    #[test]
    fn reader_stops_at_the_limit_and_reports_torn_frames() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = create_segment(dir.path(), 0).unwrap();
        let mut out = Vec::new();
        encode_record(&mut out, 0, 0, &record(b"k", b"first", &[]));
        let first_end = SEGMENT_HEADER_LEN + out.len() as u64;
        encode_record(&mut out, 1, 0, &record(b"k", b"second", &[]));
        file.seek(SeekFrom::Start(SEGMENT_HEADER_LEN)).unwrap();
        file.write_all(&out[..out.len() - 3]).unwrap();

        let mut reader = open_segment_for_reading(dir.path(), 0).unwrap();
        assert_eq!(reader.fill_frame(first_end).unwrap(), FrameStatus::Ready);
        assert_eq!(reader.frame_offset(), Some(0));
        reader.consume();
        assert_eq!(reader.position(), first_end);
        assert_eq!(reader.fill_frame(first_end).unwrap(), FrameStatus::End);
        assert_eq!(reader.fill_frame(u64::MAX).unwrap(), FrameStatus::Torn("incomplete record"));

        let recovered = recover_segment(dir.path(), 0, 0).unwrap();
        assert_eq!((recovered.len, recovered.next_offset), (first_end, 1));
        assert_eq!(fs::metadata(segment_path(dir.path(), 0)).unwrap().len(), first_end);
        assert_eq!(list_segments(dir.path()).unwrap(), vec![0]);
    }
}
