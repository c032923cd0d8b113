//! `distlogd demo`: a client that logs into a running sidecar. Not written
//! yet; this is the hook for it.

use crate::cli::DemoArgs;

/// Why the demo failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// Writing to stdout failed.
    #[error("stdout: {0}")]
    Io(#[from] std::io::Error),
}

/// Run the demo.
pub fn run(_args: &DemoArgs) -> Result<(), DemoError> {
    use std::io::Write as _;
    writeln!(std::io::stdout(), "not yet")?;
    Ok(())
}
