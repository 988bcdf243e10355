//! A segment's transaction index, `<base>.txnindex` (Kafka's `.txnindex`): the aborted
//! transactions whose ABORT marker lies in the segment, which a read_committed Fetch returns
//! so clients drop those records. Memory holds the index of the whole log (`Transactions`);
//! these files persist it, one per segment that has aborted transactions.
//!
//! When written: when the segment is sealed (`Partition::seal_segment`: on a roll, before the
//! producer snapshot at the next segment's base, and on a clean close), when a truncation cuts
//! the segment, and for a compaction group before its swap. So: a producer snapshot at offset
//! B exists only once every segment below B has its file (if it has aborted transactions).
//! On open, the files of segments below the loaded snapshot are read (entries with a marker
//! at or above it are ignored: the replay of the log from the snapshot brings those), and
//! entries below the log start are dropped.
//!
//! A file may hold entries of later segments (a compaction group's merged file written before
//! a crash dropped the swap): entries are keyed by their marker offset, so loading the same
//! entry twice changes nothing.
//!
//! File format: `meta::frame_archive` with magic `SLTX` (length, CRC-32C) around an rkyv
//! archive of [`TxnIndexFile`], read with checked access and then checked for sense.

use rkyv::rancor;

use crate::meta::{frame_archive, unframe_archive};
use crate::transactions::AbortedTxn;

pub(crate) const TXN_INDEX_EXT: &str = "txnindex";
const MAGIC: &[u8; 4] = b"SLTX";
const VERSION: u32 = 1;

/// The content of a `.txnindex` file.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub(crate) struct TxnIndexFile {
    pub(crate) version: u32,
    /// The segment's base offset.
    pub(crate) base_offset: i64,
    /// (producer id, first offset, marker offset, last stable offset), by marker offset.
    pub(crate) entries: Vec<(i64, i64, i64, i64)>,
}

/// The base offset of a `.txnindex` file name, if `name` is one.
pub(crate) fn parse_txn_index_name(name: &str) -> Option<i64> {
    let digits = name.strip_suffix(".txnindex")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The file for segment `base_offset` holding `entries`.
pub(crate) fn encode(base_offset: i64, entries: &[AbortedTxn]) -> Vec<u8> {
    let file = TxnIndexFile {
        version: VERSION,
        base_offset,
        entries: entries
            .iter()
            .map(|a| {
                (
                    a.producer_id,
                    a.first_offset,
                    a.last_offset,
                    a.last_stable_offset,
                )
            })
            .collect(),
    };
    // Serializing integers and a Vec cannot fail; an error here is a bug.
    let archive = match rkyv::to_bytes::<rancor::Error>(&file) {
        Ok(a) => a,
        Err(e) => panic!("serializing a transaction index failed: {e}"),
    };
    frame_archive(MAGIC, &archive)
}

/// Reads a file back: its segment's base offset and entries. Damage or nonsense is an error,
/// never a panic.
pub(crate) fn decode(data: &[u8]) -> Result<(i64, Vec<AbortedTxn>), String> {
    let aligned = unframe_archive(MAGIC, data)?;
    let file = rkyv::from_bytes::<TxnIndexFile, rancor::Error>(&aligned)
        .map_err(|e| format!("archive check failed: {e}"))?;
    if file.version != VERSION {
        return Err(format!("unknown version {}", file.version));
    }
    let mut out = Vec::with_capacity(file.entries.len());
    let mut prev = i64::MIN;
    for (producer_id, first_offset, last_offset, last_stable_offset) in file.entries {
        if producer_id < 0
            || first_offset < 0
            || last_offset < first_offset
            || last_offset <= prev
            || last_stable_offset < 0
        {
            return Err(format!("bad entry for marker offset {last_offset}"));
        }
        prev = last_offset;
        out.push(AbortedTxn {
            producer_id,
            first_offset,
            last_offset,
            last_stable_offset,
        });
    }
    Ok((file.base_offset, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Round trip; any flipped byte or cut is an error; entries out of order are refused.
    #[test]
    fn roundtrip_and_damage() {
        let entries = [
            AbortedTxn {
                producer_id: 3,
                first_offset: 10,
                last_offset: 14,
                last_stable_offset: 12,
            },
            AbortedTxn {
                producer_id: 4,
                first_offset: 12,
                last_offset: 20,
                last_stable_offset: 21,
            },
        ];
        let data = encode(10, &entries);
        assert_eq!(decode(&data).unwrap(), (10, entries.to_vec()));
        for i in 0..data.len() {
            let mut x = data.clone();
            x[i] ^= 0x10;
            assert!(decode(&x).is_err(), "{i}");
            assert!(decode(&data[..i]).is_err());
        }
        // The LSO when a transaction ended may lie below its first offset (an older one was
        // open then).
        let older_open = AbortedTxn {
            producer_id: 5,
            first_offset: 30,
            last_offset: 31,
            last_stable_offset: 12,
        };
        let data = encode(10, &[entries[0], older_open]);
        assert_eq!(decode(&data).unwrap().1, vec![entries[0], older_open]);
        let backwards = encode(10, &[entries[1], entries[0]]);
        assert!(decode(&backwards).is_err());
        assert_eq!(
            parse_txn_index_name("00000000000000000042.txnindex"),
            Some(42)
        );
        assert_eq!(parse_txn_index_name("42.txnindex"), None);
    }
}
