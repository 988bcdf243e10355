//! `sluice-bench`: load generator and raw-limit measurements.

fn main() {
    eprintln!("sluice-bench: not built yet");
    std::process::exit(2);
}
