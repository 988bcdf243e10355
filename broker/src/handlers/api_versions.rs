//! ApiVersions: the version table, and KIP-511's client software name/version check.

use sluice_net::messages::{ApiVersionsRequest, ApiVersionsResponse};

use crate::errors::code;

/// Kafka's rule for client software name and version: `[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?`.
fn valid_software_field(s: &str) -> bool {
    let b = s.as_bytes();
    let edge = |c: u8| c.is_ascii_alphanumeric();
    let inner = |c: &u8| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'.';
    !b.is_empty() && edge(b[0]) && edge(b[b.len() - 1]) && b.iter().all(inner)
}

pub fn handle(request: &ApiVersionsRequest, version: i16) -> ApiVersionsResponse {
    let mut response = ApiVersionsResponse {
        api_keys: super::version_table(),
        ..ApiVersionsResponse::default()
    };
    if version >= 3
        && !(valid_software_field(request.client_software_name.as_str())
            && valid_software_field(request.client_software_version.as_str()))
    {
        response.error_code = code::INVALID_REQUEST;
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves KIP-511's name rule: librdkafka's and Java's names pass, odd ones fail.
    #[test]
    fn software_names() {
        assert!(valid_software_field("librdkafka"));
        assert!(valid_software_field("2.0.2"));
        assert!(valid_software_field("apache-kafka-java"));
        assert!(!valid_software_field(""));
        assert!(!valid_software_field("-x"));
        assert!(!valid_software_field("a b"));
    }
}
