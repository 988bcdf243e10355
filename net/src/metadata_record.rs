//! The frame around a metadata-log record (Kafka's `ApiMessageAndVersion` as
//! `MetadataRecordSerde` writes it into a record's value): an unsigned varint frame version
//! (always 1), an unsigned varint record type (the schema's `apiKey`), an unsigned varint record
//! version, then the record body. The bodies are generated ([`MetadataRecord`]).

use crate::codec::{DecodeError, DecodeErrorKind, Decoder, Encoder};
use crate::messages::{MetadataRecord, MetadataRecordType};
use bytes::Bytes;

/// The only frame version Kafka writes and reads.
pub const FRAME_VERSION: u32 = 1;

/// A metadata record with the version its body is (or is to be) encoded at.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionedRecord {
    pub version: i16,
    pub record: MetadataRecord,
}

impl VersionedRecord {
    /// The framed bytes: what goes into a metadata-log record's value.
    pub fn encode(&self) -> Bytes {
        let mut e = Encoder::new();
        e.uvarint(FRAME_VERSION);
        e.uvarint(u32::from(self.record.record_type().key() as u16));
        e.uvarint(u32::from(self.version as u16));
        self.record.encode(&mut e, self.version);
        e.finish_contiguous()
    }

    /// Reads one framed record from a record's whole value. Fails on another frame version, an
    /// unknown record type, a version outside its schema, or bytes left over.
    pub fn decode(value: Bytes) -> Result<VersionedRecord, DecodeError> {
        let mut d = Decoder::new(value);
        if d.uvarint()? != FRAME_VERSION {
            return Err(d.error(DecodeErrorKind::UnsupportedVersion));
        }
        let key = d.uvarint()?;
        let ty = i16::try_from(key)
            .ok()
            .and_then(MetadataRecordType::from_i16)
            .ok_or_else(|| d.error(DecodeErrorKind::UnsupportedVersion))?;
        let version = i16::try_from(d.uvarint()?)
            .map_err(|_| d.error(DecodeErrorKind::UnsupportedVersion))?;
        d.set_context(ty.key(), version);
        let record = MetadataRecord::decode(ty, version, &mut d)?;
        d.finish()?;
        Ok(VersionedRecord { version, record })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{NoOpRecord, TopicRecord};

    /// A TopicRecord frames as 1, 2 (its key), 0 (its version), then the body; and reads back.
    #[test]
    fn topic_record_round_trips() {
        let rec = VersionedRecord {
            version: 0,
            record: MetadataRecord::Topic(TopicRecord {
                name: "orders".into(),
                topic_id: Default::default(),
                ..Default::default()
            }),
        };
        let bytes = rec.encode();
        assert_eq!(&bytes[..3], &[1, 2, 0]);
        assert_eq!(VersionedRecord::decode(bytes).unwrap(), rec);
    }

    /// Another frame version, an unknown type, a bad version and trailing bytes are errors.
    #[test]
    fn bad_frames_are_refused() {
        let ok = VersionedRecord {
            version: 0,
            record: MetadataRecord::NoOp(NoOpRecord::default()),
        }
        .encode();
        assert!(VersionedRecord::decode(ok.clone()).is_ok());
        for bad in [
            vec![2, 20, 0],
            vec![1, 99, 0],
            vec![1, 20, 9],
            [&ok[..], &[0]].concat(),
        ] {
            assert!(VersionedRecord::decode(Bytes::from(bad)).is_err());
        }
    }
}
