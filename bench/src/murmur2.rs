//! Kafka's default partitioner for keyed records: the Java client's `Utils.murmur2`, made
//! positive with `& 0x7fffffff`, modulo the partition count. Placement must match the Java
//! client byte for byte, or keyed load lands on other partitions than real clients' would.

/// Kafka's murmur2 (seed 0x9747b28c) of `data`, as the Java client's `Utils.murmur2` returns it.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition the Java client's default partitioner picks for `key`.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    assert!(partitions > 0);
    (murmur2(key) & 0x7fff_ffff) % partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The values Kafka's own `UtilsTest.testMurmur2` expects from `Utils.murmur2`, covering
    /// every tail length (0 to 3 leftover bytes).
    #[test]
    fn matches_java_client_values() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (key, want) in cases {
            assert_eq!(murmur2(key), want, "{}", String::from_utf8_lossy(key));
        }
    }

    /// Placement is the positive hash modulo the partition count, always in range.
    #[test]
    fn partition_in_range() {
        assert_eq!(
            partition_for_key(b"21", 16),
            ((-973_932_308i32) & 0x7fff_ffff) % 16
        );
        for i in 0..1000u32 {
            let p = partition_for_key(&i.to_be_bytes(), 7);
            assert!((0..7).contains(&p));
        }
    }
}
