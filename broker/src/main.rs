//! `sluice`: the broker binary. `sluice start` runs the broker; see `runtime` for its life cycle.

mod cli;
mod config;
mod connection;
mod core;
mod errors;
mod groups;
mod handlers;
mod mesh;
mod metrics;
mod metadata;
mod partitions;
mod producer_ids;
mod registry;
mod runtime;
mod startup;
mod topic_config;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::BrokerConfig;

#[derive(Parser, Debug)]
#[command(
    name = "sluice",
    version,
    about = "A Kafka-compatible, thread-per-core event-streaming broker"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start the broker (defaults: listen 127.0.0.1:9092, data dir ./sluice-data, every core).
    Start(StartArgs),
    /// Create, list, describe, delete topics and alter their configs (any Kafka-API broker).
    Topic {
        #[command(flatten)]
        target: cli::Target,
        #[command(subcommand)]
        cmd: cli::TopicCmd,
    },
    /// List, describe and delete consumer groups; reset their offsets.
    Group {
        #[command(flatten)]
        target: cli::Target,
        #[command(subcommand)]
        cmd: cli::GroupCmd,
    },
    /// Produce lines from stdin to a topic.
    Produce {
        #[command(flatten)]
        target: cli::Target,
        #[command(flatten)]
        args: cli::ProduceArgs,
    },
    /// Print a topic's records (optionally as a member of a consumer group).
    Consume {
        #[command(flatten)]
        target: cli::Target,
        #[command(flatten)]
        args: cli::ConsumeArgs,
    },
}

#[derive(Args, Debug)]
struct StartArgs {
    /// TOML file with any BrokerConfig setting; flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address to accept Kafka clients on.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// host:port put in Metadata responses (default: the listen address).
    #[arg(long)]
    advertise: Option<String>,
    /// Directory for partitions and metadata.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Number of cores (executors) to run.
    #[arg(long)]
    cores: Option<usize>,
    /// Partitions of an auto-created topic.
    #[arg(long)]
    default_partitions: Option<i32>,
    /// Create topics on first use (true/false).
    #[arg(long)]
    auto_create_topics: Option<bool>,
    /// Where `/metrics` (Prometheus text) is served: host:port, or `off`.
    #[arg(long)]
    metrics_listen: Option<String>,
    /// Any BrokerConfig setting as `key=value` (TOML value; a bare word is a string), applied
    /// after the file and before the other flags; repeatable. E.g.
    /// `--set group_initial_rebalance_delay_ms=0`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

impl StartArgs {
    fn into_config(self) -> anyhow::Result<BrokerConfig> {
        let mut c = BrokerConfig::from_file_and_settings(self.config.as_deref(), &self.set)?;
        if let Some(v) = self.metrics_listen {
            c.metrics_listen = v;
        }
        if let Some(v) = self.listen {
            c.listen = v;
        }
        if let Some(v) = self.advertise {
            c.advertise = Some(v);
        }
        if let Some(v) = self.data_dir {
            c.data_dir = v;
        }
        if let Some(v) = self.cores {
            c.cores = Some(v);
        }
        if let Some(v) = self.default_partitions {
            c.default_partitions = v;
        }
        if let Some(v) = self.auto_create_topics {
            c.auto_create_topics = v;
        }
        c.validate()?;
        Ok(c)
    }
}

fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let tool = |r: anyhow::Result<()>| match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("sluice: {e:#}");
            1
        }
    };
    let code = match cli.command {
        Command::Topic { target, cmd } => tool(cli::topic(&target, cmd)),
        Command::Group { target, cmd } => tool(cli::group(&target, cmd)),
        Command::Produce { target, args } => tool(cli::produce(&target, args)),
        Command::Consume { target, args } => tool(cli::consume(&target, args)),
        Command::Start(args) => match args.into_config().and_then(runtime::run) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("sluice: {e:#}");
                1
            }
        },
    };
    std::process::exit(code);
}
