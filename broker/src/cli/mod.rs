//! The operator CLI: `sluice topic|group|produce|consume`, talking the Kafka protocol to any
//! broker (`--bootstrap`), one blocking connection per broker (`sluice_net::client`).
//!
//! Layout: this file holds the clap types (`main.rs` flattens them into `sluice`'s command line
//! and calls the four entry points); `topic`, `group`, `produce` and `consume` each own one
//! command; `cluster` is the connections and the metadata and offset lookups they share;
//! `member` is `consume --group`'s group membership over `consumer_protocol` (Kafka's consumer
//! subscription and assignment bytes); `output` prints records.
//! Only these files print to stdout; every Kafka error becomes an `anyhow` error naming the
//! operation and Kafka's error name, which `main` prints with exit code 1.

mod cluster;
mod consume;
mod consumer_protocol;
mod group;
mod member;
mod output;
mod produce;
mod topic;

use std::time::Duration;

use clap::{Args, Subcommand};

pub use consume::consume;
pub use group::group;
pub use produce::produce;
pub use topic::topic;

const CLIENT_ID: &str = "sluice-cli";
const TIMEOUT: Duration = Duration::from_secs(10);

/// Where the broker is.
#[derive(Args, Debug, Clone)]
pub struct Target {
    /// A broker of the cluster, host:port (default 127.0.0.1:9092); accepted anywhere on the
    /// command line, also as Kafka's tools spell it, `--bootstrap-server`.
    #[arg(long, global = true, visible_alias = "bootstrap-server")]
    pub bootstrap: Option<String>,
}

impl Target {
    /// The broker to connect to first.
    pub fn bootstrap(&self) -> &str {
        self.bootstrap.as_deref().unwrap_or("127.0.0.1:9092")
    }
}

#[derive(Subcommand, Debug)]
pub enum TopicCmd {
    /// Create a topic.
    Create {
        name: String,
        #[arg(long, default_value_t = 1)]
        partitions: i32,
        /// A topic config, key=value; repeatable.
        #[arg(long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
    },
    /// List topics (internal ones with --internal).
    List {
        #[arg(long)]
        internal: bool,
    },
    /// Partitions, leaders, offsets and config overrides of a topic.
    Describe { name: String },
    /// Delete a topic.
    Delete { name: String },
    /// Set (--set key=value) or remove (--delete key) topic configs.
    AlterConfig {
        name: String,
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        #[arg(long = "delete", value_name = "KEY")]
        delete: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum GroupCmd {
    /// List consumer groups with their state.
    List,
    /// Members, committed offsets and lag of a group.
    Describe { group: String },
    /// Delete an empty group and its offsets.
    Delete { group: String },
    /// Move an empty group's committed offsets of a topic (dry run without --execute).
    ResetOffsets {
        group: String,
        #[arg(long)]
        topic: String,
        #[arg(long, conflicts_with_all = ["to_latest", "to_offset"])]
        to_earliest: bool,
        #[arg(long, conflicts_with = "to_offset")]
        to_latest: bool,
        #[arg(long)]
        to_offset: Option<i64>,
        #[arg(long)]
        execute: bool,
    },
}

#[derive(Args, Debug)]
pub struct ProduceArgs {
    pub topic: String,
    /// Split each line at the first SEP into key and value (keys pick partitions with the Java
    /// client's murmur2).
    #[arg(long, value_name = "SEP")]
    pub key_separator: Option<String>,
    /// acks: 0, 1 or all.
    #[arg(long, default_value = "all")]
    pub acks: String,
    /// Send every record to this partition.
    #[arg(long)]
    pub partition: Option<i32>,
}

#[derive(Args, Debug)]
pub struct ConsumeArgs {
    pub topic: String,
    /// Where to start without a committed offset: beginning, end, or an offset.
    #[arg(long, default_value = "beginning")]
    pub from: String,
    /// Consume as a member of this group (committing offsets as it goes).
    #[arg(long)]
    pub group: Option<String>,
    /// Stop after this many records.
    #[arg(long)]
    pub count: Option<u64>,
    /// Stop at the end of every partition.
    #[arg(long)]
    pub exit: bool,
    /// text (the value), kv (key<TAB>value) or json.
    #[arg(long, default_value = "text")]
    pub format: String,
}

#[cfg(test)]
mod tests {
    //! `sluice`'s whole command line (`crate::Cli`, which flattens these types) parsed by clap:
    //! each client command's flags and defaults, and where `--bootstrap` may stand.

    use super::*;
    use crate::{Cli, Command};
    use clap::Parser;

    fn parse(args: &[&str]) -> Cli {
        let argv = std::iter::once("sluice").chain(args.iter().copied());
        Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{args:?}: {e}"))
    }

    fn refused(args: &[&str]) -> clap::error::ErrorKind {
        let argv = std::iter::once("sluice").chain(args.iter().copied());
        match Cli::try_parse_from(argv) {
            Ok(cli) => panic!("{args:?} parsed: {cli:?}"),
            Err(e) => e.kind(),
        }
    }

    fn topic_cmd(args: &[&str]) -> TopicCmd {
        match parse(args).command {
            Command::Topic { cmd } => cmd,
            other => panic!("{args:?} is not a topic command: {other:?}"),
        }
    }

    fn group_cmd(args: &[&str]) -> GroupCmd {
        match parse(args).command {
            Command::Group { cmd } => cmd,
            other => panic!("{args:?} is not a group command: {other:?}"),
        }
    }

    fn produce_args(args: &[&str]) -> ProduceArgs {
        match parse(args).command {
            Command::Produce { args } => args,
            other => panic!("not produce: {other:?}"),
        }
    }

    fn consume_args(args: &[&str]) -> ConsumeArgs {
        match parse(args).command {
            Command::Consume { args } => args,
            other => panic!("not consume: {other:?}"),
        }
    }

    /// Without `--bootstrap` the CLI talks to 127.0.0.1:9092.
    #[test]
    fn bootstrap_defaults_to_local_9092() {
        let cli = parse(&["topic", "list"]);
        assert_eq!(cli.target.bootstrap, None);
        assert_eq!(cli.target.bootstrap(), "127.0.0.1:9092");
    }

    /// `--bootstrap` and Kafka's `--bootstrap-server` are one global flag: accepted before the
    /// command, between command and action, and last (issue 18).
    #[test]
    fn bootstrap_is_global_under_both_spellings() {
        let placements: [&[&str]; 5] = [
            &["--bootstrap", "h:1", "topic", "list"],
            &["topic", "--bootstrap", "h:1", "list"],
            &["topic", "list", "--bootstrap", "h:1"],
            &["topic", "list", "--bootstrap-server", "h:1"],
            &["group", "describe", "g", "--bootstrap=h:1"],
        ];
        for args in placements {
            assert_eq!(parse(args).target.bootstrap(), "h:1", "{args:?}");
        }
        for args in [
            &["produce", "t", "--bootstrap-server", "h:2"][..],
            &["consume", "--bootstrap", "h:2", "t"][..],
        ] {
            assert_eq!(parse(args).target.bootstrap(), "h:2", "{args:?}");
        }
    }

    /// clap takes `--bootstrap` even after `start` and `tune` (the flag is global); `main`
    /// refuses it there with exit code 2, which `tests/tests/cli.rs` checks on the binary.
    #[test]
    fn start_and_tune_parse_bootstrap_for_main_to_refuse() {
        let cli = parse(&["start", "--bootstrap", "h:1"]);
        assert!(matches!(cli.command, Command::Start(_)));
        assert_eq!(cli.target.bootstrap.as_deref(), Some("h:1"));
        let cli = parse(&["tune", "--bootstrap", "h:1"]);
        assert!(matches!(cli.command, Command::Tune(_)));
        assert_eq!(cli.target.bootstrap.as_deref(), Some("h:1"));
        assert_eq!(parse(&["start"]).target.bootstrap, None);
    }

    /// `topic create`: one partition and no configs by default; `--config` repeats.
    #[test]
    fn topic_create_flags() {
        let TopicCmd::Create {
            name,
            partitions,
            configs,
        } = topic_cmd(&["topic", "create", "orders"])
        else {
            panic!("not create");
        };
        assert_eq!((name.as_str(), partitions), ("orders", 1));
        assert!(configs.is_empty());
        let TopicCmd::Create {
            partitions,
            configs,
            ..
        } = topic_cmd(&[
            "topic",
            "create",
            "orders",
            "--partitions",
            "3",
            "--config",
            "retention.ms=1",
            "--config",
            "cleanup.policy=compact",
        ])
        else {
            panic!("not create");
        };
        assert_eq!(partitions, 3);
        assert_eq!(configs, ["retention.ms=1", "cleanup.policy=compact"]);
        assert_eq!(
            refused(&["topic", "create"]),
            clap::error::ErrorKind::MissingRequiredArgument
        );
        assert_eq!(
            refused(&["topic", "create", "t", "--partitions", "many"]),
            clap::error::ErrorKind::ValueValidation
        );
    }

    /// `topic list|describe|delete|alter-config` and their flags.
    #[test]
    fn topic_other_actions() {
        assert!(matches!(
            topic_cmd(&["topic", "list"]),
            TopicCmd::List { internal: false }
        ));
        assert!(matches!(
            topic_cmd(&["topic", "list", "--internal"]),
            TopicCmd::List { internal: true }
        ));
        assert!(matches!(
            topic_cmd(&["topic", "describe", "t"]),
            TopicCmd::Describe { name } if name == "t"
        ));
        assert!(matches!(
            topic_cmd(&["topic", "delete", "t"]),
            TopicCmd::Delete { name } if name == "t"
        ));
        let TopicCmd::AlterConfig { name, set, delete } = topic_cmd(&[
            "topic",
            "alter-config",
            "t",
            "--set",
            "a=1",
            "--delete",
            "b",
            "--set",
            "c=2",
        ]) else {
            panic!("not alter-config");
        };
        assert_eq!(name, "t");
        assert_eq!(set, ["a=1", "c=2"]);
        assert_eq!(delete, ["b"]);
        assert_eq!(
            refused(&["topic", "rename", "t"]),
            clap::error::ErrorKind::InvalidSubcommand
        );
    }

    /// `group list|describe|delete`, and `reset-offsets` with its mutually exclusive targets.
    #[test]
    fn group_flags() {
        assert!(matches!(group_cmd(&["group", "list"]), GroupCmd::List));
        assert!(matches!(
            group_cmd(&["group", "describe", "g"]),
            GroupCmd::Describe { group } if group == "g"
        ));
        assert!(matches!(
            group_cmd(&["group", "delete", "g"]),
            GroupCmd::Delete { group } if group == "g"
        ));
        let GroupCmd::ResetOffsets {
            group,
            topic,
            to_earliest,
            to_latest,
            to_offset,
            execute,
        } = group_cmd(&[
            "group",
            "reset-offsets",
            "g",
            "--topic",
            "t",
            "--to-offset",
            "5",
        ])
        else {
            panic!("not reset-offsets");
        };
        assert_eq!((group.as_str(), topic.as_str()), ("g", "t"));
        assert_eq!(
            (to_earliest, to_latest, to_offset, execute),
            (false, false, Some(5), false)
        );
        assert!(matches!(
            group_cmd(&[
                "group",
                "reset-offsets",
                "g",
                "--topic",
                "t",
                "--to-latest",
                "--execute"
            ]),
            GroupCmd::ResetOffsets {
                to_latest: true,
                execute: true,
                ..
            }
        ));
        for both in [
            &["--to-earliest", "--to-latest"][..],
            &["--to-earliest", "--to-offset", "1"][..],
            &["--to-latest", "--to-offset", "1"][..],
        ] {
            let mut args = vec!["group", "reset-offsets", "g", "--topic", "t"];
            args.extend_from_slice(both);
            assert_eq!(
                refused(&args),
                clap::error::ErrorKind::ArgumentConflict,
                "{both:?}"
            );
        }
        assert_eq!(
            refused(&["group", "reset-offsets", "g", "--to-earliest"]),
            clap::error::ErrorKind::MissingRequiredArgument
        );
    }

    /// `produce`: acks all, no key separator, no fixed partition by default.
    #[test]
    fn produce_flags() {
        let a = produce_args(&["produce", "t"]);
        assert_eq!(a.topic, "t");
        assert_eq!(a.acks, "all");
        assert_eq!(a.key_separator, None);
        assert_eq!(a.partition, None);
        let a = produce_args(&[
            "produce",
            "t",
            "--key-separator",
            ":",
            "--acks",
            "1",
            "--partition",
            "2",
        ]);
        assert_eq!(a.key_separator.as_deref(), Some(":"));
        assert_eq!(a.acks, "1");
        assert_eq!(a.partition, Some(2));
    }

    /// `consume`: from the beginning, as text, forever, without a group by default.
    #[test]
    fn consume_flags() {
        let a = consume_args(&["consume", "t"]);
        assert_eq!(a.topic, "t");
        assert_eq!(a.from, "beginning");
        assert_eq!(a.format, "text");
        assert_eq!((a.group, a.count, a.exit), (None, None, false));
        let a = consume_args(&[
            "consume", "t", "--from", "end", "--group", "g", "--count", "7", "--exit", "--format",
            "json",
        ]);
        assert_eq!(a.from, "end");
        assert_eq!(a.group.as_deref(), Some("g"));
        assert_eq!(a.count, Some(7));
        assert!(a.exit);
        assert_eq!(a.format, "json");
        assert_eq!(
            refused(&["consume", "t", "--count", "-1"]),
            clap::error::ErrorKind::UnknownArgument
        );
    }
}
