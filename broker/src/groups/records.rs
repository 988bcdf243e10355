//! The records the group coordinator keeps in `__consumer_offsets`, in Kafka's own layout, so
//! Kafka's tools (`kafka-console-consumer --formatter ...OffsetsMessageFormatter`) read them.
//!
//! Keys start with an `int16` version that names the record type: 0 and 1 are an offset commit
//! (group, topic, partition), 2 is a group's metadata (group). Values start with their own
//! version. sluice writes offset commit value v3 and group metadata value v3 and reads v0–v3;
//! a null value is a tombstone. Anything else read back (a newer Kafka's record types) is
//! reported as [`Decoded::Unknown`] and skipped.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// A committed offset as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

/// One member of a group as stored in its metadata record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    /// The member's metadata for the group's selected protocol.
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// A group's metadata as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub current_state_timestamp_ms: i64,
    pub members: Vec<StoredMember>,
}

/// A record read back from `__consumer_offsets`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// `None` is a tombstone: the offset was deleted.
    Offset {
        group: String,
        topic: String,
        partition: i32,
        value: Option<OffsetValue>,
    },
    /// `None` is a tombstone: the group was deleted.
    Group {
        group: String,
        value: Option<GroupValue>,
    },
    /// A record type sluice does not keep (for example a newer Kafka's).
    Unknown,
}

/// A record that cannot be decoded (a torn or foreign write); the caller logs and skips it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed __consumer_offsets record: {0}")]
pub struct Malformed(pub &'static str);

const OFFSET_KEY_VERSION: i16 = 1;
const GROUP_KEY_VERSION: i16 = 2;
const OFFSET_VALUE_VERSION: i16 = 3;
const GROUP_VALUE_VERSION: i16 = 3;

fn put_str(out: &mut BytesMut, s: &str) {
    // Lengths are bounded by the request decoder (int16 strings) before they get here.
    out.put_i16(i16::try_from(s.len()).unwrap_or(i16::MAX));
    out.put_slice(&s.as_bytes()[..s.len().min(i16::MAX as usize)]);
}

fn put_nullable_str(out: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(out, s),
        None => out.put_i16(-1),
    }
}

fn put_bytes(out: &mut BytesMut, b: &[u8]) {
    out.put_i32(i32::try_from(b.len()).unwrap_or(i32::MAX));
    out.put_slice(b);
}

/// The key of a committed offset.
pub fn offset_key(group: &str, topic: &str, partition: i32) -> Bytes {
    let mut out = BytesMut::with_capacity(8 + group.len() + topic.len());
    out.put_i16(OFFSET_KEY_VERSION);
    put_str(&mut out, group);
    put_str(&mut out, topic);
    out.put_i32(partition);
    out.freeze()
}

/// The key of a group's metadata.
pub fn group_key(group: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(4 + group.len());
    out.put_i16(GROUP_KEY_VERSION);
    put_str(&mut out, group);
    out.freeze()
}

/// The value of a committed offset (v3).
pub fn offset_value(v: &OffsetValue) -> Bytes {
    let mut out = BytesMut::with_capacity(26 + v.metadata.len());
    out.put_i16(OFFSET_VALUE_VERSION);
    out.put_i64(v.offset);
    out.put_i32(v.leader_epoch);
    put_str(&mut out, &v.metadata);
    out.put_i64(v.commit_timestamp_ms);
    out.freeze()
}

/// The value of a group's metadata (v3).
pub fn group_value(v: &GroupValue) -> Bytes {
    let mut out = BytesMut::with_capacity(64);
    out.put_i16(GROUP_VALUE_VERSION);
    put_str(&mut out, &v.protocol_type);
    out.put_i32(v.generation);
    put_nullable_str(&mut out, v.protocol.as_deref());
    put_nullable_str(&mut out, v.leader.as_deref());
    out.put_i64(v.current_state_timestamp_ms);
    out.put_i32(i32::try_from(v.members.len()).unwrap_or(i32::MAX));
    for m in &v.members {
        put_str(&mut out, &m.member_id);
        put_nullable_str(&mut out, m.group_instance_id.as_deref());
        put_str(&mut out, &m.client_id);
        put_str(&mut out, &m.client_host);
        out.put_i32(m.rebalance_timeout_ms);
        out.put_i32(m.session_timeout_ms);
        put_bytes(&mut out, &m.subscription);
        put_bytes(&mut out, &m.assignment);
    }
    out.freeze()
}

struct Reader(Bytes);

impl Reader {
    fn need(&self, n: usize) -> Result<(), Malformed> {
        if self.0.remaining() < n {
            Err(Malformed("truncated"))
        } else {
            Ok(())
        }
    }
    fn i16(&mut self) -> Result<i16, Malformed> {
        self.need(2)?;
        Ok(self.0.get_i16())
    }
    fn i32(&mut self) -> Result<i32, Malformed> {
        self.need(4)?;
        Ok(self.0.get_i32())
    }
    fn i64(&mut self) -> Result<i64, Malformed> {
        self.need(8)?;
        Ok(self.0.get_i64())
    }
    fn nullable_str(&mut self) -> Result<Option<String>, Malformed> {
        let len = self.i16()?;
        if len < 0 {
            return Ok(None);
        }
        let len = len as usize;
        self.need(len)?;
        let raw = self.0.split_to(len);
        String::from_utf8(raw.to_vec())
            .map(Some)
            .map_err(|_| Malformed("string is not UTF-8"))
    }
    fn str(&mut self) -> Result<String, Malformed> {
        self.nullable_str()?.ok_or(Malformed("null string"))
    }
    fn bytes(&mut self) -> Result<Bytes, Malformed> {
        let len = self.i32()?;
        if len < 0 {
            return Ok(Bytes::new());
        }
        let len = len as usize;
        self.need(len)?;
        Ok(self.0.split_to(len))
    }
}

/// Decodes one record's key and value.
pub fn decode(key: Option<Bytes>, value: Option<Bytes>) -> Result<Decoded, Malformed> {
    let Some(key) = key else {
        return Err(Malformed("record without a key"));
    };
    let mut k = Reader(key);
    match k.i16()? {
        0 | 1 => {
            let group = k.str()?;
            let topic = k.str()?;
            let partition = k.i32()?;
            let value = value.map(decode_offset_value).transpose()?;
            Ok(Decoded::Offset {
                group,
                topic,
                partition,
                value,
            })
        }
        2 => {
            let group = k.str()?;
            let value = value.map(decode_group_value).transpose()?;
            Ok(Decoded::Group { group, value })
        }
        _ => Ok(Decoded::Unknown),
    }
}

fn decode_offset_value(raw: Bytes) -> Result<OffsetValue, Malformed> {
    let mut r = Reader(raw);
    let version = r.i16()?;
    if !(0..=3).contains(&version) {
        return Err(Malformed("unknown offset commit value version"));
    }
    let offset = r.i64()?;
    let leader_epoch = if version >= 3 { r.i32()? } else { -1 };
    let metadata = r.nullable_str()?.unwrap_or_default();
    let commit_timestamp_ms = r.i64()?;
    if version == 1 {
        let _expire_timestamp = r.i64()?;
    }
    Ok(OffsetValue {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp_ms,
    })
}

fn decode_group_value(raw: Bytes) -> Result<GroupValue, Malformed> {
    let mut r = Reader(raw);
    let version = r.i16()?;
    if !(0..=3).contains(&version) {
        return Err(Malformed("unknown group metadata value version"));
    }
    let protocol_type = r.str()?;
    let generation = r.i32()?;
    let protocol = r.nullable_str()?;
    let leader = r.nullable_str()?;
    let current_state_timestamp_ms = if version >= 2 { r.i64()? } else { -1 };
    let count = r.i32()?;
    // Each member takes at least 18 bytes: bounds the allocation by the input.
    if count < 0 || count as usize > r.0.remaining() / 18 + 1 {
        return Err(Malformed("member count out of range"));
    }
    let mut members = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let member_id = r.str()?;
        let group_instance_id = if version >= 3 {
            r.nullable_str()?
        } else {
            None
        };
        let client_id = r.str()?;
        let client_host = r.str()?;
        let session_first = version == 0;
        let (rebalance_timeout_ms, session_timeout_ms) = if session_first {
            let s = r.i32()?;
            (s, s)
        } else {
            let rebalance = r.i32()?;
            (rebalance, r.i32()?)
        };
        let subscription = r.bytes()?;
        let assignment = r.bytes()?;
        members.push(StoredMember {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    Ok(GroupValue {
        protocol_type,
        generation,
        protocol,
        leader,
        current_state_timestamp_ms,
        members,
    })
}

/// The topics a member of a `consumer` protocol group subscribes to, read from its
/// ConsumerProtocolSubscription (every version starts with the version and the topic list).
/// `None` when the metadata is not a readable subscription.
pub fn subscribed_topics(subscription: &[u8]) -> Option<Vec<String>> {
    let mut r = Reader(Bytes::copy_from_slice(subscription));
    let _version = r.i16().ok()?;
    let count = r.i32().ok()?;
    if count < 0 || count as usize > r.0.remaining() / 2 + 1 {
        return None;
    }
    (0..count).map(|_| r.str().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_round_trip() {
        let v = OffsetValue {
            offset: 42,
            leader_epoch: 3,
            metadata: "meta".into(),
            commit_timestamp_ms: 1_700_000_000_000,
        };
        let d = decode(Some(offset_key("g", "t", 7)), Some(offset_value(&v))).unwrap();
        assert_eq!(
            d,
            Decoded::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 7,
                value: Some(v)
            }
        );
        let d = decode(Some(offset_key("g", "t", 7)), None).unwrap();
        assert!(matches!(d, Decoded::Offset { value: None, .. }));
    }

    #[test]
    fn group_round_trip() {
        let v = GroupValue {
            protocol_type: "consumer".into(),
            generation: 5,
            protocol: Some("range".into()),
            leader: Some("m1".into()),
            current_state_timestamp_ms: 99,
            members: vec![StoredMember {
                member_id: "m1".into(),
                group_instance_id: Some("i1".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300_000,
                session_timeout_ms: 45_000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        };
        let d = decode(Some(group_key("g")), Some(group_value(&v))).unwrap();
        assert_eq!(
            d,
            Decoded::Group {
                group: "g".into(),
                value: Some(v)
            }
        );
    }

    /// Kafka's own bytes for an OffsetCommitKey v1 / OffsetCommitValue v1 (with the expire
    /// timestamp) decode to the same fields.
    #[test]
    fn reads_older_value_versions() {
        let mut v1 = BytesMut::new();
        v1.put_i16(1);
        v1.put_i64(10);
        put_str(&mut v1, "");
        v1.put_i64(5);
        v1.put_i64(6);
        let d = decode(Some(offset_key("g", "t", 0)), Some(v1.freeze())).unwrap();
        let Decoded::Offset { value: Some(v), .. } = d else {
            panic!("{d:?}")
        };
        assert_eq!(
            (v.offset, v.leader_epoch, v.commit_timestamp_ms),
            (10, -1, 5)
        );
    }

    #[test]
    fn garbage_never_panics() {
        for len in 0..40 {
            let raw: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let b = Bytes::from(raw);
            let _ = decode(Some(b.clone()), Some(b.clone()));
            let _ = decode(Some(group_key("g")), Some(b.clone()));
            let _ = subscribed_topics(&b);
        }
        assert!(decode(None, None).is_err());
    }

    #[test]
    fn subscription_topics() {
        let mut s = BytesMut::new();
        s.put_i16(1);
        s.put_i32(2);
        put_str(&mut s, "a");
        put_str(&mut s, "b");
        s.put_i32(-1);
        assert_eq!(
            subscribed_topics(&s),
            Some(vec!["a".to_string(), "b".to_string()])
        );
    }
}
