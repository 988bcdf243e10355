//! ApiVersions: the version table, KIP-511's client software name/version check, and v5's
//! check that the client reached the cluster and node it meant (KIP-1242).

use sluice_net::messages::api_versions_response::{FinalizedFeatureKey, SupportedFeatureKey};
use sluice_net::messages::{ApiVersionsRequest, ApiVersionsResponse};

use crate::errors::code;

/// Kafka's rule for client software name and version: `[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?`.
fn valid_software_field(s: &str) -> bool {
    let b = s.as_bytes();
    let edge = |c: u8| c.is_ascii_alphanumeric();
    let inner = |c: &u8| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'.';
    !b.is_empty() && edge(b[0]) && edge(b[b.len() - 1]) && b.iter().all(inner)
}

/// Who this broker is, as Metadata and DescribeCluster report it, and the epoch of its
/// finalized features (Kafka: the last metadata offset it applied).
pub struct Identity<'a> {
    pub cluster_id: &'a str,
    pub node_id: i32,
    pub features_epoch: i64,
}

/// The feature levels sluice implements: (name, lowest, highest supported, finalized).
/// `transaction.version` 2 is KIP-890 part 2 (an epoch bump per transaction, partitions
/// added by the leaders); Kafka 4.4 finalizes it on a new cluster, and the Java client uses
/// it only when it is finalized. Features sluice does not implement (the KIP-848 consumer
/// protocol's `group.version`, share groups, streams groups) are not advertised.
const FEATURES: &[(&str, i16, i16, i16)] = &[("transaction.version", 0, 2, 2)];

fn add_features(response: &mut ApiVersionsResponse, epoch: i64) {
    response.supported_features = FEATURES
        .iter()
        .map(|&(name, min, max, _)| SupportedFeatureKey {
            name: name.into(),
            min_version: min,
            max_version: max,
            ..Default::default()
        })
        .collect();
    response.finalized_features = FEATURES
        .iter()
        .map(|&(name, _, _, level)| FinalizedFeatureKey {
            name: name.into(),
            min_version_level: level,
            max_version_level: level,
            ..Default::default()
        })
        .collect();
    response.finalized_features_epoch = epoch;
}

pub fn handle(request: &ApiVersionsRequest, version: i16, me: &Identity) -> ApiVersionsResponse {
    let mut response = ApiVersionsResponse {
        api_keys: super::version_table(),
        ..ApiVersionsResponse::default()
    };
    add_features(&mut response, me.features_epoch);
    if version >= 3
        && !(valid_software_field(request.client_software_name.as_str())
            && valid_software_field(request.client_software_version.as_str()))
    {
        response.error_code = code::INVALID_REQUEST;
    }
    if version >= 5 {
        // A Java 4.4 client that knows the cluster sends its id and the node id it dialled on
        // every connection; one without the other is malformed; a mismatch means the address
        // now belongs to another broker, and the client bootstraps again.
        let error = match (&request.cluster_id, request.node_id) {
            (None, -1) => code::NONE,
            (None, _) | (Some(_), -1) => code::INVALID_REQUEST,
            (Some(cluster), node) if cluster.as_str() != me.cluster_id || node != me.node_id => {
                code::REBOOTSTRAP_REQUIRED
            }
            (Some(_), _) => code::NONE,
        };
        if error != code::NONE {
            return ApiVersionsResponse {
                error_code: error,
                ..ApiVersionsResponse::default()
            };
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves KIP-1242's identity check as Kafka 4.4 answers it.
    #[test]
    fn v5_identity_check() {
        let me = Identity {
            cluster_id: "abc",
            node_id: 1,
            features_epoch: 0,
        };
        let ask = |cluster: Option<&'static str>, node: i32| {
            let request = ApiVersionsRequest {
                client_software_name: "t".into(),
                client_software_version: "1".into(),
                cluster_id: cluster.map(Into::into),
                node_id: node,
                ..Default::default()
            };
            let r = handle(&request, 5, &me);
            (r.error_code, r.api_keys.is_empty())
        };
        assert_eq!(ask(None, -1), (code::NONE, false));
        assert_eq!(ask(Some("abc"), 1), (code::NONE, false));
        assert_eq!(ask(Some("xyz"), 1), (code::REBOOTSTRAP_REQUIRED, true));
        assert_eq!(ask(Some("abc"), 9), (code::REBOOTSTRAP_REQUIRED, true));
        assert_eq!(ask(None, 7), (code::INVALID_REQUEST, true));
        assert_eq!(ask(Some("abc"), -1), (code::INVALID_REQUEST, true));
        let request = ApiVersionsRequest {
            cluster_id: Some("xyz".into()),
            node_id: 9,
            client_software_name: "t".into(),
            client_software_version: "1".into(),
            ..Default::default()
        };
        assert_eq!(
            handle(&request, 4, &me).error_code,
            code::NONE,
            "v4 has no check"
        );
    }

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
