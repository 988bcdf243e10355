//! Prints `net`'s error-code table, one line per code as `<code> <NAME> <retriable>`, for
//! `cargo xtask crosscheck`, which compares it with Kafka's own `Errors.values()`
//! (`net/crosscheck/CrossCheck.java`): the table in `net/src/error_code.rs` is checked against
//! Kafka, not kept by hand.
//!
//! Usage: `cargo run -p sluice-net --example dump_error_codes`.

use sluice_net::ErrorCode;
use std::io::Write as _;

fn main() {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for &e in ErrorCode::ALL {
        let _ = writeln!(out, "{} {} {}", e.code(), e.name(), e.is_retriable());
    }
}
