//! Request and response headers, and the step from a frame body to a typed request.
//!
//! Invariants:
//! - The correlation id is read from the fixed 8-byte prefix of the header, so every failure
//!   after it (unknown API key, unsupported version, malformed header or body) carries it and
//!   the broker can answer or close cleanly.
//! - Versions are checked against the schema here; the broker checks its own, narrower table
//!   of implemented versions, which is also what [`api_versions_unsupported_answer`] advertises.

use crate::codec::{DecodeError, Decoder, Encoder};
use crate::frame::FrameError;
use crate::messages::api_versions_response::{ApiVersion, ApiVersionsResponse};
use crate::messages::{ApiKey, Request, RequestHeader, ResponseHeader};
use bytes::Bytes;

/// Bytes of a request header's fixed part: api key, api version, correlation id.
pub const REQUEST_HEADER_FIXED_BYTES: usize = 8;

/// Kafka error code UNSUPPORTED_VERSION.
pub const UNSUPPORTED_VERSION: i16 = 35;

/// The fixed part of a request header, readable whatever the API key and version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestPrefix {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
}

impl RequestPrefix {
    /// Reads the fixed part of the header at the start of a request frame body.
    pub fn peek(body: &[u8]) -> Result<RequestPrefix, FrameError> {
        let Some(p) = body.get(..REQUEST_HEADER_FIXED_BYTES) else {
            return Err(FrameError::TooShort {
                size: body.len(),
                needed: REQUEST_HEADER_FIXED_BYTES,
            });
        };
        Ok(RequestPrefix {
            api_key: i16::from_be_bytes([p[0], p[1]]),
            api_version: i16::from_be_bytes([p[2], p[3]]),
            correlation_id: i32::from_be_bytes([p[4], p[5], p[6], p[7]]),
        })
    }
}

/// Why a request frame cannot be turned into a typed request. Every variant past `Frame`
/// carries the header's fixed part, so the correlation id is always known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The body is too short for a header.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// No schema for this API key: Kafka closes the connection.
    #[error("unknown api key {} (correlation id {})", .0.api_key, .0.correlation_id)]
    UnknownApiKey(RequestPrefix),
    /// The version is outside the schema's versions. For ApiVersions, answer with
    /// [`api_versions_unsupported_answer`] (KIP-511); otherwise close the connection.
    #[error(
        "api key {} version {} is not in the schema (correlation id {})",
        .0.api_key, .0.api_version, .0.correlation_id
    )]
    UnsupportedVersion(RequestPrefix),
    /// The header or body is malformed.
    #[error("malformed request (correlation id {}): {error}", .prefix.correlation_id)]
    Malformed {
        prefix: RequestPrefix,
        error: DecodeError,
    },
}

impl RequestError {
    /// The request's correlation id, when the frame was long enough to hold one.
    pub fn correlation_id(&self) -> Option<i32> {
        match self {
            RequestError::Frame(_) => None,
            RequestError::UnknownApiKey(p) | RequestError::UnsupportedVersion(p) => {
                Some(p.correlation_id)
            }
            RequestError::Malformed { prefix, .. } => Some(prefix.correlation_id),
        }
    }
}

/// Decodes the request header of a frame body and returns the API key, the header and the
/// undecoded message body (a slice of `body`). Lets the broker admit a request by API and
/// size before decoding the message.
pub fn decode_request_header(body: Bytes) -> Result<(ApiKey, RequestHeader, Bytes), RequestError> {
    let prefix = RequestPrefix::peek(&body)?;
    let Some(api_key) = ApiKey::from_i16(prefix.api_key) else {
        return Err(RequestError::UnknownApiKey(prefix));
    };
    if !api_key.valid_versions().contains(&prefix.api_version) {
        return Err(RequestError::UnsupportedVersion(prefix));
    }
    let mut d = Decoder::new(body);
    let header_version = api_key.request_header_version(prefix.api_version);
    let header = RequestHeader::decode(&mut d, header_version)
        .map_err(|error| RequestError::Malformed { prefix, error })?;
    Ok((api_key, header, d.into_rest()))
}

/// Decodes a whole request frame body: header, then message, with no trailing bytes.
pub fn decode_request(body: Bytes) -> Result<(RequestHeader, Request), RequestError> {
    let (api_key, header, rest) = decode_request_header(body)?;
    let prefix = RequestPrefix {
        api_key: header.request_api_key,
        api_version: header.request_api_version,
        correlation_id: header.correlation_id,
    };
    let request = Request::decode(api_key, header.request_api_version, rest)
        .map_err(|error| RequestError::Malformed { prefix, error })?;
    Ok((header, request))
}

/// Encodes a whole response frame: size, response header (version from
/// [`ApiKey::response_header_version`]), then what `body` writes. Returns the chunks for a
/// vectored write; record batches in the body are chunks of their own.
pub fn response_frame(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: impl FnOnce(&mut Encoder),
) -> Vec<Bytes> {
    let mut e = Encoder::framed();
    let header = ResponseHeader {
        correlation_id,
        ..ResponseHeader::default()
    };
    header.encode(&mut e, api_key.response_header_version(version));
    body(&mut e);
    e.finish()
}

/// One API's version range as the broker advertises it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdvertisedVersions {
    pub api_key: ApiKey,
    pub min_version: i16,
    pub max_version: i16,
}

/// The KIP-511 answer to an ApiVersions request of a version the broker does not know: a
/// whole frame with response header v0 and an ApiVersions v0 body holding UNSUPPORTED_VERSION
/// and the broker's ranges, which every client version can read.
///
/// Use it both for [`RequestError::UnsupportedVersion`] on ApiVersions (a version beyond the
/// schema) and for a version the schema has but the broker does not advertise.
pub fn api_versions_unsupported_answer(
    correlation_id: i32,
    advertised: &[AdvertisedVersions],
) -> Vec<Bytes> {
    let body = ApiVersionsResponse {
        error_code: UNSUPPORTED_VERSION,
        api_keys: advertised
            .iter()
            .map(|a| ApiVersion {
                api_key: a.api_key.key(),
                min_version: a.min_version,
                max_version: a.max_version,
                ..ApiVersion::default()
            })
            .collect(),
        ..ApiVersionsResponse::default()
    };
    response_frame(ApiKey::ApiVersions, 0, correlation_id, |e| {
        body.encode(e, 0)
    })
}
