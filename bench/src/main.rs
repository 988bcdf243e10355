//! `sluice-bench`: load generator and raw-limit measurements.
//!
//! Subcommands:
//! - `storage`: the shard's append and cold-read throughput on one pinned core, next to this
//!   machine's raw O_DIRECT limit for the same I/O pattern (see `storage.rs`).

mod storage;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "sluice-bench",
    about = "sluice load generator and raw-limit benchmarks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Append and cold-read throughput of one partition vs raw O_DIRECT + fdatasync.
    Storage(storage::StorageArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Storage(args) => storage::run(args),
    }
}
