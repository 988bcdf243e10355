//! Zero-copy view over Kafka record batch v2 bytes (magic 2).
//!
//! A [`RecordBatch`] wraps a `Bytes` holding exactly one batch and reads header fields in place.
//! Nothing here allocates per record. [`RecordBatch::validate`] is what a produce path calls
//! before a batch is written; [`RecordBatch::validate_stored`] is the weaker check used on
//! bytes read back from disk (compaction may leave gaps between offsets).
//!
//! Layout (big-endian), offsets in bytes from the batch start:
//! ```text
//!  0 baseOffset i64        8 batchLength i32      12 partitionLeaderEpoch i32
//! 16 magic i8             17 crc u32             21 attributes i16
//! 23 lastOffsetDelta i32  27 baseTimestamp i64   35 maxTimestamp i64
//! 43 producerId i64       51 producerEpoch i16   53 baseSequence i32
//! 57 recordCount i32      61 records...
//! ```
//! `batchLength` counts the bytes after itself, so a batch spans `12 + batchLength` bytes.
//! The CRC-32C covers `attributes..end`, so `baseOffset` and `partitionLeaderEpoch` can be
//! rewritten by the broker without recomputing it.

use bytes::{Buf, Bytes, BytesMut};

/// Bytes before the records field.
pub const HEADER_BYTES: usize = 61;
/// Bytes before `batchLength`'s coverage starts (baseOffset + batchLength).
pub const LOG_OVERHEAD_BYTES: usize = 12;
/// Offset of the first byte covered by the CRC.
const CRC_START: usize = 21;

/// CRC-32C (Castagnoli), the record batch checksum: every batch is checked on produce and
/// again when read back from disk, so this is on the hot path both ways.
pub fn crc32c(data: &[u8]) -> u32 {
    // The 32-bit CRC in the low bits of the u64 crc-fast returns for every width.
    crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, data) as u32
}
const OFF_BASE_OFFSET: usize = 0;
const OFF_BATCH_LENGTH: usize = 8;
const OFF_LEADER_EPOCH: usize = 12;
const OFF_MAGIC: usize = 16;
const OFF_CRC: usize = 17;
const OFF_ATTRIBUTES: usize = 21;
const OFF_LAST_OFFSET_DELTA: usize = 23;
const OFF_BASE_TIMESTAMP: usize = 27;
const OFF_MAX_TIMESTAMP: usize = 35;
const OFF_PRODUCER_ID: usize = 43;
const OFF_PRODUCER_EPOCH: usize = 51;
const OFF_BASE_SEQUENCE: usize = 53;
const OFF_RECORD_COUNT: usize = 57;
const _: () = assert!(OFF_RECORD_COUNT + 4 == HEADER_BYTES);
const _: () = assert!(OFF_ATTRIBUTES == CRC_START);

/// Compression codec from attribute bits 0..=2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

/// Timestamp type from attribute bit 3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// Why bytes are not a valid v2 batch. Maps to Kafka's CORRUPT_MESSAGE / INVALID_RECORD.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("record batch truncated: need {needed} bytes, have {available}")]
    Truncated { needed: usize, available: usize },
    #[error("record batch length {batch_length} is out of range (min 49)")]
    BadLength { batch_length: i32 },
    #[error("record batch magic {magic}, only magic 2 is supported")]
    BadMagic { magic: i8 },
    #[error("record batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    BadCrc { stored: u32, computed: u32 },
    #[error("record batch has {record_count} records (must be >= 1)")]
    NoRecords { record_count: i32 },
    #[error(
        "record batch count {record_count} inconsistent with lastOffsetDelta {last_offset_delta}"
    )]
    CountMismatch {
        record_count: i32,
        last_offset_delta: i32,
    },
    #[error("record batch compression codec {codec} is unknown")]
    BadCompression { codec: u8 },
    #[error("record {index} in batch is malformed: {what}")]
    BadRecord { index: usize, what: &'static str },
    #[error("records of a compressed batch cannot be iterated without decompression")]
    Compressed,
}

/// A view over one record batch. Cheap to clone (a `Bytes` handle).
#[derive(Clone, PartialEq, Eq)]
pub struct RecordBatch {
    bytes: Bytes,
}

impl std::fmt::Debug for RecordBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordBatch")
            .field("base_offset", &self.base_offset())
            .field("last_offset_delta", &self.last_offset_delta())
            .field("len", &self.bytes.len())
            .finish()
    }
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}
fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

/// Reads the total size (`12 + batchLength`) of the batch starting at `bytes[0]` without
/// checking anything else. `Ok(None)` means fewer than 12 bytes are available.
pub fn peek_batch_size(bytes: &[u8]) -> Result<Option<usize>, BatchError> {
    if bytes.len() < LOG_OVERHEAD_BYTES {
        return Ok(None);
    }
    let batch_length = be_i32(bytes, OFF_BATCH_LENGTH);
    if batch_length < (HEADER_BYTES - LOG_OVERHEAD_BYTES) as i32 {
        return Err(BatchError::BadLength { batch_length });
    }
    Ok(Some(LOG_OVERHEAD_BYTES + batch_length as usize))
}

impl RecordBatch {
    /// Wraps `bytes`, which must hold exactly one batch: the header must be present and
    /// `batchLength` must match `bytes.len()`. Nothing else is checked; call `validate`.
    pub fn new(bytes: Bytes) -> Result<Self, BatchError> {
        if bytes.len() < HEADER_BYTES {
            return Err(BatchError::Truncated {
                needed: HEADER_BYTES,
                available: bytes.len(),
            });
        }
        let size = peek_batch_size(&bytes)?.unwrap_or(0);
        if size != bytes.len() {
            return Err(BatchError::Truncated {
                needed: size,
                available: bytes.len(),
            });
        }
        Ok(Self { bytes })
    }

    /// The batch bytes, exactly as they would be stored.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }
    /// Consumes the view, returning its bytes.
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }
    /// Total size in bytes (`12 + batchLength`).
    pub fn size_bytes(&self) -> usize {
        self.bytes.len()
    }
    pub fn base_offset(&self) -> i64 {
        be_i64(&self.bytes, OFF_BASE_OFFSET)
    }
    pub fn batch_length(&self) -> i32 {
        be_i32(&self.bytes, OFF_BATCH_LENGTH)
    }
    pub fn partition_leader_epoch(&self) -> i32 {
        be_i32(&self.bytes, OFF_LEADER_EPOCH)
    }
    pub fn magic(&self) -> i8 {
        self.bytes[OFF_MAGIC] as i8
    }
    pub fn crc(&self) -> u32 {
        be_i32(&self.bytes, OFF_CRC) as u32
    }
    pub fn attributes(&self) -> i16 {
        be_i16(&self.bytes, OFF_ATTRIBUTES)
    }
    /// Codec from attribute bits 0..=2; `Err` for the unassigned codes 5..=7.
    pub fn compression(&self) -> Result<Compression, BatchError> {
        match (self.attributes() & 0x7) as u8 {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Gzip),
            2 => Ok(Compression::Snappy),
            3 => Ok(Compression::Lz4),
            4 => Ok(Compression::Zstd),
            codec => Err(BatchError::BadCompression { codec }),
        }
    }
    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes() & 0x8 != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }
    pub fn is_transactional(&self) -> bool {
        self.attributes() & 0x10 != 0
    }
    pub fn is_control(&self) -> bool {
        self.attributes() & 0x20 != 0
    }
    pub fn last_offset_delta(&self) -> i32 {
        be_i32(&self.bytes, OFF_LAST_OFFSET_DELTA)
    }
    /// `baseOffset + lastOffsetDelta`.
    pub fn last_offset(&self) -> i64 {
        self.base_offset()
            .wrapping_add(i64::from(self.last_offset_delta()))
    }
    pub fn base_timestamp(&self) -> i64 {
        be_i64(&self.bytes, OFF_BASE_TIMESTAMP)
    }
    pub fn max_timestamp(&self) -> i64 {
        be_i64(&self.bytes, OFF_MAX_TIMESTAMP)
    }
    pub fn producer_id(&self) -> i64 {
        be_i64(&self.bytes, OFF_PRODUCER_ID)
    }
    pub fn producer_epoch(&self) -> i16 {
        be_i16(&self.bytes, OFF_PRODUCER_EPOCH)
    }
    pub fn base_sequence(&self) -> i32 {
        be_i32(&self.bytes, OFF_BASE_SEQUENCE)
    }
    pub fn record_count(&self) -> i32 {
        be_i32(&self.bytes, OFF_RECORD_COUNT)
    }

    /// CRC-32C over `attributes..end`, as computed now.
    pub fn compute_crc(&self) -> u32 {
        crc32c(&self.bytes[CRC_START..])
    }

    /// Checks what must hold for any stored batch: magic 2, CRC-32C. Length consistency was
    /// checked by `new`. Used on bytes read back from disk.
    pub fn validate_stored(&self) -> Result<(), BatchError> {
        self.validate_magic()?;
        let computed = self.compute_crc();
        if computed != self.crc() {
            return Err(BatchError::BadCrc {
                stored: self.crc(),
                computed,
            });
        }
        Ok(())
    }

    /// Checks the magic byte only: for bytes whose CRC was checked when they were read.
    pub fn validate_magic(&self) -> Result<(), BatchError> {
        if self.magic() != 2 {
            return Err(BatchError::BadMagic {
                magic: self.magic(),
            });
        }
        Ok(())
    }

    /// Full check for a batch arriving from a producer: `validate_stored`, a known codec,
    /// at least one record, and `recordCount == lastOffsetDelta + 1` (Kafka rejects produce
    /// batches whose offset range disagrees with their count).
    pub fn validate(&self) -> Result<(), BatchError> {
        self.validate_stored()?;
        self.compression()?;
        let record_count = self.record_count();
        if record_count < 1 {
            return Err(BatchError::NoRecords { record_count });
        }
        let last_offset_delta = self.last_offset_delta();
        if i64::from(last_offset_delta) + 1 != i64::from(record_count) {
            return Err(BatchError::CountMismatch {
                record_count,
                last_offset_delta,
            });
        }
        Ok(())
    }

    /// Iterates the records of an uncompressed batch. Each item is checked against the
    /// batch's bytes; a malformed record yields an error and ends the iteration.
    pub fn records(&self) -> Result<Records, BatchError> {
        if self.compression()? != Compression::None {
            return Err(BatchError::Compressed);
        }
        Ok(Records {
            rest: self.bytes.slice(HEADER_BYTES..),
            index: 0,
            remaining: self.record_count().max(0) as usize,
            failed: false,
        })
    }
}

/// Rewrites `baseOffset` in place (outside the CRC). `buf` holds one batch.
pub fn set_base_offset(buf: &mut [u8], base_offset: i64) {
    assert!(buf.len() >= HEADER_BYTES);
    buf[OFF_BASE_OFFSET..OFF_BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Stamps `partitionLeaderEpoch` in place (outside the CRC). `buf` holds one batch.
pub fn set_partition_leader_epoch(buf: &mut [u8], epoch: i32) {
    assert!(buf.len() >= HEADER_BYTES);
    buf[OFF_LEADER_EPOCH..OFF_LEADER_EPOCH + 4].copy_from_slice(&epoch.to_be_bytes());
}

/// Stamps a batch with the broker's append time (a `LogAppendTime` topic): sets the timestamp
/// type attribute and `maxTimestamp` to `now_ms`, then recomputes the CRC (both fields are
/// covered). Record timestamps are left as sent: readers use `maxTimestamp` for every record.
pub fn set_log_append_time(buf: &mut [u8], now_ms: i64) {
    let attributes = i16::from_be_bytes([buf[OFF_ATTRIBUTES], buf[OFF_ATTRIBUTES + 1]]) | 0x08;
    buf[OFF_ATTRIBUTES..OFF_ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    buf[OFF_MAX_TIMESTAMP..OFF_MAX_TIMESTAMP + 8].copy_from_slice(&now_ms.to_be_bytes());
    let crc = crc32c(&buf[CRC_START..]);
    buf[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Returns a copy of `batch` with `baseOffset` and `partitionLeaderEpoch` rewritten. The CRC
/// stays valid since neither field is covered.
pub fn with_offset_and_epoch(batch: &RecordBatch, base_offset: i64, epoch: i32) -> RecordBatch {
    let mut buf = BytesMut::from(&batch.bytes[..]);
    set_base_offset(&mut buf, base_offset);
    set_partition_leader_epoch(&mut buf, epoch);
    RecordBatch {
        bytes: buf.freeze(),
    }
}

/// Splits a `Bytes` holding concatenated batches (a Produce `records` field, or a stretch of a
/// log segment) into views. Stops at the first error, which it yields once.
#[derive(Debug)]
pub struct Batches {
    rest: Bytes,
    failed: bool,
}

impl Batches {
    pub fn new(bytes: Bytes) -> Self {
        Self {
            rest: bytes,
            failed: false,
        }
    }
    /// Bytes not yet consumed (a partial trailing batch stays here).
    pub fn remaining(&self) -> &Bytes {
        &self.rest
    }
}

impl Iterator for Batches {
    type Item = Result<RecordBatch, BatchError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        let size = match peek_batch_size(&self.rest) {
            Ok(Some(size)) => size,
            Ok(None) => {
                self.failed = true;
                return Some(Err(BatchError::Truncated {
                    needed: LOG_OVERHEAD_BYTES,
                    available: self.rest.len(),
                }));
            }
            Err(e) => {
                self.failed = true;
                return Some(Err(e));
            }
        };
        if size > self.rest.len() {
            self.failed = true;
            return Some(Err(BatchError::Truncated {
                needed: size,
                available: self.rest.len(),
            }));
        }
        let one = self.rest.split_to(size);
        match RecordBatch::new(one) {
            Ok(b) => Some(Ok(b)),
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// One record of an uncompressed batch; key, value and header slices share the batch bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub attributes: i8,
    pub timestamp_delta: i64,
    pub offset_delta: i32,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(Bytes, Option<Bytes>)>,
}

/// Iterator over the records of an uncompressed batch.
#[derive(Debug)]
pub struct Records {
    rest: Bytes,
    index: usize,
    remaining: usize,
    failed: bool,
}

impl Records {
    /// Records from a records section that was decompressed elsewhere (`count` from the batch
    /// header).
    pub fn from_section(section: Bytes, count: usize) -> Records {
        Records {
            rest: section,
            index: 0,
            remaining: count,
            failed: false,
        }
    }

    /// The same records, each with its whole encoding (length varint included) as a view into
    /// the section: what a rewriter (log compaction) copies to keep a record byte for byte.
    pub fn with_encoding(self) -> EncodedRecords {
        EncodedRecords { records: self }
    }
}

/// Iterator over records with their encodings; see [`Records::with_encoding`].
#[derive(Debug)]
pub struct EncodedRecords {
    records: Records,
}

impl Iterator for EncodedRecords {
    type Item = Result<(Bytes, Record), BatchError>;
    fn next(&mut self) -> Option<Self::Item> {
        let mut encoding = self.records.rest.clone();
        let record = self.records.next()?;
        encoding.truncate(encoding.len() - self.records.rest.len());
        Some(record.map(|r| (encoding, r)))
    }
}

fn read_varlong(buf: &mut Bytes) -> Option<i64> {
    let mut raw: u64 = 0;
    for i in 0..10 {
        if !buf.has_remaining() {
            return None;
        }
        let b = buf.get_u8();
        raw |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some(((raw >> 1) as i64) ^ -((raw & 1) as i64));
        }
    }
    None
}

fn read_varint(buf: &mut Bytes) -> Option<i32> {
    read_varlong(buf).and_then(|v| i32::try_from(v).ok())
}

fn read_nullable(buf: &mut Bytes) -> Result<Option<Bytes>, &'static str> {
    let len = read_varint(buf).ok_or("bad length varint")?;
    if len < -1 {
        return Err("negative length");
    }
    if len == -1 {
        return Ok(None);
    }
    let len = len as usize;
    if len > buf.len() {
        return Err("length past end of record");
    }
    Ok(Some(buf.split_to(len)))
}

fn parse_record(body: &mut Bytes) -> Result<Record, &'static str> {
    if !body.has_remaining() {
        return Err("missing attributes");
    }
    let attributes = body.get_u8() as i8;
    let timestamp_delta = read_varlong(body).ok_or("bad timestampDelta")?;
    let offset_delta = read_varint(body).ok_or("bad offsetDelta")?;
    let key = read_nullable(body)?;
    let value = read_nullable(body)?;
    let header_count = read_varint(body).ok_or("bad header count")?;
    if header_count < 0 {
        return Err("negative header count");
    }
    // Each header takes at least two bytes, so this bounds the allocation by the input.
    if header_count as usize > body.len() / 2 + 1 {
        return Err("header count exceeds record size");
    }
    let mut headers = Vec::with_capacity(header_count as usize);
    for _ in 0..header_count {
        let k = read_nullable(body)?.ok_or("null header key")?;
        let v = read_nullable(body)?;
        headers.push((k, v));
    }
    if body.has_remaining() {
        return Err("trailing bytes in record");
    }
    Ok(Record {
        attributes,
        timestamp_delta,
        offset_delta,
        key,
        value,
        headers,
    })
}

impl Iterator for Records {
    type Item = Result<Record, BatchError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if self.remaining == 0 {
            if self.rest.is_empty() {
                return None;
            }
            self.failed = true;
            return Some(Err(BatchError::BadRecord {
                index: self.index,
                what: "bytes after the last record",
            }));
        }
        let index = self.index;
        let fail = |me: &mut Self, what| {
            me.failed = true;
            Some(Err(BatchError::BadRecord { index, what }))
        };
        let Some(len) = read_varint(&mut self.rest) else {
            return fail(self, "bad length varint");
        };
        if len < 0 || len as usize > self.rest.len() {
            return fail(self, "record length out of range");
        }
        let mut body = self.rest.split_to(len as usize);
        self.index += 1;
        self.remaining -= 1;
        match parse_record(&mut body) {
            Ok(r) => Some(Ok(r)),
            Err(what) => fail(self, what),
        }
    }
}

/// Builds batches: uncompressed, CreateTime. Used by tests and benchmarks, by the group
/// coordinator for its own records in `__consumer_offsets`, and by the `sluice produce` tool;
/// never on the produce path (clients' batches are stored as sent).
pub mod build {
    use super::*;
    use bytes::BufMut;

    fn put_varlong(out: &mut BytesMut, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        loop {
            if z < 0x80 {
                out.put_u8(z as u8);
                return;
            }
            out.put_u8((z as u8 & 0x7f) | 0x80);
            z >>= 7;
        }
    }

    /// Options for [`batch`]; the defaults make a plain producer batch.
    #[derive(Debug, Clone)]
    pub struct BatchSpec {
        pub base_offset: i64,
        pub base_timestamp: i64,
        pub producer_id: i64,
        pub producer_epoch: i16,
        pub base_sequence: i32,
        pub attributes: i16,
        /// Record `i` gets timestamp `base_timestamp + i * timestamp_step`. Default 1.
        pub timestamp_step: i64,
    }

    impl Default for BatchSpec {
        fn default() -> Self {
            Self {
                base_offset: 0,
                base_timestamp: 0,
                producer_id: -1,
                producer_epoch: -1,
                base_sequence: -1,
                attributes: 0,
                timestamp_step: 1,
            }
        }
    }

    /// One record to encode: its key and value, each possibly null.
    pub type KeyValue<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

    /// Encodes one batch of `(key, value)` records with timestamps
    /// `base_timestamp + i * timestamp_step`.
    pub fn batch(spec: &BatchSpec, records: &[KeyValue<'_>]) -> Bytes {
        assert!(!records.is_empty());
        let mut body = BytesMut::new();
        let mut rec = BytesMut::new();
        for (i, (k, v)) in records.iter().enumerate() {
            rec.clear();
            rec.put_u8(0);
            put_varlong(&mut rec, i as i64 * spec.timestamp_step);
            put_varlong(&mut rec, i as i64);
            match k {
                Some(k) => {
                    put_varlong(&mut rec, k.len() as i64);
                    rec.put_slice(k);
                }
                None => put_varlong(&mut rec, -1),
            }
            match v {
                Some(v) => {
                    put_varlong(&mut rec, v.len() as i64);
                    rec.put_slice(v);
                }
                None => put_varlong(&mut rec, -1),
            }
            put_varlong(&mut rec, 0);
            put_varlong(&mut body, rec.len() as i64);
            body.put_slice(&rec);
        }
        let n = records.len() as i32;
        let mut out = BytesMut::with_capacity(HEADER_BYTES + body.len());
        out.put_i64(spec.base_offset);
        out.put_i32((HEADER_BYTES - LOG_OVERHEAD_BYTES + body.len()) as i32);
        out.put_i32(-1);
        out.put_i8(2);
        out.put_u32(0);
        out.put_i16(spec.attributes);
        out.put_i32(n - 1);
        out.put_i64(spec.base_timestamp);
        out.put_i64(spec.base_timestamp + (i64::from(n) - 1) * spec.timestamp_step);
        out.put_i64(spec.producer_id);
        out.put_i16(spec.producer_epoch);
        out.put_i32(spec.base_sequence);
        out.put_i32(n);
        out.put_slice(&body);
        let crc = crc32c(&out[CRC_START..]);
        out[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::build::{BatchSpec, batch};
    use super::*;

    /// The batch checksum is CRC-32C: the standard check value, and the same as the reference
    /// crate's over lengths on both sides of every SIMD block size, at odd alignments.
    #[test]
    fn crc32c_is_castagnoli() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
        let data: Vec<u8> = (0..5000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for len in (0..600).chain([1023, 1024, 1025, 4095, 4096, 4097, 4990]) {
            for start in [0, 1, 3] {
                let d = &data[start..start + len];
                assert_eq!(crc32c(d), crc32c::crc32c(d), "len {len} start {start}");
            }
        }
    }

    fn two_records() -> Bytes {
        batch(
            &BatchSpec {
                base_offset: 7,
                base_timestamp: 1000,
                ..BatchSpec::default()
            },
            &[(Some(b"k1"), Some(b"v1")), (None, Some(b"value-two"))],
        )
    }

    /// Header fields read back what the builder wrote, and a fresh batch validates.
    #[test]
    fn header_fields_and_validate() {
        let b = RecordBatch::new(two_records()).unwrap();
        assert_eq!(b.base_offset(), 7);
        assert_eq!(b.magic(), 2);
        assert_eq!(b.record_count(), 2);
        assert_eq!(b.last_offset_delta(), 1);
        assert_eq!(b.last_offset(), 8);
        assert_eq!(b.base_timestamp(), 1000);
        assert_eq!(b.max_timestamp(), 1001);
        assert_eq!(b.producer_id(), -1);
        assert_eq!(b.producer_epoch(), -1);
        assert_eq!(b.base_sequence(), -1);
        assert_eq!(b.partition_leader_epoch(), -1);
        assert_eq!(b.compression().unwrap(), Compression::None);
        assert_eq!(b.timestamp_type(), TimestampType::CreateTime);
        assert!(!b.is_transactional());
        assert!(!b.is_control());
        assert_eq!(b.batch_length() as usize + 12, b.size_bytes());
        b.validate().unwrap();
    }

    /// Rewriting the base offset and leader epoch keeps the CRC valid.
    #[test]
    fn rewrite_outside_crc() {
        let b = RecordBatch::new(two_records()).unwrap();
        let r = with_offset_and_epoch(&b, 1 << 40, 9);
        assert_eq!(r.base_offset(), 1 << 40);
        assert_eq!(r.partition_leader_epoch(), 9);
        r.validate().unwrap();
        assert_eq!(r.bytes()[21..], b.bytes()[21..]);
    }

    /// Every single-bit flip inside the CRC's coverage is detected.
    #[test]
    fn bit_flips_detected() {
        let raw = two_records();
        for byte in CRC_START..raw.len() {
            for bit in 0..8 {
                let mut m = raw.to_vec();
                m[byte] ^= 1 << bit;
                let b = RecordBatch::new(Bytes::from(m)).unwrap();
                assert!(
                    matches!(b.validate(), Err(BatchError::BadCrc { .. })),
                    "{byte}:{bit}"
                );
            }
        }
    }

    /// Bad magic, short input, inconsistent length, zero records, count mismatch.
    #[test]
    fn typed_errors() {
        let raw = two_records();
        let mut m = raw.to_vec();
        m[16] = 1;
        let b = RecordBatch::new(Bytes::from(m)).unwrap();
        assert_eq!(b.validate(), Err(BatchError::BadMagic { magic: 1 }));

        assert!(matches!(
            RecordBatch::new(raw.slice(..40)),
            Err(BatchError::Truncated { .. })
        ));
        assert!(matches!(
            RecordBatch::new(raw.slice(..raw.len() - 1)),
            Err(BatchError::Truncated { .. })
        ));
        let mut m = raw.to_vec();
        m[8..12].copy_from_slice(&3i32.to_be_bytes());
        assert_eq!(
            RecordBatch::new(Bytes::from(m)),
            Err(BatchError::BadLength { batch_length: 3 })
        );

        // Count 0 and a count that disagrees with lastOffsetDelta, with the CRC fixed up.
        for (count, expect_no_records) in [(0i32, true), (5, false)] {
            let mut m = raw.to_vec();
            m[57..61].copy_from_slice(&count.to_be_bytes());
            let crc = crc32c(&m[21..]);
            m[17..21].copy_from_slice(&crc.to_be_bytes());
            let b = RecordBatch::new(Bytes::from(m)).unwrap();
            let err = b.validate().unwrap_err();
            if expect_no_records {
                assert_eq!(err, BatchError::NoRecords { record_count: 0 });
            } else {
                assert!(matches!(err, BatchError::CountMismatch { .. }));
            }
            b.validate_stored().unwrap();
        }
    }

    /// Several concatenated batches split into views; a partial tail is an error, once.
    #[test]
    fn split_concatenated() {
        let a = two_records();
        let b = batch(&BatchSpec::default(), &[(None, Some(b"x"))]);
        let mut all = BytesMut::new();
        all.extend_from_slice(&a);
        all.extend_from_slice(&b);
        all.extend_from_slice(&a[..30]);
        let v: Vec<_> = Batches::new(all.freeze()).collect();
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].as_ref().unwrap().bytes(), &a);
        assert_eq!(v[1].as_ref().unwrap().bytes(), &b);
        assert!(matches!(v[2], Err(BatchError::Truncated { .. })));
        assert_eq!(Batches::new(Bytes::new()).count(), 0);
    }

    /// Records of an uncompressed batch decode to their keys and values.
    #[test]
    fn record_iteration() {
        let b = RecordBatch::new(two_records()).unwrap();
        let recs: Vec<_> = b.records().unwrap().map(Result::unwrap).collect();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(recs[0].value.as_deref(), Some(&b"v1"[..]));
        assert_eq!(recs[1].key, None);
        assert_eq!(recs[1].value.as_deref(), Some(&b"value-two"[..]));
        assert_eq!(recs[1].offset_delta, 1);
        assert_eq!(recs[1].timestamp_delta, 1);
    }

    /// Each record's encoding is exactly its bytes in the section, length varint included,
    /// and the encodings laid end to end are the section.
    #[test]
    fn record_encodings() {
        let b = RecordBatch::new(two_records()).unwrap();
        let section = b.bytes().slice(HEADER_BYTES..);
        let recs: Vec<_> = b
            .records()
            .unwrap()
            .with_encoding()
            .map(Result::unwrap)
            .collect();
        assert_eq!(recs.len(), 2);
        let joined: Vec<u8> = recs.iter().flat_map(|(e, _)| e.to_vec()).collect();
        assert_eq!(joined, section.to_vec());
        let mut again = Records::from_section(recs[1].0.clone(), 1);
        assert_eq!(again.next().unwrap().unwrap(), recs[1].1);
        assert!(again.next().is_none());
        // A malformed record ends the iteration with its error, as `Records` does.
        let mut cut = Records::from_section(section.slice(..section.len() - 1), 2).with_encoding();
        assert!(cut.next().unwrap().is_ok());
        assert!(cut.next().unwrap().is_err());
        assert!(cut.next().is_none());
    }

    /// A record with a hand-encoded header, and malformed records that must not panic.
    #[test]
    fn record_headers_and_garbage() {
        // len, attrs 0, ts 0, off 0, key null (-1 -> 0x01), value "a", 1 header "h"="v"
        let rec: &[u8] = &[0, 0, 0, 0x01, 0x02, b'a', 0x02, 0x02, b'h', 0x02, b'v'];
        let mut buf = vec![rec.len() as u8 * 2];
        buf.extend_from_slice(rec);
        let mut it = Records {
            rest: Bytes::from(buf),
            index: 0,
            remaining: 1,
            failed: false,
        };
        let r = it.next().unwrap().unwrap();
        assert_eq!(r.headers.len(), 1);
        assert_eq!(&r.headers[0].0[..], b"h");
        assert!(it.next().is_none());
        // Deterministic garbage: must yield errors or records, never panic.
        let mut x: u32 = 12345;
        for _ in 0..2000 {
            let mut g = Vec::new();
            for _ in 0..(x % 40) {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                g.push((x >> 16) as u8);
            }
            let it = Records {
                rest: Bytes::from(g.clone()),
                index: 0,
                remaining: 3,
                failed: false,
            };
            for _ in it {}
            for _ in Batches::new(Bytes::from(g)) {}
        }
    }
}
