//! `cargo xtask demo` (filled in with the netlayer).

pub(crate) fn run(_args: &[String]) -> Result<(), String> {
    Err("the demo arrives with uds-netlayer".into())
}
