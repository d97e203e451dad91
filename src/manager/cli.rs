//! PLACEHOLDER: the command line (clap derive). Owned by the manager work.

use std::process::ExitCode;

pub fn main() -> ExitCode {
    eprintln!("xhyve-manager: not implemented yet");
    ExitCode::FAILURE
}
