//! `sluice-net`: the Kafka wire format.
//!
//! Owns frames (a 4-byte big-endian size, then a body), request and response headers, every
//! Kafka API's messages generated from Kafka's own JSON schemas, and the record batch v2 view.
//! It knows nothing of disks. Every decoder is bounded by the bytes it was given: no length or
//! count read from the wire allocates before it is checked against the bytes remaining.

pub mod record_batch;

mod codec;
/// Every Kafka request and response (one module per message with its nested structs; the
/// top-level types re-exported here), generated from Kafka's schemas by `cargo xtask codegen`.
#[path = "generated/mod.rs"]
pub mod messages;

#[cfg(feature = "testgen")]
pub use codec::Rng;
pub use codec::{DecodeError, DecodeErrorKind, Decoder, Encoder, StrBytes, TaggedField, Uuid};
pub use messages::{ApiKey, Request, RequestHeader, Response, ResponseHeader};
