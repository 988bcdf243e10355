//! `partition.meta`: log start offset, recovery point and leader epoch cache, as an rkyv
//! archive behind a checksum. Read with checked access; written temp + fsync + rename + dir
//! fsync (`io::write_file_atomic`), so a crash leaves either the old or the new file.
//!
//! File format ([`frame_archive`], also used by producer snapshots): magic `SLPM` (4), archive
//! length (4, BE), CRC-32C of the archive (4, BE), 4 zero bytes, then the archive.

use rkyv::rancor;
use rkyv::util::AlignedVec;

const MAGIC: &[u8; 4] = b"SLPM";
const HEADER_BYTES: usize = 16;
pub(crate) const META_FILE: &str = "partition.meta";

#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub(crate) struct PartitionMeta {
    pub(crate) version: u32,
    pub(crate) log_start_offset: i64,
    /// Every segment wholly below this offset was fdatasync'ed with its index files.
    pub(crate) recovery_point: i64,
    /// (leader epoch, first offset written in that epoch), both increasing.
    pub(crate) leader_epochs: Vec<(i32, i64)>,
}

/// Frames an rkyv archive as a file: `magic`, length, CRC-32C, 4 zero bytes, the archive.
/// Shared by every checksummed archive file of the crate (this one, producer snapshots).
pub(crate) fn frame_archive(magic: &[u8; 4], archive: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES + archive.len());
    out.extend_from_slice(magic);
    out.extend_from_slice(&(archive.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(archive).to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(archive);
    out
}

/// Checks a file made by [`frame_archive`] and returns its archive, aligned for rkyv's
/// checked access (which the caller still does: the checksum only rules out damage).
pub(crate) fn unframe_archive(magic: &[u8; 4], data: &[u8]) -> Result<AlignedVec<16>, String> {
    if data.len() < HEADER_BYTES || &data[..4] != magic || data[12..16] != [0; 4] {
        return Err("bad magic or short header".into());
    }
    let len = u32::from_be_bytes([data[4], data[5], data[6], data[7]]) as usize;
    let crc = u32::from_be_bytes([data[8], data[9], data[10], data[11]]);
    if data.len() != HEADER_BYTES + len {
        return Err(format!("length {} does not match header {len}", data.len()));
    }
    let body = &data[HEADER_BYTES..];
    if crc32c::crc32c(body) != crc {
        return Err("checksum mismatch".into());
    }
    let mut aligned = AlignedVec::<16>::with_capacity(body.len());
    aligned.extend_from_slice(body);
    Ok(aligned)
}

pub(crate) fn encode(meta: &PartitionMeta) -> Vec<u8> {
    // Serializing plain integers and a Vec cannot fail; an error here is a bug.
    let archive = match rkyv::to_bytes::<rancor::Error>(meta) {
        Ok(a) => a,
        Err(e) => panic!("serializing partition meta failed: {e}"),
    };
    frame_archive(MAGIC, &archive)
}

pub(crate) fn decode(data: &[u8]) -> Result<PartitionMeta, String> {
    let aligned = unframe_archive(MAGIC, data)?;
    let meta = rkyv::from_bytes::<PartitionMeta, rancor::Error>(&aligned)
        .map_err(|e| format!("archive check failed: {e}"))?;
    if meta.version != 1 {
        return Err(format!("unknown version {}", meta.version));
    }
    if meta.log_start_offset < 0 || meta.recovery_point < 0 {
        return Err("negative offset".into());
    }
    if meta
        .leader_epochs
        .windows(2)
        .any(|w| w[0].0 >= w[1].0 || w[0].1 > w[1].1)
    {
        return Err("leader epoch cache not increasing".into());
    }
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A meta file round-trips; any flipped byte or truncation is an error, not a panic.
    #[test]
    fn roundtrip_and_garbage() {
        let m = PartitionMeta {
            version: 1,
            log_start_offset: 42,
            recovery_point: 100,
            leader_epochs: vec![(0, 0), (3, 77)],
        };
        let e = encode(&m);
        assert_eq!(decode(&e).unwrap(), m);
        for i in 0..e.len() {
            let mut x = e.clone();
            x[i] ^= 0x10;
            assert!(decode(&x).is_err(), "{i}");
            assert!(decode(&e[..i]).is_err());
        }
    }
}
