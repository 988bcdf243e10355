//! Client-metrics subscriptions (ConfigResource type 16, KIP-714): their three configs with
//! Kafka 4.4's defaults and validation texts.
//!
//! Subscriptions live in the topic registry (`TopicTable::client_metrics`) and are stored,
//! described and listed (ListConfigResources) as Kafka does, so `kafka-configs --entity-type
//! client-metrics` and `kafka-client-metrics` work. Nothing else reads them: sluice does not
//! advertise GetTelemetrySubscriptions or PushTelemetry, so no client is ever asked to push
//! metrics.
//!
//! Facts: raw requests against the reference Kafka 4.4.0 and `javap` of its
//! `org.apache.kafka.server.metrics.ClientMetricsConfigs` (issue 18 item 5).

use std::collections::BTreeMap;

use crate::group_config::list_items;
use crate::topic_config::ConfigType;

/// One subscription config: name, default, type, documentation. Sorted by name, as described.
pub const CLIENT_METRICS_CONFIGS: &[(&str, &str, ConfigType, &str)] = &[
    (
        "interval.ms",
        "300000",
        ConfigType::Int,
        "Metrics push interval in milliseconds",
    ),
    ("match", "", ConfigType::List, "Client match criteria"),
    (
        "metrics",
        "",
        ConfigType::List,
        "Telemetry metric name prefix list",
    ),
];

/// Push intervals Kafka accepts, in milliseconds.
const INTERVAL_MS_MIN: i32 = 100;
const INTERVAL_MS_MAX: i32 = 3_600_000;

/// The client properties a `match` entry may name.
const MATCH_PARAMS: &[&str] = &[
    "client_instance_id",
    "client_id",
    "client_software_name",
    "client_software_version",
    "client_source_address",
    "client_source_port",
];

/// Why a subscription's configs were refused: Kafka answers some with INVALID_REQUEST and
/// others with INVALID_CONFIG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    Request(String),
    Config(String),
}

/// Checks a subscription's whole set of configs (stored values with the change applied) in
/// Kafka's order: unknown names, each value's type, the push interval, the match patterns.
/// Returns the values as Kafka describes them (trimmed; list items trimmed).
pub fn validate(configs: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>, Refused> {
    if let Some(unknown) = configs
        .keys()
        .find(|k| !CLIENT_METRICS_CONFIGS.iter().any(|(n, ..)| n == k))
    {
        return Err(Refused::Request(format!(
            "Unknown client metrics configuration: {unknown}"
        )));
    }
    let mut parsed = BTreeMap::new();
    for (name, raw) in configs {
        let value = raw.trim();
        let described = if name == "interval.ms" {
            value.parse::<i32>().map(|v| v.to_string()).map_err(|_| {
                Refused::Config(format!(
                    "Invalid value {raw} for configuration {name}: Not a number of type INT"
                ))
            })?
        } else {
            let items = list_items(value);
            if items.iter().any(|i| i.is_empty()) {
                return Err(Refused::Config(format!(
                    "Configuration '{name}' values must not be empty."
                )));
            }
            items.join(",")
        };
        parsed.insert(name.clone(), described);
    }
    if let Some(interval) = parsed.get("interval.ms") {
        let v: i32 = interval.parse().unwrap_or_default();
        if !(INTERVAL_MS_MIN..=INTERVAL_MS_MAX).contains(&v) {
            return Err(Refused::Request(format!(
                "Invalid value {v} for interval.ms, interval must be between {INTERVAL_MS_MIN} and {INTERVAL_MS_MAX} (1 hour)"
            )));
        }
    }
    if let Some(patterns) = parsed.get("match") {
        for pattern in list_items(patterns) {
            if !match_pattern_ok(pattern) {
                return Err(Refused::Config(format!(
                    "Illegal client matching pattern: {pattern}"
                )));
            }
        }
    }
    Ok(parsed)
}

/// `param=regex` with a known client property and a regex that compiles. Java's
/// `String.split("=")` drops trailing empty parts, so `client_id=` is one part and refused.
/// The regex is checked with Rust's regex syntax, which accepts the patterns Java's does for
/// the usual cases (classes, groups, repetition, escapes); lookaround and backreferences,
/// which Java accepts, are refused here.
fn match_pattern_ok(pattern: &str) -> bool {
    let mut parts: Vec<&str> = pattern.split('=').collect();
    while parts.last().is_some_and(|p| p.is_empty()) {
        parts.pop();
    }
    let [param, regex] = parts[..] else {
        return false;
    };
    MATCH_PARAMS.contains(&param.trim()) && regex_syntax::Parser::new().parse(regex.trim()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(pairs: &[(&str, &str)]) -> Result<BTreeMap<String, String>, Refused> {
        validate(
            &pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    /// Proves the codes and texts Kafka 4.4.0 answered (raw IncrementalAlterConfigs against
    /// the reference broker).
    #[test]
    fn kafka_texts() {
        let request = |m: &str| Err(Refused::Request(m.to_owned()));
        let config = |m: &str| Err(Refused::Config(m.to_owned()));
        assert_eq!(
            check(&[("bogus", "1")]),
            request("Unknown client metrics configuration: bogus")
        );
        assert_eq!(
            check(&[("interval.ms", "abc")]),
            config("Invalid value abc for configuration interval.ms: Not a number of type INT")
        );
        assert_eq!(
            check(&[("interval.ms", "99")]),
            request(
                "Invalid value 99 for interval.ms, interval must be between 100 and 3600000 (1 hour)"
            )
        );
        for bad in [
            "client_id",
            "bogus=1",
            "client_id=[",
            "client_id=a=b",
            "client_id=",
        ] {
            assert_eq!(
                check(&[("match", bad)]),
                config(&format!("Illegal client matching pattern: {bad}")),
                "{bad}"
            );
        }
        assert_eq!(
            check(&[("match", "client_id=a{2,")]),
            config("Configuration 'match' values must not be empty.")
        );
    }

    /// Proves the values Kafka accepted are accepted and described as Kafka does.
    #[test]
    fn accepted() {
        let ok = check(&[
            ("metrics", "org.apache.kafka.producer., a.b"),
            ("interval.ms", " 60000"),
            (
                "match",
                "client_id=a,client_software_name=b, client_id =\\p{Alpha}",
            ),
        ])
        .expect("valid");
        assert_eq!(ok["metrics"], "org.apache.kafka.producer.,a.b");
        assert_eq!(ok["interval.ms"], "60000");
        assert!(check(&[("metrics", "")]).is_ok());
        assert!(check(&[("metrics", "a,a")]).is_ok());
        assert!(check(&[("metrics", "*")]).is_ok());
        assert!(check(&[("match", "client_instance_id=x")]).is_ok());
    }
}
