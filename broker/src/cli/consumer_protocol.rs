//! The bytes of Kafka's consumer protocol that a classic group carries opaquely: a member's
//! subscription (JoinGroup metadata) and an assignment (SyncGroup), and the range assignment
//! `consume --group` computes when it leads. Decoding never panics on short input: it stops at
//! the first field that does not fit.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// ConsumerProtocolSubscription v0: the topics.
pub(super) fn subscription(topics: &[&str]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(0);
    b.put_i32(topics.len() as i32);
    for t in topics {
        b.put_i16(t.len() as i16);
        b.put_slice(t.as_bytes());
    }
    b.put_i32(-1);
    b.freeze()
}

fn read_str(b: &mut Bytes) -> Option<String> {
    if b.remaining() < 2 {
        return None;
    }
    let n = usize::try_from(b.get_i16()).ok()?;
    if b.remaining() < n {
        return None;
    }
    String::from_utf8(b.split_to(n).to_vec()).ok()
}

/// ConsumerProtocolAssignment (any version): topic → partitions.
pub(super) fn decode_assignment(mut b: Bytes) -> Vec<(String, Vec<i32>)> {
    let mut out = Vec::new();
    if b.remaining() < 6 {
        return out;
    }
    let _version = b.get_i16();
    let n = b.get_i32();
    for _ in 0..n.max(0) {
        let Some(topic) = read_str(&mut b) else {
            break;
        };
        if b.remaining() < 4 {
            break;
        }
        let count = b.get_i32().max(0) as usize;
        if b.remaining() < count * 4 {
            break;
        }
        out.push((topic, (0..count).map(|_| b.get_i32()).collect()));
    }
    out
}

/// ConsumerProtocolAssignment v0, without user data.
pub(super) fn encode_assignment(parts: &[(String, Vec<i32>)]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(0);
    b.put_i32(parts.len() as i32);
    for (t, ps) in parts {
        b.put_i16(t.len() as i16);
        b.put_slice(t.as_bytes());
        b.put_i32(ps.len() as i32);
        for p in ps {
            b.put_i32(*p);
        }
    }
    b.put_i32(-1);
    b.freeze()
}

/// Kafka's range assignment of one topic's partitions (sorted (partition, leader) pairs) over
/// `members`: members in name order each take a contiguous run, the first
/// `partitions % members` one more. Returns (member, partitions) in member name order.
pub(super) fn range_assign(parts: &[(i32, i32)], members: &[String]) -> Vec<(String, Vec<i32>)> {
    let mut members = members.to_vec();
    members.sort();
    let per = parts.len() / members.len().max(1);
    let extra = parts.len() % members.len().max(1);
    let mut next = 0;
    members
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            let take = per + usize::from(i < extra);
            let mine: Vec<i32> = parts[next..next + take].iter().map(|(p, _)| *p).collect();
            next += take;
            (m, mine)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The subscription's exact bytes: version 0, the topic array, null user data.
    #[test]
    fn subscription_bytes() {
        let b = subscription(&["ab"]);
        assert_eq!(
            &b[..],
            &[0, 0, 0, 0, 0, 1, 0, 2, b'a', b'b', 0xff, 0xff, 0xff, 0xff]
        );
    }

    /// An encoded assignment decodes to what was encoded, for several topics.
    #[test]
    fn assignment_round_trips() {
        let parts = vec![
            ("orders".to_owned(), vec![0, 2, 4]),
            ("empty".to_owned(), vec![]),
            ("x".to_owned(), vec![7]),
        ];
        assert_eq!(decode_assignment(encode_assignment(&parts)), parts);
        assert!(decode_assignment(encode_assignment(&[])).is_empty());
    }

    /// Truncated or garbage assignments yield the whole topics before the cut, never a panic.
    #[test]
    fn assignment_decoding_stops_at_short_input() {
        let parts = vec![("a".to_owned(), vec![1, 2]), ("b".to_owned(), vec![3])];
        let whole = encode_assignment(&parts);
        for cut in 0..whole.len() {
            let got = decode_assignment(whole.slice(..cut));
            assert!(parts.starts_with(&got), "cut at {cut}: {got:?}");
        }
        // A negative string length or partition count, and a huge count.
        assert!(decode_assignment(Bytes::from_static(&[0, 0, 0, 0, 0, 1, 0xff, 0xff])).is_empty());
        let huge = [0, 0, 0, 0, 0, 1, 0, 1, b'a', 0x7f, 0xff, 0xff, 0xff];
        assert!(decode_assignment(Bytes::copy_from_slice(&huge)).is_empty());
        let negative = [0, 0, 0, 0, 0, 1, 0, 1, b'a', 0xff, 0xff, 0xff, 0xff];
        assert_eq!(
            decode_assignment(Bytes::copy_from_slice(&negative)),
            [("a".to_owned(), vec![])]
        );
    }

    /// Range assignment: sorted members, contiguous runs, the remainder to the first ones.
    #[test]
    fn range_assign_splits_contiguously() {
        let parts: Vec<(i32, i32)> = (0..5).map(|p| (p, 1)).collect();
        let members = ["m-b".to_owned(), "m-a".to_owned()];
        assert_eq!(
            range_assign(&parts, &members),
            [
                ("m-a".to_owned(), vec![0, 1, 2]),
                ("m-b".to_owned(), vec![3, 4])
            ]
        );
        let three = ["c".to_owned(), "a".to_owned(), "b".to_owned()];
        assert_eq!(
            range_assign(&parts[..2], &three),
            [
                ("a".to_owned(), vec![0]),
                ("b".to_owned(), vec![1]),
                ("c".to_owned(), vec![])
            ]
        );
        assert!(range_assign(&parts, &[]).is_empty());
    }
}
