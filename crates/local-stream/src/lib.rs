//! The embedded `file://` stream: Kinesis' data model on a local disk.
//!
//! ```text
//! DIR/stream.json                     name and shards with their hash key ranges
//! DIR/shardId-000000000000.log        one append-only log per shard
//! ```
//!
//! Each log entry is `u32 body length | u32 CRC-32 of body | body`, the body being
//! `i64 arrival (ms since epoch) | u16 key length | partition key | data`, integers little-endian.
//! A record's sequence number is the byte offset of its entry, so sequence numbers increase
//! within a shard and reading "after" one is a seek. Appends hold an exclusive lock on the log
//! and are synced before they are acknowledged; a torn entry left by a killed writer is invisible
//! to readers and cut off by the next writer.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use sales_stream::{
    HashKeyRange, MAX_PARTITION_KEY_LEN, MAX_RECORD_BYTES, PutEntry, PutResult, SequenceNumber,
    ShardId, StartingPosition, StreamRecord, hash_key,
};

/// A read stops once its records hold this many bytes, as Kinesis' `GetRecords` does at 10 MiB:
/// a few hundred compact records are millions of events.
pub const MAX_READ_BYTES: usize = 10 * 1024 * 1024;
const DESCRIPTION_FILE: &str = "stream.json";
/// A reader's buffer: enough to read a log in few system calls, small beside the records a read
/// keeps (a buffer of 1 MiB, made and dropped by every read, only grew the reader's heap).
const READ_BUFFER_BYTES: usize = 64 * 1024;
const ENTRY_HEADER_LEN: usize = 8;
const BODY_FIXED_LEN: usize = 8 + 2;
/// The description's format version; bumped on an incompatible change of the log format.
const FORMAT_VERSION: u32 = 1;

/// Errors of the embedded stream.
#[derive(Debug, thiserror::Error)]
pub enum LocalStreamError {
    /// The directory holds no stream (no `stream.json`).
    #[error("no stream at {0}: stream something into it first (producer --stream file://...)")]
    NotFound(PathBuf),
    /// Reading or writing the stream's files failed.
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// `stream.json` is not a stream description this version understands.
    #[error("{path} is not a stream description: {reason}")]
    BadDescription { path: PathBuf, reason: String },
    /// A complete log entry failed its checksum: the log was damaged.
    #[error("shard log {path} is corrupt at byte {offset}")]
    Corrupt { path: PathBuf, offset: u64 },
    /// The shard id is not one of this stream's.
    #[error("stream {stream} has no shard {shard}")]
    UnknownShard { stream: String, shard: String },
    /// The sequence number to read after is not a record of this shard.
    #[error("sequence number {sequence} is not a record of shard {shard}")]
    UnknownSequence {
        shard: String,
        sequence: SequenceNumber,
    },
    /// A record breaks a Kinesis size limit.
    #[error("record rejected: {0}")]
    RecordTooLarge(String),
}

type Result<T, E = LocalStreamError> = std::result::Result<T, E>;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ShardDescription {
    shard_id: ShardId,
    hash_key_range: HashKeyRange,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StreamDescription {
    format_version: u32,
    stream_name: String,
    /// A random id given at creation: two streams of the same name (two directories called
    /// `stream`, or one deleted and created again) are told apart by it. Streams created before
    /// it existed have none.
    #[serde(default)]
    stream_id: Option<String>,
    shards: Vec<ShardDescription>,
}

/// An embedded stream in a local directory.
#[derive(Debug)]
pub struct LocalStream {
    dir: PathBuf,
    description: StreamDescription,
    /// Per shard, the end of the log as this writer last left it, to spot foreign or torn writes.
    known_ends: Mutex<HashMap<ShardId, u64>>,
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> LocalStreamError {
    let path = path.to_owned();
    move |source| LocalStreamError::Io {
        action,
        path,
        source,
    }
}

impl LocalStream {
    /// Opens the stream in `dir`, creating it with `shard_count` shards if there is none.
    /// An existing stream keeps its own shard count.
    pub fn open_or_create(dir: &Path, shard_count: u32) -> Result<Self> {
        match Self::open(dir) {
            Err(LocalStreamError::NotFound(_)) => {}
            other => return other,
        }
        fs::create_dir_all(dir).map_err(io_error("create directory", dir))?;
        let stream_name = fs::canonicalize(dir)
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "stream".to_owned());
        let description = StreamDescription {
            format_version: FORMAT_VERSION,
            stream_name,
            stream_id: Some(uuid::Uuid::new_v4().to_string()),
            shards: HashKeyRange::split_evenly(shard_count)
                .into_iter()
                .enumerate()
                .map(|(index, hash_key_range)| ShardDescription {
                    shard_id: format!("shardId-{index:012}"),
                    hash_key_range,
                })
                .collect(),
        };
        let path = dir.join(DESCRIPTION_FILE);
        let temp = dir.join(format!(".{DESCRIPTION_FILE}.{}", std::process::id()));
        let json = serde_json::to_vec_pretty(&description).unwrap_or_default();
        fs::write(&temp, json).map_err(io_error("write", &temp))?;
        // A hard link never replaces an existing file: if another producer created the stream
        // first, its description wins and is opened below.
        let linked = fs::hard_link(&temp, &path);
        let _ = fs::remove_file(&temp);
        match linked {
            Ok(()) => Ok(Self::from_description(dir, description)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Self::open(dir),
            Err(e) => Err(io_error("create", &path)(e)),
        }
    }

    /// Opens an existing stream.
    pub fn open(dir: &Path) -> Result<Self> {
        let path = dir.join(DESCRIPTION_FILE);
        let text = match fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(LocalStreamError::NotFound(dir.to_owned()));
            }
            Err(e) => return Err(io_error("read", &path)(e)),
        };
        let description: StreamDescription =
            serde_json::from_slice(&text).map_err(|e| LocalStreamError::BadDescription {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        if description.format_version != FORMAT_VERSION || description.shards.is_empty() {
            return Err(LocalStreamError::BadDescription {
                path,
                reason: format!(
                    "format version {} with {} shards (this build reads version {FORMAT_VERSION})",
                    description.format_version,
                    description.shards.len()
                ),
            });
        }
        Ok(Self::from_description(dir, description))
    }

    fn from_description(dir: &Path, description: StreamDescription) -> Self {
        Self {
            dir: dir.to_owned(),
            description,
            known_ends: Mutex::new(HashMap::new()),
        }
    }

    pub fn name(&self) -> &str {
        &self.description.stream_name
    }

    /// What tells this stream from any other of the same name: `local:<id>`, or `local:<name>`
    /// for a stream created before streams had ids.
    pub fn identity(&self) -> String {
        let id = self
            .description
            .stream_id
            .as_deref()
            .unwrap_or(&self.description.stream_name);
        format!("local:{id}")
    }

    pub fn shard_ids(&self) -> impl Iterator<Item = &str> {
        self.description.shards.iter().map(|s| s.shard_id.as_str())
    }

    /// Each shard's hash key range, in shard order.
    pub fn hash_key_ranges(&self) -> Vec<HashKeyRange> {
        self.description
            .shards
            .iter()
            .map(|s| s.hash_key_range)
            .collect()
    }

    /// The shard a partition key is assigned to.
    pub fn shard_for(&self, partition_key: &str) -> &str {
        let key = hash_key(partition_key);
        self.description
            .shards
            .iter()
            .find(|s| s.hash_key_range.contains(key))
            .map_or("", |s| s.shard_id.as_str())
    }

    fn log_path(&self, shard_id: &str) -> Result<PathBuf> {
        if !self.shard_ids().any(|s| s == shard_id) {
            return Err(LocalStreamError::UnknownShard {
                stream: self.name().to_owned(),
                shard: shard_id.to_owned(),
            });
        }
        Ok(self.dir.join(format!("{shard_id}.log")))
    }

    /// Appends records, each to the shard its partition key hashes to, and returns where each
    /// landed, in the order given. Returns only once the records are on disk.
    pub fn put_records(&self, entries: &[PutEntry]) -> Result<Vec<PutResult>> {
        let mut by_shard: HashMap<&str, Vec<usize>> = HashMap::new();
        for (index, entry) in entries.iter().enumerate() {
            if entry.partition_key.is_empty() || entry.partition_key.len() > MAX_PARTITION_KEY_LEN {
                return Err(LocalStreamError::RecordTooLarge(format!(
                    "partition key must be 1 to {MAX_PARTITION_KEY_LEN} bytes"
                )));
            }
            if entry.partition_key.len() + entry.data.len() > MAX_RECORD_BYTES {
                return Err(LocalStreamError::RecordTooLarge(format!(
                    "{} bytes exceed the {MAX_RECORD_BYTES}-byte record limit",
                    entry.partition_key.len() + entry.data.len()
                )));
            }
            by_shard
                .entry(self.shard_for(&entry.partition_key))
                .or_default()
                .push(index);
        }
        let mut results = vec![None; entries.len()];
        let arrival = Utc::now().timestamp_millis();
        for (shard_id, indices) in by_shard {
            let offsets = self.append(shard_id, indices.iter().map(|&i| &entries[i]), arrival)?;
            for (index, offset) in indices.into_iter().zip(offsets) {
                results[index] = Some(PutResult {
                    shard_id: shard_id.to_owned(),
                    sequence_number: SequenceNumber::from_u64(offset),
                });
            }
        }
        Ok(results.into_iter().flatten().collect())
    }

    fn append<'a>(
        &self,
        shard_id: &str,
        entries: impl Iterator<Item = &'a PutEntry>,
        arrival: i64,
    ) -> Result<Vec<u64>> {
        let path = self.log_path(shard_id)?;
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io_error("open", &path))?;
        file.lock().map_err(io_error("lock", &path))?;
        let length = file.metadata().map_err(io_error("stat", &path))?.len();
        let mut ends = self.known_ends.lock().unwrap_or_else(|e| e.into_inner());
        let known = ends.get(shard_id).copied().unwrap_or(0);
        let mut end = length;
        if known != length {
            // Someone else appended, or a killed writer left a torn entry: find the last whole one.
            end = valid_end(&path, known.min(length))?;
            if end < length {
                file.set_len(end).map_err(io_error("truncate", &path))?;
            }
        }
        let mut buffer = Vec::new();
        let mut offsets = Vec::new();
        for entry in entries {
            offsets.push(end + buffer.len() as u64);
            write_entry(&mut buffer, arrival, entry);
        }
        file.write_all(&buffer)
            .map_err(io_error("append to", &path))?;
        file.sync_data().map_err(io_error("sync", &path))?;
        ends.insert(shard_id.to_owned(), end + buffer.len() as u64);
        Ok(offsets)
    }

    /// Reads up to `limit` records of a shard from `position`, and stops once they hold
    /// [`MAX_READ_BYTES`]. Fewer (or none) means the reader has caught up with the writers, or
    /// the read is full.
    pub fn read(
        &self,
        shard_id: &str,
        position: &StartingPosition,
        limit: usize,
    ) -> Result<Vec<StreamRecord>> {
        self.shard_log(shard_id)?.read(position, limit)
    }

    /// A shard's log, to read on its own: it owns what it needs, so a read can move to another
    /// thread.
    pub fn shard_log(&self, shard_id: &str) -> Result<ShardLog> {
        Ok(ShardLog {
            shard_id: shard_id.to_owned(),
            path: self.log_path(shard_id)?,
        })
    }

    /// The sequence number of the newest record of a shard, if it has any.
    pub fn latest_sequence_number(&self, shard_id: &str) -> Result<Option<SequenceNumber>> {
        let path = self.log_path(shard_id)?;
        if !path.exists() {
            return Ok(None);
        }
        let mut last = None;
        let mut offset = 0;
        let file = File::open(&path).map_err(io_error("open", &path))?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        // Walks entry headers only; the bodies are skipped with a seek.
        loop {
            let mut header = [0_u8; ENTRY_HEADER_LEN];
            if read_full(&mut reader, &mut header).map_err(io_error("read", &path))? < header.len()
            {
                break;
            }
            let body_len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
            let next = offset + (ENTRY_HEADER_LEN as u64) + u64::from(body_len);
            let file_len = reader
                .get_ref()
                .metadata()
                .map_err(io_error("stat", &path))?
                .len();
            if next > file_len {
                break;
            }
            reader
                .seek_relative(i64::from(body_len))
                .map_err(io_error("seek", &path))?;
            last = Some(SequenceNumber::from_u64(offset));
            offset = next;
        }
        Ok(last)
    }
}

/// One shard's log file ([`LocalStream::shard_log`]).
#[derive(Debug, Clone)]
pub struct ShardLog {
    shard_id: ShardId,
    path: PathBuf,
}

impl ShardLog {
    /// As [`LocalStream::read`].
    pub fn read(&self, position: &StartingPosition, limit: usize) -> Result<Vec<StreamRecord>> {
        let (shard_id, path) = (&self.shard_id, &self.path);
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error("open", path)(e)),
        };
        let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, file);
        let mut offset = 0;
        if let StartingPosition::AfterSequenceNumber(sequence) = position {
            let unknown = || LocalStreamError::UnknownSequence {
                shard: shard_id.to_owned(),
                sequence: sequence.clone(),
            };
            offset = sequence.as_u64().ok_or_else(unknown)?;
            reader
                .seek(SeekFrom::Start(offset))
                .map_err(io_error("seek", path))?;
            let (_, next) = read_entry(&mut reader, offset, path)?.ok_or_else(unknown)?;
            offset = next;
        }
        let mut records = Vec::new();
        let mut bytes = 0;
        while records.len() < limit && bytes < MAX_READ_BYTES {
            match read_entry(&mut reader, offset, path)? {
                Some((record, next)) => {
                    bytes += record.data.len() + record.partition_key.len();
                    records.push(record);
                    offset = next;
                }
                None => break,
            }
        }
        Ok(records)
    }
}

fn write_entry(buffer: &mut Vec<u8>, arrival: i64, entry: &PutEntry) {
    let body_len = BODY_FIXED_LEN + entry.partition_key.len() + entry.data.len();
    let start = buffer.len();
    buffer.extend_from_slice(&(body_len as u32).to_le_bytes());
    buffer.extend_from_slice(&[0; 4]);
    let body_start = buffer.len();
    buffer.extend_from_slice(&arrival.to_le_bytes());
    buffer.extend_from_slice(&(entry.partition_key.len() as u16).to_le_bytes());
    buffer.extend_from_slice(entry.partition_key.as_bytes());
    buffer.extend_from_slice(&entry.data);
    let crc = crc32fast::hash(&buffer[body_start..]);
    buffer[start + 4..body_start].copy_from_slice(&crc.to_le_bytes());
}

/// Reads as many bytes as are there, up to `buf.len()`: a short count means end of log.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Reads the entry at `offset`; `None` at the end of the log or at an entry still being written.
fn read_entry(
    reader: &mut impl Read,
    offset: u64,
    path: &Path,
) -> Result<Option<(StreamRecord, u64)>> {
    let mut header = [0_u8; ENTRY_HEADER_LEN];
    if read_full(reader, &mut header).map_err(io_error("read", path))? < header.len() {
        return Ok(None);
    }
    let body_len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let corrupt = || LocalStreamError::Corrupt {
        path: path.to_owned(),
        offset,
    };
    if !(BODY_FIXED_LEN..=BODY_FIXED_LEN + MAX_RECORD_BYTES).contains(&body_len) {
        return Err(corrupt());
    }
    // The body is read in its parts, each into its own allocation: a record's key and data are
    // kept for as long as its batch, and a body read whole would be a third copy.
    let mut fixed = [0_u8; BODY_FIXED_LEN];
    if read_full(reader, &mut fixed).map_err(io_error("read", path))? < fixed.len() {
        return Ok(None);
    }
    let arrival = i64::from_le_bytes(fixed[..8].try_into().map_err(|_| corrupt())?);
    let key_len = usize::from(u16::from_le_bytes([fixed[8], fixed[9]]));
    let Some(data_len) = body_len.checked_sub(BODY_FIXED_LEN + key_len) else {
        return Err(corrupt());
    };
    let mut key = vec![0_u8; key_len];
    let mut data = vec![0_u8; data_len];
    if read_full(reader, &mut key).map_err(io_error("read", path))? < key_len
        || read_full(reader, &mut data).map_err(io_error("read", path))? < data_len
    {
        return Ok(None);
    }
    let mut hasher = crc32fast::Hasher::new();
    for part in [&fixed[..], &key, &data] {
        hasher.update(part);
    }
    if hasher.finalize() != crc {
        return Err(corrupt());
    }
    let partition_key = String::from_utf8(key).map_err(|_| corrupt())?;
    let record = StreamRecord {
        sequence_number: SequenceNumber::from_u64(offset),
        partition_key,
        data,
        approximate_arrival: DateTime::from_timestamp_millis(arrival).unwrap_or_default(),
    };
    Ok(Some((
        record,
        offset + (ENTRY_HEADER_LEN + body_len) as u64,
    )))
}

/// The end of the last whole, intact entry at or after `from` (an entry boundary).
fn valid_end(path: &Path, from: u64) -> Result<u64> {
    let file = File::open(path).map_err(io_error("open", path))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    reader
        .seek(SeekFrom::Start(from))
        .map_err(io_error("seek", path))?;
    let mut offset = from;
    loop {
        match read_entry(&mut reader, offset, path) {
            Ok(Some((_, next))) => offset = next,
            Ok(None) | Err(LocalStreamError::Corrupt { .. }) => return Ok(offset),
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, data: &str) -> PutEntry {
        PutEntry {
            partition_key: key.to_owned(),
            data: data.as_bytes().to_vec(),
        }
    }

    #[test]
    fn appends_and_reads_back_in_order_per_shard() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stream = LocalStream::open_or_create(dir.path(), 4).expect("created");
        assert_eq!(stream.shard_ids().count(), 4);
        let entries: Vec<_> = (0..100)
            .map(|i| entry(&format!("key-{i}"), &format!("data-{i}")))
            .collect();
        let results = stream.put_records(&entries).expect("put");
        assert_eq!(results.len(), 100);
        for (entry, result) in entries.iter().zip(&results) {
            assert_eq!(result.shard_id, stream.shard_for(&entry.partition_key));
        }
        let mut total = 0;
        for shard in stream.shard_ids() {
            let records = stream
                .read(shard, &StartingPosition::TrimHorizon, usize::MAX)
                .expect("read");
            assert!(
                records
                    .windows(2)
                    .all(|w| w[0].sequence_number < w[1].sequence_number)
            );
            for record in &records {
                assert_eq!(stream.shard_for(&record.partition_key), shard);
                let i: usize = record.partition_key["key-".len()..].parse().expect("index");
                assert_eq!(record.data, entries[i].data);
            }
            total += records.len();
        }
        assert_eq!(total, 100);
    }

    #[test]
    fn reads_after_a_sequence_number_in_pages() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stream = LocalStream::open_or_create(dir.path(), 1).expect("created");
        let entries: Vec<_> = (0..10).map(|i| entry("k", &format!("{i}"))).collect();
        stream.put_records(&entries[..6]).expect("put");
        stream.put_records(&entries[6..]).expect("put");
        let shard = stream.shard_ids().next().expect("one shard").to_owned();
        let first = stream
            .read(&shard, &StartingPosition::TrimHorizon, 4)
            .expect("read");
        assert_eq!(first.len(), 4);
        let after = StartingPosition::AfterSequenceNumber(first[3].sequence_number.clone());
        let rest = stream.read(&shard, &after, 100).expect("read");
        let data: Vec<_> = rest.iter().map(|r| r.data.clone()).collect();
        assert_eq!(
            data,
            (4..10)
                .map(|i| i.to_string().into_bytes())
                .collect::<Vec<_>>()
        );
        assert_eq!(
            stream.latest_sequence_number(&shard).expect("latest"),
            Some(rest[5].sequence_number.clone())
        );
        let end = StartingPosition::AfterSequenceNumber(rest[5].sequence_number.clone());
        assert!(stream.read(&shard, &end, 100).expect("read").is_empty());
    }

    #[test]
    fn a_read_stops_at_ten_mebibytes_as_kinesis_does() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stream = LocalStream::open_or_create(dir.path(), 1).expect("created");
        let big = "x".repeat(900 * 1024);
        let entries: Vec<_> = (0..14).map(|_| entry("k", &big)).collect();
        stream.put_records(&entries[..5]).expect("put");
        stream.put_records(&entries[5..10]).expect("put");
        stream.put_records(&entries[10..]).expect("put");
        let shard = stream.shard_ids().next().expect("one shard").to_owned();
        let first = stream
            .read(&shard, &StartingPosition::TrimHorizon, 100)
            .expect("read");
        assert_eq!(first.len(), 12, "the record that passes 10 MiB is the last");
        let after = StartingPosition::AfterSequenceNumber(first[11].sequence_number.clone());
        assert_eq!(stream.read(&shard, &after, 100).expect("read").len(), 2);
    }

    #[test]
    fn reopening_keeps_the_shard_count_and_data() {
        let dir = tempfile::tempdir().expect("tempdir");
        LocalStream::open_or_create(dir.path(), 3)
            .expect("created")
            .put_records(&[entry("a", "1")])
            .expect("put");
        let again = LocalStream::open_or_create(dir.path(), 8).expect("opened");
        assert_eq!(again.shard_ids().count(), 3);
        again.put_records(&[entry("a", "2")]).expect("put");
        let shard = again.shard_for("a").to_owned();
        let records = again
            .read(&shard, &StartingPosition::TrimHorizon, 10)
            .expect("read");
        assert_eq!(records.len(), 2);
    }

    #[test]
    fn a_torn_tail_is_invisible_and_cut_by_the_next_writer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stream = LocalStream::open_or_create(dir.path(), 1).expect("created");
        stream.put_records(&[entry("a", "whole")]).expect("put");
        let shard = stream.shard_ids().next().expect("shard").to_owned();
        let log = dir.path().join(format!("{shard}.log"));
        let read = |s: &LocalStream| {
            s.read(&shard, &StartingPosition::TrimHorizon, 10)
                .expect("read")
                .into_iter()
                .map(|r| r.data)
                .collect::<Vec<_>>()
        };
        // A writer killed anywhere in an entry: in its header, its arrival, its key, its data.
        let mut torn = Vec::new();
        write_entry(&mut torn, 0, &entry("a", "torn entry"));
        let whole = fs::read(&log).expect("read");
        for cut in 1..torn.len() {
            fs::write(&log, [&whole[..], &torn[..cut]].concat()).expect("write");
            assert_eq!(read(&stream), vec![b"whole".to_vec()], "cut at {cut}");
        }
        fs::write(&log, &whole).expect("write");
        let mut file = OpenOptions::new().append(true).open(&log).expect("open");
        file.write_all(&torn[..torn.len() / 2]).expect("write");
        assert_eq!(read(&stream), vec![b"whole".to_vec()]);
        let writer = LocalStream::open(dir.path()).expect("open");
        writer.put_records(&[entry("a", "next")]).expect("put");
        assert_eq!(read(&writer), vec![b"whole".to_vec(), b"next".to_vec()]);
    }

    #[test]
    fn damage_is_reported_not_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stream = LocalStream::open_or_create(dir.path(), 1).expect("created");
        stream.put_records(&[entry("a", "payload")]).expect("put");
        let shard = stream.shard_ids().next().expect("shard").to_owned();
        let log = dir.path().join(format!("{shard}.log"));
        let mut bytes = fs::read(&log).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&log, &bytes).expect("write");
        assert!(matches!(
            stream.read(&shard, &StartingPosition::TrimHorizon, 10),
            Err(LocalStreamError::Corrupt { offset: 0, .. })
        ));
        // A key length past the body's end (the header's 8 bytes, then the arrival's 8).
        bytes[last] ^= 0xff;
        bytes[16..18].copy_from_slice(&u16::MAX.to_le_bytes());
        fs::write(&log, &bytes).expect("write");
        assert!(matches!(
            stream.read(&shard, &StartingPosition::TrimHorizon, 10),
            Err(LocalStreamError::Corrupt { offset: 0, .. })
        ));
    }

    #[test]
    fn clear_errors_for_missing_streams_and_bad_positions() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(matches!(
            LocalStream::open(&dir.path().join("nope")),
            Err(LocalStreamError::NotFound(_))
        ));
        let stream = LocalStream::open_or_create(dir.path(), 1).expect("created");
        stream.put_records(&[entry("a", "x")]).expect("put");
        let shard = stream.shard_ids().next().expect("shard").to_owned();
        let bad = StartingPosition::AfterSequenceNumber(SequenceNumber::from_u64(3));
        assert!(stream.read(&shard, &bad, 1).is_err());
        assert!(matches!(
            stream.read("shardId-9", &StartingPosition::TrimHorizon, 1),
            Err(LocalStreamError::UnknownShard { .. })
        ));
        assert!(stream.put_records(&[entry("", "x")]).is_err());
    }
}
