//! Group configs (ConfigResource type 32, KIP-848's dynamic group configs): every key Kafka
//! 4.4 knows for a group, with the broker config it falls back to, and Kafka's validation with
//! its error texts.
//!
//! A group's configs live in the topic registry (`TopicTable::group_configs`), like dynamic
//! broker configs, so they survive restarts; the group itself need not exist, and DeleteGroups
//! leaves them in place (Kafka 4.4 keeps them in its metadata log until they are deleted).
//!
//! sluice stores and describes these values and nothing reads them: they configure the
//! consumer (KIP-848), share and streams group protocols, which sluice does not implement (its
//! coordinator runs the classic protocol, whose session timeout is the member's own). The
//! bounds are Kafka's defaults for the broker settings that carry them
//! (`group.consumer.min.session.timeout.ms`, …), which sluice does not have either.
//!
//! Facts: raw requests against the reference Kafka 4.4.0 and `javap` of its
//! `org.apache.kafka.coordinator.group.GroupConfig` (issue 18 item 5).

use std::collections::BTreeMap;

use crate::topic_config::ConfigType;

/// How a value parses (Kafka's `ConfigDef` type and validator).
#[derive(Debug, Clone, Copy)]
enum Parse {
    /// An INT at least this.
    Int(i32),
    /// A LONG at least this.
    Long(i64),
    Bool,
    /// Any string.
    Str,
    /// `read_committed` or `read_uncommitted`.
    IsolationLevel,
    /// `earliest`, `latest` or `by_duration:<ISO-8601 duration, not negative>`.
    AutoOffsetReset,
    /// A comma-separated list without empty items.
    List,
}

/// The broker-side bound checked after parsing (from the broker's `group.*` settings).
#[derive(Debug, Clone, Copy)]
enum Bound {
    None,
    /// `{name} must be in the range {min} to {max} inclusive.`
    Range(i32, i32),
    /// `{name} must be less than or equal to {max}`
    Max(i32),
    /// `{name} must be greater than or equal to {min}`
    Min(i32),
}

/// One group config key.
#[derive(Debug)]
pub struct GroupConfigDef {
    pub name: &'static str,
    pub kind: ConfigType,
    /// The broker config a group without its own value takes (Kafka's DEFAULT_CONFIG synonym);
    /// the key itself where Kafka has no broker config for it.
    pub synonym: &'static str,
    /// That broker config's value (Kafka's default: sluice has none of these settings).
    pub default: &'static str,
    /// Kafka's internal keys: accepted, described only when the group sets them.
    pub internal: bool,
    /// Kafka's documentation text (DescribeConfigs `include_documentation`).
    pub doc: &'static str,
    parse: Parse,
    bound: Bound,
}

macro_rules! def {
    ($name:expr, $kind:ident, $syn:expr, $default:expr, $parse:expr, $bound:expr, $doc:expr) => {
        GroupConfigDef {
            name: $name,
            kind: ConfigType::$kind,
            synonym: $syn,
            default: $default,
            internal: false,
            doc: $doc,
            parse: $parse,
            bound: $bound,
        }
    };
    (internal $name:expr, $kind:ident, $syn:expr, $default:expr, $parse:expr, $bound:expr, $doc:expr) => {
        GroupConfigDef {
            internal: true,
            ..def!($name, $kind, $syn, $default, $parse, $bound, $doc)
        }
    };
}

/// The broker's registered streams task assignors (`group.streams.assignors`).
const STREAMS_ASSIGNORS: &[&str] = &["sticky"];

/// Every group config in Kafka's definition order (the order its checks run in).
pub static GROUP_CONFIGS: &[GroupConfigDef] = &[
    def!(
        "consumer.session.timeout.ms",
        Int,
        "group.consumer.session.timeout.ms",
        "45000",
        Parse::Int(1),
        Bound::Range(45000, 60000),
        "The timeout to detect client failures when using the consumer group protocol."
    ),
    def!(
        "consumer.heartbeat.interval.ms",
        Int,
        "group.consumer.heartbeat.interval.ms",
        "5000",
        Parse::Int(1),
        Bound::Range(5000, 15000),
        "The heartbeat interval given to the members of a consumer group."
    ),
    def!(
        "consumer.assignment.interval.ms",
        Int,
        "group.consumer.assignment.interval.ms",
        "1000",
        Parse::Int(0),
        Bound::Range(0, 15000),
        "The interval between assignment updates for a consumer group."
    ),
    def!(
        internal "consumer.assignor.offload.enable",
        Boolean,
        "group.consumer.assignor.offload.enable",
        "true",
        Parse::Bool,
        Bound::None,
        "Whether to offload consumer group assignment to a group coordinator background thread."
    ),
    def!(
        "share.session.timeout.ms",
        Int,
        "group.share.session.timeout.ms",
        "45000",
        Parse::Int(1),
        Bound::Range(45000, 60000),
        "The timeout to detect client failures when using the share group protocol."
    ),
    def!(
        "share.heartbeat.interval.ms",
        Int,
        "group.share.heartbeat.interval.ms",
        "5000",
        Parse::Int(1),
        Bound::Range(5000, 15000),
        "The heartbeat interval given to the members of a share group."
    ),
    def!(
        "share.record.lock.duration.ms",
        Int,
        "group.share.record.lock.duration.ms",
        "30000",
        Parse::Int(1000),
        Bound::Range(15000, 60000),
        "The record acquisition lock duration in milliseconds for share groups."
    ),
    def!(
        "share.delivery.count.limit",
        Int,
        "group.share.delivery.count.limit",
        "5",
        Parse::Int(2),
        Bound::Range(2, 10),
        "The maximum number of delivery attempts for a record delivered to a share group."
    ),
    def!(
        "share.partition.max.record.locks",
        Int,
        "group.share.partition.max.record.locks",
        "2000",
        Parse::Int(100),
        Bound::Range(100, 4000),
        "Share-group record lock limit per share-partition."
    ),
    def!(
        "share.auto.offset.reset",
        String,
        "share.auto.offset.reset",
        "latest",
        Parse::AutoOffsetReset,
        Bound::None,
        "The strategy to initialize the share-partition start offset. <ul><li>earliest: automatically reset the offset to the earliest offset</li><li>latest: automatically reset the offset to the latest offset</li><li>by_duration:&lt;duration&gt;: automatically reset the offset to a configured duration from the current timestamp. &lt;duration&gt; must be specified in ISO8601 format (PnDTnHnMn.nS). Negative duration is not allowed.</li><li>anything else: throw exception to the share consumer.</li></ul>"
    ),
    def!(
        "share.isolation.level",
        String,
        "share.isolation.level",
        "read_uncommitted",
        Parse::IsolationLevel,
        Bound::None,
        "Controls how to read records written transactionally. If set to \"read_committed\", the share group will only deliver transactional records which have been committed. If set to \"read_uncommitted\", the share group will return all messages, even transactional messages which have been aborted. Non-transactional records will be returned unconditionally in either mode."
    ),
    def!(
        "share.renew.acknowledge.enable",
        Boolean,
        "share.renew.acknowledge.enable",
        "true",
        Parse::Bool,
        Bound::None,
        "Whether the renew acknowledge type is enabled for the share group."
    ),
    def!(
        "share.assignment.interval.ms",
        Int,
        "group.share.assignment.interval.ms",
        "1000",
        Parse::Int(0),
        Bound::Range(0, 15000),
        "The interval between assignment updates for a share group."
    ),
    def!(
        internal "share.assignor.offload.enable",
        Boolean,
        "group.share.assignor.offload.enable",
        "true",
        Parse::Bool,
        Bound::None,
        "Whether to offload share group assignment to a group coordinator background thread."
    ),
    def!(
        "streams.session.timeout.ms",
        Int,
        "group.streams.session.timeout.ms",
        "45000",
        Parse::Int(1),
        Bound::Range(45000, 60000),
        "The timeout to detect client failures when using the streams group protocol."
    ),
    def!(
        "streams.heartbeat.interval.ms",
        Int,
        "group.streams.heartbeat.interval.ms",
        "5000",
        Parse::Int(1),
        Bound::Range(5000, 15000),
        "The heartbeat interval given to the members."
    ),
    def!(
        "streams.num.standby.replicas",
        Int,
        "group.streams.num.standby.replicas",
        "0",
        Parse::Int(0),
        Bound::Max(2),
        "The number of standby replicas for each task."
    ),
    def!(
        "streams.initial.rebalance.delay.ms",
        Int,
        "group.streams.initial.rebalance.delay.ms",
        "3000",
        Parse::Int(0),
        Bound::None,
        "The amount of time the group coordinator will wait for more streams clients to join a new group before performing the first rebalance. A longer delay means potentially fewer rebalances."
    ),
    def!(
        "streams.assignment.interval.ms",
        Int,
        "group.streams.assignment.interval.ms",
        "1000",
        Parse::Int(0),
        Bound::Range(0, 15000),
        "The interval between assignment updates for a streams group."
    ),
    def!(
        internal "streams.assignor.offload.enable",
        Boolean,
        "group.streams.assignor.offload.enable",
        "true",
        Parse::Bool,
        Bound::None,
        "Whether to offload streams group assignment to a group coordinator background thread."
    ),
    def!(
        internal "streams.task.offset.interval.ms",
        Int,
        "group.streams.task.offset.interval.ms",
        "60000",
        Parse::Int(1),
        Bound::Min(15000),
        "The interval in which the warmup task changelog offsets on a client are updated on the broker. The offsets are sent with the next heartbeat after this time has passed."
    ),
    def!(
        internal "streams.num.warmup.replicas",
        Int,
        "group.streams.num.warmup.replicas",
        "2",
        Parse::Int(0),
        Bound::Max(20),
        "The maximum number of warmup task replicas."
    ),
    def!(
        "streams.rack.aware.assignment.tags",
        List,
        "group.streams.rack.aware.assignment.tags",
        "",
        Parse::List,
        Bound::None,
        "List of client tag keys used to distribute standby replicas across Kafka Streams instances. When configured, and the used broker-side assignor supports it, it will make a best-effort to distribute standby tasks over each client tag dimension."
    ),
    def!(
        internal "streams.acceptable.recovery.lag",
        Long,
        "group.streams.acceptable.recovery.lag",
        "10000",
        Parse::Long(0),
        Bound::None,
        "The maximum acceptable lag (number of offsets to catch up) for a client to be considered caught-up enough to receive an active task assignment."
    ),
    def!(
        "streams.assignor.name",
        String,
        "group.streams.assignors",
        "sticky",
        Parse::Str,
        Bound::None,
        "The task assignor to use for this streams group, selected by short name from the assignors registered via the broker configuration group.streams.assignors. When unset, the group defaults to the first assignor configured in the broker's group.streams.assignors setting. Changing the assignor does not trigger a rebalance for the group; the new assignor takes effect on the next rebalance."
    ),
    def!(
        "errors.deadletterqueue.topic.name",
        String,
        "errors.deadletterqueue.topic.name",
        "",
        Parse::Str,
        Bound::None,
        "The name of the topic to be used as the dead-letter queue (DLQ) topic for this share group. If blank (the default), the group does not have a DLQ topic."
    ),
    def!(
        "errors.deadletterqueue.copy.record.enable",
        Boolean,
        "errors.deadletterqueue.copy.record.enable",
        "false",
        Parse::Bool,
        Bound::None,
        "When writing onto the dead-letter queue topic, whether to copy the original record onto the DLQ topic, or just write a record containing the context information headers."
    ),
];

/// The session timeout each protocol's heartbeat interval must stay below, with the broker
/// defaults used for the one the group does not set: (session key, its default, heartbeat key,
/// its default).
const SESSION_OVER_HEARTBEAT: &[(&str, i32, &str, i32)] = &[
    (
        "consumer.session.timeout.ms",
        45000,
        "consumer.heartbeat.interval.ms",
        5000,
    ),
    (
        "share.session.timeout.ms",
        45000,
        "share.heartbeat.interval.ms",
        5000,
    ),
    (
        "streams.session.timeout.ms",
        45000,
        "streams.heartbeat.interval.ms",
        5000,
    ),
];

/// The definition of `name`, if it is a group config.
pub fn def(name: &str) -> Option<&'static GroupConfigDef> {
    GROUP_CONFIGS.iter().find(|d| d.name == name)
}

/// Checks a group's whole set of configs (its stored values with the change applied), in
/// Kafka's order: unknown names, duplicate rack tags, each value's type and validator (in
/// definition order), then the broker bounds and cross-key rules. Returns the values as Kafka
/// describes them (trimmed; booleans in lower case; list items trimmed). Every error is
/// Kafka's INVALID_CONFIG text.
pub fn validate(configs: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>, String> {
    if let Some(unknown) = configs.keys().find(|k| def(k).is_none()) {
        return Err(format!("Unknown group config name: {unknown}"));
    }
    if let Some(tags) = configs.get("streams.rack.aware.assignment.tags") {
        let items = list_items(tags);
        let mut seen: Vec<&str> = Vec::with_capacity(items.len());
        for item in &items {
            if seen.contains(item) {
                return Err(
                    "streams.rack.aware.assignment.tags must not contain duplicate tag keys."
                        .to_owned(),
                );
            }
            seen.push(item);
        }
    }
    let mut parsed = BTreeMap::new();
    for d in GROUP_CONFIGS {
        if let Some(raw) = configs.get(d.name) {
            parsed.insert(d.name.to_owned(), parse(d, raw)?);
        }
    }
    let int = |name: &str| parsed.get(name).and_then(|v| v.parse::<i32>().ok());
    for d in GROUP_CONFIGS {
        let Some(v) = int(d.name) else { continue };
        match d.bound {
            Bound::Range(min, max) if v < min || v > max => {
                return Err(format!(
                    "{} must be in the range {min} to {max} inclusive.",
                    d.name
                ));
            }
            Bound::Max(max) if v > max => {
                return Err(format!("{} must be less than or equal to {max}", d.name));
            }
            Bound::Min(min) if v < min => {
                return Err(format!("{} must be greater than or equal to {min}", d.name));
            }
            _ => {}
        }
    }
    if let Some(name) = parsed.get("streams.assignor.name")
        && !STREAMS_ASSIGNORS.contains(&name.as_str())
    {
        return Err(format!(
            "streams.assignor.name '{name}' is not a registered task assignor. Registered assignors are: [{}].",
            STREAMS_ASSIGNORS.join(", ")
        ));
    }
    for &(session, session_default, heartbeat, heartbeat_default) in SESSION_OVER_HEARTBEAT {
        if !parsed.contains_key(session) && !parsed.contains_key(heartbeat) {
            continue;
        }
        let s = int(session).unwrap_or(session_default);
        let h = int(heartbeat).unwrap_or(heartbeat_default);
        if s <= h {
            return Err(format!("{session} must be greater than {heartbeat}"));
        }
    }
    if parsed
        .get("errors.deadletterqueue.topic.name")
        .is_some_and(|t| t.starts_with("__"))
    {
        return Err(
            "errors.deadletterqueue.topic.name: DLQ topic name must not start with '__'".to_owned(),
        );
    }
    Ok(parsed)
}

/// A LIST value's items as Kafka's `ConfigDef` splits them (`\s*,\s*`, empty items kept; an
/// empty value is an empty list).
pub fn list_items(value: &str) -> Vec<&str> {
    let value = value.trim();
    if value.is_empty() {
        return Vec::new();
    }
    value.split(',').map(str::trim).collect()
}

/// Parses one value as Kafka's `ConfigDef.parse` does, returning its described form.
fn parse(d: &GroupConfigDef, raw: &str) -> Result<String, String> {
    let value = raw.trim();
    let invalid = |shown: &str, why: &str| {
        Err(format!(
            "Invalid value {shown} for configuration {}: {why}",
            d.name
        ))
    };
    match d.parse {
        Parse::Int(min) => match value.parse::<i32>() {
            Ok(v) if v >= min => Ok(v.to_string()),
            Ok(_) => invalid(value, &format!("Value must be at least {min}")),
            Err(_) => invalid(raw, "Not a number of type INT"),
        },
        Parse::Long(min) => match value.parse::<i64>() {
            Ok(v) if v >= min => Ok(v.to_string()),
            Ok(_) => invalid(value, &format!("Value must be at least {min}")),
            Err(_) => invalid(raw, "Not a number of type LONG"),
        },
        Parse::Bool => match value.to_ascii_lowercase().as_str() {
            b @ ("true" | "false") => Ok(b.to_owned()),
            _ => invalid(raw, "Expected value to be either true or false"),
        },
        Parse::Str => Ok(value.to_owned()),
        Parse::IsolationLevel => match value {
            "read_committed" | "read_uncommitted" => Ok(value.to_owned()),
            _ => invalid(
                value,
                "String must be one of: read_committed, read_uncommitted",
            ),
        },
        Parse::AutoOffsetReset => {
            let ok = match value {
                "earliest" | "latest" => true,
                v => v
                    .strip_prefix("by_duration:")
                    .and_then(iso_duration_nanos)
                    .is_some_and(|s| s >= 0),
            };
            if ok {
                Ok(value.to_owned())
            } else {
                invalid(
                    value,
                    &format!(
                        "Invalid value `{value}` for configuration {}. The value must be either 'earliest', 'latest' or of the format 'by_duration:<PnDTnHnMn.nS>'.",
                        d.name
                    ),
                )
            }
        }
        Parse::List => {
            let items = list_items(value);
            if items.iter().any(|i| i.is_empty()) {
                return Err(format!(
                    "Configuration '{}' values must not be empty.",
                    d.name
                ));
            }
            Ok(items.join(","))
        }
    }
}

/// The length of an ISO-8601 duration as Java's `Duration.parse` reads it
/// (`[-+]PnDTnHnMn.nS`, letters in either case, each number signed, at least one part, `T`
/// only before a time part), in nanoseconds; `None` if it does not parse.
fn iso_duration_nanos(text: &str) -> Option<i128> {
    const NANOS: i128 = 1_000_000_000;
    let (negative, rest) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let mut s = rest.strip_prefix(['P', 'p'])?;
    // Takes "<signed digits>" off the front of `s`: (value, digit count, rest).
    fn number(s: &str) -> Option<(i128, usize, &str)> {
        let sign = usize::from(s.starts_with(['-', '+']));
        let digits = s[sign..].bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        Some((
            s[..sign + digits].parse().ok()?,
            digits,
            &s[sign + digits..],
        ))
    }
    // Takes "<signed digits><unit>" off the front of `s` when the unit matches.
    fn part(s: &str, unit: char) -> Option<(i128, &str)> {
        let (n, _, rest) = number(s)?;
        let rest = rest.strip_prefix([unit, unit.to_ascii_lowercase()])?;
        Some((n, rest))
    }
    let mut total: i128 = 0;
    let mut parts = 0;
    if let Some((days, r)) = part(s, 'D') {
        total += days * 86_400 * NANOS;
        parts += 1;
        s = r;
    }
    if let Some(mut t) = s.strip_prefix(['T', 't']) {
        let mut time_parts = 0;
        for (unit, scale) in [('H', 3600), ('M', 60)] {
            if let Some((n, r)) = part(t, unit) {
                total += n * scale * NANOS;
                time_parts += 1;
                t = r;
            }
        }
        if let Some((secs, _, r)) = number(t) {
            let mut nanos = secs * NANOS;
            let mut r = r;
            if let Some(f) = r.strip_prefix(['.', ',']) {
                let digits = f.bytes().take_while(u8::is_ascii_digit).count();
                if digits > 9 {
                    return None;
                }
                let fraction: i128 = format!("{:0<9}", &f[..digits]).parse().ok()?;
                // The fraction takes the sign of the seconds ("-1.5S" is -1.5 s).
                nanos += if t.starts_with('-') {
                    -fraction
                } else {
                    fraction
                };
                r = &f[digits..];
            }
            t = r.strip_prefix(['S', 's'])?;
            total += nanos;
            time_parts += 1;
        }
        if time_parts == 0 || !t.is_empty() {
            return None;
        }
        parts += time_parts;
    } else if !s.is_empty() {
        return None;
    }
    if parts == 0 {
        return None;
    }
    Some(if negative { -total } else { total })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(pairs: &[(&str, &str)]) -> Result<BTreeMap<String, String>, String> {
        validate(
            &pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    /// Proves the answers and texts Kafka 4.4.0 gave for each kind of bad value (probed with
    /// raw IncrementalAlterConfigs against the reference broker).
    #[test]
    fn kafka_texts() {
        let err = |k: &str, v: &str| check(&[(k, v)]).unwrap_err();
        assert_eq!(
            err("consumer.session.timeout.ms", "1000"),
            "consumer.session.timeout.ms must be in the range 45000 to 60000 inclusive."
        );
        assert_eq!(
            err("consumer.session.timeout.ms", "70000"),
            "consumer.session.timeout.ms must be in the range 45000 to 60000 inclusive."
        );
        assert_eq!(
            err("consumer.heartbeat.interval.ms", "1000"),
            "consumer.heartbeat.interval.ms must be in the range 5000 to 15000 inclusive."
        );
        assert_eq!(
            err("consumer.assignment.interval.ms", "20000"),
            "consumer.assignment.interval.ms must be in the range 0 to 15000 inclusive."
        );
        assert_eq!(
            err("consumer.session.timeout.ms", "abc"),
            "Invalid value abc for configuration consumer.session.timeout.ms: Not a number of type INT"
        );
        assert_eq!(
            err("consumer.session.timeout.ms", "2147483648"),
            "Invalid value 2147483648 for configuration consumer.session.timeout.ms: Not a number of type INT"
        );
        assert_eq!(
            err("consumer.session.timeout.ms", "-1"),
            "Invalid value -1 for configuration consumer.session.timeout.ms: Value must be at least 1"
        );
        assert_eq!(
            err("bogus.key", "1"),
            "Unknown group config name: bogus.key"
        );
        assert_eq!(
            err("share.auto.offset.reset", "sideways"),
            "Invalid value sideways for configuration share.auto.offset.reset: Invalid value `sideways` for configuration share.auto.offset.reset. The value must be either 'earliest', 'latest' or of the format 'by_duration:<PnDTnHnMn.nS>'."
        );
        assert_eq!(
            err("share.isolation.level", "bogus"),
            "Invalid value bogus for configuration share.isolation.level: String must be one of: read_committed, read_uncommitted"
        );
        assert_eq!(
            err("share.renew.acknowledge.enable", "maybe"),
            "Invalid value maybe for configuration share.renew.acknowledge.enable: Expected value to be either true or false"
        );
        assert_eq!(
            err("share.delivery.count.limit", "11"),
            "share.delivery.count.limit must be in the range 2 to 10 inclusive."
        );
        assert_eq!(
            err("share.delivery.count.limit", "1"),
            "Invalid value 1 for configuration share.delivery.count.limit: Value must be at least 2"
        );
        assert_eq!(
            err("share.partition.max.record.locks", "50"),
            "Invalid value 50 for configuration share.partition.max.record.locks: Value must be at least 100"
        );
        assert_eq!(
            err("share.partition.max.record.locks", "5000"),
            "share.partition.max.record.locks must be in the range 100 to 4000 inclusive."
        );
        assert_eq!(
            err("streams.num.standby.replicas", "3"),
            "streams.num.standby.replicas must be less than or equal to 2"
        );
        assert_eq!(
            err("streams.num.warmup.replicas", "1000"),
            "streams.num.warmup.replicas must be less than or equal to 20"
        );
        assert_eq!(
            err("streams.task.offset.interval.ms", "1"),
            "streams.task.offset.interval.ms must be greater than or equal to 15000"
        );
        assert_eq!(
            err("streams.task.offset.interval.ms", "0"),
            "Invalid value 0 for configuration streams.task.offset.interval.ms: Value must be at least 1"
        );
        assert_eq!(
            err("streams.assignor.name", "nope"),
            "streams.assignor.name 'nope' is not a registered task assignor. Registered assignors are: [sticky]."
        );
        assert_eq!(
            err("streams.rack.aware.assignment.tags", "a, a"),
            "streams.rack.aware.assignment.tags must not contain duplicate tag keys."
        );
        assert_eq!(
            err("streams.rack.aware.assignment.tags", "a,,b"),
            "Configuration 'streams.rack.aware.assignment.tags' values must not be empty."
        );
        assert_eq!(
            err("errors.deadletterqueue.topic.name", "__x"),
            "errors.deadletterqueue.topic.name: DLQ topic name must not start with '__'"
        );
        assert_eq!(
            err("consumer.assignor.offload.enable", "maybe"),
            "Invalid value maybe for configuration consumer.assignor.offload.enable: Expected value to be either true or false"
        );
    }

    /// Proves unknown names are reported before bad values, as Kafka checks names first.
    #[test]
    fn names_before_values() {
        assert_eq!(
            check(&[("consumer.session.timeout.ms", "1"), ("bogus", "1")]).unwrap_err(),
            "Unknown group config name: bogus"
        );
    }

    /// Proves accepted values come back as Kafka describes them.
    #[test]
    fn accepted_values_are_described_normalized() {
        let ok = check(&[
            ("consumer.heartbeat.interval.ms", " 6000 "),
            ("share.renew.acknowledge.enable", "TRUE"),
            ("share.auto.offset.reset", " latest "),
            ("share.isolation.level", " read_committed"),
            ("streams.rack.aware.assignment.tags", "x , y"),
            ("streams.acceptable.recovery.lag", "99999999999"),
            ("errors.deadletterqueue.topic.name", ""),
        ])
        .expect("valid");
        assert_eq!(ok["consumer.heartbeat.interval.ms"], "6000");
        assert_eq!(ok["share.renew.acknowledge.enable"], "true");
        assert_eq!(ok["share.auto.offset.reset"], "latest");
        assert_eq!(ok["share.isolation.level"], "read_committed");
        assert_eq!(ok["streams.rack.aware.assignment.tags"], "x,y");
        assert_eq!(ok["errors.deadletterqueue.topic.name"], "");
    }

    /// Proves `by_duration:` takes Java's ISO-8601 durations and refuses negative ones, as
    /// Kafka did for each of these values.
    #[test]
    fn share_auto_offset_reset_durations() {
        for ok in [
            "by_duration:PT1H",
            "by_duration:P1D",
            "by_duration:pt0s",
            "by_duration:P1DT2H3M4.5S",
            "by_duration:PT2H-1M",
        ] {
            assert!(check(&[("share.auto.offset.reset", ok)]).is_ok(), "{ok}");
        }
        for bad in [
            "by_duration:-PT1H",
            "by_duration:",
            "by_duration:xx",
            "by_duration:PT",
            "by_duration:P",
            "by_duration:P1DT",
            "by_duration:PT-1H",
            "by_duration:PT-0.5S",
            "by_duration:PT1.1234567891S",
            "EARLIEST",
            "none",
        ] {
            assert!(check(&[("share.auto.offset.reset", bad)]).is_err(), "{bad}");
        }
    }

    /// Proves the definition table: 27 keys, 21 described by default, every default valid.
    #[test]
    fn table() {
        assert_eq!(GROUP_CONFIGS.len(), 27);
        assert_eq!(GROUP_CONFIGS.iter().filter(|d| !d.internal).count(), 21);
        for d in GROUP_CONFIGS {
            assert!(
                check(&[(d.name, d.default)]).is_ok(),
                "default of {}",
                d.name
            );
        }
    }
}
