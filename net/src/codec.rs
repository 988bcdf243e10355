//! The hand-written runtime under the generated messages: `Decoder`, `Encoder`, `DecodeError`,
//! `StrBytes`, `Uuid` (and, in `entity.rs`, the entity newtypes such as `TopicName`).
//!
//! Invariants:
//! - Decoding never panics and never allocates from an unchecked wire count: every length and
//!   array count is compared with the bytes remaining first, and an array's initial capacity is
//!   further capped so that it occupies no more memory than the bytes remaining.
//! - Decoded strings, bytes and record batches are slices of the input `Bytes` (zero copy).
//! - The encoder copies only small fields; every `records` value becomes its own chunk.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::fmt;

/// A tagged field this codec does not know: its tag and raw value, re-encoded unchanged.
pub type TaggedField = (u32, Bytes);

/// What went wrong while decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeErrorKind {
    /// The field needs `needed` bytes but only `remaining` are left.
    UnexpectedEof { needed: u64, remaining: usize },
    /// A length or count below -1 (or below 0 where null is not allowed).
    NegativeLength(i64),
    /// A length or array count larger than the bytes left could possibly hold.
    LengthTooLarge { length: u64, remaining: usize },
    /// An unsigned varint longer than 5 bytes.
    VarintTooLong,
    /// A string that is not UTF-8.
    InvalidUtf8,
    /// Null where this version does not allow it.
    UnexpectedNull,
    /// A known tagged field whose value did not fill its declared size exactly.
    TaggedFieldSize { tag: u32, unread: usize },
    /// Bytes left after the end of the message.
    TrailingBytes(usize),
    /// A version outside the schema's valid versions.
    UnsupportedVersion,
    /// An API key with no schema.
    UnknownApiKey,
}

impl fmt::Display for DecodeErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnexpectedEof { needed, remaining } => {
                write!(
                    f,
                    "needs {needed} bytes, {remaining} left (truncated frame?)"
                )
            }
            Self::NegativeLength(n) => write!(f, "negative length {n}"),
            Self::LengthTooLarge { length, remaining } => {
                write!(
                    f,
                    "length or count {length} exceeds the {remaining} bytes left"
                )
            }
            Self::VarintTooLong => write!(f, "unsigned varint longer than 5 bytes"),
            Self::InvalidUtf8 => write!(f, "string is not valid UTF-8"),
            Self::UnexpectedNull => write!(f, "null where this version allows none"),
            Self::TaggedFieldSize { tag, unread } => {
                write!(f, "tagged field {tag} has {unread} bytes beyond its value")
            }
            Self::TrailingBytes(n) => write!(f, "{n} bytes after the end of the message"),
            Self::UnsupportedVersion => write!(f, "version not in the schema"),
            Self::UnknownApiKey => write!(f, "unknown API key"),
        }
    }
}

/// A decoding failure, naming the API key, version and field (`Struct.field`) where it happened.
/// `api_key` is -1 while decoding a header, before the key is known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("decoding api key {api_key} version {version}, field {field}: {kind}")]
pub struct DecodeError {
    pub api_key: i16,
    pub version: i16,
    pub field: &'static str,
    pub kind: DecodeErrorKind,
}

/// The value of a `records` field: record batches as one or more `Bytes` chunks.
///
/// A decoded field is one chunk, a view into the received frame. A response can carry several
/// batches read from different buffers (cache, disk) as separate chunks: the encoder writes each
/// as its own chunk of the vectored write, so no batch is copied. Equality compares contents,
/// not how they are split into chunks.
#[derive(Clone, Default)]
pub struct Records {
    first: Bytes,
    rest: Vec<Bytes>,
}

impl Records {
    /// No records (an empty, non-null field).
    pub fn new() -> Records {
        Records::default()
    }

    /// Total size in bytes.
    pub fn len(&self) -> usize {
        self.first.len() + self.rest.iter().map(Bytes::len).sum::<usize>()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends a chunk (no copy); empty chunks are dropped.
    pub fn push(&mut self, chunk: Bytes) {
        if chunk.is_empty() {
        } else if self.first.is_empty() && self.rest.is_empty() {
            self.first = chunk;
        } else {
            self.rest.push(chunk);
        }
    }

    /// The non-empty chunks, in order.
    pub fn chunks(&self) -> impl Iterator<Item = &Bytes> {
        std::iter::once(&self.first)
            .chain(self.rest.iter())
            .filter(|c| !c.is_empty())
    }

    /// The contents as one `Bytes`: no copy when there is one chunk, one copy otherwise.
    pub fn to_bytes(&self) -> Bytes {
        if self.rest.is_empty() {
            return self.first.clone();
        }
        let mut out = BytesMut::with_capacity(self.len());
        for c in self.chunks() {
            out.put_slice(c);
        }
        out.freeze()
    }

    /// Like [`Records::to_bytes`], consuming the value.
    pub fn into_bytes(self) -> Bytes {
        if self.rest.is_empty() {
            self.first
        } else {
            self.to_bytes()
        }
    }
}

impl From<Bytes> for Records {
    fn from(first: Bytes) -> Records {
        Records {
            first,
            rest: Vec::new(),
        }
    }
}

impl FromIterator<Bytes> for Records {
    fn from_iter<I: IntoIterator<Item = Bytes>>(chunks: I) -> Records {
        let mut r = Records::new();
        for c in chunks {
            r.push(c);
        }
        r
    }
}

impl PartialEq for Records {
    fn eq(&self, other: &Records) -> bool {
        if self.len() != other.len() {
            return false;
        }
        let mut a = self.chunks().flat_map(|c| c.iter());
        let mut b = other.chunks().flat_map(|c| c.iter());
        loop {
            match (a.next(), b.next()) {
                (None, None) => return true,
                (x, y) if x == y => {}
                _ => return false,
            }
        }
    }
}

impl Eq for Records {}

impl std::fmt::Debug for Records {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Records({} bytes in {} chunks)",
            self.len(),
            self.chunks().count()
        )
    }
}

/// A UTF-8 string that is a view into a received frame (no copy). Derefs to `&str`.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct StrBytes(Bytes);

/// Hashes like `str` (not like `[u8]`, which `Bytes` does), as `Borrow<str>` requires.
impl std::hash::Hash for StrBytes {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl StrBytes {
    /// Validates `bytes` as UTF-8 without copying.
    pub fn from_utf8(bytes: Bytes) -> Result<StrBytes, std::str::Utf8Error> {
        std::str::from_utf8(&bytes)?;
        Ok(StrBytes(bytes))
    }

    /// A string with static lifetime, no allocation.
    pub const fn from_static(s: &'static str) -> StrBytes {
        StrBytes(Bytes::from_static(s.as_bytes()))
    }

    /// The string's bytes, sharing the frame's buffer.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// The string.
    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor validated (or was given) UTF-8, and `Bytes` is immutable.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }
}

impl std::ops::Deref for StrBytes {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for StrBytes {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl std::borrow::Borrow<str> for StrBytes {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl From<String> for StrBytes {
    fn from(s: String) -> StrBytes {
        StrBytes(Bytes::from(s))
    }
}

impl From<&str> for StrBytes {
    fn from(s: &str) -> StrBytes {
        StrBytes(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl PartialEq<str> for StrBytes {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for StrBytes {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Debug for StrBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for StrBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

/// A Kafka UUID (topic ids, directory ids): 16 bytes, big-endian on the wire.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Uuid(pub [u8; 16]);

impl Uuid {
    /// The all-zero UUID, Kafka's "no id".
    pub const ZERO: Uuid = Uuid([0; 16]);
}

impl fmt::Debug for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Reads Kafka primitives from a `Bytes` frame body. Slices it hands out share the buffer.
///
/// Lives on one core, used for one message at a time; cheap to create.
pub struct Decoder {
    buf: Bytes,
    api_key: i16,
    version: i16,
    field: &'static str,
}

impl fmt::Debug for Decoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decoder")
            .field("remaining", &self.buf.len())
            .field("api_key", &self.api_key)
            .field("version", &self.version)
            .field("field", &self.field)
            .finish()
    }
}

impl Decoder {
    /// A decoder over `buf`, with no API context yet.
    pub fn new(buf: Bytes) -> Decoder {
        Decoder {
            buf,
            api_key: -1,
            version: -1,
            field: "",
        }
    }

    /// Bytes not yet decoded.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// The undecoded rest of the input.
    pub fn into_rest(self) -> Bytes {
        self.buf
    }

    /// Sets the API key and version that errors will name.
    pub fn set_context(&mut self, api_key: i16, version: i16) {
        self.api_key = api_key;
        self.version = version;
    }

    /// Sets the field that errors will name (generated code calls this before each field).
    #[inline]
    pub fn at(&mut self, field: &'static str) {
        self.field = field;
    }

    /// An error of `kind` at the current API, version and field.
    pub fn error(&self, kind: DecodeErrorKind) -> DecodeError {
        DecodeError {
            api_key: self.api_key,
            version: self.version,
            field: self.field,
            kind,
        }
    }

    /// Fails with `TrailingBytes` unless everything was decoded.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(self.error(DecodeErrorKind::TrailingBytes(self.buf.len())))
        }
    }

    #[inline]
    fn need(&self, n: usize) -> Result<(), DecodeError> {
        if self.buf.len() < n {
            Err(self.error(DecodeErrorKind::UnexpectedEof {
                needed: n as u64,
                remaining: self.buf.len(),
            }))
        } else {
            Ok(())
        }
    }

    /// Reads a boolean; like Kafka, any non-zero byte is true.
    pub fn bool(&mut self) -> Result<bool, DecodeError> {
        Ok(self.i8()? != 0)
    }

    pub fn i8(&mut self) -> Result<i8, DecodeError> {
        self.need(1)?;
        Ok(self.buf.get_i8())
    }

    pub fn i16(&mut self) -> Result<i16, DecodeError> {
        self.need(2)?;
        Ok(self.buf.get_i16())
    }

    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        self.need(2)?;
        Ok(self.buf.get_u16())
    }

    pub fn i32(&mut self) -> Result<i32, DecodeError> {
        self.need(4)?;
        Ok(self.buf.get_i32())
    }

    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        self.need(4)?;
        Ok(self.buf.get_u32())
    }

    pub fn i64(&mut self) -> Result<i64, DecodeError> {
        self.need(8)?;
        Ok(self.buf.get_i64())
    }

    pub fn f64(&mut self) -> Result<f64, DecodeError> {
        self.need(8)?;
        Ok(self.buf.get_f64())
    }

    pub fn uuid(&mut self) -> Result<Uuid, DecodeError> {
        self.need(16)?;
        let mut u = [0u8; 16];
        self.buf.copy_to_slice(&mut u);
        Ok(Uuid(u))
    }

    /// Reads an unsigned varint of at most 5 bytes (Kafka's limit for u32).
    pub fn uvarint(&mut self) -> Result<u32, DecodeError> {
        let mut value: u32 = 0;
        for i in 0..5 {
            let b = self.i8()? as u8;
            value |= u32::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(self.error(DecodeErrorKind::VarintTooLong))
    }

    /// Reads a length prefix: `None` for null. Non-flexible lengths are `i16` (strings) or
    /// `i32` (bytes, arrays); flexible ones are unsigned varints holding length + 1.
    #[inline]
    fn length(&mut self, flexible: bool, short: bool) -> Result<Option<usize>, DecodeError> {
        let n: i64 = if flexible {
            i64::from(self.uvarint()?) - 1
        } else if short {
            i64::from(self.i16()?)
        } else {
            i64::from(self.i32()?)
        };
        if n == -1 {
            return Ok(None);
        }
        if n < 0 {
            return Err(self.error(DecodeErrorKind::NegativeLength(n)));
        }
        Ok(Some(n as usize))
    }

    /// Splits off `n` bytes, failing if fewer remain.
    fn take(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        self.need(n)?;
        Ok(self.buf.split_to(n))
    }

    fn required<T>(&self, v: Option<T>) -> Result<T, DecodeError> {
        v.ok_or_else(|| self.error(DecodeErrorKind::UnexpectedNull))
    }

    pub fn nullable_string(&mut self, flexible: bool) -> Result<Option<StrBytes>, DecodeError> {
        let Some(n) = self.length(flexible, true)? else {
            return Ok(None);
        };
        let b = self.take(n)?;
        match StrBytes::from_utf8(b) {
            Ok(s) => Ok(Some(s)),
            Err(_) => Err(self.error(DecodeErrorKind::InvalidUtf8)),
        }
    }

    pub fn string(&mut self, flexible: bool) -> Result<StrBytes, DecodeError> {
        let s = self.nullable_string(flexible)?;
        self.required(s)
    }

    pub fn nullable_bytes(&mut self, flexible: bool) -> Result<Option<Bytes>, DecodeError> {
        let Some(n) = self.length(flexible, false)? else {
            return Ok(None);
        };
        self.take(n).map(Some)
    }

    pub fn bytes(&mut self, flexible: bool) -> Result<Bytes, DecodeError> {
        let b = self.nullable_bytes(flexible)?;
        self.required(b)
    }

    /// A `records` field: one chunk, a view into the frame.
    pub fn records(&mut self, flexible: bool) -> Result<Records, DecodeError> {
        self.bytes(flexible).map(Records::from)
    }

    pub fn nullable_records(&mut self, flexible: bool) -> Result<Option<Records>, DecodeError> {
        Ok(self.nullable_bytes(flexible)?.map(Records::from))
    }

    /// Reads an array count and checks that `count * min_element_bytes` fits in what remains.
    fn array_count(
        &mut self,
        flexible: bool,
        min_element_bytes: usize,
    ) -> Result<Option<usize>, DecodeError> {
        let Some(count) = self.length(flexible, false)? else {
            return Ok(None);
        };
        let needed = (count as u64).saturating_mul(min_element_bytes.max(1) as u64);
        if needed > self.buf.len() as u64 {
            return Err(self.error(DecodeErrorKind::LengthTooLarge {
                length: count as u64,
                remaining: self.buf.len(),
            }));
        }
        Ok(Some(count))
    }

    /// Reads a nullable array whose elements take at least `min_element_bytes` on the wire.
    pub fn nullable_array<T>(
        &mut self,
        flexible: bool,
        min_element_bytes: usize,
        mut element: impl FnMut(&mut Decoder) -> Result<T, DecodeError>,
    ) -> Result<Option<Vec<T>>, DecodeError> {
        let field = self.field;
        let Some(count) = self.array_count(flexible, min_element_bytes)? else {
            return Ok(None);
        };
        // The count is bounded by the bytes left; also bound the memory reserved up front by
        // them, since an element can be bigger in memory than on the wire.
        let capacity = count.min(self.buf.len() / std::mem::size_of::<T>().max(1));
        let mut out = Vec::with_capacity(capacity);
        for _ in 0..count {
            out.push(element(self)?);
            self.field = field;
        }
        Ok(Some(out))
    }

    pub fn array<T>(
        &mut self,
        flexible: bool,
        min_element_bytes: usize,
        element: impl FnMut(&mut Decoder) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        let a = self.nullable_array(flexible, min_element_bytes, element)?;
        self.required(a)
    }

    /// Reads a nullable struct: an `i8` marker (negative = null) then the struct.
    pub fn nullable_struct<T>(
        &mut self,
        decode: impl FnOnce(&mut Decoder) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, DecodeError> {
        if self.i8()? < 0 {
            Ok(None)
        } else {
            decode(self).map(Some)
        }
    }

    /// Reads a tagged-field section. `known(d, tag)` decodes a known tag from `d` (which holds
    /// exactly that field's bytes) and returns true, or returns false for an unknown tag, which
    /// is then kept raw.
    pub fn tagged_fields(
        &mut self,
        mut known: impl FnMut(&mut Decoder, u32) -> Result<bool, DecodeError>,
    ) -> Result<Vec<TaggedField>, DecodeError> {
        let count = self.uvarint()? as usize;
        // Each tagged field takes at least two bytes (tag and size).
        if count.saturating_mul(2) > self.buf.len() {
            return Err(self.error(DecodeErrorKind::LengthTooLarge {
                length: count as u64,
                remaining: self.buf.len(),
            }));
        }
        let mut unknown = Vec::new();
        for _ in 0..count {
            let tag = self.uvarint()?;
            let size = self.uvarint()? as usize;
            let data = self.take(size)?;
            let mut sub = Decoder { buf: data, ..*self };
            if known(&mut sub, tag)? {
                if !sub.buf.is_empty() {
                    return Err(sub.error(DecodeErrorKind::TaggedFieldSize {
                        tag,
                        unread: sub.buf.len(),
                    }));
                }
            } else {
                unknown.push((tag, sub.buf));
            }
        }
        Ok(unknown)
    }
}

/// Writes Kafka primitives into a list of `Bytes` chunks for a vectored write.
///
/// Small fields go into one growing buffer; each `records` value is appended as its own chunk,
/// sharing the caller's buffer, so record batches are never copied. Lives on one core.
///
/// Encoding is infallible for values the wire can express. It panics (a bug in the caller) on a
/// string over 32767 bytes in a non-flexible version or a length over `i32::MAX`, which Kafka
/// cannot encode either. A field absent from the chosen version is skipped, and `None` in a
/// version where the field is not nullable is written as empty.
#[derive(Debug, Default)]
pub struct Encoder {
    buf: BytesMut,
    chunks: Vec<Bytes>,
    /// With a frame, the 4-byte size prefix sits at the start of `head` (or of `buf` while
    /// nothing was flushed) and is filled in by `finish`.
    framed: bool,
    head: Option<BytesMut>,
    len: usize,
}

impl Encoder {
    /// An encoder for a bare body (no size prefix).
    pub fn new() -> Encoder {
        Encoder::default()
    }

    /// An encoder for a whole frame: `finish` puts the 4-byte big-endian size of everything
    /// written after it at the front, so the size goes out first with no second pass.
    pub fn framed() -> Encoder {
        let mut e = Encoder {
            framed: true,
            ..Encoder::default()
        };
        e.buf.reserve(256);
        e.buf.put_i32(0);
        e.len = 4;
        e
    }

    /// Bytes written so far, including a frame's size prefix.
    pub fn encoded_len(&self) -> usize {
        self.len
    }

    fn flush(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let part = self.buf.split();
        if self.framed && self.head.is_none() {
            self.head = Some(part);
        } else {
            self.chunks.push(part.freeze());
        }
    }

    /// The encoded chunks, in order. For a framed encoder the first starts with the size.
    pub fn finish(mut self) -> Vec<Bytes> {
        if self.framed {
            let size = (self.len - 4) as u32;
            let mut head = match self.head.take() {
                Some(h) => {
                    if !self.buf.is_empty() {
                        self.chunks.push(self.buf.split().freeze());
                    }
                    h
                }
                None => self.buf.split(),
            };
            head[..4].copy_from_slice(&size.to_be_bytes());
            let mut out = Vec::with_capacity(self.chunks.len() + 1);
            out.push(head.freeze());
            out.append(&mut self.chunks);
            out
        } else {
            self.flush();
            self.chunks
        }
    }

    /// All chunks copied into one buffer (for tests and small messages).
    pub fn finish_contiguous(self) -> Bytes {
        let chunks = self.finish();
        if chunks.len() == 1 {
            return chunks.into_iter().next().unwrap_or_default();
        }
        let mut out = BytesMut::with_capacity(chunks.iter().map(Bytes::len).sum());
        for c in chunks {
            out.put_slice(&c);
        }
        out.freeze()
    }

    #[inline]
    fn put(&mut self, b: &[u8]) {
        self.buf.put_slice(b);
        self.len += b.len();
    }

    pub fn bool(&mut self, v: bool) {
        self.put(&[u8::from(v)]);
    }

    pub fn i8(&mut self, v: i8) {
        self.put(&v.to_be_bytes());
    }

    pub fn i16(&mut self, v: i16) {
        self.put(&v.to_be_bytes());
    }

    pub fn u16(&mut self, v: u16) {
        self.put(&v.to_be_bytes());
    }

    pub fn i32(&mut self, v: i32) {
        self.put(&v.to_be_bytes());
    }

    pub fn u32(&mut self, v: u32) {
        self.put(&v.to_be_bytes());
    }

    pub fn i64(&mut self, v: i64) {
        self.put(&v.to_be_bytes());
    }

    pub fn f64(&mut self, v: f64) {
        self.put(&v.to_be_bytes());
    }

    pub fn uuid(&mut self, v: &Uuid) {
        self.put(&v.0);
    }

    pub fn uvarint(&mut self, mut v: u32) {
        let mut tmp = [0u8; 5];
        let mut i = 0;
        while v >= 0x80 {
            tmp[i] = (v as u8) | 0x80;
            v >>= 7;
            i += 1;
        }
        tmp[i] = v as u8;
        self.put(&tmp[..=i]);
    }

    /// Writes a length prefix; `None` is null. Lengths must fit the wire type: Kafka itself
    /// cannot express more, so a longer value is a bug in the caller.
    fn length(&mut self, n: Option<usize>, flexible: bool, short: bool) {
        match (n, flexible) {
            (None, true) => self.uvarint(0),
            (None, false) if short => self.i16(-1),
            (None, false) => self.i32(-1),
            (Some(n), true) => {
                let v = u32::try_from(n).ok().and_then(|n| n.checked_add(1));
                self.uvarint(v.expect("length exceeds the wire format"));
            }
            (Some(n), false) if short => {
                self.i16(i16::try_from(n).expect("string longer than 32767 bytes"));
            }
            (Some(n), false) => self.i32(i32::try_from(n).expect("length exceeds i32")),
        }
    }

    pub fn string(&mut self, s: &str, flexible: bool) {
        self.length(Some(s.len()), flexible, true);
        self.put(s.as_bytes());
    }

    pub fn nullable_string(&mut self, s: Option<&str>, flexible: bool) {
        match s {
            None => self.length(None, flexible, true),
            Some(s) => self.string(s, flexible),
        }
    }

    pub fn bytes(&mut self, b: &[u8], flexible: bool) {
        self.length(Some(b.len()), flexible, false);
        self.put(b);
    }

    pub fn nullable_bytes(&mut self, b: Option<&[u8]>, flexible: bool) {
        match b {
            None => self.length(None, flexible, false),
            Some(b) => self.bytes(b, flexible),
        }
    }

    /// Writes a `records` field: the length here, each chunk of batches as its own chunk of
    /// the output (no copy).
    pub fn records(&mut self, r: Option<&Records>, flexible: bool) {
        match r {
            None => self.length(None, flexible, false),
            Some(r) => {
                self.length(Some(r.len()), flexible, false);
                for c in r.chunks() {
                    self.flush();
                    self.chunks.push(c.clone());
                    self.len += c.len();
                }
            }
        }
    }

    pub fn array_len(&mut self, n: usize, flexible: bool) {
        self.length(Some(n), flexible, false);
    }

    pub fn nullable_array_len(&mut self, n: Option<usize>, flexible: bool) {
        self.length(n, flexible, false);
    }

    /// Writes one tagged field: tag, size, then what `value` encodes.
    pub fn tagged_field(&mut self, tag: u32, value: impl FnOnce(&mut Encoder)) {
        let mut sub = Encoder::new();
        value(&mut sub);
        let data = sub.finish_contiguous();
        self.uvarint(tag);
        self.uvarint(u32::try_from(data.len()).expect("tagged field over 4 GiB"));
        self.put(&data);
    }

    pub fn unknown_tagged_fields(&mut self, fields: &[TaggedField]) {
        for (tag, data) in fields {
            self.uvarint(*tag);
            self.uvarint(u32::try_from(data.len()).expect("tagged field over 4 GiB"));
            self.put(data);
        }
    }
}

/// A small seeded generator of random field values for the round-trip and mutation tests
/// (splitmix64; the same seed always gives the same values).
#[cfg(feature = "testgen")]
#[derive(Debug, Clone)]
pub struct Rng(u64);

#[cfg(feature = "testgen")]
impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.u64() % n }
    }

    pub fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }

    pub fn bool(&mut self) -> bool {
        self.u64() & 1 == 1
    }

    /// A finite float (NaN would break `==` in round trips).
    pub fn f64(&mut self) -> f64 {
        (self.u64() as i64) as f64 / 1024.0
    }

    pub fn uuid(&mut self) -> Uuid {
        let mut u = [0u8; 16];
        u[..8].copy_from_slice(&self.u64().to_be_bytes());
        u[8..].copy_from_slice(&self.u64().to_be_bytes());
        Uuid(u)
    }

    /// An array length: usually 0-2, sometimes up to 4.
    pub fn count(&mut self) -> usize {
        if self.one_in(8) {
            3 + self.below(2) as usize
        } else {
            self.below(3) as usize
        }
    }

    pub fn string(&mut self) -> StrBytes {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-._\xc3\xa9";
        let n = self.below(12) as usize;
        let mut s = String::with_capacity(n);
        for _ in 0..n {
            let c = ALPHABET[self.below(38) as usize];
            s.push(c as char);
        }
        if self.one_in(5) {
            s.push('é');
        }
        StrBytes::from(s)
    }

    pub fn bytes(&mut self) -> Bytes {
        let n = self.below(40) as usize;
        (0..n).map(|_| self.u64() as u8).collect::<Vec<u8>>().into()
    }

    /// Random bytes split into zero to three chunks, so encoding several chunks is exercised.
    pub fn records(&mut self) -> Records {
        let n = self.below(4) as usize;
        (0..n).map(|_| self.bytes()).collect()
    }

    /// Zero to two unknown tagged fields, with tags far above any Kafka uses.
    pub fn unknown_tagged_fields(&mut self) -> Vec<TaggedField> {
        let n = if self.one_in(3) { 1 + self.below(2) } else { 0 };
        (0..n)
            .map(|i| (10_000 + i as u32 * 7, self.bytes()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoder(bytes: &[u8]) -> Decoder {
        Decoder::new(Bytes::copy_from_slice(bytes))
    }

    /// Unsigned varints round-trip at every byte-length boundary, with Kafka's byte layout.
    #[test]
    fn uvarint_boundaries() {
        let cases: [(u32, &[u8]); 6] = [
            (0, &[0x00]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (16_383, &[0xff, 0x7f]),
            (16_384, &[0x80, 0x80, 0x01]),
            (u32::MAX, &[0xff, 0xff, 0xff, 0xff, 0x0f]),
        ];
        for (value, wire) in cases {
            let mut e = Encoder::new();
            e.uvarint(value);
            assert_eq!(&e.finish_contiguous()[..], wire, "{value}");
            assert_eq!(decoder(wire).uvarint(), Ok(value));
        }
    }

    /// Strings and bytes are views into the input; lengths are checked before slicing.
    #[test]
    fn strings_and_bytes_are_views() {
        let input = Bytes::from_static(&[0x00, 0x03, b'a', b'b', b'c', 0x03, 0x01, 0x02]);
        let mut d = Decoder::new(input.clone());
        let s = d.string(false).unwrap();
        assert_eq!(s, "abc");
        assert!(input.as_ptr_range().contains(&s.as_ptr()));
        let b = d.bytes(true).unwrap();
        assert_eq!(&b[..], &[0x01, 0x02]);
        assert!(input.as_ptr_range().contains(&b.as_ptr()));
        assert_eq!(d.finish(), Ok(()));
        assert_eq!(decoder(&[0x00]).nullable_bytes(true), Ok(None));
        assert_eq!(decoder(&[0xff, 0xff]).nullable_string(false), Ok(None));
        let e = decoder(&[0x00, 0x00, 0x00, 0x09, 0x01])
            .bytes(false)
            .unwrap_err();
        assert_eq!(
            e.kind,
            DecodeErrorKind::UnexpectedEof {
                needed: 9,
                remaining: 1
            }
        );
    }

    /// A nullable struct is an i8 marker, negative meaning null.
    #[test]
    fn nullable_struct_marker() {
        let mut d = decoder(&[0xff, 0x01, 0x2a]);
        assert_eq!(d.nullable_struct(|d| d.i8()), Ok(None));
        assert_eq!(d.nullable_struct(|d| d.i8()), Ok(Some(42)));
    }

    /// An array count is checked against the bytes left times the smallest element size.
    #[test]
    fn array_counts_are_bounded_by_bytes_left() {
        // Two i32 elements need 8 bytes; only 7 follow.
        let mut d = decoder(&[0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0]);
        let e = d.array(false, 4, |d| d.i32()).unwrap_err();
        assert_eq!(
            e.kind,
            DecodeErrorKind::LengthTooLarge {
                length: 2,
                remaining: 7
            }
        );
        let mut d = decoder(&[0x03, 0, 0, 0, 1, 0, 0, 0, 2]);
        assert_eq!(d.array(true, 4, |d| d.i32()), Ok(vec![1, 2]));
    }
}
