//! PLACEHOLDER with the contract: running VMs (foreground and detached),
//! the control socket, console, and the lifecycle commands. Owned by the
//! lifecycle work, which replaces the bodies.

use std::path::Path;
use std::process::ExitCode;

use super::library::Library;

/// Arguments of `start`, `stop`, ... (clap derive); the CLI flattens these.
#[derive(Debug, clap::Args)]
pub struct StartArgs {
    /// VM name.
    pub name: String,
}

/// What `list`/`info` show as a VM's state, derived from runtime files.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase", tag = "state")]
pub enum RuntimeState {
    Stopped,
    Running { pid: u32 },
    Paused { pid: u32 },
    Crashed { reason: String },
}

/// The state of the VM whose folder is `dir` (cleans stale runtime files).
pub fn runtime_state(_dir: &Path) -> RuntimeState {
    RuntimeState::Stopped
}

/// Is a VM process holding this folder's lock (edits/deletes must refuse)?
pub fn is_running(_dir: &Path) -> bool {
    false
}

/// `start NAME`.
pub fn start(_library: &Library, _args: &StartArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("start is not implemented yet")
}
