//! Record batch codecs, so compaction can look inside compressed batches and rewrite them
//! with the codec they came with: gzip (flate2), snappy (raw, or the xerial framing the Java
//! client writes), lz4 (the LZ4 frame format Kafka writes) and zstd.
//!
//! Decompression is bounded: more than `max` bytes of output is an error (a batch is then kept
//! whole, unread), so a small hostile batch cannot make the core allocate without limit.

use std::io::{Read, Write};

use sluice_net::record_batch::Compression;

use crate::limits::XERIAL_BLOCK_BYTES;

/// How a snappy payload was framed (other codecs have one framing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    Plain,
    /// snappy-java's stream: 16-byte header, then (i32 length, raw block) pairs.
    Xerial,
}

const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_BYTES: usize = 16;

fn read_bounded(mut r: impl Read, max: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let n = (&mut r)
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| e.to_string())?;
    if n > max {
        return Err(format!("decompresses to more than {max} bytes"));
    }
    Ok(out)
}

fn snappy_raw(data: &[u8], budget: usize) -> Result<Vec<u8>, String> {
    let len = snap::raw::decompress_len(data).map_err(|e| e.to_string())?;
    if len > budget {
        return Err(format!("decompresses to more than {budget} bytes"));
    }
    snap::raw::Decoder::new()
        .decompress_vec(data)
        .map_err(|e| e.to_string())
}

/// The records of a batch, compressed or not (decompressing at most `max` bytes), parsed by
/// `sluice_net::record_batch`: for produce validation, compaction and tools that read batches
/// (`sluice consume`).
pub fn batch_records(
    batch: &sluice_net::record_batch::RecordBatch,
    max: usize,
) -> Result<sluice_net::record_batch::Records, String> {
    let (section, _, _) = records_section(batch, max)?;
    Ok(sluice_net::record_batch::Records::from_section(
        section,
        usize::try_from(batch.record_count()).unwrap_or(0),
    ))
}

/// A batch's records section, decompressed (at most `max` bytes) if need be, with the codec
/// and framing it came in (a view into the batch when it is not compressed).
pub(crate) fn records_section(
    batch: &sluice_net::record_batch::RecordBatch,
    max: usize,
) -> Result<(bytes::Bytes, Compression, Framing), String> {
    let codec = batch.compression().map_err(|e| e.to_string())?;
    let raw = &batch.bytes()[sluice_net::record_batch::HEADER_BYTES..];
    if codec == Compression::None {
        let section = batch
            .bytes()
            .slice(sluice_net::record_batch::HEADER_BYTES..);
        return Ok((section, codec, Framing::Plain));
    }
    let (plain, framing) = decompress(codec, raw, max)?;
    Ok((bytes::Bytes::from(plain), codec, framing))
}

/// Decompresses a batch's records section.
pub(crate) fn decompress(
    codec: Compression,
    data: &[u8],
    max: usize,
) -> Result<(Vec<u8>, Framing), String> {
    let plain = |v| Ok((v, Framing::Plain));
    match codec {
        Compression::None => plain(data.to_vec()),
        Compression::Gzip => plain(read_bounded(flate2::read::MultiGzDecoder::new(data), max)?),
        Compression::Lz4 => plain(read_bounded(lz4_flex::frame::FrameDecoder::new(data), max)?),
        Compression::Zstd => {
            let d = zstd::stream::read::Decoder::new(data).map_err(|e| e.to_string())?;
            plain(read_bounded(d, max)?)
        }
        Compression::Snappy => {
            if !data.starts_with(XERIAL_MAGIC) {
                return plain(snappy_raw(data, max)?);
            }
            let mut out = Vec::new();
            let mut pos = XERIAL_HEADER_BYTES;
            while pos < data.len() {
                let len_bytes = data.get(pos..pos + 4).ok_or("truncated xerial block")?;
                let len =
                    u32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]])
                        as usize;
                pos += 4;
                let block = data
                    .get(pos..pos.saturating_add(len))
                    .ok_or("xerial block past the end")?;
                out.extend(snappy_raw(block, max - out.len())?);
                pos += len;
            }
            Ok((out, Framing::Xerial))
        }
    }
}

/// Compresses a records section with `codec` (and, for snappy, `framing`).
pub(crate) fn compress(
    codec: Compression,
    framing: Framing,
    data: &[u8],
) -> Result<Vec<u8>, String> {
    let err = |e: std::io::Error| e.to_string();
    match codec {
        Compression::None => Ok(data.to_vec()),
        Compression::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).map_err(err)?;
            e.finish().map_err(err)
        }
        Compression::Lz4 => {
            // What Kafka's Java client writes: 64 KiB independent blocks, no checksums.
            let info = lz4_flex::frame::FrameInfo::new()
                .block_size(lz4_flex::frame::BlockSize::Max64KB)
                .block_mode(lz4_flex::frame::BlockMode::Independent);
            let mut e = lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::new());
            e.write_all(data).map_err(err)?;
            e.finish().map_err(|e| e.to_string())
        }
        Compression::Zstd => zstd::bulk::compress(data, 3).map_err(err),
        Compression::Snappy => {
            let mut enc = snap::raw::Encoder::new();
            if framing == Framing::Plain {
                return enc.compress_vec(data).map_err(|e| e.to_string());
            }
            let mut out = Vec::with_capacity(data.len() / 2 + XERIAL_HEADER_BYTES);
            out.extend_from_slice(XERIAL_MAGIC);
            out.extend_from_slice(&1i32.to_be_bytes());
            out.extend_from_slice(&1i32.to_be_bytes());
            for chunk in data.chunks(XERIAL_BLOCK_BYTES) {
                let block = enc.compress_vec(chunk).map_err(|e| e.to_string())?;
                out.extend_from_slice(&(block.len() as u32).to_be_bytes());
                out.extend_from_slice(&block);
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every codec round-trips, snappy in both framings; the output bound holds.
    #[test]
    fn round_trip_and_bound() {
        let data: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_be_bytes())
            .collect();
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            for framing in [Framing::Plain, Framing::Xerial] {
                let c = compress(codec, framing, &data).unwrap();
                let (d, f) = decompress(codec, &c, 1 << 20).unwrap();
                assert_eq!(d, data, "{codec:?}");
                if codec == Compression::Snappy {
                    assert_eq!(f, framing);
                }
                if codec != Compression::None {
                    assert!(decompress(codec, &c, 1000).is_err(), "{codec:?} bound");
                    let cut = &c[..c.len() - 7];
                    assert!(
                        decompress(codec, cut, 1 << 20).is_err(),
                        "{codec:?} truncated"
                    );
                }
            }
        }
    }
}
