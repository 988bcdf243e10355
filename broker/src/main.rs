//! `sluice`: the broker binary.

fn main() {
    eprintln!("sluice: the broker is not built yet (see issue 12)");
    std::process::exit(2);
}
