//! Project automation (`cargo xtask ...`).

fn main() {
    eprintln!("usage: cargo xtask <demo|bench>");
    std::process::exit(2);
}
