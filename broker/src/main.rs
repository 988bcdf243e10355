//! `sluice`: the broker binary. `sluice start` runs the broker; see `runtime` for its life cycle.
//! `sluice tune` checks (and with `--apply` sets) the host settings the broker depends on; see
//! `tune`.

mod cli;
mod client_metrics;
mod cluster_topics;
mod config;
mod connection;
mod controller;
mod core;
mod errors;
mod fetch_sessions;
mod fetcher;
mod forward;
mod group_config;
mod groups;
mod handlers;
mod image;
mod isr;
mod limits;
mod mesh;
mod messages;
mod metadata;
mod metrics;
mod partitions;
mod peer_calls;
mod producer_ids;
mod registry;
mod replication;
mod router;
mod runtime;
mod shutdown;
mod startup;
mod stop;
mod topic_config;
mod tune;
mod txn;

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
    /// The client commands' broker (`--bootstrap`), wherever it stands on the command line.
    #[command(flatten)]
    target: cli::Target,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start the broker (defaults: listen 127.0.0.1:9092, data dir ./sluice-data, every core).
    Start(StartArgs),
    /// Create, list, describe, delete topics and alter their configs (any Kafka-API broker).
    Topic {
        #[command(subcommand)]
        cmd: cli::TopicCmd,
    },
    /// List, describe and delete consumer groups; reset their offsets.
    Group {
        #[command(subcommand)]
        cmd: cli::GroupCmd,
    },
    /// Produce lines from stdin to a topic.
    Produce {
        #[command(flatten)]
        args: cli::ProduceArgs,
    },
    /// Print a topic's records (optionally as a member of a consumer group).
    Consume {
        #[command(flatten)]
        args: cli::ConsumeArgs,
    },
    /// Check the kernel and machine settings sluice depends on (the default), or set what can be
    /// set at runtime (--apply, as root). tuning/README.md explains each setting.
    Tune(TuneArgs),
}

#[derive(Args, Debug)]
struct TuneArgs {
    /// Print each setting with its value, the recommendation and a verdict; exit 1 when one
    /// would stop sluice from starting (the default).
    #[arg(long, conflicts_with = "apply")]
    check: bool,
    /// As root: set what can be set at runtime (sysctls, CPU governor, transparent huge pages,
    /// I/O scheduler, clock source, IRQ affinity), say what changed, then check again.
    #[arg(long)]
    apply: bool,
    /// Directory standing for `/`: every file is read (and with --apply written) under it, so
    /// a fake /proc + /sys tree can be checked.
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// TOML file with any BrokerConfig setting, as for `start` (the memlock need and the data
    /// disk follow it).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Any BrokerConfig setting as `key=value`, as for `start`; repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Number of cores (executors) the broker will run.
    #[arg(long)]
    cores: Option<usize>,
    /// Data directory the broker will use (its disk is checked).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

impl TuneArgs {
    /// Checks (or applies, then checks) and prints; returns the exit code.
    fn run(self) -> anyhow::Result<i32> {
        let mut config = BrokerConfig::from_file_and_settings(self.config.as_deref(), &self.set)?;
        if let Some(v) = self.cores {
            config.cores = Some(v);
        }
        if let Some(v) = self.data_dir {
            config.data_dir = v;
        }
        config.validate()?;
        let root = tune::Root::new(self.root);
        let target = tune::Target::for_config(&root, &config);
        let mut code = 0;
        if self.apply {
            let outcome = tune::apply(&root, &tune::check(&root, &target));
            let text = outcome.render();
            if self.json {
                eprint!("{text}");
            } else {
                print_stdout(&format!("{text}\n"));
            }
            if matches!(outcome, tune::ApplyOutcome::NotRoot) {
                return Ok(1);
            }
            if !outcome.succeeded() {
                code = 1;
            }
        }
        let rows = tune::check(&root, &target);
        if self.json {
            print_stdout(&format!("{}\n", tune::render_json(&rows)));
        } else {
            print_stdout(&tune::render_table(&rows));
        }
        if tune::blocking(&rows) {
            code = 1;
        }
        Ok(code)
    }
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
    /// This node's id (Kafka's node.id).
    #[arg(long)]
    node_id: Option<i32>,
    /// broker,controller (default), broker or controller (Kafka's process.roles).
    #[arg(long)]
    process_roles: Option<String>,
    /// Every controller voter: id@host:port,... (Kafka's controller.quorum.voters).
    #[arg(long)]
    controller_voters: Option<String>,
    /// Where this node's controller listens (default: its address in --controller-voters).
    #[arg(long)]
    controller_listen: Option<SocketAddr>,
    /// The cluster id all nodes share (default: derived from --controller-voters).
    #[arg(long)]
    cluster_id: Option<String>,
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
        if let Some(v) = self.node_id {
            c.node_id = v;
        }
        if let Some(v) = self.process_roles {
            c.process_roles = v;
        }
        if let Some(v) = self.controller_voters {
            c.controller_voters = v;
        }
        if let Some(v) = self.controller_listen {
            c.controller_listen = Some(v);
        }
        if let Some(v) = self.cluster_id {
            c.cluster_id = Some(v);
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
        // A relative data dir (the default `./sluice-data`, a flag, or the config file's) is
        // taken against the directory sluice starts in, as Kafka's `log.dirs` is.
        c.data_dir = std::path::absolute(&c.data_dir)
            .map_err(|e| anyhow::anyhow!("data dir {}: {e}", c.data_dir.display()))?;
        c.validate()?;
        Ok(c)
    }
}

/// Prints a report; a closed pipe (`sluice tune | head`) is not an error worth a panic.
fn print_stdout(text: &str) {
    use std::io::Write as _;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
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
    let target = cli.target;
    if target.bootstrap.is_some() && matches!(cli.command, Command::Start(_) | Command::Tune(_)) {
        eprintln!(
            "sluice: --bootstrap is for the client commands (topic, group, produce, consume); \
             a broker listens with --listen"
        );
        std::process::exit(2);
    }
    let code = match cli.command {
        Command::Topic { cmd } => tool(cli::topic(&target, cmd)),
        Command::Group { cmd } => tool(cli::group(&target, cmd)),
        Command::Produce { args } => tool(cli::produce(&target, args)),
        Command::Consume { args } => tool(cli::consume(&target, args)),
        Command::Start(args) => match args.into_config().and_then(|config| {
            startup::check_host(&config)?;
            runtime::run(config)
        }) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("sluice: {e:#}");
                1
            }
        },
        Command::Tune(args) => args.run().unwrap_or_else(|e| {
            eprintln!("sluice: {e:#}");
            2
        }),
    };
    std::process::exit(code);
}
