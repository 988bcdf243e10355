//! Authorized operations, as Kafka 4.4 answers them with no authorizer: every operation the
//! resource type supports (`AclEntry.supportedOperations`), as a bit field of `AclOperation`
//! codes (`Utils.to32BitField`). The one place these numbers are defined; Metadata,
//! DescribeCluster, DescribeTopicPartitions and DescribeGroups all answer from here.

/// "Not requested" (Kafka's `Integer.MIN_VALUE`).
pub const OMITTED: i32 = i32::MIN;

/// `AclOperation` codes.
const READ: u32 = 3;
const WRITE: u32 = 4;
const CREATE: u32 = 5;
const DELETE: u32 = 6;
const ALTER: u32 = 7;
const DESCRIBE: u32 = 8;
const CLUSTER_ACTION: u32 = 9;
const DESCRIBE_CONFIGS: u32 = 10;
const ALTER_CONFIGS: u32 = 11;
const IDEMPOTENT_WRITE: u32 = 12;

const fn bits(ops: &[u32]) -> i32 {
    let mut field = 0i32;
    let mut i = 0;
    while i < ops.len() {
        field |= 1 << ops[i];
        i += 1;
    }
    field
}

/// CREATE, ALTER, DESCRIBE, CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE.
pub const CLUSTER: i32 = bits(&[
    CREATE,
    ALTER,
    DESCRIBE,
    CLUSTER_ACTION,
    DESCRIBE_CONFIGS,
    ALTER_CONFIGS,
    IDEMPOTENT_WRITE,
]);
/// READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS.
pub const TOPIC: i32 = bits(&[
    READ,
    WRITE,
    CREATE,
    DELETE,
    ALTER,
    DESCRIBE,
    DESCRIBE_CONFIGS,
    ALTER_CONFIGS,
]);
/// READ, DELETE, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS.
pub const GROUP: i32 = bits(&[READ, DELETE, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS]);

// The values Kafka 4.4.0 answers (raw requests against the reference broker).
const _: () = assert!(CLUSTER == 8096);
const _: () = assert!(TOPIC == 3576);
const _: () = assert!(GROUP == 3400);

/// `ops` when the client asked for authorized operations, else [`OMITTED`].
pub fn when(asked: bool, ops: i32) -> i32 {
    if asked { ops } else { OMITTED }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proves the three bit fields are Kafka 4.4's numbers and that "not asked" is i32::MIN.
    #[test]
    fn kafka_values() {
        assert_eq!(when(true, CLUSTER), 8096);
        assert_eq!(when(true, TOPIC), 3576);
        assert_eq!(when(true, GROUP), 3400);
        assert_eq!(when(false, CLUSTER), i32::MIN);
    }
}
